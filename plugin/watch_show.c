/*
 * watch_show.c - a watch's SHOW CONSUL rows: state consul_unreachable
 * while the scope's query fails, else the role's target state; the
 * error shown is the most pressing one (Consul, a refused server, why
 * queries are held, a refused member record, tags left out).
 */

#include <string.h>

#include "watch_int.h"

static const char *
watch_row_error(const struct watch *w, const struct watch_binding *b,
		const struct watch_target *t)
{
	if (scope_query_failing(&w->q))
		return w->q.error;
	if (b->refusal.count > 0)
		return b->refusal.last;
	if (watch_target_holding(t) && t->cur.why[0] != '\0')
		return t->cur.why;
	/* a refused record matters to primary entries only when it is the leader's */
	if (b->role != PATRONI_ROLE_PRIMARY && w->view.refused[0] != '\0')
		return w->view.refused;
	/* tags that were left out matter to the entries that look at them */
	if (t->prefer.count > 0 && w->view.tags_refused[0] != '\0')
		return w->view.tags_refused;
	return NULL;
}

void
watch_rows(const struct watch *w, watch_row_fn fn, void *arg)
{
	const struct watch_binding *b;

	for (b = w->bindings; b; b = b->next) {
		const struct watch_target *t = b->t;
		struct watch_row row;

		row.database = b->db;
		row.scope = w->scope;
		row.role = patroni_role_name(b->role);
		row.state = scope_query_failing(&w->q) ? "consul_unreachable" :
			    watch_target_state_name(t->state);
		row.member = t->members[0] ? t->members : NULL;
		row.consul_index = w->q.index;
		row.switches = b->switches;
		row.changed_at = b->changed_at;
		row.last_error = watch_row_error(w, b, t);
		fn(&row, arg);
	}
}
