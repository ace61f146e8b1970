/*
 * Retry pacing for Consul requests: capped backoff with decorrelated
 * jitter from a per-instance seed, and a token bucket for the
 * blocking-query loop.  No global state, no clock reads: callers pass time.
 */
#include "backoff.h"

/*
 * xorshift32 (Marsaglia) on the caller's seed: rand_r-style, deterministic
 * per instance, no global state, and portable where rand_r is not declared.
 */
static uint32_t
backoff_rand(unsigned int *seed)
{
	uint32_t x = (uint32_t) *seed;

	if (x == 0)
		x = 0x9e3779b9u;	/* xorshift never leaves 0 */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*seed = x;
	return x;
}

/* uniform in [lo, hi] (modulo bias below 2^-32 for spans under 2^32) */
static uint64_t
backoff_random_between(unsigned int *seed, uint64_t lo, uint64_t hi)
{
	uint64_t r;
	uint64_t span;

	if (hi <= lo)
		return lo;
	r = ((uint64_t) backoff_rand(seed) << 32) | backoff_rand(seed);
	span = hi - lo;
	if (span == UINT64_MAX)
		return r;
	return lo + r % (span + 1);
}

void
backoff_init(struct backoff *b, uint64_t base, uint64_t cap, unsigned int seed)
{
	b->base_usec = base > 0 ? base : 1;
	b->cap_usec = cap > b->base_usec ? cap : b->base_usec;
	b->current_usec = 0;
	b->seed = seed;
}

uint64_t
backoff_next(struct backoff *b)
{
	uint64_t hi;

	if (b->current_usec == 0) {
		b->current_usec = b->base_usec;
		return b->current_usec;
	}
	/* 3 * current, without overflow, no higher than cap */
	if (b->current_usec > b->cap_usec / 3)
		hi = b->cap_usec;
	else
		hi = b->current_usec * 3;
	b->current_usec = backoff_random_between(&b->seed, b->base_usec, hi);
	return b->current_usec;
}

uint64_t
backoff_next_hinted(struct backoff *b, uint64_t hint_usec)
{
	uint64_t d = backoff_next(b);

	if (hint_usec > b->cap_usec)
		hint_usec = b->cap_usec;
	return hint_usec > d ? hint_usec : d;
}

void
backoff_reset(struct backoff *b)
{
	b->current_usec = 0;
}

void
rate_limit_init(struct rate_limit *r, double burst, double per_sec)
{
	r->burst = burst >= 1.0 ? burst : 1.0;
	r->per_sec = per_sec;
	r->tokens = r->burst;
	r->last_usec = 0;
}

uint64_t
rate_limit_delay(struct rate_limit *r, uint64_t now_usec)
{
	double deficit;

	if (r->per_sec <= 0.0)
		return 0;
	/* a clock that went backwards refills nothing */
	if (now_usec > r->last_usec) {
		r->tokens += (double) (now_usec - r->last_usec) / 1e6 * r->per_sec;
		if (r->tokens > r->burst)
			r->tokens = r->burst;
		r->last_usec = now_usec;
	}
	r->tokens -= 1.0;
	if (r->tokens >= 0.0)
		return 0;
	deficit = -r->tokens;
	/* round up: waking a microsecond early would find no token */
	return (uint64_t) (deficit / r->per_sec * 1e6 + 0.999999);
}
