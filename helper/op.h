/*
 * Multi-step cluster operations (upgrade, restore): the members as Patroni
 * reported them, [upgrade] templates, commands run on members through
 * member_command, checks after each step, and the state file for resuming.
 */
#ifndef PGBC_HELPER_OP_H
#define PGBC_HELPER_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "helper_config.h"

#define OP_MEMBERS_MAX 16
#define OP_VARS_MAX 16
#define OP_CMD_MAX 8192
#define OP_CONFIG_MAX 65536	/* Patroni's dynamic configuration, compact JSON */

struct op_member {
	char name[128];
	char host[256];		/* from Patroni's conn_url (via /cluster) */
	int port;
	char api[512];		/* Patroni REST base URL, without /patroni */
	char role[32];
	char state[32];
	long long lag;		/* bytes, -1 = unknown */
};

struct op_var {
	char key[32];
	char value[512];
};

struct op {
	struct helper_config *cfg;
	const char *kind;			/* "upgrade" or "restore" */
	bool dry_run;				/* plan: print, never run */
	char state_path[HELPER_VALUE_MAX + 300];
	int member_count;
	struct op_member members[OP_MEMBERS_MAX];
	int leader;				/* index into members */
	int version;				/* %v when a template is expanded */
	bool paused;
	bool timed_out;				/* the last op_exec/op_capture hit step_timeout */
	int server_version;			/* server_version_num of the leader */
	int var_count;
	struct op_var vars[OP_VARS_MAX];
	int next_step;				/* from the state file */
	char status[16];			/* "running", "failed", "done" */
	/* <namespace>/<scope>/config as it was before the DCS removal ("" = not read) */
	char dcs_config[OP_CONFIG_MAX];
};

struct op_step {
	const char *title;
	bool (*func)(struct op *op);
	const char *retry_hint;		/* what to do when it fails */
};

/* kind and state file path; nothing read yet */
void op_init(struct op *op, struct helper_config *cfg, const char *kind);

/*
 * GET /cluster and /patroni on patroni_url: members, leader, pause and
 * server version, and the dynamic configuration from Consul.  False (err
 * filled) without a leader, when patroni_url serves another scope than
 * helper.ini's, or when the scope has no configuration in Consul.
 */
bool op_discover(struct op *op, char *err, size_t errlen);

/* replicas that are not running/streaming or lag more than max_lag; false + err */
bool op_replicas_healthy(struct op *op, char *err, size_t errlen);

/* extra values kept in the state file */
void op_set(struct op *op, const char *key, const char *value);
const char *op_get(const struct op *op, const char *key);

/* state file: false when absent (exists = false) or unreadable (err) */
bool op_state_load(struct op *op, bool *exists, char *err, size_t errlen);
bool op_state_save(struct op *op, char *err, size_t errlen);

/*
 * Expand a template for member m (-1: none): %m name, %h host, %p port,
 * %v op->version, %s scope, %d data_dir for op->version, %b bin_dir for
 * op->version, %% a percent sign.  False on overflow or an unknown escape.
 */
bool op_expand(const struct op *op, const char *tmpl, int m, char *out, size_t len);

/* data_dir / bin_dir / patroni_config of member m for version v; checked paths */
bool op_path(struct op *op, const char *tmpl, int m, int version, char *out, size_t len);

/* single-quote s for /bin/sh */
bool op_shell_quote(const char *s, char *out, size_t len);

/*
 * Run a shell command on member m (through member_command).  Plan: print
 * it.  Run: log it and require exit 0; what names the action in errors.
 * A command still running at step_timeout (0 = no limit) is killed and
 * op->timed_out set.
 */
bool op_exec(struct op *op, int m, const char *cmd, const char *what);

/*
 * Run a shell command on member m (never in plan: the caller prints) and
 * collect its stdout into out; exit 0 required, failures logged.
 */
bool op_capture(struct op *op, int m, const char *cmd, const char *what, char *out,
		size_t len);

/* a message in the plan, a log line in a run */
void op_note(struct op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Patroni on member m stopped: REST silent and pg_ctl status says no server */
bool op_wait_patroni_down(struct op *op, int m, int version, uint64_t timeout_usec);

/* patroni_stop on member m (templates at version), then op_wait_patroni_down */
bool op_stop_patroni(struct op *op, int m, int version, uint64_t timeout_usec);

/* patroni_start on member m (templates at version); no wait */
bool op_start_patroni(struct op *op, int m, int version);

/*
 * Poll member m's GET /patroni until state running with role want_role
 * ("primary" also matches "master"; "replica") and, when version > 0,
 * that major server version.
 */
bool op_wait_patroni_up(struct op *op, int m, const char *want_role, int version,
			uint64_t timeout_usec);

/* the leader's /patroni lists every other member as streaming */
bool op_wait_streaming(struct op *op, uint64_t timeout_usec);

/* DELETE <namespace>/<scope>/ recursively in Consul and check it is gone */
bool op_dcs_remove(struct op *op);

/*
 * Write the saved dynamic configuration back to <namespace>/<scope>/config
 * before Patroni starts (it adopts a configuration it finds in the DCS);
 * a key already there must hold the same configuration.
 */
bool op_dcs_config_put(struct op *op);

/* every key of the saved configuration has its value in the leader's GET /config */
bool op_dcs_config_verify(struct op *op);

/*
 * Run steps[from-1..count-1]: plan prints them; run executes one at a
 * time, saving the next step in the state file, and stops at the first
 * failure saying how to resume.  Returns the exit status.
 */
int op_run_steps(struct op *op, const struct op_step *steps, int count, int from,
		 const char *resume_cmd);

/* 150004 -> 15, 130016 -> 13, 90624 -> 9 (9.6 counts as 9) */
int op_major(int server_version_num);

enum op_begin {
	OP_BEGIN_FRESH,		/* op reset: discover the cluster */
	OP_BEGIN_RESUME,	/* op loaded from the state file */
	OP_BEGIN_USAGE,		/* bad --from-step (logged) */
	OP_BEGIN_FAIL,		/* unreadable state, or a stopped run (logged) */
};

enum op_begin op_begin(struct op *op, struct helper_config *cfg, const char *kind,
		       bool dry_run, int from);

/* argument parsing shared by upgrade and restore; false/NULL are logged */
bool op_parse_step(const char *arg, int steps, int *step);
bool op_parse_wait(const char *arg, uint64_t *usec);
const char *op_parse_action(int argc, char **argv, int optind_, const char *kind);

#endif
