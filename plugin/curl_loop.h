/*
 * curl_loop - libcurl's multi socket interface driven by PgBouncer's
 * libevent base, after curl's hiperfifo.c: no threads, nothing blocks.
 */
#ifndef CONSUL_REDIRECT_CURL_LOOP_H
#define CONSUL_REDIRECT_CURL_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

struct event_base;
struct curl_loop;
struct curl_transfer;

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

#endif
