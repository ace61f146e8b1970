/*
 * switchover.c - the failover key as a hint.  Patroni writes it when a
 * switchover is asked for and only then stops the old primary; the
 * leader key changes after that.  Holding new queries of primary entries
 * from the announcement on lets running transactions end and keeps new
 * ones off a primary that is going down.  The hold ends when another
 * member leads, when the key is cleared without a change (Patroni gave
 * up), or after no_leader_timeout.
 */

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#include "plugin_log.h"
#include "watch_int.h"

static void
switchover_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	switchover_end(arg, "no leader change seen, releasing held queries");
}

bool
switchover_init(struct watch *w)
{
	w->sw.state = SWITCHOVER_IDLE;
	w->sw.timer = evtimer_new(w->api->event_base, switchover_timer_cb, w);
	return w->sw.timer != NULL;
}

void
switchover_cleanup(struct watch *w)
{
	if (w->sw.timer)
		event_free(w->sw.timer);
	w->sw.timer = NULL;
}

/* why NULL: quietly (the primary role is no longer bound) */
static bool
switchover_stop(struct watch *w, const char *why)
{
	if (w->sw.state == SWITCHOVER_IDLE)
		return false;
	w->sw.state = SWITCHOVER_IDLE;
	evtimer_del(w->sw.timer);
	if (why)
		plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": switchover from \"%s\" over (%s)",
			   w->scope, w->sw.from, why);
	return why != NULL;
}

/* outside a view update: release the primary entries at once */
void
switchover_end(struct watch *w, const char *why)
{
	struct watch_target *t = w->targets[PATRONI_ROLE_PRIMARY];

	if (switchover_stop(w, why) && t && t->state == WATCH_TARGET_SWITCHOVER) {
		t->state = WATCH_TARGET_FOLLOWING;
		watch_target_apply(t);
	}
}

/* a candidate Patroni would refuse: nothing will happen, hold nothing */
static bool
switchover_candidate_refused(const struct watch *w, const char *to)
{
	const struct patroni_view_member *m;

	if (to[0] == '\0')
		return false;
	m = patroni_view_member(&w->view, to);
	return m != NULL && m->rec.nofailover;
}

/* called with each new view, before the targets are computed from it */
void
switchover_update(struct watch *w)
{
	const struct patroni_view *v = &w->view;
	const char *leader = v->leader_key == PATRONI_LEADER_HELD ? v->leader : "";

	if (!watch_role_bound(w, PATRONI_ROLE_PRIMARY))
		return;
	if (w->sw.state == SWITCHOVER_ANNOUNCED) {
		/* the targets computed next from the same view apply the change */
		if (leader[0] != '\0' && strcmp(leader, w->sw.from) != 0)
			switchover_stop(w, "new leader in place");
		else if (!v->switchover)
			switchover_stop(w, "failover key cleared");
		return;
	}
	if (!v->switchover || leader[0] == '\0' || v->standby_cluster ||
	    (v->switchover_from[0] != '\0' && strcmp(v->switchover_from, leader) != 0) ||
	    strcmp(v->switchover_to, leader) == 0 ||
	    switchover_candidate_refused(w, v->switchover_to))
		return;
	w->sw.state = SWITCHOVER_ANNOUNCED;
	snprintf(w->sw.from, sizeof(w->sw.from), "%s", leader);
	snprintf(w->sw.to, sizeof(w->sw.to), "%s", v->switchover_to);
	plugin_log(w->api, PGB_LOG_INFO,
		   "scope \"%s\": switchover from \"%s\"%s%s%s announced; holding new queries",
		   w->scope, leader, w->sw.to[0] ? " to \"" : "", w->sw.to,
		   w->sw.to[0] ? "\"" : "");
	watch_timer_arm(w->sw.timer, w->opts.no_leader_timeout_usec);
}
