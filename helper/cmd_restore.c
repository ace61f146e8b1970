/*
 * restore plan|run [--set LABEL] [--type immediate | --target-time T]: a
 * Patroni cluster back from pgBackRest, replaying all archived WAL unless
 * told to stop earlier; standbys then leader stopped, old data directories
 * moved aside (never deleted), standbys re-cloned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "clock.h"
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
#include "progress.h"

#define PATH_LEN HELPER_VALUE_MAX
#define CMD_LEN OP_CMD_MAX

/* --type: pgBackRest's restore types we offer besides time (--target-time) */
#define RESTORE_DEFAULT "default"	/* replay every archived WAL segment */
#define RESTORE_IMMEDIATE "immediate"	/* stop once the backup set is consistent */

static uint64_t restore_wait_usec = UINT64_C(300) * DURATION_USEC_PER_SEC;

static int
version_of(const struct op *op)
{
	return op_major(op->server_version);
}

/* member m's data directory and where it is moved aside */
static bool
data_paths(struct op *op, int m, char *data, char *aside, size_t len)
{
	if (!op_path(op, op->cfg->data_dir, m, version_of(op), data, len))
		return false;
	return snprintf(aside, len, "%s.before-restore-%s", data, op_get(op, "stamp")) <
		(int) len;
}

/* mv DATA ASIDE unless that was done already (resume) */
static bool
move_aside(struct op *op, int m, bool recreate)
{
	char data[PATH_LEN], aside[PATH_LEN], cmd[CMD_LEN];

	if (!data_paths(op, m, data, aside, sizeof(data)))
		return false;
	snprintf(cmd, sizeof(cmd), "if test -e %s; then test ! -e %s || test -z \"$(ls -A %s)\"; "
		 "elif test -e %s; then mv %s %s; fi%s", aside, data, data, data, data, aside,
		 recreate ? " && mkdir -p -m 0700 " : "");
	if (recreate)
		strncat(cmd, data, sizeof(cmd) - strlen(cmd) - 1);
	if (!op_exec(op, m, cmd, "move the data directory aside"))
		return false;
	snprintf(cmd, sizeof(cmd), "test ! -e %s || test -z \"$(ls -A %s)\"", data, data);
	return op_exec(op, m, cmd, "check the data directory is empty or gone");
}

/* ---- steps 1, 2 */
static bool
step_stop_standbys(struct op *op)
{
	int m;

	for (m = 0; m < op->member_count; m++) {
		if (m != op->leader &&
		    !op_stop_patroni(op, m, version_of(op), restore_wait_usec))
			return false;
	}
	return true;
}

static bool
step_stop_leader(struct op *op)
{
	return op_stop_patroni(op, op->leader, version_of(op), restore_wait_usec);
}

/* ---- step 3 */
static bool
step_dcs_remove(struct op *op)
{
	return op_dcs_remove(op);
}

/* ---- step 4 */
static bool
step_move_leader(struct op *op)
{
	return move_aside(op, op->leader, true);
}

/* ---- step 5 */
static bool
step_pgbackrest_restore(struct op *op)
{
	char pgbr[CMD_LEN / 2], target[600], data[PATH_LEN], aside[PATH_LEN], cmd[CMD_LEN];
	const char *set = op_get(op, "set"), *when = op_get(op, "target_time");
	const char *type = op_get(op, "type");
	int L = op->leader;

	op->version = version_of(op);
	if (!op_expand(op, op->cfg->pgbackrest, L, pgbr, sizeof(pgbr))) {
		log_error("cannot expand pgbackrest \"%s\"", op->cfg->pgbackrest);
		return false;
	}
	if (!data_paths(op, L, data, aside, sizeof(data)))
		return false;
	if (*when) {
		snprintf(cmd, sizeof(cmd), "--target=%s", when);
		if (!op_shell_quote(cmd, target, sizeof(target)))
			return false;
		snprintf(cmd, sizeof(cmd), "%s --log-level-console=info --stanza=%s%s%s restore "
			 "--type=time %s --target-action=pause", pgbr, op->cfg->pgbackrest_stanza,
			 *set ? " --set=" : "", set, target);
	} else if (strcmp(type, RESTORE_IMMEDIATE) == 0) {
		snprintf(cmd, sizeof(cmd), "%s --log-level-console=info --stanza=%s%s%s restore "
			 "--type=immediate --target-action=pause", pgbr, op->cfg->pgbackrest_stanza,
			 *set ? " --set=" : "", set);
	} else {
		/* pgBackRest's default: recover to the end of the archived WAL, then promote */
		snprintf(cmd, sizeof(cmd), "%s --log-level-console=info --stanza=%s%s%s restore "
			 "--type=default", pgbr,
			 op->cfg->pgbackrest_stanza, *set ? " --set=" : "", set);
	}
	if (!op_exec_long(op, L, cmd, "pgbackrest restore"))
		return false;
	snprintf(cmd, sizeof(cmd), "test -f %s/PG_VERSION && test -f %s/recovery.signal", data,
		 data);
	return op_exec(op, L, cmd, "check the restored data directory");
}

