/*
 * watch.c - follows one Patroni scope in Consul with blocking queries on
 * its leader key (role primary) and on the whole scope (roles replica and
 * any), and points the bound database entries at what it finds.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "pgb_plugin.h"

#include "backoff.h"
#include "consul_kv.h"
#include "duration.h"
#include "errbuf.h"
#include "patroni_member.h"

#include "curl_loop.h"
#include "member_pool.h"
#include "plugin_log.h"
#include "watch.h"

#define WATCH_USEC_PER_SEC UINT64_C(1000000)
#define WATCH_READ_TIMEOUT_MS 10000L		/* non-blocking reads */
#define WATCH_ERROR_BASE_USEC UINT64_C(500000)	/* Consul errors: backoff */
#define WATCH_ERROR_CAP_USEC (UINT64_C(30) * WATCH_USEC_PER_SEC)
#define WATCH_MEMBER_BASE_USEC UINT64_C(100000)	/* member record retries */
#define WATCH_MEMBER_CAP_USEC (UINT64_C(10) * WATCH_USEC_PER_SEC)
#define WATCH_FAIL_PERIOD_USEC WATCH_USEC_PER_SEC	/* re-fail waiters */
#define WATCH_RECHECK_USEC UINT64_C(25000)	/* hold after a refused server */
#define WATCH_SWITCH_GRACE_USEC (UINT64_C(2) * WATCH_USEC_PER_SEC)	/* see watch_switch_set */

/*
 * Wake-ups of a blocking query: the leader key only fires on changes
 * (a switchover is two: delete, then create), a 404 may wake early; the
 * scope prefix fires on every member or status write.
 */
#define WATCH_LEADER_BURST 4.0
#define WATCH_LEADER_PER_SEC 1.0
#define WATCH_SCOPE_BURST 2.0
#define WATCH_SCOPE_PER_SEC 0.5

enum watch_state {
	WATCH_STARTING,
	WATCH_FOLLOWING,
	WATCH_NO_LEADER,
};

enum watch_answer {
	WATCH_ANSWER_OK,		/* 200 with a body */
	WATCH_ANSWER_MISSING,		/* 404: no such key */
	WATCH_ANSWER_ERROR,
};

/* one HTTP request in flight */
struct watch_req {
	struct curl_transfer *t;
	struct consul_response resp;
	struct curl_slist *headers;
	char url[CONSUL_URL_MAX + 512];
};

enum watch_kind {
	WATCH_Q_LEADER,			/* <scope>/leader */
	WATCH_Q_FAILOVER,		/* <scope>/failover: switchover announced */
	WATCH_Q_SCOPE,			/* <scope>/ recursive: member records */
};

/* a blocking query kept running while some entry needs it */
struct watch_query {
	struct watch *w;
	enum watch_kind kind;
	bool recurse;			/* the whole scope */
	bool wanted;
	struct watch_req req;
	struct event *timer;		/* the next request, after delay */
	uint64_t index;			/* 0: next read is non-blocking */
	struct backoff backoff;
	struct rate_limit rate;
	bool failing;
	char error[WATCH_ERR_MAX];
};

/* where the entries of one role point */
struct watch_target {
	struct watch *w;
	enum watch_role role;
	enum watch_state state;
	char member[WATCH_HOSTS_MAX];	/* leader name, or the members used */
	char host[WATCH_HOSTS_MAX];	/* "": not known yet */
	int port;
	bool empty;			/* no leader / no running member */
	uint64_t empty_since;		/* monotonic usec */
	struct event *empty_timer;	/* no_leader_timeout, then periodic */
	uint64_t fail_logged;		/* when failed queries were last logged */
	char error[WATCH_ERR_MAX];	/* refused member record(s) */
};

/* a database entry bound to the scope */
struct watch_binding {
	struct watch *w;
	struct watch_binding *next;
	char db[WATCH_NAME_MAX];
	enum watch_role role;
	bool held;			/* our hold is on */
	bool recheck;			/* server check refused: short hold */
	unsigned int refusals;		/* since the last accepted server */
	struct event *recheck_timer;
	uint64_t switches;
	time_t changed_at;
};

struct watch {
	const struct pgb_plugin_api *api;
	struct curl_loop *loop;
	struct watch_options opts;
	char scope[WATCH_NAME_MAX];
	struct watch_query leader_q;
	struct watch_query failover_q;
	struct watch_query scope_q;
	char leader[WATCH_NAME_MAX];	/* value of the leader key, "" none */
	bool member_stale;		/* re-read the leader's record (restart) */
	/* switchover announced in the failover key: hold primary entries */
	bool switching;
	char switch_from[WATCH_NAME_MAX];
	struct event *switch_timer;
	/* GET members/<leader> */
	struct watch_req member_req;
	char member_fetch[WATCH_NAME_MAX];
	struct event *member_timer;
	struct backoff member_backoff;
	char member_logged[WATCH_ERR_MAX];	/* last problem logged */
	struct watch_target targets[WATCH_ROLE_COUNT];
	struct watch_binding *bindings;
};

static const char *const watch_role_names[WATCH_ROLE_COUNT] = {
	"primary", "replica", "any"
};

static const char *const watch_query_keys[] = { "leader", "failover", "" };

static void watch_query_start(struct watch_query *q);
static void watch_failover_answer(struct watch *w, struct watch_query *q,
				  bool missing);
static void watch_switch_timer_cb(evutil_socket_t fd, short what, void *arg);
static void watch_switch_end(struct watch *w, const char *why);
static void watch_member_start(struct watch *w);
static bool watch_role_bound(const struct watch *w, enum watch_role role);

static uint64_t
watch_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * WATCH_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void
watch_timer_arm(struct event *ev, uint64_t usec)
{
	struct timeval tv;

	tv.tv_sec = usec / WATCH_USEC_PER_SEC;
	tv.tv_usec = usec % WATCH_USEC_PER_SEC;
	evtimer_add(ev, &tv);
}

