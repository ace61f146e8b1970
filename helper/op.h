/*
 * Multi-step cluster operations (upgrade, restore): the operation's state
 * (members as Patroni reported them, values kept for resuming) and the
 * step table.  The machinery is one file a job: op_discover (the live
 * cluster), op_state (state file and lock), op_template (templates and
 * quoting), op_exec (commands on members), op_wait (Patroni stop, start
 * and the waits), op_dcs (DCS removal and the dynamic configuration),
 * op_steps (the step runner), op_args (upgrade's and restore's options).
 */
#ifndef PGBC_HELPER_OP_H
#define PGBC_HELPER_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "helper_config.h"
#include "patroni_rest.h"

#define OP_MEMBERS_MAX 16
#define OP_VARS_MAX 16
#define OP_CMD_MAX 8192
#define OP_CONFIG_MAX 65536	/* Patroni's dynamic configuration, compact JSON */

/* name, host (from conn_url), port, api (REST base), role, state, lag */
#define op_member patroni_rest_member

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

/* extra values kept in the state file */
void op_set(struct op *op, const char *key, const char *value);
const char *op_get(const struct op *op, const char *key);

/* a message in the plan, a log line in a run */
void op_note(struct op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 150004 -> 15, 130016 -> 13, 90624 -> 9 (9.6 counts as 9) */
int op_major(int server_version_num);

#endif
