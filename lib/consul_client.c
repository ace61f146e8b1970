/*
 * Consul HTTP client pieces: check the agent URL, read the ACL token
 * file, build KV URLs for blocking queries, and set up libcurl easy
 * handles that capture a bounded body and the X-Consul-Index header.
 */
#include "consul_client.h"
#include "consul_kv.h"
#include "consul_proxy.h"
#include "duration.h"
#include "errbuf.h"
#include "patroni_member.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONSUL_TOKEN_FILE_MAX 4096
#define CONSUL_USER_AGENT "pgbouncer-consul"

/* overwrite secrets in a way the compiler may not drop */
static void
consul_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

static bool
consul_segment_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/*
 * A KV path of [A-Za-z0-9._-] segments separated by single slashes, with
 * no "." or ".." segment (Consul 1.21.5+ refuses those) and no slash at
 * either end; slashes only when allow_slash.
 */
static bool
consul_path_valid(const char *path, bool allow_slash)
{
	const char *seg = path;
	const char *p;
	size_t n;

	if (path[0] == '\0')
		return false;
	for (;;) {
		for (p = seg; *p != '\0' && *p != '/'; p++) {
			if (!consul_segment_char(*p))
				return false;
		}
		n = (size_t) (p - seg);
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		if (*p == '\0')
			return true;
		if (!allow_slash)
			return false;
		seg = p + 1;
	}
}

/* a key below the scope; with recurse it may end in '/' ("members/") */
static bool
consul_key_valid(const char *key, bool recurse)
{
	char copy[CONSUL_URL_MAX];
	size_t n = strlen(key);

	if (n >= sizeof(copy))
		return false;
	memcpy(copy, key, n + 1);
	if (recurse && n > 1 && copy[n - 1] == '/')
		copy[n - 1] = '\0';
	return consul_path_valid(copy, true);
}

bool
consul_host_port_parse(const char *text, char *host, size_t hostlen, long *port,
		       const char **why)
{
	const char *colon = NULL;
	const char *hstart;
	const char *p;
	size_t hlen;
	bool bracketed = false;

	*port = -1;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL) {
			*why = "unterminated [";
			return false;
		}
		hstart = text + 1;
		hlen = (size_t) (close - hstart);
		if (close[1] != '\0' && close[1] != ':') {
			*why = "unexpected text after ]";
			return false;
		}
		if (close[1] == ':')
			colon = close + 1;
		bracketed = true;
	} else {
		hstart = text;
		colon = strchr(text, ':');
		hlen = colon ? (size_t) (colon - text) : strlen(text);
	}
	*why = "invalid host";
	if (hlen == 0 || hlen >= hostlen)
		return false;
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	if (!patroni_host_valid(host) || bracketed != (strchr(host, ':') != NULL))
		return false;
	if (colon == NULL)
		return true;
	*why = "invalid port";
	p = colon + 1;
	if (*p == '\0' || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p))
		return false;
	*port = strtol(p, NULL, 10);
	if (*port < 1 || *port > 65535) {
		*port = -1;
		return false;
	}
	return true;
}

