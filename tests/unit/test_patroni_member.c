/*
 * Unit tests for lib/patroni_member.c: member records as Patroni 3 and 4
 * write them, and conn_url values that must never reach a connection string.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "patroni_member.h"
#include "data_files.h"

static void
parse_file_ok(const char *name, struct patroni_member *m)
{
	char err[256] = "";
	size_t len;
	char *json = test_data_read(name, &len);

	if (!patroni_member_parse(json, len, m, err, sizeof(err)))
		fail_msg("%s refused: %s", name, err);
	free(json);
}

/* refused, with err containing expect and *out left as it was */
static void
parse_file_refused(const char *name, const char *expect)
{
	struct patroni_member m;
	char err[512] = "";
	size_t len;
	char *json = test_data_read(name, &len);

	memset(&m, 0x5a, sizeof(m));
	if (patroni_member_parse(json, len, &m, err, sizeof(err)))
		fail_msg("%s accepted", name);
	free(json);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
	assert_int_equal(m.port, 0x5a5a5a5a);
}

static void
parse_text_refused(const char *json, const char *expect)
{
	struct patroni_member m;
	char err[512] = "";

	if (patroni_member_parse(json, strlen(json), &m, err, sizeof(err)))
		fail_msg("%s accepted", json);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

static void
url_ok(const char *url, const char *host, int port)
{
	char h[PATRONI_HOST_MAX];
	char err[512] = "";
	int p = -1;

	if (!patroni_conn_url_parse(url, h, sizeof(h), &p, err, sizeof(err)))
		fail_msg("\"%s\" refused: %s", url, err);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
}

static void
url_refused(const char *url, const char *expect)
{
	char h[PATRONI_HOST_MAX] = "untouched";
	char err[512] = "";
	int p = -1;

	if (patroni_conn_url_parse(url, h, sizeof(h), &p, err, sizeof(err)))
		fail_msg("\"%s\" accepted as host \"%s\" port %d", url, h, p);
	assert_string_equal(h, "untouched");
	assert_int_equal(p, -1);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" for \"%s\" lacks \"%s\"", err, url, expect);
}

static void
test_patroni_member_parse_patroni3_master(void **state)
{
	struct patroni_member m;

	parse_file_ok("member_patroni3.json", &m);
	assert_string_equal(m.host, "127.0.0.1");
	assert_int_equal(m.port, 5441);
	assert_string_equal(m.state, "running");
	assert_string_equal(m.role, "master");
	assert_string_equal(m.api_url, "http://127.0.0.1:8009/patroni");
	assert_true(patroni_member_is_running(&m));
	assert_true(patroni_member_is_primary_role(&m));
}

static void
test_patroni_member_parse_patroni4_primary(void **state)
{
	struct patroni_member m;

	parse_file_ok("member_patroni4.json", &m);
	assert_string_equal(m.host, "db2.dc1.example.com");
	assert_int_equal(m.port, 5432);
	assert_string_equal(m.role, "primary");
	assert_true(patroni_member_is_running(&m));
	assert_true(patroni_member_is_primary_role(&m));
}

static void
test_patroni_member_parse_patroni4_replica(void **state)
{
	struct patroni_member m;

	parse_file_ok("member_patroni4_replica.json", &m);
	assert_string_equal(m.host, "10.20.0.13");
	assert_string_equal(m.role, "replica");
	assert_true(patroni_member_is_running(&m));
	assert_false(patroni_member_is_primary_role(&m));
}

static void
test_patroni_member_parse_ipv6_conn_url(void **state)
{
	struct patroni_member m;

	parse_file_ok("member_ipv6.json", &m);
	assert_string_equal(m.host, "2001:db8::12");
	assert_int_equal(m.port, 5433);
}

static void
test_patroni_member_parse_stopped_demoted(void **state)
{
	struct patroni_member m;

	parse_file_ok("member_stopped.json", &m);
	assert_string_equal(m.state, "stopped");
	assert_string_equal(m.role, "demoted");
	assert_false(patroni_member_is_running(&m));
	assert_false(patroni_member_is_primary_role(&m));
}

