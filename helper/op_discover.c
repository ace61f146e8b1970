/*
 * The live cluster for upgrade and restore: GET /cluster and /patroni on
 * patroni_url, refusals (scope, leader, standby, version, replica health)
 * and the resume check of a state file's members.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "op_dcs.h"
#include "op_discover.h"
#include "patroni_rest.h"

/* Patroni's own answer (/patroni: {"patroni": {"scope": ...}}) is helper.ini's scope */
static bool
scope_matches(const struct op *op, struct json_object *patroni, char *err, size_t errlen)
{
	const char *scope = http_json_text(http_json_member(patroni, "patroni"), "scope");
	char shown[ERRBUF_VALUE_MAX];

	if (*scope == '\0') {
		errbuf_set(err, errlen, "patroni %s/patroni does not report its scope: refusing",
			   op->cfg->patroni_url);
		return false;
	}
	if (strcmp(scope, op->cfg->scope) != 0) {
		errbuf_printable(scope, shown, sizeof(shown));
		errbuf_set(err, errlen, "patroni %s serves scope %s, not %s (helper.ini scope): "
			   "refusing", op->cfg->patroni_url, shown, op->cfg->scope);
		return false;
	}
	return true;
}

bool
op_discover(struct op *op, char *err, size_t errlen)
{
	struct json_object *cluster = NULL, *patroni = NULL, *members, *m;
	struct op_member *om;
	const char *role;
	size_t i, n;
	bool ok = false;

	cluster = patroni_get(op->cfg, NULL, "/cluster", err, errlen);
	if (cluster == NULL)
		goto done;
	patroni = patroni_get(op->cfg, NULL, "/patroni", err, errlen);
	if (patroni == NULL)
		goto done;
	/* before anything else: the cluster we would stop is the one we would remove */
	if (!scope_matches(op, patroni, err, errlen))
		goto done;
	members = patroni_members(op->cfg, cluster, err, errlen);
	if (members == NULL)
		goto done;
	op->paused = json_object_get_boolean(http_json_member(cluster, "pause"));
	op->server_version = json_object_get_int(http_json_member(patroni, "server_version"));
	n = json_object_array_length(members);
	if (n > OP_MEMBERS_MAX) {
		errbuf_set(err, errlen, "cluster has %zu members, at most %d supported", n,
			   OP_MEMBERS_MAX);
		goto done;
	}
	op->member_count = 0;
	op->leader = -1;
	for (i = 0; i < n; i++) {
		m = json_object_array_get_idx(members, i);
		om = &op->members[op->member_count];
		/* names and hosts end up in shell commands and paths: kept plain there */
		if (!patroni_rest_member(m, i, om, err, errlen))
			goto done;
		if (om->api[0] == '\0') {
			errbuf_set(err, errlen, "patroni /cluster: member %s has no api_url",
				   om->name);
			goto done;
		}
		role = om->role;
		if (strcmp(role, "leader") == 0 || strcmp(role, "standby_leader") == 0)
			op->leader = op->member_count;
		op->member_count++;
	}
	if (op->leader < 0) {
		errbuf_set(err, errlen, "scope %s has no leader (patroni %s/cluster): refusing",
			   op->cfg->scope, op->cfg->patroni_url);
		goto done;
	}
	if (strcmp(op->members[op->leader].role, "standby_leader") == 0) {
		errbuf_set(err, errlen, "scope %s is a standby cluster: refusing", op->cfg->scope);
		goto done;
	}
	if (op->server_version <= 0) {
		errbuf_set(err, errlen, "patroni %s/patroni: no server_version (is postgres "
			   "running?)", op->cfg->patroni_url);
		goto done;
	}
	if (!op_dcs_config_get(op, op->dcs_config, sizeof(op->dcs_config), err, errlen))
		goto done;
	ok = true;
done:
	json_object_put(cluster);
	json_object_put(patroni);
	return ok;
}

