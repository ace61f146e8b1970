/*
 * Progress of waits and long commands as log lines an operator can
 * follow: start, every interval, end with the time taken.
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "progress.h"

static uint64_t progress_interval = PROGRESS_DEFAULT_USEC;

void
progress_set_interval(uint64_t usec)
{
	progress_interval = usec;
}

/* " (up to 300 s)" or " (no limit)" */
static void
limit_text(uint64_t limit_usec, char *out, size_t len)
{
	if (limit_usec == 0)
		snprintf(out, len, "no limit");
	else
		snprintf(out, len, "up to %.0f s", (double) limit_usec / 1e6);
}

void
progress_begin(struct progress *p, enum progress_kind kind, uint64_t limit_usec,
	       const char *what)
{
	char limit[64];

	p->kind = kind;
	snprintf(p->what, sizeof(p->what), "%s", what);
	p->start = clock_usec();
	p->next = p->start + progress_interval;
	p->limit_usec = limit_usec;
	limit_text(limit_usec, limit, sizeof(limit));
	log_info("%s %s (%s)", kind == PROGRESS_WAIT ? "waiting for" : "running", p->what, limit);
}

uint64_t
progress_elapsed(const struct progress *p)
{
	return clock_usec() - p->start;
}

void
progress_tick(struct progress *p, const char *last_seen)
{
	uint64_t now = clock_usec();
	char of[64] = "";

	if (now < p->next)
		return;
	while (p->next <= now)
		p->next += progress_interval;
	if (p->limit_usec > 0)
		snprintf(of, sizeof(of), " of %.0f s", (double) p->limit_usec / 1e6);
	else
		snprintf(of, sizeof(of), " (no limit)");
	log_info("still %s %s: %.0f s%s%s%s", p->kind == PROGRESS_WAIT ? "waiting for" : "running",
		 p->what, (double) (now - p->start) / 1e6, of,
		 last_seen ? ", last seen: " : "", last_seen ? last_seen : "");
}

void
progress_end(struct progress *p, bool ok)
{
	double took = (double) progress_elapsed(p) / 1e6;

	if (p->kind == PROGRESS_WAIT)
		log_info("%s %s after %.1f s", ok ? "done waiting for" : "gave up waiting for",
			 p->what, took);
	else
		log_info("%s %s after %.1f s", ok ? "finished" : "failed:", p->what, took);
}
