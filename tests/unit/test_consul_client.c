/*
 * Unit tests for lib/consul_client.c without a Consul: agent URL checks,
 * token files, KV URLs, easy-handle setup and response capture.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "consul_client.h"

#define SEC UINT64_C(1000000)
#define SECRET "b4c1d2e3-aaaa-bbbb-cccc-0123456789ab"

static void
settings_default(struct consul_settings *s)
{
	memset(s, 0, sizeof(*s));
	strcpy(s->url, "http://127.0.0.1:8500");
	strcpy(s->namespace_, "service");
	s->wait_usec = 300 * SEC;
	s->consistency = CONSUL_CONSISTENCY_DEFAULT;
}

static void
url_check_ok(const char *url)
{
	char err[256] = "";

	if (!consul_url_check(url, err, sizeof(err)))
		fail_msg("\"%s\" refused: %s", url, err);
}

static void
url_check_refused(const char *url, const char *expect)
{
	char err[256] = "";

	if (consul_url_check(url, err, sizeof(err)))
		fail_msg("\"%s\" accepted", url);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

/* a temp file holding content; the caller unlinks path */
static void
write_temp(char *path, size_t pathlen, const char *content, size_t len)
{
	int fd;

	snprintf(path, pathlen, "/tmp/test_consul_token.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t) len);
	close(fd);
}

static bool
token_from(const char *content, char *token, size_t tokenlen, char *err, size_t errlen)
{
	char path[64];
	bool ok;

	write_temp(path, sizeof(path), content, strlen(content));
	ok = consul_token_read(path, token, tokenlen, err, errlen);
	unlink(path);
	return ok;
}

static void
token_refused(const char *content, const char *expect)
{
	char token[CONSUL_TOKEN_MAX] = "untouched";
	char err[512] = "";

	if (token_from(content, token, sizeof(token), err, sizeof(err)))
		fail_msg("token file accepted");
	assert_string_equal(token, "untouched");
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
	assert_non_null(strstr(err, "/tmp/test_consul_token."));
	assert_null(strstr(err, SECRET));
	assert_null(strstr(err, "b4c1"));
}

static void
kv_url_is(const struct consul_settings *s, const char *scope, const char *key, uint64_t index,
	  bool recurse, const char *expect)
{
	char url[CONSUL_URL_MAX];
	char err[256] = "";

	if (!consul_kv_url(s, scope, key, index, recurse, url, sizeof(url), err, sizeof(err)))
		fail_msg("kv url refused: %s", err);
	assert_string_equal(url, expect);
}

static void
kv_url_refused(const struct consul_settings *s, const char *scope, const char *key,
	       bool recurse, const char *expect)
{
	char url[CONSUL_URL_MAX];
	char err[256] = "";

	if (consul_kv_url(s, scope, key, 5, recurse, url, sizeof(url), err, sizeof(err)))
		fail_msg("kv url accepted: %s", url);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
}

static void
test_consul_url_check_accepts_agent_urls(void **state)
{
	url_check_ok("http://127.0.0.1:8500");
	url_check_ok("https://consul.service.dc1.consul:8501");
	url_check_ok("http://localhost");
	url_check_ok("http://[::1]:8500");
	url_check_ok("https://[2001:db8::1]");
}

static void
test_consul_url_check_refuses_paths_and_schemes(void **state)
{
	url_check_refused("", "consul url is empty");
	url_check_refused(NULL, "consul url is empty");
	url_check_refused("127.0.0.1:8500", "must start with http:// or https://");
	url_check_refused("ftp://127.0.0.1:8500", "must start with http:// or https://");
	url_check_refused("HTTP://127.0.0.1:8500", "must start with http://");
	url_check_refused("http://127.0.0.1:8500/", "must not have a path");
	url_check_refused("http://127.0.0.1:8500/v1", "must not have a path");
	url_check_refused("http://127.0.0.1:8500?x=1", "invalid character 0x3f");
	url_check_refused("http://127.0.0.1:8500#f", "invalid character 0x23");
	url_check_refused("http://127.0.0.1 :8500", "invalid character 0x20");
}

static void
test_consul_url_check_refuses_bad_host_or_port(void **state)
{
	url_check_refused("http://", "invalid host");
	url_check_refused("http://:8500", "invalid host");
	url_check_refused("http://h_1:8500", "invalid host");
	url_check_refused("http://::1:8500", "invalid host");
	url_check_refused("http://[127.0.0.1]:8500", "invalid host");
	url_check_refused("http://[::1:8500", "unterminated [");
	url_check_refused("http://[::1]8500", "unexpected text after ]");
	url_check_refused("http://h:0", "invalid port");
	url_check_refused("http://h:65536", "invalid port");
	url_check_refused("http://h:", "invalid port");
	url_check_refused("http://h:85a0", "invalid port");
	url_check_refused("http://h:8500:1", "invalid port");
}

static void
test_consul_url_check_refuses_userinfo_without_showing_it(void **state)
{
	char err[256];

	assert_false(consul_url_check("http://" SECRET "@127.0.0.1:8500", err, sizeof(err)));
	assert_non_null(strstr(err, "user info"));
	assert_null(strstr(err, SECRET));
}

static void
test_consul_consistency_parse_names(void **state)
{
	enum consul_consistency c = CONSUL_CONSISTENCY_STALE;

	assert_true(consul_consistency_parse("default", &c));
	assert_int_equal(c, CONSUL_CONSISTENCY_DEFAULT);
	assert_true(consul_consistency_parse("consistent", &c));
	assert_int_equal(c, CONSUL_CONSISTENCY_CONSISTENT);
	assert_true(consul_consistency_parse("Stale", &c));
	assert_int_equal(c, CONSUL_CONSISTENCY_STALE);
	assert_false(consul_consistency_parse("strong", &c));
	assert_false(consul_consistency_parse("", &c));
	assert_false(consul_consistency_parse(NULL, &c));
	assert_int_equal(c, CONSUL_CONSISTENCY_STALE);
	assert_string_equal(consul_consistency_name(CONSUL_CONSISTENCY_CONSISTENT), "consistent");
}

static void
test_consul_token_read_trims_newline(void **state)
{
	char token[CONSUL_TOKEN_MAX];
	char err[256];

	assert_true(token_from(SECRET "\n", token, sizeof(token), err, sizeof(err)));
	assert_string_equal(token, SECRET);
	assert_true(token_from(SECRET "\r\n  \n", token, sizeof(token), err, sizeof(err)));
	assert_string_equal(token, SECRET);
	assert_true(token_from(SECRET, token, sizeof(token), err, sizeof(err)));
	assert_string_equal(token, SECRET);
}

static void
test_consul_token_read_refuses_empty(void **state)
{
	token_refused("", "is empty");
	token_refused("\n", "is empty");
	token_refused("  \r\n", "is empty");
}

static void
test_consul_token_read_refuses_multi_line(void **state)
{
	token_refused(SECRET "\n" SECRET "\n", "has more than one line");
	token_refused(SECRET "\r" SECRET, "has more than one line");
}

static void
test_consul_token_read_refuses_odd_characters(void **state)
{
	token_refused(" " SECRET, "contains invalid characters");
	token_refused("b4c1 " SECRET, "contains invalid characters");
	token_refused("b4c1\x01" SECRET, "contains invalid characters");
	token_refused("b4c1\xc3\xa9" SECRET, "contains invalid characters");
}

static void
test_consul_token_read_refuses_too_long(void **state)
{
	char big[CONSUL_TOKEN_MAX + 10];
	char token[16] = "untouched";
	char err[256];

	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	token_refused(big, "is too long");
	/* the caller's buffer bounds it too */
	assert_false(token_from(SECRET, token, sizeof(token), err, sizeof(err)));
	assert_string_equal(token, "untouched");
	assert_non_null(strstr(err, "is too long"));
}

static void
test_consul_token_read_refuses_large_file(void **state)
{
	char *big = malloc(10000);

	assert_non_null(big);
	memset(big, 'b', 9999);
	big[9999] = '\0';
	token_refused(big, "is too large");
	free(big);
}

static void
test_consul_token_read_refuses_unreadable(void **state)
{
	char token[CONSUL_TOKEN_MAX];
	char err[256];

	assert_false(consul_token_read("/nonexistent/dir/token", token, sizeof(token),
				       err, sizeof(err)));
	assert_string_equal(err, "cannot open token file \"/nonexistent/dir/token\": "
			    "No such file or directory");
	assert_false(consul_token_read("/tmp", token, sizeof(token), err, sizeof(err)));
	assert_non_null(strstr(err, "\"/tmp\""));
	assert_false(consul_token_read("", token, sizeof(token), err, sizeof(err)));
	assert_non_null(strstr(err, "path is empty"));
}

static void
test_consul_kv_url_blocking(void **state)
{
	struct consul_settings s;

	settings_default(&s);
	kv_url_is(&s, "batman", "leader", 27, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/leader?index=27&wait=300s");
	s.wait_usec = 250000;
	kv_url_is(&s, "batman", "leader", 27, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/leader?index=27&wait=250ms");
	s.wait_usec = 0;
	kv_url_is(&s, "batman", "leader", 27, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/leader?index=27");
}

static void
test_consul_kv_url_index_zero_is_non_blocking(void **state)
{
	struct consul_settings s;

	settings_default(&s);
	kv_url_is(&s, "batman", "members/pg1", 0, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/members/pg1");
}

static void
test_consul_kv_url_consistency(void **state)
{
	struct consul_settings s;

	settings_default(&s);
	s.consistency = CONSUL_CONSISTENCY_CONSISTENT;
	kv_url_is(&s, "batman", "leader", 5, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/leader?index=5&wait=300s&consistent");
	s.consistency = CONSUL_CONSISTENCY_STALE;
	kv_url_is(&s, "batman", "leader", 0, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/leader?stale");
}

/* the longest url, namespace, scope, datacenter and query still fit CONSUL_KV_URL_MAX */
static void
test_consul_kv_url_longest_fits(void **state)
{
	struct consul_settings s;
	char scope[256], url[CONSUL_KV_URL_MAX(0)], err[256] = "";
	size_t n;

	settings_default(&s);
	n = sizeof(s.url) - 1;
	memset(s.url, 'u', n);
	memcpy(s.url, "http://", 7);
	s.url[n] = '\0';
	memset(s.namespace_, 'n', sizeof(s.namespace_) - 1);
	s.namespace_[sizeof(s.namespace_) - 1] = '\0';
	memset(s.datacenter, 'd', sizeof(s.datacenter) - 1);
	s.datacenter[sizeof(s.datacenter) - 1] = '\0';
	memset(scope, 's', sizeof(scope) - 1);
	scope[sizeof(scope) - 1] = '\0';
	s.wait_usec = UINT64_C(599999999);	/* the longest wait text */
	s.consistency = CONSUL_CONSISTENCY_CONSISTENT;
	if (!consul_kv_url(&s, scope, "", UINT64_MAX, true, url, sizeof(url), err,
			   sizeof(err)))
		fail_msg("longest kv url refused: %s", err);
	assert_non_null(strstr(url, "&consistent&dc=ddd"));
	assert_non_null(strstr(url, "&recurse"));
	/* one byte less than it needs: refused with a message, not cut */
	n = strlen(url);
	assert_false(consul_kv_url(&s, scope, "", UINT64_MAX, true, url, n, err, sizeof(err)));
	/* the 255-byte scope it names takes the rest of err */
	assert_non_null(strstr(err, "consul url for key \"\" of scope \"sss"));
}

static void
test_consul_kv_url_datacenter(void **state)
{
	struct consul_settings s;
	char want[CONSUL_URL_MAX];

	settings_default(&s);
	strcpy(s.datacenter, "global");
	kv_url_is(&s, "batman", "", 131, true,
		  "http://127.0.0.1:8500/v1/kv/service/batman/?index=131&wait=300s&dc=global&recurse");
	kv_url_is(&s, "batman", "members/pg1", 0, false,
		  "http://127.0.0.1:8500/v1/kv/service/batman/members/pg1?dc=global");
	s.consistency = CONSUL_CONSISTENCY_STALE;
	strcpy(s.datacenter, "eu-west_2");
	kv_url_is(&s, "batman", "", 0, true,
		  "http://127.0.0.1:8500/v1/kv/service/batman/?stale&dc=eu-west_2&recurse");
	/* a name past the setting's check never reaches a URL either */
	strcpy(s.datacenter, "glo&bal");
	kv_url_refused(&s, "batman", "leader", false,
		       "invalid consul datacenter \"glo&bal\": only letters");
	/* the longest name still fits the query with every other part */
	memset(s.datacenter, 'd', sizeof(s.datacenter) - 1);
	s.datacenter[sizeof(s.datacenter) - 1] = '\0';
	snprintf(want, sizeof(want), "http://127.0.0.1:8500/v1/kv/service/batman/"
		 "?index=18446744073709551615&wait=300s&stale&dc=%s&recurse", s.datacenter);
	kv_url_is(&s, "batman", "", UINT64_MAX, true, want);
}

static void
test_consul_datacenter_valid_names(void **state)
{
	char longest[CONSUL_DATACENTER_MAX + 1];
	const char *why = NULL;

	assert_true(consul_datacenter_valid("global", &why));
	assert_true(consul_datacenter_valid("dc1", &why));
	assert_true(consul_datacenter_valid("EU-west_2", &why));
	assert_false(consul_datacenter_valid("", &why));
	assert_string_equal(why, "empty datacenter name");
	assert_false(consul_datacenter_valid(NULL, &why));
	assert_false(consul_datacenter_valid("dc 1", &why));
	assert_non_null(strstr(why, "only letters, digits"));
	assert_false(consul_datacenter_valid("dc1&recurse", &why));
	assert_false(consul_datacenter_valid("dc.1", &why));
	assert_false(consul_datacenter_valid("dc/1", &why));
	assert_false(consul_datacenter_valid("d\xc3\xa9", &why));
	memset(longest, 'd', sizeof(longest));
	longest[CONSUL_DATACENTER_MAX - 1] = '\0';
	assert_true(consul_datacenter_valid(longest, &why));
	longest[CONSUL_DATACENTER_MAX - 1] = 'd';
	longest[CONSUL_DATACENTER_MAX] = '\0';
	assert_false(consul_datacenter_valid(longest, &why));
	assert_string_equal(why, "datacenter name too long");
}

static void
test_consul_kv_url_recurse_scope_prefix(void **state)
{
	struct consul_settings s;

	settings_default(&s);
	kv_url_is(&s, "batman", "", 131, true,
		  "http://127.0.0.1:8500/v1/kv/service/batman/?index=131&wait=300s&recurse");
	s.consistency = CONSUL_CONSISTENCY_STALE;
	kv_url_is(&s, "batman", "", 0, true,
		  "http://127.0.0.1:8500/v1/kv/service/batman/?stale&recurse");
	kv_url_is(&s, "batman", NULL, 0, true,
		  "http://127.0.0.1:8500/v1/kv/service/batman/?stale&recurse");
	s.consistency = CONSUL_CONSISTENCY_DEFAULT;
	kv_url_is(&s, "batman", "members/", 0, true,
		  "http://127.0.0.1:8500/v1/kv/service/batman/members/?recurse");
	kv_url_refused(&s, "batman", "members/", false, "invalid consul key \"members/\"");
	kv_url_refused(&s, "batman", "members//", true, "invalid consul key");
}

static void
test_consul_kv_url_refuses_bad_names(void **state)
{
	struct consul_settings s;

	settings_default(&s);
	kv_url_refused(&s, "", "leader", false, "invalid patroni scope \"\"");
	kv_url_refused(&s, NULL, "leader", false, "invalid patroni scope");
	kv_url_refused(&s, "bat/man", "leader", false, "invalid patroni scope \"bat/man\"");
	kv_url_refused(&s, "..", "leader", false, "invalid patroni scope \"..\"");
	kv_url_refused(&s, "bat man", "leader", false, "invalid patroni scope");
	kv_url_refused(&s, "batman?x", "leader", false, "invalid patroni scope");
	kv_url_refused(&s, "batman", "members/../x", false, "invalid consul key \"members/../x\"");
	kv_url_refused(&s, "batman", "/leader", false, "invalid consul key");
	kv_url_refused(&s, "batman", "leader&recurse", false, "invalid consul key");
	kv_url_refused(&s, "batman", "", false, "empty key for scope \"batman\" without recurse");
	strcpy(s.namespace_, "/service/");
	kv_url_refused(&s, "batman", "leader", false, "invalid consul namespace \"/service/\"");
	s.namespace_[0] = '\0';
	kv_url_refused(&s, "batman", "leader", false, "invalid consul namespace");
}

static void
test_consul_kv_url_nested_namespace(void **state)
{
	struct consul_settings s;

	settings_default(&s);
	strcpy(s.namespace_, "pg/prod");
	kv_url_is(&s, "batman", "leader", 0, false,
		  "http://127.0.0.1:8500/v1/kv/pg/prod/batman/leader");
}

static void
test_consul_kv_url_refuses_small_buffer(void **state)
{
	struct consul_settings s;
	char url[40];
	char err[256];

	settings_default(&s);
	assert_false(consul_kv_url(&s, "batman", "leader", 27, false, url, sizeof(url),
				   err, sizeof(err)));
	assert_non_null(strstr(err, "too long"));
}

static void
test_consul_api_url_builds(void **state)
{
	struct consul_settings s;
	char url[CONSUL_URL_MAX];
	char err[256];

	settings_default(&s);
	assert_true(consul_api_url(&s, "/v1/agent/service/register?replace-existing-checks",
				   url, sizeof(url), err, sizeof(err)));
	assert_string_equal(url, "http://127.0.0.1:8500/v1/agent/service/register?replace-existing-checks");
	assert_false(consul_api_url(&s, "v1/query", url, sizeof(url), err, sizeof(err)));
	assert_non_null(strstr(err, "does not start with /v1/"));
	assert_false(consul_api_url(&s, "/v1/query x", url, sizeof(url), err, sizeof(err)));
	assert_non_null(strstr(err, "invalid character"));
}

static void
test_consul_blocking_timeout_ms_adds_jitter_and_margin(void **state)
{
	assert_int_equal(consul_blocking_timeout_ms(300 * SEC), 300000 + 18750 + 5000);
	assert_int_equal(consul_blocking_timeout_ms(10 * SEC), 10000 + 625 + 5000);
	/* wait 0 means Consul's default of 5 minutes */
	assert_int_equal(consul_blocking_timeout_ms(0), 300000 + 18750 + 5000);
	assert_true(consul_blocking_timeout_ms(UINT64_MAX) > 0);
}

static void
test_consul_response_write_accumulates(void **state)
{
	struct consul_response resp;
	char a[] = "[{\"Key\":";
	char b[] = "\"x\"}]";

	memset(&resp, 0, sizeof(resp));
	assert_int_equal(consul_response_write(a, 1, strlen(a), &resp), strlen(a));
	assert_int_equal(consul_response_write(b, 1, strlen(b), &resp), strlen(b));
	assert_int_equal(resp.len, strlen(a) + strlen(b));
	assert_string_equal(resp.body, "[{\"Key\":\"x\"}]");
	assert_false(resp.too_large);
	consul_response_free(&resp);
	assert_null(resp.body);
	assert_int_equal(resp.len, 0);
}

static void
test_consul_response_write_refuses_large_body(void **state)
{
	struct consul_response resp;
	size_t chunk = 64 * 1024;
	char *buf = malloc(chunk);
	size_t total = 0;
	size_t got;

	assert_non_null(buf);
	memset(buf, 'x', chunk);
	memset(&resp, 0, sizeof(resp));
	for (;;) {
		got = consul_response_write(buf, 1, chunk, &resp);
		if (got != chunk)
			break;
		total += got;
	}
	assert_int_equal(got, 0);
	assert_true(resp.too_large);
	assert_int_equal(total, CONSUL_BODY_MAX);
	assert_int_equal(resp.len, CONSUL_BODY_MAX);
	consul_response_free(&resp);
	free(buf);
}

static void
test_consul_response_header_reads_index(void **state)
{
	struct consul_response resp;
	char status[] = "HTTP/1.1 200 OK\r\n";
	char other[] = "X-Consul-Knownleader: true\r\n";
	char index[] = "x-consul-index: 131\r\n";
	char bad[] = "X-Consul-Index: 13x\r\n";

	memset(&resp, 0, sizeof(resp));
	consul_response_header(status, 1, strlen(status), &resp);
	consul_response_header(other, 1, strlen(other), &resp);
	assert_false(resp.has_index);
	assert_int_equal(consul_response_header(index, 1, strlen(index), &resp), strlen(index));
	assert_true(resp.has_index);
	assert_int_equal(resp.index, 131);
	/* a new response (after a redirect or 100) forgets the old index */
	consul_response_header(status, 1, strlen(status), &resp);
	assert_false(resp.has_index);
	consul_response_header(bad, 1, strlen(bad), &resp);
	assert_false(resp.has_index);
}

static void
test_consul_easy_setup_token_header(void **state)
{
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers = (struct curl_slist *) 1;
	CURL *easy = curl_easy_init();
	char err[256];

	assert_non_null(easy);
	settings_default(&s);
	assert_true(consul_easy_setup(easy, &s, "http://127.0.0.1:8500/v1/kv/service/x/leader",
				      5000, &resp, &headers, err, sizeof(err)));
	assert_null(headers);
	strcpy(s.token, SECRET);
	strcpy(s.ca_file, "/etc/ssl/certs/ca-certificates.crt");
	assert_true(consul_easy_setup(easy, &s, "https://127.0.0.1:8501/v1/kv/service/x/leader",
				      5000, &resp, &headers, err, sizeof(err)));
	assert_non_null(headers);
	assert_string_equal(headers->data, "X-Consul-Token: " SECRET);
	assert_null(headers->next);
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
}

static void
test_consul_easy_setup_refuses_bad_timeout(void **state)
{
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char err[256];

	settings_default(&s);
	strcpy(s.token, SECRET);
	assert_false(consul_easy_setup(easy, &s, "http://127.0.0.1:8500", 0, &resp, &headers,
				       err, sizeof(err)));
	assert_non_null(strstr(err, "invalid consul request timeout 0 ms"));
	assert_null(strstr(err, SECRET));
	assert_null(headers);
	curl_easy_cleanup(easy);
}

static void
test_consul_easy_setup_refuses_other_protocols(void **state)
{
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char err[256];
	CURLcode rc;

	settings_default(&s);
	assert_true(consul_easy_setup(easy, &s, "file:///etc/hostname", 2000, &resp, &headers,
				      err, sizeof(err)));
	rc = curl_easy_perform(easy);
	assert_int_equal(rc, CURLE_UNSUPPORTED_PROTOCOL);
	consul_response_finish(easy, &resp);
	assert_int_equal(resp.status, 0);
	assert_null(resp.body);
	consul_response_free(&resp);
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
}

/*
 * A one-shot HTTP server on 127.0.0.1 in a child process: it answers the
 * first request with answer and writes the request it saw to *req_fd.
 * Loopback only: it stands in for the wire so the callbacks run for real.
 */
static pid_t
fake_consul_start(const char *answer, size_t answer_len, int *port, int *req_fd)
{
	struct sockaddr_in addr;
	socklen_t alen = sizeof(addr);
	int lfd, cfd, pfd[2];
	char req[8192];
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *) &addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *) &addr, &alen), 0);
	*port = ntohs(addr.sin_port);
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid > 0) {
		close(lfd);
		close(pfd[1]);
		*req_fd = pfd[0];
		return pid;
	}
	close(pfd[0]);
	cfd = accept(lfd, NULL, NULL);
	if (cfd < 0)
		_exit(1);
	while (got < sizeof(req) - 1) {
		n = read(cfd, req + got, sizeof(req) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t) n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	if (write(pfd[1], req, got) < 0)
		_exit(1);
	close(pfd[1]);
	while (answer_len > 0) {
		n = write(cfd, answer, answer_len);
		if (n <= 0)
			break;
		answer += n;
		answer_len -= (size_t) n;
	}
	close(cfd);
	_exit(0);
}

static void
fake_consul_stop(pid_t pid, int req_fd, char *req, size_t reqlen)
{
	ssize_t n;
	size_t got = 0;
	int status;

	while (got < reqlen - 1) {
		n = read(req_fd, req + got, reqlen - 1 - got);
		if (n <= 0)
			break;
		got += (size_t) n;
	}
	req[got] = '\0';
	close(req_fd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
}

static void
test_consul_easy_setup_captures_answer(void **state)
{
	static const char answer[] =
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		"X-Consul-Index: 27\r\nX-Consul-Knownleader: true\r\n"
		"Content-Length: 13\r\nConnection: close\r\n\r\n[{\"Key\":\"x\"}]";
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char url[CONSUL_URL_MAX];
	char req[8192];
	char err[256];
	int port, req_fd;
	pid_t pid;

	pid = fake_consul_start(answer, sizeof(answer) - 1, &port, &req_fd);
	settings_default(&s);
	snprintf(s.url, sizeof(s.url), "http://127.0.0.1:%d", port);
	strcpy(s.token, SECRET);
	assert_true(consul_kv_url(&s, "batman", "leader", 5, false, url, sizeof(url),
				  err, sizeof(err)));
	assert_true(consul_easy_setup(easy, &s, url, 10000, &resp, &headers, err, sizeof(err)));
	assert_int_equal(curl_easy_perform(easy), CURLE_OK);
	consul_response_finish(easy, &resp);
	fake_consul_stop(pid, req_fd, req, sizeof(req));

	assert_int_equal(resp.status, 200);
	assert_true(resp.has_index);
	assert_int_equal(resp.index, 27);
	assert_int_equal(resp.len, 13);
	assert_string_equal(resp.body, "[{\"Key\":\"x\"}]");
	assert_non_null(strstr(req, "GET /v1/kv/service/batman/leader?index=5&wait=300s HTTP/1.1\r\n"));
	assert_non_null(strstr(req, "\r\nX-Consul-Token: " SECRET "\r\n"));
	consul_response_free(&resp);
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
}

static void
test_consul_easy_setup_aborts_large_answer(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nX-Consul-Index: 9\r\n"
				   "Content-Length: 2097152\r\nConnection: close\r\n\r\n";
	size_t total = sizeof(head) - 1 + 2097152;
	char *answer = malloc(total);
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char url[CONSUL_URL_MAX];
	char req[8192];
	char err[256];
	int port, req_fd;
	pid_t pid;

	assert_non_null(answer);
	memcpy(answer, head, sizeof(head) - 1);
	memset(answer + sizeof(head) - 1, ' ', 2097152);
	pid = fake_consul_start(answer, total, &port, &req_fd);
	free(answer);
	settings_default(&s);
	snprintf(s.url, sizeof(s.url), "http://127.0.0.1:%d", port);
	assert_true(consul_kv_url(&s, "batman", "", 0, true, url, sizeof(url), err, sizeof(err)));
	assert_true(consul_easy_setup(easy, &s, url, 10000, &resp, &headers, err, sizeof(err)));
	assert_int_equal(curl_easy_perform(easy), CURLE_WRITE_ERROR);
	consul_response_finish(easy, &resp);
	fake_consul_stop(pid, req_fd, req, sizeof(req));

	assert_true(resp.too_large);
	assert_true(resp.len <= CONSUL_BODY_MAX);
	assert_null(headers);
	assert_null(strstr(req, "X-Consul-Token"));
	consul_response_free(&resp);
	curl_easy_cleanup(easy);
}

static const char small_answer[] =
	"HTTP/1.1 200 OK\r\nX-Consul-Index: 3\r\nContent-Length: 2\r\n"
	"Connection: close\r\n\r\n[]";

/* every variable libcurl reads a proxy from, pointing at a closed port */
static void
environment_proxies_set(const char *value)
{
	static const char *const names[] = {
		"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
		"ALL_PROXY", NULL
	};
	int i;

	for (i = 0; names[i] != NULL; i++) {
		if (value != NULL)
			setenv(names[i], value, 1);
		else
			unsetenv(names[i]);
	}
}

static void
test_consul_easy_setup_ignores_environment_proxy(void **state)
{
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char url[CONSUL_URL_MAX];
	char req[8192];
	char err[256];
	int port, req_fd;
	CURLcode rc;
	pid_t pid;

	/* port 1 on loopback: a transfer that used it would fail to connect */
	environment_proxies_set("http://127.0.0.1:1");
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	pid = fake_consul_start(small_answer, sizeof(small_answer) - 1, &port, &req_fd);
	settings_default(&s);
	snprintf(s.url, sizeof(s.url), "http://127.0.0.1:%d", port);
	strcpy(s.token, SECRET);
	assert_true(consul_kv_url(&s, "batman", "leader", 0, false, url, sizeof(url),
				  err, sizeof(err)));
	assert_true(consul_easy_setup(easy, &s, url, 10000, &resp, &headers, err, sizeof(err)));
	rc = curl_easy_perform(easy);
	if (rc != CURLE_OK)
		kill(pid, SIGKILL);	/* never asked: do not wait for its request */
	consul_response_finish(easy, &resp);
	fake_consul_stop(pid, req_fd, req, sizeof(req));
	environment_proxies_set(NULL);
	assert_int_equal(rc, CURLE_OK);

	assert_int_equal(resp.status, 200);
	/* origin form: the agent itself was asked, not a proxy */
	assert_non_null(strstr(req, "GET /v1/kv/service/batman/leader HTTP/1.1\r\n"));
	consul_response_free(&resp);
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
}

static void
test_consul_easy_setup_uses_configured_proxy(void **state)
{
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char url[CONSUL_URL_MAX];
	char req[8192];
	char err[256];
	int port, req_fd;
	CURLcode rc;
	pid_t pid;

	/* the environment's no_proxy must not route around the configured one */
	setenv("no_proxy", "*", 1);
	pid = fake_consul_start(small_answer, sizeof(small_answer) - 1, &port, &req_fd);
	settings_default(&s);
	strcpy(s.url, "http://consul.invalid:8500");
	snprintf(s.proxy, sizeof(s.proxy), "http://proxyuser:pw@127.0.0.1:%d", port);
	assert_true(consul_kv_url(&s, "batman", "leader", 0, false, url, sizeof(url),
				  err, sizeof(err)));
	assert_true(consul_easy_setup(easy, &s, url, 10000, &resp, &headers, err, sizeof(err)));
	rc = curl_easy_perform(easy);
	if (rc != CURLE_OK)
		kill(pid, SIGKILL);
	consul_response_finish(easy, &resp);
	fake_consul_stop(pid, req_fd, req, sizeof(req));
	unsetenv("no_proxy");
	assert_int_equal(rc, CURLE_OK);

	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(req, "GET http://consul.invalid:8500/v1/kv/service/batman/leader "
			       "HTTP/1.1\r\n"));
	/* base64("proxyuser:pw") */
	assert_non_null(strstr(req, "\r\nProxy-Authorization: Basic cHJveHl1c2VyOnB3\r\n"));
	consul_response_free(&resp);
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
}

static void
test_consul_easy_setup_refuses_bad_proxy(void **state)
{
	struct consul_settings s;
	struct consul_response resp;
	struct curl_slist *headers;
	CURL *easy = curl_easy_init();
	char err[256] = "";

	settings_default(&s);
	strcpy(s.proxy, "ftp://user:" SECRET "@127.0.0.1:21");
	assert_false(consul_easy_setup(easy, &s, "http://127.0.0.1:8500/v1/kv/x", 5000, &resp,
				       &headers, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid consul proxy"));
	assert_null(strstr(err, SECRET));
	assert_null(headers);
	curl_easy_cleanup(easy);
}

static int
setup_curl(void **state)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int
teardown_curl(void **state)
{
	curl_global_cleanup();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consul_url_check_accepts_agent_urls),
		cmocka_unit_test(test_consul_url_check_refuses_paths_and_schemes),
		cmocka_unit_test(test_consul_url_check_refuses_bad_host_or_port),
		cmocka_unit_test(test_consul_url_check_refuses_userinfo_without_showing_it),
		cmocka_unit_test(test_consul_consistency_parse_names),
		cmocka_unit_test(test_consul_token_read_trims_newline),
		cmocka_unit_test(test_consul_token_read_refuses_empty),
		cmocka_unit_test(test_consul_token_read_refuses_multi_line),
		cmocka_unit_test(test_consul_token_read_refuses_odd_characters),
		cmocka_unit_test(test_consul_token_read_refuses_too_long),
		cmocka_unit_test(test_consul_token_read_refuses_large_file),
		cmocka_unit_test(test_consul_token_read_refuses_unreadable),
		cmocka_unit_test(test_consul_kv_url_blocking),
		cmocka_unit_test(test_consul_kv_url_index_zero_is_non_blocking),
		cmocka_unit_test(test_consul_kv_url_consistency),
		cmocka_unit_test(test_consul_kv_url_datacenter),
		cmocka_unit_test(test_consul_kv_url_longest_fits),
		cmocka_unit_test(test_consul_datacenter_valid_names),
		cmocka_unit_test(test_consul_kv_url_recurse_scope_prefix),
		cmocka_unit_test(test_consul_kv_url_refuses_bad_names),
		cmocka_unit_test(test_consul_kv_url_nested_namespace),
		cmocka_unit_test(test_consul_kv_url_refuses_small_buffer),
		cmocka_unit_test(test_consul_api_url_builds),
		cmocka_unit_test(test_consul_blocking_timeout_ms_adds_jitter_and_margin),
		cmocka_unit_test(test_consul_response_write_accumulates),
		cmocka_unit_test(test_consul_response_write_refuses_large_body),
		cmocka_unit_test(test_consul_response_header_reads_index),
		cmocka_unit_test(test_consul_easy_setup_token_header),
		cmocka_unit_test(test_consul_easy_setup_refuses_bad_timeout),
		cmocka_unit_test(test_consul_easy_setup_refuses_other_protocols),
		cmocka_unit_test(test_consul_easy_setup_captures_answer),
		cmocka_unit_test(test_consul_easy_setup_aborts_large_answer),
		cmocka_unit_test(test_consul_easy_setup_ignores_environment_proxy),
		cmocka_unit_test(test_consul_easy_setup_uses_configured_proxy),
		cmocka_unit_test(test_consul_easy_setup_refuses_bad_proxy),
	};

	return cmocka_run_group_tests(tests, setup_curl, teardown_curl);
}
