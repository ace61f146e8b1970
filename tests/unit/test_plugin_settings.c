/*
 * Unit tests for lib/plugin_settings.c: the [consul] keys and the database
 * keys the plugin claims, their defaults, and the messages naming what is
 * wrong.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "plugin_settings.h"

static void
set_ok(struct plugin_settings *s, const char *key, const char *value)
{
	char err[512] = "";

	if (!plugin_settings_set(s, key, value, err, sizeof(err)))
		fail_msg("%s = %s refused: %s", key, value, err);
}

static void
set_refused(const char *key, const char *value, const char *expect)
{
	struct plugin_settings s;
	char err[512] = "";

	plugin_settings_defaults(&s);
	if (plugin_settings_set(&s, key, value, err, sizeof(err)))
		fail_msg("%s = %s accepted", key, value);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

static void
test_defaults(void **state)
{
	struct plugin_settings s;

	plugin_settings_defaults(&s);
	assert_string_equal(s.consul.url, "http://127.0.0.1:8500");
	assert_string_equal(s.consul.namespace_, "service");
	assert_int_equal(s.consul.wait_usec, UINT64_C(300) * 1000000);
	assert_int_equal(s.no_leader_timeout_usec, UINT64_C(30) * 1000000);
	assert_int_equal(s.member_pace_usec, 0);
	assert_int_equal(s.consul.consistency, CONSUL_CONSISTENCY_DEFAULT);
	assert_string_equal(s.token_file, "");
	assert_string_equal(s.consul.proxy, "");
}

static void
test_consul_keys_read(void **state)
{
	struct plugin_settings s;

	plugin_settings_defaults(&s);
	set_ok(&s, "url", "https://consul.example:8501");
	set_ok(&s, "namespace", "/db/service/");
	set_ok(&s, "wait", "5m");
	set_ok(&s, "no_leader_timeout", "0");
	set_ok(&s, "consistency", "STALE");
	set_ok(&s, "proxy", "http://u:p@proxy:3128");
	set_ok(&s, "token_file", "");
	set_ok(&s, "member_pace", "2m");
	assert_int_equal(s.member_pace_usec, UINT64_C(120) * 1000000);
	set_ok(&s, "member_pace", "0");
	assert_int_equal(s.member_pace_usec, 0);
	assert_string_equal(s.consul.url, "https://consul.example:8501");
	assert_string_equal(s.consul.namespace_, "db/service");
	assert_int_equal(s.consul.wait_usec, UINT64_C(300) * 1000000);
	assert_int_equal(s.no_leader_timeout_usec, 0);
	assert_int_equal(s.consul.consistency, CONSUL_CONSISTENCY_STALE);
	assert_string_equal(s.consul.proxy, "http://u:p@proxy:3128");
}

static void
test_consul_keys_refused(void **state)
{
	set_refused("url", "ftp://h:1", "invalid value \"ftp://h:1\" for url");
	set_refused("namespace", "/", "expected a name such as service");
	set_refused("namespace", "a//b", "empty path segment");
	set_refused("namespace", "a b", "only letters, digits");
	set_refused("wait", "0", "must be more than 0");
	set_refused("wait", "11m", "must be at most 10m");
	set_refused("wait", "5x", "for wait");
	set_refused("no_leader_timeout", "-1", "for no_leader_timeout");
	set_refused("member_pace", "11m", "must be at most 10m");
	set_refused("member_pace", "soon", "for member_pace");
	set_refused("consistency", "eventual", "expected default, consistent or stale");
	set_refused("token_file", "/nonexistent/token", "cannot read it");
	set_refused("ca_file", "/nonexistent/ca.pem", "for ca_file");
	set_refused("colour", "blue", "unknown key \"colour\" in [consul]");
}

/* a refused proxy is quoted without its user info */
static void
test_proxy_refused_hides_password(void **state)
{
	struct plugin_settings s;
	char err[512] = "";

	plugin_settings_defaults(&s);
	assert_false(plugin_settings_set(&s, "proxy", "ftp://u:s3cr3t@h:1", err, sizeof(err)));
	assert_non_null(strstr(err, "for proxy"));
	assert_null(strstr(err, "s3cr3t"));
}

