/*
 * What the subcommands read from Patroni's REST API, over http.c: a GET
 * as a JSON object, the base of a member's api_url, and a member record
 * of GET /cluster.
 */
#ifndef PGBC_HELPER_PATRONI_REST_H
#define PGBC_HELPER_PATRONI_REST_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "helper_config.h"
#include "patroni_member.h"

struct patroni_rest_member {
	char name[128];
	char host[PATRONI_HOST_MAX];	/* from Patroni's conn_url */
	int port;
	char api[512];			/* REST base URL without /patroni; "" when absent */
	char role[32];			/* leader, standby_leader, replica, sync_standby ... */
	char state[32];			/* running, streaming, stopped ... */
	long long lag;			/* bytes, -1 = unknown */
};

/*
 * GET base + path (base NULL: patroni_url) with cfg's Patroni settings;
 * the answer must be a JSON object (the caller puts it).  NULL + err.
 */
struct json_object *patroni_get(const struct helper_config *cfg, const char *base,
				const char *path, char *err, size_t errlen);

/* "http://127.0.0.1:8008/patroni" -> "http://127.0.0.1:8008"; false when not a URL */
bool patroni_api_base(const char *api_url, char *out, size_t len);

/*
 * One element of /cluster's "members": name ([A-Za-z0-9._-]), host (a
 * hostname or IP literal), port 1..65535 required; api, role, state and
 * lag as Patroni gave them.  False + err (naming member number i + 1).
 */
bool patroni_rest_member(struct json_object *m, size_t i, struct patroni_rest_member *out,
			 char *err, size_t errlen);

/* GET /cluster's "members" array (borrowed from cluster), or NULL + err */
struct json_object *patroni_members(const struct helper_config *cfg,
				    struct json_object *cluster, char *err, size_t errlen);

#endif
