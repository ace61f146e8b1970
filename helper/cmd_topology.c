/*
 * topology: the cluster as Patroni sees it (/cluster and /patroni on
 * patroni_url): scope, server version and next major, leader, replicas
 * with state and lag; a table or --json.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "patroni_rest.h"
#include "pg_version.h"

/* 150004 -> "15.4", 90624 -> "9.6.24" */
static void
version_text(int num, char *out, size_t len)
{
	if (num >= 100000)
		snprintf(out, len, "%d.%d", num / 10000, num % 10000);
	else
		snprintf(out, len, "%d.%d.%d", num / 10000, num / 100 % 100, num % 100);
}

int
cmd_topology(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0}
	};
	struct json_object *cluster = NULL, *patroni = NULL, *members, *m, *out = NULL;
	struct json_object *list, *item, *v;
	const char *scope, *leader = "";
	char err[1024], version[32], next[16];
	int c, num, next_major, rc = HELPER_EXIT_FAIL;
	size_t i, n;
	bool as_json = false;
	bool paused;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'j') {
			as_json = true;
		} else {
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	if (!cmd_no_more_args(argc, argv, optind))
		return HELPER_EXIT_USAGE;
	cluster = patroni_get(cfg, NULL, "/cluster", err, sizeof(err));
	if (cluster != NULL)
		patroni = patroni_get(cfg, NULL, "/patroni", err, sizeof(err));
	if (cluster == NULL || patroni == NULL) {
		log_error("%s", err);
		goto done;
	}
	members = patroni_members(cfg, cluster, err, sizeof(err));
	if (members == NULL) {
		log_error("%s", err);
		goto done;
	}
	scope = http_json_text(http_json_member(patroni, "patroni"), "scope");
	if (*scope == '\0')
		scope = cfg->scope;
	num = json_object_get_int(http_json_member(patroni, "server_version"));
	if (num <= 0) {
		log_error("patroni %s/patroni: no server_version (is postgres running?)",
			  cfg->patroni_url);
		goto done;
	}
	version_text(num, version, sizeof(version));
	next_major = pg_next_major(num);
	if (next_major >= 10 && next_major < 100)
		snprintf(next, sizeof(next), "%d", next_major);
	else
		snprintf(next, sizeof(next), "%d.%d", next_major / 100, next_major % 100);
	paused = json_object_get_boolean(http_json_member(cluster, "pause"));
	n = json_object_array_length(members);
	for (i = 0; i < n; i++) {
		m = json_object_array_get_idx(members, i);
		if (strcmp(http_json_text(m, "role"), "leader") == 0 ||
		    strcmp(http_json_text(m, "role"), "standby_leader") == 0)
			leader = http_json_text(m, "name");
	}

	if (as_json) {
		out = json_object_new_object();
		list = json_object_new_array();
		json_object_object_add(out, "scope", json_object_new_string(scope));
		json_object_object_add(out, "server_version", json_object_new_string(version));
		json_object_object_add(out, "server_version_num", json_object_new_int(num));
		json_object_object_add(out, "next_major", json_object_new_int(next_major));
		json_object_object_add(out, "leader", *leader ? json_object_new_string(leader) : NULL);
		json_object_object_add(out, "paused", json_object_new_boolean(paused));
		for (i = 0; i < n; i++) {
			m = json_object_array_get_idx(members, i);
			item = json_object_new_object();
			json_object_object_add(item, "name", json_object_new_string(http_json_text(m, "name")));
			json_object_object_add(item, "role", json_object_new_string(http_json_text(m, "role")));
			json_object_object_add(item, "state", json_object_new_string(http_json_text(m, "state")));
			json_object_object_add(item, "host", json_object_new_string(http_json_text(m, "host")));
			json_object_object_add(item, "port",
					       json_object_new_int(json_object_get_int(http_json_member(m, "port"))));
			json_object_object_add(item, "timeline",
					       http_json_member(m, "timeline") ? json_object_get(http_json_member(m, "timeline")) : NULL);
			v = http_json_member(m, "lag");
			json_object_object_add(item, "lag", v ? json_object_get(v) : NULL);
			json_object_array_add(list, item);
		}
		json_object_object_add(out, "members", list);
		printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY |
							     JSON_C_TO_STRING_SPACED));
	} else {
		printf("scope:          %s\n", scope);
		printf("server version: %s (%d), next major: %s\n", version, num, next);
		printf("leader:         %s\n", *leader ? leader : "(none)");
		printf("paused:         %s\n\n", paused ? "yes" : "no");
		printf("%-16s %-14s %-16s %-22s %4s %14s\n", "MEMBER", "ROLE", "STATE", "HOST",
		       "TL", "LAG (bytes)");
		for (i = 0; i < n; i++) {
			m = json_object_array_get_idx(members, i);
			snprintf(err, sizeof(err), "%s:%d", http_json_text(m, "host"),
				 json_object_get_int(http_json_member(m, "port")));
			printf("%-16s %-14s %-16s %-22s %4s %14s\n", http_json_text(m, "name"), http_json_text(m, "role"),
			       http_json_text(m, "state"), err, http_json_text(m, "timeline"),
			       http_json_member(m, "lag") ? http_json_text(m, "lag") : "-");
		}
	}
	rc = HELPER_EXIT_OK;
done:
	json_object_put(out);
	json_object_put(cluster);
	json_object_put(patroni);
	return rc;
}
