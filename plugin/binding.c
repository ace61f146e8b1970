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

#include "member_pool.h"
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
binding_new(struct watch *w, const char *db, enum patroni_entry_role role,
	    bool moved)
{
	struct watch_binding *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->w = w;
	b->role = role;
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
	const struct watch_target *t = &b->w->targets[b->role];
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

/* one address, or (API 1) the members on the most common port */
static int
binding_point(struct watch_binding *b, const struct patroni_target *t,
	      char *shown, size_t len)
{
	struct member_pool_entry e[PATRONI_TARGET_MAX];
	struct member_pool_choice c;
	int i;

	if (t->count == 1) {
		snprintf(shown, len, "%s port %d", t->addrs[0].host, t->addrs[0].port);
		return b->w->api->db_set_address(b->db, t->addrs[0].host, t->addrs[0].port);
	}
	for (i = 0; i < t->count; i++)
		e[i] = (struct member_pool_entry){ t->addrs[i].member, t->addrs[i].host,
						   t->addrs[i].port };
	if (!member_pool_choose(e, t->count, &c))
		return -1;
	snprintf(shown, len, "%s port %d", c.hosts, c.port);
	return b->w->api->db_set_address(b->db, c.hosts, c.port);
}

void
binding_apply(struct watch_binding *b)
{
	struct watch_target *t = &b->w->targets[b->role];
	const struct pgb_plugin_api *api = b->w->api;
	char shown[MEMBER_POOL_TEXT_MAX + 32];
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