/* copy, cut to fit */
static void
watch_copy(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (n >= len)
		n = len - 1;
	memmove(dst, src, n);
	dst[n] = '\0';
}

bool
watch_role_parse(const char *text, enum watch_role *role)
{
	int i;

	for (i = 0; i < WATCH_ROLE_COUNT; i++) {
		if (strcmp(text, watch_role_names[i]) == 0) {
			*role = i;
			return true;
		}
	}
	return false;
}

const char *
watch_role_name(enum watch_role role)
{
	return watch_role_names[role];
}

bool
watch_name_valid(const char *name)
{
	size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "abcdefghijklmnopqrstuvwxyz0123456789._-");

	if (n == 0 || name[n] != '\0' || n >= WATCH_NAME_MAX)
		return false;
	return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

const char *
watch_scope(const struct watch *w)
{
	return w->scope;
}

/* --- requests --- */

static void
watch_req_release(struct watch_req *req)
{
	if (req->t)
		curl_loop_transfer_cancel(req->t);
	req->t = NULL;
	if (req->headers)
		curl_slist_free_all(req->headers);
	req->headers = NULL;
	consul_response_free(&req->resp);
}

static bool
watch_req_start(struct watch *w, struct watch_req *req, long timeout_ms,
		curl_loop_done_fn done, void *arg, char *err, size_t errlen)
{
	struct curl_transfer *t;

	watch_req_release(req);
	t = curl_loop_transfer_new(w->loop, done, arg);
	if (!t) {
		errbuf_set(err, errlen, "out of memory");
		return false;
	}
	if (!consul_easy_setup(curl_loop_transfer_easy(t), &w->opts.consul,
			       req->url, timeout_ms, &req->resp,
			       &req->headers, err, errlen)) {
		curl_loop_transfer_cancel(t);
		watch_req_release(req);
		return false;
	}
	if (!curl_loop_transfer_start(t, err, errlen)) {
		watch_req_release(req);
		return false;
	}
	req->t = t;
	return true;
}

/* a short, printable part of an error body (no token is ever in it) */
static void
watch_body_excerpt(const struct consul_response *resp, char *out, size_t len)
{
	char buf[81];
	size_t n = 0;

	if (resp->body)
		n = resp->len < sizeof(buf) - 1 ? resp->len : sizeof(buf) - 1;
	memcpy(buf, resp->body ? resp->body : "", n);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	errbuf_printable(buf, out, len);
}

/* sort a finished request into ok / missing / error (err filled) */
static enum watch_answer
watch_answer(struct watch_req *req, CURL *easy, CURLcode rc,
	     const char *errmsg, char *err, size_t errlen)
{
	struct consul_response *resp = &req->resp;
	char body[96];

	consul_response_finish(easy, resp);
	if (resp->too_large) {
		errbuf_set(err, errlen, "answer larger than %d bytes refused",
			   CONSUL_BODY_MAX);
		return WATCH_ANSWER_ERROR;
	}
	if (resp->no_memory) {
		errbuf_set(err, errlen, "out of memory reading the answer");
		return WATCH_ANSWER_ERROR;
	}
	if (rc != CURLE_OK) {
		errbuf_set(err, errlen, "%s", errmsg);
		return WATCH_ANSWER_ERROR;
	}
	/* Consul sets X-Consul-Index on a missing key too; a bare 404 is no answer */
	if (resp->status == 404 && resp->has_index)
		return WATCH_ANSWER_MISSING;
	if (resp->status == 404) {
		errbuf_set(err, errlen, "http status 404 without X-Consul-Index (not a consul agent?)");
		return WATCH_ANSWER_ERROR;
	}
	if (resp->status == 200)
		return WATCH_ANSWER_OK;
	watch_body_excerpt(resp, body, sizeof(body));
	if (resp->status == 403)
		errbuf_set(err, errlen, "permission denied (http 403: %s)", body);
	else
		errbuf_set(err, errlen, "http status %ld: %s", resp->status, body);
	return WATCH_ANSWER_ERROR;
}

/* --- holds and addresses of bound entries --- */

static struct watch_target *
watch_target_of(struct watch_binding *b)
{
	return &b->w->targets[b->role];
}

