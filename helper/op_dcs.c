/*
 * The cluster's keys in Consul (<namespace>/<scope>/): the dynamic
 * configuration read before the removal, put back (cas=0) and verified
 * through Patroni, and the recursive DELETE with its check.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "op_dcs.h"
#include "op_exec.h"
#include "patroni_rest.h"

/* "/v1/kv/<namespace>/<scope>/<key>" (a key of a few bytes) and its dc= */
#define KV_PATH_MAX (CONSUL_KV_URL_MAX(32) - CONSUL_URL_MAX)

/* the path, or false with err naming what is missing or too long */
static bool
kv_path(const struct op *op, const char *key, char *out, size_t len, char *err,
	size_t errlen)
{
	char dc[CONSUL_DATACENTER_MAX + 8] = "";
	int n;

	if (op->cfg->scope[0] == '\0' || op->cfg->consul.namespace_[0] == '\0') {
		errbuf_set(err, errlen, "no scope or namespace for the DCS key \"%s\"", key);
		return false;
	}
	if (op->cfg->consul.datacenter[0] != '\0')
		snprintf(dc, sizeof(dc), "%cdc=%s", strchr(key, '?') ? '&' : '?',
			 op->cfg->consul.datacenter);
	n = snprintf(out, len, "/v1/kv/%s/%s/%s%s", op->cfg->consul.namespace_,
		     op->cfg->scope, key, dc);
	if (n < 0 || (size_t) n >= len) {
		errbuf_set(err, errlen, "the DCS path of key \"%s\" in scope \"%s\" is too long",
			   key, op->cfg->scope);
		return false;
	}
	return true;
}

bool
op_dcs_config_get(const struct op *op, char *out, size_t len, char *err, size_t errlen)
{
	struct consul_response resp;
	struct json_object *obj;
	char path[KV_PATH_MAX];
	const char *text;
	bool ok = false;

	if (!kv_path(op, "config?raw", path, sizeof(path), err, errlen))
		return false;
	if (!http_consul(op->cfg, "GET", path, NULL, HTTP_TIMEOUT_MS, &resp, err, errlen))
		return false;
	if (resp.status != 200) {
		errbuf_set(err, errlen, "GET %s%s: HTTP %ld (Patroni keeps its dynamic "
			   "configuration there: check namespace and scope)", op->cfg->consul.url,
			   path, resp.status);
		consul_response_free(&resp);
		return false;
	}
	obj = http_json(&resp, json_type_object, "the DCS configuration", err, errlen);
	consul_response_free(&resp);
	if (obj == NULL)
		return false;
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	if (strlen(text) >= len)
		errbuf_set(err, errlen, "%s/%s/config: over %zu bytes", op->cfg->consul.namespace_,
			   op->cfg->scope, len - 1);
	else {
		strcpy(out, text);
		ok = true;
	}
	json_object_put(obj);
	return ok;
}

