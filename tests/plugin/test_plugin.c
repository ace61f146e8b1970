/*
 * test_plugin.c - a PgBouncer plugin for tests only: claims [testplugin]
 * and the test_tag key on [databases] lines, and runs the API calls that
 * a test writes into <control_dir>/cmd, answering in <control_dir>/result.
 * Its server check answers AGAIN again_count times, and while the value
 * is again_value, waiting again_ms; with TEST_PLUGIN_NO_VERDICT set in
 * the environment it has only server_check_result, which refuses (and
 * retries at once through a hold) where it would have answered AGAIN.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "pgb_plugin.h"

#define TP_MAX_DBS 16
#define TP_MAX_ADDRS 8
#define TP_POLL_USEC 20000

struct tp_db {
	char name[64];
	char tag[64];
};

struct tp_state {
	const struct pgb_plugin_api *api;
	struct event *poll_ev;
	struct event *retry_ev;		/* releases the hold after a refusal */
	char retry_db[64];
	char control_dir[512];
	char check_query[256];
	char refuse_value[64];
	char again_value[64];
	int again_count;		/* AGAINs still to answer */
	unsigned int again_ms;
	int agains;
	int value_changes;		/* checks whose value differs from the last */
	char last_check[64];
	char last_check_addr[300];	/* host:port the last check was told */
	struct tp_db dbs[TP_MAX_DBS];
	int db_count;
	int reloads;
	int checks;
	int refusals;
};

static struct tp_state tp;

static const char *const tp_db_keys[] = { "test_tag", NULL };

static bool
tp_check_setting(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
	if (strcmp(key, "control_dir") == 0) {
		if (value[0] != '/') {
			snprintf(err, errlen, "must be an absolute path, not \"%s\"", value);
			return false;
		}
		return true;
	}
	if (strcmp(key, "check_query") == 0 || strcmp(key, "refuse_value") == 0 ||
	    strcmp(key, "refuse_config") == 0 || strcmp(key, "again_count") == 0 ||
	    strcmp(key, "again_value") == 0 || strcmp(key, "again_ms") == 0)
		return true;
	snprintf(err, errlen, "unknown key");
	return false;
}

static bool
tp_check_db_setting(void *ctx, const char *db, const char *key, const char *value,
		    char *err, size_t errlen)
{
	const char *c;

	if (!*value) {
		snprintf(err, errlen, "empty test_tag");
		return false;
	}
	for (c = value; *c; c++) {
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '_') {
			snprintf(err, errlen, "invalid test_tag \"%s\": only [a-z0-9_]", value);
			return false;
		}
	}
	return true;
}

