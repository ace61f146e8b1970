/*
 * Unit tests for lib/errbuf.c: bounded messages and the printable copy
 * of untrusted values quoted inside them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "errbuf.h"

static void
test_errbuf_set_formats(void **state)
{
	char err[64];

	errbuf_set(err, sizeof(err), "invalid port \"%s\" (%d)", "99999", 7);
	assert_string_equal(err, "invalid port \"99999\" (7)");
}

static void
test_errbuf_set_truncates(void **state)
{
	char err[6];

	errbuf_set(err, sizeof(err), "%s", "a long message");
	assert_string_equal(err, "a lon");
}

static void
test_errbuf_set_accepts_no_buffer(void **state)
{
	char err[4] = "abc";

	errbuf_set(NULL, 10, "x");
	errbuf_set(err, 0, "x");
	assert_string_equal(err, "abc");
}

static void
test_errbuf_printable_replaces_unsafe_bytes(void **state)
{
	char out[64];

	errbuf_printable("a\nb\"c\\d\x01\xff", out, sizeof(out));
	assert_string_equal(out, "a?b?c?d??");
	errbuf_printable(NULL, out, sizeof(out));
	assert_string_equal(out, "");
}

static void
test_errbuf_printable_marks_cut(void **state)
{
	char out[8];

	errbuf_printable("0123456789", out, sizeof(out));
	assert_string_equal(out, "0123...");
	errbuf_printable("0123456", out, sizeof(out));
	assert_string_equal(out, "0123456");
	errbuf_printable("01234567", out, sizeof(out));
	assert_string_equal(out, "0123...");
}

static void
test_errbuf_printable_tiny_buffer(void **state)
{
	char out[2];

	errbuf_printable("abc", out, sizeof(out));
	assert_string_equal(out, "a");
	errbuf_printable("abc", NULL, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errbuf_set_formats),
		cmocka_unit_test(test_errbuf_set_truncates),
		cmocka_unit_test(test_errbuf_set_accepts_no_buffer),
		cmocka_unit_test(test_errbuf_printable_replaces_unsafe_bytes),
		cmocka_unit_test(test_errbuf_printable_marks_cut),
		cmocka_unit_test(test_errbuf_printable_tiny_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