bool
consul_url_check_as(const char *url, const char *what, char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	char host[PATRONI_HOST_MAX];
	const char *rest;
	const char *why;
	const char *p;
	long port;

	if (url == NULL || url[0] == '\0') {
		errbuf_set(err, errlen, "%s is empty", what);
		return false;
	}
	errbuf_printable(url, shown, sizeof(shown));
	if (strlen(url) >= CONSUL_URL_MAX) {
		errbuf_set(err, errlen, "%s \"%s\" is too long", what, shown);
		return false;
	}
	if (strncmp(url, "http://", 7) == 0) {
		rest = url + 7;
	} else if (strncmp(url, "https://", 8) == 0) {
		rest = url + 8;
	} else {
		errbuf_set(err, errlen, "%s \"%s\" must start with http:// or https://", what,
			   shown);
		return false;
	}
	for (p = rest; *p != '\0'; p++) {
		if (!consul_segment_char(*p) && *p != ':' && *p != '[' && *p != ']') {
			if (*p == '/')
				errbuf_set(err, errlen,
					   "%s \"%s\" must not have a path (nor a trailing slash)",
					   what, shown);
			else if (*p == '@')
				errbuf_set(err, errlen, "%s must not carry user info%s", what,
					   strcmp(what, "consul url") == 0 ?
					   "; put the token in token_file" : "");
			else
				errbuf_set(err, errlen, "invalid character 0x%02x in %s \"%s\"",
					   (unsigned int) (unsigned char) *p, what, shown);
			return false;
		}
	}
	if (!consul_host_port_parse(rest, host, sizeof(host), &port, &why)) {
		errbuf_set(err, errlen, "%s in %s \"%s\"", why, what, shown);
		return false;
	}
	return true;
}

bool
consul_url_check(const char *url, char *err, size_t errlen)
{
	return consul_url_check_as(url, "consul url", err, errlen);
}

bool
consul_consistency_parse(const char *text, enum consul_consistency *out)
{
	if (text == NULL)
		return false;
	if (strcasecmp(text, "default") == 0)
		*out = CONSUL_CONSISTENCY_DEFAULT;
	else if (strcasecmp(text, "consistent") == 0)
		*out = CONSUL_CONSISTENCY_CONSISTENT;
	else if (strcasecmp(text, "stale") == 0)
		*out = CONSUL_CONSISTENCY_STALE;
	else
		return false;
	return true;
}

bool
consul_datacenter_valid(const char *name, const char **why)
{
	const char *p;

	if (name == NULL || name[0] == '\0') {
		*why = "empty datacenter name";
		return false;
	}
	if (strlen(name) >= CONSUL_DATACENTER_MAX) {
		*why = "datacenter name too long";
		return false;
	}
	for (p = name; *p != '\0'; p++) {
		/* ASCII only, whatever the locale */
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) {
			*why = "only letters, digits, '-' and '_' are allowed";
			return false;
		}
	}
	return true;
}

const char *
consul_consistency_name(enum consul_consistency c)
{
	switch (c) {
	case CONSUL_CONSISTENCY_CONSISTENT:
		return "consistent";
	case CONSUL_CONSISTENCY_STALE:
		return "stale";
	case CONSUL_CONSISTENCY_DEFAULT:
	default:
		return "default";
	}
}

/* check the trimmed token text; the message never shows it */
static bool
consul_token_check(const char *buf, size_t n, size_t len, const char *shown,
		   char *err, size_t errlen)
{
	size_t i;

	if (n == 0) {
		errbuf_set(err, errlen, "token file \"%s\" is empty", shown);
		return false;
	}
	for (i = 0; i < n; i++) {
		if (buf[i] == '\n' || buf[i] == '\r') {
			errbuf_set(err, errlen, "token file \"%s\" has more than one line", shown);
			return false;
		}
	}
	for (i = 0; i < n; i++) {
		if ((unsigned char) buf[i] <= 0x20 || (unsigned char) buf[i] > 0x7e) {
			errbuf_set(err, errlen, "token file \"%s\" contains invalid characters", shown);
			return false;
		}
	}
	if (n >= len || n >= CONSUL_TOKEN_MAX) {
		errbuf_set(err, errlen, "token in file \"%s\" is too long", shown);
		return false;
	}
	return true;
}

