/*
 * upgrade plan|run --to-version N: a Patroni cluster's major upgrade with
 * pg_upgrade on the leader, DCS removal and re-cloned replicas, driven
 * from Patroni's REST API; plan prints the steps, run executes and checks them.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "log.h"
#include "op.h"
#include "op_args.h"
#include "op_dcs.h"
#include "op_discover.h"
#include "op_exec.h"
#include "op_steps.h"
#include "op_template.h"
#include "op_wait.h"
#include "pg_connect.h"
#include "upgrade_guard.h"

#define PATH_LEN HELPER_VALUE_MAX
#define CMD_LEN OP_CMD_MAX

static uint64_t upgrade_wait_usec = UINT64_C(300) * DURATION_USEC_PER_SEC;

static int
old_version(const struct op *op)
{
	return atoi(op_get(op, "old_version"));
}

static int
new_version(const struct op *op)
{
	return atoi(op_get(op, "new_version"));
}

/* "<old data dir>.upgrade-saved" on the leader */
static bool
saved_dir(struct op *op, char *out, size_t len)
{
	char data[PATH_LEN];

	if (!op_path(op, op->cfg->data_dir, op->leader, old_version(op), data, sizeof(data)))
		return false;
	return snprintf(out, len, "%s.upgrade-saved", data) < (int) len;
}

/* ---- step 1 */
static bool
step_save_files(struct op *op)
{
	char data[PATH_LEN], saved[PATH_LEN + 16], cmd[CMD_LEN];
	int L = op->leader;

	if (!op_path(op, op->cfg->data_dir, L, old_version(op), data, sizeof(data)) ||
	    !saved_dir(op, saved, sizeof(saved)))
		return false;
	snprintf(cmd, sizeof(cmd), "mkdir -p %s && cp -p %s/pg_hba.conf %s/pg_ident.conf %s/",
		 saved, data, data, saved);
	if (!op_exec(op, L, cmd, "save pg_hba.conf and pg_ident.conf"))
		return false;
	snprintf(cmd, sizeof(cmd), "cmp -s %s/pg_hba.conf %s/pg_hba.conf && "
		 "cmp -s %s/pg_ident.conf %s/pg_ident.conf", data, saved, data, saved);
	return op_exec(op, L, cmd, "check the saved copies");
}

/* ---- step 2 */
static bool
step_stop_all(struct op *op)
{
	int m;

	for (m = 0; m < op->member_count; m++) {
		if (m != op->leader && !op_stop_patroni(op, m, old_version(op), upgrade_wait_usec))
			return false;
	}
	return op_stop_patroni(op, op->leader, old_version(op), upgrade_wait_usec);
}

/* ---- step 3 */
static bool
step_dcs_remove(struct op *op)
{
	return op_dcs_remove(op);
}

/* ---- step 4 */
static bool
step_initdb(struct op *op)
{
	char bin[PATH_LEN], data[PATH_LEN], cmd[CMD_LEN];
	int L = op->leader, v = new_version(op);

	if (!op_path(op, op->cfg->bin_dir, L, v, bin, sizeof(bin)) ||
	    !op_path(op, op->cfg->data_dir, L, v, data, sizeof(data)))
		return false;
	snprintf(cmd, sizeof(cmd), "%s/initdb -D %s -U %s --encoding=%s --lc-collate=%s "
		 "--lc-ctype=%s%s", bin, data, op_get(op, "superuser"), op_get(op, "encoding"),
		 op_get(op, "collate"), op_get(op, "ctype"),
		 strcmp(op_get(op, "checksums"), "on") == 0 ? " --data-checksums" : "");
	if (!op_exec(op, L, cmd, "initdb"))
		return false;
	snprintf(cmd, sizeof(cmd), "test \"$(cat %s/PG_VERSION)\" = %d", data, v);
	return op_exec(op, L, cmd, "check the new cluster's PG_VERSION");
}

/* ---- step 5 */

