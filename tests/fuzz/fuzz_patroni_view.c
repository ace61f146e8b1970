/*
 * libFuzzer target for lib/patroni_view.c and lib/patroni_targets.c: any
 * bytes as a recursive answer for scope "service/s/"; the targets of every
 * role must hold together whatever the keys say, and a preference only
 * ever narrows the members of a replica or any target.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consul_kv.h"
#include "patroni_targets.h"
#include "patroni_view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_target(const struct patroni_view *v, const struct patroni_target *t,
	     enum patroni_entry_role role)
{
	int i;

	if (t->count < 0 || t->count > PATRONI_TARGET_MAX)
		abort();
	if (patroni_target_holds(t->state) && t->count != 0)
		abort();
	if (!patroni_target_holds(t->state) && t->count == 0)
		abort();
	for (i = 0; i < t->count; i++) {
		if (!patroni_view_member(v, t->addrs[i].member))
			abort();
		if (!patroni_host_valid(t->addrs[i].host) || t->addrs[i].port < 1 ||
		    t->addrs[i].port > 65535)
			abort();
		/* a replica entry never gets the member holding the leader key */
		if (role == PATRONI_ROLE_REPLICA && v->leader_key == PATRONI_LEADER_HELD &&
		    strcmp(t->addrs[i].member, v->leader) == 0)
			abort();
	}
	if (role == PATRONI_ROLE_PRIMARY && t->count > 1)
		abort();
}

/* every member of narrow is in all and matches p, when it says it matched */
static void
check_prefer(const struct patroni_view *v, const struct patroni_prefer *p,
	     const struct patroni_target *all, const struct patroni_target *narrow)
{
	struct patroni_target same = *narrow;
	int i, j;

	if (narrow->state != all->state)
		abort();
	same.prefer = all->prefer;
	if (narrow->prefer == PATRONI_PREFER_FALLBACK && !patroni_target_equal(all, &same))
		abort();
	for (i = 0; i < narrow->count; i++) {
		for (j = 0; j < all->count; j++)
			if (strcmp(all->addrs[j].member, narrow->addrs[i].member) == 0)
				break;
		if (j == all->count && all->left_out == 0)
			abort();
		if (narrow->prefer == PATRONI_PREFER_MATCHED &&
		    !patroni_prefer_matches(p, &patroni_view_member(v, narrow->addrs[i].member)->rec))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct consul_kv *entries;
	struct patroni_view v;
	struct patroni_target t, narrow;
	struct patroni_prefer p;
	char err[256];
	int count, role;

	if (!consul_kv_parse((const char *) data, size, &entries, &count, err, sizeof(err)))
		return 0;
	if (patroni_view_build(entries, count, "service/s/", &v, err, sizeof(err))) {
		for (role = 0; role < PATRONI_ROLE_COUNT; role++) {
			patroni_target_compute(&v, role, "n1", NULL, &t);
			check_target(&v, &t, role);
			if (role == PATRONI_ROLE_PRIMARY ||
			    !patroni_prefer_parse("dc:dc1,rack:1", &p, err, sizeof(err)))
				continue;
			patroni_target_compute(&v, role, "n1", &p, &narrow);
			check_target(&v, &narrow, role);
			check_prefer(&v, &p, &t, &narrow);
		}
		patroni_view_free(&v);
	}
	consul_kv_free(entries, count);
	return 0;
}
