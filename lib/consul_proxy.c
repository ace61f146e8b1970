/*
 * The proxy Consul requests may go through: only the one [consul] proxy
 * names, checked here, so a token never leaves through a proxy taken
 * from the environment or through one libcurl would guess a port for.
 */
#include "consul_proxy.h"
#include "consul_client.h"
#include "errbuf.h"
#include "patroni_member.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#define CONSUL_PROXY_SCHEMES "http://, https://, socks5:// or socks5h://"

/* the schemes an operator's proxy may use, longest prefix first where one is another's */
static const char *const consul_proxy_schemes[] = {
	"http://", "https://", "socks5h://", "socks5://", NULL
};

static size_t
consul_proxy_scheme_len(const char *proxy)
{
	const char *const *s;

	for (s = consul_proxy_schemes; *s != NULL; s++) {
		if (strncmp(proxy, *s, strlen(*s)) == 0)
			return strlen(*s);
	}
	return 0;
}

static bool
consul_proxy_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 userinfo: unreserved, sub-delims, ':' and %XX */
static bool
consul_proxy_userinfo_valid(const char *p, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (p[i] == '%') {
			if (i + 2 >= n || !consul_proxy_hex(p[i + 1]) || !consul_proxy_hex(p[i + 2]))
				return false;
			i += 2;
			continue;
		}
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			   "-._~!$&'()*+,;=:", p[i]) == NULL)
			return false;
	}
	return true;
}

/* where the authority ends: the first '/', '?' or '#' after the scheme */
static size_t
consul_proxy_authority_len(const char *start)
{
	return strcspn(start, "/?#");
}

/* the last '@' of the authority, or NULL */
static const char *
consul_proxy_at(const char *start, size_t alen)
{
	const char *at = NULL;
	size_t i;

	for (i = 0; i < alen; i++) {
		if (start[i] == '@')
			at = start + i;
	}
	return at;
}

void
consul_proxy_shown(const char *proxy, char *out, size_t outlen)
{
	char buf[CONSUL_URL_MAX];
	const char *sep;
	const char *start;
	const char *at;
	size_t slen;

	if (proxy == NULL)
		proxy = "";
	sep = strstr(proxy, "://");
	start = sep != NULL ? sep + 3 : proxy;
	at = consul_proxy_at(start, consul_proxy_authority_len(start));
	if (at == NULL) {
		errbuf_printable(proxy, out, outlen);
		return;
	}
	slen = (size_t) (start - proxy);
	if (slen >= sizeof(buf))
		slen = sizeof(buf) - 1;
	memcpy(buf, proxy, slen);
	snprintf(buf + slen, sizeof(buf) - slen, "%s", at + 1);
	errbuf_printable(buf, out, outlen);
}

bool
consul_proxy_check(const char *proxy, char *err, size_t errlen)
{
	char hostport[CONSUL_URL_MAX];
	char host[PATRONI_HOST_MAX];
	const char *start;
	const char *at;
	const char *hp;
	const char *why;
	const char *p;
	size_t skip;
	size_t alen;
	long port;

	if (proxy == NULL || proxy[0] == '\0')
		return true;
	if (strlen(proxy) >= CONSUL_URL_MAX) {
		errbuf_set(err, errlen, "too long (max %d bytes)", CONSUL_URL_MAX - 1);
		return false;
	}
	for (p = proxy; *p != '\0'; p++) {
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p > 0x7e) {
			errbuf_set(err, errlen, "invalid character 0x%02x",
				   (unsigned int) (unsigned char) *p);
			return false;
		}
	}
	if (strncmp(proxy, "socks4://", 9) == 0 || strncmp(proxy, "socks4a://", 10) == 0) {
		errbuf_set(err, errlen, "socks4 cannot carry IPv6 or a password; use socks5:// or socks5h://");
		return false;
	}
	skip = consul_proxy_scheme_len(proxy);
	if (skip == 0) {
		errbuf_set(err, errlen, "must start with " CONSUL_PROXY_SCHEMES);
		return false;
	}
	if (strncmp(proxy, "https://", 8) == 0 &&
	    (curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTPS_PROXY) == 0) {
		errbuf_set(err, errlen, "this libcurl cannot talk TLS to a proxy (https://)");
		return false;
	}
	start = proxy + skip;
	alen = consul_proxy_authority_len(start);
	if (start[alen] != '\0' && strcmp(start + alen, "/") != 0) {
		errbuf_set(err, errlen, "must not have a path, query or fragment");
		return false;
	}
	at = consul_proxy_at(start, alen);
	hp = start;
	if (at != NULL) {
		if (!consul_proxy_userinfo_valid(start, (size_t) (at - start))) {
			errbuf_set(err, errlen,
				   "invalid user info (percent-encode '@', '/' and other reserved characters)");
			return false;
		}
		hp = at + 1;
		alen -= (size_t) (hp - start);
	}
	memcpy(hostport, hp, alen);
	hostport[alen] = '\0';
	if (!consul_host_port_parse(hostport, host, sizeof(host), &port, &why)) {
		errbuf_set(err, errlen, "%s", why);
		return false;
	}
	if (port < 0) {
		errbuf_set(err, errlen, "needs a port (libcurl's default proxy port differs between versions)");
		return false;
	}
	return true;
}
