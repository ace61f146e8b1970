/*
 * curl_loop.c - runs libcurl's multi socket interface on PgBouncer's
 * event base with the structure of curl's hiperfifo.c: a socket callback
 * keeping one persistent event per socket, a timer callback that only
 * arms one timer, and check_multi_info handing finished transfers back.
 * Transfers to one host share a connection where the server speaks
 * HTTP/2 (multiplexed streams, each transfer waiting for that connection
 * rather than opening its own); the loop counts the connections it holds
 * and which HTTP version answered last, for SHOW CONSUL_STATS.
 */

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "errbuf.h"

#include "curl_loop.h"

/* global record: the event base, the multi handle and its one timer */
struct curl_loop {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	int running;			/* still_running from socket_action */
	struct curl_transfer *transfers;	/* every live transfer */
	struct curl_sock *socks;	/* every socket record */
	struct curl_loop_stats stats;
	long h2_cap;			/* CURLMOPT_MAX_HOST_CONNECTIONS; 0 none */
	long h2_streams;		/* CURLMOPT_MAX_CONCURRENT_STREAMS set */
};

/* per transfer: found again through CURLOPT_PRIVATE */
struct curl_transfer {
	struct curl_loop *loop;
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
	bool started;
	curl_loop_done_fn done;
	void *arg;
	struct curl_transfer *prev, *next;
};

/* per socket: attached to libcurl's socket with curl_multi_assign */
struct curl_sock {
	struct curl_loop *loop;
	curl_socket_t fd;
	int action;
	struct event *ev;
	struct curl_sock *prev, *next;
};

static void curl_loop_check_multi_info(struct curl_loop *loop);

/*
 * CURLOPT_OPENSOCKETFUNCTION / CLOSESOCKETFUNCTION: count the connections
 * held, idle ones in libcurl's cache included (a socket event exists only
 * while a transfer uses the connection).
 */
static curl_socket_t
curl_loop_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct curl_loop *loop = arg;
	curl_socket_t fd = socket(a->family, a->socktype, a->protocol);

	if (fd != CURL_SOCKET_BAD) {
		loop->stats.connections++;
		loop->stats.connects++;
	}
	return fd;
}

static int
curl_loop_close_socket(void *arg, curl_socket_t fd)
{
	struct curl_loop *loop = arg;

	if (loop->stats.connections > 0)
		loop->stats.connections--;
	return close(fd);
}

static void
curl_loop_unlink_transfer(struct curl_transfer *t)
{
	struct curl_loop *loop = t->loop;

	if (t->prev)
		t->prev->next = t->next;
	else
		loop->transfers = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

static void
curl_loop_free_transfer(struct curl_transfer *t)
{
	curl_loop_unlink_transfer(t);
	if (t->easy)
		curl_easy_cleanup(t->easy);
	free(t);
}

static void
curl_loop_free_sock(struct curl_sock *s)
{
	struct curl_loop *loop = s->loop;

	if (s->ev)
		event_free(s->ev);
	if (s->prev)
		s->prev->next = s->next;
	else
		loop->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* libevent: activity on a socket libcurl watches */
static void
curl_loop_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct curl_loop *loop = arg;
	int action = 0;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	curl_multi_socket_action(loop->multi, fd, action, &loop->running);
	curl_loop_check_multi_info(loop);
}

/* libevent: the timer libcurl asked for expired */
static void
curl_loop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct curl_loop *loop = arg;

	curl_multi_socket_action(loop->multi, CURL_SOCKET_TIMEOUT, 0,
				 &loop->running);
	curl_loop_check_multi_info(loop);
}

/*
 * CURLMOPT_TIMERFUNCTION: only (re)arms or deletes the one timer; never
 * calls libcurl from here, not even for a zero timeout.
 */
static int
curl_loop_multi_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
	struct curl_loop *loop = arg;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(loop->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(loop->timer, &tv) == 0 ? 0 : -1;
}

