/*
 * maintenance pause|resume: Patroni's DCS maintenance mode through its
 * REST API (PATCH /config, as patronictl does), then a wait until
 * /cluster shows the new state.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "patroni_rest.h"

/* "pause" of /cluster (absent = false); false when Patroni did not answer */
static bool
cluster_paused(const struct helper_config *cfg, bool *paused, char *err, size_t errlen)
{
	struct json_object *cluster, *p = NULL;

	cluster = patroni_get(cfg, NULL, "/cluster", err, errlen);
	if (cluster == NULL)
		return false;
	*paused = json_object_object_get_ex(cluster, "pause", &p) && json_object_get_boolean(p);
	json_object_put(cluster);
	return true;
}

int
cmd_maintenance(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0}
	};
	struct consul_response resp;
	uint64_t timeout = UINT64_C(30) * DURATION_USEC_PER_SEC;
	uint64_t deadline;
	char err[1024];
	bool pause, paused = false;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 't') {
			if (!cmd_parse_duration("timeout", optarg, &timeout))
				return HELPER_EXIT_USAGE;
		} else {
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc ||
	    (strcmp(argv[optind], "pause") != 0 && strcmp(argv[optind], "resume") != 0)) {
		log_error("expected one action, pause or resume (try --help)");
		return HELPER_EXIT_USAGE;
	}
	pause = strcmp(argv[optind], "pause") == 0;

	if (!http_patroni(cfg, "PATCH", "/config", pause ? "{\"pause\": true}" : "{\"pause\": null}",
			  HTTP_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_error("%s", err);
		return HELPER_EXIT_FAIL;
	}
	if (resp.status != 200) {
		log_error("PATCH %s/config: patroni answered HTTP %ld: %.200s", cfg->patroni_url,
			  resp.status, resp.body ? resp.body : "");
		consul_response_free(&resp);
		return HELPER_EXIT_FAIL;
	}
	consul_response_free(&resp);
	log_info("asked patroni %s to %s the cluster", cfg->patroni_url, argv[optind]);

	deadline = clock_usec() + timeout;
	for (;;) {
		if (!cluster_paused(cfg, &paused, err, sizeof(err)))
			log_warning("%s", err);
		else if (paused == pause)
			break;
		if (clock_usec() >= deadline) {
			log_error("cluster still %s after %.0f s according to %s/cluster",
				  pause ? "not paused" : "paused", (double) timeout / 1e6,
				  cfg->patroni_url);
			return HELPER_EXIT_FAIL;
		}
		clock_sleep_usec(200000);
	}
	log_info("cluster %s: maintenance mode %s", pause ? "paused" : "resumed",
		 pause ? "on" : "off");
	return HELPER_EXIT_OK;
}
