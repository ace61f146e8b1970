/*
 * scope_query.c - the blocking-query loop on a scope prefix.  Consul
 * wakes a recursive query only for writes under the prefix (its index is
 * the prefix's highest ModifyIndex), unlike a query on a missing key,
 * which wakes for every KV write anywhere.  So an answer with a new
 * index is asked after again at once; only answers that bring no new
 * index (a wait that ran out, a scope without keys) are rate-limited.
 * Paced (member_pace), the query blocks on the leader key between two
 * reads of the scope: the key exists, so only its own writes wake it,
 * and member-record churn no longer does.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "errbuf.h"

#include "curl_loop.h"
#include "scope_query.h"

#define SCOPE_QUERY_USEC_PER_SEC UINT64_C(1000000)
#define SCOPE_QUERY_READ_TIMEOUT_MS 10000L		/* the first, non-blocking read */
#define SCOPE_QUERY_ERROR_BASE_USEC UINT64_C(500000)
#define SCOPE_QUERY_ERROR_CAP_USEC (UINT64_C(30) * SCOPE_QUERY_USEC_PER_SEC)
#define SCOPE_QUERY_IDLE_BURST 4.0
#define SCOPE_QUERY_IDLE_PER_SEC 1.0

static void scope_query_start(struct scope_query *q);

static uint64_t
scope_query_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * SCOPE_QUERY_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void
scope_query_wait(struct scope_query *q, uint64_t usec)
{
	struct timeval tv;

	q->state = SCOPE_QUERY_WAITING;
	tv.tv_sec = usec / SCOPE_QUERY_USEC_PER_SEC;
	tv.tv_usec = usec % SCOPE_QUERY_USEC_PER_SEC;
	evtimer_add(q->timer, &tv);
}

static void
scope_query_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	scope_query_start(arg);
}

/* hint_usec: what the answer's Retry-After asked for, 0 none */
static void
scope_query_failed(struct scope_query *q, const char *err, uint64_t hint_usec)
{
	uint64_t delay;
	bool held;

	errbuf_set(q->error, sizeof(q->error), "%s", err);
	/* a restarted agent counts from 1 again: never block on a stale index */
	q->index = 0;
	q->mode = SCOPE_QUERY_SCOPE;
	held = q->on_error(q->arg, q->req.url, err, q->failures++ == 0);
	delay = backoff_next_hinted(&q->backoff, hint_usec);
	/* clients are waiting on this answer: no long pause but the agent's own */
	if (held && delay > SCOPE_QUERY_HELD_RETRY_USEC && delay > hint_usec)
		delay = hint_usec > SCOPE_QUERY_HELD_RETRY_USEC ? hint_usec :
			SCOPE_QUERY_HELD_RETRY_USEC;
	scope_query_wait(q, delay);
}

/*
 * sort a finished answer and parse its entries: false when it failed,
 * and the failure is dealt with (backoff, then a fresh read); otherwise
 * *a is OK or MISSING and the entries are the caller's to free
 */
static bool
scope_query_take(struct scope_query *q, CURL *easy, CURLcode rc, const char *errmsg,
		 enum consul_answer *a, struct consul_kv **entries, int *count)
{
	char err[SCOPE_QUERY_ERR_MAX];

	*a = consul_request_answer(&q->req, easy, rc, errmsg, err, sizeof(err));
	if (*a == CONSUL_ANSWER_OK &&
	    !consul_kv_parse(q->req.resp.body, q->req.resp.len, entries, count,
			     err, sizeof(err)))
		*a = CONSUL_ANSWER_ERROR;
	if (*a == CONSUL_ANSWER_ERROR || *a == CONSUL_ANSWER_CONN_LIMIT) {
		q->conn_limited = *a == CONSUL_ANSWER_CONN_LIMIT;
		consul_request_done(&q->req);
		scope_query_failed(q, err, q->req.retry_after_usec);
		return false;
	}
	return true;
}

static void
scope_query_done(struct curl_transfer *t, CURL *easy, CURLcode rc,
		 const char *errmsg, void *arg)
{
	struct scope_query *q = arg;
	struct consul_kv *entries = NULL;
	int count = 0;
	enum consul_answer a;
	uint64_t previous = q->index;
	bool recovered = q->failures > 0;

	if (!scope_query_take(q, easy, rc, errmsg, &a, &entries, &count))
		return;
	q->index = consul_index_next(previous, q->req.resp.has_index ?
				     q->req.resp.index : 0);
	consul_request_done(&q->req);
	q->failures = 0;
	q->error[0] = '\0';
	q->conn_limited = false;
	q->answers++;
	backoff_reset(&q->backoff);
	q->state = SCOPE_QUERY_WAITING;
	q->pace_usec = 0;
	q->on_answer(q->arg, entries, count, q->index, recovered);
	consul_kv_free(entries, count);
	if (q->state != SCOPE_QUERY_WAITING || evtimer_pending(q->timer, NULL))
		return;			/* stopped or restarted by the callback */
	if (a == CONSUL_ANSWER_OK && q->index > previous && previous > 0) {
		/* woken by a write: paced, wait for the leader key alone */
		if (q->pace_usec > 0)
			q->mode = SCOPE_QUERY_LEADER;
		scope_query_start(q);
	} else {
		scope_query_wait(q, rate_limit_delay(&q->rate, scope_query_now()));
	}
}

