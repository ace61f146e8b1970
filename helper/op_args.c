/*
 * Options of upgrade and restore: one getopt loop for both, with the
 * shared --from-step, --wait and --progress, and the plan|run word.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "duration.h"
#include "log.h"
#include "op_args.h"
#include "progress.h"

/* --from-step K, 1..steps; false (logged) otherwise */
static bool
parse_step(const char *arg, int steps, int *step)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < 1 || v > steps) {
		log_error("--from-step: \"%.32s\" is not a step number (1..%d)", arg, steps);
		return false;
	}
	*step = (int) v;
	return true;
}

/* the one word after the options: plan or run; NULL (logged) otherwise */
static const char *
parse_action(int argc, char **argv, int optind_, const char *kind)
{
	if (optind_ >= argc || (strcmp(argv[optind_], "plan") != 0 &&
				strcmp(argv[optind_], "run") != 0)) {
		log_error("%s needs plan or run (try --help)", kind);
		return NULL;
	}
	if (optind_ + 1 < argc) {
		log_error("unexpected argument \"%s\" (try --help)", argv[optind_ + 1]);
		return NULL;
	}
	return argv[optind_];
}

#define OP_OWN_MAX 8

bool
op_parse_args(int argc, char **argv, const char *kind, int steps, const struct option *own,
	      op_option_fn fn, void *ctx, struct op_args *out)
{
	static const struct option shared[] = {
		{"from-step", required_argument, NULL, 'F'},
		{"wait", required_argument, NULL, 'W'},
		{"progress", required_argument, NULL, 'P'},
	};
	struct option opts[OP_OWN_MAX + 4];
	uint64_t every;
	size_t n = 0, i;
	int c;

	for (; own[n].name != NULL && n < OP_OWN_MAX; n++)
		opts[n] = own[n];
	for (i = 0; i < 3; i++)
		opts[n + i] = shared[i];
	memset(&opts[n + 3], 0, sizeof(opts[0]));
	out->action = NULL;
	out->from = 1;
	out->wait_usec = UINT64_C(300) * DURATION_USEC_PER_SEC;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'F':
			if (!parse_step(optarg, steps, &out->from))
				return false;
			break;
		case 'W':
			if (!cmd_parse_duration("wait", optarg, &out->wait_usec))
				return false;
			break;
		case 'P':
			if (!cmd_parse_duration("progress", optarg, &every))
				return false;
			progress_set_interval(every);
			break;
		case '?':
		case ':':
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return false;
		default:
			if (!fn(ctx, c, optarg))
				return false;
			break;
		}
	}
	out->action = parse_action(argc, argv, optind, kind);
	return out->action != NULL;
}