static void
test_patroni_member_parse_minimal_record(void **state)
{
	struct patroni_member m;
	const char *json = "{\"conn_url\":\"postgres://pg1:5432/postgres\"}";

	memset(&m, 'x', sizeof(m));
	assert_true(patroni_member_parse(json, strlen(json), &m, NULL, 0));
	assert_string_equal(m.host, "pg1");
	assert_string_equal(m.state, "");
	assert_string_equal(m.role, "");
	assert_string_equal(m.api_url, "");
	assert_false(patroni_member_is_running(&m));
}

static void
test_patroni_member_parse_refuses_application_name(void **state)
{
	parse_file_refused("member_app_name.json", "conn_url carries connection parameters");
}

static void
test_patroni_member_parse_refuses_bad_port(void **state)
{
	parse_file_refused("member_bad_port.json",
			   "invalid port \"99999\" in conn_url \"postgres://127.0.0.1:99999/postgres\"");
}

static void
test_patroni_member_parse_refuses_other_scheme(void **state)
{
	parse_file_refused("member_bad_scheme.json", "is not a postgres:// or postgresql:// url");
}

static void
test_patroni_member_parse_refuses_non_json(void **state)
{
	parse_file_refused("member_not_json.txt", "member record is not valid json");
}

static void
test_patroni_member_parse_refuses_huge_record(void **state)
{
	parse_file_refused("member_huge.json", "exceeds the limit of 65536 bytes");
}

static void
test_patroni_member_parse_refuses_missing_conn_url(void **state)
{
	parse_file_refused("member_no_conn_url.json", "member record has no conn_url");
	parse_text_refused("{\"conn_url\":5432}", "conn_url in member record is not a string");
	parse_text_refused("{\"conn_url\":null}", "conn_url in member record is not a string");
}

static void
test_patroni_member_parse_refuses_non_object(void **state)
{
	parse_text_refused("[\"postgres://h:5432/postgres\"]", "not a json object");
	parse_text_refused("\"postgres://h:5432/postgres\"", "not a json object");
	parse_text_refused("42 ", "not a json object");
	parse_text_refused("", "member record is empty");
}

static void
test_patroni_member_parse_refuses_trailing_data(void **state)
{
	parse_text_refused("{\"conn_url\":\"postgres://h:5432/postgres\"} x", "not valid json");
	parse_text_refused("{\"conn_url\":\"postgres://h:5432/postgres\"}{}", "not valid json");
	parse_text_refused("{\"conn_url\":\"postgres://h:5432/postgres\"", "truncated");
}

static void
test_patroni_member_parse_allows_trailing_newline(void **state)
{
	struct patroni_member m;
	const char *json = "{\"conn_url\":\"postgres://h:5432/postgres\"}\n";

	assert_true(patroni_member_parse(json, strlen(json), &m, NULL, 0));
	assert_string_equal(m.host, "h");
}

static void
test_patroni_member_parse_refuses_embedded_nul(void **state)
{
	static const char json[] = "{\"conn_url\":\"postgres://h\\u0000x:5432/postgres\"}";
	static const char raw[] = "{\"conn_url\":\"postgres://h:5432/postgres\"}\0junk";
	struct patroni_member m;
	char err[256];

	assert_false(patroni_member_parse(json, strlen(json), &m, err, sizeof(err)));
	assert_non_null(strstr(err, "nul byte"));
	assert_false(patroni_member_parse(raw, sizeof(raw) - 1, &m, err, sizeof(err)));
	assert_non_null(strstr(err, "nul byte"));
}

static void
test_patroni_member_parse_uses_len_not_nul(void **state)
{
	const char *json = "{\"conn_url\":\"postgres://h:5432/postgres\"}GARBAGE";
	struct patroni_member m;

	/* only the first len bytes count: the junk after them is never read */
	assert_true(patroni_member_parse(json, strlen(json) - 7, &m, NULL, 0));
	assert_string_equal(m.host, "h");
}

