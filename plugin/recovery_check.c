/*
 * recovery_check.c - the check of each new server connection: a primary
 * entry's server must be out of recovery (writes never reach a replica),
 * a replica entry's must be in recovery (reads never land on a primary
 * that Consul still lists as a replica).  A new leader still promoting
 * is checked again on the same connection; a refused server is paced by
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

enum pgb_check_verdict
recovery_check_verdict(struct consul_redirect *cr, const char *db,
		       const char *host, int port, const char *value,
		       unsigned int *again_ms, char *err, size_t errlen)
{
	struct watch *w = consul_redirect_find_db(cr, db, NULL);
	enum patroni_check check = w ? watch_check(w, db) : PATRONI_CHECK_NONE;
	const char *want = check == PATRONI_CHECK_PRIMARY ? "f" : "t";

	if (check == PATRONI_CHECK_NONE)
		return PGB_CHECK_ACCEPT;
	if (value && strcmp(value, want) == 0) {
		watch_server_accepted(w, db);
		return PGB_CHECK_ACCEPT;
	}
	/* the leader just took the key and is promoting: keep the connection */
	if (check == PATRONI_CHECK_PRIMARY && value && strcmp(value, "t") == 0 &&
	    watch_server_promoting(w, db, host, port, again_ms))
		return PGB_CHECK_AGAIN;
	errbuf_set(err, errlen, "server %s:%d %s", host ? host : "(unix socket)", port,
		   !value ? "gave no answer to pg_is_in_recovery()" :
		   check == PATRONI_CHECK_PRIMARY ? "is in recovery, not a primary" :
		   "is not in recovery, not a replica");
	watch_server_refused(w, db, host, port, err);
	return PGB_CHECK_REFUSE;
}