static void
watch_binding_hold_sync(struct watch_binding *b)
{
	const struct pgb_plugin_api *api = b->w->api;
	bool want = watch_target_of(b)->empty || b->recheck ||
		    (b->role == WATCH_ROLE_PRIMARY && b->w->switching);

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

static void
watch_binding_apply(struct watch_binding *b)
{
	struct watch_target *t = watch_target_of(b);
	const struct pgb_plugin_api *api = b->w->api;
	int rc;

	if (t->host[0] != '\0') {
		rc = api->db_set_address(b->db, t->host, t->port);
		if (rc == 1) {
			b->switches++;
			b->changed_at = time(NULL);
			plugin_log(api, PGB_LOG_INFO,
				 "scope \"%s\": database \"%s\" now points at %s port %d (%s %s)",
				 b->w->scope, b->db, t->host, t->port,
				 b->role == WATCH_ROLE_PRIMARY ? "leader" : "members",
				 t->member);
		} else if (rc < 0) {
			plugin_log(api, PGB_LOG_WARNING,
				 "scope \"%s\": cannot point database \"%s\" at %s port %d",
				 b->w->scope, b->db, t->host, t->port);
		}
	}
	watch_binding_hold_sync(b);
}

static void
watch_target_apply(struct watch_target *t)
{
	struct watch_binding *b;

	for (b = t->w->bindings; b; b = b->next)
		if (b->role == t->role)
			watch_binding_apply(b);
}

static void
watch_empty_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch_target *t = arg;
	struct watch *w = t->w;
	struct watch_binding *b;
	char msg[512];
	uint64_t now = watch_now_usec();
	uint64_t secs = (now - t->empty_since + WATCH_USEC_PER_SEC / 2) / WATCH_USEC_PER_SEC;
	int n;

	if (t->role == WATCH_ROLE_PRIMARY)
		errbuf_set(msg, sizeof(msg),
			 "no leader for Patroni scope \"%s\" since %" PRIu64
			 "s (consul_redirect no_leader_timeout)", w->scope, secs);
	else
		errbuf_set(msg, sizeof(msg),
			 "no running %s member for Patroni scope \"%s\" since %" PRIu64
			 "s (consul_redirect no_leader_timeout)",
			 t->role == WATCH_ROLE_REPLICA ? "replica" : "", w->scope,
			 secs);
	for (b = w->bindings; b; b = b->next) {
		if (b->role != t->role)
			continue;
		n = w->api->db_fail_waiting(b->db, msg);
		/* the first time per episode, then at most every 30 s */
		if (n > 0 && (t->fail_logged < t->empty_since ||
			      now - t->fail_logged >= 30 * WATCH_USEC_PER_SEC)) {
			t->fail_logged = now;
			plugin_log(w->api, PGB_LOG_WARNING,
				    "scope \"%s\": failed %d waiting queries on database \"%s\": no %s for %" PRIu64 "s",
				    w->scope, n, b->db,
				    t->role == WATCH_ROLE_PRIMARY ? "leader" : "running member",
				    secs);
		}
	}
	watch_timer_arm(t->empty_timer, WATCH_FAIL_PERIOD_USEC);
}

static void
watch_empty_timer_arm(struct watch_target *t)
{
	uint64_t limit = t->w->opts.no_leader_timeout_usec;
	uint64_t since = watch_now_usec() - t->empty_since;

	watch_timer_arm(t->empty_timer, since >= limit ? 0 : limit - since);
}

/* no leader / no running member: hold the entries, fail waiters later */
static void
watch_target_set_empty(struct watch_target *t, bool empty)
{
	if (empty == t->empty)
		return;
	t->empty = empty;
	if (empty) {
		t->state = WATCH_NO_LEADER;
		t->empty_since = watch_now_usec();
		watch_empty_timer_arm(t);
	} else {
		evtimer_del(t->empty_timer);
	}
	watch_target_apply(t);
}

static void
watch_target_reset(struct watch_target *t)
{
	evtimer_del(t->empty_timer);
	t->empty = false;
	t->state = WATCH_STARTING;
	t->member[0] = '\0';
	t->host[0] = '\0';
	t->port = 0;
	t->error[0] = '\0';
}

/* --- blocking queries --- */

static void
watch_query_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	watch_query_start(arg);
}

/* the next blocking request, no sooner than the token bucket allows */
static void
watch_query_next(struct watch_query *q)
{
	watch_timer_arm(q->timer, rate_limit_delay(&q->rate, watch_now_usec()));
}

static void
watch_query_failed(struct watch_query *q, const char *err)
{
	struct watch *w = q->w;
	uint64_t delay = backoff_next(&q->backoff);
	const struct watch_target *t = &w->targets[WATCH_ROLE_PRIMARY];
	char keep[WATCH_HOSTS_MAX + 32];

	watch_copy(q->error, sizeof(q->error), err);
	/* a restarted agent counts from 1 again: never block on a stale index */
	q->index = 0;
	/* once per change of state, not once per retry */
	if (!q->failing) {
		q->failing = true;
		/* the member whose address is in use (w->leader is "" after a restart) */
		if (q->kind == WATCH_Q_LEADER && t->empty)
			snprintf(keep, sizeof(keep), "no leader (queries held)");
		else if (q->kind == WATCH_Q_LEADER && t->member[0] != '\0')
			snprintf(keep, sizeof(keep), "leader \"%s\"", t->member);
		else if (q->kind == WATCH_Q_LEADER)
			snprintf(keep, sizeof(keep), "the entry's address (no leader known yet)");
		plugin_log(w->api, PGB_LOG_WARNING,
			   "scope \"%s\": consul unreachable: %s: %s; keeping %s, retrying with backoff",
			   w->scope, q->req.url, err,
			   q->kind == WATCH_Q_LEADER ? keep :
			   q->kind == WATCH_Q_SCOPE ? "the last member list" :
			   "no switchover hint");
	}
	watch_timer_arm(q->timer, delay);
}

static void
watch_query_ok(struct watch_query *q)
{
	if (q->failing)
		plugin_log(q->w->api, PGB_LOG_INFO,
			       "scope \"%s\": consul answers again: %s",
			       q->w->scope, q->req.url);
	q->failing = false;
	q->error[0] = '\0';
	backoff_reset(&q->backoff);
}

static void
watch_query_stop(struct watch_query *q)
{
	watch_req_release(&q->req);
	evtimer_del(q->timer);
	q->wanted = false;
	q->index = 0;
	q->failing = false;
	q->error[0] = '\0';
	backoff_reset(&q->backoff);
}

/* --- leader --- */

static void
watch_member_cancel(struct watch *w)
{
	watch_req_release(&w->member_req);
	evtimer_del(w->member_timer);
	w->member_fetch[0] = '\0';
	w->member_logged[0] = '\0';
	backoff_reset(&w->member_backoff);
}

static void
watch_leader_none(struct watch *w)
{
	struct watch_target *t = &w->targets[WATCH_ROLE_PRIMARY];

	watch_member_cancel(w);
	if (w->leader[0] != '\0' || t->state != WATCH_NO_LEADER)
		plugin_log(w->api, PGB_LOG_WARNING,
			    "scope \"%s\": no leader%s%s%s; holding queries (no_leader_timeout applies)",
			    w->scope, w->leader[0] ? " (was \"" : "", w->leader,
			    w->leader[0] ? "\")" : "");
	w->leader[0] = '\0';
	t->state = WATCH_NO_LEADER;
	watch_target_set_empty(t, true);
}

