/*
 * Unit tests for lib/consul_proxy.c: which [consul] proxy values are
 * accepted, that messages never quote one, and how one is shown in logs.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "consul_client.h"
#include "consul_proxy.h"

#define PASSWORD "s3cr3t-pw"

static void
proxy_ok(const char *proxy)
{
	char err[256] = "";

	if (!consul_proxy_check(proxy, err, sizeof(err)))
		fail_msg("\"%s\" refused: %s", proxy, err);
}

/* refused with a message holding expect and none of the value's user info */
static void
proxy_refused(const char *proxy, const char *expect)
{
	char err[256] = "";

	if (consul_proxy_check(proxy, err, sizeof(err)))
		fail_msg("\"%s\" accepted", proxy);
	if (strstr(err, expect) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err, expect);
	if (strstr(err, PASSWORD) != NULL)
		fail_msg("error \"%s\" shows the password", err);
}

static void
shown_is(const char *proxy, const char *expect)
{
	char out[256];

	consul_proxy_shown(proxy, out, sizeof(out));
	assert_string_equal(out, expect);
}

static void
test_consul_proxy_check_accepts_none(void **state)
{
	proxy_ok("");
	proxy_ok(NULL);
}

static void
test_consul_proxy_check_accepts_schemes(void **state)
{
	proxy_ok("http://127.0.0.1:3128");
	proxy_ok("http://proxy.example.com:8080/");
	proxy_ok("https://proxy.example.com:443");
	proxy_ok("socks5://[::1]:1080");
	proxy_ok("socks5h://localhost:1080");
}

static void
test_consul_proxy_check_accepts_user_info(void **state)
{
	proxy_ok("http://user:" PASSWORD "@127.0.0.1:3128");
	proxy_ok("http://user@127.0.0.1:3128");
	proxy_ok("socks5h://us%40er:p%3Aw!$&'()*+,;=@[2001:db8::1]:1080");
}

static void
test_consul_proxy_check_refuses_schemes(void **state)
{
	proxy_refused("127.0.0.1:3128", "must start with http://, https://, socks5:// or socks5h://");
	proxy_refused("ftp://127.0.0.1:21", "must start with http://");
	proxy_refused("HTTP://127.0.0.1:3128", "must start with http://");
	proxy_refused("socks4://127.0.0.1:1080", "use socks5:// or socks5h://");
	proxy_refused("socks4a://127.0.0.1:1080", "use socks5:// or socks5h://");
	proxy_refused("file:///etc/passwd", "must start with");
}

static void
test_consul_proxy_check_refuses_missing_port(void **state)
{
	/* libcurl 7.88 would pick 1080, later releases the scheme's port */
	proxy_refused("http://127.0.0.1", "needs a port");
	proxy_refused("http://user:" PASSWORD "@proxy/", "needs a port");
	proxy_refused("socks5h://[::1]", "needs a port");
}

static void
test_consul_proxy_check_refuses_bad_host_or_port(void **state)
{
	proxy_refused("http://", "invalid host");
	proxy_refused("http://:3128", "invalid host");
	proxy_refused("http://h_1:3128", "invalid host");
	proxy_refused("http://::1:3128", "invalid host");
	proxy_refused("http://[::1:3128", "unterminated [");
	proxy_refused("http://h:0", "invalid port");
	proxy_refused("http://h:65536", "invalid port");
	proxy_refused("http://h:31a8", "invalid port");
	proxy_refused("http://user:" PASSWORD "@:3128", "invalid host");
}

static void
test_consul_proxy_check_refuses_paths_and_odd_bytes(void **state)
{
	proxy_refused("http://127.0.0.1:3128/x", "must not have a path");
	proxy_refused("http://127.0.0.1:3128//", "must not have a path");
	proxy_refused("http://127.0.0.1:3128?a=b", "must not have a path, query");
	proxy_refused("http://127.0.0.1:3128#f", "must not have a path, query or fragment");
	proxy_refused("http://127.0.0.1 :3128", "invalid character 0x20");
	proxy_refused("http://127.0.0.1:3128\r\nX: y", "invalid character 0x0d");
	proxy_refused("http://user:pa\x7fss@h:1", "invalid character 0x7f");
}

static void
test_consul_proxy_check_refuses_bad_user_info(void **state)
{
	proxy_refused("http://@127.0.0.1:3128", "invalid user info");
	proxy_refused("http://user:" PASSWORD "%4@127.0.0.1:3128", "invalid user info");
	proxy_refused("http://user:" PASSWORD "%zz@127.0.0.1:3128", "invalid user info");
	proxy_refused("http://us\"er:" PASSWORD "@127.0.0.1:3128", "invalid user info");
	/* the last '@' ends the user info: a raw '@' in it is refused */
	proxy_refused("http://user:" PASSWORD "@x@127.0.0.1:3128", "invalid user info");
}

static void
test_consul_proxy_check_refuses_too_long(void **state)
{
	char proxy[CONSUL_URL_MAX + 16];

	memset(proxy, 'a', sizeof(proxy));
	memcpy(proxy, "http://", 7);
	proxy[sizeof(proxy) - 1] = '\0';
	proxy_refused(proxy, "too long");
}

static void
test_consul_proxy_shown_drops_user_info(void **state)
{
	shown_is("", "");
	shown_is("http://127.0.0.1:3128", "http://127.0.0.1:3128");
	shown_is("http://user:" PASSWORD "@127.0.0.1:3128", "http://127.0.0.1:3128");
	shown_is("socks5h://u:p@x@[::1]:1080/", "socks5h://[::1]:1080/");
	shown_is("user:" PASSWORD "@proxy:3128", "proxy:3128");
	/* an '@' after the authority is not user info */
	shown_is("http://h:1/a@b", "http://h:1/a@b");
	shown_is("http://h:1\"\n", "http://h:1??");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_consul_proxy_check_accepts_none),
		cmocka_unit_test(test_consul_proxy_check_accepts_schemes),
		cmocka_unit_test(test_consul_proxy_check_accepts_user_info),
		cmocka_unit_test(test_consul_proxy_check_refuses_schemes),
		cmocka_unit_test(test_consul_proxy_check_refuses_missing_port),
		cmocka_unit_test(test_consul_proxy_check_refuses_bad_host_or_port),
		cmocka_unit_test(test_consul_proxy_check_refuses_paths_and_odd_bytes),
		cmocka_unit_test(test_consul_proxy_check_refuses_bad_user_info),
		cmocka_unit_test(test_consul_proxy_check_refuses_too_long),
		cmocka_unit_test(test_consul_proxy_shown_drops_user_info),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
