/*
 * backup-hook: Patroni callback.  When this node becomes (or starts as)
 * the primary, make sure the pgBackRest repository path exists, run
 * "pgbackrest check" and, as its exit code says, stanza-create or (after a
 * major upgrade of this system only) stanza-upgrade, then check again.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "run.h"

/*
 * Exit codes of pgbackrest: the error codes of pgBackRest 2.45's own list,
 * src/build/error/error.yaml (28 file-invalid, 51 backup-mismatch, 55
 * file-missing, 82 archive-timeout), checked against the installed 2.45 by
 * tests/integration/test_helper.py.  "pgbackrest check" exits with
 *   55 FileMissingError: archive.info or backup.info missing (no stanza yet);
 *   28 FileInvalidError: "backup and archive info files exist but do not
 *      match the database": the stanza describes another system-id or
 *      version, after a major upgrade of this system, or because the
 *      repository is another cluster's.
 * 51 BackupMismatchError is what backup and restore raise for a backup of
 * another system; check does not.  Anything else (82 ArchiveTimeoutError
 * when WAL does not reach the repository, ...) needs a human: the hook
 * does not touch the stanza then.
 */
#define PGBR_OK 0
#define PGBR_FILE_INVALID 28	/* info files do not match the database */
#define PGBR_BACKUP_MISMATCH 51	/* named here so nobody takes it for 28 again */
#define PGBR_FILE_MISSING 55	/* archive.info/backup.info missing: stanza-create */

#define HOOK_OUTPUT_MAX (1024 * 1024)
#define HOOK_CONTROLDATA "/usr/lib/postgresql/%s/bin/pg_controldata"	/* Debian's */

#define HOOK_DEFAULT_REPO "/var/lib/pgbackrest"
#define HOOK_DEFAULT_CONFIG "/etc/pgbackrest/pgbackrest.conf"

struct hook_ctx {
	const struct helper_config *cfg;
	const char *program;
	uint64_t timeout_usec;
	const char *pg_path;		/* --pg-path, else pgBackRest's pg1-path */
	const char *controldata;	/* --pg-controldata, else HOOK_CONTROLDATA */
};

/* a database system: its identifier and PostgreSQL major version */
struct hook_system {
	char id[32];
	int major;
};

/* mkdir -p with mode 0750 for new levels */
static bool
mkdir_p(const char *path, char *err, size_t errlen)
{
	char buf[1024];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int) sizeof(buf)) {
		errbuf_set(err, errlen, "repository path too long");
		return false;
	}
	for (p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;

			*p = '\0';
			if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
				errbuf_set(err, errlen, "cannot create repository path %s: %s", buf,
					   strerror(errno));
				return false;
			}
			*p = save;
			if (save == '\0')
				break;
		}
	}
	return true;
}

/*
 * repo1-path (and repo1-type) as pgBackRest would see them: environment
 * first, then the config file's [global] and [<stanza>] sections.
 */
static void
repo_from_config(const char *stanza, char *path, size_t pathlen, bool *posix, char *pg,
		 size_t pglen)
{
	const char *env = getenv("PGBACKREST_REPO1_PATH");
	const char *pgenv = getenv("PGBACKREST_PG1_PATH");
	const char *conf = getenv("PGBACKREST_CONFIG");
	const char *type = getenv("PGBACKREST_REPO1_TYPE");
	char line[2048], section[256] = "";
	char *s, *eq, *end;
	FILE *f;

	snprintf(path, pathlen, "%s", HOOK_DEFAULT_REPO);
	*posix = true;
	pg[0] = '\0';
	f = fopen(conf ? conf : HOOK_DEFAULT_CONFIG, "r");
	while (f && fgets(line, sizeof(line), f)) {
		s = line + strspn(line, " \t");
		end = s + strcspn(s, "\r\n");
		*end = '\0';
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*s == '[') {
			snprintf(section, sizeof(section), "%.*s", (int) strcspn(s + 1, "]"), s + 1);
			continue;
		}
		if (strcmp(section, "global") != 0 && strcmp(section, stanza) != 0)
			continue;
		eq = strchr(s, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (strcmp(s, "repo1-path") == 0)
			snprintf(path, pathlen, "%s", eq + 1);
		else if (strcmp(s, "repo1-type") == 0)
			*posix = strcmp(eq + 1, "posix") == 0;
		else if (strcmp(s, "pg1-path") == 0)
			snprintf(pg, pglen, "%s", eq + 1);
	}
	if (f)
		fclose(f);
	if (env && *env)
		snprintf(path, pathlen, "%s", env);
	if (type && *type)
		*posix = strcmp(type, "posix") == 0;
	if (pgenv && *pgenv)
		snprintf(pg, pglen, "%s", pgenv);
}

