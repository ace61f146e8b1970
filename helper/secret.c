/*
 * Masking of passwords and tokens in log lines and printed commands, so
 * that no caller has to remember it: log.c runs every line through here.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "secret.h"

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