/* libpq to the leader's conn_url host/port with source; NULL when it does not answer */
static PGconn *
leader_connect(struct op *op)
{
	char err[1024];

	return pg_connect(op->cfg, op->members[op->leader].host, op->members[op->leader].port,
			  5, "the leader", err, sizeof(err));
}

/* "t"/"f" of a one-value query, '?' when it failed */
static char
query_flag(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	char c = '?';

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		c = PQgetvalue(res, 0, 0)[0];
	PQclear(res);
	return c;
}

/* wait for the replay pause at the target, resume, wait for the promotion */
static bool
replay_to_target(struct op *op)
{
	uint64_t deadline = clock_usec() + restore_wait_usec;
	struct progress pr;
	PGconn *conn = NULL;
	bool resumed = false;
	char rec, paused, what[200];
	const char *last = "no connection";

	snprintf(what, sizeof(what), "%s to reach the recovery target and leave recovery",
		 op->members[op->leader].name);
	progress_begin(&pr, PROGRESS_WAIT, restore_wait_usec, what);
	for (;;) {
		if (conn == NULL)
			conn = leader_connect(op);
		if (conn != NULL) {
			rec = query_flag(conn, "select pg_is_in_recovery()");
			if (rec == 'f') {
				progress_end(&pr, true);
				log_info("%s is out of recovery (promoted at the target)",
					 op->members[op->leader].name);
				PQfinish(conn);
				return true;
			}
			paused = rec == 't' ? query_flag(conn, "select pg_is_wal_replay_paused()") : '?';
			last = rec != 't' ? "no answer to pg_is_in_recovery()" :
				paused == 't' ? "in recovery, replay paused" : "in recovery, replaying";
			if (paused == 't' && !resumed) {
				log_info("recovery paused at the target: select pg_wal_replay_resume()");
				if (query_flag(conn, "select pg_wal_replay_resume() is null") == '?') {
					progress_end(&pr, false);
					log_error("pg_wal_replay_resume() failed: %s",
						  pg_error_line(conn));
					PQfinish(conn);
					return false;
				}
				resumed = true;
			}
			if (rec == '?') {
				PQfinish(conn);
				conn = NULL;
			}
		} else {
			last = "no connection";
		}
		if (clock_usec() >= deadline) {
			progress_end(&pr, false);
			log_error("%s did not reach the recovery target and leave recovery within "
				  "%.0f s", op->members[op->leader].name,
				  (double) restore_wait_usec / 1e6);
			PQfinish(conn);
			return false;
		}
		progress_tick(&pr, last);
		clock_sleep_usec(500000);
	}
}

/* ---- step 6 */
static bool
step_replay(struct op *op)
{
	char bin[PATH_LEN], data[PATH_LEN], aside[PATH_LEN], cmd[CMD_LEN];
	int L = op->leader;

	if (!op_path(op, op->cfg->bin_dir, L, version_of(op), bin, sizeof(bin)) ||
	    !data_paths(op, L, data, aside, sizeof(data)))
		return false;
	snprintf(cmd, sizeof(cmd), "%s/pg_ctl -D %s -w -t %.0f -l %s.restore-%s.log start", bin,
		 data, (double) restore_wait_usec / 1e6, data, op_get(op, "stamp"));
	if (!op_exec(op, L, cmd, "start postgres for recovery"))
		return false;
	if (op->dry_run) {
		op_note(op, "check: on %s:%d (source) %swait until pg_is_in_recovery() is false",
			op->members[L].host, op->members[L].port,
			strcmp(op_get(op, "type"), RESTORE_DEFAULT) == 0 ? "" :
			"wait for pg_is_wal_replay_paused(), select pg_wal_replay_resume(), ");
	} else if (!replay_to_target(op)) {
		snprintf(cmd, sizeof(cmd), "%s/pg_ctl -D %s -m fast -w stop", bin, data);
		op_exec(op, L, cmd, "stop postgres after the failed recovery");
		return false;
	}
	snprintf(cmd, sizeof(cmd), "%s/pg_ctl -D %s -m fast -w -t %.0f stop", bin, data,
		 (double) restore_wait_usec / 1e6);
	if (!op_exec(op, L, cmd, "stop postgres"))
		return false;
	snprintf(cmd, sizeof(cmd), "%s/pg_ctl status -D %s >/dev/null; test $? -eq 3 && "
		 "test ! -e %s/recovery.signal", bin, data, data);
	return op_exec(op, L, cmd, "check postgres is stopped and out of recovery");
}

