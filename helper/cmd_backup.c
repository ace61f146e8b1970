/*
 * backup --type full|diff|incr: a pgBackRest backup on the primary only;
 * on a replica a logged no-op with exit 0, so one timer can run on every
 * database host.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "log.h"
#include "pg_connect.h"
#include "run.h"

/* local Postgres (conninfo: source as written) in recovery? */
static bool
local_in_recovery(const struct helper_config *cfg, bool *in_recovery, char *err, size_t errlen)
{
	PGconn *conn;
	PGresult *res;
	bool ok = false;

	conn = pg_connect(cfg, NULL, 0, 10, "the local postgres", err, errlen);
	if (conn == NULL)
		return false;
	res = PQexec(conn, "select pg_is_in_recovery()");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		errbuf_set(err, errlen, "select pg_is_in_recovery() failed: %s",
			   pg_error_line(conn));
	} else {
		*in_recovery = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		ok = true;
	}
	PQclear(res);
	PQfinish(conn);
	return ok;
}

int
cmd_backup(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"type", required_argument, NULL, 't'},
		{"pgbackrest", required_argument, NULL, 'p'},
		{"timeout", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0}
	};
	const char *type = NULL;
	const char *program = "pgbackrest";
	uint64_t timeout = UINT64_C(86400) * DURATION_USEC_PER_SEC;
	char stanza_arg[300], type_arg[32], shown[600];
	char *run_argv[5];
	char err[1024];
	bool in_recovery = true;
	int c, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			type = optarg;
			break;
		case 'p':
			program = optarg;
			break;
		case 'T':
			if (!cmd_parse_duration("timeout", optarg, &timeout))
				return HELPER_EXIT_USAGE;
			break;
		default:
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	if (!cmd_no_more_args(argc, argv, optind))
		return HELPER_EXIT_USAGE;
	if (type == NULL) {
		log_error("--type is required: full, diff or incr");
		return HELPER_EXIT_USAGE;
	}
	if (strcmp(type, "full") != 0 && strcmp(type, "diff") != 0 && strcmp(type, "incr") != 0) {
		log_error("--type: \"%.64s\" is not full, diff or incr", type);
		return HELPER_EXIT_USAGE;
	}
	if (!local_in_recovery(cfg, &in_recovery, err, sizeof(err))) {
		log_error("%s", err);
		return HELPER_EXIT_FAIL;
	}
	if (in_recovery) {
		log_info("local postgres is a replica (in recovery): no %s backup here", type);
		return HELPER_EXIT_OK;
	}
	snprintf(stanza_arg, sizeof(stanza_arg), "--stanza=%s", cfg->pgbackrest_stanza);
	snprintf(type_arg, sizeof(type_arg), "--type=%s", type);
	run_argv[0] = (char *) program;
	run_argv[1] = stanza_arg;
	run_argv[2] = (char *) "backup";
	run_argv[3] = type_arg;
	run_argv[4] = NULL;
	run_describe(run_argv, shown, sizeof(shown));
	log_info("local postgres is the primary: running %s", shown);
	if (!run_command(run_argv, timeout, &status, err, sizeof(err))) {
		log_error("%s", err);
		return HELPER_EXIT_FAIL;
	}
	if (status != 0) {
		log_error("%s failed: pgbackrest exit code %d", shown, status);
		return HELPER_EXIT_FAIL;
	}
	log_info("%s backup of stanza %s done", type, cfg->pgbackrest_stanza);
	return HELPER_EXIT_OK;
}
