/*
 * binding.c - a database entry bound to a scope: pointed at its role's
 * target, and held while the target holds, while the check refused its
 * last server (briefly), or while a RELOAD that moved it here waits for
 * the scope's first answer.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#include "plugin_log.h"
#include "watch_int.h"

struct watch_binding *
binding_find(const struct watch *w, const char *db)
{
	struct watch_binding *b;

	for (b = w->bindings; b; b = b->next)
		if (strcmp(b->db, db) == 0)
			return b;
	return NULL;
}

struct watch_binding *
binding_new(struct watch *w, struct watch_target *t, const char *db,
	    bool moved)
{
	struct watch_binding *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->w = w;
	b->t = t;
	b->role = t->role;
	b->moved = moved;
	snprintf(b->db, sizeof(b->db), "%s", db);
	if (!refusal_init(b)) {
		free(b);
		return NULL;
	}
	return b;
}

void
binding_free(struct watch_binding *b, bool release)
{
	if (b->held && release)
		b->w->api->db_hold(b->db, false);
	refusal_cleanup(&b->refusal);
	free(b);
}

void
binding_hold_sync(struct watch_binding *b)
{
	const struct pgb_plugin_api *api = b->w->api;
	const struct watch_target *t = b->t;
	bool want = watch_target_holding(t) || refusal_holding(&b->refusal) ||
		    (b->moved && t->state == WATCH_TARGET_STARTING);

	if (want == b->held)
		return;
	if (!api->db_hold(b->db, want) && want) {
		plugin_log(api, PGB_LOG_WARNING,
			   "scope \"%s\": cannot hold database \"%s\": no such entry",
			   b->w->scope, b->db);
		return;
	}
	b->held = want;
}

/* every member of the target with its own port; "h1 port 5432, h2 port 5433" */
static int
binding_point(struct watch_binding *b, const struct patroni_target *t,
	      char *shown, size_t len)
{
	struct pgb_address a[PATRONI_TARGET_MAX];
	size_t used = 0;
	int i, n;

	shown[0] = '\0';
	for (i = 0; i < t->count; i++) {
		a[i].host = t->addrs[i].host;
		a[i].port = t->addrs[i].port;
		n = snprintf(shown + used, len - used, "%s%s port %d", i ? ", " : "",
			     a[i].host, a[i].port);
		if (n > 0 && (size_t) n < len - used)
			used += (size_t) n;
	}
	return b->w->api->db_set_addresses(b->db, a, t->count);
}

void
binding_apply(struct watch_binding *b)
{
	struct watch_target *t = b->t;
	const struct pgb_plugin_api *api = b->w->api;
	char shown[PATRONI_TARGET_MAX * (PATRONI_HOST_MAX + 16)];
	int rc;

	if (t->state != WATCH_TARGET_STARTING)
		b->moved = false;
	if (t->cur.count > 0) {
		rc = binding_point(b, &t->cur, shown, sizeof(shown));
		if (rc == 1) {
			b->switches++;
			b->changed_at = time(NULL);
			refusal_reset(&b->refusal);
			plugin_log(api, PGB_LOG_INFO,
				   "scope \"%s\": database \"%s\" now points at %s (%s %s)",
				   b->w->scope, b->db, shown,
				   b->role == PATRONI_ROLE_PRIMARY ? "leader" : "members",
				   t->members);
		} else if (rc < 0) {
			plugin_log(api, PGB_LOG_WARNING,
				   "scope \"%s\": cannot point database \"%s\" at %s",
				   b->w->scope, b->db, shown);
		}
	}
	binding_hold_sync(b);
}