/* ---- step 7 */
static bool
step_config_put(struct op *op)
{
	return op_dcs_config_put(op);
}

/* ---- step 8 */
static bool
step_start_leader(struct op *op)
{
	if (!op_start_patroni(op, op->leader, version_of(op)))
		return false;
	return op_wait_patroni_up(op, op->leader, "primary", version_of(op),
				  restore_wait_usec) && op_dcs_config_verify(op);
}

/* ---- step 9 */
static bool
step_reclone(struct op *op)
{
	int m;

	for (m = 0; m < op->member_count; m++) {
		if (m == op->leader)
			continue;
		if (!move_aside(op, m, false) || !op_start_patroni(op, m, version_of(op)))
			return false;
	}
	for (m = 0; m < op->member_count; m++) {
		if (m != op->leader &&
		    !op_wait_patroni_up(op, m, "replica", version_of(op), restore_wait_usec))
			return false;
	}
	return op_wait_streaming(op, restore_wait_usec);
}

/* ---- step 10 */
static bool
step_report(struct op *op)
{
	char data[PATH_LEN], aside[PATH_LEN];
	int m;

	for (m = 0; m < op->member_count; m++) {
		if (!data_paths(op, m, data, aside, sizeof(data)))
			return false;
		op_note(op, "kept: %s's previous data directory %s (remove it once satisfied)",
			op->members[m].name, aside);
	}
	op_note(op, "scope %s restored from stanza %s (%s), leader %s", op->cfg->scope,
		op->cfg->pgbackrest_stanza, op_get(op, "target"), op->members[op->leader].name);
	return true;
}

static const struct op_step restore_steps[] = {
	{"stop patroni on the standbys", step_stop_standbys,
	 "check patroni_stop and member_command"},
	{"stop patroni on the leader", step_stop_leader,
	 "check patroni_stop and member_command"},
	{"remove the cluster from the DCS (patronictl remove)", step_dcs_remove,
	 "check the Consul url, token and namespace"},
	{"move the leader's data directory aside (never deleted)", step_move_leader,
	 "check data_dir and the permissions of its parent directory"},
	{"pgbackrest restore (leader)", step_pgbackrest_restore,
	 "read pgBackRest's output; empty the new data directory (the old one is "
	 "already aside) before resuming"},
	{"start postgres, replay the WAL (at a target: pg_wal_replay_resume()), stop it",
	 step_replay, "read the recovery log <data_dir>.restore-<stamp>.log"},
	{"put back the dynamic configuration saved from the DCS (patronictl edit-config)",
	 step_config_put, "check the Consul url and token; the saved configuration is the "
	 "dcs_config line of the state file"},
	{"start patroni on the leader", step_start_leader,
	 "read the leader's patroni log"},
	{"move the standbys' data aside and re-clone them", step_reclone,
	 "read the standbys' patroni logs"},
	{"report", step_report, NULL},
};

#define RESTORE_STEPS ((int) (sizeof(restore_steps) / sizeof(restore_steps[0])))

static bool
target_valid(const char *s)
{
	for (; *s; s++) {
		if (!strchr("0123456789-:+. ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz/_",
			    *s))
			return false;
	}
	return true;
}

/* what --set, --target-time and --type gave */
struct restore_args {
	const char *set, *when, *type;
};

