/*
 * register: keep this member's Consul services in step with its Patroni
 * role.  Service <scope> with tag primary/replica/any, one per endpoint
 * that answers 200 (/primary, /replica, /read-only), each with a Consul
 * HTTP check on that endpoint so Consul sees a role change or a dead
 * Patroni even when this process is gone, which is why a stop leaves them
 * registered.  SIGHUP reads helper.ini again.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "daemon.h"
#include "duration.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "patroni_rest.h"
#include "patroni_member.h"

#define REG_ID_PREFIX "pgbc-helper:"

struct reg_kind {
	const char *role;	/* ID suffix */
	const char *endpoint;	/* Patroni endpoint that answers 200 in that role */
	const char *tag;	/* tag the prepared queries select on */
};

static const struct reg_kind reg_kinds[] = {
	{"writer", "/primary", "primary"},
	{"query", "/replica", "replica"},
	{"any", "/read-only", "any"},
	{NULL, NULL, NULL}
};

struct reg_self {
	char name[256];
	char host[PATRONI_HOST_MAX];
	int port;
};

struct reg_options {
	uint64_t interval_usec;
	uint64_t check_interval_usec;
	uint64_t deregister_after_usec;
};

/* "pgbc-helper:<scope>:<member>:<role>": no '/', so never Patroni's <scope>/<member> */
static void
reg_id(const struct helper_config *cfg, const char *member, const char *role, char *out,
       size_t len)
{
	snprintf(out, len, REG_ID_PREFIX "%s:%s:%s", cfg->scope, member, role);
}

/* name, host and port of a /cluster member record */
static bool
self_from_member(const struct helper_config *cfg, struct json_object *m, struct reg_self *self,
		 char *err, size_t errlen)
{
	struct patroni_rest_member pm;
	char why[512];

	if (!patroni_rest_member(m, 0, &pm, why, sizeof(why))) {
		errbuf_set(err, errlen, "%s (patroni_url %s)", why, cfg->patroni_url);
		return false;
	}
	snprintf(self->name, sizeof(self->name), "%s", pm.name);
	snprintf(self->host, sizeof(self->host), "%s", pm.host);
	self->port = pm.port;
	return true;
}

/*
 * Two /patroni answers from the same Patroni: the same postmaster start
 * time (microseconds, set when its postgres started) of the same system.
 */
static bool
same_patroni(struct json_object *a, struct json_object *b)
{
	const char *t = http_json_text(a, "postmaster_start_time");

	return t[0] != '\0' && strcmp(t, http_json_text(b, "postmaster_start_time")) == 0 &&
		strcmp(http_json_text(a, "database_system_identifier"),
		       http_json_text(b, "database_system_identifier")) == 0;
}

/*
 * Which member of /cluster is the Patroni at patroni_url.  Its own GET
 * /patroni says so in "patroni": {"name"} (Patroni 4; 3.0.2 has only
 * version and scope).  Without the name, ask every member's api_url for
 * its /patroni and take the one answer that is the local one (same_patroni).
 * The URL strings are never compared: patroni_url is usually 127.0.0.1
 * while api_url carries the connect_address.
 */
