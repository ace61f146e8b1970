/*
 * Patroni REST reads shared by the subcommands: GET as JSON, api_url
 * bases and /cluster member records, all checked before use.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "http.h"
#include "patroni_rest.h"

static bool
copy_text(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return false;
	strcpy(dst, src);
	return true;
}

struct json_object *
patroni_get(const struct helper_config *cfg, const char *base, const char *path, char *err,
	    size_t errlen)
{
	static struct helper_config other;
	const struct helper_config *use = cfg;
	struct consul_response resp;
	struct json_object *obj;
	char what[HELPER_VALUE_MAX + 600];

	if (base != NULL) {
		/* another member's API: the same Patroni settings, another URL */
		other = *cfg;
		if (!copy_text(other.patroni_url, sizeof(other.patroni_url), base)) {
			errbuf_set(err, errlen, "patroni url too long");
			return NULL;
		}
		use = &other;
	}
	if (!http_patroni(use, "GET", path, NULL, HTTP_TIMEOUT_MS, &resp, err, errlen))
		return NULL;
	snprintf(what, sizeof(what), "patroni %s%s", use->patroni_url, path);
	obj = http_json(&resp, json_type_object, what, err, errlen);
	consul_response_free(&resp);
	return obj;
}

bool
patroni_api_base(const char *api_url, char *out, size_t len)
{
	const char *p = strstr(api_url, "://");
	const char *slash;

	if (p == NULL || !copy_text(out, len, api_url))
		return false;
	slash = strchr(p + 3, '/');
	if (slash != NULL)
		out[slash - api_url] = '\0';
	return true;
}

static bool
name_ok(const char *s)
{
	return s[0] != '\0' &&
		strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
		strlen(s);
}

bool
patroni_rest_member(struct json_object *m, size_t i, struct patroni_rest_member *out,
		    char *err, size_t errlen)
{
	struct json_object *port = http_json_member(m, "port"), *lag;
	const char *api = http_json_text(m, "api_url");

	memset(out, 0, sizeof(*out));
	if (!copy_text(out->name, sizeof(out->name), http_json_text(m, "name")) ||
	    !name_ok(out->name)) {
		errbuf_set(err, errlen, "patroni /cluster: member %zu has an unusable name", i + 1);
		return false;
	}
	if (!copy_text(out->host, sizeof(out->host), http_json_text(m, "host")) ||
	    !patroni_host_valid(out->host) || port == NULL ||
	    json_object_get_int(port) < 1 || json_object_get_int(port) > 65535) {
		errbuf_set(err, errlen, "patroni /cluster: member %s has an unusable host or port",
			   out->name);
		return false;
	}
	out->port = json_object_get_int(port);
	if (*api != '\0' && !patroni_api_base(api, out->api, sizeof(out->api))) {
		errbuf_set(err, errlen, "patroni /cluster: member %s has an unusable api_url",
			   out->name);
		return false;
	}
	copy_text(out->role, sizeof(out->role), http_json_text(m, "role"));
	copy_text(out->state, sizeof(out->state), http_json_text(m, "state"));
	lag = http_json_member(m, "lag");
	out->lag = lag && json_object_is_type(lag, json_type_int) ? json_object_get_int64(lag) : -1;
	return true;
}

struct json_object *
patroni_members(const struct helper_config *cfg, struct json_object *cluster, char *err,
		size_t errlen)
{
	struct json_object *members = http_json_member(cluster, "members");

	if (members == NULL || !json_object_is_type(members, json_type_array)) {
		errbuf_set(err, errlen, "patroni %s/cluster: no members list", cfg->patroni_url);
		return NULL;
	}
	return members;
}
