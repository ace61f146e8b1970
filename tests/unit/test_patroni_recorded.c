/*
 * Replays the scope answers recorded from real Patroni 3.0.2 and 4.0.7
 * switchovers and failovers in the lab (tests/lab/record_scope.py wrote
 * the files in tests/unit/data/recorded/) through lib/patroni_view.c and
 * lib/patroni_targets.c, answer by answer, as the plugin sees them.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "consul_kv.h"
#include "patroni_targets.h"
#include "patroni_view.h"
#include "data_files.h"

struct replay {
	char name[256];
	int answers;
	int leader_changes;		/* leader key held by another member */
	int stale_leader_records;	/* answers where the leader's record said replica */
	int no_leader_answers;
	char first_leader[PATRONI_NAME_MAX];
	char last_leader[PATRONI_NAME_MAX];
	enum patroni_target_state last_state;
};

static bool
is_primary_role(const char *role)
{
	return strcmp(role, "master") == 0 || strcmp(role, "primary") == 0;
}

static void
check_answer(struct replay *r, const char *body, size_t len, const char *prefix)
{
	struct consul_kv *e;
	int count, i;
	char err[256];
	struct patroni_view v;
	struct patroni_target p, rep, any;
	const struct patroni_view_member *lm;

	if (!consul_kv_parse(body, len, &e, &count, err, sizeof(err)))
		fail_msg("%s: answer %d refused: %s", r->name, r->answers, err);
	assert_true(patroni_view_build(e, count, prefix, &v, err, sizeof(err)));
	patroni_target_compute(&v, PATRONI_ROLE_PRIMARY, r->last_leader, NULL, &p);
	patroni_target_compute(&v, PATRONI_ROLE_REPLICA, r->last_leader, NULL, &rep);
	patroni_target_compute(&v, PATRONI_ROLE_ANY, r->last_leader, NULL, &any);
	r->last_state = p.state;
	if (v.leader_key == PATRONI_LEADER_HELD) {
		lm = patroni_view_member(&v, v.leader);
		if (r->first_leader[0] == '\0')
			snprintf(r->first_leader, sizeof(r->first_leader), "%s", v.leader);
		if (r->last_leader[0] != '\0' && strcmp(r->last_leader, v.leader) != 0)
			r->leader_changes++;
		snprintf(r->last_leader, sizeof(r->last_leader), "%s", v.leader);
		if (lm == NULL) {
			assert_int_equal(p.state, PATRONI_TARGET_LEADER_UNKNOWN);
		} else {
			assert_int_equal(p.state, PATRONI_TARGET_FOLLOWING);
			assert_int_equal(p.count, 1);
			assert_string_equal(p.addrs[0].member, v.leader);
			assert_string_equal(p.addrs[0].host, lm->rec.host);
			assert_int_equal(p.addrs[0].port, lm->rec.port);
			if (strcmp(lm->rec.role, "replica") == 0)
				r->stale_leader_records++;
		}
	} else {
		r->no_leader_answers++;
		assert_int_equal(p.state, PATRONI_TARGET_NO_LEADER);
	}
	/* a replica entry never gets the leader nor a record that says primary */
	for (i = 0; i < rep.count; i++) {
		const struct patroni_view_member *m = patroni_view_member(&v, rep.addrs[i].member);

		assert_non_null(m);
		if (v.leader_key == PATRONI_LEADER_HELD)
			assert_string_not_equal(rep.addrs[i].member, v.leader);
		assert_false(is_primary_role(m->rec.role));
		assert_string_equal(m->rec.state, "running");
	}
	/* any = the running replicas, plus the leader when it runs */
	assert_true(any.count == rep.count || any.count == rep.count + 1);
	patroni_view_free(&v);
	consul_kv_free(e, count);
	r->answers++;
}

static void
replay_file(const char *file, struct replay *r)
{
	size_t len;
	char path[512], prefix[600];
	char *text;
	struct json_object *root, *answers, *ns, *scope, *event;
	size_t i, n;

	snprintf(path, sizeof(path), "recorded/%s", file);
	text = test_data_read(path, &len);
	root = json_tokener_parse(text);
	assert_non_null(root);
	assert_true(json_object_object_get_ex(root, "answers", &answers));
	assert_true(json_object_object_get_ex(root, "namespace", &ns));
	assert_true(json_object_object_get_ex(root, "scope", &scope));
	assert_true(json_object_object_get_ex(root, "event", &event));
	snprintf(prefix, sizeof(prefix), "%s/%s/", json_object_get_string(ns),
		 json_object_get_string(scope));
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", file);
	n = json_object_array_length(answers);
	for (i = 0; i < n; i++) {
		struct json_object *a = json_object_array_get_idx(answers, i), *body;
		const char *s;

		assert_true(json_object_object_get_ex(a, "body", &body));
		s = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
		check_answer(r, s, strlen(s), prefix);
	}
	json_object_put(root);
	free(text);
}

static void
test_recorded_sequences(void **state)
{
	const char *dir = getenv("TEST_DATA_DIR");
	char path[512];
	DIR *d;
	struct dirent *de;
	struct replay r;
	int files = 0, stale = 0;

	snprintf(path, sizeof(path), "%s/recorded", dir && dir[0] ? dir : "tests/unit/data");
	d = opendir(path);
	if (d == NULL)
		fail_msg("no recorded answers in %s", path);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
			continue;
		replay_file(de->d_name, &r);
		print_message("%s: %d answers, leader %s -> %s, %d without leader, "
			      "%d with the leader's record still saying replica\n",
			      r.name, r.answers, r.first_leader, r.last_leader,
			      r.no_leader_answers, r.stale_leader_records);
		assert_true(r.answers > 2);
		if (strstr(r.name, "switchover") || strstr(r.name, "failover")) {
			/* the event happened, and it ended with a leader in place */
			assert_true(r.leader_changes >= 1);
			assert_int_equal(r.last_state, PATRONI_TARGET_FOLLOWING);
			stale += r.stale_leader_records;
		}
		files++;
	}
	closedir(d);
	/* Patroni 3 and 4, switchover and failover at least */
	assert_true(files >= 4);
	/* the recordings hold the window where role alone would mislead */
	assert_true(stale > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recorded_sequences),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
