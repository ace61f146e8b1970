/*
 * consul_request.c - a Consul GET on the curl loop and the sorting of its
 * answer: Consul's 404 for a missing key carries X-Consul-Index, a bare
 * 404 is something else answering; 403 and other statuses are errors
 * with a printable excerpt of the body (a token is never in it); an
 * error's Retry-After (Consul's rate limiting: 429, 503) is kept for the
 * caller's backoff.  A new connection the agent drops before answering is
 * its per-client limit (limits.http_max_conns_per_client) far more often
 * than anything else.
 */

#include <string.h>

#include "errbuf.h"

#include "consul_request.h"

void
consul_request_release(struct consul_request *req)
{
	if (req->t)
		curl_loop_transfer_cancel(req->t);
	req->t = NULL;
	consul_request_done(req);
}

void
consul_request_done(struct consul_request *req)
{
	if (req->headers)
		curl_slist_free_all(req->headers);
	req->headers = NULL;
	consul_response_free(&req->resp);
}

bool
consul_request_start(struct curl_loop *loop, const struct consul_settings *cs,
		     struct consul_request *req, long timeout_ms,
		     curl_loop_done_fn done, void *arg, char *err, size_t errlen)
{
	struct curl_transfer *t;

	consul_request_release(req);
	t = curl_loop_transfer_new(loop, done, arg);
	if (!t) {
		errbuf_set(err, errlen, "out of memory");
		return false;
	}
	if (!consul_easy_setup(curl_loop_transfer_easy(t), cs, req->url,
			       timeout_ms, &req->resp, &req->headers, err,
			       errlen)) {
		curl_loop_transfer_cancel(t);
		consul_request_release(req);
		return false;
	}
	if (!curl_loop_transfer_start(t, err, errlen)) {
		consul_request_release(req);
		return false;
	}
	req->t = t;
	return true;
}

static void
consul_request_excerpt(const struct consul_response *resp, char *out, size_t len)
{
	char buf[81];
	size_t n = 0;

	if (resp->body)
		n = resp->len < sizeof(buf) - 1 ? resp->len : sizeof(buf) - 1;
	memcpy(buf, resp->body ? resp->body : "", n);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	errbuf_printable(buf, out, len);
}

/*
 * Consul past limits.http_max_conns_per_client accepts the TCP connection
 * and resets it unread: over http libcurl sees a reset or an empty reply,
 * over https a reset in the TLS handshake.  Only a connection opened for
 * this request counts (an agent going away resets pooled ones too).
 */
static bool
consul_request_conn_limited(CURL *easy, CURLcode rc, const char *errmsg)
{
	long connects = 0;

	if (curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects) != CURLE_OK ||
	    connects < 1)
		return false;
	switch (rc) {
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return true;
	case CURLE_SSL_CONNECT_ERROR:
		return strstr(errmsg, "reset by peer") != NULL;
	default:
		return false;
	}
}

/* libcurl parses both forms (seconds, HTTP date) into seconds from now */
static void
consul_request_retry_after(struct consul_request *req, CURL *easy)
{
	curl_off_t secs = 0;

	if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &secs) != CURLE_OK ||
	    secs <= 0)
		return;
	/* more than a day is as good as a day: the caller caps it far lower */
	if (secs > 86400)
		secs = 86400;
	req->retry_after_usec = (uint64_t) secs * 1000000;
}

enum consul_answer
consul_request_answer(struct consul_request *req, CURL *easy, CURLcode rc,
		      const char *errmsg, char *err, size_t errlen)
{
	struct consul_response *resp = &req->resp;
	char body[96];

	req->t = NULL;
	req->retry_after_usec = 0;
	consul_response_finish(easy, resp);
	if (resp->too_large) {
		errbuf_set(err, errlen, "answer larger than %d bytes refused",
			   CONSUL_BODY_MAX);
		return CONSUL_ANSWER_ERROR;
	}
	if (resp->no_memory) {
		errbuf_set(err, errlen, "out of memory reading the answer");
		return CONSUL_ANSWER_ERROR;
	}
	if (rc != CURLE_OK && consul_request_conn_limited(easy, rc, errmsg)) {
		errbuf_set(err, errlen, "%s on a new connection: the agent refuses "
			   "connections past its limits.http_max_conns_per_client "
			   "(default 200 per client address); use https (one h2 "
			   "connection for many scopes) or raise the limit", errmsg);
		return CONSUL_ANSWER_CONN_LIMIT;
	}
	if (rc != CURLE_OK) {
		errbuf_set(err, errlen, "%s", errmsg);
		return CONSUL_ANSWER_ERROR;
	}
	if (resp->status == 404 && resp->has_index)
		return CONSUL_ANSWER_MISSING;
	if (resp->status == 404) {
		errbuf_set(err, errlen, "http status 404 without X-Consul-Index (not a consul agent?)");
		return CONSUL_ANSWER_ERROR;
	}
	if (resp->status == 200)
		return CONSUL_ANSWER_OK;
	consul_request_retry_after(req, easy);
	consul_request_excerpt(resp, body, sizeof(body));
	if (resp->status == 403)
		errbuf_set(err, errlen, "permission denied (http 403: %s)", body);
	else
		errbuf_set(err, errlen, "http status %ld: %s", resp->status, body);
	return CONSUL_ANSWER_ERROR;
}
