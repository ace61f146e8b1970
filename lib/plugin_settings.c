/*
 * plugin_settings.c - checks and reads the [consul] keys and the database
 * keys the consul_redirect plugin claims, with messages that name the key
 * and quote the value printably.
 */
#include "plugin_settings.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "consul_proxy.h"
#include "duration.h"
#include "errbuf.h"
#include "patroni_view.h"

static void
settings_bad_value(char *err, size_t errlen, const char *key,
		   const char *value, const char *why)
{
	char shown[ERRBUF_VALUE_MAX];

	errbuf_printable(value, shown, sizeof(shown));
	errbuf_set(err, errlen, "invalid value \"%s\" for %s: %s", shown, key, why);
}

static bool
settings_path(const char *key, const char *value, char *out, size_t len,
	      char *err, size_t errlen)
{
	if (strlen(value) >= len) {
		settings_bad_value(err, errlen, key, value, "path too long");
		return false;
	}
	if (value[0] != '\0' && access(value, R_OK) != 0) {
		char why[300];

		snprintf(why, sizeof(why), "cannot read it: %s", strerror(errno));
		settings_bad_value(err, errlen, key, value, why);
		return false;
	}
	snprintf(out, len, "%s", value);
	return true;
}

/* Patroni's namespace, surrounding slashes dropped: segments of [A-Za-z0-9._-] */
static bool
settings_namespace(const char *value, char *out, size_t len, char *err,
		   size_t errlen)
{
	char buf[256], out_name[256], *seg, *save = NULL;
	const char *start = value;
	size_t n;

	while (*start == '/')
		start++;
	n = strlen(start);
	while (n > 0 && start[n - 1] == '/')
		n--;
	if (n == 0 || n >= sizeof(buf) || n >= len) {
		settings_bad_value(err, errlen, "namespace", value,
				   "expected a name such as service");
		return false;
	}
	memcpy(buf, start, n);
	buf[n] = '\0';
	/* strtok_r cuts buf; out gets the name only once it is accepted */
	memcpy(out_name, buf, n + 1);
	for (seg = strtok_r(buf, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
		if (!patroni_name_valid(seg)) {
			settings_bad_value(err, errlen, "namespace", value,
					   "only letters, digits, '.', '_' and '-' are allowed");
			return false;
		}
	}
	if (strstr(out_name, "//")) {
		settings_bad_value(err, errlen, "namespace", value, "empty path segment");
		return false;
	}
	memcpy(out, out_name, n + 1);
	return true;
}

static bool
settings_duration(const char *key, const char *value, uint64_t max,
		  const char *max_text, bool zero_ok, uint64_t *out, char *err,
		  size_t errlen)
{
	char why[160];
	uint64_t usec;

	if (!duration_parse(value, &usec, why, sizeof(why))) {
		settings_bad_value(err, errlen, key, value, why);
		return false;
	}
	if (usec == 0 && !zero_ok) {
		settings_bad_value(err, errlen, key, value, "must be more than 0");
		return false;
	}
	if (max_text && usec > max) {
		snprintf(why, sizeof(why), "must be at most %s", max_text);
		settings_bad_value(err, errlen, key, value, why);
		return false;
	}
	*out = usec;
	return true;
}

void
plugin_settings_defaults(struct plugin_settings *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->consul.url, sizeof(s->consul.url), "%s", PLUGIN_DEFAULT_URL);
	snprintf(s->consul.namespace_, sizeof(s->consul.namespace_), "%s",
		 PLUGIN_DEFAULT_NAMESPACE);
	s->consul.wait_usec = CONSUL_DEFAULT_WAIT_USEC;
	s->consul.consistency = CONSUL_CONSISTENCY_DEFAULT;
	s->no_leader_timeout_usec = PLUGIN_DEFAULT_NO_LEADER_USEC;
}

