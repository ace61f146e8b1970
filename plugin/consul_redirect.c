/*
 * consul_redirect.c - the plugin's entry point: claims [consul] and the
 * patroni_scope/patroni_role/patroni_prefer database keys, checks their
 * values (lib/plugin_settings.c), and on every (re)load turns the
 * configuration into one watch per scope.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "pgb_plugin.h"

#include "consul_client.h"
#include "consul_proxy.h"
#include "errbuf.h"
#include "plugin_settings.h"

#include "consul_redirect.h"
#include "curl_loop.h"
#include "plugin_log.h"
#include "recovery_check.h"
#include "show.h"
#include "watch.h"


/* [consul] as read, before the token file is */
struct redirect_settings {
	struct watch_options opts;
	char token_file[PLUGIN_PATH_MAX];
};

/* one [databases] entry with claimed keys */
struct redirect_binding {
	const char *db;
	const char *scope;
	enum patroni_entry_role role;
	struct patroni_prefer prefer;	/* count 0: none */
};

static const char *const redirect_db_keys[] = {
	"patroni_scope", "patroni_role", "patroni_prefer", NULL
};

static struct consul_redirect redirect_state;

/* --- hooks: checks while the file is read --- */

static bool
redirect_check_setting(void *ctx, const char *key, const char *value,
		       char *err, size_t errlen)
{
	struct plugin_settings scratch;

	plugin_settings_defaults(&scratch);
	return plugin_settings_set(&scratch, key, value, err, errlen);
}

static bool
redirect_check_db_setting(void *ctx, const char *db, const char *key,
			  const char *value, char *err, size_t errlen)
{
	return plugin_db_setting_check(key, value, err, errlen);
}

/* --- reload: the desired watches against the current ones --- */

static bool
redirect_read_config(const struct pgb_config *config,
		     struct redirect_settings *s,
		     struct redirect_binding *bindings, char *err,
		     size_t errlen)
{
	struct plugin_settings read;
	struct plugin_binding pb;
	int i, j;

	plugin_settings_defaults(&read);
	for (i = 0; i < config->section_count; i++)
		if (!plugin_settings_set(&read, config->section[i].key,
					 config->section[i].value, err, errlen))
			return false;
	memset(s, 0, sizeof(*s));
	s->opts.consul = read.consul;
	s->opts.no_leader_timeout_usec = read.no_leader_timeout_usec;
	s->opts.member_pace_usec = read.member_pace_usec;
	snprintf(s->token_file, sizeof(s->token_file), "%s", read.token_file);
	for (i = 0; i < config->db_count; i++) {
		const struct pgb_db_settings *d = &config->dbs[i];
		struct redirect_binding *b = &bindings[i];
		const char *scope = NULL, *role = NULL, *prefer = NULL;

		for (j = 0; j < d->count; j++) {
			const char *key = d->settings[j].key;

			if (!plugin_db_setting_check(key, d->settings[j].value, err, errlen))
				return false;
			if (strcmp(key, "patroni_scope") == 0)
				scope = d->settings[j].value;
			else if (strcmp(key, "patroni_prefer") == 0)
				prefer = d->settings[j].value;
			else
				role = d->settings[j].value;
		}
		if (!plugin_db_binding(d->name, scope, role, prefer, &pb, err, errlen))
			return false;
		b->db = d->name;
		b->scope = pb.scope;
		b->role = pb.role;
		b->prefer = pb.prefer;
	}
	if (s->token_file[0] != '\0' &&
	    !consul_token_read(s->token_file, s->opts.consul.token,
			       sizeof(s->opts.consul.token), err, errlen))
		return false;
	return true;
}

/*
 * anything that changes where or how Consul is asked: the [consul] keys
 * whose values differ, named as in pgbouncer.ini ("url, wait"); false
 * when none does
 */
