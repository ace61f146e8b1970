/*
 * consul_redirect - the plugin's state shared by its files: PgBouncer's
 * API, the curl loop, the [consul] settings in force and the watches.
 */
#ifndef CONSUL_REDIRECT_H
#define CONSUL_REDIRECT_H

#include <stdbool.h>
#include <stdint.h>

#include "agent_log.h"
#include "watch.h"

struct pgb_plugin_api;
struct curl_loop;

struct consul_redirect {
	const struct pgb_plugin_api *api;	/* NULL before init */
	struct curl_loop *loop;
	struct agent_log agent;			/* what is said once for all scopes */
	bool configured;			/* a config has been applied */
	struct watch_options opts;
	struct watch **watches;			/* one per scope */
	int watch_count;
	uint64_t warned_wait_usec;		/* timeouts last warned about, 0 none */
};

/* the watch a database entry is bound to, or NULL */
struct watch *consul_redirect_find_db(struct consul_redirect *cr,
				      const char *db, enum patroni_entry_role *role);

#endif
