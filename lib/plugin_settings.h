/*
 * plugin_settings - the pgbouncer.ini values the consul_redirect plugin
 * claims: the [consul] keys and the patroni_scope, patroni_role and
 * patroni_prefer keys of a database line, checked and read.  No PgBouncer
 * calls; the only I/O is access() on the file paths given.
 */
#ifndef PGBC_PLUGIN_SETTINGS_H
#define PGBC_PLUGIN_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consul_client.h"
#include "patroni_targets.h"

#define PLUGIN_DEFAULT_URL "http://127.0.0.1:8500"
#define PLUGIN_DEFAULT_NAMESPACE "service"
#define PLUGIN_MAX_WAIT_USEC (UINT64_C(600) * 1000000)	/* Consul's max_query_time */
#define PLUGIN_DEFAULT_NO_LEADER_USEC (UINT64_C(30) * 1000000)
#define PLUGIN_PATH_MAX 1024

/* [consul] as read, before the token file is */
struct plugin_settings {
	struct consul_settings consul;
	uint64_t no_leader_timeout_usec;
	uint64_t member_pace_usec;	/* 0: read the members at every write */
	char token_file[PLUGIN_PATH_MAX];
};

/* what one [databases] entry's claimed keys say */
struct plugin_binding {
	const char *scope;		/* the patroni_scope value given */
	enum patroni_entry_role role;	/* primary unless patroni_role says */
	struct patroni_prefer prefer;	/* count 0: none */
};

/* the built-in values of every [consul] key */
void plugin_settings_defaults(struct plugin_settings *s);

/*
 * One [consul] key into s; false with err naming the key and why (a
 * proxy value is quoted without its user info) on an unknown key or a
 * bad value, and s as it was.  token_file and ca_file must be readable
 * when not empty.
 */
bool plugin_settings_set(struct plugin_settings *s, const char *key,
			 const char *value, char *err, size_t errlen);

/* one database key (patroni_scope, patroni_role, patroni_prefer) alone */
bool plugin_db_setting_check(const char *key, const char *value, char *err,
			     size_t errlen);

/*
 * The claimed keys of database db taken together, each NULL when absent
 * and each already accepted by plugin_db_setting_check: patroni_role and
 * patroni_prefer need patroni_scope, patroni_prefer needs a replica or
 * any role, and db must fit PATRONI_NAME_MAX.  out->scope points at scope.
 */
bool plugin_db_binding(const char *db, const char *scope, const char *role,
		       const char *prefer, struct plugin_binding *out,
		       char *err, size_t errlen);

#endif
