/*
 * Error buffers for lib/: every fallible function fills a caller buffer
 * with a lower-case message instead of logging.
 */
#ifndef PGBC_ERRBUF_H
#define PGBC_ERRBUF_H

#include <stddef.h>

/* room for a quoted value inside a message, see errbuf_printable() */
#define ERRBUF_VALUE_MAX 160

/* printf into err (if err is not NULL and errlen > 0), always NUL-terminated */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Copy untrusted text into out for use inside a message: bytes outside
 * printable ASCII, quotes and backslashes become '?', and text longer than
 * the buffer is cut and ends with "...".  Never fails.
 */
void errbuf_printable(const char *in, char *out, size_t outlen);

#endif