static void
watch_leader_set(struct watch *w, const char *name)
{
	struct watch_target *t = &w->targets[WATCH_ROLE_PRIMARY];

	if (strcmp(w->leader, name) == 0 && t->state == WATCH_FOLLOWING)
		return;
	watch_copy(w->leader, sizeof(w->leader), name);
	if (t->host[0] != '\0' && strcmp(t->member, name) == 0 &&
	    !w->member_stale) {
		/* same member again (delete + re-create): nothing to move */
		watch_member_cancel(w);
		if (t->state != WATCH_FOLLOWING)
			plugin_log(w->api, PGB_LOG_INFO,
				    "scope \"%s\": leader is \"%s\" at %s port %d",
				    w->scope, name, t->host, t->port);
		t->state = WATCH_FOLLOWING;
		t->error[0] = '\0';
		watch_target_set_empty(t, false);
		return;
	}
	if (strcmp(w->member_fetch, name) == 0)
		return;			/* already being read */
	watch_member_cancel(w);
	watch_copy(w->member_fetch, sizeof(w->member_fetch), name);
	plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": new leader \"%s\"%s%s%s",
		    w->scope, name, t->member[0] ? " (was \"" : "",
		    t->member, t->member[0] ? "\")" : "");
	watch_member_start(w);
}

/* the leader key's answer: a member name held by a session, or none */
static void
watch_leader_answer(struct watch *w, struct watch_query *q)
{
	struct consul_kv *entries = NULL;
	int count = 0;
	char err[WATCH_ERR_MAX];
	char name[WATCH_ERR_MAX];

	if (!consul_kv_parse(q->req.resp.body, q->req.resp.len, &entries,
			     &count, err, sizeof(err))) {
		watch_query_failed(q, err);
		return;
	}
	if (count < 1 || !entries[0].session || !entries[0].value ||
	    entries[0].value_len == 0) {
		consul_kv_free(entries, count);
		watch_query_ok(q);
		watch_leader_none(w);
		watch_query_next(q);
		return;
	}
	if (!watch_name_valid(entries[0].value)) {
		errbuf_printable(entries[0].value, name, sizeof(name));
		errbuf_set(err, sizeof(err), "invalid leader name \"%s\"", name);
		consul_kv_free(entries, count);
		watch_query_failed(q, err);
		return;
	}
	watch_copy(name, sizeof(name), entries[0].value);
	consul_kv_free(entries, count);
	watch_query_ok(q);
	watch_leader_set(w, name);
	watch_query_next(q);
}

/* --- switchover hint --- */

/*
 * Patroni writes the failover key when a switchover is asked for and
 * only then shuts the old primary down; the leader key changes after
 * that.  Holding new queries from the announcement on lets running
 * transactions end and keeps new ones off a primary going down.
 */
static void
watch_switch_hold(struct watch *w)
{
	watch_target_apply(&w->targets[WATCH_ROLE_PRIMARY]);
}

static void
watch_switch_end(struct watch *w, const char *why)
{
	if (!w->switching)
		return;
	w->switching = false;
	evtimer_del(w->switch_timer);
	plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": switchover from \"%s\" over (%s)",
		   w->scope, w->switch_from, why);
	watch_switch_hold(w);
}

static void
watch_switch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	watch_switch_end(arg, "no leader change seen, releasing held queries");
}

/* "leader"/"member" of a failover record; false for none or a scheduled one */
static bool
watch_failover_parse(const char *value, char *from, char *to)
{
	struct json_object *obj = json_tokener_parse(value), *v;
	bool ok = false;

	from[0] = to[0] = '\0';
	if (!obj || !json_object_is_type(obj, json_type_object))
		goto out;
	if (json_object_object_get_ex(obj, "scheduled_at", &v) && v)
		goto out;
	if (json_object_object_get_ex(obj, "leader", &v) &&
	    json_object_is_type(v, json_type_string))
		watch_copy(from, WATCH_NAME_MAX, json_object_get_string(v));
	if (json_object_object_get_ex(obj, "member", &v) &&
	    json_object_is_type(v, json_type_string))
		watch_copy(to, WATCH_NAME_MAX, json_object_get_string(v));
	ok = from[0] != '\0' || to[0] != '\0';
out:
	json_object_put(obj);
	return ok;
}

static void
watch_failover_answer(struct watch *w, struct watch_query *q, bool missing)
{
	struct watch_target *t = &w->targets[WATCH_ROLE_PRIMARY];
	struct consul_kv *entries = NULL;
	int count = 0;
	char err[WATCH_ERR_MAX], from[WATCH_NAME_MAX], to[WATCH_NAME_MAX];
	bool announced = false;

	if (!missing && !consul_kv_parse(q->req.resp.body, q->req.resp.len,
					 &entries, &count, err, sizeof(err))) {
		watch_query_failed(q, err);
		return;
	}
	watch_query_ok(q);
	if (count > 0 && entries[0].value)
		announced = watch_failover_parse(entries[0].value, from, to);
	consul_kv_free(entries, count);
	watch_query_next(q);
	if (announced && t->state == WATCH_FOLLOWING &&
	    (from[0] == '\0' || strcmp(from, t->member) == 0) &&
	    strcmp(to, t->member) != 0) {
		if (w->switching)
			return;
		w->switching = true;
		watch_copy(w->switch_from, sizeof(w->switch_from), t->member);
		plugin_log(w->api, PGB_LOG_INFO,
			   "scope \"%s\": switchover from \"%s\"%s%s%s announced; holding new queries",
			   w->scope, t->member, to[0] ? " to \"" : "", to,
			   to[0] ? "\"" : "");
		watch_timer_arm(w->switch_timer, w->opts.no_leader_timeout_usec);
		watch_switch_hold(w);
		return;
	}
	if (!announced && w->switching) {
		/* the leader key answer may still be on its way */
		if (strcmp(w->leader, w->switch_from) == 0)
			watch_timer_arm(w->switch_timer, WATCH_SWITCH_GRACE_USEC);
		else
			watch_switch_end(w, "failover key cleared");
	}
}

