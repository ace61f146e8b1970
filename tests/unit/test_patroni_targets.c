/*
 * Unit tests for lib/patroni_view.c and lib/patroni_targets.c: scopes as
 * Patroni 3 and 4 leave them in Consul (built entry by entry here; the
 * recorded switchovers and failovers are replayed by
 * test_patroni_recorded.c), and the targets each role gets from them,
 * with and without a patroni_prefer preference.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "patroni_targets.h"
#include "patroni_view.h"

#define PREFIX "service/rd/"
#define MAX_ENTRIES 16
#define DC1 "\"tags\":{\"dc\":\"dc1\"}"
#define DC2 "\"tags\":{\"dc\":\"dc2\"}"

struct scope {
	struct consul_kv e[MAX_ENTRIES];
	char keys[MAX_ENTRIES][128];
	char values[MAX_ENTRIES][1024];
	int n;
};

static void
put(struct scope *s, const char *key, const char *value, bool session)
{
	int i = s->n++;

	assert_true(i < MAX_ENTRIES);
	snprintf(s->keys[i], sizeof(s->keys[i]), PREFIX "%s", key);
	snprintf(s->values[i], sizeof(s->values[i]), "%s", value);
	s->e[i].key = s->keys[i];
	s->e[i].value = s->values[i];
	s->e[i].value_len = strlen(value);
	s->e[i].session = session ? (char *) "a9c0e7b2-0000-4000-8000-00000000beef" : NULL;
	s->e[i].modify_index = 10 + (uint64_t) i;
}

/* a member record as Patroni writes it; extra is more JSON members or "" */
static void
member(struct scope *s, const char *name, int port, const char *state,
       const char *role, const char *extra)
{
	char key[64], value[1024];

	snprintf(key, sizeof(key), "members/%s", name);
	snprintf(value, sizeof(value),
		 "{\"conn_url\":\"postgres://127.0.0.1:%d/postgres\","
		 "\"api_url\":\"http://127.0.0.1:%d/patroni\",\"state\":\"%s\","
		 "\"role\":\"%s\",\"version\":\"4.0.7\"%s%s}",
		 port, port + 1000, state, role, extra[0] ? "," : "", extra);
	put(s, key, value, true);
}

static void
view_of(struct scope *s, struct patroni_view *v)
{
	char err[256];

	assert_true(patroni_view_build(s->e, s->n, PREFIX, v, err, sizeof(err)));
}

static void
target_of(struct scope *s, enum patroni_entry_role role, const char *last,
	  struct patroni_target *t)
{
	struct patroni_view v;

	view_of(s, &v);
	patroni_target_compute(&v, role, last, NULL, t);
	patroni_view_free(&v);
}

static void
assert_members(const struct patroni_target *t, const char *want)
{
	char got[512] = "";
	int i;

	for (i = 0; i < t->count; i++) {
		char one[160];

		snprintf(one, sizeof(one), "%s%s:%d", i ? "," : "", t->addrs[i].member,
			 t->addrs[i].port);
		strncat(got, one, sizeof(got) - strlen(got) - 1);
	}
	assert_string_equal(got, want);
}

/* a healthy three-member cluster; the leader's record says role */
static void
healthy(struct scope *s, const char *leader_role)
{
	memset(s, 0, sizeof(*s));
	put(s, "leader", "n1", true);
	put(s, "failover", "{}", false);
	member(s, "n1", 5432, "running", leader_role, "");
	member(s, "n2", 5433, "running", "replica", "\"replication_state\":\"streaming\"");
	member(s, "n3", 5434, "running", "replica", "");
}

static void
test_healthy_cluster(void **state)
{
	struct scope s;
	struct patroni_target t;

	healthy(&s, "primary");
	target_of(&s, PATRONI_ROLE_PRIMARY, "", &t);
	assert_int_equal(t.state, PATRONI_TARGET_FOLLOWING);
	assert_int_equal(t.check, PATRONI_CHECK_PRIMARY);
	assert_members(&t, "n1:5432");
	target_of(&s, PATRONI_ROLE_REPLICA, "", &t);
	assert_int_equal(t.check, PATRONI_CHECK_RECOVERY);
	/* replicas on two ports: each address keeps its own */
	assert_members(&t, "n2:5433,n3:5434");
	target_of(&s, PATRONI_ROLE_ANY, "", &t);
	assert_int_equal(t.check, PATRONI_CHECK_NONE);
	assert_members(&t, "n1:5432,n2:5433,n3:5434");
}

