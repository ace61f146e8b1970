/*
 * recovery_check.c - the server connection check of primary entries: a
 * node still (or again) in recovery is refused, and the entry is held
 * briefly so the next connection comes once promotion had time to end.
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
	enum watch_role role;

	if (!consul_redirect_find_db(cr, db, &role) || role != WATCH_ROLE_PRIMARY)
		return NULL;
	return RECOVERY_CHECK_SQL;
}

bool
recovery_check_result(struct consul_redirect *cr, const char *db,
		      const char *host, int port, const char *value,
		      char *err, size_t errlen)
{
	enum watch_role role;
	struct watch *w = consul_redirect_find_db(cr, db, &role);

	if (!w || role != WATCH_ROLE_PRIMARY)
		return true;
	if (value && strcmp(value, "f") == 0) {
		watch_server_accepted(w, db);
		return true;
	}
	errbuf_set(err, errlen, "server %s:%d %s", host ? host : "(unix socket)",
		   port, value ? "is in recovery, not a primary" :
		   "gave no answer to pg_is_in_recovery()");
	watch_server_refused(w, db, host, port, err);
	return false;
}
