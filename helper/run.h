/*
 * Child processes for pgbouncer-helper: run a program (pgbackrest) in its
 * own process group with a deadline, and say how it ended.
 */
#ifndef PGBC_HELPER_RUN_H
#define PGBC_HELPER_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Run argv (argv[0] looked up in PATH) with stdin from /dev/null and
 * stdout/stderr inherited.  After timeout_usec (0 = no limit) the child's
 * process group gets SIGTERM, 5 s later SIGKILL.  *status = exit code,
 * 128 + signal when killed, -1 when timed out.  False (err filled) when it
 * could not start or timed out.
 */
bool run_command(char *const argv[], uint64_t timeout_usec, int *status, char *err,
		 size_t errlen);

/*
 * run_command with the child's stdout collected into out (NUL-terminated);
 * false (err filled) also when it printed outlen bytes or more.
 */
bool run_capture(char *const argv[], uint64_t timeout_usec, int *status, char *out,
		 size_t outlen, char *err, size_t errlen);

/* what run_relay calls: each output line (NUL-terminated, no newline), and a tick */
struct run_watch {
	void (*line)(void *arg, const char *line);
	void (*tick)(void *arg);	/* about every 50 ms while the child runs */
	void *arg;
};

/*
 * run_command with the child's stdout and stderr read through a pipe and
 * handed to watch->line one line at a time (so that they can be masked
 * and logged), and watch->tick called while it runs.  Output the child
 * leaves to processes it started in the background is not waited for.
 */
bool run_relay(char *const argv[], uint64_t timeout_usec, const struct run_watch *watch,
	       int *status, char *err, size_t errlen);

/* "pgbackrest --stanza=main check" for log lines */
void run_describe(char *const argv[], char *out, size_t len);

#endif
