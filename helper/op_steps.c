/*
 * The step runner of upgrade and restore: start or resume (lock, state
 * file, live check), then one step at a time with the state saved before
 * each, and how to resume after a failure.
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "commands.h"
#include "log.h"
#include "op_discover.h"
#include "op_state.h"
#include "op_steps.h"

int
op_run_steps(struct op *op, const struct op_step *steps, int count, int from,
	     const char *resume_cmd)
{
	char err[1024];
	uint64_t t0, all = clock_usec();
	int k;

	for (k = from; k <= count; k++) {
		if (op->dry_run) {
			printf("\nstep %d/%d: %s\n", k, count, steps[k - 1].title);
			if (!steps[k - 1].func(op))
				return HELPER_EXIT_FAIL;
			continue;
		}
		log_info("step %d/%d: %s", k, count, steps[k - 1].title);
		op->next_step = k;
		strcpy(op->status, "running");
		if (!op_state_save(op, err, sizeof(err))) {
			log_error("%s", err);
			return HELPER_EXIT_FAIL;
		}
		t0 = clock_usec();
		if (!steps[k - 1].func(op)) {
			strcpy(op->status, "failed");
			if (!op_state_save(op, err, sizeof(err)))
				log_error("%s", err);
			log_error("step %d/%d (%s) failed; nothing after it was run", k, count,
				  steps[k - 1].title);
			if (steps[k - 1].retry_hint)
				log_error("what to do: %s", steps[k - 1].retry_hint);
			log_error("after fixing it, resume with: %s --from-step %d", resume_cmd, k);
			return HELPER_EXIT_FAIL;
		}
		log_info("step %d/%d done in %.1f s", k, count, (double) (clock_usec() - t0) / 1e6);
	}
	if (!op->dry_run) {
		op->next_step = count + 1;
		strcpy(op->status, "done");
		if (!op_state_save(op, err, sizeof(err)))
			log_error("%s", err);
		log_info("%s of scope %s finished: steps %d-%d in %.1f s", op->kind,
			 op->cfg->scope, from, count, (double) (clock_usec() - all) / 1e6);
	}
	return HELPER_EXIT_OK;
}

/*
 * Start or resume a run.  With from > 1 the state file must exist and
 * have reached that step: op holds it (OP_BEGIN_RESUME).  Otherwise a run
 * that stopped refuses a fresh start unless this is a plan, and op is
 * reset for one (OP_BEGIN_FRESH).  Errors are logged.
 */
enum op_begin
op_begin(struct op *op, struct helper_config *cfg, const char *kind, bool dry_run, int from)
{
	char err[1024];
	bool exists;

	/* the scope names the state file and every DCS path: never run without one */
	if (!cmd_scope_set(cfg))
		return OP_BEGIN_USAGE;
	op_init(op, cfg, kind);
	op->dry_run = dry_run;
	if (!dry_run && !op_lock(op))
		return OP_BEGIN_FAIL;
	if (!op_state_load(op, &exists, err, sizeof(err)) && exists) {
		log_error("%s", err);
		return OP_BEGIN_FAIL;
	}
	if (from > 1) {
		if (!exists) {
			log_error("--from-step %d: no state file %s (start with --from-step 1)",
				  from, op->state_path);
			return OP_BEGIN_USAGE;
		}
		if (from > op->next_step) {
			log_error("--from-step %d: steps before %d have not been done (state file %s)",
				  from, op->next_step, op->state_path);
			return OP_BEGIN_USAGE;
		}
		/* the state file is only a file: never stop members it merely names */
		if (!op_check_live(op, err, sizeof(err))) {
			log_error("%s: refusing to resume from the state file %s", err,
				  op->state_path);
			return OP_BEGIN_FAIL;
		}
		return OP_BEGIN_RESUME;
	}
	if (exists && !dry_run && strcmp(op->status, "done") != 0) {
		log_error("the %s of scope %s stopped at step %d (state file %s): resume "
			  "with --from-step %d, or remove the file to start over", kind,
			  cfg->scope, op->next_step, op->state_path, op->next_step);
		return OP_BEGIN_FAIL;
	}
	op_init(op, cfg, kind);
	op->dry_run = dry_run;
	return OP_BEGIN_FRESH;
}
