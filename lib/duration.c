/*
 * Parsing and formatting of durations for config values and Consul's
 * wait= parameter, in exact integer microseconds (no floating point).
 */
#include "duration.h"
#include "errbuf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct duration_unit {
	const char *name;
	uint64_t usec;
};

/* a unit name runs up to the next digit, so "ms" never reads as "m" "s" */
static const struct duration_unit duration_units[] = {
	{ "us", UINT64_C(1) },
	{ "ms", UINT64_C(1000) },
	{ "s", UINT64_C(1000000) },
	{ "m", UINT64_C(60000000) },
	{ "h", UINT64_C(3600000000) },
	{ "d", UINT64_C(86400000000) },
	{ NULL, 0 }
};

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* a unit name starting at p, ending before the next digit or '.' or NUL */
static const struct duration_unit *
duration_find_unit(const char *p, size_t *namelen)
{
	const struct duration_unit *u;
	size_t n = 0;

	while (p[n] != '\0' && !is_digit(p[n]) && p[n] != '.')
		n++;
	for (u = duration_units; u->name != NULL; u++) {
		if (strlen(u->name) == n && memcmp(u->name, p, n) == 0) {
			*namelen = n;
			return u;
		}
	}
	return NULL;
}

/*
 * whole * mult + floor(0.<frac digits> * mult), exactly and checking for
 * overflow.  The fraction goes through Horner's rule from its last digit:
 * floor((d * mult + floor(x)) / 10) == floor((d * mult + x) / 10), so the
 * integer steps lose nothing, and no step exceeds 10 * mult.
 */
static bool
duration_scale(uint64_t whole, const char *frac, int frac_digits, uint64_t mult,
	       uint64_t *out)
{
	uint64_t frac_part = 0;
	int i;

	if (whole != 0 && mult > UINT64_MAX / whole)
		return false;
	for (i = frac_digits - 1; i >= 0; i--)
		frac_part = ((uint64_t) (frac[i] - '0') * mult + frac_part) / 10;
	if (whole * mult > UINT64_MAX - frac_part)
		return false;
	*out = whole * mult + frac_part;
	return true;
}

bool
duration_parse(const char *text, uint64_t *usec, char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	const char *p = text;
	const struct duration_unit *unit;
	uint64_t total = 0;
	uint64_t whole, part;
	const char *frac;
	int frac_digits;
	size_t namelen;
	int digits;
	bool first = true;

	errbuf_printable(text, shown, sizeof(shown));
	if (text == NULL || *text == '\0') {
		errbuf_set(err, errlen, "empty duration");
		return false;
	}
	while (*p != '\0') {
		whole = 0;
		frac = NULL;
		frac_digits = 0;
		digits = 0;
		while (is_digit(*p)) {
			if (whole > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
				goto overflow;
			whole = whole * 10 + (uint64_t) (*p - '0');
			digits++;
			p++;
		}
		if (*p == '.') {
			p++;
			frac = p;
			while (is_digit(*p)) {
				/* digits past 20 weigh less than a microsecond of a day */
				if (frac_digits < 20)
					frac_digits++;
				digits++;
				p++;
			}
		}
		if (digits == 0) {
			errbuf_set(err, errlen, "invalid duration \"%s\": expected a number", shown);
			return false;
		}
		if (first && *p == '\0') {
			/* a plain number: seconds, as PgBouncer's own settings */
			unit = &duration_units[2];
			namelen = 0;
		} else {
			unit = duration_find_unit(p, &namelen);
			if (unit == NULL) {
				if (*p == '\0')
					errbuf_set(err, errlen,
						   "invalid duration \"%s\": missing unit after a number",
						   shown);
				else
					errbuf_set(err, errlen,
						   "invalid duration \"%s\": unknown unit", shown);
				return false;
			}
		}
		if (!duration_scale(whole, frac, frac_digits, unit->usec, &part))
			goto overflow;
		if (total > UINT64_MAX - part)
			goto overflow;
		total += part;
		p += namelen;
		first = false;
	}
	*usec = total;
	return true;
overflow:
	errbuf_set(err, errlen, "duration \"%s\" is too large", shown);
	return false;
}

void
duration_format(uint64_t usec, char *buf, size_t len)
{
	if (buf == NULL || len == 0)
		return;
	if (usec == 0)
		snprintf(buf, len, "0");
	else if (usec % DURATION_USEC_PER_SEC == 0)
		snprintf(buf, len, "%" PRIu64 "s", usec / DURATION_USEC_PER_SEC);
	else if (usec % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "ms", usec / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "us", usec);
}