static bool
curl_loop_sock_set(struct curl_sock *s, curl_socket_t fd, int action)
{
	short kind = EV_PERSIST;

	if (action & CURL_POLL_IN)
		kind |= EV_READ;
	if (action & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (s->ev)
		event_free(s->ev);
	s->fd = fd;
	s->action = action;
	s->ev = event_new(s->loop->base, fd, kind, curl_loop_event_cb,
			  s->loop);
	if (!s->ev)
		return false;
	return event_add(s->ev, NULL) == 0;
}

/* CURLMOPT_SOCKETFUNCTION: keep one persistent event per socket */
static int
curl_loop_sock_cb(CURL *easy, curl_socket_t fd, int what, void *arg,
		  void *sockp)
{
	struct curl_loop *loop = arg;
	struct curl_sock *s = sockp;

	if (what == CURL_POLL_REMOVE) {
		if (s)
			curl_loop_free_sock(s);
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->loop = loop;
		s->next = loop->socks;
		if (loop->socks)
			loop->socks->prev = s;
		loop->socks = s;
		curl_multi_assign(loop->multi, fd, s);
	}
	if (!curl_loop_sock_set(s, fd, what)) {
		curl_multi_assign(loop->multi, fd, NULL);
		curl_loop_free_sock(s);
		return -1;
	}
	return 0;
}

/* the HTTP version of the last answer; 0 (no answer) leaves it as it was */
static void
curl_loop_note_version(struct curl_loop *loop, CURL *easy)
{
	long version = 0;

	if (curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK)
		return;
	switch (version) {
	case CURL_HTTP_VERSION_1_0:
	case CURL_HTTP_VERSION_1_1:
		loop->stats.transport = CURL_LOOP_HTTP1;
		/* no multiplexing after all: one connection per transfer */
		if (loop->h2_cap > 0)
			curl_loop_expect_h2(loop, false, 0);
		break;
	case CURL_HTTP_VERSION_2_0:
		loop->stats.transport = CURL_LOOP_HTTP2;
		break;
	default:
		break;
	}
}

/* hand every finished transfer to its owner, then free it */
static void
curl_loop_check_multi_info(struct curl_loop *loop)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(loop->multi, &left))) {
		struct curl_transfer *t = NULL;
		CURL *easy = msg->easy_handle;
		CURLcode result = msg->data.result;
		const char *errmsg;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
		curl_multi_remove_handle(loop->multi, easy);
		if (!t)
			continue;
		t->started = false;
		curl_loop_unlink_transfer(t);
		curl_loop_note_version(loop, easy);
		errmsg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(result);
		if (result == CURLE_OK)
			errmsg = "";
		t->done(t, easy, result, errmsg, t->arg);
		curl_easy_cleanup(easy);
		free(t);
	}
}

struct curl_loop *
curl_loop_new(struct event_base *base, char *err, size_t errlen)
{
	struct curl_loop *loop = calloc(1, sizeof(*loop));

	if (!loop) {
		errbuf_set(err, errlen, "out of memory");
		return NULL;
	}
	loop->base = base;
	loop->multi = curl_multi_init();
	loop->timer = evtimer_new(base, curl_loop_timer_cb, loop);
	if (!loop->multi || !loop->timer) {
		errbuf_set(err, errlen, "cannot create the curl multi handle or its timer");
		curl_loop_free(loop);
		return NULL;
	}
	curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, curl_loop_sock_cb);
	curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
	curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, curl_loop_multi_timer_cb);
	curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
	/* libcurl's default; said here because the scale depends on it */
	curl_multi_setopt(loop->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	return loop;
}

