/*
 * watch.c - a followed scope's life cycle: one scope_query, the view
 * built from each of its answers, and the targets of the bound roles
 * (and of their preferences) computed from that view
 * (patroni_targets.c holds the rules).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#include "errbuf.h"

#include "agent_log.h"
#include "plugin_log.h"
#include "watch_int.h"

uint64_t
watch_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * WATCH_USEC_PER_SEC + ts.tv_nsec / 1000;
}

void
watch_timer_arm(struct event *ev, uint64_t usec)
{
	struct timeval tv;

	tv.tv_sec = usec / WATCH_USEC_PER_SEC;
	tv.tv_usec = usec % WATCH_USEC_PER_SEC;
	evtimer_add(ev, &tv);
}

const char *
watch_scope(const struct watch *w)
{
	return w->scope;
}

uint64_t
watch_answers(const struct watch *w)
{
	return w->q.answers;
}

bool
watch_paced(const struct watch *w)
{
	return w->q.mode == SCOPE_QUERY_LEADER;
}

bool
watch_role_bound(const struct watch *w, enum patroni_entry_role role)
{
	const struct watch_binding *b;

	for (b = w->bindings; b; b = b->next)
		if (b->role == role)
			return true;
	return false;
}

bool
watch_target_bound(const struct watch *w, const struct watch_target *t)
{
	const struct watch_binding *b;

	for (b = w->bindings; b; b = b->next)
		if (b->t == t)
			return true;
	return false;
}

static void
watch_target_recompute(struct watch *w, struct watch_target *t)
{
	struct patroni_target nt;

	patroni_target_compute(&w->view, t->role, w->last_leader, &t->prefer, &nt);
	watch_target_update(t, &nt);
}

/* the target of role and prefer, made when new; NULL when out of memory */
static struct watch_target *
watch_target_for(struct watch *w, enum patroni_entry_role role,
		 const struct patroni_prefer *prefer)
{
	struct watch_target *t;
	bool plain = prefer == NULL || prefer->count == 0;

	if (plain && w->targets[role])
		return w->targets[role];
	if (!plain)
		for (t = w->preferring; t; t = t->next)
			if (t->role == role && patroni_prefer_equal(&t->prefer, prefer))
				return t;
	/* a target is kilobytes: made for the roles bound, not for every scope */
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	if (!watch_target_init(w, t, role)) {
		watch_target_cleanup(t);
		free(t);
		return NULL;
	}
	if (plain) {
		w->targets[role] = t;
		return t;
	}
	t->prefer = *prefer;
	t->next = w->preferring;
	w->preferring = t;
	return t;
}

/* the preferring targets no entry follows any more */
static void
watch_preferring_drop(struct watch *w, bool all)
{
	struct watch_target **p = &w->preferring, *t;

	while ((t = *p)) {
		if (!all && watch_target_bound(w, t)) {
			p = &t->next;
			continue;
		}
		*p = t->next;
		watch_target_cleanup(t);
		free(t);
	}
}

/* recompute every bound role's target from the view */
static void
watch_view_apply(struct watch *w)
{
	struct watch_target *t;
	int i;

	if (w->view.leader_key == PATRONI_LEADER_HELD)
		snprintf(w->last_leader, sizeof(w->last_leader), "%s", w->view.leader);
	if (strcmp(w->view.refused, w->refused_logged) != 0) {
		if (w->view.refused[0] != '\0')
			plugin_log(w->api, PGB_LOG_WARNING, "scope \"%s\": %s (%d refused)",
				   w->scope, w->view.refused, w->view.refused_count);
		snprintf(w->refused_logged, sizeof(w->refused_logged), "%s",
			 w->view.refused);
	}
	/* tags left out matter only to entries with a preference */
	if (w->preferring && strcmp(w->view.tags_refused, w->tags_logged) != 0) {
		if (w->view.tags_refused[0] != '\0')
			plugin_log(w->api, PGB_LOG_WARNING,
				   "scope \"%s\": %s; that member matches no patroni_prefer",
				   w->scope, w->view.tags_refused);
		snprintf(w->tags_logged, sizeof(w->tags_logged), "%s", w->view.tags_refused);
	}
	switchover_update(w);
	for (i = 0; i < PATRONI_ROLE_COUNT; i++)
		if (w->targets[i] && watch_target_bound(w, w->targets[i]))
			watch_target_recompute(w, w->targets[i]);
	for (t = w->preferring; t; t = t->next)
		watch_target_recompute(w, t);
}

/*
 * member_pace: a scope whose entries follow only the leader, and which
 * follows it calmly, needs no member record between leader changes; the
 * failover key's hint is then seen only at the next read of the scope
 */
