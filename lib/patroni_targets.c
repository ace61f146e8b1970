/*
 * patroni_targets.c - the rules that pick a role's members from a view.
 * The leader is whoever holds the leader key: Patroni rewrites the new
 * leader's own record (role "master"/"primary") only at the end of its
 * next HA loop, so a record's role alone never makes a member a leader,
 * and a record that still says so without the key (the old primary, a
 * demoting node) is not a replica either.
 */
#include "patroni_targets.h"
#include "errbuf.h"

#include <stdio.h>
#include <string.h>

static const char *const target_state_names[PATRONI_TARGET_STATE_COUNT] = {
	"following", "standby_leader", "failsafe", "no_leader",
	"leader_unknown", "no_member"
};

static const char *const role_names[PATRONI_ROLE_COUNT] = {
	"primary", "replica", "any"
};

static void
target_add(struct patroni_target *t, const struct patroni_view_member *m)
{
	struct patroni_address *a;

	if (t->count == PATRONI_TARGET_MAX) {
		t->left_out++;
		return;
	}
	a = &t->addrs[t->count++];
	snprintf(a->member, sizeof(a->member), "%s", m->name);
	snprintf(a->host, sizeof(a->host), "%s", m->rec.host);
	a->port = m->rec.port;
}

/* a record that says this member is or was a primary, or is becoming one */
static bool
target_primary_like(const struct patroni_member *rec)
{
	return patroni_member_is_primary_role(rec) ||
	       strcmp(rec->role, "demoted") == 0 ||
	       strcmp(rec->role, "promoted") == 0 ||
	       strcmp(rec->role, "standby_leader") == 0;
}

/* a member that serves reads as a replica now */
static bool
target_replica_ok(const struct patroni_view *view,
		  const struct patroni_view_member *m)
{
	if (view->leader_key == PATRONI_LEADER_HELD &&
	    strcmp(m->name, view->leader) == 0)
		return false;
	return patroni_member_is_running(&m->rec) &&
	       patroni_member_is_streaming(&m->rec) &&
	       !m->rec.noloadbalance && !target_primary_like(&m->rec);
}

static void
target_primary(const struct patroni_view *view, const char *last_leader,
	       struct patroni_target *t)
{
	const struct patroni_view_member *m;

	t->check = PATRONI_CHECK_PRIMARY;
	if (view->leader_key != PATRONI_LEADER_HELD) {
		m = last_leader[0] != '\0' ? patroni_view_member(view, last_leader) : NULL;
		if (view->failsafe && m != NULL) {
			/* the primary keeps running while it reaches every member */
			t->state = PATRONI_TARGET_FAILSAFE;
			target_add(t, m);
			return;
		}
		t->state = PATRONI_TARGET_NO_LEADER;
		errbuf_set(t->why, sizeof(t->why), "%s",
			   view->leader_key == PATRONI_LEADER_INVALID ?
			   "the leader key holds an invalid member name" :
			   "no member holds the leader key");
		return;
	}
	m = patroni_view_member(view, view->leader);
	if (m == NULL) {
		const char *why = patroni_view_refusal(view, view->leader);

		t->state = PATRONI_TARGET_LEADER_UNKNOWN;
		if (why)
			errbuf_set(t->why, sizeof(t->why), "member record of leader \"%s\" refused: %s",
				   view->leader, why);
		else
			errbuf_set(t->why, sizeof(t->why), "member record of leader \"%s\" not found",
				   view->leader);
		return;
	}
	target_add(t, m);
	if (view->standby_cluster || strcmp(m->rec.role, "standby_leader") == 0) {
		/* writes are refused by PostgreSQL itself; reads are served */
		t->state = PATRONI_TARGET_STANDBY_LEADER;
		t->check = PATRONI_CHECK_NONE;
		return;
	}
	t->state = PATRONI_TARGET_FOLLOWING;
}

static void
target_members(const struct patroni_view *view, enum patroni_entry_role role,
	       struct patroni_target *t)
{
	int i;

	t->check = role == PATRONI_ROLE_REPLICA ? PATRONI_CHECK_RECOVERY :
		   PATRONI_CHECK_NONE;
	for (i = 0; i < view->member_count; i++) {
		const struct patroni_view_member *m = &view->members[i];
		bool is_leader = view->leader_key == PATRONI_LEADER_HELD &&
				 strcmp(m->name, view->leader) == 0;

		if (target_replica_ok(view, m) ||
		    (role == PATRONI_ROLE_ANY && is_leader &&
		     patroni_member_is_running(&m->rec)))
			target_add(t, m);
	}
	if (t->count > 0) {
		t->state = PATRONI_TARGET_FOLLOWING;
		return;
	}
	t->state = PATRONI_TARGET_NO_MEMBER;
	errbuf_set(t->why, sizeof(t->why), "%s",
		   role == PATRONI_ROLE_REPLICA ? "no running replica" : "no running member");
}

void
patroni_target_compute(const struct patroni_view *view,
		       enum patroni_entry_role role, const char *last_leader,
		       struct patroni_target *out)
{
	memset(out, 0, sizeof(*out));
	if (role == PATRONI_ROLE_PRIMARY)
		target_primary(view, last_leader ? last_leader : "", out);
	else
		target_members(view, role, out);
}

bool
patroni_target_equal(const struct patroni_target *a,
		     const struct patroni_target *b)
{
	int i;

	if (a->state != b->state || a->check != b->check || a->count != b->count)
		return false;
	for (i = 0; i < a->count; i++) {
		if (strcmp(a->addrs[i].member, b->addrs[i].member) != 0 ||
		    strcmp(a->addrs[i].host, b->addrs[i].host) != 0 ||
		    a->addrs[i].port != b->addrs[i].port)
			return false;
	}
	return true;
}

bool
patroni_target_holds(enum patroni_target_state state)
{
	return state == PATRONI_TARGET_NO_LEADER ||
	       state == PATRONI_TARGET_LEADER_UNKNOWN ||
	       state == PATRONI_TARGET_NO_MEMBER;
}

const char *
patroni_target_state_name(enum patroni_target_state state)
{
	return state < PATRONI_TARGET_STATE_COUNT ? target_state_names[state] : "unknown";
}

bool
patroni_role_parse(const char *text, enum patroni_entry_role *role)
{
	int i;

	for (i = 0; i < PATRONI_ROLE_COUNT; i++) {
		if (strcmp(text, role_names[i]) == 0) {
			*role = (enum patroni_entry_role) i;
			return true;
		}
	}
	return false;
}

const char *
patroni_role_name(enum patroni_entry_role role)
{
	return role < PATRONI_ROLE_COUNT ? role_names[role] : "unknown";
}