/* pgbackrest --stanza=<stanza> <command>; *status its exit code */
static bool
pgbackrest(const struct hook_ctx *h, const char *command, int *status)
{
	char stanza_arg[300], shown[600], err[1024];
	char *argv[4];

	snprintf(stanza_arg, sizeof(stanza_arg), "--stanza=%s", h->cfg->pgbackrest_stanza);
	argv[0] = (char *) h->program;
	argv[1] = stanza_arg;
	argv[2] = (char *) command;
	argv[3] = NULL;
	run_describe(argv, shown, sizeof(shown));
	log_info("running %s", shown);
	if (!run_command(argv, h->timeout_usec, status, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	log_info("%s exited with code %d", shown, *status);
	return true;
}

/* the stanza's current database in "pgbackrest info --output=json" (highest db id) */
static bool
repo_system(const struct hook_ctx *h, struct hook_system *sys, char *err, size_t errlen)
{
	static char out[HOOK_OUTPUT_MAX];
	char stanza_arg[300];
	char *argv[5];
	struct json_object *all, *st, *dbs, *db, *best = NULL;
	size_t i, n;
	int status, id, best_id = -1;
	bool ok = false;

	snprintf(stanza_arg, sizeof(stanza_arg), "--stanza=%s", h->cfg->pgbackrest_stanza);
	argv[0] = (char *) h->program;
	argv[1] = stanza_arg;
	argv[2] = (char *) "--output=json";
	argv[3] = (char *) "info";
	argv[4] = NULL;
	if (!run_capture(argv, h->timeout_usec, &status, out, sizeof(out), err, errlen))
		return false;
	if (status != PGBR_OK) {
		errbuf_set(err, errlen, "pgbackrest --stanza=%s --output=json info exited with "
			   "code %d", h->cfg->pgbackrest_stanza, status);
		return false;
	}
	all = json_tokener_parse(out);
	st = all && json_object_is_type(all, json_type_array) &&
		json_object_array_length(all) == 1 ? json_object_array_get_idx(all, 0) : NULL;
	dbs = http_json_member(st, "db");
	n = dbs && json_object_is_type(dbs, json_type_array) ? json_object_array_length(dbs) : 0;
	for (i = 0; i < n; i++) {
		db = json_object_array_get_idx(dbs, i);
		id = json_object_get_int(http_json_member(db, "id"));
		if (id > best_id) {
			best_id = id;
			best = db;
		}
	}
	if (best == NULL || strcmp(http_json_text(st, "name"), h->cfg->pgbackrest_stanza) != 0)
		errbuf_set(err, errlen, "pgbackrest info: no database listed for stanza %s",
			   h->cfg->pgbackrest_stanza);
	else if (snprintf(sys->id, sizeof(sys->id), "%s",
			  http_json_text(best, "system-id")) >= (int) sizeof(sys->id) ||
		 sys->id[0] == '\0' ||
		 (sys->major = atoi(http_json_text(best, "version"))) <= 0)
		errbuf_set(err, errlen, "pgbackrest info of stanza %s: unusable system-id or "
			   "version", h->cfg->pgbackrest_stanza);
	else
		ok = true;
	json_object_put(all);
	return ok;
}

/* this database system: PG_VERSION and pg_controldata's "Database system identifier" */
static bool
local_system(const struct hook_ctx *h, const char *pg_path, struct hook_system *sys,
	     char *err, size_t errlen)
{
	static char out[HOOK_OUTPUT_MAX];
	char file[1100], version[16] = "", program[1200];
	char *argv[3], *line;
	FILE *f;
	int status;

	if (pg_path[0] != '/') {
		errbuf_set(err, errlen, "no absolute data directory to compare the stanza with "
			   "(pg1-path, PGBACKREST_PG1_PATH or --pg-path)");
		return false;
	}
	snprintf(file, sizeof(file), "%s/PG_VERSION", pg_path);
	f = fopen(file, "r");
	if (f == NULL || fgets(version, sizeof(version), f) == NULL ||
	    (sys->major = atoi(version)) <= 0) {
		errbuf_set(err, errlen, "cannot read the major version from %s%s%s", file,
			   f ? "" : ": ", f ? "" : strerror(errno));
		if (f)
			fclose(f);
		return false;
	}
	fclose(f);
	version[strspn(version, "0123456789")] = '\0';
	if (h->controldata)
		snprintf(program, sizeof(program), "%s", h->controldata);
	else
		snprintf(program, sizeof(program), HOOK_CONTROLDATA, version);
	argv[0] = program;
	argv[1] = (char *) pg_path;
	argv[2] = NULL;
	/* the labels are translated otherwise */
	setenv("LC_ALL", "C", 1);
	if (!run_capture(argv, h->timeout_usec, &status, out, sizeof(out), err, errlen))
		return false;
	if (status != 0) {
		errbuf_set(err, errlen, "%s %s exited with code %d", program, pg_path, status);
		return false;
	}
	for (line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		if (sscanf(line, "Database system identifier: %31s", sys->id) == 1)
			return true;
	}
	errbuf_set(err, errlen, "%s %s printed no \"Database system identifier\"", program,
		   pg_path);
	return false;
}

/*
 * Check exited 28: the stanza describes another database system.  Only a
 * major upgrade of this one may be adopted: the repository's current
 * database is of an older major version (pg_upgrade gives the new cluster
 * a new system identifier, so that is all that can be compared then).  The
 * same or a newer version under another identifier is another cluster.
 */
static bool
upgrade_allowed(const struct hook_ctx *h, const char *pg_path)
{
	struct hook_system repo, here;
	char err[1024];

	if (!repo_system(h, &repo, err, sizeof(err)) ||
	    !local_system(h, pg_path, &here, err, sizeof(err))) {
		log_error("%s: not touching stanza %s", err, h->cfg->pgbackrest_stanza);
		return false;
	}
	log_info("stanza %s: repository database system %s (PostgreSQL %d), this one %s "
		 "(PostgreSQL %d, %s)", h->cfg->pgbackrest_stanza, repo.id, repo.major, here.id,
		 here.major, pg_path);
	if (strcmp(repo.id, here.id) == 0) {
		log_error("pgbackrest check of stanza %s failed with code %d although the "
			  "repository names this database system %s: not touching the stanza",
			  h->cfg->pgbackrest_stanza, PGBR_FILE_INVALID, here.id);
		return false;
	}
	if (repo.major >= here.major) {
		log_error("stanza %s belongs to database system %s (PostgreSQL %d), not to this "
			  "one, %s (PostgreSQL %d, %s): refusing stanza-upgrade (another cluster's "
			  "repository or stanza name?)", h->cfg->pgbackrest_stanza, repo.id,
			  repo.major, here.id, here.major, pg_path);
		return false;
	}
	log_info("stanza %s: PostgreSQL %d -> %d, a major upgrade: upgrading the stanza",
		 h->cfg->pgbackrest_stanza, repo.major, here.major);
	return true;
}

static int
hook_run(const struct hook_ctx *h, const char *repo_path)
{
	char path[1024], pg[1024], err[1024];
	const char *fix;
	bool posix;
	int status;

	repo_from_config(h->cfg->pgbackrest_stanza, path, sizeof(path), &posix, pg, sizeof(pg));
	if (repo_path) {
		snprintf(path, sizeof(path), "%s", repo_path);
		posix = true;
	}
	if (h->pg_path)
		snprintf(pg, sizeof(pg), "%s", h->pg_path);
	if (posix) {
		if (path[0] != '/') {
			log_error("repository path \"%.200s\" is not absolute", path);
			return HELPER_EXIT_FAIL;
		}
		if (!mkdir_p(path, err, sizeof(err))) {
			log_error("%s", err);
			return HELPER_EXIT_FAIL;
		}
		log_info("repository path %s exists", path);
	}
	if (!pgbackrest(h, "check", &status))
		return HELPER_EXIT_FAIL;
	if (status == PGBR_OK) {
		log_info("stanza %s: check passed, nothing to do", h->cfg->pgbackrest_stanza);
		return HELPER_EXIT_OK;
	}
	if (status == PGBR_FILE_MISSING) {
		fix = "stanza-create";
	} else if (status == PGBR_FILE_INVALID) {
		if (!upgrade_allowed(h, pg))
			return HELPER_EXIT_FAIL;
		fix = "stanza-upgrade";
	} else {
		log_error("pgbackrest check of stanza %s failed with exit code %d (neither a missing "
			  "stanza, %d FileMissing, nor info files of another database, %d "
			  "FileInvalid): not touching the stanza", h->cfg->pgbackrest_stanza, status,
			  PGBR_FILE_MISSING, PGBR_FILE_INVALID);
		return HELPER_EXIT_FAIL;
	}
	if (!pgbackrest(h, fix, &status))
		return HELPER_EXIT_FAIL;
	if (status != PGBR_OK) {
		log_error("pgbackrest %s of stanza %s failed with exit code %d", fix,
			  h->cfg->pgbackrest_stanza, status);
		return HELPER_EXIT_FAIL;
	}
	if (!pgbackrest(h, "check", &status))
		return HELPER_EXIT_FAIL;
	if (status != PGBR_OK) {
		log_error("pgbackrest check of stanza %s still fails after %s (exit code %d)",
			  h->cfg->pgbackrest_stanza, fix, status);
		return HELPER_EXIT_FAIL;
	}
	log_info("stanza %s: %s done, check passed", h->cfg->pgbackrest_stanza, fix);
	return HELPER_EXIT_OK;
}

static bool
is_primary_role(const char *role)
{
	return strcmp(role, "master") == 0 || strcmp(role, "primary") == 0;
}

/* the callbacks after which a primary should have a working stanza */
static bool
is_hook_action(const char *action)
{
	return strcmp(action, "on_role_change") == 0 || strcmp(action, "on_start") == 0 ||
		strcmp(action, "on_restart") == 0 || strcmp(action, "post_init") == 0;
}

int
cmd_backup_hook(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"pgbackrest", required_argument, NULL, 'p'},
		{"repo-path", required_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 't'},
		{"pg-path", required_argument, NULL, 'd'},
		{"pg-controldata", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0}
	};
	struct hook_ctx h = {cfg, "pgbackrest", UINT64_C(120) * DURATION_USEC_PER_SEC, NULL,
			     NULL};
	const char *repo_path = NULL;
	int c, nargs;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			h.program = optarg;
			break;
		case 'r':
			repo_path = optarg;
			break;
		case 'd':
			h.pg_path = optarg;
			break;
		case 'c':
			h.controldata = optarg;
			break;
		case 't':
			if (!cmd_parse_duration("timeout", optarg, &h.timeout_usec))
				return HELPER_EXIT_USAGE;
			break;
		default:
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (nargs == 1) {
		/* bootstrap.post_init: Patroni passes only a connection string */
		log_info("post_init on the new cluster's primary");
		return hook_run(&h, repo_path);
	}
	if (nargs != 3) {
		log_error("expected ACTION ROLE SCOPE (a Patroni callback) or one CONNINFO "
			  "(post_init), got %d arguments", nargs);
		return HELPER_EXIT_USAGE;
	}
	if (cfg->scope[0] != '\0' && strcmp(cfg->scope, argv[optind + 2]) != 0)
		log_warning("callback for scope %.100s, helper.ini says %s", argv[optind + 2],
			    cfg->scope);
	if (!is_hook_action(argv[optind]) || !is_primary_role(argv[optind + 1])) {
		log_info("%.64s as %.64s: nothing to do", argv[optind], argv[optind + 1]);
		return HELPER_EXIT_OK;
	}
	log_info("%s as %s of scope %.100s: checking the pgbackrest stanza", argv[optind],
		 argv[optind + 1], argv[optind + 2]);
	return hook_run(&h, repo_path);
}
