/*
 * patroni_targets - where the database entries of one role should point,
 * given a patroni_view: the leader for primary entries, the running
 * replicas (never the leader) for replica entries, every running member
 * for any entries, narrowed to the members whose tags a preference names
 * when any of them fits.  Pure: no I/O, no clock, no memory but its
 * arguments.
 */
#ifndef PGBC_PATRONI_TARGETS_H
#define PGBC_PATRONI_TARGETS_H

#include <stdbool.h>

#include "patroni_view.h"

#define PATRONI_TARGET_MAX 16		/* addresses of one entry */
#define PATRONI_PREFER_MAX 8		/* key:value pairs of one preference */
#define PATRONI_PREFER_TEXT_MAX 1024	/* longest patroni_prefer value */

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

/* which members a replica or any entry uses (SHOW CONSUL's state says) */
enum patroni_prefer_use {
	PATRONI_PREFER_UNSET,		/* no preference: every fitting member */
	PATRONI_PREFER_MATCHED,		/* the fitting members that match it */
	PATRONI_PREFER_FALLBACK,	/* none matches: every fitting member */
};

/*
 * patroni_prefer = key:value[,key:value...]: a member matches when it has
 * every listed tag with exactly that value (AND).  count 0: none.
 */
struct patroni_prefer {
	int count;
	struct patroni_tag tags[PATRONI_PREFER_MAX];
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
	enum patroni_prefer_use prefer;
	char why[PATRONI_VIEW_ERR_MAX];	/* hold states: what is missing */
};

/*
 * The target of role in view.  last_leader is the member the caller last
 * saw holding the leader key ("" none): in failsafe mode, while the key is
 * gone, primary entries keep it.  prefer (NULL or count 0: none) narrows
 * replica and any targets to the matching members when there is one; it
 * is ignored for primary targets.
 */
void patroni_target_compute(const struct patroni_view *view,
			    enum patroni_entry_role role,
			    const char *last_leader,
			    const struct patroni_prefer *prefer,
			    struct patroni_target *out);

/*
 * Parse "key:value[,key:value...]": keys are letters, digits, '.', '_'
 * and '-'; a value is any printable text without ',' or spaces (a tag's
 * number or boolean is compared as its JSON text: "1", "true"); a key
 * listed twice could never match and is refused.  False with err filled
 * (naming the bad part) on bad text.
 */
bool patroni_prefer_parse(const char *text, struct patroni_prefer *out,
			  char *err, size_t errlen);

/* same pairs in the same order */
bool patroni_prefer_equal(const struct patroni_prefer *a,
			  const struct patroni_prefer *b);

/* "key:value,key:value" as parsed ("" none), for logs */
void patroni_prefer_format(const struct patroni_prefer *p, char *buf, size_t len);

/* m has every tag of p with its value (true when p lists none) */
bool patroni_prefer_matches(const struct patroni_prefer *p,
			    const struct patroni_member *m);

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
