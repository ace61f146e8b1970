/*
 * patroni_view.c - turns the entries of one recursive read of a Patroni
 * scope into the facts the targets are chosen from.  The keys Patroni
 * writes under <namespace>/<scope>/: leader, members/<name>, failover,
 * sync, failsafe, config (and others we do not need).
 */
#include "patroni_view.h"
#include "errbuf.h"
#include "json_strict.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define PATRONI_KEY_JSON_MAX 65536	/* failover, sync, failsafe, config */

bool
patroni_name_valid(const char *name)
{
	size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "abcdefghijklmnopqrstuvwxyz0123456789._-");

	if (n == 0 || name[n] != '\0' || n >= PATRONI_NAME_MAX)
		return false;
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* the value of a small JSON key as an object, or NULL */
static struct json_object *
view_json(const struct consul_kv *e)
{
	struct json_object *obj;
	char err[PATRONI_VIEW_ERR_MAX];

	if (e == NULL || e->value == NULL || e->value_len == 0)
		return NULL;
	obj = json_strict_parse("patroni key", e->value, e->value_len,
				PATRONI_KEY_JSON_MAX, err, sizeof(err));
	if (obj != NULL && !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		obj = NULL;
	}
	return obj;
}

/* a string member that is a valid name, copied; "" otherwise */
static void
view_name_field(struct json_object *obj, const char *field, char *out)
{
	struct json_object *v;

	out[0] = '\0';
	if (obj != NULL && json_object_object_get_ex(obj, field, &v) &&
	    json_object_is_type(v, json_type_string) &&
	    patroni_name_valid(json_object_get_string(v)))
		snprintf(out, PATRONI_NAME_MAX, "%s", json_object_get_string(v));
}

static void
view_leader(struct patroni_view *v, const struct consul_kv *e)
{
	v->leader_key = PATRONI_LEADER_NONE;
	v->leader[0] = '\0';
	if (e == NULL || e->session == NULL || e->value == NULL || e->value_len == 0)
		return;
	if (!patroni_name_valid(e->value)) {
		v->leader_key = PATRONI_LEADER_INVALID;
		return;
	}
	v->leader_key = PATRONI_LEADER_HELD;
	snprintf(v->leader, sizeof(v->leader), "%s", e->value);
}

/*
 * {"leader": from, "member": to}: a switchover asked for now; with
 * "scheduled_at" it is for later, and Patroni leaves "{}" once done.
 */
static void
view_failover(struct patroni_view *v, const struct consul_kv *e)
{
	struct json_object *obj = view_json(e), *at;

	if (obj == NULL)
		return;
	if (!json_object_object_get_ex(obj, "scheduled_at", &at) || at == NULL) {
		view_name_field(obj, "leader", v->switchover_from);
		view_name_field(obj, "member", v->switchover_to);
		v->switchover = v->switchover_from[0] != '\0' ||
				v->switchover_to[0] != '\0';
	}
	json_object_put(obj);
}

/* config: failsafe_mode and standby_cluster */
static bool
view_config(struct patroni_view *v, const struct consul_kv *e)
{
	struct json_object *obj = view_json(e), *f;
	bool failsafe_mode = false;

	if (obj == NULL)
		return false;
	if (json_object_object_get_ex(obj, "failsafe_mode", &f) &&
	    json_object_is_type(f, json_type_boolean))
		failsafe_mode = json_object_get_boolean(f);
	if (json_object_object_get_ex(obj, "standby_cluster", &f) &&
	    json_object_is_type(f, json_type_object))
		v->standby_cluster = true;
	json_object_put(obj);
	return failsafe_mode;
}

/* failsafe: {member: api_url, ...} written by a leader in failsafe_mode */
static bool
view_failsafe_listed(const struct consul_kv *e)
{
	struct json_object *obj = view_json(e);
	bool listed;

	if (obj == NULL)
		return false;
	listed = json_object_object_length(obj) > 0;
	json_object_put(obj);
	return listed;
}

/* sync: {"leader": ..., "sync_standby": "a,b"} (the first name kept) */
static void
view_sync(struct patroni_view *v, const struct consul_kv *e)
{
	struct json_object *obj = view_json(e), *s;
	char first[PATRONI_NAME_MAX];
	size_t n;

	if (obj == NULL)
		return;
	if (json_object_object_get_ex(obj, "sync_standby", &s) &&
	    json_object_is_type(s, json_type_string)) {
		n = strcspn(json_object_get_string(s), ",");
		if (n < sizeof(first)) {
			memcpy(first, json_object_get_string(s), n);
			first[n] = '\0';
			if (patroni_name_valid(first))
				snprintf(v->sync_standby, sizeof(v->sync_standby), "%s", first);
		}
	}
	json_object_put(obj);
}

