/*
 * Patroni member records (the JSON in Consul under <namespace>/<scope>/
 * members/<name>): parsing and strict validation of the conn_url whose
 * host and port end up in PgBouncer's connection strings.
 */
#ifndef PGBC_PATRONI_MEMBER_H
#define PGBC_PATRONI_MEMBER_H

#include <stdbool.h>
#include <stddef.h>

#define PATRONI_HOST_MAX 256
#define PATRONI_MEMBER_MAX_LEN 65536	/* a member record larger than this is refused */
#define PATRONI_DEFAULT_PORT 5432
#define PATRONI_TAGS_MAX 16		/* tags kept of one member */
#define PATRONI_TAG_KEY_MAX 64		/* longest tag name + 1 */
#define PATRONI_TAG_VALUE_MAX 128	/* longest tag value (as text) + 1 */
#define PATRONI_TAGS_WHY_MAX 160

/* one of a member's Patroni tags; numbers and booleans as their JSON text */
struct patroni_tag {
	char key[PATRONI_TAG_KEY_MAX];
	char value[PATRONI_TAG_VALUE_MAX];
};

struct patroni_member {
	char host[PATRONI_HOST_MAX];	/* hostname or IP literal; IPv6 without brackets */
	int port;			/* 1..65535 */
	char state[32];			/* "running", "stopped", ... as written */
	char role[32];			/* "master", "primary", "replica", "standby_leader", "demoted", ... */
	char api_url[256];		/* may be empty */
	char replication_state[32];	/* Patroni 4 replicas: "streaming", ...; "" when absent */
	bool nofailover;		/* tags: never to be promoted */
	bool noloadbalance;		/* tags: no read traffic */
	int tag_count;			/* 0 also when the tags were left out */
	struct patroni_tag tags[PATRONI_TAGS_MAX];
	char tags_why[PATRONI_TAGS_WHY_MAX];	/* why they were left out, "" */
};

/*
 * Parse one member record (json need not be NUL-terminated).  Refuses
 * anything but a JSON object of at most PATRONI_MEMBER_MAX_LEN bytes
 * with a string conn_url that patroni_conn_url_parse accepts.  state and
 * role are copied when present (printable, shorter than their field);
 * api_url is kept only when it is a printable string that fits.  The
 * tags nofailover (true, or failover_priority 0) and noloadbalance (true)
 * and replication_state are read when present; odd values count as absent.
 * Every tag is kept as text (tag_count, tags) when tags is an object of at
 * most PATRONI_TAGS_MAX names whose values are strings, numbers or
 * booleans that fit; otherwise none is kept and tags_why says why (the
 * record itself is still accepted: a tag must not cost a leader).
 */
bool patroni_member_parse(const char *json, size_t len, struct patroni_member *out,
			  char *err, size_t errlen);

/*
 * Take host and port from a conn_url: postgres:// or postgresql://, a
 * hostname, IPv4 literal or [IPv6] literal, an optional :port (5432 when
 * missing) and an optional /dbname; no userinfo, query or fragment.
 */
bool patroni_conn_url_parse(const char *url, char *host, size_t hostlen, int *port,
			    char *err, size_t errlen);

/* RFC 1123 hostname, IPv4 literal or IPv6 literal (no brackets) */
bool patroni_host_valid(const char *host);

/* state is "running" */
bool patroni_member_is_running(const struct patroni_member *m);

/* not "streaming" while Patroni 4 says how the replica replicates */
bool patroni_member_is_streaming(const struct patroni_member *m);
/* role is "master" (Patroni 3) or "primary" (Patroni 4) */
bool patroni_member_is_primary_role(const struct patroni_member *m);

/* the value of tag key as text, or NULL when the member has no such tag */
const char *patroni_member_tag(const struct patroni_member *m, const char *key);

#endif