static void
test_patroni_member_parse_refuses_bad_state_and_role(void **state)
{
	parse_text_refused("{\"conn_url\":\"postgres://h:5432/p\",\"state\":1}",
			   "state in member record is not a string");
	parse_text_refused("{\"conn_url\":\"postgres://h:5432/p\",\"role\":"
			   "\"a-role-name-much-longer-than-thirty-one-bytes\"}",
			   "invalid role \"a-role-name-much-longer-than-thirty-one-bytes\"");
	parse_text_refused("{\"conn_url\":\"postgres://h:5432/p\",\"state\":\"run\\nning\"}",
			   "invalid state \"run?ning\"");
}

static void
test_patroni_member_parse_drops_odd_api_url(void **state)
{
	const char *json = "{\"conn_url\":\"postgres://h:5432/p\",\"api_url\":[1]}";
	struct patroni_member m;

	assert_true(patroni_member_parse(json, strlen(json), &m, NULL, 0));
	assert_string_equal(m.api_url, "");
}

static void
test_patroni_member_parse_refuses_invalid_utf8(void **state)
{
	const char *json = "{\"conn_url\":\"postgres://h:5432/p\",\"tags\":\"\xff\xfe\"}";

	parse_text_refused(json, "not valid json");
}

static void
test_patroni_conn_url_parse_accepts_patroni_forms(void **state)
{
	url_ok("postgres://127.0.0.1:5441/postgres", "127.0.0.1", 5441);
	url_ok("postgresql://db1.example.com:6432/postgres", "db1.example.com", 6432);
	url_ok("postgres://[::1]:5432/postgres", "::1", 5432);
	url_ok("postgres://[fe80::1:2]/postgres", "fe80::1:2", 5432);
	url_ok("postgres://pg-1:1", "pg-1", 1);
	url_ok("postgres://pg-1:65535/", "pg-1", 65535);
	url_ok("postgres://db.example.com./my_db.v2-x", "db.example.com.", 5432);
}

static void
test_patroni_conn_url_parse_defaults_port_5432(void **state)
{
	url_ok("postgres://10.0.0.5/postgres", "10.0.0.5", 5432);
	url_ok("postgres://10.0.0.5", "10.0.0.5", 5432);
}

static void
test_patroni_conn_url_parse_refuses_bad_port(void **state)
{
	url_refused("postgres://h:99999/postgres",
		    "invalid port \"99999\" in conn_url \"postgres://h:99999/postgres\"");
	url_refused("postgres://h:0/postgres", "invalid port \"0\"");
	url_refused("postgres://h:/postgres", "invalid port \"\"");
	url_refused("postgres://h:54x2/postgres", "invalid port \"54x2\"");
	url_refused("postgres://h:005432/postgres", "invalid port \"005432\"");
	url_refused("postgres://h:5432:1/postgres", "invalid port \"5432:1\"");
	url_refused("postgres://[::1]:-1/postgres", "invalid port \"-1\"");
}

static void
test_patroni_conn_url_parse_refuses_parameters(void **state)
{
	url_refused("postgres://h:5432/postgres?sslmode=disable",
		    "conn_url carries connection parameters");
	url_refused("postgres://h:5432/postgres?application_name=http://h:8008/patroni",
		    "conn_url carries connection parameters");
	url_refused("postgres://h:5432?", "conn_url carries connection parameters");
	url_refused("postgres://h:5432/postgres#x", "conn_url has a fragment");
}

static void
test_patroni_conn_url_parse_refuses_userinfo_without_showing_it(void **state)
{
	char h[PATRONI_HOST_MAX];
	char err[512];
	int p;

	assert_false(patroni_conn_url_parse("postgres://admin:s3cret@h:5432/postgres",
					    h, sizeof(h), &p, err, sizeof(err)));
	assert_non_null(strstr(err, "conn_url carries user info"));
	assert_non_null(strstr(err, "h:5432/postgres"));
	assert_null(strstr(err, "s3cret"));
	assert_null(strstr(err, "admin"));
}