/* --- scope members (roles replica and any) --- */

/* point the entries of one role at the members picked for it */
static void
watch_pool_apply(struct watch *w, enum watch_role role,
		 struct member_pool_entry *p, int n)
{
	struct watch_target *t = &w->targets[role];
	struct member_pool_choice c;

	if (!member_pool_choose(p, n, &c)) {
		if (!t->empty)
			plugin_log(w->api, PGB_LOG_WARNING,
				   "scope \"%s\": no running member for role %s; holding queries",
				   w->scope, watch_role_name(role));
		t->state = WATCH_NO_LEADER;
		watch_target_set_empty(t, true);
		return;
	}
	watch_copy(t->member, sizeof(t->member), c.names);
	t->state = WATCH_FOLLOWING;
	if (strcmp(c.hosts, t->host) == 0 && c.port == t->port) {
		watch_target_set_empty(t, false);
		return;
	}
	/* logged when the choice changes, not on every answer */
	if (c.skipped[0] != '\0')
		plugin_log(w->api, PGB_LOG_WARNING,
			   "scope \"%s\": role %s: skipping %s: a database entry has one port, using members on port %d",
			   w->scope, watch_role_name(role), c.skipped, c.port);
	plugin_log(w->api, PGB_LOG_INFO,
		   "scope \"%s\": role %s members: %s (%s port %d)",
		   w->scope, watch_role_name(role), c.names, c.hosts, c.port);
	watch_copy(t->host, sizeof(t->host), c.hosts);
	t->port = c.port;
	if (t->empty)
		watch_target_set_empty(t, false);	/* applies */
	else
		watch_target_apply(t);
}

/* every members/<name> record of a recursive answer, refused ones noted */
static void
watch_scope_answer_entries(struct watch *w, struct consul_kv *e, int count)
{
	struct patroni_member *m = calloc(count > 0 ? count : 1, sizeof(*m));
	struct member_pool_entry *replica = calloc(count > 0 ? count : 1, sizeof(*replica));
	struct member_pool_entry *any = calloc(count > 0 ? count : 1, sizeof(*any));
	char prefix[600], err[WATCH_ERR_MAX], refused[WATCH_ERR_MAX] = "";
	int i, n_replica = 0, n_any = 0, n_refused = 0;
	size_t plen;

	if (!m || !replica || !any) {
		watch_query_failed(&w->scope_q, "out of memory");
		goto out;
	}
	snprintf(prefix, sizeof(prefix), "%s/%s/members/",
		 w->opts.consul.namespace_, w->scope);
	plen = strlen(prefix);
	for (i = 0; i < count; i++) {
		const char *name = e[i].key + plen;

		if (strncmp(e[i].key, prefix, plen) != 0 || !watch_name_valid(name))
			continue;
		if (!e[i].value || !patroni_member_parse(e[i].value, e[i].value_len,
							 &m[i], err, sizeof(err))) {
			if (n_refused++ == 0)
				errbuf_set(refused, sizeof(refused),
					 "member \"%s\" refused: %s", name,
					 e[i].value ? err : "empty record");
			continue;
		}
		if (!patroni_member_is_running(&m[i]))
			continue;
		any[n_any++] = (struct member_pool_entry){ name, m[i].host, m[i].port };
		if (strcmp(m[i].role, "replica") == 0)
			replica[n_replica++] = (struct member_pool_entry){ name, m[i].host, m[i].port };
	}
	if (strcmp(refused, w->targets[WATCH_ROLE_REPLICA].error) != 0 &&
	    refused[0] != '\0')
		plugin_log(w->api, PGB_LOG_WARNING, "scope \"%s\": %s (%d refused)",
			    w->scope, refused, n_refused);
	watch_copy(w->targets[WATCH_ROLE_REPLICA].error, WATCH_ERR_MAX, refused);
	watch_copy(w->targets[WATCH_ROLE_ANY].error, WATCH_ERR_MAX, refused);
	if (watch_role_bound(w, WATCH_ROLE_REPLICA))
		watch_pool_apply(w, WATCH_ROLE_REPLICA, replica, n_replica);
	if (watch_role_bound(w, WATCH_ROLE_ANY))
		watch_pool_apply(w, WATCH_ROLE_ANY, any, n_any);
	watch_query_next(&w->scope_q);
out:
	free(m);
	free(replica);
	free(any);
}

static void
watch_scope_answer(struct watch *w, struct watch_query *q, bool missing)
{
	struct consul_kv *entries = NULL;
	int count = 0;
	char err[WATCH_ERR_MAX];

	if (!missing && !consul_kv_parse(q->req.resp.body, q->req.resp.len,
					 &entries, &count, err, sizeof(err))) {
		watch_query_failed(q, err);
		return;
	}
	watch_query_ok(q);
	watch_scope_answer_entries(w, entries, count);
	consul_kv_free(entries, count);
}

/* --- one callback for the blocking queries --- */