/*
 * Right after a switchover n1 -> n2 the leader key names n2 while n2's own
 * record still says replica for about one HA loop, and n1's says master:
 * the key decides, for every role.
 */
static void
test_new_leader_still_reads_replica(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n2", true);
	member(&s, "n1", 5432, "running", "master", "");
	member(&s, "n2", 5433, "running", "replica", "");
	member(&s, "n3", 5434, "running", "replica", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "n1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_FOLLOWING);
	assert_members(&t, "n2:5433");
	target_of(&s, PATRONI_ROLE_REPLICA, "n1", &t);
	assert_members(&t, "n3:5434");
	target_of(&s, PATRONI_ROLE_ANY, "n1", &t);
	assert_members(&t, "n2:5433,n3:5434");
}

/* Patroni 4's transitional roles are never replicas */
static void
test_transitional_roles_left_out(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n2", true);
	member(&s, "n1", 5432, "running", "demoted", "");
	member(&s, "n2", 5433, "running", "promoted", "");
	member(&s, "n3", 5434, "running", "replica", "");
	target_of(&s, PATRONI_ROLE_REPLICA, "", &t);
	assert_members(&t, "n3:5434");
	target_of(&s, PATRONI_ROLE_PRIMARY, "", &t);
	assert_members(&t, "n2:5433");
}

static void
test_no_leader_key(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	member(&s, "n1", 5432, "running", "master", "");
	member(&s, "n2", 5433, "running", "replica", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "n1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_NO_LEADER);
	assert_int_equal(t.count, 0);
	assert_true(patroni_target_holds(t.state));
	assert_non_null(strstr(t.why, "leader key"));
	/* replicas are still served */
	target_of(&s, PATRONI_ROLE_REPLICA, "n1", &t);
	assert_members(&t, "n2:5433");
}

static void
test_leader_key_without_session(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", false);
	member(&s, "n1", 5432, "running", "master", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "n1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_NO_LEADER);
}

static void
test_leader_without_record(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n9", true);
	member(&s, "n1", 5432, "running", "replica", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "", &t);
	assert_int_equal(t.state, PATRONI_TARGET_LEADER_UNKNOWN);
	assert_non_null(strstr(t.why, "n9"));
	/* a leader whose record is refused is just as unknown */
	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", true);
	put(&s, "members/n1", "{\"conn_url\":\"postgres://x;rm:5432/\"}", true);
	target_of(&s, PATRONI_ROLE_PRIMARY, "", &t);
	assert_int_equal(t.state, PATRONI_TARGET_LEADER_UNKNOWN);
}

static void
test_invalid_leader_name(void **state)
{
	struct scope s;
	struct patroni_view v;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "../n1", true);
	view_of(&s, &v);
	assert_int_equal(v.leader_key, PATRONI_LEADER_INVALID);
	patroni_view_free(&v);
}

/* failsafe_mode: a missing leader key is not a dead primary */
static void
test_failsafe_keeps_last_leader(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "config", "{\"ttl\":30,\"loop_wait\":10,\"failsafe_mode\":true}", false);
	put(&s, "failsafe", "{\"n1\":\"http://127.0.0.1:6432/patroni\",\"n2\":\"http://127.0.0.1:6433/patroni\"}", false);
	member(&s, "n1", 5432, "running", "primary", "");
	member(&s, "n2", 5433, "running", "replica", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "n1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_FAILSAFE);
	assert_false(patroni_target_holds(t.state));
	assert_int_equal(t.check, PATRONI_CHECK_PRIMARY);
	assert_members(&t, "n1:5432");
	/* nobody known to have led: nothing to keep */
	target_of(&s, PATRONI_ROLE_PRIMARY, "", &t);
	assert_int_equal(t.state, PATRONI_TARGET_NO_LEADER);
	/* failsafe_mode off: the failsafe key alone means nothing */
	memset(&s, 0, sizeof(s));
	put(&s, "config", "{\"failsafe_mode\":false}", false);
	put(&s, "failsafe", "{\"n1\":\"http://127.0.0.1:6432/patroni\"}", false);
	member(&s, "n1", 5432, "running", "primary", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "n1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_NO_LEADER);
}

static void
test_standby_cluster(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "config", "{\"standby_cluster\":{\"host\":\"10.0.0.1\",\"port\":5432}}", false);
	put(&s, "leader", "n1", true);
	member(&s, "n1", 5432, "running", "standby_leader", "");
	member(&s, "n2", 5433, "running", "replica", "");
	target_of(&s, PATRONI_ROLE_PRIMARY, "", &t);
	assert_int_equal(t.state, PATRONI_TARGET_STANDBY_LEADER);
	assert_int_equal(t.check, PATRONI_CHECK_NONE);
	assert_members(&t, "n1:5432");
	target_of(&s, PATRONI_ROLE_REPLICA, "", &t);
	assert_members(&t, "n2:5433");
	assert_string_equal(patroni_target_state_name(PATRONI_TARGET_STANDBY_LEADER),
			    "standby_leader");
}

static void
test_tags_and_replication_state(void **state)
{
	struct scope s;
	struct patroni_target t;
	struct patroni_view v;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", true);
	member(&s, "n1", 5432, "running", "primary", "");
	member(&s, "n2", 5433, "running", "replica", "\"tags\":{\"noloadbalance\":true}");
	member(&s, "n3", 5434, "running", "replica", "\"replication_state\":\"in archive recovery\"");
	member(&s, "n4", 5435, "stopped", "replica", "");
	member(&s, "n5", 5436, "running", "replica", "\"tags\":{\"nofailover\":true}");
	member(&s, "n6", 5437, "running", "replica", "\"tags\":{\"failover_priority\":0}");
	target_of(&s, PATRONI_ROLE_REPLICA, "", &t);
	/* nofailover says nothing about reads */
	assert_members(&t, "n5:5436,n6:5437");
	target_of(&s, PATRONI_ROLE_ANY, "", &t);
	assert_members(&t, "n1:5432,n5:5436,n6:5437");
	view_of(&s, &v);
	assert_true(patroni_view_member(&v, "n5")->rec.nofailover);
	assert_true(patroni_view_member(&v, "n6")->rec.nofailover);
	assert_false(patroni_view_member(&v, "n2")->rec.nofailover);
	assert_true(patroni_view_member(&v, "n2")->rec.noloadbalance);
	patroni_view_free(&v);
}

static void
test_no_running_replica(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", true);
	member(&s, "n1", 5432, "running", "master", "");
	member(&s, "n2", 5433, "starting", "replica", "");
	target_of(&s, PATRONI_ROLE_REPLICA, "", &t);
	assert_int_equal(t.state, PATRONI_TARGET_NO_MEMBER);
	assert_true(patroni_target_holds(t.state));
	assert_string_equal(t.why, "no running replica");
}

static void
test_failover_key(void **state)
{
	struct scope s;
	struct patroni_view v;

	healthy(&s, "primary");
	view_of(&s, &v);
	assert_false(v.switchover);	/* "{}": nothing asked */
	patroni_view_free(&v);
	memset(&s, 0, sizeof(s));
	put(&s, "failover", "{\"leader\":\"n1\",\"member\":\"n2\"}", false);
	view_of(&s, &v);
	assert_true(v.switchover);
	assert_string_equal(v.switchover_from, "n1");
	assert_string_equal(v.switchover_to, "n2");
	patroni_view_free(&v);
	memset(&s, 0, sizeof(s));
	put(&s, "failover", "{\"leader\":\"n1\",\"scheduled_at\":\"2026-12-01T12:00:00+00:00\"}", false);
	view_of(&s, &v);
	assert_false(v.switchover);
	patroni_view_free(&v);
	memset(&s, 0, sizeof(s));
	put(&s, "failover", "not json", false);
	view_of(&s, &v);
	assert_false(v.switchover);
	patroni_view_free(&v);
}

static void
test_refused_record_counted(void **state)
{
	struct scope s;
	struct patroni_view v;
	struct patroni_target t;

	healthy(&s, "master");
	put(&s, "members/n4", "{\"conn_url\":\"postgres://u:p@127.0.0.1:5440/\"}", true);
	put(&s, "members/n5", "", true);
	view_of(&s, &v);
	assert_int_equal(v.member_count, 3);
	assert_int_equal(v.refused_count, 2);
	assert_non_null(strstr(v.refused, "member \"n4\" refused"));
	patroni_target_compute(&v, PATRONI_ROLE_REPLICA, "", NULL, &t);
	assert_members(&t, "n2:5433,n3:5434");
	patroni_view_free(&v);
}

/* keys of other scopes (a prefix of this one's name) are not ours */
static void
test_other_scope_ignored(void **state)
{
	struct scope s;
	struct patroni_view v;
	char err[64];

	healthy(&s, "master");
	s.keys[0][strlen(PREFIX) - 1] = 'x';	/* service/rdx/leader */
	assert_true(patroni_view_build(s.e, s.n, PREFIX, &v, err, sizeof(err)));
	assert_int_equal(v.leader_key, PATRONI_LEADER_NONE);
	patroni_view_free(&v);
}

static void
test_too_many_members(void **state)
{
	struct scope s;
	struct patroni_view v;
	struct patroni_target t;
	struct consul_kv e[PATRONI_TARGET_MAX + 4];
	char keys[PATRONI_TARGET_MAX + 4][64], values[PATRONI_TARGET_MAX + 4][160];
	char err[64];
	int i;

	(void) s;
	for (i = 0; i < PATRONI_TARGET_MAX + 4; i++) {
		snprintf(keys[i], sizeof(keys[i]), PREFIX "members/m%02d", i);
		snprintf(values[i], sizeof(values[i]),
			 "{\"conn_url\":\"postgres://127.0.0.1:%d/\",\"state\":\"running\",\"role\":\"replica\"}",
			 6000 + i);
		e[i] = (struct consul_kv){ keys[i], values[i], strlen(values[i]), NULL, 1 };
	}
	assert_true(patroni_view_build(e, PATRONI_TARGET_MAX + 4, PREFIX, &v, err, sizeof(err)));
	patroni_target_compute(&v, PATRONI_ROLE_REPLICA, "", NULL, &t);
	assert_int_equal(t.count, PATRONI_TARGET_MAX);
	assert_int_equal(t.left_out, 4);
	patroni_view_free(&v);
}

static void
test_target_equal(void **state)
{
	struct scope s;
	struct patroni_target a, b;

	healthy(&s, "primary");
	target_of(&s, PATRONI_ROLE_REPLICA, "", &a);
	target_of(&s, PATRONI_ROLE_REPLICA, "", &b);
	assert_true(patroni_target_equal(&a, &b));
	b.addrs[1].port++;
	assert_false(patroni_target_equal(&a, &b));
}


static void
prefer_of(const char *text, struct patroni_prefer *p)
{
	char err[256];

	assert_true(patroni_prefer_parse(text, p, err, sizeof(err)));
}

static void
preferring(struct scope *s, enum patroni_entry_role role, const char *text,
	   struct patroni_target *t)
{
	struct patroni_prefer p;
	struct patroni_view v;

	prefer_of(text, &p);
	view_of(s, &v);
	patroni_target_compute(&v, role, "", &p, t);
	patroni_view_free(&v);
}

/* two sites: the leader and one replica in dc1, one replica in dc2 */
static void
two_sites(struct scope *s, const char *n2_state)
{
	memset(s, 0, sizeof(*s));
	put(s, "leader", "n1", true);
	member(s, "n1", 5432, "running", "primary", DC1);
	member(s, "n2", 5433, n2_state, "replica", DC1);
	member(s, "n3", 5434, "running", "replica", DC2);
}

static void
test_prefer_uses_matching_members(void **state)
{
	struct scope s;
	struct patroni_target t;

	two_sites(&s, "running");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_FOLLOWING);
	assert_int_equal(t.prefer, PATRONI_PREFER_MATCHED);
	assert_int_equal(t.check, PATRONI_CHECK_RECOVERY);
	/* the leader matches too, but a replica entry never gets it */
	assert_members(&t, "n2:5433");
	preferring(&s, PATRONI_ROLE_ANY, "dc:dc1", &t);
	assert_members(&t, "n1:5432,n2:5433");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc2", &t);
	assert_members(&t, "n3:5434");
	/* no preference: every replica, and says so */
	target_of(&s, PATRONI_ROLE_REPLICA, "", &t);
	assert_int_equal(t.prefer, PATRONI_PREFER_UNSET);
	assert_members(&t, "n2:5433,n3:5434");
	/* a preference means nothing to a primary target */
	preferring(&s, PATRONI_ROLE_PRIMARY, "dc:dc2", &t);
	assert_int_equal(t.prefer, PATRONI_PREFER_UNSET);
	assert_members(&t, "n1:5432");
}

/* the matching replica stops: every other one, until it is back */
static void
test_prefer_falls_back_when_none_matches(void **state)
{
	struct scope s;
	struct patroni_target t;

	two_sites(&s, "stopped");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_FOLLOWING);
	assert_int_equal(t.prefer, PATRONI_PREFER_FALLBACK);
	assert_false(patroni_target_holds(t.state));
	assert_members(&t, "n3:5434");
	two_sites(&s, "running");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc9", &t);
	assert_int_equal(t.prefer, PATRONI_PREFER_FALLBACK);
	assert_members(&t, "n2:5433,n3:5434");
	/* nothing fits the role at all: held, as without a preference */
	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", true);
	member(&s, "n1", 5432, "running", "primary", DC1);
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc1", &t);
	assert_int_equal(t.state, PATRONI_TARGET_NO_MEMBER);
	assert_int_equal(t.count, 0);
}