/* a refused value leaves the settings as they were (found by fuzz_plugin_ini) */
static void
test_refused_value_changes_nothing(void **state)
{
	struct plugin_settings s, before;
	char err[512];

	plugin_settings_defaults(&s);
	set_ok(&s, "wait", "2m");
	set_ok(&s, "namespace", "db");
	before = s;
	assert_false(plugin_settings_set(&s, "wait", "11m", err, sizeof(err)));
	assert_false(plugin_settings_set(&s, "wait", "0", err, sizeof(err)));
	assert_false(plugin_settings_set(&s, "no_leader_timeout", "5x", err, sizeof(err)));
	assert_false(plugin_settings_set(&s, "namespace", "a//b", err, sizeof(err)));
	assert_false(plugin_settings_set(&s, "namespace", "ok/b@d", err, sizeof(err)));
	assert_false(plugin_settings_set(&s, "consistency", "eventual", err, sizeof(err)));
	assert_memory_equal(&s, &before, sizeof(s));
}

static void
test_datacenter(void **state)
{
	struct plugin_settings s;

	plugin_settings_defaults(&s);
	assert_string_equal(s.consul.datacenter, "");
	set_ok(&s, "datacenter", "global");
	assert_string_equal(s.consul.datacenter, "global");
	set_ok(&s, "datacenter", "");
	assert_string_equal(s.consul.datacenter, "");
	set_refused("datacenter", "dc1&dc=x", "invalid value \"dc1&dc=x\" for datacenter");
	set_refused("datacenter", "dc 1", "only letters, digits");
}

static void
test_db_keys(void **state)
{
	char err[512] = "";

	assert_true(plugin_db_setting_check("patroni_scope", "pg-a", err, sizeof(err)));
	assert_true(plugin_db_setting_check("patroni_role", "replica", err, sizeof(err)));
	assert_true(plugin_db_setting_check("patroni_prefer", "dc:dc1,rack:1", err, sizeof(err)));
	assert_false(plugin_db_setting_check("patroni_scope", "a/b", err, sizeof(err)));
	assert_non_null(strstr(err, "for patroni_scope"));
	assert_false(plugin_db_setting_check("patroni_role", "leader", err, sizeof(err)));
	assert_non_null(strstr(err, "expected primary, replica or any"));
	assert_false(plugin_db_setting_check("patroni_prefer", "dc", err, sizeof(err)));
	assert_non_null(strstr(err, "expected key:value"));
	assert_false(plugin_db_setting_check("patroni_lag", "1", err, sizeof(err)));
	assert_string_equal(err, "unknown database key \"patroni_lag\"");
}

static void
test_db_binding(void **state)
{
	struct plugin_binding b;
	char err[512] = "";
	char longname[PATRONI_NAME_MAX + 1];

	assert_true(plugin_db_binding("app", "pg-a", NULL, NULL, &b, err, sizeof(err)));
	assert_string_equal(b.scope, "pg-a");
	assert_int_equal(b.role, PATRONI_ROLE_PRIMARY);
	assert_int_equal(b.prefer.count, 0);

	assert_true(plugin_db_binding("ro", "pg-a", "any", "dc:dc1", &b, err, sizeof(err)));
	assert_int_equal(b.role, PATRONI_ROLE_ANY);
	assert_int_equal(b.prefer.count, 1);
	assert_string_equal(b.prefer.tags[0].key, "dc");

	assert_false(plugin_db_binding("ro", NULL, "replica", NULL, &b, err, sizeof(err)));
	assert_string_equal(err, "database \"ro\": patroni_role = replica needs patroni_scope");
	assert_false(plugin_db_binding("ro", NULL, NULL, "dc:1", &b, err, sizeof(err)));
	assert_string_equal(err, "database \"ro\": patroni_prefer = dc:1 needs patroni_scope");
	assert_false(plugin_db_binding("rw", "pg-a", "primary", "dc:1", &b, err, sizeof(err)));
	assert_non_null(strstr(err, "patroni_prefer needs patroni_role = replica or any"));
	assert_false(plugin_db_binding("rw", "pg-a", NULL, "dc:1", &b, err, sizeof(err)));

	memset(longname, 'd', PATRONI_NAME_MAX);
	longname[PATRONI_NAME_MAX] = '\0';
	assert_false(plugin_db_binding(longname, "pg-a", NULL, NULL, &b, err, sizeof(err)));
	assert_non_null(strstr(err, "too long"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_consul_keys_read),
		cmocka_unit_test(test_consul_keys_refused),
		cmocka_unit_test(test_proxy_refused_hides_password),
		cmocka_unit_test(test_refused_value_changes_nothing),
		cmocka_unit_test(test_datacenter),
		cmocka_unit_test(test_db_keys),
		cmocka_unit_test(test_db_binding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
