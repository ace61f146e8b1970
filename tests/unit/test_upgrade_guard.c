/*
 * Unit tests for helper/upgrade_guard.c: pg_upgrade's transfer mode from
 * pg_upgrade_options, the free-space arithmetic and the message chosen
 * for a pg_upgrade killed at step_timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "upgrade_guard.h"

static void
test_upgrade_guard_mode_from_options(void **state)
{
	(void) state;
	assert_int_equal(upgrade_guard_mode(""), UPGRADE_GUARD_COPY);
	assert_int_equal(upgrade_guard_mode("--jobs=4"), UPGRADE_GUARD_COPY);
	assert_int_equal(upgrade_guard_mode("--link"), UPGRADE_GUARD_LINK);
	assert_int_equal(upgrade_guard_mode("-j 4 -k"), UPGRADE_GUARD_LINK);
	assert_int_equal(upgrade_guard_mode(" --clone "), UPGRADE_GUARD_CLONE);
	assert_int_equal(upgrade_guard_mode("--link --copy"), UPGRADE_GUARD_COPY);
	/* only whole words */
	assert_int_equal(upgrade_guard_mode("--linkx --no-link -kk"), UPGRADE_GUARD_COPY);
}

static void
test_upgrade_guard_space_enough_and_short(void **state)
{
	char err[512] = "";

	(void) state;
	assert_true(upgrade_guard_space(0, 0, "/o", "/n", err, sizeof(err)));
	assert_true(upgrade_guard_space(2048, 2048, "/o", "/n", err, sizeof(err)));
	assert_string_equal(err, "");
	/* 10 MB needed, 4 MB free: 6 MB short */
	assert_false(upgrade_guard_space(10240, 4096, "/srv/pg/13", "/srv/pg", err,
					 sizeof(err)));
	assert_non_null(strstr(err, "/srv/pg/13 holds 10 MB, the filesystem of /srv/pg has "
			       "4 MB free, 6 MB short: refusing"));
	/* one KiB short still refuses and rounds the shortfall up */
	assert_false(upgrade_guard_space(1025, 1024, "/o", "/n", err, sizeof(err)));
	assert_non_null(strstr(err, "1 MB short"));
}

static void
test_upgrade_guard_killed_message_per_phase(void **state)
{
	char out[1024];

	(void) state;
	upgrade_guard_killed(UPGRADE_GUARD_LINK, true, "/o", "/n", out, sizeof(out));
	assert_non_null(strstr(out, "in or after its link phase (/o/global/pg_control.old "
			       "exists): the old cluster can no longer be started"));
	assert_non_null(strstr(out, "--from-step 4"));
	upgrade_guard_killed(UPGRADE_GUARD_LINK, false, "/o", "/n", out, sizeof(out));
	assert_non_null(strstr(out, "before its link phase"));
	assert_non_null(strstr(out, "the old cluster is untouched and can be started"));
	upgrade_guard_killed(UPGRADE_GUARD_COPY, true, "/o", "/n", out, sizeof(out));
	assert_non_null(strstr(out, "copied: the old cluster /o is untouched and can be "
			       "started. move /n aside and resume with --from-step 4"));
	upgrade_guard_killed(UPGRADE_GUARD_CLONE, false, "/o", "/n", out, sizeof(out));
	assert_non_null(strstr(out, "cloned: the old cluster /o is untouched"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upgrade_guard_mode_from_options),
		cmocka_unit_test(test_upgrade_guard_space_enough_and_short),
		cmocka_unit_test(test_upgrade_guard_killed_message_per_phase),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