bool
consul_token_read(const char *path, char *token, size_t len, char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	char buf[CONSUL_TOKEN_FILE_MAX + 1];
	FILE *f;
	size_t n;
	bool ok;

	if (path == NULL || path[0] == '\0') {
		errbuf_set(err, errlen, "token file path is empty");
		return false;
	}
	errbuf_printable(path, shown, sizeof(shown));
	f = fopen(path, "r");
	if (f == NULL) {
		errbuf_set(err, errlen, "cannot open token file \"%s\": %s", shown, strerror(errno));
		return false;
	}
	n = fread(buf, 1, sizeof(buf), f);
	if (ferror(f)) {
		errbuf_set(err, errlen, "cannot read token file \"%s\": %s", shown, strerror(errno));
		fclose(f);
		consul_wipe(buf, sizeof(buf));
		return false;
	}
	fclose(f);
	if (n > CONSUL_TOKEN_FILE_MAX) {
		errbuf_set(err, errlen, "token file \"%s\" is too large", shown);
		consul_wipe(buf, sizeof(buf));
		return false;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
			 buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	ok = consul_token_check(buf, n, len, shown, err, errlen);
	if (ok) {
		memcpy(token, buf, n);
		token[n] = '\0';
	}
	consul_wipe(buf, sizeof(buf));
	return ok;
}

/* printf to the end of the query; *qn >= size once something did not fit */
static void kv_query_add(char *query, size_t size, size_t *qn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
kv_query_add(char *query, size_t size, size_t *qn, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*qn >= size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(query + *qn, size - *qn, fmt, ap);
	va_end(ap);
	*qn = n < 0 ? size : *qn + (size_t) n;
}

bool
consul_kv_url(const struct consul_settings *s, const char *scope, const char *key,
	      uint64_t index, bool recurse, char *url, size_t len, char *err, size_t errlen)
{
	return consul_kv_url_wait(s, s->wait_usec, scope, key, index, recurse, url, len,
				  err, errlen);
}

bool
consul_kv_url_wait(const struct consul_settings *s, uint64_t wait_usec, const char *scope,
		   const char *key, uint64_t index, bool recurse, char *url, size_t len,
		   char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	char wait[32];
	char query[CONSUL_KV_QUERY_MAX];
	const char *sep = "?";
	const char *why;
	size_t qn = 0;
	int n;

	if (!consul_path_valid(s->namespace_, true)) {
		errbuf_printable(s->namespace_, shown, sizeof(shown));
		errbuf_set(err, errlen, "invalid consul namespace \"%s\"", shown);
		return false;
	}
	if (scope == NULL || !consul_path_valid(scope, false)) {
		errbuf_printable(scope, shown, sizeof(shown));
		errbuf_set(err, errlen, "invalid patroni scope \"%s\"", shown);
		return false;
	}
	if (key == NULL)
		key = "";
	if (key[0] == '\0' && !recurse) {
		errbuf_set(err, errlen, "empty key for scope \"%s\" without recurse", scope);
		return false;
	}
	if (key[0] != '\0' && !consul_key_valid(key, recurse)) {
		errbuf_printable(key, shown, sizeof(shown));
		errbuf_set(err, errlen, "invalid consul key \"%s\"", shown);
		return false;
	}

	if (s->datacenter[0] != '\0' && !consul_datacenter_valid(s->datacenter, &why)) {
		errbuf_printable(s->datacenter, shown, sizeof(shown));
		errbuf_set(err, errlen, "invalid consul datacenter \"%s\": %s", shown, why);
		return false;
	}

	query[0] = '\0';
	if (index > 0) {
		if (wait_usec > 0) {
			duration_format(wait_usec, wait, sizeof(wait));
			kv_query_add(query, sizeof(query), &qn, "%sindex=%" PRIu64 "&wait=%s",
				     sep, index, wait);
		} else {
			kv_query_add(query, sizeof(query), &qn, "%sindex=%" PRIu64, sep, index);
		}
		sep = "&";
	}
	if (s->consistency != CONSUL_CONSISTENCY_DEFAULT) {
		kv_query_add(query, sizeof(query), &qn, "%s%s", sep,
			     consul_consistency_name(s->consistency));
		sep = "&";
	}
	/* a valid name is [A-Za-z0-9_-]: nothing to escape */
	if (s->datacenter[0] != '\0') {
		kv_query_add(query, sizeof(query), &qn, "%sdc=%s", sep, s->datacenter);
		sep = "&";
	}
	if (recurse)
		kv_query_add(query, sizeof(query), &qn, "%srecurse", sep);
	if (qn >= sizeof(query)) {
		errbuf_set(err, errlen, "consul query for scope \"%s\" is too long", scope);
		return false;
	}

	n = snprintf(url, len, "%s/v1/kv/%s/%s/%s%s", s->url, s->namespace_, scope, key, query);
	if (n < 0 || (size_t) n >= len) {
		errbuf_set(err, errlen, "consul url for key \"%s\" of scope \"%s\" is too long",
			   key, scope);
		return false;
	}
	return true;
}

bool
consul_api_url(const struct consul_settings *s, const char *path, char *url, size_t len,
	       char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	const char *p;
	int n;

	errbuf_printable(path, shown, sizeof(shown));
	if (path == NULL || strncmp(path, "/v1/", 4) != 0) {
		errbuf_set(err, errlen, "consul api path \"%s\" does not start with /v1/", shown);
		return false;
	}
	for (p = path; *p != '\0'; p++) {
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p > 0x7e ||
		    *p == '"' || *p == '\\' || *p == '#') {
			errbuf_set(err, errlen, "invalid character in consul api path \"%s\"", shown);
			return false;
		}
	}
	n = snprintf(url, len, "%s%s", s->url, path);
	if (n < 0 || (size_t) n >= len) {
		errbuf_set(err, errlen, "consul url for \"%s\" is too long", shown);
		return false;
	}
	return true;
}

size_t
consul_response_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct consul_response *resp = userdata;
	size_t n = size * nmemb;
	char *grown;

	if (n == 0)
		return 0;
	if (n > CONSUL_BODY_MAX || resp->len > CONSUL_BODY_MAX - n) {
		resp->too_large = true;
		return 0;	/* != n: libcurl aborts with CURLE_WRITE_ERROR */
	}
	grown = realloc(resp->body, resp->len + n + 1);
	if (grown == NULL) {
		resp->no_memory = true;
		return 0;
	}
	memcpy(grown + resp->len, ptr, n);
	resp->body = grown;
	resp->len += n;
	resp->body[resp->len] = '\0';
	return n;
}

