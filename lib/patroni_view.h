/*
 * patroni_view - one Patroni scope as a single Consul answer shows it:
 * the leader key with its session, every member record, and the
 * failover, sync, failsafe and config keys, all at one X-Consul-Index.
 * Pure: built from parsed KV entries, no I/O.
 */
#ifndef PGBC_PATRONI_VIEW_H
#define PGBC_PATRONI_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consul_kv.h"
#include "patroni_member.h"

#define PATRONI_NAME_MAX 128	/* scope and member names */
#define PATRONI_VIEW_ERR_MAX 256

enum patroni_leader_key {
	PATRONI_LEADER_NONE,		/* missing, empty, or no session holds it */
	PATRONI_LEADER_HELD,		/* a member name held by a session */
	PATRONI_LEADER_INVALID,		/* held, but not a name we accept */
};

struct patroni_view_member {
	char name[PATRONI_NAME_MAX];
	struct patroni_member rec;
};

/* a member record that was left out, and why */
struct patroni_view_refusal {
	char name[PATRONI_NAME_MAX];
	char why[PATRONI_VIEW_ERR_MAX];
};

struct patroni_view {
	enum patroni_leader_key leader_key;
	char leader[PATRONI_NAME_MAX];	/* "" unless leader_key is HELD */
	struct patroni_view_member *members;	/* valid records, sorted by name */
	int member_count;
	struct patroni_view_refusal *refusals;	/* records that failed to parse */
	int refused_count;
	char refused[PATRONI_VIEW_ERR_MAX];	/* the first of them, and why */
	/* the first accepted record whose tags were left out, and why; "" none */
	char tags_refused[PATRONI_VIEW_ERR_MAX];
	/* a switchover asked for now (the failover key, not a scheduled one) */
	bool switchover;
	char switchover_from[PATRONI_NAME_MAX];	/* "" when not named */
	char switchover_to[PATRONI_NAME_MAX];	/* "" when not named */
	/* failsafe_mode on in config and the failsafe key lists members */
	bool failsafe;
	/* config has a standby_cluster section: the leader stays in recovery */
	bool standby_cluster;
	char sync_standby[PATRONI_NAME_MAX];	/* the sync key's, "" none */
};

/* a name Patroni may use for a scope or member and we may put in a URL */
bool patroni_name_valid(const char *name);

/*
 * Build the view from the entries of GET <prefix>?recurse, where prefix is
 * "<namespace>/<scope>/".  Entries outside the prefix are ignored; a
 * member record that does not parse is left out and counted in refused.
 * False (err filled) only when out of memory; *v then holds nothing.
 */
bool patroni_view_build(const struct consul_kv *entries, int count,
			const char *prefix, struct patroni_view *v,
			char *err, size_t errlen);

void patroni_view_free(struct patroni_view *v);

/* the member record named name, or NULL */
const struct patroni_view_member *patroni_view_member(const struct patroni_view *v,
						      const char *name);

/* why the record of member name was left out, or NULL if it was not */
const char *patroni_view_refusal(const struct patroni_view *v, const char *name);

#endif
