/*
 * Unit tests for lib/backoff.c: jittered backoff bounds and determinism,
 * and the token bucket pacing the blocking-query loop.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "backoff.h"

#define SEC UINT64_C(1000000)

static void
test_backoff_next_starts_at_base(void **state)
{
	struct backoff b;

	backoff_init(&b, 100000, 30 * SEC, 42);
	assert_int_equal(backoff_next(&b), 100000);
}

static void
test_backoff_next_stays_within_bounds(void **state)
{
	struct backoff b;
	uint64_t prev, d;
	int i;

	backoff_init(&b, 100000, 30 * SEC, 7);
	prev = backoff_next(&b);
	for (i = 0; i < 10000; i++) {
		d = backoff_next(&b);
		assert_true(d >= 100000);
		assert_true(d <= 30 * SEC);
		assert_true(d <= prev * 3);
		prev = d;
	}
}

static void
test_backoff_next_grows_to_cap(void **state)
{
	struct backoff b;
	uint64_t max = 0, d;
	int i;

	backoff_init(&b, 100000, 30 * SEC, 1);
	for (i = 0; i < 200; i++) {
		d = backoff_next(&b);
		if (d > max)
			max = d;
	}
	/* a long failure run must get near the cap, not stay near base */
	assert_true(max > 20 * SEC);
}

static void
test_backoff_next_hinted_honours_hint_up_to_cap(void **state)
{
	struct backoff b;

	backoff_init(&b, 100000, 30 * SEC, 42);
	/* no hint: the plain backoff (base first) */
	assert_int_equal(backoff_next_hinted(&b, 0), 100000);
	backoff_reset(&b);
	/* a hint above the backoff wins */
	assert_int_equal(backoff_next_hinted(&b, 2 * SEC), 2 * SEC);
	/* a hint above cap is cut to cap */
	assert_int_equal(backoff_next_hinted(&b, 3600 * SEC), 30 * SEC);
	backoff_reset(&b);
	/* a hint below the backoff changes nothing */
	assert_int_equal(backoff_next_hinted(&b, 1000), 100000);
}

static void
test_backoff_next_is_jittered(void **state)
{
	struct backoff b;
	uint64_t first, d;
	bool differs = false;
	int i;

	backoff_init(&b, 100000, 30 * SEC, 3);
	backoff_next(&b);
	first = backoff_next(&b);
	for (i = 0; i < 50; i++) {
		d = backoff_next(&b);
		if (d != first)
			differs = true;
	}
	assert_true(differs);
}

static void
test_backoff_next_deterministic_per_seed(void **state)
{
	struct backoff a, b, c;
	bool same_ab = true, same_ac = true;
	uint64_t x, y, z;
	int i;

	backoff_init(&a, 1000, 60 * SEC, 12345);
	backoff_init(&b, 1000, 60 * SEC, 12345);
	backoff_init(&c, 1000, 60 * SEC, 54321);
	for (i = 0; i < 20; i++) {
		x = backoff_next(&a);
		y = backoff_next(&b);
		z = backoff_next(&c);
		if (x != y)
			same_ab = false;
		if (x != z)
			same_ac = false;
	}
	assert_true(same_ab);
	assert_false(same_ac);
}

static void
test_backoff_reset_returns_to_base(void **state)
{
	struct backoff b;
	int i;

	backoff_init(&b, 250000, 10 * SEC, 9);
	for (i = 0; i < 30; i++)
		backoff_next(&b);
	backoff_reset(&b);
	assert_int_equal(backoff_next(&b), 250000);
}

static void
test_backoff_init_clamps_base_and_cap(void **state)
{
	struct backoff b;
	int i;

	backoff_init(&b, 0, 0, 1);
	for (i = 0; i < 10; i++)
		assert_int_equal(backoff_next(&b), 1);
	backoff_init(&b, 5 * SEC, SEC, 1);
	for (i = 0; i < 10; i++)
		assert_int_equal(backoff_next(&b), 5 * SEC);
}

