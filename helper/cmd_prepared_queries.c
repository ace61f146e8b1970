/*
 * prepared-queries: install or update the scope's Consul prepared queries
 * <scope>-writer, <scope>-query and <scope>-any, idempotently: list, match
 * by Name, PUT when different, POST when missing, nothing when equal.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"

struct pq_kind {
	const char *suffix;	/* query name = <scope>-<suffix> */
	const char *tag;	/* required service tag */
	int kind;		/* HELPER_PQ_*: which [prepared_queries] TTL */
};

/* the tags match what "register" puts on its services (see cmd_register.c) */
static const struct pq_kind pq_kinds[] = {
	{"writer", "primary", HELPER_PQ_WRITER},
	{"query", "replica", HELPER_PQ_QUERY},
	{"any", "any", HELPER_PQ_ANY},
	{NULL, NULL, 0}
};

static struct json_object *
jstr(const char *s)
{
	return json_object_new_string(s);
}

/* the full definition we want for one query */
static struct json_object *
pq_build(const struct helper_config *cfg, const struct pq_kind *k, int nearest_n)
{
	struct json_object *q, *svc, *tags, *fo, *dcs, *dns;
	char name[512];
	char service[256];
	char ttl[64];
	int i;

	helper_service_name(cfg->scope, service, sizeof(service));
	snprintf(name, sizeof(name), "%s-%s", cfg->scope, k->suffix);
	duration_format(helper_config_pq_ttl(cfg, k->kind), ttl, sizeof(ttl));
	if (strcmp(ttl, "0") == 0)
		strcpy(ttl, "0s");

	q = json_object_new_object();
	svc = json_object_new_object();
	tags = json_object_new_array();
	fo = json_object_new_object();
	dcs = json_object_new_array();
	dns = json_object_new_object();
	json_object_array_add(tags, jstr(k->tag));
	for (i = 0; i < cfg->datacenter_count; i++)
		json_object_array_add(dcs, jstr(cfg->datacenters[i]));
	json_object_object_add(fo, "NearestN", json_object_new_int(nearest_n));
	json_object_object_add(fo, "Datacenters", dcs);
	json_object_object_add(svc, "Service", jstr(service));
	json_object_object_add(svc, "Tags", tags);
	json_object_object_add(svc, "OnlyPassing", json_object_new_boolean(1));
	json_object_object_add(svc, "Near", jstr("_agent"));
	json_object_object_add(svc, "Failover", fo);
	json_object_object_add(dns, "TTL", jstr(ttl));
	json_object_object_add(q, "Name", jstr(name));
	json_object_object_add(q, "Service", svc);
	json_object_object_add(q, "DNS", dns);
	return q;
}

/* JSON equality with null, [] and absent counted as the same */
static bool
jsame(struct json_object *a, struct json_object *b)
{
	bool a_empty = a == NULL || (json_object_is_type(a, json_type_array) &&
				     json_object_array_length(a) == 0);
	bool b_empty = b == NULL || (json_object_is_type(b, json_type_array) &&
				     json_object_array_length(b) == 0);

	if (a_empty || b_empty)
		return a_empty && b_empty;
	return json_object_equal(a, b) != 0;
}

/* does the existing query already say everything the wanted one says? */
static bool
pq_matches(struct json_object *want, struct json_object *have)
{
	static const char *svc_keys[] = {"Service", "Tags", "OnlyPassing", "Near", NULL};
	struct json_object *ws = http_json_member(want, "Service");
	struct json_object *hs = http_json_member(have, "Service");
	int i;

	for (i = 0; svc_keys[i]; i++) {
		if (!jsame(http_json_member(ws, svc_keys[i]), http_json_member(hs, svc_keys[i])))
			return false;
	}
	if (!jsame(http_json_member(http_json_member(ws, "Failover"), "NearestN"), http_json_member(http_json_member(hs, "Failover"), "NearestN")))
		return false;
	if (!jsame(http_json_member(http_json_member(ws, "Failover"), "Datacenters"),
		   http_json_member(http_json_member(hs, "Failover"), "Datacenters")))
		return false;
	return jsame(http_json_member(http_json_member(want, "DNS"), "TTL"), http_json_member(http_json_member(have, "DNS"), "TTL"));
}

static struct json_object *
pq_find(struct json_object *list, const char *name)
{
	struct json_object *item, *n;
	size_t i;

	for (i = 0; i < json_object_array_length(list); i++) {
		item = json_object_array_get_idx(list, i);
		n = http_json_member(item, "Name");
		if (n && json_object_is_type(n, json_type_string) &&
		    strcmp(json_object_get_string(n), name) == 0)
			return item;
	}
	return NULL;
}

