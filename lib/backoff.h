/*
 * Retry pacing: capped exponential backoff with decorrelated jitter for
 * failing Consul requests, and a token bucket that rate-limits the
 * blocking-query loop when Consul keeps waking it early.
 */
#ifndef PGBC_BACKOFF_H
#define PGBC_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint64_t base_usec;	/* first delay and lower bound of every delay */
	uint64_t cap_usec;	/* upper bound of every delay */
	uint64_t current_usec;	/* last delay handed out; 0 = none since reset */
	unsigned int seed;	/* PRNG state (xorshift32), any value */
};

struct rate_limit {
	double tokens;		/* may go below 0: requests already paid for by a delay */
	double burst;		/* bucket size (at least 1) */
	double per_sec;		/* refill rate; <= 0 means no limit */
	uint64_t last_usec;	/* time of the last refill */
};

/* base is raised to at least 1 usec and cap to at least base */
void backoff_init(struct backoff *b, uint64_t base, uint64_t cap, unsigned int seed);

/*
 * The delay before the next retry: "decorrelated jitter" (AWS
 * architecture blog): uniform in [base, 3 * previous], capped; the first
 * after init/reset is base.  Never 0, never above cap.
 */
uint64_t backoff_next(struct backoff *b);

/*
 * backoff_next, lengthened to what the server asked for (Retry-After,
 * 0: nothing asked) but never above cap: a server that asks for more
 * than cap is retried at cap, as if it had not asked.
 */
uint64_t backoff_next_hinted(struct backoff *b, uint64_t hint_usec);

/* after a success: the next failure starts again from base */
void backoff_reset(struct backoff *b);

/* a full bucket of burst tokens refilled at per_sec tokens a second */
void rate_limit_init(struct rate_limit *r, double burst, double per_sec);

/*
 * Usec to wait, from now_usec (a monotonic clock), before the next
 * request; consumes that request's token.  0 while the bucket holds one.
 */
uint64_t rate_limit_delay(struct rate_limit *r, uint64_t now_usec);

#endif