bool
op_dcs_remove(struct op *op)
{
	struct consul_response resp;
	char path[KV_PATH_MAX], err[1024];
	long status;

	/* an empty scope would make this service//?recurse, or the whole namespace */
	if (!kv_path(op, "?recurse", path, sizeof(path), err, sizeof(err))) {
		log_error("refusing to remove DCS state: %s", err);
		return false;
	}
	if (op->dry_run) {
		printf("    [local] DELETE %s%s\n", op->cfg->consul.url, path);
		printf("    check: GET %s%s answers 404\n", op->cfg->consul.url, path);
		return true;
	}
	log_info("removing the cluster from the DCS: DELETE %s%s", op->cfg->consul.url, path);
	if (!http_consul(op->cfg, "DELETE", path, NULL, HTTP_TIMEOUT_MS, &resp, err,
			 sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	status = resp.status;
	consul_response_free(&resp);
	if (status != 200) {
		log_error("DELETE %s%s: HTTP %ld", op->cfg->consul.url, path, status);
		return false;
	}
	if (!http_consul(op->cfg, "GET", path, NULL, HTTP_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	status = resp.status;
	consul_response_free(&resp);
	if (status != 404) {
		log_error("keys under %s/%s/ are still in Consul after the delete (HTTP %ld)",
			  op->cfg->consul.namespace_, op->cfg->scope, status);
		return false;
	}
	log_info("no key left under %s/%s/", op->cfg->consul.namespace_, op->cfg->scope);
	return true;
}

/* "loop_wait 3, ttl 23, retry_timeout 5, 4 postgresql parameters" of a saved config */
static void
describe_config(const char *json, char *out, size_t len)
{
	struct json_object *obj = json_tokener_parse(json), *params;
	const char *keys[] = {"loop_wait", "ttl", "retry_timeout", "synchronous_mode"};
	size_t i, n = 0;

	out[0] = '\0';
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]) && n < len; i++) {
		if (http_json_member(obj, keys[i]) != NULL)
			n += snprintf(out + n, len - n, "%s%s %s", n ? ", " : "", keys[i],
				      http_json_text(obj, keys[i]));
	}
	params = http_json_member(http_json_member(obj, "postgresql"), "parameters");
	if (n < len)
		snprintf(out + n, len - n, "%s%d postgresql parameters", n ? ", " : "",
			 params && json_object_is_type(params, json_type_object) ?
			 json_object_object_length(params) : 0);
	json_object_put(obj);
}

/* same JSON value, whatever the spacing and key order */
static bool
same_config(const char *a, const char *b)
{
	struct json_object *x = json_tokener_parse(a), *y = json_tokener_parse(b);
	bool same = x != NULL && y != NULL && json_object_equal(x, y);

	json_object_put(x);
	json_object_put(y);
	return same;
}

bool
op_dcs_config_put(struct op *op)
{
	static char now[OP_CONFIG_MAX];
	struct consul_response resp;
	char path[KV_PATH_MAX], check[KV_PATH_MAX], shown[256], err[1024];
	bool written;

	if (op->dcs_config[0] == '\0') {
		log_error("state file %s holds no saved dynamic configuration: start over, or put "
			  "it back with patronictl edit-config after the cluster is up",
			  op->state_path);
		return false;
	}
	if (!kv_path(op, "config?cas=0", path, sizeof(path), err, sizeof(err)) ||
	    !kv_path(op, "config", check, sizeof(check), err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	describe_config(op->dcs_config, shown, sizeof(shown));
	op_note(op, "dynamic configuration saved from the DCS: %s", shown);
	if (op->dry_run) {
		printf("    [local] PUT %s%s (the saved configuration, only if absent)\n",
		       op->cfg->consul.url, path);
		printf("    check: GET %s%s holds it\n", op->cfg->consul.url, check);
		return true;
	}
	/* cas=0: never overwrite a configuration someone wrote since the removal */
	log_info("putting back the dynamic configuration: PUT %s%s", op->cfg->consul.url, path);
	if (!http_consul(op->cfg, "PUT", path, op->dcs_config, HTTP_TIMEOUT_MS, &resp, err,
			 sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	written = resp.status == 200 && resp.len >= 4 && strncmp(resp.body, "true", 4) == 0;
	if (resp.status != 200) {
		log_error("PUT %s%s: HTTP %ld", op->cfg->consul.url, path, resp.status);
		consul_response_free(&resp);
		return false;
	}
	consul_response_free(&resp);
	if (!op_dcs_config_get(op, now, sizeof(now), err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	if (!same_config(now, op->dcs_config)) {
		log_error("%s/%s/config %s and differs from the saved configuration (state file "
			  "%s): refusing to overwrite it", op->cfg->consul.namespace_, op->cfg->scope,
			  written ? "was changed right after the write" : "already exists",
			  op->state_path);
		return false;
	}
	log_info("%s/%s/config holds the saved configuration%s", op->cfg->consul.namespace_,
		 op->cfg->scope, written ? "" : " (already there)");
	return true;
}

bool
op_dcs_config_verify(struct op *op)
{
	struct json_object_iterator it, end;
	struct json_object *saved, *now, *value;
	const char *key;
	char err[1024];
	bool ok = true;

	if (op->dry_run) {
		printf("    check: %s/config holds every value of the saved configuration\n",
		       op->members[op->leader].api);
		return true;
	}
	saved = json_tokener_parse(op->dcs_config);
	if (saved == NULL) {
		log_error("state file %s: the saved dynamic configuration is not JSON",
			  op->state_path);
		return false;
	}
	now = patroni_get(op->cfg, op->members[op->leader].api, "/config", err, sizeof(err));
	if (now == NULL) {
		log_error("%s", err);
		json_object_put(saved);
		return false;
	}
	for (it = json_object_iter_begin(saved), end = json_object_iter_end(saved);
	     !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		key = json_object_iter_peek_name(&it);
		value = json_object_iter_peek_value(&it);
		if (!json_object_equal(value, http_json_member(now, key))) {
			log_error("patroni %s/config: %s is %s, the saved configuration had %s",
				  op->members[op->leader].api, key,
				  json_object_to_json_string_ext(http_json_member(now, key),
								 JSON_C_TO_STRING_PLAIN),
				  json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN));
			ok = false;
			break;
		}
	}
	if (ok)
		log_info("patroni on %s uses the saved dynamic configuration",
			 op->members[op->leader].name);
	json_object_put(saved);
	json_object_put(now);
	return ok;
}