static void
watch_query_done(struct curl_transfer *t, CURL *easy, CURLcode rc,
		 const char *errmsg, void *arg)
{
	struct watch_query *q = arg;
	struct watch *w = q->w;
	char err[WATCH_ERR_MAX];
	enum watch_answer a;

	q->req.t = NULL;
	a = watch_answer(&q->req, easy, rc, errmsg, err, sizeof(err));
	if (a == WATCH_ANSWER_ERROR) {
		watch_query_failed(q, err);
	} else {
		q->index = consul_index_next(q->index, q->req.resp.has_index ?
					     q->req.resp.index : 0);
		if (q->kind == WATCH_Q_SCOPE) {
			watch_scope_answer(w, q, a == WATCH_ANSWER_MISSING);
		} else if (q->kind == WATCH_Q_FAILOVER) {
			watch_failover_answer(w, q, a == WATCH_ANSWER_MISSING);
		} else if (a == WATCH_ANSWER_MISSING) {
			watch_query_ok(q);
			watch_leader_none(w);
			watch_query_next(q);
		} else {
			watch_leader_answer(w, q);
		}
	}
	curl_slist_free_all(q->req.headers);
	q->req.headers = NULL;
	consul_response_free(&q->req.resp);
}

static void
watch_query_start(struct watch_query *q)
{
	struct watch *w = q->w;
	char err[WATCH_ERR_MAX];
	long timeout = WATCH_READ_TIMEOUT_MS;

	if (!q->wanted)
		return;
	evtimer_del(q->timer);
	if (q->index > 0)
		timeout = consul_blocking_timeout_ms(w->opts.consul.wait_usec);
	if (!consul_kv_url(&w->opts.consul, w->scope, watch_query_keys[q->kind],
			   q->index, q->recurse, q->req.url, sizeof(q->req.url),
			   err, sizeof(err)) ||
	    !watch_req_start(w, &q->req, timeout, watch_query_done, q, err,
			     sizeof(err)))
		watch_query_failed(q, err);
}

static void
watch_query_want(struct watch_query *q, bool wanted)
{
	if (wanted == q->wanted)
		return;
	if (!wanted) {
		watch_query_stop(q);
		return;
	}
	q->wanted = true;
	q->index = 0;
	watch_query_start(q);
}

/* --- member record of the leader --- */

static void
watch_member_problem(struct watch *w, const char *msg, bool refused)
{
	struct watch_target *t = &w->targets[WATCH_ROLE_PRIMARY];
	uint64_t delay = backoff_next(&w->member_backoff);
	/* another member leads now: the address kept is no leader's any more */
	bool moved = strcmp(w->member_fetch, t->member) != 0;

	watch_copy(t->error, sizeof(t->error), msg);
	if (strcmp(w->member_logged, msg) != 0) {
		watch_copy(w->member_logged, sizeof(w->member_logged), msg);
		plugin_log(w->api, PGB_LOG_WARNING,
			    "scope \"%s\": %s; %s%s, retrying",
			    w->scope, msg,
			    t->host[0] ? "keeping the previous address" :
			    "no address yet",
			    moved ? " and holding queries (no_leader_timeout applies)" :
			    "");
	}
	/*
	 * A refused record is never connected to, an unreadable one not
	 * guessed at: until the new leader's address is known, primary
	 * entries wait as without a leader.
	 */
	if (moved)
		watch_target_set_empty(t, true);
	(void)refused;
	watch_timer_arm(w->member_timer, delay);
}

static void
watch_member_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	watch_member_start(arg);
}

static void
watch_member_apply(struct watch *w, const struct patroni_member *m)
{
	struct watch_target *t = &w->targets[WATCH_ROLE_PRIMARY];

	plugin_log(w->api, PGB_LOG_INFO, "scope \"%s\": leader \"%s\" is at %s port %d",
		    w->scope, w->member_fetch, m->host, m->port);
	if (w->switching && strcmp(w->switch_from, w->member_fetch) != 0)
		watch_switch_end(w, "new leader in place");
	w->member_stale = false;
	watch_copy(t->member, sizeof(t->member), w->member_fetch);
	watch_copy(t->host, sizeof(t->host), m->host);
	t->port = m->port;
	t->state = WATCH_FOLLOWING;
	t->error[0] = '\0';
	w->member_fetch[0] = '\0';
	w->member_logged[0] = '\0';
	backoff_reset(&w->member_backoff);
	if (t->empty)
		watch_target_set_empty(t, false);	/* applies */
	else
		watch_target_apply(t);
}

static void
watch_member_done(struct curl_transfer *tr, CURL *easy, CURLcode rc,
		  const char *errmsg, void *arg)
{
	struct watch *w = arg;
	struct consul_kv *entries = NULL;
	struct patroni_member m;
	char err[WATCH_ERR_MAX], msg[WATCH_ERR_MAX + WATCH_NAME_MAX + 64];
	int count = 0;
	enum watch_answer a;

	w->member_req.t = NULL;
	a = watch_answer(&w->member_req, easy, rc, errmsg, err, sizeof(err));
	if (a == WATCH_ANSWER_ERROR) {
		errbuf_set(msg, sizeof(msg), "cannot read member \"%s\": %s: %s",
			 w->member_fetch, w->member_req.url, err);
		watch_member_problem(w, msg, false);
	} else if (a == WATCH_ANSWER_MISSING) {
		errbuf_set(msg, sizeof(msg), "member record of leader \"%s\" not found",
			 w->member_fetch);
		watch_member_problem(w, msg, false);
	} else if (!consul_kv_parse(w->member_req.resp.body,
				    w->member_req.resp.len, &entries, &count,
				    err, sizeof(err)) || count < 1) {
		errbuf_set(msg, sizeof(msg), "cannot read member \"%s\": %s",
			 w->member_fetch, count < 1 ? "empty answer" : err);
		watch_member_problem(w, msg, false);
	} else if (!entries[0].value ||
		   !patroni_member_parse(entries[0].value, entries[0].value_len,
					 &m, err, sizeof(err))) {
		errbuf_set(msg, sizeof(msg), "member record of leader \"%s\" refused: %s",
			 w->member_fetch, entries[0].value ? err : "empty value");
		watch_member_problem(w, msg, true);
	} else if (!patroni_host_valid(m.host) || m.port < 1 || m.port > 65535) {
		errbuf_set(msg, sizeof(msg), "member record of leader \"%s\" refused: invalid host or port",
			 w->member_fetch);
		watch_member_problem(w, msg, true);
	} else {
		watch_member_apply(w, &m);
	}
	consul_kv_free(entries, count);
	curl_slist_free_all(w->member_req.headers);
	w->member_req.headers = NULL;
	consul_response_free(&w->member_req.resp);
}