static bool
redirect_consul_changed(const struct consul_settings *a,
			const struct consul_settings *b, char *names,
			size_t len)
{
	const struct {
		bool changed;
		const char *key;
	} keys[] = {
		{ strcmp(a->url, b->url) != 0, "url" },
		{ strcmp(a->token, b->token) != 0, "token_file" },
		{ strcmp(a->ca_file, b->ca_file) != 0, "ca_file" },
		{ strcmp(a->proxy, b->proxy) != 0, "proxy" },
		{ strcmp(a->namespace_, b->namespace_) != 0, "namespace" },
		{ strcmp(a->datacenter, b->datacenter) != 0, "datacenter" },
		{ a->wait_usec != b->wait_usec, "wait" },
		{ a->consistency != b->consistency, "consistency" },
	};
	size_t i, n = 0;

	names[0] = '\0';
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!keys[i].changed)
			continue;
		/* the names fit: their sum is far below any caller's buffer */
		n += (size_t) snprintf(names + n, len - n, "%s%s",
				      n > 0 ? ", " : "", keys[i].key);
		if (n >= len)
			break;
	}
	return names[0] != '\0';
}

static const struct redirect_binding *
redirect_desired(const struct redirect_binding *bindings, int n, const char *db)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(bindings[i].db, db) == 0)
			return &bindings[i];
	return NULL;
}

static struct watch *
redirect_find_watch(struct consul_redirect *cr, const char *scope)
{
	int i;

	for (i = 0; i < cr->watch_count; i++)
		if (strcmp(watch_scope(cr->watches[i]), scope) == 0)
			return cr->watches[i];
	return NULL;
}

/* drop bindings that are gone or changed, then watches left empty */
static void
redirect_drop(struct consul_redirect *cr, const struct redirect_binding *want,
	      int n)
{
	const struct redirect_binding *d;
	enum patroni_entry_role role;
	int i, j;

	for (i = 0; i < cr->watch_count; i++) {
		struct watch *w = cr->watches[i];

		for (j = watch_db_count(w) - 1; j >= 0; j--) {
			const char *db = watch_db_name(w, j);

			watch_has_db(w, db, &role);
			d = redirect_desired(want, n, db);
			if (!d || strcmp(d->scope, watch_scope(w)) != 0 ||
			    d->role != role ||
			    !patroni_prefer_equal(&d->prefer, watch_db_prefer(w, db))) {
				plugin_log(cr->api, PGB_LOG_INFO,
					     "database \"%s\" no longer follows scope \"%s\" as %s",
					     db, watch_scope(w), patroni_role_name(role));
				watch_unbind(w, db);
			}
		}
	}
	for (i = 0; i < cr->watch_count; i++) {
		if (watch_db_count(cr->watches[i]) > 0)
			continue;
		plugin_log(cr->api, PGB_LOG_INFO, "scope \"%s\": watch dropped",
			     watch_scope(cr->watches[i]));
		watch_free(cr->watches[i], true);
		cr->watches[i--] = cr->watches[--cr->watch_count];
	}
}

/* where a new watch asks; a proxy is shown without its user info */
static void
redirect_log_watching(struct consul_redirect *cr, const char *scope,
		      const struct consul_settings *c)
{
	char proxy[ERRBUF_VALUE_MAX];
	char dc[CONSUL_DATACENTER_MAX + 16] = "";

	if (c->datacenter[0] != '\0')
		snprintf(dc, sizeof(dc), " in datacenter %s", c->datacenter);
	if (c->proxy[0] == '\0') {
		plugin_log(cr->api, PGB_LOG_INFO, "scope \"%s\": watching %s%s at %s",
			   scope, c->namespace_, dc, c->url);
		return;
	}
	consul_proxy_shown(c->proxy, proxy, sizeof(proxy));
	plugin_log(cr->api, PGB_LOG_INFO,
		   "scope \"%s\": watching %s%s at %s through proxy %s",
		   scope, c->namespace_, dc, c->url, proxy);
}

/*
 * A held query waits up to no_leader_timeout for the plugin's clear error;
 * PgBouncer's own query_wait_timeout, if shorter or equal, disconnects the
 * client first.  Said once per pair of values.
 */
