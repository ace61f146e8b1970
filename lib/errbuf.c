/*
 * Error buffers for lib/: bounded formatting of error messages and
 * a safe copy of untrusted values to quote inside them.
 */
#include "errbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
errbuf_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void
errbuf_printable(const char *in, char *out, size_t outlen)
{
	size_t i;
	size_t n = 0;
	unsigned char c;

	if (out == NULL || outlen == 0)
		return;
	if (in == NULL)
		in = "";
	for (i = 0; in[i] != '\0'; i++) {
		if (n + 1 >= outlen)
			break;
		c = (unsigned char) in[i];
		if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
			c = '?';
		out[n++] = (char) c;
	}
	out[n] = '\0';
	/* cut: mark it so a reader does not take the prefix for the value */
	if (in[i] != '\0' && outlen >= 4) {
		n = strlen(out);
		if (n + 3 >= outlen)
			n = outlen - 4;
		memcpy(out + n, "...", 4);
	}
}