/* a copying pg_upgrade needs the old data directory's size free next to the new one */
static bool
check_free_space(struct op *op, const char *olddata, const char *parent)
{
	char cmd[CMD_LEN], out[256], err[1024];
	unsigned long long need, avail;

	snprintf(cmd, sizeof(cmd), "du -sk %s | cut -f1; df -Pk %s | awk 'NR == 2 "
		 "{ print $4 }'", olddata, parent);
	if (op->dry_run) {
		printf("    check: %s's size (du -sk) fits in the free space of %s (df -Pk)\n",
		       olddata, parent);
		return true;
	}
	if (!op_capture(op, op->leader, cmd, "measure the old data directory and the free "
			"space", out, sizeof(out)))
		return false;
	if (sscanf(out, "%llu %llu", &need, &avail) != 2) {
		log_error("cannot read du/df output \"%.64s\" for %s and %s", out, olddata,
			  parent);
		return false;
	}
	if (!upgrade_guard_space(need, avail, olddata, parent, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	log_info("free space for the copy: %s holds %llu MB, %s has %llu MB free", olddata,
		 need / 1024, parent, avail / 1024);
	return true;
}

/* pg_upgrade killed at step_timeout: say what it left and what to do */
static void
explain_killed(struct op *op, enum upgrade_guard_mode mode, const char *olddata,
	       const char *newdata)
{
	char cmd[CMD_LEN], msg[2048];
	bool disabled = false;

	if (mode == UPGRADE_GUARD_LINK) {
		snprintf(cmd, sizeof(cmd), "test -e %s/global/pg_control.old", olddata);
		disabled = op_exec(op, op->leader, cmd, "look for the link phase's "
				   "pg_control.old");
	}
	upgrade_guard_killed(mode, disabled, olddata, newdata, msg, sizeof(msg));
	log_error("%s", msg);
}

static bool
step_pg_upgrade(struct op *op)
{
	char oldbin[PATH_LEN], newbin[PATH_LEN], olddata[PATH_LEN], newdata[PATH_LEN];
	char parent[PATH_LEN], opts[CMD_LEN / 2], cmd[CMD_LEN];
	enum upgrade_guard_mode mode;
	const char *dir;
	int L = op->leader;

	if (!op_path(op, op->cfg->bin_dir, L, old_version(op), oldbin, sizeof(oldbin)) ||
	    !op_path(op, op->cfg->bin_dir, L, new_version(op), newbin, sizeof(newbin)) ||
	    !op_path(op, op->cfg->data_dir, L, old_version(op), olddata, sizeof(olddata)) ||
	    !op_path(op, op->cfg->data_dir, L, new_version(op), newdata, sizeof(newdata)))
		return false;
	op->version = new_version(op);
	if (!op_expand(op, op->cfg->pg_upgrade_options, L, opts, sizeof(opts))) {
		log_error("cannot expand pg_upgrade_options \"%s\"", op->cfg->pg_upgrade_options);
		return false;
	}
	strcpy(parent, newdata);
	dir = dirname(parent);
	/* pg_upgrade writes its sockets and logs in the working directory */
	if (snprintf(cmd, sizeof(cmd), "cd %s && %s/pg_upgrade -b %s -B %s -d %s -D %s%s%s "
		     "--check", dir, newbin, oldbin, newbin, olddata, newdata,
		     opts[0] ? " " : "", opts) >= (int) sizeof(cmd)) {
		log_error("pg_upgrade command too long");
		return false;
	}
	if (!op_exec_long(op, L, cmd, "pg_upgrade --check"))
		return false;
	mode = upgrade_guard_mode(opts);
	if (mode == UPGRADE_GUARD_COPY && !check_free_space(op, olddata, dir))
		return false;
	cmd[strlen(cmd) - strlen(" --check")] = '\0';
	if (!op_exec_long(op, L, cmd, "pg_upgrade")) {
		if (op->timed_out)
			explain_killed(op, mode, olddata, newdata);
		return false;
	}
	snprintf(cmd, sizeof(cmd), "LC_ALL=C %s/pg_controldata -D %s | "
		 "grep -q '^Database cluster state: *shut down$'", newbin, newdata);
	return op_exec(op, L, cmd, "check the upgraded cluster was shut down cleanly");
}

/* ---- step 6 */
static bool
step_restore_files(struct op *op)
{
	char data[PATH_LEN], saved[PATH_LEN + 16], cmd[CMD_LEN];
	int L = op->leader;

	if (!op_path(op, op->cfg->data_dir, L, new_version(op), data, sizeof(data)) ||
	    !saved_dir(op, saved, sizeof(saved)))
		return false;
	snprintf(cmd, sizeof(cmd), "cp -p %s/pg_hba.conf %s/pg_ident.conf %s/", saved, saved,
		 data);
	if (!op_exec(op, L, cmd, "restore pg_hba.conf and pg_ident.conf"))
		return false;
	snprintf(cmd, sizeof(cmd), "cmp -s %s/pg_hba.conf %s/pg_hba.conf && "
		 "cmp -s %s/pg_ident.conf %s/pg_ident.conf", saved, data, saved, data);
	return op_exec(op, L, cmd, "check the restored files");
}

/* ---- step 7 */
static bool
step_point_config(struct op *op)
{
	char conf[PATH_LEN], bin[PATH_LEN], data[PATH_LEN], cmd[CMD_LEN];
	int m, v = new_version(op);

	for (m = 0; m < op->member_count; m++) {
		if (!op_path(op, op->cfg->patroni_config, m, v, conf, sizeof(conf)) ||
		    !op_path(op, op->cfg->bin_dir, m, v, bin, sizeof(bin)) ||
		    !op_path(op, op->cfg->data_dir, m, v, data, sizeof(data)))
			return false;
		snprintf(cmd, sizeof(cmd),
			 "test -e %s.before-upgrade-%d || cp -p %s %s.before-upgrade-%d; "
			 "sed -i -E -e 's#^([[:space:]]*data_dir:).*$#\\1 %s#' "
			 "-e 's#^([[:space:]]*bin_dir:).*$#\\1 %s#' %s",
			 conf, v, conf, conf, v, data, bin, conf);
		if (!op_exec(op, m, cmd, "point patroni at the new paths"))
			return false;
		snprintf(cmd, sizeof(cmd), "grep -Eq '^[[:space:]]*data_dir: %s$' %s && "
			 "grep -Eq '^[[:space:]]*bin_dir: %s$' %s", data, conf, bin, conf);
		if (!op_exec(op, m, cmd, "check data_dir and bin_dir in the patroni config"))
			return false;
	}
	return true;
}

/* ---- step 8 */
static bool
step_config_put(struct op *op)
{
	return op_dcs_config_put(op);
}

/* ---- step 9 */
static bool
step_start(struct op *op)
{
	int m, v = new_version(op);

	if (!op_start_patroni(op, op->leader, v) ||
	    !op_wait_patroni_up(op, op->leader, "primary", v, upgrade_wait_usec) ||
	    !op_dcs_config_verify(op))
		return false;
	for (m = 0; m < op->member_count; m++) {
		if (m != op->leader && !op_start_patroni(op, m, v))
			return false;
	}
	for (m = 0; m < op->member_count; m++) {
		if (m != op->leader && !op_wait_patroni_up(op, m, "replica", v, upgrade_wait_usec))
			return false;
	}
	return op_wait_streaming(op, upgrade_wait_usec);
}

/* ---- step 10 */
static bool
step_vacuum(struct op *op)
{
	char bin[PATH_LEN], conn[CMD_LEN / 2], cmd[CMD_LEN];
	int L = op->leader;

	if (!op_path(op, op->cfg->bin_dir, L, new_version(op), bin, sizeof(bin)))
		return false;
	op->version = new_version(op);
	if (!op_expand(op, op->cfg->connect_options, L, conn, sizeof(conn))) {
		log_error("cannot expand connect_options \"%s\"", op->cfg->connect_options);
		return false;
	}
	snprintf(cmd, sizeof(cmd), "%s/vacuumdb --all --analyze-in-stages %s", bin, conn);
	return op_exec(op, L, cmd, "vacuumdb");
}

/* ---- step 11 */
static bool
step_stanza_upgrade(struct op *op)
{
	char pgbr[CMD_LEN / 2], cmd[CMD_LEN];
	int L = op->leader;

	op->version = new_version(op);
	if (!op_expand(op, op->cfg->pgbackrest, L, pgbr, sizeof(pgbr))) {
		log_error("cannot expand pgbackrest \"%s\"", op->cfg->pgbackrest);
		return false;
	}
	snprintf(cmd, sizeof(cmd), "%s --log-level-console=info --stanza=%s stanza-upgrade", pgbr,
		 op->cfg->pgbackrest_stanza);
	if (!op_exec_long(op, L, cmd, "pgbackrest stanza-upgrade"))
		return false;
	snprintf(cmd, sizeof(cmd), "%s --stanza=%s check", pgbr, op->cfg->pgbackrest_stanza);
	return op_exec(op, L, cmd, "pgbackrest check");
}

/* ---- step 12 */
static bool
step_report(struct op *op)
{
	char data[PATH_LEN];
	int m;

	if (!op_wait_patroni_up(op, op->leader, "primary", new_version(op), upgrade_wait_usec))
		return false;
	for (m = 0; m < op->member_count; m++) {
		if (m != op->leader &&
		    !op_wait_patroni_up(op, m, "replica", new_version(op), upgrade_wait_usec))
			return false;
	}
	for (m = 0; m < op->member_count; m++) {
		if (!op_path(op, op->cfg->data_dir, m, old_version(op), data, sizeof(data)))
			return false;
		op_note(op, "kept: %s's old data directory %s (remove it once satisfied)",
			op->members[m].name, data);
	}
	op_note(op, "scope %s: %d -> %d on %d members, leader %s", op->cfg->scope,
		old_version(op), new_version(op), op->member_count,
		op->members[op->leader].name);
	return true;
}

static const struct op_step upgrade_steps[] = {
	{"back up pg_hba.conf and pg_ident.conf (leader)", step_save_files,
	 "check the leader's old data directory path (data_dir) and permissions"},
	{"stop patroni on all members (replicas, then the leader)", step_stop_all,
	 "check patroni_stop and member_command; every member must be stopped"},
	{"remove the cluster from the DCS (patronictl remove)", step_dcs_remove,
	 "check the Consul url, token and namespace"},
	{"initdb the new version (leader)", step_initdb,
	 "check the new bin_dir; move a half-made new data directory aside first. "
	 "to go back instead: start patroni on the leader, then the replicas (old "
	 "configs are unchanged)"},
	{"pg_upgrade --check, then pg_upgrade (leader)", step_pg_upgrade,
	 "read pg_upgrade's output above and its logs in the new data directory; if "
	 "pg_upgrade itself started, move the new data directory aside and resume from "
	 "step 4. to go back instead: start patroni on the leader, then the replicas"},
	{"restore pg_hba.conf and pg_ident.conf (leader)", step_restore_files,
	 "the saved copies are in <old data_dir>.upgrade-saved on the leader"},
	{"point patroni's config at the new bin and data paths (all members)",
	 step_point_config,
	 "each patroni config needs data_dir: and bin_dir: lines under postgresql:; "
	 "the previous file is kept as <config>.before-upgrade-<version>"},
	{"put back the dynamic configuration saved from the DCS (patronictl edit-config)",
	 step_config_put, "check the Consul url and token; the saved configuration is the "
	 "dcs_config line of the state file"},
	{"start patroni: the leader, then the replicas (re-cloned)", step_start,
	 "read the members' patroni logs; patroni_start must start the member"},
	{"vacuumdb --all --analyze-in-stages (leader)", step_vacuum,
	 "check connect_options (how vacuumdb reaches the leader)"},
	{"pgbackrest stanza-upgrade and check (leader)", step_stanza_upgrade,
	 "check the pgbackrest command template and pgBackRest's log"},
	{"report", step_report, "the cluster is not healthy yet: see above"},
};

#define UPGRADE_STEPS ((int) (sizeof(upgrade_steps) / sizeof(upgrade_steps[0])))

/* encoding, locale, checksums and bootstrap superuser of the old cluster */
static bool
query_old_cluster(struct op *op, char *err, size_t errlen)
{
	const char *names[] = {"encoding", "collate", "ctype", "checksums", "superuser"};
	char what[200];
	PGconn *conn;
	PGresult *res;
	bool ok = false;
	const char *p;
	int i;

	snprintf(what, sizeof(what), "leader %s", op->members[op->leader].name);
	conn = pg_connect(op->cfg, op->members[op->leader].host, op->members[op->leader].port,
			  10, what, err, errlen);
	if (conn == NULL)
		return false;
	res = PQexec(conn, "select pg_encoding_to_char(encoding), datcollate, datctype, "
		     "current_setting('data_checksums'), "
		     "(select rolname from pg_authid where oid = 10) "
		     "from pg_database where datname = 'template1'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		errbuf_set(err, errlen, "reading encoding and locale on %s failed: %s",
			   op->members[op->leader].name, pg_error_line(conn));
		goto done;
	}
	for (i = 0; i < 5; i++) {
		for (p = PQgetvalue(res, 0, i); *p; p++) {
			if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789._-@", *p))
				break;
		}
		if (*p != '\0' || PQgetvalue(res, 0, i)[0] == '\0') {
			errbuf_set(err, errlen, "the old cluster's %s \"%.64s\" cannot be passed "
				   "to initdb safely", names[i], PQgetvalue(res, 0, i));
			goto done;
		}
		op_set(op, names[i], PQgetvalue(res, 0, i));
	}
	ok = true;
done:
	PQclear(res);
	PQfinish(conn);
	return ok;
}

/* binaries each step needs, on every member; runs even for plan (read-only) */
static bool
check_binaries(struct op *op)
{
	char oldbin[PATH_LEN], newbin[PATH_LEN], cmd[CMD_LEN];
	bool dry = op->dry_run;
	bool ok = true;
	int m, n;

	op->dry_run = false;
	for (m = 0; m < op->member_count && ok; m++) {
		if (!op_path(op, op->cfg->bin_dir, m, old_version(op), oldbin, sizeof(oldbin)) ||
		    !op_path(op, op->cfg->bin_dir, m, new_version(op), newbin, sizeof(newbin))) {
			ok = false;
			break;
		}
		/* replicas need pg_ctl (stop check) and the new server; the leader more */
		if (m == op->leader)
			n = snprintf(cmd, sizeof(cmd), "for f in %s/pg_ctl %s/postgres %s/postgres "
				     "%s/pg_ctl %s/initdb %s/pg_upgrade %s/pg_controldata "
				     "%s/vacuumdb; do test -x $f || "
				     "{ echo \"missing: $f\" >&2; exit 1; }; done",
				     oldbin, oldbin, newbin, newbin, newbin, newbin, newbin, newbin);
		else
			n = snprintf(cmd, sizeof(cmd), "for f in %s/pg_ctl %s/postgres %s/pg_ctl; "
				     "do test -x $f || { echo \"missing: $f\" >&2; exit 1; }; done",
				     oldbin, newbin, newbin);
		ok = n < (int) sizeof(cmd) && op_exec(op, m, cmd, "check binaries");
	}
	op->dry_run = dry;
	if (!ok)
		log_error("missing binaries: check bin_dir \"%s\" for versions %d and %d",
			  op->cfg->bin_dir, old_version(op), new_version(op));
	return ok;
}

/* a fresh start: everything from Patroni, refusals before anything changes */
static bool
prepare(struct op *op, int to_version)
{
	char err[1024], text[32];
	int old;

	if (!op_discover(op, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	old = op_major(op->server_version);
	snprintf(text, sizeof(text), "%d", old);
	op_set(op, "old_version", text);
	snprintf(text, sizeof(text), "%d", to_version);
	op_set(op, "new_version", text);
	if (op->paused) {
		log_error("scope %s is paused (maintenance mode): resume it first, refusing",
			  op->cfg->scope);
		return false;
	}
	if (to_version <= old) {
		log_error("--to-version %d is not newer than the running major version %d: "
			  "refusing", to_version, old);
		return false;
	}
	if (!op_replicas_healthy(op, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	if (!query_old_cluster(op, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	log_info("scope %s: leader %s, %d members, PostgreSQL %d -> %d, encoding %s, "
		 "collate %s, ctype %s, checksums %s", op->cfg->scope,
		 op->members[op->leader].name, op->member_count, old, to_version,
		 op_get(op, "encoding"), op_get(op, "collate"), op_get(op, "ctype"),
		 op_get(op, "checksums"));
	return check_binaries(op);
}

/* --to-version N */
static bool
upgrade_option(void *ctx, int c, const char *arg)
{
	int *to_version = ctx;
	char *end;

	if (c != 't')
		return false;
	*to_version = (int) strtol(arg, &end, 10);
	if (*arg == '\0' || *end != '\0' || *to_version < 10 || *to_version > 99) {
		log_error("--to-version: \"%.32s\" is not a major version (10..99)", arg);
		return false;
	}
	return true;
}

int
cmd_upgrade(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"to-version", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0}
	};
	static struct op op;
	struct op_args args;
	char resume[128];
	int to_version = 0, from;
	enum op_begin begin;

	if (!op_parse_args(argc, argv, "upgrade", UPGRADE_STEPS, opts, upgrade_option,
			   &to_version, &args))
		return HELPER_EXIT_USAGE;
	from = args.from;
	upgrade_wait_usec = args.wait_usec;
	if (to_version == 0) {
		log_error("--to-version is required");
		return HELPER_EXIT_USAGE;
	}
	if (!cmd_scope_set(cfg))
		return HELPER_EXIT_USAGE;
	snprintf(resume, sizeof(resume), "pgbouncer-helper [-c FILE] upgrade run "
		 "--to-version %d", to_version);
	begin = op_begin(&op, cfg, "upgrade", strcmp(args.action, "plan") == 0, from);
	if (begin == OP_BEGIN_USAGE)
		return HELPER_EXIT_USAGE;
	if (begin == OP_BEGIN_FAIL)
		return HELPER_EXIT_FAIL;
	if (begin == OP_BEGIN_RESUME) {
		if (atoi(op_get(&op, "new_version")) != to_version) {
			log_error("state file %s is for an upgrade to %s, not %d", op.state_path,
				  op_get(&op, "new_version"), to_version);
			return HELPER_EXIT_USAGE;
		}
		log_info("resuming the upgrade of scope %s to %d at step %d (state file %s, "
			 "leader %s)", cfg->scope, to_version, from, op.state_path,
			 op.members[op.leader].name);
	} else {
		if (!prepare(&op, to_version))
			return HELPER_EXIT_FAIL;
	}
	if (op.dry_run)
		printf("upgrade plan for scope %s: PostgreSQL %s -> %s, leader %s, "
		       "member_command \"%s\"\n", cfg->scope, op_get(&op, "old_version"),
		       op_get(&op, "new_version"), op.members[op.leader].name,
		       cfg->member_command);
	return op_run_steps(&op, upgrade_steps, UPGRADE_STEPS, from, resume);
}
