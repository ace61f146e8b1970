/*
 * no_leader.c - queries held for a role with nothing to go to wait at
 * most no_leader_timeout; then they fail with an error naming the scope,
 * and every second after that the ones that came since (clients stay
 * connected).  Logged once per episode, then at most every 30 s.
 */

#include <inttypes.h>
#include <stdio.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#include "errbuf.h"

#include "plugin_log.h"
#include "watch_int.h"

#define NO_LEADER_PERIOD_USEC WATCH_USEC_PER_SEC
#define NO_LEADER_LOG_USEC (UINT64_C(30) * WATCH_USEC_PER_SEC)

static void
no_leader_message(const struct watch_target *t, uint64_t secs, char *msg, size_t len)
{
	const struct watch *w = t->w;

	if (t->state == WATCH_TARGET_STARTING)
		errbuf_set(msg, len, "no answer from consul for Patroni scope \"%s\" since %" PRIu64
			   "s (consul_redirect no_leader_timeout)", w->scope, secs);
	else if (t->role == PATRONI_ROLE_PRIMARY)
		errbuf_set(msg, len, "no leader for Patroni scope \"%s\" since %" PRIu64
			   "s (consul_redirect no_leader_timeout)", w->scope, secs);
	else
		errbuf_set(msg, len, "no running %smember for Patroni scope \"%s\" since %" PRIu64
			   "s (consul_redirect no_leader_timeout)",
			   t->role == PATRONI_ROLE_REPLICA ? "replica " : "", w->scope, secs);
}

void
no_leader_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch_target *t = arg;
	struct watch *w = t->w;
	struct watch_binding *b;
	char msg[512];
	uint64_t now = watch_now_usec();
	uint64_t secs = (now - t->held_since + WATCH_USEC_PER_SEC / 2) / WATCH_USEC_PER_SEC;
	int n;

	no_leader_message(t, secs, msg, sizeof(msg));
	for (b = w->bindings; b; b = b->next) {
		if (b->t != t || !b->held)
			continue;
		n = w->api->db_fail_waiting(b->db, msg);
		if (n > 0 && (t->fail_logged < t->held_since ||
			      now - t->fail_logged >= NO_LEADER_LOG_USEC)) {
			t->fail_logged = now;
			plugin_log(w->api, PGB_LOG_WARNING,
				   "scope \"%s\": failed %d waiting queries on database \"%s\": %s",
				   w->scope, n, b->db, msg);
		}
	}
	watch_timer_arm(t->fail_timer, NO_LEADER_PERIOD_USEC);
}

/* from now on (unless already counting), fail waiters after the timeout */
void
no_leader_start(struct watch_target *t)
{
	if (evtimer_pending(t->fail_timer, NULL))
		return;
	t->held_since = watch_now_usec();
	no_leader_rearm(t);
}

void
no_leader_stop(struct watch_target *t)
{
	evtimer_del(t->fail_timer);
	t->held_since = 0;
}

/* no_leader_timeout changed, or counting starts: arm for what is left */
void
no_leader_rearm(struct watch_target *t)
{
	uint64_t limit = t->w->opts.no_leader_timeout_usec;
	uint64_t since;

	if (t->held_since == 0)
		return;
	since = watch_now_usec() - t->held_since;
	watch_timer_arm(t->fail_timer, since >= limit ? 0 : limit - since);
}
