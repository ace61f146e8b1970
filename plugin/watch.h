/*
 * watch - one Patroni scope followed through Consul, applied to the
 * database entries bound to it (address swaps, holds, failing waiters
 * without a leader).  The public face of watch*.c for consul_redirect.c.
 */
#ifndef CONSUL_REDIRECT_WATCH_H
#define CONSUL_REDIRECT_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "consul_client.h"
#include "patroni_targets.h"

struct pgb_plugin_api;
struct curl_loop;
struct watch;

/* what a watch needs from [consul]; compared as a whole on RELOAD */
struct watch_options {
	struct consul_settings consul;
	uint64_t no_leader_timeout_usec;
	uint64_t member_pace_usec;	/* see scope_query_pace; 0: off */
};

/* one SHOW CONSUL row, without what PgBouncer itself knows (host, port) */
struct watch_row {
	const char *database;
	const char *scope;
	const char *role;
	const char *state;
	const char *member;		/* NULL: none yet */
	uint64_t consul_index;
	uint64_t switches;
	time_t changed_at;		/* 0: never */
	const char *last_error;		/* NULL: none */
};

typedef void (*watch_row_fn)(const struct watch_row *row, void *arg);

struct agent_log;

struct watch *watch_new(const struct pgb_plugin_api *api,
			struct curl_loop *loop, struct agent_log *agent,
			const char *scope, const struct watch_options *opts);

/* cancels its requests; release: undo the holds it placed */
void watch_free(struct watch *w, bool release);

const char *watch_scope(const struct watch *w);

/* good answers from Consul since the watch started */
uint64_t watch_answers(const struct watch *w);

/* its query waits on the leader key alone now (member_pace) */
bool watch_paced(const struct watch *w);

/* connection settings changed: restart the query from a fresh read */
void watch_restart(struct watch *w, const struct watch_options *opts);

/* only no_leader_timeout changed: nothing is restarted */
void watch_set_options(struct watch *w, const struct watch_options *opts);

/*
 * Bind a database entry (applies what is known at once) or drop it.
 * prefer (NULL: none) narrows a replica or any entry to matching members.
 * moved: a RELOAD took the entry from another scope or role, so its
 * address belongs to another cluster: it is held until this scope
 * answers.
 */
bool watch_bind(struct watch *w, const char *db, enum patroni_entry_role role,
		const struct patroni_prefer *prefer, bool moved);
void watch_unbind(struct watch *w, const char *db);
bool watch_has_db(const struct watch *w, const char *db,
		  enum patroni_entry_role *role);
/* the patroni_prefer db was bound with (count 0: none), NULL if not bound */
const struct patroni_prefer *watch_db_prefer(const struct watch *w, const char *db);
int watch_db_count(const struct watch *w);
const char *watch_db_name(const struct watch *w, int i);

/* re-assert addresses and holds after PgBouncer re-read its file */
void watch_reapply(struct watch *w);

/* the check each new server connection of db must pass */
enum patroni_check watch_check(const struct watch *w, const char *db);

/* a server connection for db at host:port was refused by the check */
void watch_server_refused(struct watch *w, const char *db, const char *host,
			  int port, const char *why);
void watch_server_accepted(struct watch *w, const char *db);

/*
 * The check found db's server at host:port in recovery: true (with the
 * pause in *again_ms) while that server is the leader the entry points
 * at and may still be promoting, so the same connection is checked again
 * rather than closed and logged in anew.
 */
bool watch_server_promoting(struct watch *w, const char *db, const char *host,
			    int port, unsigned int *again_ms);

void watch_rows(const struct watch *w, watch_row_fn fn, void *arg);

#endif
