/*
 * Progress lines for long steps: one when a wait or a command starts,
 * one every interval while it lasts ("still waiting for X: 20 s of 300 s,
 * last seen: <state>"), one when it ends with the time it took.
 */
#ifndef PGBC_HELPER_PROGRESS_H
#define PGBC_HELPER_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "duration.h"

#define PROGRESS_DEFAULT_USEC (UINT64_C(10) * DURATION_USEC_PER_SEC)

enum progress_kind {
	PROGRESS_WAIT,		/* polling for a state: "waiting for X" */
	PROGRESS_RUN,		/* a child process: "running X" */
};

struct progress {
	enum progress_kind kind;
	char what[512];
	uint64_t start;		/* clock_usec() at progress_begin */
	uint64_t next;		/* when the next "still" line is due */
	uint64_t limit_usec;	/* 0 = no limit */
};

/* every how long a "still" line is logged (PROGRESS_DEFAULT_USEC until set) */
void progress_set_interval(uint64_t usec);

/* log the start line; what names the wait or the command and where it runs */
void progress_begin(struct progress *p, enum progress_kind kind, uint64_t limit_usec,
		    const char *what);

/* log a "still" line when one is due; last_seen may be NULL (commands) */
void progress_tick(struct progress *p, const char *last_seen);

/* log the end line: done (ok) or given up, with the time taken */
void progress_end(struct progress *p, bool ok);

/* microseconds since progress_begin */
uint64_t progress_elapsed(const struct progress *p);

#endif