void
curl_loop_free(struct curl_loop *loop)
{
	if (!loop)
		return;
	while (loop->transfers)
		curl_loop_transfer_cancel(loop->transfers);
	/*
	 * Events first: a socket libcurl keeps cached loses its record and
	 * its assignment, so a late CURL_POLL_REMOVE from the cleanup below
	 * finds nothing to free.
	 */
	while (loop->socks) {
		if (loop->multi)
			curl_multi_assign(loop->multi, loop->socks->fd, NULL);
		curl_loop_free_sock(loop->socks);
	}
	if (loop->timer)
		event_free(loop->timer);
	loop->timer = NULL;
	if (loop->multi) {
		/* no timer or event left to arm */
		curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, NULL);
		curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_cleanup(loop->multi);
	}
	free(loop);
}

struct curl_transfer *
curl_loop_transfer_new(struct curl_loop *loop, curl_loop_done_fn done,
		       void *arg)
{
	struct curl_transfer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->easy = curl_easy_init();
	if (!t->easy) {
		free(t);
		return NULL;
	}
	t->loop = loop;
	t->done = done;
	t->arg = arg;
	t->next = loop->transfers;
	if (loop->transfers)
		loop->transfers->prev = t;
	loop->transfers = t;
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
	return t;
}

CURL *
curl_loop_transfer_easy(struct curl_transfer *t)
{
	return t->easy;
}

/* no kick here: the timeout libcurl sets on add_handle starts it */
bool
curl_loop_transfer_start(struct curl_transfer *t, char *err, size_t errlen)
{
	CURLMcode rc;

	/* options set by the caller may have replaced these */
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
	/* join a connection being set up that may multiplex, not open another */
	curl_easy_setopt(t->easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION, curl_loop_open_socket);
	curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETDATA, t->loop);
	curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETFUNCTION, curl_loop_close_socket);
	curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETDATA, t->loop);
	t->errbuf[0] = '\0';
	rc = curl_multi_add_handle(t->loop->multi, t->easy);
	if (rc != CURLM_OK) {
		errbuf_set(err, errlen, "curl_multi_add_handle: %s",
			   curl_multi_strerror(rc));
		curl_loop_free_transfer(t);
		return false;
	}
	t->started = true;
	return true;
}

void
curl_loop_transfer_cancel(struct curl_transfer *t)
{
	if (!t)
		return;
	if (t->started)
		curl_multi_remove_handle(t->loop->multi, t->easy);
	curl_loop_free_transfer(t);
}

int
curl_loop_active(const struct curl_loop *loop)
{
	const struct curl_transfer *t;
	int n = 0;

	for (t = loop->transfers; t; t = t->next)
		if (t->started)
			n++;
	return n;
}

void
curl_loop_expect_h2(struct curl_loop *loop, bool h2, int queries)
{
	long n = queries > 0 ? queries : 1;
	long cap = (n + CURL_LOOP_H2_STREAMS - 1) / CURL_LOOP_H2_STREAMS;
	long streams;

	if (cap < CURL_LOOP_H2_CONNECTIONS)
		cap = CURL_LOOP_H2_CONNECTIONS;
	/* evenly over the connections: libcurl fills one before the next */
	streams = (n + cap - 1) / cap;
	if (streams < CURL_LOOP_H2_MIN_STREAMS)
		streams = CURL_LOOP_H2_MIN_STREAMS;
	if (!h2)
		cap = 0;
	if (loop->h2_cap == cap && loop->h2_streams == streams)
		return;
	loop->h2_cap = cap;
	loop->h2_streams = streams;
	curl_multi_setopt(loop->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap);
	curl_multi_setopt(loop->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, streams);
}

enum curl_loop_transport
curl_loop_transport(const struct curl_loop *loop)
{
	return loop->stats.transport;
}

void
curl_loop_get_stats(const struct curl_loop *loop, struct curl_loop_stats *out)
{
	*out = loop->stats;
	out->transfers = curl_loop_active(loop);
}

const char *
curl_loop_transport_name(enum curl_loop_transport transport)
{
	switch (transport) {
	case CURL_LOOP_HTTP1:
		return "http/1.1";
	case CURL_LOOP_HTTP2:
		return "h2";
	case CURL_LOOP_UNKNOWN:
		break;
	}
	return "unknown";
}