static bool
find_self(const struct helper_config *cfg, struct reg_self *self, char *err, size_t errlen)
{
	struct json_object *local, *cluster = NULL, *members, *m, *other, *found = NULL;
	char msg[1024];
	const char *name, *scope;
	size_t i;
	int matches = 0;
	bool ok = false;

	local = patroni_get(cfg, NULL, "/patroni", err, errlen);
	if (local == NULL)
		return false;
	name = http_json_text(http_json_member(local, "patroni"), "name");
	scope = http_json_text(http_json_member(local, "patroni"), "scope");
	if (scope[0] != '\0' && strcmp(scope, cfg->scope) != 0) {
		errbuf_set(err, errlen, "patroni %s serves scope \"%s\", not \"%s\"",
			   cfg->patroni_url, scope, cfg->scope);
		goto done;
	}
	cluster = patroni_get(cfg, NULL, "/cluster", err, errlen);
	if (cluster == NULL)
		goto done;
	members = patroni_members(cfg, cluster, err, errlen);
	if (members == NULL)
		goto done;
	for (i = 0; i < json_object_array_length(members); i++) {
		m = json_object_array_get_idx(members, i);
		if (name[0] != '\0') {
			if (strcmp(http_json_text(m, "name"), name) != 0)
				continue;
			found = m;
			matches = 1;
			break;
		}
		if (http_json_text(m, "api_url")[0] == '\0')
			continue;
		other = patroni_get(cfg, http_json_text(m, "api_url"), "", msg, sizeof(msg));
		if (other != NULL && same_patroni(local, other)) {
			found = m;
			matches++;
		}
		json_object_put(other);
	}
	if (matches == 1)
		ok = self_from_member(cfg, found, self, err, errlen);
	else if (name[0] != '\0')
		errbuf_set(err, errlen, "patroni /cluster at %s does not list member %s",
			   cfg->patroni_url, name);
	else
		errbuf_set(err, errlen, "cannot tell which member patroni %s is: %s",
			   cfg->patroni_url, matches == 0 ?
			   "no member's api_url answers with its postmaster start time" :
			   "several members' api_url answer like it");
done:
	json_object_put(cluster);
	json_object_put(local);
	return ok;
}

/* our services on the agent for this member: map ID -> service (caller puts) */
static struct json_object *
list_services(const struct helper_config *cfg, char *err, size_t errlen)
{
	struct consul_response resp;
	struct json_object *all;

	if (!http_consul(cfg, "GET", "/v1/agent/services", NULL, HTTP_TIMEOUT_MS, &resp,
			 err, errlen))
		return NULL;
	if (resp.status != 200) {
		errbuf_set(err, errlen, "GET /v1/agent/services: consul answered HTTP %ld",
			   resp.status);
		consul_response_free(&resp);
		return NULL;
	}
	all = http_json(&resp, json_type_object, "GET /v1/agent/services", err, errlen);
	consul_response_free(&resp);
	return all;
}

/* is the registered service what we would register now? */
static bool
service_current(struct json_object *svc, const struct reg_self *self, const char *service,
		const struct reg_kind *k)
{
	struct json_object *tags = http_json_member(svc, "Tags");

	return svc != NULL &&
		strcmp(http_json_text(svc, "Service"), service) == 0 &&
		strcmp(http_json_text(svc, "Address"), self->host) == 0 &&
		json_object_get_int(http_json_member(svc, "Port")) == self->port &&
		tags && json_object_is_type(tags, json_type_array) &&
		json_object_array_length(tags) == 1 &&
		json_object_is_type(json_object_array_get_idx(tags, 0), json_type_string) &&
		strcmp(json_object_get_string(json_object_array_get_idx(tags, 0)), k->tag) == 0;
}

