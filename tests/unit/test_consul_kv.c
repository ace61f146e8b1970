/*
 * Unit tests for lib/consul_kv.c: recorded Consul KV answers, base64
 * values, and the X-Consul-Index rules of blocking queries.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "consul_kv.h"
#include "patroni_member.h"
#include "data_files.h"

static void
parse_file_refused(const char *name, const char *expect)
{
	struct consul_kv *entries = (struct consul_kv *) 1;
	int count = -1;
	char err[512] = "";
	size_t len;
	char *body = test_data_read(name, &len);

	if (consul_kv_parse(body, len, &entries, &count, err, sizeof(err)))
		fail_msg("%s accepted", name);
	free(body);
	assert_null(entries);
	assert_int_equal(count, 0);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

static void
parse_text_refused(const char *body, const char *expect)
{
	struct consul_kv *entries;
	int count;
	char err[512] = "";

	if (consul_kv_parse(body, strlen(body), &entries, &count, err, sizeof(err)))
		fail_msg("%s accepted", body);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

static void
test_consul_kv_parse_leader_with_session(void **state)
{
	struct consul_kv *entries;
	int count;
	char err[256];
	size_t len;
	char *body = test_data_read("kv_leader.json", &len);

	assert_true(consul_kv_parse(body, len, &entries, &count, err, sizeof(err)));
	assert_int_equal(count, 1);
	assert_string_equal(entries[0].key, "service/batman/leader");
	assert_string_equal(entries[0].value, "pg1");
	assert_int_equal(entries[0].value_len, 3);
	assert_string_equal(entries[0].session, "6ecb2b4b-e6c6-d7c3-52b1-4a4d1fbc2a9e");
	assert_int_equal(entries[0].modify_index, 27);
	consul_kv_free(entries, count);
	free(body);
}

static void
test_consul_kv_parse_recurse_scope(void **state)
{
	struct consul_kv *entries;
	const struct consul_kv *leader, *member, *config;
	struct patroni_member m;
	int count;
	char err[256];
	size_t len;
	char *body = test_data_read("kv_recurse.json", &len);

	assert_true(consul_kv_parse(body, len, &entries, &count, err, sizeof(err)));
	assert_int_equal(count, 10);
	leader = consul_kv_find(entries, count, "service/batman/leader");
	assert_non_null(leader);
	assert_string_equal(leader->value, "pg1");
	assert_non_null(leader->session);

	/* the leader's member record, base64-decoded, is a valid Patroni record */
	member = consul_kv_find(entries, count, "service/batman/members/pg1");
	assert_non_null(member);
	assert_int_equal(member->modify_index, 131);
	assert_true(patroni_member_parse(member->value, member->value_len, &m, err, sizeof(err)));
	assert_string_equal(m.host, "127.0.0.1");
	assert_int_equal(m.port, 5441);
	assert_true(patroni_member_is_primary_role(&m));

	/* keys nobody locks carry no session */
	config = consul_kv_find(entries, count, "service/batman/config");
	assert_non_null(config);
	assert_null(config->session);
	assert_non_null(strstr(config->value, "\"loop_wait\":10"));
	assert_null(consul_kv_find(entries, count, "service/batman/members/pg4"));
	consul_kv_free(entries, count);
	free(body);
}

static void
test_consul_kv_parse_null_value(void **state)
{
	struct consul_kv *entries;
	int count;
	size_t len;
	char *body = test_data_read("kv_null_value.json", &len);

	assert_true(consul_kv_parse(body, len, &entries, &count, NULL, 0));
	assert_int_equal(count, 1);
	assert_string_equal(entries[0].key, "service/batman/initialize");
	assert_null(entries[0].value);
	assert_int_equal(entries[0].value_len, 0);
	assert_null(entries[0].session);
	consul_kv_free(entries, count);
	free(body);
}

static void
test_consul_kv_parse_missing_value_and_empty_session(void **state)
{
	const char *body = "[{\"Key\":\"k\",\"Session\":\"\",\"ModifyIndex\":3}]";
	struct consul_kv *entries;
	int count;

	assert_true(consul_kv_parse(body, strlen(body), &entries, &count, NULL, 0));
	assert_int_equal(count, 1);
	assert_null(entries[0].value);
	assert_null(entries[0].session);
	consul_kv_free(entries, count);
}

static void
test_consul_kv_parse_empty_array(void **state)
{
	struct consul_kv *entries = (struct consul_kv *) 1;
	int count = -1;
	size_t len;
	char *body = test_data_read("kv_empty_array.json", &len);

	assert_true(consul_kv_parse(body, len, &entries, &count, NULL, 0));
	assert_null(entries);
	assert_int_equal(count, 0);
	consul_kv_free(entries, count);
	free(body);
}

