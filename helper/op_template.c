/*
 * Templates of helper.ini's [upgrade] section expanded for one member,
 * paths checked to plain characters, and single quotes for /bin/sh.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "op_template.h"

static bool
expand(const struct op *op, const char *tmpl, int m, int depth, char *out, size_t len)
{
	const struct op_member *om = m >= 0 ? &op->members[m] : NULL;
	char val[HELPER_VALUE_MAX + 300];
	const char *p;
	size_t n = 0, vl;

	if (depth > 1)
		return false;
	for (p = tmpl; *p; p++) {
		if (*p != '%') {
			if (n + 1 >= len)
				return false;
			out[n++] = *p;
			continue;
		}
		p++;
		switch (*p) {
		case '%':
			strcpy(val, "%");
			break;
		case 'm':
		case 'h':
		case 'p':
			if (om == NULL)
				return false;
			if (*p == 'm')
				snprintf(val, sizeof(val), "%s", om->name);
			else if (*p == 'h')
				snprintf(val, sizeof(val), "%s", om->host);
			else
				snprintf(val, sizeof(val), "%d", om->port);
			break;
		case 'v':
			snprintf(val, sizeof(val), "%d", op->version);
			break;
		case 's':
			snprintf(val, sizeof(val), "%s", op->cfg->scope);
			break;
		case 'd':
		case 'b':
			if (!expand(op, *p == 'd' ? op->cfg->data_dir : op->cfg->bin_dir, m,
				    depth + 1, val, sizeof(val)))
				return false;
			break;
		default:
			return false;
		}
		vl = strlen(val);
		if (n + vl >= len)
			return false;
		memcpy(out + n, val, vl);
		n += vl;
	}
	out[n] = '\0';
	return true;
}

bool
op_expand(const struct op *op, const char *tmpl, int m, char *out, size_t len)
{
	return expand(op, tmpl, m, 0, out, len);
}

bool
op_path(struct op *op, const char *tmpl, int m, int version, char *out, size_t len)
{
	int saved = op->version;
	const char *p;
	bool ok;

	op->version = version;
	ok = op_expand(op, tmpl, m, out, len);
	op->version = saved;
	if (!ok) {
		log_error("cannot expand path template \"%s\" (escapes: %%m %%h %%p %%v %%s %%%%)",
			  tmpl);
		return false;
	}
	for (p = out; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("/._-+@:,=", *p))) {
			log_error("path \"%s\" (from \"%s\") has characters other than "
				  "[A-Za-z0-9/._-+@:,=]", out, tmpl);
			return false;
		}
	}
	return true;
}

bool
op_shell_quote(const char *s, char *out, size_t len)
{
	size_t n = 0;

	if (len < 3)
		return false;
	out[n++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			if (n + 5 >= len)
				return false;
			memcpy(out + n, "'\\''", 4);
			n += 4;
		} else {
			if (n + 2 >= len)
				return false;
			out[n++] = *s;
		}
	}
	out[n++] = '\'';
	out[n] = '\0';
	return true;
}
