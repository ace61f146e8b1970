/*
 * member_pool - the host list of a replica/any entry: PgBouncer gives a
 * multi-host entry one port, so the members on the most common port win.
 */
#ifndef CONSUL_REDIRECT_MEMBER_POOL_H
#define CONSUL_REDIRECT_MEMBER_POOL_H

#include <stdbool.h>

#define MEMBER_POOL_TEXT_MAX 1024

struct member_pool_entry {
	const char *name;
	const char *host;
	int port;
};

struct member_pool_choice {
	char hosts[MEMBER_POOL_TEXT_MAX];	/* "h1,h2", sorted, no repeats */
	char names[MEMBER_POOL_TEXT_MAX];	/* members used, "m1,m2" */
	char skipped[MEMBER_POOL_TEXT_MAX];	/* "m3 (h3 port 5433), ..." */
	int port;
};

/*
 * Sort entries (host, port, name) and choose: the port most of them use
 * (ties: the lowest), every host on it.  False when n is 0.
 */
bool member_pool_choose(struct member_pool_entry *entries, int n,
			struct member_pool_choice *out);

#endif