/* every pair must match (AND); numbers and booleans as their JSON text */
static void
test_prefer_and_of_two_pairs(void **state)
{
	struct scope s;
	struct patroni_target t;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", true);
	member(&s, "n1", 5432, "running", "primary", DC1);
	member(&s, "n2", 5433, "running", "replica",
	       "\"tags\":{\"dc\":\"dc1\",\"rack\":\"a\",\"zone\":1}");
	member(&s, "n3", 5434, "running", "replica",
	       "\"tags\":{\"dc\":\"dc1\",\"rack\":\"b\",\"ssd\":true}");
	member(&s, "n4", 5435, "running", "replica", "\"tags\":{\"rack\":\"b\"}");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc1,rack:b", &t);
	assert_int_equal(t.prefer, PATRONI_PREFER_MATCHED);
	assert_members(&t, "n3:5434");
	preferring(&s, PATRONI_ROLE_REPLICA, "rack:b", &t);
	assert_members(&t, "n3:5434,n4:5435");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc1,zone:1", &t);
	assert_members(&t, "n2:5433");
	preferring(&s, PATRONI_ROLE_REPLICA, "ssd:true", &t);
	assert_members(&t, "n3:5434");
	/* one pair off is no match: all of them */
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc2,rack:b", &t);
	assert_int_equal(t.prefer, PATRONI_PREFER_FALLBACK);
	assert_members(&t, "n2:5433,n3:5434,n4:5435");
}