static void
test_patroni_conn_url_parse_refuses_other_schemes(void **state)
{
	url_refused("http://h:5432/postgres", "not a postgres:// or postgresql:// url");
	url_refused("POSTGRES://h:5432/postgres", "not a postgres://");
	url_refused("postgres:/h:5432", "not a postgres://");
	url_refused("host=h port=5432", "not a postgres://");
	url_refused("", "not a postgres://");
}

static void
test_patroni_conn_url_parse_refuses_injection(void **state)
{
	url_refused("postgres://h:5432/postgres dbname=x", "invalid character 0x20");
	url_refused("postgres://h'x:5432/p", "invalid character 0x27");
	url_refused("postgres://h\":5432/p", "invalid character 0x22");
	url_refused("postgres://h1:5432,h2:5432/p", "invalid character 0x2c");
	url_refused("postgres://h=1:5432/p", "invalid character 0x3d");
	url_refused("postgres://h%20:5432/p", "invalid character 0x25");
	url_refused("postgres://h\n:5432/p", "invalid character 0x0a in conn_url \"postgres://h?:5432/p\"");
	url_refused("postgres://h:5432/p;x", "invalid character 0x3b");
	url_refused("postgres://h\\x:5432/p", "invalid character 0x5c");
}

static void
test_patroni_conn_url_parse_refuses_bad_hosts(void **state)
{
	url_refused("postgres://:5432/postgres", "has no host");
	url_refused("postgres:///postgres", "has no host");
	url_refused("postgres://::1:5432/postgres", "has no host");
	url_refused("postgres://fe80::1/postgres", "invalid port \":1\"");
	url_refused("postgres://[127.0.0.1]:5432/p", "invalid host \"127.0.0.1\"");
	url_refused("postgres://[::1:5432/p", "unterminated [");
	url_refused("postgres://[::1]x:5432/p", "unexpected text after ]");
	url_refused("postgres://[::g]:5432/p", "invalid host \"::g\"");
	url_refused("postgres://h_1:5432/p", "invalid host \"h_1\"");
	url_refused("postgres://-h:5432/p", "invalid host \"-h\"");
	url_refused("postgres://1234:5432/p", "invalid host \"1234\"");
	url_refused("postgres://256.1.1.1:5432/p", "invalid host \"256.1.1.1\"");
	url_refused("postgres://a..b:5432/p", "invalid host \"a..b\"");
	url_refused("postgres://h]:5432/p", "invalid host");
}

static void
test_patroni_conn_url_parse_refuses_bad_dbname(void **state)
{
	url_refused("postgres://h:5432/db/more", "invalid database name");
	url_refused("postgres://h:5432/db:1", "invalid database name");
	url_refused("postgres://h:5432/[x]", "invalid database name");
}

static void
test_patroni_conn_url_parse_refuses_small_host_buffer(void **state)
{
	char h[4] = "abc";
	char err[256];
	int p = -1;

	assert_false(patroni_conn_url_parse("postgres://longhost:5432", h, sizeof(h), &p,
					    err, sizeof(err)));
	assert_string_equal(h, "abc");
	assert_non_null(strstr(err, "too long"));
	assert_true(patroni_conn_url_parse("postgres://abc:5432", h, sizeof(h), &p, NULL, 0));
	assert_string_equal(h, "abc");
}

static void
test_patroni_conn_url_parse_refuses_long_url(void **state)
{
	char url[2048];
	char h[PATRONI_HOST_MAX];
	char err[256];
	int p;

	memset(url, 'a', sizeof(url));
	memcpy(url, "postgres://", 11);
	url[sizeof(url) - 1] = '\0';
	assert_false(patroni_conn_url_parse(url, h, sizeof(h), &p, err, sizeof(err)));
	assert_non_null(strstr(err, "too long"));
	/* the quoted value is cut: the message stays short */
	assert_true(strlen(err) < 200);
}

