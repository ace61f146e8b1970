/*
 * recovery_check.c - the check of each new server connection: a primary
 * entry's server must be out of recovery (writes never reach a replica),
 * a replica entry's must be in recovery (reads never land on a primary
 * that Consul still lists as a replica).  A refused server is paced by
 * refusal.c.
 */

#include <stdio.h>
#include <string.h>

#include "pgb_plugin.h"

#include "errbuf.h"

#include "consul_redirect.h"
#include "recovery_check.h"

#define RECOVERY_CHECK_SQL "select pg_is_in_recovery()"

const char *
recovery_check_query(struct consul_redirect *cr, const char *db)
{
	struct watch *w = consul_redirect_find_db(cr, db, NULL);

	if (!w || watch_check(w, db) == PATRONI_CHECK_NONE)
		return NULL;
	return RECOVERY_CHECK_SQL;
}

bool
recovery_check_result(struct consul_redirect *cr, const char *db,
		      const char *host, int port, const char *value,
		      char *err, size_t errlen)
{
	struct watch *w = consul_redirect_find_db(cr, db, NULL);
	enum patroni_check check = w ? watch_check(w, db) : PATRONI_CHECK_NONE;
	const char *want = check == PATRONI_CHECK_PRIMARY ? "f" : "t";

	if (check == PATRONI_CHECK_NONE)
		return true;
	if (value && strcmp(value, want) == 0) {
		watch_server_accepted(w, db);
		return true;
	}
	errbuf_set(err, errlen, "server %s:%d %s", host ? host : "(unix socket)", port,
		   !value ? "gave no answer to pg_is_in_recovery()" :
		   check == PATRONI_CHECK_PRIMARY ? "is in recovery, not a primary" :
		   "is not in recovery, not a replica");
	watch_server_refused(w, db, host, port, err);
	return false;
}