/* the paced read of the leader key: whatever it says, read the scope next */
static void
scope_query_leader_done(struct curl_transfer *t, CURL *easy, CURLcode rc,
			const char *errmsg, void *arg)
{
	struct scope_query *q = arg;
	struct consul_kv *entries = NULL;
	int count = 0;
	enum consul_answer a;
	bool unchanged;

	if (!scope_query_take(q, easy, rc, errmsg, &a, &entries, &count))
		return;
	/* the wait ran out: the same key at the same index */
	unchanged = a == CONSUL_ANSWER_OK && count == 1 &&
		    entries[0].modify_index == q->leader_index;
	consul_kv_free(entries, count);
	consul_request_done(&q->req);
	q->answers++;
	q->mode = SCOPE_QUERY_SCOPE;
	if (unchanged)
		scope_query_wait(q, rate_limit_delay(&q->rate, scope_query_now()));
	else
		scope_query_start(q);
}

static void
scope_query_start(struct scope_query *q)
{
	char err[SCOPE_QUERY_ERR_MAX];
	long timeout = SCOPE_QUERY_READ_TIMEOUT_MS;
	bool ok;

	evtimer_del(q->timer);
	q->state = SCOPE_QUERY_READING;
	if (q->mode == SCOPE_QUERY_LEADER) {
		timeout = consul_blocking_timeout_ms(q->pace_usec);
		ok = consul_kv_url_wait(q->consul, q->pace_usec, q->scope, "leader",
					q->leader_index, false, q->req.url,
					sizeof(q->req.url), err, sizeof(err)) &&
		     consul_request_start(q->loop, q->consul, &q->req, timeout,
					  scope_query_leader_done, q, err, sizeof(err));
	} else {
		if (q->index > 0)
			timeout = consul_blocking_timeout_ms(q->consul->wait_usec);
		ok = consul_kv_url(q->consul, q->scope, "", q->index, true, q->req.url,
				   sizeof(q->req.url), err, sizeof(err)) &&
		     consul_request_start(q->loop, q->consul, &q->req, timeout,
					  scope_query_done, q, err, sizeof(err));
	}
	if (!ok) {
		q->conn_limited = false;
		scope_query_failed(q, err, 0);
	}
}

static unsigned int
scope_query_seed(const char *scope)
{
	unsigned int h = (unsigned int) getpid() ^ (unsigned int) scope_query_now();

	while (*scope)
		h = h * 31 + (unsigned char) *scope++;
	return h;
}

bool
scope_query_init(struct scope_query *q, struct event_base *base,
		 struct curl_loop *loop, const struct consul_settings *consul,
		 const char *scope, scope_query_answer_fn on_answer,
		 scope_query_error_fn on_error, void *arg)
{
	memset(q, 0, sizeof(*q));
	q->state = SCOPE_QUERY_STOPPED;
	q->mode = SCOPE_QUERY_SCOPE;
	q->loop = loop;
	q->consul = consul;
	q->scope = scope;
	q->on_answer = on_answer;
	q->on_error = on_error;
	q->arg = arg;
	backoff_init(&q->backoff, SCOPE_QUERY_ERROR_BASE_USEC,
		     SCOPE_QUERY_ERROR_CAP_USEC, scope_query_seed(scope));
	rate_limit_init(&q->rate, SCOPE_QUERY_IDLE_BURST, SCOPE_QUERY_IDLE_PER_SEC);
	q->timer = evtimer_new(base, scope_query_timer_cb, q);
	return q->timer != NULL;
}

void
scope_query_cleanup(struct scope_query *q)
{
	consul_request_release(&q->req);
	if (q->timer)
		event_free(q->timer);
	q->timer = NULL;
	q->state = SCOPE_QUERY_STOPPED;
}

void
scope_query_run(struct scope_query *q, bool run)
{
	if (run && q->state != SCOPE_QUERY_STOPPED)
		return;
	if (!run) {
		consul_request_release(&q->req);
		evtimer_del(q->timer);
		q->state = SCOPE_QUERY_STOPPED;
		q->mode = SCOPE_QUERY_SCOPE;
		q->index = 0;
		q->failures = 0;
		q->error[0] = '\0';
		q->conn_limited = false;
		backoff_reset(&q->backoff);
		return;
	}
	q->index = 0;
	scope_query_start(q);
}

void
scope_query_restart(struct scope_query *q)
{
	if (q->state == SCOPE_QUERY_STOPPED)
		return;
	scope_query_run(q, false);
	scope_query_run(q, true);
}

bool
scope_query_failing(const struct scope_query *q)
{
	return q->failures > 0;
}

void
scope_query_pace(struct scope_query *q, uint64_t leader_index, uint64_t usec)
{
	if (leader_index == 0)
		return;
	q->leader_index = leader_index;
	q->pace_usec = usec;
}
