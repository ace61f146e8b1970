/*
 * patroni_targets - where the database entries of one role should point,
 * given a patroni_view: the leader for primary entries, the running
 * replicas (never the leader) for replica entries, every running member
 * for any entries.  Pure: no I/O, no clock, no memory but its arguments.
 */
#ifndef PGBC_PATRONI_TARGETS_H
#define PGBC_PATRONI_TARGETS_H

#include <stdbool.h>

#include "patroni_view.h"

#define PATRONI_TARGET_MAX 16		/* addresses of one entry */

enum patroni_entry_role {
	PATRONI_ROLE_PRIMARY,		/* follows the leader */
	PATRONI_ROLE_REPLICA,		/* running replicas */
	PATRONI_ROLE_ANY,		/* every running member */
	PATRONI_ROLE_COUNT
};

enum patroni_target_state {
	PATRONI_TARGET_FOLLOWING,	/* addrs are where to go */
	PATRONI_TARGET_STANDBY_LEADER,	/* a standby cluster's leader: in recovery */
	PATRONI_TARGET_FAILSAFE,	/* no leader key, failsafe mode: the last leader */
	PATRONI_TARGET_NO_LEADER,	/* hold: nobody holds the leader key */
	PATRONI_TARGET_LEADER_UNKNOWN,	/* hold: the leader has no usable record */
	PATRONI_TARGET_NO_MEMBER,	/* hold: no member fits the role */
	PATRONI_TARGET_STATE_COUNT
};

/* what each new server connection must show before it is used */
enum patroni_check {
	PATRONI_CHECK_NONE,
	PATRONI_CHECK_PRIMARY,		/* pg_is_in_recovery() is false */
	PATRONI_CHECK_RECOVERY,		/* pg_is_in_recovery() is true */
};

struct patroni_address {
	char member[PATRONI_NAME_MAX];
	char host[PATRONI_HOST_MAX];
	int port;
};

struct patroni_target {
	enum patroni_target_state state;
	enum patroni_check check;
	int count;			/* addrs used; 0 in the hold states */
	struct patroni_address addrs[PATRONI_TARGET_MAX];	/* sorted by member */
	int left_out;			/* fitting members past PATRONI_TARGET_MAX */
	char why[PATRONI_VIEW_ERR_MAX];	/* hold states: what is missing */
};

/*
 * The target of role in view.  last_leader is the member the caller last
 * saw holding the leader key ("" none): in failsafe mode, while the key is
 * gone, primary entries keep it.
 */
void patroni_target_compute(const struct patroni_view *view,
			    enum patroni_entry_role role,
			    const char *last_leader, struct patroni_target *out);

/* same state, check and addresses */
bool patroni_target_equal(const struct patroni_target *a,
			  const struct patroni_target *b);

/* true in the states where queries must wait */
bool patroni_target_holds(enum patroni_target_state state);

/* "following", "standby_leader", "failsafe", "no_leader", ... */
const char *patroni_target_state_name(enum patroni_target_state state);

bool patroni_role_parse(const char *text, enum patroni_entry_role *role);
const char *patroni_role_name(enum patroni_entry_role role);

#endif
