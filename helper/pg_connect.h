/*
 * The helper's one libpq connect.  "source" means the same everywhere:
 * a conninfo giving who connects and to which database (user, dbname,
 * password, sslmode ...); the host and port of the server asked about
 * (a member from Patroni) come after it and win over any in source.
 */
#ifndef PGBC_HELPER_PG_CONNECT_H
#define PGBC_HELPER_PG_CONNECT_H

#include <stddef.h>

#include <libpq-fe.h>

#include "helper_config.h"

/*
 * Connect with source to host:port (host NULL: the server source itself
 * names, the local one by default), client_encoding UTF8,
 * connect_timeout timeout_sec.  NULL + err ("cannot connect to <what>
 * ...") when the connection failed.
 */
PGconn *pg_connect(const struct helper_config *cfg, const char *host, int port,
		   int timeout_sec, const char *what, char *err, size_t errlen);

/* the first line of conn's last error message */
const char *pg_error_line(PGconn *conn);

#endif