static bool
service_register(const struct helper_config *cfg, const struct reg_options *o,
		 const struct reg_self *self, const struct reg_kind *k, char *err, size_t errlen)
{
	struct consul_response resp;
	struct json_object *body, *tags, *check, *meta;
	char id[600], service[256], check_url[CONSUL_URL_MAX + 32];
	char interval[64], timeout[64], dereg[64], check_name[64];
	uint64_t timeout_usec;
	bool ok;

	reg_id(cfg, self->name, k->role, id, sizeof(id));
	helper_service_name(cfg->scope, service, sizeof(service));
	snprintf(check_url, sizeof(check_url), "%s%s", cfg->patroni_url, k->endpoint);
	duration_format(o->check_interval_usec, interval, sizeof(interval));
	/* a check must answer within its interval, and Patroni within a few seconds */
	timeout_usec = o->check_interval_usec < 3 * DURATION_USEC_PER_SEC ?
		o->check_interval_usec : 3 * DURATION_USEC_PER_SEC;
	duration_format(timeout_usec, timeout, sizeof(timeout));
	duration_format(o->deregister_after_usec, dereg, sizeof(dereg));

	body = json_object_new_object();
	tags = json_object_new_array();
	check = json_object_new_object();
	meta = json_object_new_object();
	json_object_array_add(tags, json_object_new_string(k->tag));
	json_object_object_add(meta, "patroni_member", json_object_new_string(self->name));
	json_object_object_add(meta, "patroni_scope", json_object_new_string(cfg->scope));
	json_object_object_add(meta, "registered_by", json_object_new_string("pgbouncer-helper"));
	snprintf(check_name, sizeof(check_name), "patroni %s", k->endpoint);
	json_object_object_add(check, "Name", json_object_new_string(check_name));
	json_object_object_add(check, "HTTP", json_object_new_string(check_url));
	json_object_object_add(check, "Method", json_object_new_string("GET"));
	json_object_object_add(check, "Interval", json_object_new_string(interval));
	json_object_object_add(check, "Timeout", json_object_new_string(timeout));
	json_object_object_add(check, "DeregisterCriticalServiceAfter",
			       json_object_new_string(dereg));
	json_object_object_add(body, "ID", json_object_new_string(id));
	json_object_object_add(body, "Name", json_object_new_string(service));
	json_object_object_add(body, "Tags", tags);
	json_object_object_add(body, "Address", json_object_new_string(self->host));
	json_object_object_add(body, "Port", json_object_new_int(self->port));
	json_object_object_add(body, "Meta", meta);
	json_object_object_add(body, "Check", check);
	ok = http_consul(cfg, "PUT", "/v1/agent/service/register?replace-existing-checks",
			 json_object_to_json_string(body), HTTP_TIMEOUT_MS, &resp, err, errlen);
	json_object_put(body);
	if (!ok)
		return false;
	if (resp.status != 200) {
		errbuf_set(err, errlen, "registering %s: consul answered HTTP %ld: %.200s", id,
			   resp.status, resp.body ? resp.body : "");
		consul_response_free(&resp);
		return false;
	}
	consul_response_free(&resp);
	log_info("registered service %s (id %s, tag %s, %s:%d, check %s every %s)", service, id,
		 k->tag, self->host, self->port, check_url, interval);
	return true;
}

static bool
service_deregister(const struct helper_config *cfg, const char *id, const char *why,
		   char *err, size_t errlen)
{
	struct consul_response resp;
	char path[700];

	snprintf(path, sizeof(path), "/v1/agent/service/deregister/%s", id);
	if (!http_consul(cfg, "PUT", path, NULL, HTTP_TIMEOUT_MS, &resp, err, errlen))
		return false;
	if (resp.status != 200) {
		errbuf_set(err, errlen, "deregistering %s: consul answered HTTP %ld", id,
			   resp.status);
		consul_response_free(&resp);
		return false;
	}
	consul_response_free(&resp);
	log_info("deregistered service id %s (%s)", id, why);
	return true;
}

/* one round: ask Patroni, then add/remove our services to match */
static bool
register_round(const struct helper_config *cfg, const struct reg_options *o,
	       struct reg_self *self, char *err, size_t errlen)
{
	struct consul_response resp;
	struct json_object *services;
	const struct reg_kind *k;
	char id[600], service[256];
	char msg[1024];
	long status;
	bool ok = true;