size_t
consul_response_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	static const char name[] = "x-consul-index:";
	struct consul_response *resp = userdata;
	size_t n = size * nmemb;
	char value[64];
	size_t vlen;
	uint64_t index;

	/* a new status line starts a new header block (100 Continue, ...) */
	if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
		resp->has_index = false;
		resp->index = 0;
		return n;
	}
	if (n < sizeof(name) - 1 || strncasecmp(ptr, name, sizeof(name) - 1) != 0)
		return n;
	vlen = n - (sizeof(name) - 1);
	if (vlen >= sizeof(value))
		return n;	/* no index has that many digits: ignore it */
	memcpy(value, ptr + sizeof(name) - 1, vlen);
	value[vlen] = '\0';
	if (consul_index_parse(value, &index)) {
		resp->index = index;
		resp->has_index = true;
	}
	return n;
}

#define CONSUL_SETOPT(easy, opt, val) \
	do { \
		rc = curl_easy_setopt(easy, opt, val); \
		if (rc != CURLE_OK) { \
			errbuf_set(err, errlen, "cannot set %s: %s", #opt, curl_easy_strerror(rc)); \
			goto fail; \
		} \
	} while (0)

bool
consul_easy_setup(CURL *easy, const struct consul_settings *s, const char *url,
		  long timeout_ms, struct consul_response *resp, struct curl_slist **headers,
		  char *err, size_t errlen)
{
	char header[CONSUL_TOKEN_MAX + 32];
	char proxy_err[128];
	struct curl_slist *list = NULL;
	struct curl_slist *grown;
	CURLcode rc;

	*headers = NULL;
	memset(resp, 0, sizeof(*resp));
	if (timeout_ms <= 0) {
		errbuf_set(err, errlen, "invalid consul request timeout %ld ms", timeout_ms);
		return false;
	}
	if (!consul_proxy_check(s->proxy, proxy_err, sizeof(proxy_err))) {
		errbuf_set(err, errlen, "invalid consul proxy: %s", proxy_err);
		return false;
	}
	if (s->token[0] != '\0') {
		snprintf(header, sizeof(header), "X-Consul-Token: %s", s->token);
		grown = curl_slist_append(list, header);
		consul_wipe(header, sizeof(header));
		if (grown == NULL) {
			errbuf_set(err, errlen, "out of memory");
			return false;
		}
		list = grown;
	}

	CONSUL_SETOPT(easy, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	CONSUL_SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	CONSUL_SETOPT(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	CONSUL_SETOPT(easy, CURLOPT_FOLLOWLOCATION, 0L);
	CONSUL_SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
	CONSUL_SETOPT(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	CONSUL_SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS,
		      timeout_ms < CONSUL_CONNECT_TIMEOUT_MS ? timeout_ms : CONSUL_CONNECT_TIMEOUT_MS);
	CONSUL_SETOPT(easy, CURLOPT_USERAGENT, CONSUL_USER_AGENT);
	CONSUL_SETOPT(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	CONSUL_SETOPT(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	/*
	 * Only the proxy [consul] names.  "" makes libcurl ignore http_proxy,
	 * https_proxy and all_proxy in the environment, which would otherwise
	 * get X-Consul-Token even for 127.0.0.1; with a proxy, an empty
	 * no-proxy list keeps the environment's no_proxy from routing around
	 * it.  Our headers never go to the proxy in a CONNECT.
	 */
	CONSUL_SETOPT(easy, CURLOPT_PROXY, s->proxy);
	CONSUL_SETOPT(easy, CURLOPT_NOPROXY, s->proxy[0] != '\0' ? "" : "*");
	CONSUL_SETOPT(easy, CURLOPT_HEADEROPT, (long) CURLHEADER_SEPARATE);
	if (s->proxy[0] != '\0') {
		CONSUL_SETOPT(easy, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
		CONSUL_SETOPT(easy, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
	}
	if (s->ca_file[0] != '\0')
		CONSUL_SETOPT(easy, CURLOPT_CAINFO, s->ca_file);
	if (s->cert_file[0] != '\0')
		CONSUL_SETOPT(easy, CURLOPT_SSLCERT, s->cert_file);
	if (s->key_file[0] != '\0')
		CONSUL_SETOPT(easy, CURLOPT_SSLKEY, s->key_file);
	if (list != NULL)
		CONSUL_SETOPT(easy, CURLOPT_HTTPHEADER, list);
	CONSUL_SETOPT(easy, CURLOPT_WRITEFUNCTION, consul_response_write);
	CONSUL_SETOPT(easy, CURLOPT_WRITEDATA, resp);
	CONSUL_SETOPT(easy, CURLOPT_HEADERFUNCTION, consul_response_header);
	CONSUL_SETOPT(easy, CURLOPT_HEADERDATA, resp);
	*headers = list;
	return true;
fail:
	curl_slist_free_all(list);
	return false;
}

void
consul_response_finish(CURL *easy, struct consul_response *resp)
{
	long status = 0;

	if (curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	resp->status = status;
}

void
consul_response_free(struct consul_response *resp)
{
	if (resp == NULL)
		return;
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

long
consul_blocking_timeout_ms(uint64_t wait_usec)
{
	uint64_t w = wait_usec > 0 ? wait_usec : CONSUL_DEFAULT_WAIT_USEC;
	uint64_t ms;

	/* beyond a day is nonsense for a wait: avoid overflow, stay finite */
	if (w > UINT64_C(86400) * 1000000)
		w = UINT64_C(86400) * 1000000;
	ms = (w + w / 16 + 999) / 1000 + 5000;
	if (ms > (uint64_t) LONG_MAX)
		return LONG_MAX;
	return (long) ms;
}