static bool
restore_option(void *ctx, int c, const char *arg)
{
	struct restore_args *r = ctx;

	if (c == 's')
		r->set = arg;
	else if (c == 't')
		r->when = arg;
	else if (c == 'y')
		r->type = arg;
	else
		return false;
	return true;
}

int
cmd_restore(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"set", required_argument, NULL, 's'},
		{"target-time", required_argument, NULL, 't'},
		{"type", required_argument, NULL, 'y'},
		{NULL, 0, NULL, 0}
	};
	static struct op op;
	struct restore_args r = {"", "", ""};
	struct op_args args;
	const char *set, *when, *type;
	char err[1024], resume[128], stamp[32], target[200];
	struct tm tm;
	time_t now;
	int from;
	enum op_begin begin;

	if (!op_parse_args(argc, argv, "restore", RESTORE_STEPS, opts, restore_option, &r,
			   &args))
		return HELPER_EXIT_USAGE;
	set = r.set;
	when = r.when;
	type = r.type;
	from = args.from;
	restore_wait_usec = args.wait_usec;
	if (*set && (strlen(set) > 64 || strspn(set, "0123456789-_FDI") != strlen(set))) {
		log_error("--set: \"%.64s\" is not a pgBackRest backup label", set);
		return HELPER_EXIT_USAGE;
	}
	if (*when && (strlen(when) > 64 || !target_valid(when))) {
		log_error("--target-time: \"%.64s\" is not a timestamp", when);
		return HELPER_EXIT_USAGE;
	}
	if (*type && strcmp(type, RESTORE_DEFAULT) != 0 && strcmp(type, RESTORE_IMMEDIATE) != 0) {
		log_error("--type: \"%.32s\" is not default or immediate (--target-time T "
			  "restores to a point in time)", type);
		return HELPER_EXIT_USAGE;
	}
	if (*when && strcmp(type, RESTORE_IMMEDIATE) == 0) {
		log_error("--type immediate and --target-time exclude each other: the first stops "
			  "at the end of the backup set, the second at T");
		return HELPER_EXIT_USAGE;
	}
	if (*type == '\0')
		type = *when ? "time" : RESTORE_DEFAULT;
	snprintf(resume, sizeof(resume), "pgbouncer-helper [-c FILE] restore run");
	begin = op_begin(&op, cfg, "restore", strcmp(args.action, "plan") == 0, from);
	if (begin == OP_BEGIN_USAGE)
		return HELPER_EXIT_USAGE;
	if (begin == OP_BEGIN_FAIL)
		return HELPER_EXIT_FAIL;
	if (begin == OP_BEGIN_RESUME) {
		if (*set || *when || strcmp(type, RESTORE_DEFAULT) != 0)
			log_warning("--set/--type/--target-time ignored when resuming: the state "
				    "file's target is used");
		log_info("resuming the restore of scope %s at step %d (state file %s)",
			 cfg->scope, from, op.state_path);
	} else {
		if (!op_discover(&op, err, sizeof(err))) {
			log_error("%s", err);
			return HELPER_EXIT_FAIL;
		}
		if (op.paused) {
			log_error("scope %s is paused (patroni would not stop postgres): resume it "
				  "first, refusing", cfg->scope);
			return HELPER_EXIT_FAIL;
		}
		now = time(NULL);
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
		op_set(&op, "stamp", stamp);
		op_set(&op, "set", set);
		op_set(&op, "target_time", when);
		op_set(&op, "type", type);
		if (*when)
			snprintf(target, sizeof(target), "to %s%s, then replay to %s "
				 "(--target-time)", *set ? "backup set " : "the latest backup", set,
				 when);
		else if (strcmp(type, RESTORE_IMMEDIATE) == 0)
			snprintf(target, sizeof(target), "to %s%s, stopping at its end "
				 "(--type immediate)", *set ? "backup set " : "the latest backup",
				 set);
		else
			snprintf(target, sizeof(target), "to %s%s, then every archived WAL "
				 "(--type default)", *set ? "backup set " : "the latest backup", set);
		op_set(&op, "target", target);
	}
	if (op.dry_run)
		printf("restore plan for scope %s: PostgreSQL %d, leader %s, %s, "
		       "member_command \"%s\"\n", cfg->scope, version_of(&op),
		       op.members[op.leader].name, op_get(&op, "target"), cfg->member_command);
	return op_run_steps(&op, restore_steps, RESTORE_STEPS, from, resume);
}