static void
test_patroni_host_valid_accepts(void **state)
{
	char label63[80];

	assert_true(patroni_host_valid("localhost"));
	assert_true(patroni_host_valid("pg1.dc1.example.com"));
	assert_true(patroni_host_valid("pg1.example.com."));
	assert_true(patroni_host_valid("10.0.0.1"));
	assert_true(patroni_host_valid("::1"));
	assert_true(patroni_host_valid("2001:db8::5"));
	assert_true(patroni_host_valid("::ffff:10.1.2.3"));
	assert_true(patroni_host_valid("1a"));
	assert_true(patroni_host_valid("9.example"));
	memset(label63, 'a', 63);
	label63[63] = '\0';
	assert_true(patroni_host_valid(label63));
}

static void
test_patroni_host_valid_refuses(void **state)
{
	char label64[80];
	char long_name[300];
	int i;

	assert_false(patroni_host_valid(NULL));
	assert_false(patroni_host_valid(""));
	assert_false(patroni_host_valid("."));
	assert_false(patroni_host_valid("a b"));
	assert_false(patroni_host_valid("h_1"));
	assert_false(patroni_host_valid("-h"));
	assert_false(patroni_host_valid("h-"));
	assert_false(patroni_host_valid("a..b"));
	assert_false(patroni_host_valid(".a"));
	assert_false(patroni_host_valid("1234"));
	assert_false(patroni_host_valid("10.1"));
	assert_false(patroni_host_valid("010.0.0.1"));
	assert_false(patroni_host_valid("1.2.3.4.5"));
	assert_false(patroni_host_valid("[::1]"));
	assert_false(patroni_host_valid("fe80::1%eth0"));
	assert_false(patroni_host_valid("h;rm"));
	memset(label64, 'a', 64);
	label64[64] = '\0';
	assert_false(patroni_host_valid(label64));
	/* 254 bytes of labels: over RFC 1123's 253 */
	for (i = 0; i < 254; i++)
		long_name[i] = (i % 2) ? '.' : 'a';
	long_name[253] = 'a';
	long_name[254] = '\0';
	assert_false(patroni_host_valid(long_name));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_patroni_member_parse_patroni3_master),
		cmocka_unit_test(test_patroni_member_parse_patroni4_primary),
		cmocka_unit_test(test_patroni_member_parse_patroni4_replica),
		cmocka_unit_test(test_patroni_member_parse_ipv6_conn_url),
		cmocka_unit_test(test_patroni_member_parse_stopped_demoted),
		cmocka_unit_test(test_patroni_member_parse_minimal_record),
		cmocka_unit_test(test_patroni_member_parse_refuses_application_name),
		cmocka_unit_test(test_patroni_member_parse_refuses_bad_port),
		cmocka_unit_test(test_patroni_member_parse_refuses_other_scheme),
		cmocka_unit_test(test_patroni_member_parse_refuses_non_json),
		cmocka_unit_test(test_patroni_member_parse_refuses_huge_record),
		cmocka_unit_test(test_patroni_member_parse_refuses_missing_conn_url),
		cmocka_unit_test(test_patroni_member_parse_refuses_non_object),
		cmocka_unit_test(test_patroni_member_parse_refuses_trailing_data),
		cmocka_unit_test(test_patroni_member_parse_allows_trailing_newline),
		cmocka_unit_test(test_patroni_member_parse_refuses_embedded_nul),
		cmocka_unit_test(test_patroni_member_parse_uses_len_not_nul),
		cmocka_unit_test(test_patroni_member_parse_refuses_bad_state_and_role),
		cmocka_unit_test(test_patroni_member_parse_drops_odd_api_url),
		cmocka_unit_test(test_patroni_member_parse_refuses_invalid_utf8),
		cmocka_unit_test(test_patroni_conn_url_parse_accepts_patroni_forms),
		cmocka_unit_test(test_patroni_conn_url_parse_defaults_port_5432),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_bad_port),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_parameters),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_userinfo_without_showing_it),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_other_schemes),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_injection),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_bad_hosts),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_bad_dbname),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_small_host_buffer),
		cmocka_unit_test(test_patroni_conn_url_parse_refuses_long_url),
		cmocka_unit_test(test_patroni_host_valid_accepts),
		cmocka_unit_test(test_patroni_host_valid_refuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
