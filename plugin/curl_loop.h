/*
 * curl_loop - libcurl's multi socket interface driven by PgBouncer's
 * libevent base, after curl's hiperfifo.c: no threads, nothing blocks.
 */
#ifndef CONSUL_REDIRECT_CURL_LOOP_H
#define CONSUL_REDIRECT_CURL_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

struct event_base;
struct curl_loop;
struct curl_transfer;

/*
 * Connections to one host while HTTP/2 is expected.  libcurl 7.88 puts
 * at most CURLMOPT_MAX_CONCURRENT_STREAMS (100 by default) streams on a
 * connection, and never more than the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS (250 in Consul's Go server).  A
 * transfer that finds every connection full opens one of its own, or,
 * at the cap, waits in libcurl's queue until a stream ends: a blocking
 * query there sees nothing for up to a whole wait.  So the cap and the
 * streams per connection are sized from the queries to run: at least
 * CURL_LOOP_H2_CONNECTIONS connections, and streams spread evenly over
 * them, up to CURL_LOOP_H2_STREAMS each.
 */
#define CURL_LOOP_H2_CONNECTIONS 4L
#define CURL_LOOP_H2_STREAMS 250L
#define CURL_LOOP_H2_MIN_STREAMS 100L	/* libcurl's own default */

/* the HTTP version of the last answer */
enum curl_loop_transport {
	CURL_LOOP_UNKNOWN,	/* nothing answered yet */
	CURL_LOOP_HTTP1,
	CURL_LOOP_HTTP2
};

struct curl_loop_stats {
	enum curl_loop_transport transport;
	int connections;	/* open now, idle ones included */
	uint64_t connects;	/* opened since the start */
	int transfers;		/* running now */
};

/*
 * Called once when a started transfer ends (not when it is cancelled).
 * easy is still valid (read its info); errmsg is libcurl's error buffer
 * or its generic text.  Both the transfer and easy are freed after the
 * callback returns; it may start or cancel other transfers.
 */
typedef void (*curl_loop_done_fn)(struct curl_transfer *t, CURL *easy,
				  CURLcode result, const char *errmsg,
				  void *arg);

struct curl_loop *curl_loop_new(struct event_base *base, char *err,
				size_t errlen);

/* cancels every transfer (no callbacks), frees events, then the multi */
void curl_loop_free(struct curl_loop *loop);

/* a transfer with a fresh easy handle for the caller to set up */
struct curl_transfer *curl_loop_transfer_new(struct curl_loop *loop,
					     curl_loop_done_fn done,
					     void *arg);
CURL *curl_loop_transfer_easy(struct curl_transfer *t);

/* hand the transfer to the multi; on false it is freed */
bool curl_loop_transfer_start(struct curl_transfer *t, char *err,
			      size_t errlen);

/* stop and free a transfer, started or not; its callback is not called */
void curl_loop_transfer_cancel(struct curl_transfer *t);

/* transfers currently in the multi handle */
int curl_loop_active(const struct curl_loop *loop);

/*
 * h2: the server is expected to multiplex (an https url): cap the
 * connections per host, sized for that many blocking queries at once (see
 * CURL_LOOP_H2_CONNECTIONS); the cap is lifted by itself when an answer
 * comes over HTTP/1.x.  Before the loop returns to the event base after
 * the transfers are added: libcurl picks their connections then.
 */
void curl_loop_expect_h2(struct curl_loop *loop, bool h2, int queries);

enum curl_loop_transport curl_loop_transport(const struct curl_loop *loop);

/* counts and the transport; walks the transfers (for SHOW, not per answer) */
void curl_loop_get_stats(const struct curl_loop *loop,
			 struct curl_loop_stats *out);

/* "http/1.1", "h2" or "unknown" */
const char *curl_loop_transport_name(enum curl_loop_transport transport);

#endif