static void
tp_write_file(const char *name, const char *text)
{
	char path[600], tmp[610];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tp.control_dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

static bool tp_show(void *ctx, struct pgb_show *show);

/* "host:port host:port ..." (the port after the last colon) */
static int
tp_parse_addresses(char *text, struct pgb_address *addrs)
{
	char *word, *colon, *save = NULL;
	int n = 0;

	for (word = strtok_r(text, " ", &save); word && n < TP_MAX_ADDRS;
	     word = strtok_r(NULL, " ", &save)) {
		colon = strrchr(word, ':');
		if (!colon)
			return -1;
		*colon = 0;
		/* "-" stands for an empty host, "none" for NULL */
		addrs[n].host = strcmp(word, "none") == 0 ? NULL : strcmp(word, "-") == 0 ? "" : word;
		addrs[n].port = atoi(colon + 1);
		n++;
	}
	return n;
}

/* one command line: verb db [args] */
static void
tp_run(char *line, char *out, size_t outlen)
{
	struct pgb_db_info info;
	char *verb, *db, *rest, *save = NULL;
	int port, n;

	verb = strtok_r(line, " \n", &save);
	db = strtok_r(NULL, " \n", &save);
	rest = strtok_r(NULL, "\n", &save);
	if (!verb || !db) {
		snprintf(out, outlen, "error: bad command\n");
		return;
	}
	if (strcmp(verb, "address") == 0 && rest) {
		char host[256];
		if (sscanf(rest, "%255s %d", host, &port) != 2) {
			snprintf(out, outlen, "error: address needs host and port\n");
			return;
		}
		n = tp.api->db_set_address(db, host, port);
		snprintf(out, outlen, "%d\n", n);
	} else if (strcmp(verb, "addresses") == 0) {
		/* addresses db [host:port ...]: none at all is count 0 */
		struct pgb_address addrs[TP_MAX_ADDRS];
		char empty[1] = "";

		n = tp_parse_addresses(rest ? rest : empty, addrs);
		if (n < 0) {
			snprintf(out, outlen, "error: addresses are host:port\n");
			return;
		}
		n = tp.api->db_set_addresses(db, addrs, n);
		snprintf(out, outlen, "%d\n", n);
	} else if (strcmp(verb, "setting") == 0) {
		/* setting name [buflen]: here "db" is the setting's name */
		char value[512];
		size_t len = rest ? (size_t)atoi(rest) : sizeof(value);

		if (len > sizeof(value))
			len = sizeof(value);
		if (tp.api->get_setting(db, value, len))
			snprintf(out, outlen, "value=%s\n", value);
		else
			snprintf(out, outlen, "false\n");
	} else if (strcmp(verb, "hold") == 0) {
		snprintf(out, outlen, "%s\n", tp.api->db_hold(db, true) ? "ok" : "error");
	} else if (strcmp(verb, "release") == 0) {
		snprintf(out, outlen, "%s\n", tp.api->db_hold(db, false) ? "ok" : "error");
	} else if (strcmp(verb, "fail") == 0 && rest) {
		n = tp.api->db_fail_waiting(db, rest);
		snprintf(out, outlen, "%d\n", n);
	} else if (strcmp(verb, "lookup") == 0) {
		if (!tp.api->db_lookup(db, &info)) {
			snprintf(out, outlen, "none\n");
			return;
		}
		snprintf(out, outlen, "host=%s port=%d dbname=%s held=%d paused=%d servers=%d waiting=%d\n",
			 info.host ? info.host : "", info.port, info.dbname ? info.dbname : "",
			 info.held, info.paused, info.server_count, info.waiting_clients);
	} else if (strcmp(verb, "register_show") == 0) {
		/* here "db" is the SHOW name to register */
		snprintf(out, outlen, "%s\n", tp.api->register_show(db, tp_show, NULL) ? "ok" : "refused");
	} else {
		snprintf(out, outlen, "error: unknown command %s\n", verb);
	}
}

static void
tp_poll(evutil_socket_t fd, short what, void *arg)
{
	char path[600], line[1024], out[1024];
	FILE *f;

	if (!tp.control_dir[0])
		return;
	snprintf(path, sizeof(path), "%s/cmd", tp.control_dir);
	f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	unlink(path);
	tp.api->log(PGB_LOG_INFO, "testplugin: command: %s", line);
	tp_run(line, out, sizeof(out));
	tp_write_file("result", out);
}

static void
tp_retry(evutil_socket_t fd, short what, void *arg)
{
	tp.api->db_hold(tp.retry_db, false);
}

static bool
tp_show(void *ctx, struct pgb_show *show)
{
	static const char *const cols[] = { "key", "value" };
	const char *row[2];
	char buf[128];
	int i;

	if (!tp.api->show_columns(show, 2, cols))
		return false;
	row[0] = "reloads";
	snprintf(buf, sizeof(buf), "%d", tp.reloads);
	row[1] = buf;
	tp.api->show_row(show, row);
	row[0] = "checks";
	snprintf(buf, sizeof(buf), "%d", tp.checks);
	tp.api->show_row(show, row);
	row[0] = "refusals";
	snprintf(buf, sizeof(buf), "%d", tp.refusals);
	tp.api->show_row(show, row);
	row[0] = "agains";
	snprintf(buf, sizeof(buf), "%d", tp.agains);
	row[1] = buf;
	tp.api->show_row(show, row);
	row[0] = "value_changes";
	snprintf(buf, sizeof(buf), "%d", tp.value_changes);
	tp.api->show_row(show, row);
	row[0] = "last_check";
	row[1] = tp.last_check[0] ? tp.last_check : NULL;
	tp.api->show_row(show, row);
	row[0] = "last_check_addr";
	row[1] = tp.last_check_addr[0] ? tp.last_check_addr : NULL;
	tp.api->show_row(show, row);
	for (i = 0; i < tp.db_count; i++) {
		row[0] = tp.dbs[i].name;
		row[1] = tp.dbs[i].tag;
		tp.api->show_row(show, row);
	}
	return true;
}

static bool
tp_init(void *ctx, const struct pgb_plugin_api *api, char *err, size_t errlen)
{
	struct timeval tv = { 0, TP_POLL_USEC };

	tp.api = api;
	if (!api->register_show("testplugin", tp_show, NULL)) {
		snprintf(err, errlen, "cannot register SHOW TESTPLUGIN");
		return false;
	}
	tp.retry_ev = evtimer_new(api->event_base, tp_retry, NULL);
	tp.poll_ev = event_new(api->event_base, -1, EV_PERSIST, tp_poll, NULL);
	if (!tp.poll_ev || event_add(tp.poll_ev, &tv) != 0) {
		snprintf(err, errlen, "cannot start the control timer");
		return false;
	}
	api->log(PGB_LOG_INFO, "testplugin: init");
	return true;
}

static bool
tp_reload(void *ctx, const struct pgb_config *cfg, char *err, size_t errlen)
{
	const char *control_dir = "", *check_query = "", *refuse_value = "";
	const char *again_value = "";
	int again_count = 0, again_ms = 0;
	int i, j;

	for (i = 0; i < cfg->section_count; i++) {
		if (strcmp(cfg->section[i].key, "control_dir") == 0)
			control_dir = cfg->section[i].value;
		else if (strcmp(cfg->section[i].key, "check_query") == 0)
			check_query = cfg->section[i].value;
		else if (strcmp(cfg->section[i].key, "refuse_value") == 0)
			refuse_value = cfg->section[i].value;
		else if (strcmp(cfg->section[i].key, "again_value") == 0)
			again_value = cfg->section[i].value;
		else if (strcmp(cfg->section[i].key, "again_count") == 0)
			again_count = atoi(cfg->section[i].value);
		else if (strcmp(cfg->section[i].key, "again_ms") == 0)
			again_ms = atoi(cfg->section[i].value);
		else if (strcmp(cfg->section[i].key, "refuse_config") == 0) {
			snprintf(err, errlen, "refuse_config is set");
			return false;
		}
	}
	if (cfg->db_count > TP_MAX_DBS) {
		snprintf(err, errlen, "too many databases");
		return false;
	}
	snprintf(tp.control_dir, sizeof(tp.control_dir), "%s", control_dir);
	snprintf(tp.check_query, sizeof(tp.check_query), "%s", check_query);
	snprintf(tp.refuse_value, sizeof(tp.refuse_value), "%s", refuse_value);
	snprintf(tp.again_value, sizeof(tp.again_value), "%s", again_value);
	tp.again_count = again_count;
	tp.again_ms = again_ms < 0 ? 0 : (unsigned int)again_ms;
	tp.db_count = 0;
	for (i = 0; i < cfg->db_count; i++) {
		for (j = 0; j < cfg->dbs[i].count; j++) {
			if (strcmp(cfg->dbs[i].settings[j].key, "test_tag") != 0)
				continue;
			snprintf(tp.dbs[tp.db_count].name, sizeof(tp.dbs[0].name), "%s", cfg->dbs[i].name);
			snprintf(tp.dbs[tp.db_count].tag, sizeof(tp.dbs[0].tag), "%s", cfg->dbs[i].settings[j].value);
			tp.db_count++;
		}
	}
	tp.reloads++;
	tp.api->log(PGB_LOG_INFO, "testplugin: reload %d, %d tagged databases", tp.reloads, tp.db_count);
	return true;
}

static void
tp_shutdown(void *ctx)
{
	if (tp.poll_ev)
		event_free(tp.poll_ev);
	if (tp.retry_ev)
		event_free(tp.retry_ev);
	tp.poll_ev = tp.retry_ev = NULL;
	tp_write_file("shutdown", "shutdown called\n");
}

static const char *
tp_server_check_query(void *ctx, const char *db)
{
	int i;

	if (!tp.check_query[0])
		return NULL;
	for (i = 0; i < tp.db_count; i++) {
		if (strcmp(tp.dbs[i].name, db) == 0)
			return tp.check_query;
	}
	return NULL;
}

/* refuse, holding the entry, and retry in 100 ms, not server_login_retry */
static enum pgb_check_verdict
tp_refuse(const char *db, const char *host, int port, const char *value,
	  char *err, size_t errlen)
{
	struct timeval tv = { 0, 100000 };

	tp.refusals++;
	snprintf(tp.retry_db, sizeof(tp.retry_db), "%s", db);
	tp.api->db_hold(db, true);
	evtimer_add(tp.retry_ev, &tv);
	snprintf(err, errlen, "%s:%d answered \"%s\"", host, port, value ? value : "(null)");
	return PGB_CHECK_REFUSE;
}

static enum pgb_check_verdict
tp_judge(const char *db, const char *host, int port, const char *value,
	 char *err, size_t errlen)
{
	const char *v = value ? value : "(null)";

	if (tp.checks > 0 && strcmp(tp.last_check, v) != 0)
		tp.value_changes++;
	tp.checks++;
	snprintf(tp.last_check, sizeof(tp.last_check), "%s", v);
	snprintf(tp.last_check_addr, sizeof(tp.last_check_addr), "%s:%d", host ? host : "(null)", port);
	if (tp.again_count > 0 ||
	    (tp.again_value[0] && value && strcmp(value, tp.again_value) == 0)) {
		if (tp.again_count > 0)
			tp.again_count--;
		tp.agains++;
		return PGB_CHECK_AGAIN;
	}
	if (value && tp.refuse_value[0] && strcmp(value, tp.refuse_value) == 0)
		return tp_refuse(db, host, port, value, err, errlen);
	return PGB_CHECK_ACCEPT;
}

static bool
tp_server_check_result(void *ctx, const char *db, const char *host, int port,
		       const char *value, char *err, size_t errlen)
{
	enum pgb_check_verdict v = tp_judge(db, host, port, value, err, errlen);

	if (v == PGB_CHECK_AGAIN)
		v = tp_refuse(db, host, port, value, err, errlen);
	return v == PGB_CHECK_ACCEPT;
}

static enum pgb_check_verdict
tp_server_check_verdict(void *ctx, const char *db, const char *host, int port,
			const char *value, unsigned int *again_ms, char *err, size_t errlen)
{
	enum pgb_check_verdict v = tp_judge(db, host, port, value, err, errlen);

	if (v == PGB_CHECK_AGAIN)
		*again_ms = tp.again_ms;
	return v;
}

__attribute__((visibility("default"))) bool
pgb_plugin_load(struct pgb_plugin *plugin)
{
	const char *v = getenv("TEST_PLUGIN_API_VERSION");

	memset(&tp, 0, sizeof(tp));
	plugin->api_version = v ? atoi(v) : PGB_PLUGIN_API_VERSION;
	plugin->name = "testplugin";
	plugin->section = "testplugin";
	plugin->db_keys = tp_db_keys;
	plugin->check_setting = tp_check_setting;
	plugin->check_db_setting = tp_check_db_setting;
	plugin->init = tp_init;
	plugin->reload = tp_reload;
	plugin->shutdown = tp_shutdown;
	plugin->server_check_query = tp_server_check_query;
	plugin->server_check_result = tp_server_check_result;
	if (!getenv("TEST_PLUGIN_NO_VERDICT"))
		plugin->server_check_verdict = tp_server_check_verdict;
	return true;
}
