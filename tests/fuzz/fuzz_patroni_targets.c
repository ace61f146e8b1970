/*
 * libFuzzer target for lib/patroni_targets.c's decision function: the
 * first bytes choose the leader key, last leader, config, failsafe and
 * sync keys and a preference, the rest (NUL-separated) are member
 * records; every role's target must follow the rules the header states.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul_kv.h"
#include "patroni_targets.h"
#include "patroni_view.h"

#define FT_HEADER 4
#define FT_MEMBERS_MAX 24	/* more than PATRONI_TARGET_MAX: left_out is reached */
#define FT_ENTRIES_MAX (FT_MEMBERS_MAX + 5)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ft_prefers[] = {
	"dc:dc1", "dc:dc2", "dc:dc1,rack:1", "nofailover:true", "clonefrom:true",
	"failover_priority:1", "zone:a,zone:a"
};

struct ft_input {
	struct consul_kv entries[FT_ENTRIES_MAX];
	int count;
	int members;
	char last_leader[PATRONI_NAME_MAX];
	struct patroni_prefer prefer;
	bool has_prefer;
};

static void
ft_add(struct ft_input *in, const char *key, const char *value, size_t len,
       const char *session)
{
	struct consul_kv *e = &in->entries[in->count++];

	e->key = strdup(key);
	e->value = malloc(len + 1);
	if (e->key == NULL || e->value == NULL)
		abort();
	memcpy(e->value, value, len);
	e->value[len] = '\0';
	e->value_len = len;
	e->session = session ? strdup(session) : NULL;
	e->modify_index = (uint64_t) in->count;
}

static void
ft_add_text(struct ft_input *in, const char *key, const char *value, const char *session)
{
	ft_add(in, key, value, strlen(value), session);
}

/* "m00".."m23", or a name Patroni would not use */
static void
ft_name(int i, int members, char *out, size_t len)
{
	if (i < members)
		snprintf(out, len, "m%02d", i);
	else if (i == members)
		snprintf(out, len, "%s", "gone");	/* no record */
	else
		snprintf(out, len, "%s", "bad/name");
}

static void
ft_decode(const uint8_t *data, size_t size, struct ft_input *in)
{
	const char *body = (const char *) data + FT_HEADER;
	size_t left = size - FT_HEADER;
	uint8_t opt = data[0];
	char key[64], name[PATRONI_NAME_MAX];

	memset(in, 0, sizeof(*in));
	/* the member records: NUL-separated JSON */
	while (left > 0 && in->members < FT_MEMBERS_MAX) {
		const char *nul = memchr(body, '\0', left);
		size_t n = nul ? (size_t) (nul - body) : left;

		snprintf(key, sizeof(key), "service/s/members/m%02d", in->members++);
		ft_add(in, key, body, n, NULL);
		body += n + (nul ? 1 : 0);
		left -= n + (nul ? 1 : 0);
	}
	/* the leader key: one of the members, a member without record, a bad name, or none */
	if (data[1] % (in->members + 3) < (uint8_t) (in->members + 2)) {
		ft_name(data[1] % (in->members + 3), in->members, name, sizeof(name));
		ft_add_text(in, "service/s/leader", name, (opt & 0x08) ? NULL : "sess-1");
	}
	ft_name(data[2] % (in->members + 2), in->members, in->last_leader,
		sizeof(in->last_leader));
	if (data[2] & 0x80)
		in->last_leader[0] = '\0';
	if (opt & 0x01)
		ft_add_text(in, "service/s/config",
			    (opt & 0x02) ? "{\"failsafe_mode\":true,\"standby_cluster\":{\"host\":\"x\"}}" :
			    "{\"failsafe_mode\":true}", NULL);
	else if (opt & 0x02)
		ft_add_text(in, "service/s/config", "{\"standby_cluster\":{\"host\":\"x\"}}", NULL);
	if (opt & 0x04)
		ft_add_text(in, "service/s/failsafe", "{\"m00\":\"http://h:8008/patroni\"}", NULL);
	if (opt & 0x10)
		ft_add_text(in, "service/s/sync", "{\"leader\":\"m00\",\"sync_standby\":\"m01\"}", NULL);
	if (opt & 0x20)
		ft_add_text(in, "service/s/failover", "{\"leader\":\"m00\",\"member\":\"m01\"}", NULL);
	in->has_prefer = (data[3] & 0x80) != 0;
	if (in->has_prefer &&
	    !patroni_prefer_parse(ft_prefers[(data[3] & 0x7f) % (sizeof(ft_prefers) / sizeof(ft_prefers[0]))],
				  &in->prefer, NULL, 0))
		in->has_prefer = false;
}