/* no tags, or tags we left out: such a member matches nothing, yet serves */
static void
test_prefer_member_without_tags(void **state)
{
	struct scope s;
	struct patroni_target t;
	struct patroni_view v;
	const struct patroni_view_member *m;

	memset(&s, 0, sizeof(s));
	put(&s, "leader", "n1", true);
	member(&s, "n1", 5432, "running", "primary", "");
	member(&s, "n2", 5433, "running", "replica", "");
	member(&s, "n3", 5434, "running", "replica",
	       "\"tags\":{\"dc\":\"dc1\",\"racks\":[1,2]}");
	member(&s, "n4", 5435, "running", "replica", DC2);
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc2", &t);
	assert_members(&t, "n4:5435");
	preferring(&s, PATRONI_ROLE_REPLICA, "dc:dc1", &t);
	assert_int_equal(t.prefer, PATRONI_PREFER_FALLBACK);
	assert_members(&t, "n2:5433,n3:5434,n4:5435");
	view_of(&s, &v);
	assert_int_equal(v.member_count, 4);	/* a bad tag does not cost the record */
	m = patroni_view_member(&v, "n3");
	assert_int_equal(m->rec.tag_count, 0);
	assert_string_equal(m->rec.tags_why, "tag \"racks\" is not a string, number or boolean");
	assert_string_equal(v.tags_refused, "tags of member \"n3\" left out: "
			    "tag \"racks\" is not a string, number or boolean");
	assert_int_equal(patroni_view_member(&v, "n2")->rec.tag_count, 0);
	assert_string_equal(patroni_view_member(&v, "n2")->rec.tags_why, "");
	assert_string_equal(patroni_member_tag(&patroni_view_member(&v, "n4")->rec, "dc"), "dc2");
	assert_null(patroni_member_tag(&patroni_view_member(&v, "n4")->rec, "rack"));
	patroni_view_free(&v);
}