	if (!find_self(cfg, self, err, errlen))
		return false;
	services = list_services(cfg, err, errlen);
	if (services == NULL)
		return false;
	helper_service_name(cfg->scope, service, sizeof(service));
	for (k = reg_kinds; k->role; k++) {
		reg_id(cfg, self->name, k->role, id, sizeof(id));
		if (!http_patroni(cfg, "GET", k->endpoint, NULL, HTTP_TIMEOUT_MS, &resp, msg,
				  sizeof(msg))) {
			/* Patroni unreachable: leave the services to their Consul checks */
			errbuf_set(err, errlen, "%s", msg);
			ok = false;
			break;
		}
		status = resp.status;
		consul_response_free(&resp);
		if (status == 200) {
			if (service_current(http_json_member(services, id), self, service, k))
				continue;
			if (!service_register(cfg, o, self, k, msg, sizeof(msg))) {
				errbuf_set(err, errlen, "%s", msg);
				ok = false;
			}
		} else if (http_json_member(services, id) != NULL) {
			snprintf(msg, sizeof(msg), "patroni %s answered HTTP %ld", k->endpoint, status);
			if (!service_deregister(cfg, id, msg, msg, sizeof(msg))) {
				errbuf_set(err, errlen, "%s", msg);
				ok = false;
			}
		}
	}
	json_object_put(services);
	return ok;
}

int
cmd_register(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"once", no_argument, NULL, 'o'},
		{"interval", required_argument, NULL, 'i'},
		{"check-interval", required_argument, NULL, 'c'},
		{"deregister-after", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0}
	};
	struct reg_options o = {
		UINT64_C(5) * DURATION_USEC_PER_SEC,
		UINT64_C(5) * DURATION_USEC_PER_SEC,
		UINT64_C(120) * DURATION_USEC_PER_SEC
	};
	struct reg_self self;
	char err[1024], last_err[1024] = "";
	bool once = false;
	bool first = true;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			once = true;
			break;
		case 'i':
			if (!cmd_parse_duration("interval", optarg, &o.interval_usec))
				return HELPER_EXIT_USAGE;
			break;
		case 'c':
			if (!cmd_parse_duration("check-interval", optarg, &o.check_interval_usec))
				return HELPER_EXIT_USAGE;
			break;
		case 'd':
			if (!cmd_parse_duration("deregister-after", optarg,
						   &o.deregister_after_usec))
				return HELPER_EXIT_USAGE;
			if (o.deregister_after_usec < UINT64_C(60) * DURATION_USEC_PER_SEC) {
				log_error("--deregister-after: consul's minimum is 1m");
				return HELPER_EXIT_USAGE;
			}
			break;
		default:
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	if (!cmd_no_more_args(argc, argv, optind) || !cmd_scope_set(cfg))
		return HELPER_EXIT_USAGE;
	memset(&self, 0, sizeof(self));
	if (once) {
		if (!register_round(cfg, &o, &self, err, sizeof(err))) {
			log_error("%s", err);
			return HELPER_EXIT_FAIL;
		}
		log_info("services of member %s in step with patroni %s", self.name,
			 cfg->patroni_url);
		return HELPER_EXIT_OK;
	}

	/*
	 * No deregistration on the way out: a stop or a restart must not take
	 * the writer out of DNS while the primary is healthy.  Each service's
	 * own Consul check notices a dead host or Patroni.
	 */
	daemon_install_signals();
	log_info("following patroni %s for scope %s every %.1f s", cfg->patroni_url, cfg->scope,
		 (double) o.interval_usec / 1e6);
	while (!daemon_stop) {
		if (daemon_reload) {
			daemon_reload_config(cfg);
			last_err[0] = '\0';
			continue;
		}
		if (register_round(cfg, &o, &self, err, sizeof(err))) {
			if (last_err[0] != '\0')
				log_info("patroni and consul answer again");
			last_err[0] = '\0';
		} else if (!daemon_stop && strcmp(err, last_err) != 0) {
			log_error("%s", err);
			snprintf(last_err, sizeof(last_err), "%s", err);
		}
		if (first)
			daemon_notify("READY=1");
		first = false;
		daemon_sleep(o.interval_usec);
	}
	daemon_notify("STOPPING=1");
	log_info("stopping on signal, services left registered under their consul checks");
	return HELPER_EXIT_OK;
}
