/*
 * watch_target.c - where the entries of one role point, as a state
 * machine: starting -> following / fallback (a preference no member
 * matches) / switchover / standby_leader / failsafe, or one of the
 * holding states (no_leader, leader_unknown, no_member).  A target keeps
 * its last addresses while holding, logs each change of state or members
 * once, and applies itself to the entries that follow it (one role, one
 * preference).
 */

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#include "plugin_log.h"
#include "watch_int.h"

static const char *const watch_target_state_names[] = {
	[WATCH_TARGET_STARTING] = "starting",
	[WATCH_TARGET_FOLLOWING] = "following",
	[WATCH_TARGET_FALLBACK] = "fallback",
	[WATCH_TARGET_SWITCHOVER] = "switchover",
	[WATCH_TARGET_STANDBY_LEADER] = "standby_leader",
	[WATCH_TARGET_FAILSAFE] = "failsafe",
	[WATCH_TARGET_NO_LEADER] = "no_leader",
	[WATCH_TARGET_LEADER_UNKNOWN] = "leader_unknown",
	[WATCH_TARGET_NO_MEMBER] = "no_member",
};

const char *
watch_target_state_name(enum watch_target_state state)
{
	return watch_target_state_names[state];
}

bool
watch_target_holding(const struct watch_target *t)
{
	return t->state == WATCH_TARGET_SWITCHOVER ||
	       t->state == WATCH_TARGET_NO_LEADER ||
	       t->state == WATCH_TARGET_LEADER_UNKNOWN ||
	       t->state == WATCH_TARGET_NO_MEMBER;
}

bool
watch_target_init(struct watch *w, struct watch_target *t,
		  enum patroni_entry_role role)
{
	t->w = w;
	t->role = role;
	t->state = WATCH_TARGET_STARTING;
	t->fail_timer = evtimer_new(w->api->event_base, no_leader_timer_cb, t);
	return t->fail_timer != NULL;
}

void
watch_target_cleanup(struct watch_target *t)
{
	if (t->fail_timer)
		event_free(t->fail_timer);
	t->fail_timer = NULL;
}

void
watch_target_reset(struct watch_target *t)
{
	no_leader_stop(t);
	t->state = WATCH_TARGET_STARTING;
	memset(&t->cur, 0, sizeof(t->cur));
	t->members[0] = '\0';
}

void
watch_target_apply(struct watch_target *t)
{
	struct watch_binding *b;

	for (b = t->w->bindings; b; b = b->next)
		if (b->t == t)
			binding_apply(b);
}

static enum watch_target_state
watch_target_state_of(const struct watch_target *t, const struct patroni_target *nt)
{
	switch (nt->state) {
	case PATRONI_TARGET_FOLLOWING:
		if (t->role == PATRONI_ROLE_PRIMARY &&
		    t->w->sw.state == SWITCHOVER_ANNOUNCED)
			return WATCH_TARGET_SWITCHOVER;
		if (nt->prefer == PATRONI_PREFER_FALLBACK)
			return WATCH_TARGET_FALLBACK;
		return WATCH_TARGET_FOLLOWING;
	case PATRONI_TARGET_STANDBY_LEADER:
		return WATCH_TARGET_STANDBY_LEADER;
	case PATRONI_TARGET_FAILSAFE:
		return WATCH_TARGET_FAILSAFE;
	case PATRONI_TARGET_NO_LEADER:
		return WATCH_TARGET_NO_LEADER;
	case PATRONI_TARGET_LEADER_UNKNOWN:
		return WATCH_TARGET_LEADER_UNKNOWN;
	default:
		return WATCH_TARGET_NO_MEMBER;
	}
}

static bool
watch_target_same_addresses(const struct patroni_target *a,
			    const struct patroni_target *b)
{
	int i;

	if (a->count != b->count)
		return false;
	for (i = 0; i < a->count; i++)
		if (strcmp(a->addrs[i].member, b->addrs[i].member) != 0 ||
		    strcmp(a->addrs[i].host, b->addrs[i].host) != 0 ||
		    a->addrs[i].port != b->addrs[i].port)
			return false;
	return true;
}

