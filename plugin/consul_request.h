/*
 * consul_request - one HTTP request to the Consul agent on the curl loop:
 * its buffers and headers, and how a finished answer is sorted (ok, a
 * missing key, or an error with a message naming it).
 */
#ifndef CONSUL_REDIRECT_CONSUL_REQUEST_H
#define CONSUL_REDIRECT_CONSUL_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consul_client.h"
#include "curl_loop.h"

enum consul_answer {
	CONSUL_ANSWER_OK,		/* 200 with a body */
	CONSUL_ANSWER_MISSING,		/* 404 with X-Consul-Index: no such key */
	CONSUL_ANSWER_ERROR,
	CONSUL_ANSWER_CONN_LIMIT,	/* a new connection dropped unanswered */
};

struct consul_request {
	struct curl_transfer *t;	/* NULL: none in flight */
	struct consul_response resp;
	struct curl_slist *headers;
	uint64_t retry_after_usec;	/* last answer's Retry-After; 0 none */
	char url[CONSUL_KV_URL_MAX(8)];	/* a scope's recursive read or its leader key */
};

/* start GET req->url; false (err filled) when it could not be started */
bool consul_request_start(struct curl_loop *loop, const struct consul_settings *cs,
			  struct consul_request *req, long timeout_ms,
			  curl_loop_done_fn done, void *arg,
			  char *err, size_t errlen);

/*
 * in the done callback: sort the answer; err is filled for ERROR and
 * CONN_LIMIT, an error that names the agent's per-client connection limit
 */
enum consul_answer consul_request_answer(struct consul_request *req, CURL *easy,
					 CURLcode rc, const char *errmsg,
					 char *err, size_t errlen);

/* after the done callback has used the answer: free its buffers */
void consul_request_done(struct consul_request *req);

/* cancel what is in flight and free everything */
void consul_request_release(struct consul_request *req);

#endif
