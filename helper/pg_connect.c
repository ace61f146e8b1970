/*
 * libpq connections of the subcommands: source for who and where to,
 * host and port of the chosen member on top.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "pg_connect.h"

const char *
pg_error_line(PGconn *conn)
{
	static char line[512];
	const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
	size_t n = strcspn(msg, "\n");

	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, msg, n);
	line[n] = '\0';
	return line;
}

PGconn *
pg_connect(const struct helper_config *cfg, const char *host, int port, int timeout_sec,
	   const char *what, char *err, size_t errlen)
{
	/* expand_dbname: source's keywords at dbname's place, host and port after it win */
	const char *keys[] = {"connect_timeout", "client_encoding", "fallback_application_name",
			      "dbname", "host", "port", NULL};
	const char *values[7];
	char timeout[16], portnum[16];
	PGconn *conn;

	snprintf(timeout, sizeof(timeout), "%d", timeout_sec);
	snprintf(portnum, sizeof(portnum), "%d", port);
	values[0] = timeout;
	values[1] = "UTF8";
	values[2] = "pgbouncer-helper";
	values[3] = cfg->source;
	values[4] = host;
	values[5] = host ? portnum : NULL;
	values[6] = NULL;
	/* a NULL value is skipped: without host, source's own host and port count */
	conn = PQconnectdbParams(keys, values, 1);
	if (conn != NULL && PQstatus(conn) == CONNECTION_OK)
		return conn;
	if (host)
		errbuf_set(err, errlen, "cannot connect to %s at %s:%d (source): %s", what, host,
			   port, pg_error_line(conn));
	else
		errbuf_set(err, errlen, "cannot connect to %s (source): %s", what,
			   pg_error_line(conn));
	PQfinish(conn);
	return NULL;
}