static void
watch_pace(struct watch *w, const struct consul_kv *entries, int count)
{
	const struct watch_target *t = w->targets[PATRONI_ROLE_PRIMARY];
	const struct watch_binding *b;
	const struct consul_kv *leader;
	char key[sizeof(w->prefix) + 8];

	if (w->opts.member_pace_usec == 0 || w->preferring ||
	    w->sw.state != SWITCHOVER_IDLE ||
	    w->view.leader_key != PATRONI_LEADER_HELD)
		return;
	if (!t || t->state != WATCH_TARGET_FOLLOWING)
		return;
	for (b = w->bindings; b; b = b->next)
		if (b->role != PATRONI_ROLE_PRIMARY || b->held ||
		    b->refusal.state != REFUSAL_NONE)
			return;
	snprintf(key, sizeof(key), "%sleader", w->prefix);
	leader = consul_kv_find(entries, count, key);
	if (leader)
		scope_query_pace(&w->q, leader->modify_index, w->opts.member_pace_usec);
}

static void
watch_on_answer(void *arg, const struct consul_kv *entries, int count,
		uint64_t index, bool recovered)
{
	struct watch *w = arg;
	struct patroni_view v;
	char err[PATRONI_VIEW_ERR_MAX];

	if (recovered && !w->limit_counted)
		plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": consul answers again",
			   w->scope);
	agent_log_unlimited(w->agent, w->api, &w->limit_counted);
	agent_log_transport(w->agent, w->api, w->loop);
	if (!patroni_view_build(entries, count, w->prefix, &v, err, sizeof(err))) {
		plugin_log(w->api, PGB_LOG_WARNING, "scope \"%s\": %s; keeping the last view",
			   w->scope, err);
		return;
	}
	patroni_view_free(&w->view);
	w->view = v;
	w->have_view = true;
	watch_view_apply(w);
	watch_pace(w, entries, count);
}

/* clients wait in an entry this scope holds: its next answer is awaited */
static bool
watch_clients_waiting(const struct watch *w)
{
	const struct watch_binding *b;
	struct pgb_db_info info;

	for (b = w->bindings; b; b = b->next)
		if (b->held && w->api->db_lookup(b->db, &info) && info.waiting_clients > 0)
			return true;
	return false;
}

static bool
watch_on_error(void *arg, const char *url, const char *err, bool first)
{
	struct watch *w = arg;
	/* NULL until a primary entry was bound */
	const struct watch_target *t = w->targets[PATRONI_ROLE_PRIMARY];
	char keep[sizeof(t->members) + 32];

	/* the agent's connection limit: said once for every scope */
	if (w->q.conn_limited) {
		agent_log_limited(w->agent, w->api, &w->limit_counted, err);
		return watch_clients_waiting(w);
	}
	agent_log_unlimited(w->agent, w->api, &w->limit_counted);
	/* once per change of state, not once per retry */
	if (!first)
		return watch_clients_waiting(w);
	if (!t || !watch_role_bound(w, PATRONI_ROLE_PRIMARY))
		snprintf(keep, sizeof(keep), "the last member list");
	else if (watch_target_holding(t))
		snprintf(keep, sizeof(keep), "no leader (queries held)");
	else if (t->members[0] != '\0')
		snprintf(keep, sizeof(keep), "leader \"%s\"", t->members);
	else
		snprintf(keep, sizeof(keep), "the entry's address (no leader known yet)");
	plugin_log(w->api, PGB_LOG_WARNING,
		   "scope \"%s\": consul unreachable: %s: %s; keeping %s, retrying with backoff",
		   w->scope, url, err, keep);
	return watch_clients_waiting(w);
}

struct watch *
watch_new(const struct pgb_plugin_api *api, struct curl_loop *loop,
	  struct agent_log *agent, const char *scope,
	  const struct watch_options *opts)
{
	struct watch *w = calloc(1, sizeof(*w));
	bool ok;

	if (!w)
		return NULL;
	w->api = api;
	w->loop = loop;
	w->agent = agent;
	w->opts = *opts;
	snprintf(w->scope, sizeof(w->scope), "%s", scope);
	snprintf(w->prefix, sizeof(w->prefix), "%s/%s/", opts->consul.namespace_, scope);
	ok = scope_query_init(&w->q, api->event_base, loop, &w->opts.consul,
			      w->scope, watch_on_answer, watch_on_error, w);
	ok = switchover_init(w) && ok;
	if (!ok) {
		watch_free(w, false);
		return NULL;
	}
	return w;
}

void
watch_free(struct watch *w, bool release)
{
	struct watch_binding *b;
	int i;

	if (!w)
		return;
	while ((b = w->bindings)) {
		w->bindings = b->next;
		binding_free(b, release);
	}
	scope_query_cleanup(&w->q);
	if (w->agent)
		agent_log_forget(w->agent, &w->limit_counted);
	switchover_cleanup(w);
	for (i = 0; i < PATRONI_ROLE_COUNT; i++) {
		if (w->targets[i])
			watch_target_cleanup(w->targets[i]);
		free(w->targets[i]);
	}
	watch_preferring_drop(w, true);
	patroni_view_free(&w->view);
	free(w);
}

