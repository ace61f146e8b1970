/*
 * pgbouncer-helper: the operational loop around pgbouncer-consul.
 * Reads helper.ini, applies command-line overrides and runs one subcommand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "duration.h"
#include "commands.h"
#include "helper_config.h"
#include "log.h"
#include "secret.h"

struct command {
	const char *name;
	int (*func)(struct helper_config *cfg, int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{"userlist-sync", cmd_userlist_sync,
	 "userlist-sync [--once]\n"
	 "  Read pg_shadow on the leader (found through Consul) and write auth_file\n"
	 "  atomically when it changed, then RELOAD PgBouncer through pgbouncer_admin.\n"
	 "  The new file keeps the old one's owner, group and mode (new: 0600) or the\n"
	 "  sync fails, leaving it; auth_file's directory must be writable.\n"
	 "  Without --once: keep running, sync on every leader change and every\n"
	 "  sync_interval; SIGTERM/SIGINT end it.\n"},
	{"prepared-queries", cmd_prepared_queries,
	 "prepared-queries [--nearest-n N]\n"
	 "  Install or update the Consul prepared queries <scope>-writer (tag primary),\n"
	 "  <scope>-query (tag replica) and <scope>-any (tag any) for the scope's\n"
	 "  service: OnlyPassing, Near _agent, Failover NearestN ([prepared_queries]\n"
	 "  nearest_n, default 3) then datacenters in order, DNS TTL writer_ttl,\n"
	 "  query_ttl, any_ttl (default dns_ttl).  Idempotent.\n"},
	{"register", cmd_register,
	 "register [--once] [--interval DUR] [--check-interval DUR] [--deregister-after DUR]\n"
	 "  Poll the local Patroni (/primary, /replica, /read-only) and keep the Consul\n"
	 "  services of this member in step: service <scope> with tag primary, replica\n"
	 "  or any, IDs pgbc-helper:<scope>:<member>:<writer|query|any>, each with an\n"
	 "  HTTP check on the Patroni endpoint.  Defaults: interval 5s, check interval\n"
	 "  5s, deregister-after 2m.  Deregisters its services on SIGTERM/SIGINT.\n"},
	{"maintenance", cmd_maintenance,
	 "maintenance pause|resume [--timeout DUR]\n"
	 "  Patroni pause/resume through PATCH /config on patroni_url, then wait\n"
	 "  (default 30s) until /cluster shows the new state.\n"},
	{"topology", cmd_topology,
	 "topology [--json]\n"
	 "  The cluster as Patroni sees it: scope, server version and next major,\n"
	 "  leader, replicas with state and lag (from /cluster and /patroni).\n"},
	{"backup", cmd_backup,
	 "backup --type full|diff|incr [--pgbackrest PATH] [--timeout DUR]\n"
	 "  Run pgbackrest --stanza=<pgbackrest_stanza> backup --type=TYPE when the\n"
	 "  local Postgres (conninfo: source) is the primary; exit 0 doing nothing on\n"
	 "  a replica.  The exit status is pgbackrest's.\n"},
	{"backup-hook", cmd_backup_hook,
	 "backup-hook ACTION ROLE SCOPE | backup-hook CONNINFO\n"
	 "           [--pgbackrest PATH] [--repo-path DIR] [--timeout DUR]\n"
	 "           [--pg-path DIR] [--pg-controldata PATH]\n"
	 "  Patroni callback (on_role_change, on_start, post_init): when this node is\n"
	 "  the primary, create the repository path, run pgbackrest check and\n"
	 "  stanza-create (exit 55) or, on exit 28, stanza-upgrade only when the\n"
	 "  repository's database (pgbackrest info) is an older major version than\n"
	 "  this one (pg_controldata of --pg-path, default pg1-path): another system\n"
	 "  of the same or a newer version is refused.  Other roles: nothing.  Each\n"
	 "  run is bounded by --timeout (default 120s).\n"},
	{"upgrade", cmd_upgrade,
	 "upgrade plan|run --to-version N [--from-step K] [--wait DUR] [--progress DUR]\n"
	 "  Major upgrade of the scope's Patroni cluster, driven from Patroni's REST API:\n"
	 "  save pg_hba/pg_ident, stop patroni everywhere, save the DCS configuration\n"
	 "  and remove the scope from the DCS, initdb + pg_upgrade (--check first) on\n"
	 "  the leader, restore the files, point each member's patroni config at the\n"
	 "  new paths, put the saved configuration back, start the leader then the\n"
	 "  replicas (re-cloned), vacuumdb --analyze-in-stages, pgbackrest stanza-upgrade.\n"
	 "  plan prints every command and host and changes nothing; run executes and\n"
	 "  checks each step, stops at the first failure and resumes with --from-step.\n"
	 "  Members and paths come from [upgrade]: member_command (prefix, e.g.\n"
	 "  \"ssh postgres@%h\"; empty = local), patroni_config, data_dir, bin_dir,\n"
	 "  patroni_stop, patroni_start, connect_options, pgbackrest, pg_upgrade_options,\n"
	 "  state_dir, step_timeout, max_lag; escapes %m member, %h host, %p port,\n"
	 "  %v major version, %s scope, %d data_dir, %b bin_dir.  --wait bounds each\n"
	 "  wait for patroni (default 5m); step_timeout (default 1h, 0 = no limit)\n"
	 "  bounds each command.  Waits, pg_upgrade and pgbackrest log a progress line\n"
	 "  when they start, every --progress (default 10s) while they last (\"still\n"
	 "  waiting for X: Y s of Z s, last seen: ...\") and when they end; pg_upgrade's\n"
	 "  and pgbackrest's output (--log-level-console=info) is logged, masked.\n"},
	{"restore", cmd_restore,
	 "restore plan|run [--set LABEL] [--type default|immediate | --target-time T]\n"
	 "           [--from-step K] [--wait DUR] [--progress DUR]\n"
	 "  Restore the scope's cluster from pgBackRest: stop the standbys, then the\n"
	 "  leader; save the DCS configuration and remove the scope from the DCS; move\n"
	 "  the leader's data directory aside (never deleted); pgbackrest restore of\n"
	 "  the latest backup (or --set LABEL) replaying every archived WAL (--type\n"
	 "  default, pgBackRest's own), or stopping at the end of the backup set (--type\n"
	 "  immediate), or at T (--target-time; target action pause, then\n"
	 "  pg_wal_replay_resume()); start postgres until it leaves recovery, stop it;\n"
	 "  put the saved configuration back; start the leader's patroni; move the\n"
	 "  standbys' data aside and re-clone them.  Same plan/run/--from-step,\n"
	 "  --progress and [upgrade] templates as upgrade; both refuse when\n"
	 "  patroni_url serves another scope than helper.ini's.\n"},
	{NULL, NULL, NULL}
};

static void
usage(FILE *out)
{
	const struct command *c;

	fprintf(out, "usage: pgbouncer-helper [-c FILE] SUBCOMMAND [options]\n"
		"       pgbouncer-helper --version\n\n"
		"  -c FILE   helper.ini (default %s)\n"
		"  options naming a helper.ini key override the file:\n"
		"  --scope, --patroni-url, --patroni-username, --patroni-password-file,\n"
		"  --patroni-ca-file, --patroni-cert-file, --patroni-key-file, --pgbouncer-admin,\n"
		"  --auth-file, --extra-users-file, --source, --exclude-users, --sync-interval,\n"
		"  --pgbackrest-stanza, --datacenters, --dns-ttl, --consul-url,\n"
		"  --consul-token-file, --consul-ca-file, --consul-cert-file, --consul-key-file,\n"
		"  --consul-namespace, --consul-wait, --consul-consistency, --consul-proxy,\n"
		"  --consul-datacenter\n\n"
		"subcommands:\n", HELPER_CONFIG_DEFAULT_FILE);
	for (c = commands; c->name; c++)
		fprintf(out, "  %s\n", c->name);
	fprintf(out, "\npgbouncer-helper SUBCOMMAND --help shows a subcommand's options\n");
}

bool
cmd_wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return true;
	}
	return false;
}

bool
cmd_no_more_args(int argc, char **argv, int next)
{
	if (next < argc) {
		log_error("unexpected argument \"%s\" (try --help)", argv[next]);
		return false;
	}
	return true;
}

bool
cmd_parse_duration(const char *name, const char *value, uint64_t *usec)
{
	char err[256];
	uint64_t v;

	if (!duration_parse(value, &v, err, sizeof(err))) {
		log_error("--%s: \"%.32s\": %s", name, value, err);
		return false;
	}
	if (v == 0) {
		log_error("--%s: \"%.32s\": must be > 0", name, value);
		return false;
	}
	*usec = v;
	return true;
}

bool
cmd_scope_set(const struct helper_config *cfg)
{
	if (cfg->scope[0] == '\0') {
		log_error("scope is not set ([helper] scope or --scope)");
		return false;
	}
	return true;
}

/*
 * Take the helper.ini overrides (--key=value or --key value) out of argv;
 * what remains is the subcommand's own.  Returns the new argc or -1.
 */