static void
test_backoff_next_no_overflow_near_max(void **state)
{
	struct backoff b;
	uint64_t d;
	int i;

	backoff_init(&b, UINT64_MAX / 4, UINT64_MAX, 5);
	for (i = 0; i < 100; i++) {
		d = backoff_next(&b);
		assert_true(d >= UINT64_MAX / 4);
	}
}

static void
test_rate_limit_delay_allows_burst(void **state)
{
	struct rate_limit r;

	rate_limit_init(&r, 2, 1.0 / 15);
	assert_int_equal(rate_limit_delay(&r, 1000 * SEC), 0);
	assert_int_equal(rate_limit_delay(&r, 1000 * SEC), 0);
	assert_int_equal(rate_limit_delay(&r, 1000 * SEC), 15 * SEC);
}

static void
test_rate_limit_delay_paces_churn(void **state)
{
	struct rate_limit r;
	uint64_t now = 50 * SEC;
	uint64_t d;
	int i;

	rate_limit_init(&r, 2, 1.0 / 15);
	rate_limit_delay(&r, now);
	rate_limit_delay(&r, now);
	/* Consul answering at once each time: one request per 15 s */
	for (i = 0; i < 10; i++) {
		d = rate_limit_delay(&r, now);
		assert_true(d >= 15 * SEC - 1 && d <= 15 * SEC + 1);
		now += d;
	}
}

static void
test_rate_limit_delay_refills_after_quiet(void **state)
{
	struct rate_limit r;

	rate_limit_init(&r, 2, 1.0 / 15);
	rate_limit_delay(&r, 10 * SEC);
	rate_limit_delay(&r, 10 * SEC);
	/* a long blocking query that returned after 5 minutes: bucket full, not fuller */
	assert_int_equal(rate_limit_delay(&r, 310 * SEC), 0);
	assert_int_equal(rate_limit_delay(&r, 310 * SEC), 0);
	assert_true(rate_limit_delay(&r, 310 * SEC) > 0);
}

static void
test_rate_limit_delay_partial_token(void **state)
{
	struct rate_limit r;
	uint64_t d;

	rate_limit_init(&r, 1, 1.0);
	assert_int_equal(rate_limit_delay(&r, 100 * SEC), 0);
	/* 0.25 s later a quarter token is back: wait the other 0.75 s */
	d = rate_limit_delay(&r, 100 * SEC + 250000);
	assert_true(d >= 749999 && d <= 750001);
}

static void
test_rate_limit_delay_clock_backwards(void **state)
{
	struct rate_limit r;

	rate_limit_init(&r, 1, 1.0);
	assert_int_equal(rate_limit_delay(&r, 100 * SEC), 0);
	/* an earlier time must not refill anything */
	assert_true(rate_limit_delay(&r, 50 * SEC) >= SEC - 1);
}

static void
test_rate_limit_delay_unlimited(void **state)
{
	struct rate_limit r;
	int i;

	rate_limit_init(&r, 1, 0);
	for (i = 0; i < 100; i++)
		assert_int_equal(rate_limit_delay(&r, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_next_starts_at_base),
		cmocka_unit_test(test_backoff_next_stays_within_bounds),
		cmocka_unit_test(test_backoff_next_grows_to_cap),
		cmocka_unit_test(test_backoff_next_is_jittered),
		cmocka_unit_test(test_backoff_next_hinted_honours_hint_up_to_cap),
		cmocka_unit_test(test_backoff_next_deterministic_per_seed),
		cmocka_unit_test(test_backoff_reset_returns_to_base),
		cmocka_unit_test(test_backoff_init_clamps_base_and_cap),
		cmocka_unit_test(test_backoff_next_no_overflow_near_max),
		cmocka_unit_test(test_rate_limit_delay_allows_burst),
		cmocka_unit_test(test_rate_limit_delay_paces_churn),
		cmocka_unit_test(test_rate_limit_delay_refills_after_quiet),
		cmocka_unit_test(test_rate_limit_delay_partial_token),
		cmocka_unit_test(test_rate_limit_delay_clock_backwards),
		cmocka_unit_test(test_rate_limit_delay_unlimited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
