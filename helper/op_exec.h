/*
 * Commands on members through member_command: printed in a plan, run,
 * logged and checked in a run.
 */
#ifndef PGBC_HELPER_OP_EXEC_H
#define PGBC_HELPER_OP_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/*
 * Run a shell command on member m (through member_command).  Plan: print
 * it.  Run: log it and require exit 0; what names the action in errors.
 * A command still running at step_timeout (0 = no limit) is killed and
 * op->timed_out set.
 */
bool op_exec(struct op *op, int m, const char *cmd, const char *what);

/*
 * op_exec for a long command (pg_upgrade, pgbackrest restore): progress
 * lines while it runs ("still running <what> on <member>: 20 s of 3600
 * s"), its stdout and stderr logged line by line, secrets masked.
 */
bool op_exec_long(struct op *op, int m, const char *cmd, const char *what);

/*
 * Run a shell command on member m (never in plan: the caller prints) and
 * collect its stdout into out; exit 0 required, failures logged.
 */
bool op_capture(struct op *op, int m, const char *cmd, const char *what, char *out,
		size_t len);

#endif
