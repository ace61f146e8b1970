/*
 * libFuzzer target for lib/plugin_settings.c: any bytes as the plugin's
 * part of pgbouncer.ini ("[consul]" key = value lines, "[databases]"
 * name = key=value ... lines); what is accepted must be what the plugin
 * can use, and every refusal must say why.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consul_client.h"
#include "consul_proxy.h"
#include "plugin_settings.h"
#include "patroni_view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
fi_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

static void
fi_refused(const char *err, size_t errlen)
{
	/* a refusal says something, within its buffer */
	if (err[0] == '\0' || strnlen(err, errlen) >= errlen)
		abort();
}

static void
fi_check_settings(const struct plugin_settings *s)
{
	char shown[CONSUL_URL_MAX];
	const char *why;
	size_t n;

	if (!consul_url_check(s->consul.url, NULL, 0))
		abort();
	n = strlen(s->consul.namespace_);
	if (n == 0 || s->consul.namespace_[0] == '/' || s->consul.namespace_[n - 1] == '/' ||
	    strstr(s->consul.namespace_, "//") != NULL)
		abort();
	if (s->consul.wait_usec == 0 || s->consul.wait_usec > PLUGIN_MAX_WAIT_USEC)
		abort();
	if (s->member_pace_usec > PLUGIN_MAX_WAIT_USEC)
		abort();
	if (s->consul.proxy[0] != '\0') {
		if (!consul_proxy_check(s->consul.proxy, NULL, 0))
			abort();
		/* shown without user info */
		consul_proxy_shown(s->consul.proxy, shown, sizeof(shown));
		if (strchr(shown, '@') != NULL)
			abort();
	}
	if (s->consul.consistency != CONSUL_CONSISTENCY_DEFAULT &&
	    s->consul.consistency != CONSUL_CONSISTENCY_CONSISTENT &&
	    s->consul.consistency != CONSUL_CONSISTENCY_STALE)
		abort();
	if (s->consul.datacenter[0] != '\0' &&
	    !consul_datacenter_valid(s->consul.datacenter, &why))
		abort();
}

/* "name = key=value key=value": the claimed keys, checked one by one, then together */
static void
fi_database(char *line)
{
	char err[1024], *eq = strchr(line, '='), *name, *tok, *save = NULL;
	const char *scope = NULL, *role = NULL, *prefer = NULL;
	struct plugin_binding b;
	enum patroni_entry_role r;

	if (eq == NULL)
		return;
	*eq = '\0';
	name = fi_trim(line);
	for (tok = strtok_r(eq + 1, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		char *v = strchr(tok, '=');

		if (v == NULL || strncmp(tok, "patroni_", 8) != 0)
			continue;
		*v++ = '\0';
		err[0] = '\0';
		if (!plugin_db_setting_check(tok, v, err, sizeof(err))) {
			fi_refused(err, sizeof(err));
			return;
		}
		if (strcmp(tok, "patroni_scope") == 0)
			scope = v;
		else if (strcmp(tok, "patroni_prefer") == 0)
			prefer = v;
		else if (strcmp(tok, "patroni_role") == 0)
			role = v;
		else
			abort();	/* an unknown key was accepted */
	}
	if (!scope && !role && !prefer)
		return;
	err[0] = '\0';
	if (!plugin_db_binding(name, scope, role, prefer, &b, err, sizeof(err))) {
		fi_refused(err, sizeof(err));
		return;
	}
	if (b.scope != scope || !patroni_name_valid(b.scope) || strlen(name) >= PATRONI_NAME_MAX)
		abort();
	if (role && (!patroni_role_parse(role, &r) || r != b.role))
		abort();
	if (!role && b.role != PATRONI_ROLE_PRIMARY)
		abort();
	/* a primary entry follows the one leader: never a preference */
	if (b.role == PATRONI_ROLE_PRIMARY && b.prefer.count != 0)
		abort();
	if ((prefer != NULL) != (b.prefer.count > 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plugin_settings s, before;
	char *text, *line, *save = NULL;
	char err[1024];
	int section = 0;	/* 0 none, 1 consul, 2 databases */

	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	plugin_settings_defaults(&s);
	fi_check_settings(&s);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *l = fi_trim(line), *eq;

		if (*l == '[') {
			section = strcmp(l, "[consul]") == 0 ? 1 :
				  strcmp(l, "[databases]") == 0 ? 2 : 0;
			continue;
		}
		if (section == 2) {
			fi_database(l);
			continue;
		}
		eq = strchr(l, '=');
		if (section != 1 || eq == NULL)
			continue;
		*eq = '\0';
		err[0] = '\0';
		memcpy(&before, &s, sizeof(s));
		if (!plugin_settings_set(&s, fi_trim(l), fi_trim(eq + 1), err, sizeof(err))) {
			fi_refused(err, sizeof(err));
			/* a refused value is not stored, not even in part */
			if (memcmp(&before, &s, sizeof(s)) != 0)
				abort();
		}
		fi_check_settings(&s);
	}
	free(text);
	return 0;
}