/* start or stop the query, and forget roles nothing is bound to */
static void
watch_query_sync(struct watch *w)
{
	int i;

	for (i = 0; i < PATRONI_ROLE_COUNT; i++)
		if (w->targets[i] && !watch_target_bound(w, w->targets[i]))
			watch_target_reset(w->targets[i]);
	watch_preferring_drop(w, false);
	if (!watch_role_bound(w, PATRONI_ROLE_PRIMARY))
		switchover_end(w, NULL);
	scope_query_run(&w->q, w->bindings != NULL);
}

void
watch_restart(struct watch *w, const struct watch_options *opts)
{
	w->opts = *opts;
	snprintf(w->prefix, sizeof(w->prefix), "%s/%s/", opts->consul.namespace_, w->scope);
	/* the old view may describe another cluster now: keep the addresses, not the view */
	w->have_view = false;
	w->last_leader[0] = '\0';
	scope_query_restart(&w->q);
}

void
watch_set_options(struct watch *w, const struct watch_options *opts)
{
	struct watch_target *t;
	int i;
	bool repace = w->q.mode == SCOPE_QUERY_LEADER &&
		      opts->member_pace_usec != w->opts.member_pace_usec;

	w->opts = *opts;
	/* a paced read waits as long as the old member_pace said */
	if (repace)
		scope_query_restart(&w->q);
	for (i = 0; i < PATRONI_ROLE_COUNT; i++)
		if (w->targets[i])
			no_leader_rearm(w->targets[i]);
	for (t = w->preferring; t; t = t->next)
		no_leader_rearm(t);
}

bool
watch_bind(struct watch *w, const char *db, enum patroni_entry_role role,
	   const struct patroni_prefer *prefer, bool moved)
{
	struct watch_target *t = watch_target_for(w, role, prefer);
	struct watch_binding *b = t ? binding_new(w, t, db, moved) : NULL;

	if (!b) {
		watch_query_sync(w);	/* resets or frees a target made for nothing */
		return false;
	}
	b->next = w->bindings;
	w->bindings = b;
	if (w->have_view && t->state == WATCH_TARGET_STARTING)
		watch_target_recompute(w, t);	/* newly bound on a scope already followed */
	binding_apply(b);
	if (b->held && t->state == WATCH_TARGET_STARTING)
		no_leader_start(t);
	/*
	 * paced, the view may be member_pace old, and a moved entry is held
	 * until the next answer: read the scope now
	 */
	if (w->q.mode == SCOPE_QUERY_LEADER)
		scope_query_restart(&w->q);
	watch_query_sync(w);
	return true;
}

void
watch_unbind(struct watch *w, const char *db)
{
	struct watch_binding **p, *b;

	for (p = &w->bindings; (b = *p); p = &b->next) {
		if (strcmp(b->db, db) == 0) {
			*p = b->next;
			binding_free(b, true);
			break;
		}
	}
	watch_query_sync(w);
}

bool
watch_has_db(const struct watch *w, const char *db, enum patroni_entry_role *role)
{
	const struct watch_binding *b = binding_find(w, db);

	if (b && role)
		*role = b->role;
	return b != NULL;
}

const struct patroni_prefer *
watch_db_prefer(const struct watch *w, const char *db)
{
	const struct watch_binding *b = binding_find(w, db);

	return b ? &b->t->prefer : NULL;
}

int
watch_db_count(const struct watch *w)
{
	const struct watch_binding *b;
	int n = 0;

	for (b = w->bindings; b; b = b->next)
		n++;
	return n;
}

const char *
watch_db_name(const struct watch *w, int i)
{
	const struct watch_binding *b;

	for (b = w->bindings; b && i > 0; b = b->next)
		i--;
	return b ? b->db : NULL;
}

void
watch_reapply(struct watch *w)
{
	struct watch_binding *b;

	for (b = w->bindings; b; b = b->next) {
		if (b->held)
			w->api->db_hold(b->db, true);
		binding_apply(b);
	}
}

enum patroni_check
watch_check(const struct watch *w, const char *db)
{
	const struct watch_binding *b = binding_find(w, db);
	const struct watch_target *t;

	if (!b)
		return PATRONI_CHECK_NONE;
	t = b->t;
	if (t->state != WATCH_TARGET_STARTING)
		return t->cur.check;
	return b->role == PATRONI_ROLE_PRIMARY ? PATRONI_CHECK_PRIMARY :
	       b->role == PATRONI_ROLE_REPLICA ? PATRONI_CHECK_RECOVERY :
	       PATRONI_CHECK_NONE;
}