/* bounds on the tags we keep: too many, too long, not an object */
static void
test_tags_bounded(void **state)
{
	struct scope s;
	struct patroni_view v;
	char many[1024] = "\"tags\":{", one[32], longv[300];
	int i;

	for (i = 0; i <= PATRONI_TAGS_MAX; i++) {
		snprintf(one, sizeof(one), "%s\"t%d\":%d", i ? "," : "", i, i);
		strncat(many, one, sizeof(many) - strlen(many) - 1);
	}
	strncat(many, "}", sizeof(many) - strlen(many) - 1);
	/* a value of PATRONI_TAG_VALUE_MAX bytes: one too many */
	snprintf(longv, sizeof(longv), "\"tags\":{\"dc\":\"%0*d\"}", PATRONI_TAG_VALUE_MAX, 7);
	memset(&s, 0, sizeof(s));
	member(&s, "n1", 5432, "running", "replica", many);
	member(&s, "n2", 5433, "running", "replica", longv);
	member(&s, "n3", 5434, "running", "replica", "\"tags\":\"dc1\"");
	member(&s, "n4", 5435, "running", "replica", "\"tags\":{\"dc\":null}");
	view_of(&s, &v);
	assert_string_equal(v.refused, "");
	assert_int_equal(v.member_count, 4);
	assert_string_equal(patroni_view_member(&v, "n1")->rec.tags_why, "more than 16 tags");
	assert_non_null(strstr(patroni_view_member(&v, "n2")->rec.tags_why,
			       "value longer than 127 bytes"));
	assert_string_equal(patroni_view_member(&v, "n3")->rec.tags_why,
			    "tags is not a json object");
	assert_non_null(strstr(patroni_view_member(&v, "n4")->rec.tags_why, "\"dc\" is not"));
	patroni_view_free(&v);
}