static void
redirect_check_wait_timeouts(struct consul_redirect *cr)
{
	char buf[64], *end;
	double qwt;
	uint64_t qwt_usec;

	if (!cr->api->get_setting("query_wait_timeout", buf, sizeof(buf)))
		return;
	qwt = strtod(buf, &end);
	if (end == buf || qwt <= 0)
		return;			/* 0: PgBouncer never ends the wait */
	qwt_usec = (uint64_t) (qwt * 1e6);
	if (cr->opts.no_leader_timeout_usec < qwt_usec) {
		cr->warned_wait_usec = 0;
		return;
	}
	if (cr->warned_wait_usec == qwt_usec + cr->opts.no_leader_timeout_usec)
		return;
	cr->warned_wait_usec = qwt_usec + cr->opts.no_leader_timeout_usec;
	plugin_log(cr->api, PGB_LOG_WARNING,
		   "[consul] no_leader_timeout (%.3gs) is not below query_wait_timeout (%ss): "
		   "a query held without a leader is ended by PgBouncer's query_wait_timeout, "
		   "which disconnects the client, before no_leader_timeout fails it with an "
		   "error naming the scope; set no_leader_timeout lower",
		   (double) cr->opts.no_leader_timeout_usec / 1e6, buf);
}

static bool
redirect_apply(struct consul_redirect *cr, const struct redirect_settings *s,
	       const struct redirect_binding *want, int n, char *err,
	       size_t errlen)
{
	char changed[160];
	bool restart = cr->configured &&
		       redirect_consul_changed(&cr->opts.consul, &s->opts.consul,
					       changed, sizeof(changed));
	struct watch **grown;
	bool *moved = calloc(n > 0 ? n : 1, sizeof(*moved));
	enum patroni_entry_role role;
	struct watch *w;
	int i;

	if (!moved)
		goto oom;
	/* an entry that follows another scope or role now: its address is stale */
	for (i = 0; i < n; i++) {
		w = consul_redirect_find_db(cr, want[i].db, &role);
		moved[i] = w && (strcmp(watch_scope(w), want[i].scope) != 0 ||
				 role != want[i].role);
	}
	redirect_drop(cr, want, n);
	for (i = 0; i < cr->watch_count; i++) {
		if (restart) {
			plugin_log(cr->api, PGB_LOG_INFO,
				     "scope \"%s\": consul settings changed (%s), watch restarted",
				     watch_scope(cr->watches[i]), changed);
			watch_restart(cr->watches[i], &s->opts);
		} else {
			watch_set_options(cr->watches[i], &s->opts);
			watch_reapply(cr->watches[i]);
		}
	}
	cr->opts = s->opts;
	cr->configured = true;
	for (i = 0; i < n; i++) {
		w = redirect_find_watch(cr, want[i].scope);
		if (w && watch_has_db(w, want[i].db, NULL))
			continue;
		if (!w) {
			grown = realloc(cr->watches,
					(cr->watch_count + 1) * sizeof(*grown));
			if (!grown)
				goto oom;
			cr->watches = grown;
			w = watch_new(cr->api, cr->loop, &cr->agent, want[i].scope, &s->opts);
			if (!w)
				goto oom;
			cr->watches[cr->watch_count++] = w;
			redirect_log_watching(cr, want[i].scope, &s->opts.consul);
		}
		if (!watch_bind(w, want[i].db, want[i].role, &want[i].prefer, moved[i]))
			goto oom;
		plugin_log(cr->api, PGB_LOG_INFO, "database \"%s\" follows scope \"%s\" as %s%s",
			     want[i].db, want[i].scope, patroni_role_name(want[i].role),
			     moved[i] ? "; held until the scope answers" : "");
	}
	free(moved);
	/* https: Consul's listener speaks HTTP/2, many scopes per connection */
	curl_loop_expect_h2(cr->loop, strncasecmp(cr->opts.consul.url, "https://", 8) == 0,
			    cr->watch_count);
	redirect_check_wait_timeouts(cr);
	return true;
oom:
	free(moved);
	errbuf_set(err, errlen, "out of memory while applying the configuration");
	return false;
}