static void
ft_free(struct ft_input *in)
{
	int i;

	for (i = 0; i < in->count; i++) {
		free(in->entries[i].key);
		free(in->entries[i].value);
		free(in->entries[i].session);
	}
}

static bool
ft_is_leader(const struct patroni_view *v, const char *name)
{
	return v->leader_key == PATRONI_LEADER_HELD && strcmp(v->leader, name) == 0;
}

/* the header's rules, written out again: a record that is, was or becomes a primary */
static bool
ft_primary_like(const struct patroni_member *m)
{
	static const char *const roles[] = {
		"master", "primary", "demoted", "promoted", "standby_leader"
	};
	size_t i;

	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strcmp(m->role, roles[i]) == 0)
			return true;
	return false;
}

static bool
ft_fits(const struct patroni_view *v, enum patroni_entry_role role,
	const struct patroni_view_member *m)
{
	bool running = strcmp(m->rec.state, "running") == 0;

	if (ft_is_leader(v, m->name))
		return role == PATRONI_ROLE_ANY && running;
	return running && patroni_member_is_streaming(&m->rec) &&
	       !m->rec.noloadbalance && !ft_primary_like(&m->rec);
}

/* what holds for every target */
static void
ft_check_shape(const struct patroni_view *v, const struct patroni_target *t)
{
	int i;

	if (t->count < 0 || t->count > PATRONI_TARGET_MAX || t->left_out < 0)
		abort();
	if (t->state >= PATRONI_TARGET_STATE_COUNT)
		abort();
	if (patroni_target_holds(t->state) != (t->count == 0))
		abort();
	if (patroni_target_holds(t->state) && t->why[0] == '\0')
		abort();
	if (strnlen(t->why, sizeof(t->why)) >= sizeof(t->why))
		abort();
	for (i = 0; i < t->count; i++) {
		const struct patroni_view_member *m = patroni_view_member(v, t->addrs[i].member);

		/* a target is one of the members given, with its own address */
		if (m == NULL || strcmp(m->rec.host, t->addrs[i].host) != 0 ||
		    m->rec.port != t->addrs[i].port)
			abort();
		/* sorted by member, each once */
		if (i > 0 && strcmp(t->addrs[i - 1].member, t->addrs[i].member) >= 0)
			abort();
	}
}

static void
ft_check_primary(const struct patroni_view *v, const char *last_leader,
		 const struct patroni_target *t)
{
	const struct patroni_view_member *m;

	if (t->count > 1 || t->left_out != 0 || t->prefer != PATRONI_PREFER_UNSET)
		abort();
	if (v->leader_key != PATRONI_LEADER_HELD) {
		m = last_leader[0] ? patroni_view_member(v, last_leader) : NULL;
		if (v->failsafe && m != NULL) {
			/* failsafe: the last leader, still checked as a primary */
			if (t->state != PATRONI_TARGET_FAILSAFE || t->check != PATRONI_CHECK_PRIMARY ||
			    strcmp(t->addrs[0].member, last_leader) != 0)
				abort();
		} else if (t->state != PATRONI_TARGET_NO_LEADER) {
			abort();
		}
		return;
	}
	m = patroni_view_member(v, v->leader);
	if (m == NULL) {
		if (t->state != PATRONI_TARGET_LEADER_UNKNOWN)
			abort();
		return;
	}
	/* the key's holder, whatever its record says its role is */
	if (t->count != 1 || strcmp(t->addrs[0].member, v->leader) != 0)
		abort();
	if (v->standby_cluster || strcmp(m->rec.role, "standby_leader") == 0) {
		if (t->state != PATRONI_TARGET_STANDBY_LEADER || t->check != PATRONI_CHECK_NONE)
			abort();
	} else if (t->state != PATRONI_TARGET_FOLLOWING || t->check != PATRONI_CHECK_PRIMARY) {
		abort();
	}
}