/* -c after the subcommand would be read too late: refuse it, do not ignore it */
static bool
late_config_option(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strncmp(argv[i], "-c", 2) == 0) {
			log_error("option -c must come before the subcommand: "
				  "pgbouncer-helper -c FILE %s ...", argv[0]);
			return true;
		}
	}
	return false;
}

static int
apply_overrides(struct helper_config *cfg, int argc, char **argv)
{
	char name[128];
	char key[128];
	char err[512];
	const char *section;
	const char *value;
	const char *eq;
	int i, out = 1;
	size_t n;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (strncmp(argv[i], "--", 2) != 0) {
			argv[out++] = argv[i];
			continue;
		}
		eq = strchr(argv[i], '=');
		n = eq ? (size_t) (eq - argv[i] - 2) : strlen(argv[i] + 2);
		if (n >= sizeof(name)) {
			argv[out++] = argv[i];
			continue;
		}
		memcpy(name, argv[i] + 2, n);
		name[n] = '\0';
		if (!helper_config_option(name, &section, key, sizeof(key))) {
			argv[out++] = argv[i];
			continue;
		}
		if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			log_error("option --%s needs a value", name);
			return -1;
		}
		if ((strcmp(key, "source") == 0 || strcmp(key, "pgbouncer_admin") == 0) &&
		    secret_conninfo_has_password(value)) {
			log_error("option --%s: refusing a password on the command line (ps shows "
				  "it to every user): put it in helper.ini or in a password file "
				  "(passfile= in the conninfo, PGPASSFILE or ~/.pgpass)", name);
			return -1;
		}
		if (!helper_config_set(cfg, section, key, value, err, sizeof(err))) {
			log_error("option --%s: %s", name, err);
			return -1;
		}
	}
	argv[out] = NULL;
	return out;
}

