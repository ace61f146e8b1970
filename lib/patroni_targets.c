/*
 * patroni_targets.c - the rules that pick a role's members from a view.
 * The leader is whoever holds the leader key: Patroni rewrites the new
 * leader's own record (role "master"/"primary") only at the end of its
 * next HA loop, so a record's role alone never makes a member a leader,
 * and a record that still says so without the key (the old primary, a
 * demoting node) is not a replica either.  A preference only narrows
 * the members that fit a role; it never adds one.
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

/* a member that fits a replica or any role, preference aside */
static bool
target_member_fits(const struct patroni_view *view, enum patroni_entry_role role,
		   const struct patroni_view_member *m)
{
	bool is_leader = view->leader_key == PATRONI_LEADER_HELD &&
			 strcmp(m->name, view->leader) == 0;

	return target_replica_ok(view, m) ||
	       (role == PATRONI_ROLE_ANY && is_leader &&
		patroni_member_is_running(&m->rec));
}

static void
target_members(const struct patroni_view *view, enum patroni_entry_role role,
	       const struct patroni_prefer *prefer, struct patroni_target *t)
{
	bool narrow = false;
	int i;

	t->check = role == PATRONI_ROLE_REPLICA ? PATRONI_CHECK_RECOVERY :
		   PATRONI_CHECK_NONE;
	t->prefer = PATRONI_PREFER_UNSET;
	if (prefer != NULL && prefer->count > 0) {
		t->prefer = PATRONI_PREFER_FALLBACK;
		for (i = 0; i < view->member_count && !narrow; i++)
			narrow = target_member_fits(view, role, &view->members[i]) &&
				 patroni_prefer_matches(prefer, &view->members[i].rec);
		if (narrow)
			t->prefer = PATRONI_PREFER_MATCHED;
	}
	for (i = 0; i < view->member_count; i++) {
		const struct patroni_view_member *m = &view->members[i];

		if (target_member_fits(view, role, m) &&
		    (!narrow || patroni_prefer_matches(prefer, &m->rec)))
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
		       const struct patroni_prefer *prefer,
		       struct patroni_target *out)
{
	memset(out, 0, sizeof(*out));
	if (role == PATRONI_ROLE_PRIMARY)
		target_primary(view, last_leader ? last_leader : "", out);
	else
		target_members(view, role, prefer, out);
}

bool
patroni_target_equal(const struct patroni_target *a,
		     const struct patroni_target *b)
{
	int i;

	if (a->state != b->state || a->check != b->check || a->count != b->count ||
	    a->prefer != b->prefer)
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

/* one "key:value" of n bytes at item into *tag */
static bool
prefer_pair(const char *item, size_t n, struct patroni_tag *tag, char *err,
	    size_t errlen)
{
	const char *colon = memchr(item, ':', n);
	char raw[PATRONI_PREFER_TEXT_MAX], shown[ERRBUF_VALUE_MAX];
	char key[PATRONI_TAG_KEY_MAX];
	size_t klen, vlen, i;

	snprintf(raw, sizeof(raw), "%.*s", (int) n, item);
	errbuf_printable(raw, shown, sizeof(shown));
	if (n == 0) {
		errbuf_set(err, errlen, "empty key:value pair");
		return false;
	}
	if (colon == NULL) {
		errbuf_set(err, errlen, "\"%s\" is not key:value", shown);
		return false;
	}
	klen = (size_t) (colon - item);
	vlen = n - klen - 1;
	if (klen == 0 || klen >= sizeof(key)) {
		errbuf_set(err, errlen, "\"%s\": the tag name must be 1 to %d characters",
			   shown, PATRONI_TAG_KEY_MAX - 1);
		return false;
	}
	memcpy(key, item, klen);
	key[klen] = '\0';
	if (strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		   "0123456789._-") != klen) {
		errbuf_set(err, errlen, "\"%s\": a tag name is letters, digits, '.', '_' and '-'",
			   shown);
		return false;
	}
	if (vlen == 0 || vlen >= sizeof(tag->value)) {
		errbuf_set(err, errlen, "\"%s\": the value must be 1 to %d characters",
			   shown, PATRONI_TAG_VALUE_MAX - 1);
		return false;
	}
	for (i = 0; i < vlen; i++) {
		if ((unsigned char) colon[1 + i] <= 0x20 || colon[1 + i] == 0x7f) {
			errbuf_set(err, errlen, "\"%s\": the value has a space or control character",
				   shown);
			return false;
		}
	}
	snprintf(tag->key, sizeof(tag->key), "%s", key);
	memcpy(tag->value, colon + 1, vlen);
	tag->value[vlen] = '\0';
	return true;
}

bool
patroni_prefer_parse(const char *text, struct patroni_prefer *out, char *err,
		     size_t errlen)
{
	struct patroni_prefer p;
	const char *item = text;
	size_t n;
	int i;

	memset(&p, 0, sizeof(p));
	if (strlen(text) >= PATRONI_PREFER_TEXT_MAX) {
		errbuf_set(err, errlen, "longer than %d characters", PATRONI_PREFER_TEXT_MAX - 1);
		return false;
	}
	for (;;) {
		n = strcspn(item, ",");
		if (p.count == PATRONI_PREFER_MAX) {
			errbuf_set(err, errlen, "more than %d key:value pairs", PATRONI_PREFER_MAX);
			return false;
		}
		if (!prefer_pair(item, n, &p.tags[p.count], err, errlen))
			return false;
		for (i = 0; i < p.count; i++) {
			if (strcmp(p.tags[i].key, p.tags[p.count].key) == 0) {
				errbuf_set(err, errlen,
					   "tag \"%s\" listed twice (all pairs must match, so it never could)",
					   p.tags[i].key);
				return false;
			}
		}
		p.count++;
		if (item[n] == '\0')
			break;
		item += n + 1;
	}
	*out = p;
	return true;
}

bool
patroni_prefer_equal(const struct patroni_prefer *a, const struct patroni_prefer *b)
{
	int i;

	if (a->count != b->count)
		return false;
	for (i = 0; i < a->count; i++) {
		if (strcmp(a->tags[i].key, b->tags[i].key) != 0 ||
		    strcmp(a->tags[i].value, b->tags[i].value) != 0)
			return false;
	}
	return true;
}

void
patroni_prefer_format(const struct patroni_prefer *p, char *buf, size_t len)
{
	size_t used = 0;
	int i, n;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < p->count && used < len; i++) {
		n = snprintf(buf + used, len - used, "%s%s:%s", i ? "," : "",
			     p->tags[i].key, p->tags[i].value);
		if (n < 0)
			break;
		used += (size_t) n;
	}
}

bool
patroni_prefer_matches(const struct patroni_prefer *p, const struct patroni_member *m)
{
	const char *v;
	int i;

	for (i = 0; i < p->count; i++) {
		v = patroni_member_tag(m, p->tags[i].key);
		if (v == NULL || strcmp(v, p->tags[i].value) != 0)
			return false;
	}
	return true;
}
