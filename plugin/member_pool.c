/*
 * member_pool.c - turns the running members picked for a replica/any
 * entry into one "h1,h2" host list and one port, sorted for stability,
 * and names the members left out because they listen on another port.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "member_pool.h"

static int
member_pool_cmp(const void *a, const void *b)
{
	const struct member_pool_entry *x = a, *y = b;
	int c = strcmp(x->host, y->host);

	if (c != 0)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* the port most entries use; ties go to the lowest port */
static int
member_pool_port(const struct member_pool_entry *e, int n)
{
	int i, j, best = 0, best_count = 0;

	for (i = 0; i < n; i++) {
		int c = 0;

		for (j = 0; j < n; j++)
			if (e[j].port == e[i].port)
				c++;
		if (c > best_count || (c == best_count && e[i].port < best)) {
			best = e[i].port;
			best_count = c;
		}
	}
	return best;
}

/* append sep (if buf is not empty) and text; false when it does not fit */
static bool
member_pool_append(char *buf, size_t len, const char *sep, const char *text)
{
	size_t used = strlen(buf);
	int n = snprintf(buf + used, len - used, "%s%s", used ? sep : "", text);

	if (n < 0 || (size_t)n >= len - used) {
		buf[used] = '\0';
		return false;
	}
	return true;
}

bool
member_pool_choose(struct member_pool_entry *e, int n,
		   struct member_pool_choice *out)
{
	char item[MEMBER_POOL_TEXT_MAX];
	const char *last_host = NULL;
	int i;

	memset(out, 0, sizeof(*out));
	if (n <= 0)
		return false;
	qsort(e, n, sizeof(*e), member_pool_cmp);
	out->port = member_pool_port(e, n);
	for (i = 0; i < n; i++) {
		bool same_host = last_host && strcmp(last_host, e[i].host) == 0;

		snprintf(item, sizeof(item), "%s (%s port %d)", e[i].name,
			 e[i].host, e[i].port);
		if (e[i].port != out->port ||
		    (!same_host && !member_pool_append(out->hosts,
						       sizeof(out->hosts), ",",
						       e[i].host))) {
			member_pool_append(out->skipped, sizeof(out->skipped),
					   ", ", item);
			continue;
		}
		member_pool_append(out->names, sizeof(out->names), ",", e[i].name);
		last_host = e[i].host;
	}
	return true;
}
