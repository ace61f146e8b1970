/*
 * Running the steps of an upgrade or restore: start or resume against
 * the state file, one step at a time, saying how to resume on failure.
 */
#ifndef PGBC_HELPER_OP_STEPS_H
#define PGBC_HELPER_OP_STEPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/*
 * Run steps[from-1..count-1]: plan prints them; run executes one at a
 * time, saving the next step in the state file, and stops at the first
 * failure saying how to resume.  Returns the exit status.
 */
int op_run_steps(struct op *op, const struct op_step *steps, int count, int from,
		 const char *resume_cmd);

enum op_begin {
	OP_BEGIN_FRESH,		/* op reset: discover the cluster */
	OP_BEGIN_RESUME,	/* op loaded from the state file */
	OP_BEGIN_USAGE,		/* bad --from-step (logged) */
	OP_BEGIN_FAIL,		/* unreadable state, or a stopped run (logged) */
};

enum op_begin op_begin(struct op *op, struct helper_config *cfg, const char *kind,
		       bool dry_run, int from);

#endif