/* create or update one query; *changed set when something was written */
static bool
pq_apply(const struct helper_config *cfg, struct json_object *list, const struct pq_kind *k,
	 int nearest_n, bool *changed)
{
	struct consul_response resp;
	struct json_object *want = pq_build(cfg, k, nearest_n);
	struct json_object *have, *idobj, *answer;
	const char *name = json_object_get_string(http_json_member(want, "Name"));
	const char *id;
	char path[512];
	char err[1024];
	bool ok = false;

	have = pq_find(list, name);
	if (have && pq_matches(want, have)) {
		log_info("prepared query %s unchanged (id %s)", name,
			 json_object_get_string(http_json_member(have, "ID")));
		json_object_put(want);
		return true;
	}
	if (have) {
		idobj = http_json_member(have, "ID");
		id = idobj ? json_object_get_string(idobj) : "";
		if (strlen(id) == 0 || strspn(id, "0123456789abcdefABCDEF-") != strlen(id)) {
			log_error("prepared query %s: consul listed it with an unusable ID", name);
			goto done;
		}
		json_object_object_add(want, "ID", jstr(id));
		snprintf(path, sizeof(path), "/v1/query/%s", id);
		if (!http_consul(cfg, "PUT", path, json_object_to_json_string(want),
				 HTTP_TIMEOUT_MS, &resp, err, sizeof(err))) {
			log_error("updating prepared query %s: %s", name, err);
			goto done;
		}
		if (resp.status != 200) {
			log_error("updating prepared query %s: consul answered HTTP %ld: %.200s", name,
				  resp.status, resp.body ? resp.body : "");
			consul_response_free(&resp);
			goto done;
		}
		consul_response_free(&resp);
		log_info("prepared query %s updated (id %s, service %s, tag %s)", name, id,
			 json_object_get_string(http_json_member(http_json_member(want, "Service"), "Service")), k->tag);
	} else {
		if (!http_consul(cfg, "POST", "/v1/query", json_object_to_json_string(want),
				 HTTP_TIMEOUT_MS, &resp, err, sizeof(err))) {
			log_error("creating prepared query %s: %s", name, err);
			goto done;
		}
		if (resp.status != 200) {
			log_error("creating prepared query %s: consul answered HTTP %ld: %.200s", name,
				  resp.status, resp.body ? resp.body : "");
			consul_response_free(&resp);
			goto done;
		}
		answer = http_json(&resp, json_type_object, "POST /v1/query", err, sizeof(err));
		log_info("prepared query %s created (id %s, service %s, tag %s)", name,
			 answer && http_json_member(answer, "ID") ? json_object_get_string(http_json_member(answer, "ID")) : "?",
			 json_object_get_string(http_json_member(http_json_member(want, "Service"), "Service")), k->tag);
		json_object_put(answer);
		consul_response_free(&resp);
	}
	*changed = true;
	ok = true;
done:
	json_object_put(want);
	return ok;
}

int
cmd_prepared_queries(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"nearest-n", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0}
	};
	struct consul_response resp;
	struct json_object *list;
	const struct pq_kind *k;
	char err[1024];
	int nearest_n = cfg->nearest_n;
	bool changed = false;
	int c, rc = HELPER_EXIT_OK;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'n') {
			if (!helper_config_nearest_n(optarg, &nearest_n, err, sizeof(err))) {
				log_error("--nearest-n: \"%.32s\": %s", optarg, err);
				return HELPER_EXIT_USAGE;
			}
		} else {
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	if (!cmd_no_more_args(argc, argv, optind) || !cmd_scope_set(cfg))
		return HELPER_EXIT_USAGE;
	if (!http_consul(cfg, "GET", "/v1/query", NULL, HTTP_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_error("listing prepared queries: %s", err);
		return HELPER_EXIT_FAIL;
	}
	if (resp.status != 200) {
		log_error("listing prepared queries: consul %s answered HTTP %ld: %.200s",
			  cfg->consul.url, resp.status, resp.body ? resp.body : "");
		consul_response_free(&resp);
		return HELPER_EXIT_FAIL;
	}
	list = http_json(&resp, json_type_array, "GET /v1/query", err, sizeof(err));
	consul_response_free(&resp);
	if (list == NULL) {
		log_error("listing prepared queries: %s", err);
		return HELPER_EXIT_FAIL;
	}
	for (k = pq_kinds; k->suffix; k++) {
		if (!pq_apply(cfg, list, k, nearest_n, &changed))
			rc = HELPER_EXIT_FAIL;
	}
	json_object_put(list);
	if (rc == HELPER_EXIT_OK && !changed)
		log_info("prepared queries of scope %s already up to date: nothing changed",
			 cfg->scope);
	return rc;
}
