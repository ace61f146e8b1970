/*
 * scope_query - the one blocking query that follows a Patroni scope: GET
 * <namespace>/<scope>/?recurse, first without an index, then blocking on
 * the X-Consul-Index it returned, so every answer is the whole scope at
 * one index.  Errors back off with jitter; the last answer is kept.
 * Paced (scope_query_pace): between two reads of the scope, the one
 * query blocks on the leader key alone.
 */
#ifndef CONSUL_REDIRECT_SCOPE_QUERY_H
#define CONSUL_REDIRECT_SCOPE_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"
#include "consul_kv.h"
#include "consul_request.h"

struct curl_loop;
struct event;
struct event_base;

#define SCOPE_QUERY_ERR_MAX 256

/* what the one request in flight asks */
enum scope_query_mode {
	SCOPE_QUERY_SCOPE,		/* <prefix>?recurse at the scope's index */
	SCOPE_QUERY_LEADER,		/* paced: <prefix>leader at its ModifyIndex */
};

enum scope_query_state {
	SCOPE_QUERY_STOPPED,		/* nothing bound needs it */
	SCOPE_QUERY_READING,		/* a request is in flight */
	SCOPE_QUERY_WAITING,		/* paced or backing off before the next */
};

/*
 * every good answer: the scope's entries (count may be 0: no keys yet);
 * recovered is true for the first answer after failures
 */
typedef void (*scope_query_answer_fn)(void *arg, const struct consul_kv *entries,
				      int count, uint64_t index, bool recovered);
/*
 * a failed request; first is true for the first of a run of failures;
 * returns true when clients wait on the scope's next answer (queries
 * held), and the retries then come at least every
 * SCOPE_QUERY_HELD_RETRY_USEC
 */
typedef bool (*scope_query_error_fn)(void *arg, const char *url, const char *err,
				     bool first);

/* the longest pause between retries while queries are held (unless Retry-After) */
#define SCOPE_QUERY_HELD_RETRY_USEC UINT64_C(2000000)

struct scope_query {
	enum scope_query_state state;
	enum scope_query_mode mode;
	struct curl_loop *loop;
	const struct consul_settings *consul;	/* the owner's, kept current */
	const char *scope;
	scope_query_answer_fn on_answer;
	scope_query_error_fn on_error;
	void *arg;
	struct consul_request req;
	struct event *timer;
	uint64_t index;			/* 0: the next read does not block */
	uint64_t leader_index;		/* LEADER: the leader key's ModifyIndex */
	uint64_t pace_usec;		/* asked by this answer's callback; 0 none */
	struct backoff backoff;
	struct rate_limit rate;		/* answers that brought nothing new */
	unsigned int failures;		/* in a row; 0 while Consul answers */
	char error[SCOPE_QUERY_ERR_MAX];	/* the last failure, "" none */
	bool conn_limited;		/* that failure was the agent's connection limit */
	uint64_t answers;		/* good answers since start, both modes */
};

bool scope_query_init(struct scope_query *q, struct event_base *base,
		      struct curl_loop *loop, const struct consul_settings *consul,
		      const char *scope, scope_query_answer_fn on_answer,
		      scope_query_error_fn on_error, void *arg);
void scope_query_cleanup(struct scope_query *q);

/* start reading (a no-op when running), or stop and forget the index */
void scope_query_run(struct scope_query *q, bool run);

/* settings changed: drop what is in flight and read afresh */
void scope_query_restart(struct scope_query *q);

bool scope_query_failing(const struct scope_query *q);

/*
 * From the answer callback: nothing the owner uses but the leader key
 * needs every write.  When this answer was woken by a write (a
 * member-record rewrite, say), the next request blocks on the leader key
 * alone (leader_index: its ModifyIndex in this answer) for up to usec;
 * when the key changes, goes, or usec runs out, the scope is read again
 * at its index, which answers at once if anything under it changed.  So
 * churn costs two answers per usec instead of one per write, and a
 * leader change one more round trip.
 */
void scope_query_pace(struct scope_query *q, uint64_t leader_index, uint64_t usec);

#endif
