/*
 * Small blocking HTTP calls for pgbouncer-helper over lib/consul_client:
 * the Consul agent API and the Patroni REST API, one curl easy handle each.
 */
#ifndef PGBC_HELPER_HTTP_H
#define PGBC_HELPER_HTTP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "consul_client.h"
#include "helper_config.h"

#define HTTP_TIMEOUT_MS 10000L

/*
 * A transfer in progress is aborted soon after *flag becomes non-zero
 * (SIGTERM in a daemon loop); NULL = never.
 */
void http_set_stop_flag(volatile sig_atomic_t *flag);

/*
 * method path on the Consul agent (path starts with "/v1/"), optional
 * JSON body.  True when a full HTTP answer arrived (any status): check
 * resp->status.  resp must be freed with consul_response_free.
 */
bool http_consul(const struct helper_config *cfg, const char *method, const char *path,
		 const char *body, long timeout_ms, struct consul_response *resp,
		 char *err, size_t errlen);

/* GET of a KV key under <namespace>/<scope>/; index > 0 makes it a blocking query */
bool http_consul_kv(const struct helper_config *cfg, const char *key, uint64_t index,
		    uint64_t wait_usec, struct consul_response *resp, char *err, size_t errlen);

/*
 * method path on patroni_url (path starts with "/"), with the patroni_*
 * TLS files and basic auth; HTTP 401 is returned as an error (false)
 * naming the credentials, any other status as an answer.
 */
bool http_patroni(const struct helper_config *cfg, const char *method, const char *path,
		  const char *body, long timeout_ms, struct consul_response *resp,
		  char *err, size_t errlen);

/*
 * Parse resp's body as JSON of the given type (json_type_object or
 * json_type_array); the caller puts the result.
 */
struct json_object *http_json(const struct consul_response *resp, json_type type,
			      const char *what, char *err, size_t errlen);

/* o[key], or NULL when o is NULL or has no such key */
struct json_object *http_json_member(struct json_object *o, const char *key);

/* o[key] as text ("" when absent or null; numbers as written) */
const char *http_json_text(struct json_object *o, const char *key);

#endif