bool
plugin_settings_set(struct plugin_settings *s, const char *key,
		    const char *value, char *err, size_t errlen)
{
	struct consul_settings *c = &s->consul;
	char why[200];

	if (strcmp(key, "url") == 0) {
		if (strlen(value) >= sizeof(c->url) ||
		    !consul_url_check(value, why, sizeof(why))) {
			settings_bad_value(err, errlen, key, value,
					   strlen(value) >= sizeof(c->url) ?
					   "too long" : why);
			return false;
		}
		snprintf(c->url, sizeof(c->url), "%s", value);
		return true;
	}
	if (strcmp(key, "token_file") == 0)
		return settings_path(key, value, s->token_file,
				     sizeof(s->token_file), err, errlen);
	if (strcmp(key, "ca_file") == 0)
		return settings_path(key, value, c->ca_file, sizeof(c->ca_file),
				     err, errlen);
	if (strcmp(key, "namespace") == 0)
		return settings_namespace(value, c->namespace_,
					  sizeof(c->namespace_), err, errlen);
	if (strcmp(key, "wait") == 0)
		return settings_duration(key, value, PLUGIN_MAX_WAIT_USEC, "10m", false,
					 &c->wait_usec, err, errlen);
	if (strcmp(key, "no_leader_timeout") == 0)
		return settings_duration(key, value, 0, NULL, true,
					 &s->no_leader_timeout_usec, err, errlen);
	if (strcmp(key, "member_pace") == 0)
		return settings_duration(key, value, PLUGIN_MAX_WAIT_USEC, "10m", true,
					 &s->member_pace_usec, err, errlen);
	if (strcmp(key, "proxy") == 0) {
		if (!consul_proxy_check(value, why, sizeof(why))) {
			char shown[ERRBUF_VALUE_MAX];

			/* the value may hold a proxy password: quote it without */
			consul_proxy_shown(value, shown, sizeof(shown));
			settings_bad_value(err, errlen, key, shown, why);
			return false;
		}
		snprintf(c->proxy, sizeof(c->proxy), "%s", value);
		return true;
	}
	if (strcmp(key, "consistency") == 0) {
		if (!consul_consistency_parse(value, &c->consistency)) {
			settings_bad_value(err, errlen, key, value,
					   "expected default, consistent or stale");
			return false;
		}
		return true;
	}
	if (strcmp(key, "datacenter") == 0) {
		const char *bad;

		/* empty: the agent's own datacenter, as when the key is absent */
		if (value[0] != '\0' && !consul_datacenter_valid(value, &bad)) {
			settings_bad_value(err, errlen, key, value, bad);
			return false;
		}
		snprintf(c->datacenter, sizeof(c->datacenter), "%s", value);
		return true;
	}
	errbuf_printable(key, why, sizeof(why));
	errbuf_set(err, errlen, "unknown key \"%s\" in [consul] (known: url, "
		   "token_file, ca_file, namespace, wait, no_leader_timeout, "
		   "consistency, proxy, datacenter, member_pace)", why);
	return false;
}

bool
plugin_db_setting_check(const char *key, const char *value, char *err,
			size_t errlen)
{
	enum patroni_entry_role role;

	if (strcmp(key, "patroni_scope") == 0) {
		if (!patroni_name_valid(value)) {
			settings_bad_value(err, errlen, key, value,
					   "a Patroni scope is letters, digits, '.', '_' and '-'");
			return false;
		}
		return true;
	}
	if (strcmp(key, "patroni_role") == 0) {
		if (!patroni_role_parse(value, &role)) {
			settings_bad_value(err, errlen, key, value,
					   "expected primary, replica or any");
			return false;
		}
		return true;
	}
	if (strcmp(key, "patroni_prefer") == 0) {
		struct patroni_prefer prefer;
		char why[PATRONI_VIEW_ERR_MAX], msg[PATRONI_VIEW_ERR_MAX + 64];

		if (!patroni_prefer_parse(value, &prefer, why, sizeof(why))) {
			snprintf(msg, sizeof(msg), "expected key:value[,key:value...]: %s", why);
			settings_bad_value(err, errlen, key, value, msg);
			return false;
		}
		return true;
	}
	errbuf_set(err, errlen, "unknown database key \"%s\"", key);
	return false;
}

bool
plugin_db_binding(const char *db, const char *scope, const char *role,
		  const char *prefer, struct plugin_binding *out,
		  char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->scope = scope;
	out->role = PATRONI_ROLE_PRIMARY;
	if (!scope) {
		errbuf_set(err, errlen, "database \"%s\": %s = %s needs patroni_scope",
			   db, role ? "patroni_role" : "patroni_prefer",
			   role ? role : prefer ? prefer : "");
		return false;
	}
	if (role)
		patroni_role_parse(role, &out->role);
	if (prefer && out->role == PATRONI_ROLE_PRIMARY) {
		errbuf_set(err, errlen,
			   "database \"%s\": patroni_prefer needs patroni_role = replica or any "
			   "(a primary entry follows the one leader)", db);
		return false;
	}
	if (prefer)
		patroni_prefer_parse(prefer, &out->prefer, NULL, 0);
	if (strlen(db) >= PATRONI_NAME_MAX) {
		errbuf_set(err, errlen, "database name \"%s\" too long", db);
		return false;
	}
	return true;
}