static void
test_consul_kv_parse_large_index(void **state)
{
	const char *body = "[{\"Key\":\"k\",\"Value\":null,\"ModifyIndex\":18446744073709551615},"
			   "{\"Key\":\"j\",\"Value\":null,\"ModifyIndex\":9223372036854775807}]";
	struct consul_kv *entries;
	int count;

	assert_true(consul_kv_parse(body, strlen(body), &entries, &count, NULL, 0));
	assert_int_equal(count, 2);
	assert_true(entries[0].modify_index == UINT64_MAX);
	assert_true(entries[1].modify_index == UINT64_C(9223372036854775807));
	consul_kv_free(entries, count);
}

static void
test_consul_kv_parse_refuses_bad_base64(void **state)
{
	parse_file_refused("kv_bad_base64.json",
			   "value of key \"service/batman/leader\" is not valid base64");
}

static void
test_consul_kv_parse_refuses_nul_in_value(void **state)
{
	parse_file_refused("kv_nul_value.json", "contains a nul byte");
}

static void
test_consul_kv_parse_refuses_non_array(void **state)
{
	parse_file_refused("kv_object.json", "kv answer is not a json array");
	parse_file_refused("kv_403.txt", "kv answer is not valid json");
	parse_file_refused("kv_500.txt", "kv answer is not valid json");
	parse_text_refused("", "kv answer is empty");
	parse_text_refused("[{\"Key\":\"k\",\"ModifyIndex\":1}", "truncated");
	parse_text_refused("[] []", "not valid json");
}

static void
test_consul_kv_parse_refuses_bad_entries(void **state)
{
	parse_text_refused("[1]", "kv entry 0 is not a json object");
	parse_text_refused("[{\"Key\":\"a\",\"ModifyIndex\":1},{\"ModifyIndex\":1}]",
			   "kv entry 1 has no string Key");
	parse_text_refused("[{\"Key\":7,\"ModifyIndex\":1}]", "kv entry 0 has no string Key");
	parse_text_refused("[{\"Key\":\"a\\u0000b\",\"ModifyIndex\":1}]", "kv entry 0 has an invalid Key");
	parse_text_refused("[{\"Key\":\"a\"}]", "key \"a\" has no numeric ModifyIndex");
	parse_text_refused("[{\"Key\":\"a\",\"ModifyIndex\":\"5\"}]", "no numeric ModifyIndex");
	parse_text_refused("[{\"Key\":\"a\",\"ModifyIndex\":-5}]", "negative ModifyIndex");
	parse_text_refused("[{\"Key\":\"a\",\"ModifyIndex\":1.5}]", "no numeric ModifyIndex");
	parse_text_refused("[{\"Key\":\"a\",\"ModifyIndex\":1,\"Value\":5}]", "is not a string");
	parse_text_refused("[{\"Key\":\"a\",\"ModifyIndex\":1,\"Session\":5}]",
			   "session of key \"a\" is not a string");
}

static void
test_consul_kv_parse_refuses_oversized_answer(void **state)
{
	size_t len = 1024 * 1024 + 2;
	char *body = malloc(len + 1);
	struct consul_kv *entries;
	int count;
	char err[256];

	assert_non_null(body);
	memset(body, ' ', len);
	body[0] = '[';
	body[len - 1] = ']';
	body[len] = '\0';
	assert_false(consul_kv_parse(body, len, &entries, &count, err, sizeof(err)));
	assert_non_null(strstr(err, "exceeds the limit"));
	free(body);
}

static void
test_consul_kv_parse_frees_on_late_failure(void **state)
{
	/* two good entries, then a bad one: run under valgrind, nothing leaks */
	const char *body = "[{\"Key\":\"a\",\"Value\":\"cGcx\",\"Session\":\"s\",\"ModifyIndex\":1},"
			   "{\"Key\":\"b\",\"Value\":\"cGcy\",\"ModifyIndex\":2},"
			   "{\"Key\":\"c\",\"Value\":\"!!!!\",\"ModifyIndex\":3}]";

	parse_text_refused(body, "value of key \"c\" is not valid base64");
}

static bool
b64(const char *in, char *out, size_t *outlen)
{
	return consul_kv_base64_decode(in, strlen(in), out, outlen);
}

