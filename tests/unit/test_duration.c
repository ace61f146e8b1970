/*
 * Unit tests for lib/duration.c: the duration forms operators write
 * and the ones that must be refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "duration.h"

static uint64_t
parse_ok(const char *text)
{
	char err[256] = "";
	uint64_t usec = 12345;

	if (!duration_parse(text, &usec, err, sizeof(err)))
		fail_msg("\"%s\" refused: %s", text, err);
	return usec;
}

static void
parse_refused(const char *text, const char *expect_in_err)
{
	char err[256] = "";
	uint64_t usec = 777;

	if (duration_parse(text, &usec, err, sizeof(err)))
		fail_msg("\"%s\" accepted as %llu", text, (unsigned long long) usec);
	assert_int_equal(usec, 777);
	if (strstr(err, expect_in_err) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect_in_err);
}

static void
test_duration_parse_units(void **state)
{
	assert_int_equal(parse_ok("300s"), UINT64_C(300000000));
	assert_int_equal(parse_ok("5m"), UINT64_C(300000000));
	assert_int_equal(parse_ok("1h"), UINT64_C(3600000000));
	assert_int_equal(parse_ok("250ms"), UINT64_C(250000));
	assert_int_equal(parse_ok("15us"), UINT64_C(15));
	assert_int_equal(parse_ok("2d"), UINT64_C(172800000000));
}

static void
test_duration_parse_plain_number_is_seconds(void **state)
{
	assert_int_equal(parse_ok("30"), UINT64_C(30000000));
	assert_int_equal(parse_ok("0"), 0);
	assert_int_equal(parse_ok("2.5"), UINT64_C(2500000));
}

static void
test_duration_parse_fractions(void **state)
{
	assert_int_equal(parse_ok("1.5s"), UINT64_C(1500000));
	assert_int_equal(parse_ok("0.25m"), UINT64_C(15000000));
	assert_int_equal(parse_ok(".5s"), UINT64_C(500000));
	/* 0.0000001 s is below a microsecond: dropped, not rounded up */
	assert_int_equal(parse_ok("0.0000001s"), 0);
	/* many digits: no overflow inside the fraction arithmetic */
	assert_int_equal(parse_ok("1.123456789123d"), UINT64_C(97066666580));
}

static void
test_duration_parse_compound(void **state)
{
	assert_int_equal(parse_ok("1h30m"), UINT64_C(5400000000));
	assert_int_equal(parse_ok("1m30s500ms"), UINT64_C(90500000));
	assert_int_equal(parse_ok("0s"), 0);
}

static void
test_duration_parse_rejects_empty(void **state)
{
	char err[64];
	uint64_t usec;

	parse_refused("", "empty duration");
	assert_false(duration_parse(NULL, &usec, err, sizeof(err)));
}

static void
test_duration_parse_rejects_negative(void **state)
{
	parse_refused("-5s", "invalid duration \"-5s\"");
	parse_refused("+5s", "invalid duration");
}

static void
test_duration_parse_rejects_garbage(void **state)
{
	parse_refused("abc", "invalid duration \"abc\"");
	parse_refused("5 s", "unknown unit");
	parse_refused(" 5s", "invalid duration");
	parse_refused("5x", "unknown unit");
	parse_refused("s", "expected a number");
	parse_refused(".", "expected a number");
	parse_refused("1.2.3s", "invalid duration");
}

static void
test_duration_parse_rejects_trailing_junk(void **state)
{
	parse_refused("300s;", "unknown unit");
	parse_refused("5mm", "unknown unit");
	parse_refused("1h30", "missing unit");
	parse_refused("10s\n", "unknown unit");
}

static void
test_duration_parse_rejects_overflow(void **state)
{
	parse_refused("18446744073709551616us", "too large");
	parse_refused("99999999999999999999", "too large");
	parse_refused("213503983d", "too large");
	parse_refused("18446744073709551615us1us", "too large");
	/* the largest value still fits */
	assert_int_equal(parse_ok("18446744073709551615us"), UINT64_MAX);
}

static void
test_duration_parse_error_buffer_bounded(void **state)
{
	char err[8];
	uint64_t usec;

	memset(err, 'X', sizeof(err));
	assert_false(duration_parse("garbage-value", &usec, err, sizeof(err)));
	assert_int_equal(strlen(err), sizeof(err) - 1);
	/* a NULL buffer is allowed too */
	assert_false(duration_parse("garbage", &usec, NULL, 0));
}

static void
test_duration_format_picks_exact_unit(void **state)
{
	char buf[32];

	duration_format(UINT64_C(300000000), buf, sizeof(buf));
	assert_string_equal(buf, "300s");
	duration_format(UINT64_C(250000), buf, sizeof(buf));
	assert_string_equal(buf, "250ms");
	duration_format(UINT64_C(1500), buf, sizeof(buf));
	assert_string_equal(buf, "1500us");
	duration_format(0, buf, sizeof(buf));
	assert_string_equal(buf, "0");
	duration_format(UINT64_C(1500000), buf, sizeof(buf));
	assert_string_equal(buf, "1500ms");
}

static void
test_duration_format_round_trips(void **state)
{
	static const uint64_t values[] = {
		1, 999, 1000, 1001, 1000000, 1500000, 300000000, UINT64_MAX
	};
	char buf[32];
	size_t i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		duration_format(values[i], buf, sizeof(buf));
		assert_int_equal(parse_ok(buf), values[i]);
	}
}

static void
test_duration_format_truncates_safely(void **state)
{
	char buf[4];

	duration_format(UINT64_C(300000000), buf, sizeof(buf));
	assert_string_equal(buf, "300");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_parse_units),
		cmocka_unit_test(test_duration_parse_plain_number_is_seconds),
		cmocka_unit_test(test_duration_parse_fractions),
		cmocka_unit_test(test_duration_parse_compound),
		cmocka_unit_test(test_duration_parse_rejects_empty),
		cmocka_unit_test(test_duration_parse_rejects_negative),
		cmocka_unit_test(test_duration_parse_rejects_garbage),
		cmocka_unit_test(test_duration_parse_rejects_trailing_junk),
		cmocka_unit_test(test_duration_parse_rejects_overflow),
		cmocka_unit_test(test_duration_parse_error_buffer_bounded),
		cmocka_unit_test(test_duration_format_picks_exact_unit),
		cmocka_unit_test(test_duration_format_round_trips),
		cmocka_unit_test(test_duration_format_truncates_safely),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