static void
watch_member_start(struct watch *w)
{
	char key[WATCH_NAME_MAX + 16], err[WATCH_ERR_MAX];
	char msg[WATCH_ERR_MAX + WATCH_NAME_MAX + 32];

	if (w->member_fetch[0] == '\0')
		return;
	snprintf(key, sizeof(key), "members/%s", w->member_fetch);
	if (!consul_kv_url(&w->opts.consul, w->scope, key, 0, false,
			   w->member_req.url, sizeof(w->member_req.url),
			   err, sizeof(err)) ||
	    !watch_req_start(w, &w->member_req, WATCH_READ_TIMEOUT_MS,
			     watch_member_done, w, err, sizeof(err))) {
		errbuf_set(msg, sizeof(msg), "cannot read member \"%s\": %s",
			 w->member_fetch, err);
		watch_member_problem(w, msg, false);
	}
}

/* --- life cycle --- */

static unsigned int
watch_seed(const char *scope)
{
	unsigned int h = (unsigned int)getpid() ^ (unsigned int)watch_now_usec();

	while (*scope)
		h = h * 31 + (unsigned char)*scope++;
	return h;
}

static bool
watch_query_init(struct watch *w, struct watch_query *q, enum watch_kind kind)
{
	unsigned int seed = watch_seed(w->scope) + kind;

	q->w = w;
	q->kind = kind;
	q->recurse = kind == WATCH_Q_SCOPE;
	q->timer = evtimer_new(w->api->event_base, watch_query_timer_cb, q);
	backoff_init(&q->backoff, WATCH_ERROR_BASE_USEC, WATCH_ERROR_CAP_USEC, seed);
	if (q->recurse)
		rate_limit_init(&q->rate, WATCH_SCOPE_BURST, WATCH_SCOPE_PER_SEC);
	else
		rate_limit_init(&q->rate, WATCH_LEADER_BURST, WATCH_LEADER_PER_SEC);
	return q->timer != NULL;
}

struct watch *
watch_new(const struct pgb_plugin_api *api, struct curl_loop *loop,
	  const char *scope, const struct watch_options *opts)
{
	struct watch *w = calloc(1, sizeof(*w));
	bool ok;
	int i;

	if (!w)
		return NULL;
	w->api = api;
	w->loop = loop;
	w->opts = *opts;
	watch_copy(w->scope, sizeof(w->scope), scope);
	ok = watch_query_init(w, &w->leader_q, WATCH_Q_LEADER) &&
	     watch_query_init(w, &w->failover_q, WATCH_Q_FAILOVER) &&
	     watch_query_init(w, &w->scope_q, WATCH_Q_SCOPE);
	w->member_timer = evtimer_new(api->event_base, watch_member_timer_cb, w);
	w->switch_timer = evtimer_new(api->event_base, watch_switch_timer_cb, w);
	ok = ok && w->member_timer && w->switch_timer;
	backoff_init(&w->member_backoff, WATCH_MEMBER_BASE_USEC,
		     WATCH_MEMBER_CAP_USEC, watch_seed(scope) + 2);
	for (i = 0; i < WATCH_ROLE_COUNT; i++) {
		struct watch_target *t = &w->targets[i];

		t->w = w;
		t->role = i;
		t->state = WATCH_STARTING;
		t->empty_timer = evtimer_new(api->event_base,
					     watch_empty_timer_cb, t);
		ok = ok && t->empty_timer;
	}
	if (!ok) {
		watch_free(w, false);
		return NULL;
	}
	return w;
}

static void
watch_binding_free(struct watch_binding *b, bool release)
{
	if (b->held && release)
		b->w->api->db_hold(b->db, false);
	if (b->recheck_timer)
		event_free(b->recheck_timer);
	free(b);
}

void
watch_free(struct watch *w, bool release)
{
	struct watch_binding *b;
	int i;

	if (!w)
		return;
	while ((b = w->bindings)) {
		w->bindings = b->next;
		watch_binding_free(b, release);
	}
	watch_req_release(&w->leader_q.req);
	watch_req_release(&w->failover_q.req);
	watch_req_release(&w->scope_q.req);
	watch_req_release(&w->member_req);
	if (w->leader_q.timer)
		event_free(w->leader_q.timer);
	if (w->failover_q.timer)
		event_free(w->failover_q.timer);
	if (w->switch_timer)
		event_free(w->switch_timer);
	if (w->scope_q.timer)
		event_free(w->scope_q.timer);
	if (w->member_timer)
		event_free(w->member_timer);
	for (i = 0; i < WATCH_ROLE_COUNT; i++)
		if (w->targets[i].empty_timer)
			event_free(w->targets[i].empty_timer);
	free(w);
}

static bool
watch_role_bound(const struct watch *w, enum watch_role role)
{
	const struct watch_binding *b;

	for (b = w->bindings; b; b = b->next)
		if (b->role == role)
			return true;
	return false;
}

/* start or stop the queries the bound roles need */
static void
watch_queries_sync(struct watch *w)
{
	bool primary = watch_role_bound(w, WATCH_ROLE_PRIMARY);
	bool pool = watch_role_bound(w, WATCH_ROLE_REPLICA) ||
		    watch_role_bound(w, WATCH_ROLE_ANY);

	if (!primary && w->leader_q.wanted) {
		watch_member_cancel(w);
		w->leader[0] = '\0';
		w->switching = false;
		evtimer_del(w->switch_timer);
		watch_target_reset(&w->targets[WATCH_ROLE_PRIMARY]);
	}
	if (!pool && w->scope_q.wanted) {
		watch_target_reset(&w->targets[WATCH_ROLE_REPLICA]);
		watch_target_reset(&w->targets[WATCH_ROLE_ANY]);
	}
	watch_query_want(&w->leader_q, primary);
	watch_query_want(&w->failover_q, primary);
	watch_query_want(&w->scope_q, pool);
}