static void
test_consul_kv_base64_decode_valid(void **state)
{
	char out[64];
	size_t n;

	assert_true(b64("", out, &n));
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
	assert_true(b64("cGcx", out, &n));
	assert_int_equal(n, 3);
	assert_string_equal(out, "pg1");
	assert_true(b64("cGcxMg==", out, &n));
	assert_int_equal(n, 4);
	assert_string_equal(out, "pg12");
	assert_true(b64("cGcxMjM=", out, &n));
	assert_int_equal(n, 5);
	assert_string_equal(out, "pg123");
	assert_true(b64("+/+/", out, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(out, "\xfb\xff\xbf", 3);
}

static void
test_consul_kv_base64_decode_invalid(void **state)
{
	char out[64];
	size_t n;

	assert_false(b64("cGc", out, &n));		/* not a multiple of 4 */
	assert_false(b64("cGcxMg", out, &n));		/* padding missing */
	assert_false(b64("cG*x", out, &n));		/* outside the alphabet */
	assert_false(b64("cG x", out, &n));
	assert_false(b64("cGcx\n", out, &n));
	assert_false(b64("cGc=cGcx", out, &n));		/* padding in the middle */
	assert_false(b64("cG=x", out, &n));		/* data after padding */
	assert_false(b64("c===", out, &n));
	assert_false(b64("====", out, &n));
	assert_false(b64("cGcxMh==", out, &n));		/* non-zero dropped bits */
	assert_false(b64("cGcxMjN=", out, &n));
	assert_false(b64("cGcx-_==", out, &n));		/* url-safe alphabet */
}

static void
test_consul_index_parse_digits(void **state)
{
	uint64_t idx = 0;

	assert_true(consul_index_parse("27", &idx));
	assert_int_equal(idx, 27);
	assert_true(consul_index_parse(" 131\r\n", &idx));
	assert_int_equal(idx, 131);
	assert_true(consul_index_parse("18446744073709551615", &idx));
	assert_true(idx == UINT64_MAX);
	assert_true(consul_index_parse("0", &idx));
	assert_int_equal(idx, 0);
}

static void
test_consul_index_parse_refuses(void **state)
{
	uint64_t idx = 99;

	assert_false(consul_index_parse(NULL, &idx));
	assert_false(consul_index_parse("", &idx));
	assert_false(consul_index_parse("  ", &idx));
	assert_false(consul_index_parse("-1", &idx));
	assert_false(consul_index_parse("+1", &idx));
	assert_false(consul_index_parse("12a", &idx));
	assert_false(consul_index_parse("1 2", &idx));
	assert_false(consul_index_parse("0x10", &idx));
	assert_false(consul_index_parse("18446744073709551616", &idx));
	assert_int_equal(idx, 99);
}

static void
test_consul_index_next_follows_returned(void **state)
{
	assert_int_equal(consul_index_next(0, 27), 27);
	assert_int_equal(consul_index_next(27, 27), 27);
	assert_int_equal(consul_index_next(27, 131), 131);
}

static void
test_consul_index_next_resets_when_backwards(void **state)
{
	/* snapshot restore or a restarted dev agent: start over, non-blocking */
	assert_int_equal(consul_index_next(131, 5), 0);
	assert_int_equal(consul_index_next(131, 130), 0);
}

static void
test_consul_index_next_never_zero_after_answer(void **state)
{
	assert_int_equal(consul_index_next(0, 0), 1);
	assert_int_equal(consul_index_next(0, 1), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consul_kv_parse_leader_with_session),
		cmocka_unit_test(test_consul_kv_parse_recurse_scope),
		cmocka_unit_test(test_consul_kv_parse_null_value),
		cmocka_unit_test(test_consul_kv_parse_missing_value_and_empty_session),
		cmocka_unit_test(test_consul_kv_parse_empty_array),
		cmocka_unit_test(test_consul_kv_parse_large_index),
		cmocka_unit_test(test_consul_kv_parse_refuses_bad_base64),
		cmocka_unit_test(test_consul_kv_parse_refuses_nul_in_value),
		cmocka_unit_test(test_consul_kv_parse_refuses_non_array),
		cmocka_unit_test(test_consul_kv_parse_refuses_bad_entries),
		cmocka_unit_test(test_consul_kv_parse_refuses_oversized_answer),
		cmocka_unit_test(test_consul_kv_parse_frees_on_late_failure),
		cmocka_unit_test(test_consul_kv_base64_decode_valid),
		cmocka_unit_test(test_consul_kv_base64_decode_invalid),
		cmocka_unit_test(test_consul_index_parse_digits),
		cmocka_unit_test(test_consul_index_parse_refuses),
		cmocka_unit_test(test_consul_index_next_follows_returned),
		cmocka_unit_test(test_consul_index_next_resets_when_backwards),
		cmocka_unit_test(test_consul_index_next_never_zero_after_answer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