static int
view_member_cmp(const void *a, const void *b)
{
	const struct patroni_view_member *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static void
view_member(struct patroni_view *v, const struct consul_kv *e, const char *name)
{
	struct patroni_view_member *m = &v->members[v->member_count];
	struct patroni_view_refusal *r = &v->refusals[v->refused_count];
	char err[PATRONI_VIEW_ERR_MAX];

	if (e->value != NULL &&
	    patroni_member_parse(e->value, e->value_len, &m->rec, err, sizeof(err))) {
		snprintf(m->name, sizeof(m->name), "%s", name);
		v->member_count++;
		if (m->rec.tags_why[0] != '\0' && v->tags_refused[0] == '\0')
			errbuf_set(v->tags_refused, sizeof(v->tags_refused),
				   "tags of member \"%s\" left out: %s", name, m->rec.tags_why);
		return;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	errbuf_set(r->why, sizeof(r->why), "%s", e->value != NULL ? err : "empty record");
	if (v->refused_count++ == 0)
		errbuf_set(v->refused, sizeof(v->refused), "member \"%s\" refused: %s",
			   name, r->why);
}

/* "<prefix>members/<name>" with a valid name: the name; otherwise NULL */
static const char *
view_member_name(const char *key, const char *prefix, size_t plen)
{
	if (key == NULL || strncmp(key, prefix, plen) != 0 ||
	    strncmp(key + plen, "members/", 8) != 0 || !patroni_name_valid(key + plen + 8))
		return NULL;
	return key + plen + 8;
}

bool
patroni_view_build(const struct consul_kv *entries, int count,
		   const char *prefix, struct patroni_view *v,
		   char *err, size_t errlen)
{
	size_t plen = strlen(prefix);
	const struct consul_kv *leader = NULL, *failover = NULL, *sync = NULL;
	const struct consul_kv *failsafe = NULL, *config = NULL;
	size_t records = 0;
	int i;

	memset(v, 0, sizeof(*v));
	/* room for the member records only: a member is kilobytes, a scope has other keys */
	for (i = 0; i < count; i++)
		if (view_member_name(entries[i].key, prefix, plen) != NULL)
			records++;
	v->members = calloc(records > 0 ? records : 1, sizeof(*v->members));
	v->refusals = calloc(records > 0 ? records : 1, sizeof(*v->refusals));
	if (v->members == NULL || v->refusals == NULL) {
		patroni_view_free(v);
		errbuf_set(err, errlen, "out of memory");
		return false;
	}
	for (i = 0; i < count; i++) {
		const char *key = entries[i].key;
		const char *rest, *name;

		if (key == NULL || strncmp(key, prefix, plen) != 0)
			continue;
		rest = key + plen;
		if ((name = view_member_name(key, prefix, plen)) != NULL)
			view_member(v, &entries[i], name);
		else if (strcmp(rest, "leader") == 0)
			leader = &entries[i];
		else if (strcmp(rest, "failover") == 0)
			failover = &entries[i];
		else if (strcmp(rest, "sync") == 0)
			sync = &entries[i];
		else if (strcmp(rest, "failsafe") == 0)
			failsafe = &entries[i];
		else if (strcmp(rest, "config") == 0)
			config = &entries[i];
	}
	qsort(v->members, (size_t) v->member_count, sizeof(*v->members), view_member_cmp);
	view_leader(v, leader);
	view_failover(v, failover);
	v->failsafe = view_config(v, config) && view_failsafe_listed(failsafe);
	view_sync(v, sync);
	return true;
}

void
patroni_view_free(struct patroni_view *v)
{
	if (v == NULL)
		return;
	free(v->members);
	free(v->refusals);
	v->members = NULL;
	v->refusals = NULL;
	v->member_count = 0;
	v->refused_count = 0;
}

const char *
patroni_view_refusal(const struct patroni_view *v, const char *name)
{
	int i;

	for (i = 0; i < v->refused_count; i++) {
		if (strcmp(v->refusals[i].name, name) == 0)
			return v->refusals[i].why;
	}
	return NULL;
}

const struct patroni_view_member *
patroni_view_member(const struct patroni_view *v, const char *name)
{
	int i;

	for (i = 0; i < v->member_count; i++) {
		if (strcmp(v->members[i].name, name) == 0)
			return &v->members[i];
	}
	return NULL;
}
