/*
 * refusal.c - pacing after the server check refused a new connection (a
 * new leader still promoting, a record pointing at a replica, a standby
 * that was promoted).  The entry is held for a pause, then released so
 * PgBouncer launches the next connection at once: every 5 ms for the
 * first half second (a promotion ends within it), then with a jittered
 * backoff up to 2 s, so a node that stays refused costs about one
 * connection every 2 s and a log line every 30 s, not 40 a second.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#include "errbuf.h"

#include "plugin_log.h"
#include "watch_int.h"

#define REFUSAL_FAST_USEC UINT64_C(5000)
#define REFUSAL_FAST_FOR_USEC (WATCH_USEC_PER_SEC / 2)
#define REFUSAL_SLOW_BASE_USEC UINT64_C(50000)
#define REFUSAL_SLOW_CAP_USEC (UINT64_C(2) * WATCH_USEC_PER_SEC)
#define REFUSAL_LOG_USEC (UINT64_C(30) * WATCH_USEC_PER_SEC)
#define REFUSAL_POLL_MS 1
#define REFUSAL_POLL_FOR_USEC (UINT64_C(2) * WATCH_USEC_PER_SEC)

static void
refusal_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch_binding *b = arg;

	b->refusal.state = REFUSAL_RETRYING;
	binding_hold_sync(b);
}

bool
refusal_init(struct watch_binding *b)
{
	struct refusal *r = &b->refusal;

	r->state = REFUSAL_NONE;
	backoff_init(&r->backoff, REFUSAL_SLOW_BASE_USEC, REFUSAL_SLOW_CAP_USEC,
		     (unsigned int) getpid() ^ (unsigned int) (uintptr_t) b);
	r->timer = evtimer_new(b->w->api->event_base, refusal_timer_cb, b);
	return r->timer != NULL;
}

void
refusal_cleanup(struct refusal *r)
{
	if (r->timer)
		event_free(r->timer);
	r->timer = NULL;
}

/* accepted, or the entry moved: the next refusal starts a fast phase */
void
refusal_reset(struct refusal *r)
{
	if (r->timer)
		evtimer_del(r->timer);
	r->state = REFUSAL_NONE;
	r->count = 0;
	r->first_usec = 0;
	r->poll_since = 0;
	r->polls = 0;
	r->last[0] = '\0';
	backoff_reset(&r->backoff);
}

bool
refusal_holding(const struct refusal *r)
{
	return r->state == REFUSAL_PAUSED;
}

void
watch_server_refused(struct watch *w, const char *db, const char *host,
		     int port, const char *why)
{
	struct watch_binding *b = binding_find(w, db);
	struct refusal *r;
	uint64_t now = watch_now_usec();

	if (!b)
		return;
	r = &b->refusal;
	if (r->count++ == 0)
		r->first_usec = now;
	r->next_usec = now - r->first_usec < REFUSAL_FAST_FOR_USEC ?
		       REFUSAL_FAST_USEC : backoff_next(&r->backoff);
	errbuf_set(r->last, sizeof(r->last), "server %s port %d refused %u times: %s; next try in %" PRIu64 " ms",
		   host ? host : "(unix socket)", port, r->count, why,
		   r->next_usec / 1000);
	if (r->count == 1 || now - r->logged >= REFUSAL_LOG_USEC) {
		r->logged = now;
		plugin_log(w->api, PGB_LOG_WARNING,
			   "scope \"%s\": database \"%s\": %s%s",
			   w->scope, db, r->last,
			   r->count == 1 ? " (every 5 ms for 0.5 s, then backing off to 2 s)" : "");
	}
	r->state = REFUSAL_PAUSED;
	binding_hold_sync(b);
	watch_timer_arm(r->timer, r->next_usec);
}

bool
watch_server_promoting(struct watch *w, const char *db, const char *host,
			int port, unsigned int *again_ms)
{
	struct watch_binding *b = binding_find(w, db);
	const struct watch_target *t = w->targets[PATRONI_ROLE_PRIMARY];
	struct refusal *r;
	uint64_t now = watch_now_usec();

	if (!b || b->role != PATRONI_ROLE_PRIMARY || !t || t->state != WATCH_TARGET_FOLLOWING ||
	    t->cur.count != 1 || !host || strcmp(t->cur.addrs[0].host, host) != 0 ||
	    t->cur.addrs[0].port != port)
		return false;
	r = &b->refusal;
	if (r->poll_since == 0) {
		r->poll_since = now;
		plugin_log(w->api, PGB_LOG_INFO,
			   "scope \"%s\": database \"%s\": leader %s at %s port %d is still in recovery; checking the same connection again every %d ms for up to %d s",
			   w->scope, db, t->cur.addrs[0].member, host, port, REFUSAL_POLL_MS,
			   (int) (REFUSAL_POLL_FOR_USEC / WATCH_USEC_PER_SEC));
	}
	if (now - r->poll_since >= REFUSAL_POLL_FOR_USEC)
		return false;
	r->polls++;
	*again_ms = REFUSAL_POLL_MS;
	return true;
}

void
watch_server_accepted(struct watch *w, const char *db)
{
	struct watch_binding *b = binding_find(w, db);

	if (!b || (b->refusal.count == 0 && b->refusal.polls == 0))
		return;
	plugin_log(w->api, PGB_LOG_INFO,
		   "scope \"%s\": database \"%s\": server accepted after %u refused and %u checked again",
		   w->scope, db, b->refusal.count, b->refusal.polls);
	refusal_reset(&b->refusal);
	binding_hold_sync(b);
}