static void
ft_check_members(const struct patroni_view *v, enum patroni_entry_role role,
		 const struct patroni_prefer *p, const struct patroni_target *t)
{
	int i, fit = 0, fit_matching = 0;
	bool narrowed;

	if (t->check != (role == PATRONI_ROLE_REPLICA ? PATRONI_CHECK_RECOVERY : PATRONI_CHECK_NONE))
		abort();
	for (i = 0; i < v->member_count; i++) {
		if (!ft_fits(v, role, &v->members[i]))
			continue;
		fit++;
		if (p && patroni_prefer_matches(p, &v->members[i].rec))
			fit_matching++;
	}
	if (p == NULL || p->count == 0) {
		if (t->prefer != PATRONI_PREFER_UNSET)
			abort();
	} else if (t->prefer != (fit_matching > 0 ? PATRONI_PREFER_MATCHED : PATRONI_PREFER_FALLBACK)) {
		abort();
	}
	narrowed = t->prefer == PATRONI_PREFER_MATCHED;
	/* every fitting (and matching, when narrowed) member, none other */
	if (t->count + t->left_out != (narrowed ? fit_matching : fit))
		abort();
	if (t->left_out > 0 && t->count != PATRONI_TARGET_MAX)
		abort();
	if ((t->state == PATRONI_TARGET_FOLLOWING) != (t->count > 0))
		abort();
	if (t->count == 0 && t->state != PATRONI_TARGET_NO_MEMBER)
		abort();
	for (i = 0; i < t->count; i++) {
		const struct patroni_view_member *m = patroni_view_member(v, t->addrs[i].member);

		if (!ft_fits(v, role, m))
			abort();
		/* a replica entry never gets the key's holder or a primary-like record */
		if (role == PATRONI_ROLE_REPLICA &&
		    (ft_is_leader(v, m->name) || ft_primary_like(&m->rec)))
			abort();
		if (narrowed && !patroni_prefer_matches(p, &m->rec))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ft_input in;
	struct patroni_view v;
	struct patroni_target t, again, plain;
	char err[PATRONI_VIEW_ERR_MAX];
	int role;

	if (size < FT_HEADER)
		return 0;
	ft_decode(data, size, &in);
	if (!patroni_view_build(in.entries, in.count, "service/s/", &v, err, sizeof(err))) {
		ft_free(&in);
		return 0;
	}
	for (role = 0; role < PATRONI_ROLE_COUNT; role++) {
		const struct patroni_prefer *p = in.has_prefer ? &in.prefer : NULL;

		patroni_target_compute(&v, role, in.last_leader, p, &t);
		ft_check_shape(&v, &t);
		/* pure: the same inputs give the same target */
		patroni_target_compute(&v, role, in.last_leader, p, &again);
		if (!patroni_target_equal(&t, &again) || t.left_out != again.left_out)
			abort();
		patroni_target_compute(&v, role, in.last_leader, NULL, &plain);
		if (role == PATRONI_ROLE_PRIMARY) {
			ft_check_primary(&v, in.last_leader, &t);
			/* a preference is ignored for primary entries */
			if (!patroni_target_equal(&t, &plain))
				abort();
			continue;
		}
		ft_check_members(&v, role, p, &t);
		/* no match: the preference changes nothing but the state's note */
		if (t.prefer == PATRONI_PREFER_FALLBACK) {
			plain.prefer = PATRONI_PREFER_FALLBACK;
			if (!patroni_target_equal(&t, &plain))
				abort();
		}
	}
	patroni_view_free(&v);
	ft_free(&in);
	return 0;
}
