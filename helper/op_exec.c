/*
 * Commands on members: member_command around the quoted command, printed
 * in a plan (secrets masked), run in a run with step_timeout, exit 0
 * required.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "op_exec.h"
#include "op_template.h"
#include "progress.h"
#include "run.h"
#include "secret.h"

/* the command as it runs: member_command prefix + quoted cmd, or cmd */
static bool
full_command(struct op *op, int m, const char *cmd, char *out, size_t len)
{
	static char prefix[OP_CMD_MAX];
	static char quoted[OP_CMD_MAX];

	if (op->cfg->member_command[0] == '\0')
		return snprintf(out, len, "%s", cmd) < (int) len;
	if (!op_expand(op, op->cfg->member_command, m, prefix, sizeof(prefix))) {
		log_error("cannot expand member_command \"%s\"", op->cfg->member_command);
		return false;
	}
	if (!op_shell_quote(cmd, quoted, sizeof(quoted)))
		return false;
	return snprintf(out, len, "%s %s", prefix, quoted) < (int) len;
}

/* a command that could not run, or was killed at step_timeout (op->timed_out) */
static void
exec_failed(const struct op *op, int m, const char *what, const char *err)
{
	const char *on = m >= 0 ? op->members[m].name : "local";

	if (op->timed_out)
		log_error("%s on %s: %s: killed at step_timeout ([upgrade] step_timeout in "
			  "helper.ini or --upgrade-step-timeout; 0 = no limit)", what, on, err);
	else
		log_error("%s on %s: %s", what, on, err);
}

/* a long command's output and ticks: each line logged (masked there), progress lines */
struct op_watch {
	const char *on;
	struct progress progress;
};

static void
watch_line(void *arg, const char *line)
{
	struct op_watch *w = arg;

	log_info("[%s] %s", w->on, line);
}

static void
watch_tick(void *arg)
{
	struct op_watch *w = arg;

	progress_tick(&w->progress, NULL);
}

/* run cmd on member m (-1: here) through /bin/sh; out NULL: no capture; long: progress */
static bool
op_run(struct op *op, int m, const char *cmd, const char *what, char *out, size_t len,
       bool long_running)
{
	static struct op_watch ow;
	struct run_watch watch = {watch_line, watch_tick, &ow};
	char title[600];
	static char full[OP_CMD_MAX * 2];
	static char shown[OP_CMD_MAX * 2];
	const char *on = m >= 0 ? op->members[m].name : "local";
	char *argv[4];
	char err[1024];
	int status = 0;
	bool ran;

	if (!full_command(op, m, cmd, full, sizeof(full))) {
		log_error("%s: command too long for member %s", what,
			  m >= 0 ? op->members[m].name : "-");
		return false;
	}
	if (!out && op->dry_run) {
		secret_mask(full, shown, sizeof(shown));
		printf("    [%s] %s\n", on, shown);
		return true;
	}
	log_info("%s on %s: $ %s", what, on, full);
	argv[0] = (char *) "/bin/sh";
	argv[1] = (char *) "-c";
	argv[2] = full;
	argv[3] = NULL;
	op->timed_out = false;
	if (out) {
		ran = run_capture(argv, op->cfg->step_timeout_usec, &status, out, len, err,
				  sizeof(err));
	} else if (long_running) {
		ow.on = on;
		snprintf(title, sizeof(title), "%s on %s", what, on);
		progress_begin(&ow.progress, PROGRESS_RUN, op->cfg->step_timeout_usec, title);
		ran = run_relay(argv, op->cfg->step_timeout_usec, &watch, &status, err,
				sizeof(err));
		progress_end(&ow.progress, ran && status == 0);
	} else {
		ran = run_command(argv, op->cfg->step_timeout_usec, &status, err, sizeof(err));
	}
	if (!ran) {
		op->timed_out = status == -1;
		exec_failed(op, m, what, err);
		return false;
	}
	if (status != 0) {
		log_error("%s on %s failed (exit code %d): %s", what, on, status, full);
		return false;
	}
	return true;
}

bool
op_capture(struct op *op, int m, const char *cmd, const char *what, char *out, size_t len)
{
	return op_run(op, m, cmd, what, out, len, false);
}

bool
op_exec(struct op *op, int m, const char *cmd, const char *what)
{
	return op_run(op, m, cmd, what, NULL, 0, false);
}

bool
op_exec_long(struct op *op, int m, const char *cmd, const char *what)
{
	return op_run(op, m, cmd, what, NULL, 0, true);
}