void
watch_restart(struct watch *w, const struct watch_options *opts)
{
	w->opts = *opts;
	/* names may mean something else now: read the record again */
	watch_member_cancel(w);
	w->leader[0] = '\0';
	w->member_stale = true;
	if (w->leader_q.wanted) {
		watch_query_stop(&w->leader_q);
		watch_query_want(&w->leader_q, true);
		watch_query_stop(&w->failover_q);
		watch_query_want(&w->failover_q, true);
	}
	if (w->scope_q.wanted) {
		watch_query_stop(&w->scope_q);
		watch_query_want(&w->scope_q, true);
	}
}

void
watch_set_options(struct watch *w, const struct watch_options *opts)
{
	int i;

	w->opts = *opts;
	for (i = 0; i < WATCH_ROLE_COUNT; i++)
		if (w->targets[i].empty)
			watch_empty_timer_arm(&w->targets[i]);
}

static struct watch_binding *
watch_find(const struct watch *w, const char *db)
{
	struct watch_binding *b;

	for (b = w->bindings; b; b = b->next)
		if (strcmp(b->db, db) == 0)
			return b;
	return NULL;
}

static void
watch_recheck_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch_binding *b = arg;

	b->recheck = false;
	watch_binding_hold_sync(b);
}

bool
watch_bind(struct watch *w, const char *db, enum watch_role role)
{
	struct watch_binding *b = calloc(1, sizeof(*b));

	if (!b)
		return false;
	b->w = w;
	b->role = role;
	watch_copy(b->db, sizeof(b->db), db);
	b->recheck_timer = evtimer_new(w->api->event_base,
				       watch_recheck_timer_cb, b);
	if (!b->recheck_timer) {
		free(b);
		return false;
	}
	b->next = w->bindings;
	w->bindings = b;
	watch_binding_apply(b);
	watch_queries_sync(w);
	return true;
}

void
watch_unbind(struct watch *w, const char *db)
{
	struct watch_binding **p, *b;

	for (p = &w->bindings; (b = *p); p = &b->next) {
		if (strcmp(b->db, db) == 0) {
			*p = b->next;
			watch_binding_free(b, true);
			break;
		}
	}
	watch_queries_sync(w);
}

bool
watch_has_db(const struct watch *w, const char *db, enum watch_role *role)
{
	const struct watch_binding *b = watch_find(w, db);

	if (b && role)
		*role = b->role;
	return b != NULL;
}

int
watch_db_count(const struct watch *w)
{
	const struct watch_binding *b;
	int n = 0;

	for (b = w->bindings; b; b = b->next)
		n++;
	return n;
}

const char *
watch_db_name(const struct watch *w, int i)
{
	const struct watch_binding *b;

	for (b = w->bindings; b && i > 0; b = b->next)
		i--;
	return b ? b->db : NULL;
}

void
watch_reapply(struct watch *w)
{
	struct watch_binding *b;

	for (b = w->bindings; b; b = b->next) {
		if (b->held)
			w->api->db_hold(b->db, true);
		watch_binding_apply(b);
	}
}

void
watch_server_refused(struct watch *w, const char *db, const char *host,
		     int port, const char *why)
{
	struct watch_binding *b = watch_find(w, db);

	if (!b)
		return;
	if (b->refusals++ == 0)
		plugin_log(w->api, PGB_LOG_WARNING,
			    "scope \"%s\": database \"%s\": server %s port %d refused: %s; retrying every %" PRIu64 " ms",
			    w->scope, db, host ? host : "(unix socket)", port, why,
			    WATCH_RECHECK_USEC / 1000);
	b->recheck = true;
	watch_binding_hold_sync(b);
	if (!evtimer_pending(b->recheck_timer, NULL))
		watch_timer_arm(b->recheck_timer, WATCH_RECHECK_USEC);
}

void
watch_server_accepted(struct watch *w, const char *db)
{
	struct watch_binding *b = watch_find(w, db);

	if (!b || b->refusals == 0)
		return;
	plugin_log(w->api, PGB_LOG_INFO,
		    "scope \"%s\": database \"%s\": server accepted after %u refused",
		    w->scope, db, b->refusals);
	b->refusals = 0;
}

static const char *
watch_state_name(const struct watch *w, const struct watch_target *t)
{
	const struct watch_query *q = t->role == WATCH_ROLE_PRIMARY ?
				      &w->leader_q : &w->scope_q;

	if (q->failing)
		return "consul_unreachable";
	switch (t->state) {
	case WATCH_FOLLOWING:
		return "following";
	case WATCH_NO_LEADER:
		return "no_leader";
	default:
		return "starting";
	}
}

void
watch_rows(const struct watch *w, watch_row_fn fn, void *arg)
{
	const struct watch_binding *b;

	for (b = w->bindings; b; b = b->next) {
		const struct watch_target *t = &w->targets[b->role];
		const struct watch_query *q = b->role == WATCH_ROLE_PRIMARY ?
					      &w->leader_q : &w->scope_q;
		struct watch_row row;

		row.database = b->db;
		row.scope = w->scope;
		row.role = watch_role_name(b->role);
		row.state = watch_state_name(w, t);
		row.member = t->member[0] ? t->member : NULL;
		row.consul_index = q->index;
		row.switches = b->switches;
		row.changed_at = b->changed_at;
		row.last_error = q->failing ? q->error :
				 t->error[0] ? t->error : NULL;
		fn(&row, arg);
	}
}