bool
op_replicas_healthy(struct op *op, char *err, size_t errlen)
{
	struct op_member *m;
	int i;

	for (i = 0; i < op->member_count; i++) {
		m = &op->members[i];
		if (i == op->leader)
			continue;
		if (strcmp(m->state, "running") != 0 && strcmp(m->state, "streaming") != 0) {
			errbuf_set(err, errlen, "replica %s is %s, not running: refusing", m->name,
				   m->state[0] ? m->state : "in an unknown state");
			return false;
		}
		if (m->lag < 0 || m->lag > op->cfg->max_lag) {
			errbuf_set(err, errlen, "replica %s lags %lld bytes (max_lag %lld): refusing",
				   m->name, m->lag, op->cfg->max_lag);
			return false;
		}
	}
	return true;
}

static int
find_member(const struct op *op, const char *name)
{
	int i;

	for (i = 0; i < op->member_count; i++) {
		if (strcmp(op->members[i].name, name) == 0)
			return i;
	}
	return -1;
}

/*
 * A state member the live /cluster does not list: fine when it is stopped
 * (its REST API silent, as after the stop step), not when it answers
 * under another name or scope.
 */
static bool
absent_member_ok(const struct op *op, const struct op_member *sm, char *err, size_t errlen)
{
	struct json_object *p;
	char ignored[256], shown[ERRBUF_VALUE_MAX];
	const char *name, *scope;
	bool ok;

	p = patroni_get(op->cfg, sm->api, "/patroni", ignored, sizeof(ignored));
	if (p == NULL) {
		log_info("state file member %s: patroni at %s does not answer (stopped)",
			 sm->name, sm->api);
		return true;
	}
	name = http_json_text(http_json_member(p, "patroni"), "name");
	scope = http_json_text(http_json_member(p, "patroni"), "scope");
	ok = strcmp(name, sm->name) == 0 && strcmp(scope, op->cfg->scope) == 0;
	if (!ok) {
		errbuf_printable(name[0] ? name : "(none)", shown, sizeof(shown));
		errbuf_set(err, errlen, "state file member %s: patroni at %s answers as member "
			   "%s of scope %s", sm->name, sm->api, shown,
			   scope[0] ? scope : "(none)");
	}
	json_object_put(p);
	return ok;
}

/*
 * --from-step: the state file's members against the live cluster.  When
 * patroni_url answers, its scope must be helper.ini's, every member it
 * lists must be in the state file with the same host, port and API, and a
 * state member it does not list must be stopped.  When it does not answer
 * (the run stopped the cluster) there is nothing live to compare: say so.
 */
bool
op_check_live(struct op *op, char *err, size_t errlen)
{
	struct json_object *cluster, *patroni, *members;
	struct op_member *sm, live;
	char why[512];
	bool seen[OP_MEMBERS_MAX] = {false};
	bool ok = false;
	size_t i, n;
	int k;

	cluster = patroni_get(op->cfg, NULL, "/cluster", why, sizeof(why));
	if (cluster == NULL) {
		log_warning("cannot check the state file's members against the live cluster: "
			    "%s (stopped by this run?)", why);
		return true;
	}
	patroni = patroni_get(op->cfg, NULL, "/patroni", err, errlen);
	if (patroni == NULL || !scope_matches(op, patroni, err, errlen))
		goto done;
	members = patroni_members(op->cfg, cluster, err, errlen);
	if (members == NULL)
		goto done;
	n = json_object_array_length(members);
	for (i = 0; i < n; i++) {
		if (!patroni_rest_member(json_object_array_get_idx(members, i), i, &live, err,
					 errlen))
			goto done;
		k = find_member(op, live.name);
		if (k < 0) {
			errbuf_set(err, errlen, "live member %s (patroni %s/cluster) is not in "
				   "the state file", live.name, op->cfg->patroni_url);
			goto done;
		}
		sm = &op->members[k];
		if (strcmp(live.api, sm->api) != 0 || strcmp(live.host, sm->host) != 0 ||
		    live.port != sm->port) {
			errbuf_set(err, errlen, "member %s: the live cluster has host %s port %d "
				   "api %s, the state file %s port %d api %s", live.name, live.host,
				   live.port, live.api, sm->host, sm->port, sm->api);
			goto done;
		}
		seen[k] = true;
	}
	for (k = 0; k < op->member_count; k++) {
		if (!seen[k] && !absent_member_ok(op, &op->members[k], err, errlen))
			goto done;
	}
	log_info("state file members match the live cluster (patroni %s/cluster)",
		 op->cfg->patroni_url);
	ok = true;
done:
	json_object_put(cluster);
	json_object_put(patroni);
	return ok;
}
