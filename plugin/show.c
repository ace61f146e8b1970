/*
 * show.c - the plugin's console commands: SHOW CONSUL, one row per
 * database entry bound to a Patroni scope, sorted by database name; and
 * SHOW CONSUL_STATS, one row on the plugin's traffic with the agent.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgb_plugin.h"

#include "consul_redirect.h"
#include "curl_loop.h"
#include "show.h"

#define SHOW_COLUMNS 11

static const char *const show_columns[SHOW_COLUMNS] = {
	"database", "scope", "role", "state", "member", "host", "port",
	"consul_index", "switches", "changed_at", "last_error"
};

struct show_rows {
	struct watch_row *rows;
	int count;
	int size;
	bool failed;
};

static void
show_collect(const struct watch_row *row, void *arg)
{
	struct show_rows *r = arg;
	struct watch_row *grown;

	if (r->count == r->size) {
		int size = r->size ? r->size * 2 : 16;

		grown = realloc(r->rows, size * sizeof(*grown));
		if (!grown) {
			r->failed = true;
			return;
		}
		r->rows = grown;
		r->size = size;
	}
	r->rows[r->count++] = *row;
}

static int
show_row_cmp(const void *a, const void *b)
{
	const struct watch_row *x = a, *y = b;

	return strcmp(x->database, y->database);
}

/* ISO-8601 UTC, e.g. 2026-11-26T08:25:58Z */
static void
show_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool
show_one(struct consul_redirect *cr, struct pgb_show *show,
	 const struct watch_row *row)
{
	const struct pgb_plugin_api *api = cr->api;
	struct pgb_db_info info;
	char port[16], index[32], switches[32], changed[32];
	const char *values[SHOW_COLUMNS];
	bool found = api->db_lookup(row->database, &info);

	snprintf(port, sizeof(port), "%d", found ? info.port : 0);
	snprintf(index, sizeof(index), "%" PRIu64, row->consul_index);
	snprintf(switches, sizeof(switches), "%" PRIu64, row->switches);
	if (row->changed_at)
		show_time(row->changed_at, changed, sizeof(changed));
	values[0] = row->database;
	values[1] = row->scope;
	values[2] = row->role;
	values[3] = row->state;
	values[4] = row->member;
	values[5] = found ? info.host : NULL;
	values[6] = found ? port : NULL;
	values[7] = index;
	values[8] = switches;
	values[9] = row->changed_at ? changed : NULL;
	values[10] = row->last_error;
	return api->show_row(show, values);
}

static bool
show_consul(void *ctx, struct pgb_show *show)
{
	struct consul_redirect *cr = ctx;
	struct show_rows rows = { NULL, 0, 0, false };
	bool ok;
	int i;

	if (!cr->api->show_columns(show, SHOW_COLUMNS, show_columns))
		return false;
	for (i = 0; i < cr->watch_count; i++)
		watch_rows(cr->watches[i], show_collect, &rows);
	ok = !rows.failed;
	if (rows.count > 1)
		qsort(rows.rows, rows.count, sizeof(*rows.rows), show_row_cmp);
	for (i = 0; ok && i < rows.count; i++)
		ok = show_one(cr, show, &rows.rows[i]);
	free(rows.rows);
	return ok;
}

#define STATS_COLUMNS 11

static const char *const stats_columns[STATS_COLUMNS] = {
	"scopes", "entries", "following", "unreachable", "conn_limited",
	"transport", "connections", "connects", "queries", "answers", "paced"
};

struct stats_count {
	int entries;
	int following;
	int unreachable;
};

static void
stats_collect(const struct watch_row *row, void *arg)
{
	struct stats_count *c = arg;

	c->entries++;
	if (strcmp(row->state, "following") == 0)
		c->following++;
	else if (strcmp(row->state, "consul_unreachable") == 0)
		c->unreachable++;
}

static bool
show_consul_stats(void *ctx, struct pgb_show *show)
{
	struct consul_redirect *cr = ctx;
	struct stats_count c = { 0, 0, 0 };
	struct curl_loop_stats st;
	char num[10][32];
	uint64_t answers = 0;
	int paced = 0;
	const char *values[STATS_COLUMNS];
	int i;

	if (!cr->api->show_columns(show, STATS_COLUMNS, stats_columns))
		return false;
	for (i = 0; i < cr->watch_count; i++) {
		watch_rows(cr->watches[i], stats_collect, &c);
		answers += watch_answers(cr->watches[i]);
		paced += watch_paced(cr->watches[i]);
	}
	curl_loop_get_stats(cr->loop, &st);
	snprintf(num[0], sizeof(num[0]), "%d", cr->watch_count);
	snprintf(num[1], sizeof(num[1]), "%d", c.entries);
	snprintf(num[2], sizeof(num[2]), "%d", c.following);
	snprintf(num[3], sizeof(num[3]), "%d", c.unreachable);
	snprintf(num[4], sizeof(num[4]), "%d", cr->agent.limited);
	snprintf(num[5], sizeof(num[5]), "%d", st.connections);
	snprintf(num[6], sizeof(num[6]), "%" PRIu64, st.connects);
	snprintf(num[7], sizeof(num[7]), "%d", st.transfers);
	snprintf(num[8], sizeof(num[8]), "%" PRIu64, answers);
	snprintf(num[9], sizeof(num[9]), "%d", paced);
	for (i = 0; i < 5; i++)
		values[i] = num[i];
	values[5] = curl_loop_transport_name(st.transport);
	values[6] = num[5];
	values[7] = num[6];
	values[8] = num[7];
	values[9] = num[8];
	values[10] = num[9];
	return cr->api->show_row(show, values);
}

bool
show_register(struct consul_redirect *cr)
{
	return cr->api->register_show("consul", show_consul, cr) &&
	       cr->api->register_show("consul_stats", show_consul_stats, cr);
}