static void
assert_prefer_refused(const char *text, const char *why)
{
	struct patroni_prefer p;
	char err[256];

	assert_false(patroni_prefer_parse(text, &p, err, sizeof(err)));
	if (strstr(err, why) == NULL)
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", text, err, why);
}

static void
test_prefer_option_text(void **state)
{
	struct patroni_prefer p, q;
	char shown[128];

	prefer_of("dc:dc1,rack:r:1", &p);
	assert_int_equal(p.count, 2);
	assert_string_equal(p.tags[1].key, "rack");
	assert_string_equal(p.tags[1].value, "r:1");	/* the first ':' splits */
	patroni_prefer_format(&p, shown, sizeof(shown));
	assert_string_equal(shown, "dc:dc1,rack:r:1");
	prefer_of("dc:dc1,rack:r:1", &q);
	assert_true(patroni_prefer_equal(&p, &q));
	prefer_of("rack:r:1,dc:dc1", &q);
	assert_false(patroni_prefer_equal(&p, &q));
	assert_prefer_refused("", "empty key:value pair");
	assert_prefer_refused("dc", "\"dc\" is not key:value");
	assert_prefer_refused(":dc1", "tag name must be 1 to 63");
	assert_prefer_refused("dc:", "value must be 1 to 127");
	assert_prefer_refused("dc:dc1,", "empty key:value pair");
	assert_prefer_refused("dc:dc1,,rack:a", "empty key:value pair");
	assert_prefer_refused("d/c:dc1", "a tag name is letters, digits");
	assert_prefer_refused("dc:dc 1", "space or control character");
	assert_prefer_refused("dc:dc1,dc:dc2", "tag \"dc\" listed twice");
	assert_prefer_refused("a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1", "more than 8");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthy_cluster),
		cmocka_unit_test(test_new_leader_still_reads_replica),
		cmocka_unit_test(test_transitional_roles_left_out),
		cmocka_unit_test(test_no_leader_key),
		cmocka_unit_test(test_leader_key_without_session),
		cmocka_unit_test(test_leader_without_record),
		cmocka_unit_test(test_invalid_leader_name),
		cmocka_unit_test(test_failsafe_keeps_last_leader),
		cmocka_unit_test(test_standby_cluster),
		cmocka_unit_test(test_tags_and_replication_state),
		cmocka_unit_test(test_no_running_replica),
		cmocka_unit_test(test_failover_key),
		cmocka_unit_test(test_refused_record_counted),
		cmocka_unit_test(test_other_scope_ignored),
		cmocka_unit_test(test_too_many_members),
		cmocka_unit_test(test_target_equal),
		cmocka_unit_test(test_prefer_uses_matching_members),
		cmocka_unit_test(test_prefer_falls_back_when_none_matches),
		cmocka_unit_test(test_prefer_and_of_two_pairs),
		cmocka_unit_test(test_prefer_member_without_tags),
		cmocka_unit_test(test_tags_bounded),
		cmocka_unit_test(test_prefer_option_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