/* what helper_reload_config reads again: the file and the overrides */
static const char *reload_file;
static int reload_argc;
static char **reload_argv;

bool
helper_reload_config(struct helper_config *cfg, char *err, size_t errlen)
{
	static struct helper_config fresh;
	char **args;
	char msg[1024];
	int i;

	helper_config_init(&fresh);
	if (!helper_config_load(&fresh, reload_file, msg, sizeof(msg))) {
		snprintf(err, errlen, "%s", msg);
		return false;
	}
	args = calloc((size_t) reload_argc + 1, sizeof(*args));
	if (args == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (i = 0; i < reload_argc; i++)
		args[i] = reload_argv[i];
	i = apply_overrides(&fresh, reload_argc, args);
	free(args);
	if (i < 0) {
		snprintf(err, errlen, "bad command-line override");
		return false;
	}
	if (!helper_config_finish(&fresh, msg, sizeof(msg))) {
		snprintf(err, errlen, "%s: %s", reload_file, msg);
		return false;
	}
	*cfg = fresh;
	return true;
}

int
main(int argc, char **argv)
{
	static struct helper_config cfg;
	const struct command *cmd;
	const char *file = HELPER_CONFIG_DEFAULT_FILE;
	char err[1024];
	int first = 1;
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return HELPER_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		/* PACKAGE_VERSION: configure's AC_INIT, on the compiler's command line */
		printf("pgbouncer-helper %s\n", PACKAGE_VERSION);
		return HELPER_EXIT_OK;
	}
	if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
		file = argv[2];
		first = 3;
	} else if (argc >= 2 && strncmp(argv[1], "-c", 2) == 0 && argv[1][2] != '\0') {
		file = argv[1] + 2;
		first = 2;
	} else if (argc >= 2 && strcmp(argv[1], "-c") == 0) {
		log_error("option -c needs a file name");
		return HELPER_EXIT_USAGE;
	}
	if (first >= argc) {
		usage(stderr);
		return HELPER_EXIT_USAGE;
	}
	if (strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "-h") == 0) {
		usage(stdout);
		return HELPER_EXIT_OK;
	}
	for (cmd = commands; cmd->name; cmd++) {
		if (strcmp(cmd->name, argv[first]) == 0)
			break;
	}
	if (cmd->name == NULL) {
		if (argv[first][0] == '-')
			log_error("unknown option %s before the subcommand (try --help)",
				  argv[first]);
		else
			log_error("unknown subcommand \"%s\" (try --help)", argv[first]);
		return HELPER_EXIT_USAGE;
	}
	argc -= first;
	argv += first;
	log_set_command(cmd->name);
	if (cmd_wants_help(argc, argv)) {
		printf("usage: pgbouncer-helper [-c FILE] %s", cmd->help);
		return HELPER_EXIT_OK;
	}

	if (late_config_option(argc, argv))
		return HELPER_EXIT_USAGE;
	helper_config_init(&cfg);
	if (!helper_config_load(&cfg, file, err, sizeof(err))) {
		log_error("%s", err);
		return HELPER_EXIT_USAGE;
	}
	reload_file = file;
	reload_argc = argc;
	reload_argv = calloc((size_t) argc + 1, sizeof(*reload_argv));
	if (reload_argv == NULL) {
		log_error("out of memory");
		return HELPER_EXIT_FAIL;
	}
	memcpy(reload_argv, argv, (size_t) argc * sizeof(*argv));
	argc = apply_overrides(&cfg, argc, argv);
	if (argc < 0)
		return HELPER_EXIT_USAGE;
	if (!helper_config_finish(&cfg, err, sizeof(err))) {
		log_error("%s: %s", file, err);
		return HELPER_EXIT_USAGE;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl");
		return HELPER_EXIT_FAIL;
	}
	rc = cmd->func(&cfg, argc, argv);
	curl_global_cleanup();
	return rc;
}
