/*
 * Masking of passwords and tokens in log lines and printed commands, so
 * that no caller has to remember it (log.c runs every line through here),
 * and the reading of password files.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "errbuf.h"
#include "secret.h"

/* a password file larger than this is not a password file */
#define SECRET_FILE_MAX 4096

/* names whose value is a secret; matched case-insensitively */
static const char *const secret_names[] = {
	"password", "pgpassword", "passwd", "token", "x-consul-token", "authorization",
	NULL
};

/*
 * The length of "name =" or "name:" at s (blanks allowed before the
 * separator, as libpq allows them), 0 when none; *sep gets the separator.
 */
static size_t
secret_name_at(const char *s, char *sep)
{
	const char *const *n;
	size_t len;

	for (n = secret_names; *n; n++) {
		len = strlen(*n);
		if (strncasecmp(s, *n, len) != 0)
			continue;
		while (s[len] == ' ' || s[len] == '\t')
			len++;
		if (s[len] == '=' || s[len] == ':') {
			*sep = s[len];
			return len + 1;
		}
	}
	return 0;
}

/* "scheme://user:secret@": the length of "user:" at s (after "://"), 0 when none */
static size_t
url_userinfo_at(const char *s)
{
	size_t at = strcspn(s, "@/ \t\n"), colon = strcspn(s, ":@/ \t\n");

	return s[at] == '@' && colon < at ? colon + 1 : 0;
}

/* a word starts here: the line's start or after a non-name character */
static bool
word_start(const char *in, const char *s)
{
	return s == in || !(isalnum((unsigned char) s[-1]) || s[-1] == '_');
}

/* end of the value at s: a quoted string, or up to a blank (a header: the line) */
static const char *
value_end(const char *s, bool header)
{
	char q;

	if (header)
		return s + strcspn(s, "\r\n");
	if (*s == '\'' || *s == '"') {
		q = *s++;
		while (*s && *s != q) {
			if (*s == '\\' && s[1])
				s++;
			s++;
		}
		return *s ? s + 1 : s;
	}
	while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\'' && *s != '"' &&
	       *s != ',' && *s != ';')
		s++;
	return s;
}

void
secret_mask(const char *in, char *out, size_t len)
{
	const char *s = in;
	size_t n = 0, name;
	char sep = 0;

	if (len == 0)
		return;
	while (*s && n + 1 < len) {
		name = word_start(in, s) ? secret_name_at(s, &sep) : 0;
		if (name == 0 && s - in >= 3 && strncmp(s - 3, "://", 3) == 0)
			name = url_userinfo_at(s);
		if (name == 0) {
			out[n++] = *s++;
			continue;
		}
		while (s[name] == ' ' || s[name] == '\t')
			name++;		/* keep the blanks after "=" or ":" */
		if (n + name + 4 >= len)
			break;
		memcpy(out + n, s, name);
		n += name;
		if (sep == 0)
			s += name + strcspn(s + name, "@");	/* URL user info */
		else
			s = value_end(s + name, sep == ':');
		sep = 0;
		memcpy(out + n, "***", 3);
		n += 3;
	}
	out[n] = '\0';
}

bool
secret_conninfo_has_password(const char *conninfo)
{
	const char *s;
	char sep = 0;

	for (s = conninfo; *s; s++) {
		if (word_start(conninfo, s) && strncasecmp(s, "password", 8) == 0 &&
		    secret_name_at(s, &sep) > 0 && sep == '=')
			return true;
		if (strncmp(s, "://", 3) == 0 && url_userinfo_at(s + 3) > 0)
			return true;
	}
	return false;
}

void
secret_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

bool
secret_password_read(const char *path, char *out, size_t len, char *err, size_t errlen)
{
	char buf[SECRET_FILE_MAX + 2];
	char shown[ERRBUF_VALUE_MAX];
	const char *why = NULL;
	const char *nl;
	size_t n, line, i;
	FILE *f;

	errbuf_printable(path, shown, sizeof(shown));
	f = fopen(path, "r");
	if (f == NULL) {
		errbuf_set(err, errlen, "\"%s\": cannot open: %s", shown, strerror(errno));
		return false;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	if (ferror(f))
		why = "read error";
	fclose(f);
	buf[n] = '\0';
	nl = memchr(buf, '\n', n);
	line = nl != NULL ? (size_t) (nl - buf) : n;
	if (why == NULL && n > SECRET_FILE_MAX)
		why = "too large for a password file";
	for (i = line + 1; why == NULL && i < n; i++) {
		if (buf[i] != '\n' && buf[i] != '\r')
			why = "holds more than one line";
	}
	if (line > 0 && buf[line - 1] == '\r')
		line--;
	for (i = 0; why == NULL && i < line; i++) {
		if (buf[i] == '\0' || (unsigned char) buf[i] < 0x20 || buf[i] == 0x7f)
			why = "holds a control character";
	}
	if (why == NULL && line == 0)
		why = "is empty";
	if (why == NULL && line >= len)
		why = "holds a password too long";
	if (why != NULL) {
		errbuf_set(err, errlen, "\"%s\": %s", shown, why);
		secret_wipe(buf, sizeof(buf));
		secret_wipe(out, len);
		return false;
	}
	memcpy(out, buf, line);
	out[line] = '\0';
	secret_wipe(buf, sizeof(buf));
	return true;
}