static bool
redirect_reload(void *ctx, const struct pgb_config *config, char *err,
		size_t errlen)
{
	struct consul_redirect *cr = ctx;
	struct redirect_settings s;
	struct redirect_binding *want;
	bool ok;

	if (!cr->api) {
		errbuf_set(err, errlen, "reload before init");
		return false;
	}
	want = calloc(config->db_count > 0 ? config->db_count : 1, sizeof(*want));
	if (!want) {
		errbuf_set(err, errlen, "out of memory");
		return false;
	}
	ok = redirect_read_config(config, &s, want, err, errlen) &&
	     redirect_apply(cr, &s, want, config->db_count, err, errlen);
	free(want);
	memset(s.opts.consul.token, 0, sizeof(s.opts.consul.token));
	return ok;
}

/* --- life cycle --- */

struct watch *
consul_redirect_find_db(struct consul_redirect *cr, const char *db,
			enum patroni_entry_role *role)
{
	int i;

	for (i = 0; i < cr->watch_count; i++)
		if (watch_has_db(cr->watches[i], db, role))
			return cr->watches[i];
	return NULL;
}

static bool
redirect_init(void *ctx, const struct pgb_plugin_api *api, char *err,
	      size_t errlen)
{
	struct consul_redirect *cr = ctx;
	CURLcode rc;

	if (api->api_version != PGB_PLUGIN_API_VERSION) {
		errbuf_set(err, errlen, "plugin api version %d, expected %d",
			   api->api_version, PGB_PLUGIN_API_VERSION);
		return false;
	}
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK) {
		errbuf_set(err, errlen, "curl_global_init: %s", curl_easy_strerror(rc));
		return false;
	}
	cr->api = api;
	cr->loop = curl_loop_new(api->event_base, err, errlen);
	if (!cr->loop)
		goto fail;
	if (!show_register(cr)) {
		errbuf_set(err, errlen, "cannot register SHOW CONSUL and SHOW CONSUL_STATS");
		goto fail;
	}
	return true;
fail:
	curl_loop_free(cr->loop);
	cr->loop = NULL;
	cr->api = NULL;
	curl_global_cleanup();
	return false;
}

static void
redirect_shutdown(void *ctx)
{
	struct consul_redirect *cr = ctx;
	int i;

	if (!cr->api)
		return;
	/* transfers and timers first; PgBouncer is going away: no holds to undo */
	for (i = 0; i < cr->watch_count; i++)
		watch_free(cr->watches[i], false);
	free(cr->watches);
	cr->watches = NULL;
	cr->watch_count = 0;
	curl_loop_free(cr->loop);
	cr->loop = NULL;
	memset(&cr->agent, 0, sizeof(cr->agent));
	memset(&cr->opts, 0, sizeof(cr->opts));
	cr->configured = false;
	cr->api = NULL;
	curl_global_cleanup();
}

static const char *
redirect_server_check_query(void *ctx, const char *db)
{
	return recovery_check_query(ctx, db);
}

static enum pgb_check_verdict
redirect_server_check_verdict(void *ctx, const char *db, const char *host,
			      int port, const char *value, unsigned int *again_ms,
			      char *err, size_t errlen)
{
	return recovery_check_verdict(ctx, db, host, port, value, again_ms, err, errlen);
}

__attribute__((visibility("default"))) bool
pgb_plugin_load(struct pgb_plugin *plugin)
{
	memset(plugin, 0, sizeof(*plugin));
	plugin->api_version = PGB_PLUGIN_API_VERSION;
	plugin->name = "consul_redirect";
	plugin->ctx = &redirect_state;
	plugin->section = "consul";
	plugin->db_keys = redirect_db_keys;
	plugin->check_setting = redirect_check_setting;
	plugin->check_db_setting = redirect_check_db_setting;
	plugin->init = redirect_init;
	plugin->reload = redirect_reload;
	plugin->shutdown = redirect_shutdown;
	plugin->server_check_query = redirect_server_check_query;
	plugin->server_check_verdict = redirect_server_check_verdict;
	return true;
}
