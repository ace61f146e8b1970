/*
 * Consul HTTP client pieces shared by the plugin (curl multi on libevent)
 * and the helper (curl_easy_perform): settings checks, ACL token file,
 * KV URLs, easy-handle setup and bounded response capture.
 */
#ifndef PGBC_CONSUL_CLIENT_H
#define PGBC_CONSUL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#define CONSUL_URL_MAX 1024
#define CONSUL_TOKEN_MAX 256
#define CONSUL_BODY_MAX (1024 * 1024)		/* answers larger than this are refused */
#define CONSUL_CONNECT_TIMEOUT_MS 5000L		/* cap on the TCP/TLS connect phase */
#define CONSUL_DATACENTER_MAX 128		/* a datacenter name is shorter than this */
/* what consul_kv_url puts after the path: index, wait, consistency, dc, recurse */
#define CONSUL_KV_QUERY_MAX (128 + CONSUL_DATACENTER_MAX)
/*
 * the longest URL consul_kv_url makes for a key of at most keymax bytes:
 * url, "/v1/kv/", a namespace and a scope (each shorter than 256), the
 * key, the slashes and the query
 */
#define CONSUL_KV_URL_MAX(keymax) (CONSUL_URL_MAX + 8 + 256 + 256 + 2 + (keymax) + \
				   CONSUL_KV_QUERY_MAX)
#define CONSUL_DEFAULT_WAIT_USEC (UINT64_C(300) * 1000000)	/* Consul's own default wait */

enum consul_consistency {
	CONSUL_CONSISTENCY_DEFAULT,
	CONSUL_CONSISTENCY_CONSISTENT,
	CONSUL_CONSISTENCY_STALE
};

struct consul_settings {
	char url[CONSUL_URL_MAX];	/* http(s)://host:port, no trailing slash */
	char token[CONSUL_TOKEN_MAX];	/* empty = none */
	char ca_file[1024];		/* empty = system CAs */
	char cert_file[1024];		/* client certificate (PEM); empty = none */
	char key_file[1024];		/* its private key; empty = in cert_file */
	char proxy[CONSUL_URL_MAX];	/* consul_proxy_check()ed; empty = none, the environment's ignored */
	char namespace_[256];		/* Patroni namespace without slashes, "service" by default */
	uint64_t wait_usec;		/* blocking-query wait; 0 = Consul's default (5m) */
	enum consul_consistency consistency;
	char datacenter[CONSUL_DATACENTER_MAX];	/* consul_datacenter_valid; empty = the agent's own */
};

struct consul_response {
	char *body;			/* NUL-terminated, malloc'd (NULL until data arrives) */
	size_t len;
	bool too_large;			/* body exceeded CONSUL_BODY_MAX: transfer aborted */
	uint64_t index;			/* X-Consul-Index */
	bool has_index;
	long status;			/* HTTP status, filled by consul_response_finish */
	bool no_memory;			/* allocation failed: transfer aborted */
};

/* http:// or https://, host[:port] (hostname, IPv4 or [IPv6]), nothing else */
bool consul_url_check(const char *url, char *err, size_t errlen);

/* consul_url_check for another HTTP API's URL; messages name it as what */
bool consul_url_check_as(const char *url, const char *what, char *err, size_t errlen);

/*
 * Split the "host[:port]" of a URL (hostname, IPv4 literal or [IPv6]
 * literal; IPv6 returned without brackets).  *port is -1 when there is
 * none.  On failure *why names the fault ("invalid host", "invalid
 * port", "unterminated [", "unexpected text after ]").
 */
bool consul_host_port_parse(const char *text, char *host, size_t hostlen, long *port,
			    const char **why);

/* "default", "consistent" or "stale" (any case) */
bool consul_consistency_parse(const char *text, enum consul_consistency *out);

/*
 * A Consul datacenter name: 1 to CONSUL_DATACENTER_MAX - 1 letters,
 * digits, '-' and '_' (what Consul accepts), so it needs no escaping in a
 * query string.  On failure *why says what is wrong.
 */
bool consul_datacenter_valid(const char *name, const char **why);

/* the setting's name as consul_consistency_parse reads it */
const char *consul_consistency_name(enum consul_consistency c);

/*
 * Read an ACL token file: trailing newline/blanks trimmed; refuses an
 * empty, multi-line or too long (>= len) token, one with bytes outside
 * printable ASCII, and an unreadable file.  Messages name the path,
 * never the content.
 */
bool consul_token_read(const char *path, char *token, size_t len, char *err, size_t errlen);

/*
 * "<url>/v1/kv/<namespace>/<scope>/<key>?index=N&wait=Xs[&consistent|&stale][&dc=D][&recurse]";
 * index 0 -> no index/wait (non-blocking); key "" with recurse -> the scope
 * prefix with a trailing slash.  scope and key segments must be
 * [A-Za-z0-9._-] (key may hold '/' between segments, and end in '/'
 * with recurse: "members/" lists the members).  dc=D is there when
 * s->datacenter is set (it must pass consul_datacenter_valid).
 */
bool consul_kv_url(const struct consul_settings *s, const char *scope, const char *key,
		   uint64_t index, bool recurse, char *url, size_t len, char *err, size_t errlen);

/* the same with another wait than s->wait_usec (0: none in the query) */
bool consul_kv_url_wait(const struct consul_settings *s, uint64_t wait_usec, const char *scope,
			const char *key, uint64_t index, bool recurse, char *url, size_t len,
			char *err, size_t errlen);

/* "<url><path>" for other endpoints; path starts with "/v1/" and has no blanks or quotes */
bool consul_api_url(const struct consul_settings *s, const char *path, char *url, size_t len,
		    char *err, size_t errlen);

/*
 * Set URL, timeouts (timeout_ms total, connect timeout), NOSIGNAL,
 * X-Consul-Token header when a token is set, CAINFO when ca_file is set,
 * SSLCERT/SSLKEY when cert_file/key_file are set,
 * verification on for https, http/https only, no redirects, the proxy
 * (s->proxy, or none at all: http_proxy and friends in the environment
 * are never used), and write/
 * header callbacks into resp (zeroed here: free an earlier answer first).
 * *headers must be freed by the caller with curl_slist_free_all after
 * the transfer.
 */
bool consul_easy_setup(CURL *easy, const struct consul_settings *s, const char *url,
		       long timeout_ms, struct consul_response *resp, struct curl_slist **headers,
		       char *err, size_t errlen);

/*
 * The CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION callbacks
 * consul_easy_setup installs (userdata = the struct consul_response);
 * exported so callers that set their own options can reuse them.
 */
size_t consul_response_write(char *ptr, size_t size, size_t nmemb, void *userdata);
size_t consul_response_header(char *ptr, size_t size, size_t nmemb, void *userdata);

/* after the transfer: HTTP status into resp->status */
void consul_response_finish(CURL *easy, struct consul_response *resp);
void consul_response_free(struct consul_response *resp);

/* HTTP timeout for a blocking query: wait + wait/16 jitter + 5 s (wait 0 = 5m) */
long consul_blocking_timeout_ms(uint64_t wait_usec);

#endif
