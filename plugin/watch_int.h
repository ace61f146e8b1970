/*
 * watch_int - the state of one followed scope, shared by the files that
 * make up a watch: watch.c (life cycle, the view), watch_target.c (where
 * each role points, and its state machine), switchover.c (the failover
 * key's hint), binding.c (the database entries), refusal.c (servers the
 * check refused), no_leader.c (failing waiters), watch_show.c (rows).
 */
#ifndef CONSUL_REDIRECT_WATCH_INT_H
#define CONSUL_REDIRECT_WATCH_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/util.h>

#include "backoff.h"
#include "patroni_targets.h"
#include "patroni_view.h"

#include "scope_query.h"
#include "watch.h"

struct event;

#define WATCH_USEC_PER_SEC UINT64_C(1000000)

/* where the entries of one role stand (SHOW CONSUL's state) */
enum watch_target_state {
	WATCH_TARGET_STARTING,		/* no answer from Consul yet */
	WATCH_TARGET_FOLLOWING,		/* pointing at the role's members */
	WATCH_TARGET_FALLBACK,		/* preferring: none matches, all members */
	WATCH_TARGET_SWITCHOVER,	/* primary: switchover announced, holding */
	WATCH_TARGET_STANDBY_LEADER,	/* primary of a standby cluster */
	WATCH_TARGET_FAILSAFE,		/* no leader key, failsafe mode: kept */
	WATCH_TARGET_NO_LEADER,		/* holding: nobody leads */
	WATCH_TARGET_LEADER_UNKNOWN,	/* holding: the leader has no usable record */
	WATCH_TARGET_NO_MEMBER,		/* holding: no member fits the role */
};

enum switchover_state {
	SWITCHOVER_IDLE,
	SWITCHOVER_ANNOUNCED,		/* failover key names the leader: hold */
};

struct switchover {
	enum switchover_state state;
	char from[PATRONI_NAME_MAX];
	char to[PATRONI_NAME_MAX];
	struct event *timer;		/* no_leader_timeout: give up holding */
};

/*
 * a role's target: what Consul said, and what the entries were given.
 * One per role for entries without patroni_prefer (w->targets), one per
 * role and preference for the others (w->preferring).
 */
struct watch_target {
	struct watch *w;
	struct watch_target *next;	/* w->preferring only */
	enum patroni_entry_role role;
	struct patroni_prefer prefer;	/* count 0: none */
	enum watch_target_state state;
	struct patroni_target cur;	/* count 0: nothing known yet */
	char members[1024];		/* "m1,m2" of cur, for SHOW and logs */
	uint64_t held_since;		/* monotonic usec; hold states only */
	struct event *fail_timer;	/* no_leader_timeout, then periodic */
	uint64_t fail_logged;
};

/* pacing of new server connections after the check refused one */
enum refusal_state {
	REFUSAL_NONE,
	REFUSAL_PAUSED,			/* held until the timer, then retried */
	REFUSAL_RETRYING,		/* released; waiting for the next verdict */
};

struct refusal {
	enum refusal_state state;
	unsigned int count;		/* refused since the last accepted one */
	struct backoff backoff;
	struct event *timer;
	uint64_t first_usec;		/* monotonic usec of the first refusal */
	uint64_t poll_since;		/* first "check again" on the new leader, 0 none */
	unsigned int polls;		/* checks answered "again" since */
	uint64_t next_usec;		/* the pause before the last retry */
	uint64_t logged;		/* monotonic usec of the last warning */
	char last[256];			/* the last refusal, for SHOW */
};

/* a database entry bound to the scope */
struct watch_binding {
	struct watch *w;
	struct watch_binding *next;
	char db[PATRONI_NAME_MAX];
	enum patroni_entry_role role;
	struct watch_target *t;		/* the target it follows */
	bool held;			/* our hold is on (mirrors PgBouncer's) */
	bool moved;			/* RELOAD moved it here: hold until known */
	struct refusal refusal;
	uint64_t switches;
	time_t changed_at;
};

struct watch {
	const struct pgb_plugin_api *api;
	struct curl_loop *loop;
	struct agent_log *agent;	/* shared by every watch */
	bool limit_counted;		/* counted in agent->limited */
	struct watch_options opts;
	char scope[PATRONI_NAME_MAX];
	char prefix[600];		/* "<namespace>/<scope>/" */
	struct scope_query q;
	bool have_view;
	struct patroni_view view;	/* the last answer */
	char last_leader[PATRONI_NAME_MAX];	/* last seen holding the key */
	char refused_logged[PATRONI_VIEW_ERR_MAX];
	char tags_logged[PATRONI_VIEW_ERR_MAX];	/* view.tags_refused, once said */
	struct switchover sw;
	/*
	 * per role, for entries without patroni_prefer: made when the first is
	 * bound, then kept (reset while none is) until the watch is freed
	 */
	struct watch_target *targets[PATRONI_ROLE_COUNT];
	struct watch_target *preferring;	/* replica/any with patroni_prefer */
	struct watch_binding *bindings;
};

uint64_t watch_now_usec(void);
void watch_timer_arm(struct event *ev, uint64_t usec);
bool watch_role_bound(const struct watch *w, enum patroni_entry_role role);
bool watch_target_bound(const struct watch *w, const struct watch_target *t);

/* watch_target.c */
bool watch_target_init(struct watch *w, struct watch_target *t,
		       enum patroni_entry_role role);
void watch_target_cleanup(struct watch_target *t);
void watch_target_update(struct watch_target *t, const struct patroni_target *nt);
void watch_target_reset(struct watch_target *t);
bool watch_target_holding(const struct watch_target *t);
const char *watch_target_state_name(enum watch_target_state state);
void watch_target_apply(struct watch_target *t);

/* no_leader.c */
void no_leader_start(struct watch_target *t);
void no_leader_stop(struct watch_target *t);
void no_leader_rearm(struct watch_target *t);
void no_leader_timer_cb(evutil_socket_t fd, short what, void *arg);

/* switchover.c */
bool switchover_init(struct watch *w);
void switchover_cleanup(struct watch *w);
void switchover_update(struct watch *w);
void switchover_end(struct watch *w, const char *why);

/* binding.c */
void binding_apply(struct watch_binding *b);
void binding_hold_sync(struct watch_binding *b);
struct watch_binding *binding_find(const struct watch *w, const char *db);
struct watch_binding *binding_new(struct watch *w, struct watch_target *t,
				  const char *db, bool moved);
void binding_free(struct watch_binding *b, bool release);

/* refusal.c */
bool refusal_init(struct watch_binding *b);
void refusal_cleanup(struct refusal *r);
void refusal_reset(struct refusal *r);
bool refusal_holding(const struct refusal *r);

#endif
