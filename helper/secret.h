/*
 * Secrets out of pgbouncer-helper's output: the one place that masks
 * passwords and tokens in a line before it is logged or printed.
 */
#ifndef PGBC_HELPER_SECRET_H
#define PGBC_HELPER_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Copy in to out (at most len bytes, NUL-terminated) with the value after
 * each secret-bearing name replaced by "***": conninfo password=, shell
 * PGPASSWORD=, --password=, token=, and the HTTP headers X-Consul-Token:
 * and Authorization:.  A value runs to the next blank, or is a quoted
 * '...' or "..." string with backslash escapes.
 */
void secret_mask(const char *in, char *out, size_t len);

/* does a conninfo given on the command line carry a password= keyword? */
bool secret_conninfo_has_password(const char *conninfo);

#endif
