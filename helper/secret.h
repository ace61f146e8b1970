/*
 * Secrets in pgbouncer-helper: the one place that masks passwords and
 * tokens in a line before it is logged or printed, and that reads a
 * password from its file.
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

/*
 * Read a password file: its first line, the newline (and a CR before it)
 * cut; refuses an empty password, a second non-empty line, NUL or
 * control bytes, one of len bytes or more, and an unreadable file.
 * Messages name the path, never the content; out is wiped on failure.
 */
bool secret_password_read(const char *path, char *out, size_t len, char *err, size_t errlen);

/* overwrite n bytes at p so the compiler keeps the stores */
void secret_wipe(void *p, size_t n);

#endif