/* "m1 (h1 port 5432), m2 (h2 port 5433)" */
static void
watch_target_describe(const struct patroni_target *t, char *buf, size_t len)
{
	size_t used = 0;
	int i, n;

	buf[0] = '\0';
	for (i = 0; i < t->count && used < len; i++) {
		n = snprintf(buf + used, len - used, "%s%s (%s port %d)", i ? ", " : "",
			     t->addrs[i].member, t->addrs[i].host, t->addrs[i].port);
		if (n < 0)
			break;
		used += (size_t) n;
	}
}

static void
watch_target_names(struct watch_target *t)
{
	size_t used = 0;
	int i, n;

	t->members[0] = '\0';
	for (i = 0; i < t->cur.count && used < sizeof(t->members); i++) {
		n = snprintf(t->members + used, sizeof(t->members) - used, "%s%s",
			     i ? "," : "", t->cur.addrs[i].member);
		if (n < 0)
			break;
		used += (size_t) n;
	}
}

static void
watch_target_log(struct watch_target *t, enum watch_target_state old, bool moved)
{
	struct watch *w = t->w;
	const char *role = patroni_role_name(t->role);
	char where[1024], prefer[PATRONI_PREFER_TEXT_MAX + 32] = "";

	watch_target_describe(&t->cur, where, sizeof(where));
	if (t->prefer.count > 0) {
		memcpy(prefer, " preferring ", 13);
		patroni_prefer_format(&t->prefer, prefer + 12, sizeof(prefer) - 12);
	}
	if (t->state == old && !moved)
		return;
	switch (t->state) {
	case WATCH_TARGET_FOLLOWING:
		if (t->role == PATRONI_ROLE_PRIMARY)
			plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": leader is %s", w->scope, where);
		else
			plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": role %s%s members: %s%s",
				   w->scope, role, prefer, where,
				   t->cur.left_out ? " (more left out: too many)" : "");
		break;
	case WATCH_TARGET_FALLBACK:
		plugin_log(w->api, PGB_LOG_WARNING,
			   "scope \"%s\": role %s%s: no member matches; using every one: %s%s",
			   w->scope, role, prefer, where,
			   t->cur.left_out ? " (more left out: too many)" : "");
		break;
	case WATCH_TARGET_SWITCHOVER:
		break;			/* switchover.c says it */
	case WATCH_TARGET_STANDBY_LEADER:
		plugin_log(w->api, PGB_LOG_INFO,
			   "scope \"%s\": standby cluster: its leader %s is in recovery; role %s serves reads only",
			   w->scope, where, role);
		break;
	case WATCH_TARGET_FAILSAFE:
		plugin_log(w->api, PGB_LOG_WARNING,
			   "scope \"%s\": leader key gone while failsafe_mode is on; keeping %s",
			   w->scope, where);
		break;
	default:
		plugin_log(w->api, PGB_LOG_WARNING,
			   "scope \"%s\": role %s: %s; holding queries (no_leader_timeout applies)",
			   w->scope, role, t->cur.why);
		break;
	}
}

void
watch_target_update(struct watch_target *t, const struct patroni_target *nt)
{
	enum watch_target_state old = t->state;
	bool moved = nt->count > 0 && !watch_target_same_addresses(&t->cur, nt);
	bool was_holding = watch_target_holding(t) || old == WATCH_TARGET_STARTING;

	t->state = watch_target_state_of(t, nt);
	if (nt->count > 0) {
		t->cur = *nt;
	} else {
		/* holding: the last addresses stay in place, only state and why change */
		t->cur.state = nt->state;
		t->cur.check = nt->check;
		memcpy(t->cur.why, nt->why, sizeof(t->cur.why));
	}
	watch_target_names(t);
	watch_target_log(t, old, moved);
	if (watch_target_holding(t) && t->state != WATCH_TARGET_SWITCHOVER)
		no_leader_start(t);
	else if (was_holding)
		no_leader_stop(t);
	if (t->state != old || moved)
		watch_target_apply(t);
}
