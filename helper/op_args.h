/*
 * The command line of upgrade and restore: their own options, the ones
 * they share (--from-step, --wait, --progress) and the action word.
 */
#ifndef PGBC_HELPER_OP_ARGS_H
#define PGBC_HELPER_OP_ARGS_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

struct op_args {
	const char *action;	/* "plan" or "run" */
	int from;		/* --from-step K (1 when absent) */
	uint64_t wait_usec;	/* --wait D (300 s when absent) */
};

/* one of the subcommand's own options (val c, optarg arg); false when bad (logged) */
typedef bool (*op_option_fn)(void *ctx, int c, const char *arg);

/*
 * getopt_long over own (terminated by a zero entry; vals other than 'F',
 * 'W', 'P') and the shared options, then exactly one action, plan or run.
 * --progress D sets progress_set_interval.  False (logged) on bad usage.
 */
bool op_parse_args(int argc, char **argv, const char *kind, int steps,
		   const struct option *own, op_option_fn fn, void *ctx, struct op_args *out);

#endif
