/*
 * Patroni member records: parse the JSON Patroni writes to members/<name>
 * and validate its conn_url strictly, since its host and port are copied
 * into PgBouncer's connection strings.
 */
#include "patroni_member.h"
#include "errbuf.h"
#include "json_strict.h"

#include <arpa/inet.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PATRONI_CONN_URL_MAX 1024

static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static bool
is_digits(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/* characters a conn_url we accept may contain at all */
static bool
patroni_url_char_ok(char c)
{
	return is_alnum(c) || c == '.' || c == '-' || c == '_' || c == ':' ||
	       c == '[' || c == ']' || c == '/';
}

static bool
patroni_label_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++) {
		if (!is_alnum(s[i]) && s[i] != '-')
			return false;
	}
	return true;
}

static bool
patroni_hostname_valid(const char *host)
{
	size_t len = strlen(host);
	const char *label = host;
	const char *dot;
	const char *last = host;
	size_t n;

	/* one trailing dot (a fully qualified name) is allowed */
	if (len > 1 && host[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	while (label < host + len) {
		dot = memchr(label, '.', (size_t) (host + len - label));
		n = dot ? (size_t) (dot - label) : (size_t) (host + len - label);
		if (!patroni_label_valid(label, n))
			return false;
		last = label;
		if (dot == NULL)
			break;
		label = dot + 1;
		if (label == host + len)
			return false;	/* "a..": an empty label */
	}
	/*
	 * An all-numeric last label would be read as an IPv4 address in some
	 * other notation by getaddrinfo ("1234", "10.1"): not a hostname.
	 */
	return !is_digits(last, (size_t) (host + len - last));
}

bool
patroni_host_valid(const char *host)
{
	unsigned char addr[16];

	if (host == NULL || host[0] == '\0' || strlen(host) >= PATRONI_HOST_MAX)
		return false;
	if (strchr(host, ':') != NULL)
		return inet_pton(AF_INET6, host, addr) == 1;
	if (inet_pton(AF_INET, host, addr) == 1)
		return true;
	return patroni_hostname_valid(host);
}

/* port text of n bytes: digits only, 1..65535 */
static bool
patroni_port_parse(const char *s, size_t n, int *port)
{
	int v = 0;
	size_t i;

	if (!is_digits(s, n) || n > 5)
		return false;
	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	if (v < 1 || v > 65535)
		return false;
	*port = v;
	return true;
}

/* the first byte of rest that is no part of an acceptable url, or NULL */
static const char *
patroni_url_check_chars(const char *url, const char *rest, const char *shown,
			char *err, size_t errlen)
{
	const char *p;
	const char *at;

	if (strchr(rest, '?') != NULL) {
		errbuf_set(err, errlen, "conn_url carries connection parameters: \"%s\"", shown);
		return rest;
	}
	if (strchr(rest, '#') != NULL) {
		errbuf_set(err, errlen, "conn_url has a fragment: \"%s\"", shown);
		return rest;
	}
	at = strrchr(rest, '@');
	if (at != NULL) {
		char tail[ERRBUF_VALUE_MAX];

		/* what precedes '@' may be a password: never show it */
		errbuf_printable(at + 1, tail, sizeof(tail));
		errbuf_set(err, errlen, "conn_url carries user info: \"%.*s<hidden>@%s\"",
			   (int) (rest - url), url, tail);
		return at;
	}
	for (p = rest; *p != '\0'; p++) {
		if (!patroni_url_char_ok(*p)) {
			errbuf_set(err, errlen, "invalid character 0x%02x in conn_url \"%s\"",
				   (unsigned int) (unsigned char) *p, shown);
			return p;
		}
	}
	return NULL;
}

bool
patroni_conn_url_parse(const char *url, char *host, size_t hostlen, int *port,
		       char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	char hostbuf[PATRONI_HOST_MAX];
	const char *rest;
	const char *slash;
	const char *end;
	const char *colon;
	const char *hstart;
	size_t hlen;
	bool bracketed = false;
	int portval = PATRONI_DEFAULT_PORT;

	if (url == NULL) {
		errbuf_set(err, errlen, "conn_url is missing");
		return false;
	}
	errbuf_printable(url, shown, sizeof(shown));
	if (strlen(url) > PATRONI_CONN_URL_MAX) {
		errbuf_set(err, errlen, "conn_url of %zu bytes is too long: \"%s\"", strlen(url), shown);
		return false;
	}
	if (strncmp(url, "postgres://", 11) == 0) {
		rest = url + 11;
	} else if (strncmp(url, "postgresql://", 13) == 0) {
		rest = url + 13;
	} else {
		errbuf_set(err, errlen, "conn_url \"%s\" is not a postgres:// or postgresql:// url", shown);
		return false;
	}
	if (patroni_url_check_chars(url, rest, shown, err, errlen) != NULL)
		return false;

	slash = strchr(rest, '/');
	end = slash ? slash : rest + strlen(rest);
	if (end == rest) {
		errbuf_set(err, errlen, "conn_url \"%s\" has no host", shown);
		return false;
	}

	if (rest[0] == '[') {
		const char *close = memchr(rest, ']', (size_t) (end - rest));

		if (close == NULL) {
			errbuf_set(err, errlen, "unterminated [ in conn_url \"%s\"", shown);
			return false;
		}
		hstart = rest + 1;
		hlen = (size_t) (close - hstart);
		colon = close + 1 < end ? close + 1 : NULL;
		if (colon != NULL && *colon != ':') {
			errbuf_set(err, errlen, "unexpected text after ] in conn_url \"%s\"", shown);
			return false;
		}
		bracketed = true;
	} else {
		hstart = rest;
		colon = memchr(rest, ':', (size_t) (end - rest));
		hlen = colon ? (size_t) (colon - rest) : (size_t) (end - rest);
		if (memchr(hstart, '[', hlen) != NULL || memchr(hstart, ']', hlen) != NULL) {
			errbuf_set(err, errlen, "invalid host in conn_url \"%s\"", shown);
			return false;
		}
	}
	if (hlen == 0) {
		errbuf_set(err, errlen, "conn_url \"%s\" has no host", shown);
		return false;
	}
	if (hlen >= sizeof(hostbuf) || hlen >= hostlen) {
		errbuf_set(err, errlen, "host in conn_url \"%s\" is too long", shown);
		return false;
	}
	memcpy(hostbuf, hstart, hlen);
	hostbuf[hlen] = '\0';
	if (!patroni_host_valid(hostbuf) ||
	    bracketed != (strchr(hostbuf, ':') != NULL)) {
		char hshown[ERRBUF_VALUE_MAX];

		errbuf_printable(hostbuf, hshown, sizeof(hshown));
		errbuf_set(err, errlen, "invalid host \"%s\" in conn_url \"%s\"", hshown, shown);
		return false;
	}

	if (colon != NULL) {
		size_t plen = (size_t) (end - colon - 1);

		if (!patroni_port_parse(colon + 1, plen, &portval)) {
			char pshown[ERRBUF_VALUE_MAX];
			char ptext[ERRBUF_VALUE_MAX];

			if (plen >= sizeof(ptext))
				plen = sizeof(ptext) - 1;
			memcpy(ptext, colon + 1, plen);
			ptext[plen] = '\0';
			errbuf_printable(ptext, pshown, sizeof(pshown));
			errbuf_set(err, errlen, "invalid port \"%s\" in conn_url \"%s\"", pshown, shown);
			return false;
		}
	}

	/* optional "/dbname"; the name itself is not used, only checked */
	if (slash != NULL && (strchr(slash + 1, '/') != NULL ||
			      strpbrk(slash + 1, ":[]") != NULL)) {
		errbuf_set(err, errlen, "invalid database name in conn_url \"%s\"", shown);
		return false;
	}

	memcpy(host, hostbuf, hlen + 1);
	*port = portval;
	return true;
}

/* copy a printable string member into buf; false when it is not one */
static bool
patroni_copy_string(struct json_object *val, char *buf, size_t buflen)
{
	const char *s;
	size_t n;
	size_t i;

	if (!json_object_is_type(val, json_type_string))
		return false;
	s = json_object_get_string(val);
	n = (size_t) json_object_get_string_len(val);
	if (n >= buflen)
		return false;
	for (i = 0; i < n; i++) {
		if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] > 0x7e)
			return false;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	return true;
}

/* state and role: optional, but when present they must be usable */
static bool
patroni_member_field(struct json_object *obj, const char *name, char *buf, size_t buflen,
		     char *err, size_t errlen)
{
	struct json_object *val;
	char shown[ERRBUF_VALUE_MAX];

	buf[0] = '\0';
	if (!json_object_object_get_ex(obj, name, &val))
		return true;
	if (patroni_copy_string(val, buf, buflen))
		return true;
	if (!json_object_is_type(val, json_type_string)) {
		errbuf_set(err, errlen, "%s in member record is not a string", name);
	} else {
		errbuf_printable(json_object_get_string(val), shown, sizeof(shown));
		errbuf_set(err, errlen, "invalid %s \"%s\" in member record", name, shown);
	}
	return false;
}

/* a tag is set when it is JSON true or the string "true" (any case) */
static bool
patroni_tag_true(struct json_object *tags, const char *name)
{
	struct json_object *val;

	if (!json_object_object_get_ex(tags, name, &val) || val == NULL)
		return false;
	if (json_object_is_type(val, json_type_boolean))
		return json_object_get_boolean(val);
	return json_object_is_type(val, json_type_string) &&
	       strcasecmp(json_object_get_string(val), "true") == 0;
}

/* no control characters, at most max - 1 bytes (UTF-8 is fine: json_strict checked it) */
static bool
patroni_tag_text_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n >= max)
		return false;
	for (i = 0; i < n; i++) {
		if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
			return false;
	}
	return true;
}

/* one tag's value as text: a string as it is, a number or boolean as JSON */
static bool
patroni_tag_value(struct json_object *val, char *out, char *why, size_t whylen,
		  const char *key)
{
	const char *s;
	size_t n;

	switch (val != NULL ? json_object_get_type(val) : json_type_null) {
	case json_type_string:
		s = json_object_get_string(val);
		n = (size_t) json_object_get_string_len(val);
		break;
	case json_type_int:
	case json_type_double:
	case json_type_boolean:
		s = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
		n = strlen(s);
		break;
	default:
		errbuf_set(why, whylen, "tag \"%s\" is not a string, number or boolean", key);
		return false;
	}
	if (strlen(s) != n) {
		errbuf_set(why, whylen, "tag \"%s\" contains a nul byte", key);
		return false;
	}
	if (!patroni_tag_text_ok(s, n, PATRONI_TAG_VALUE_MAX)) {
		errbuf_set(why, whylen, "tag \"%s\": value longer than %d bytes or not printable",
			   key, PATRONI_TAG_VALUE_MAX - 1);
		return false;
	}
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

/* every tag as text, or none and why */
static void
patroni_tag_list(struct json_object *tags, struct patroni_member *m)
{
	struct json_object_iterator it, end;
	char shown[ERRBUF_VALUE_MAX];
	int n = 0;

	if (json_object_object_length(tags) > PATRONI_TAGS_MAX) {
		errbuf_set(m->tags_why, sizeof(m->tags_why), "more than %d tags",
			   PATRONI_TAGS_MAX);
		return;
	}
	end = json_object_iter_end(tags);
	for (it = json_object_iter_begin(tags); !json_object_iter_equal(&it, &end);
	     json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);
		struct json_object *val = json_object_iter_peek_value(&it);
		struct patroni_tag *t = &m->tags[n];

		errbuf_printable(key, shown, sizeof(shown));
		if (key[0] == '\0' ||
		    !patroni_tag_text_ok(key, strlen(key), PATRONI_TAG_KEY_MAX)) {
			errbuf_set(m->tags_why, sizeof(m->tags_why),
				   "tag name \"%s\" empty, longer than %d bytes or not printable",
				   shown, PATRONI_TAG_KEY_MAX - 1);
			return;
		}
		if (!patroni_tag_value(val, t->value, m->tags_why, sizeof(m->tags_why), shown))
			return;
		snprintf(t->key, sizeof(t->key), "%s", key);
		n++;
	}
	m->tag_count = n;
}

static void
patroni_member_tags(struct json_object *obj, struct patroni_member *m)
{
	struct json_object *tags, *val;

	if (!json_object_object_get_ex(obj, "tags", &tags) || tags == NULL)
		return;
	if (!json_object_is_type(tags, json_type_object)) {
		errbuf_set(m->tags_why, sizeof(m->tags_why), "tags is not a json object");
		return;
	}
	patroni_tag_list(tags, m);
	if (m->tags_why[0] != '\0')
		m->tag_count = 0;
	m->nofailover = patroni_tag_true(tags, "nofailover");
	/* Patroni 3.2+: failover_priority 0 means the same as nofailover */
	if (json_object_object_get_ex(tags, "failover_priority", &val) &&
	    json_object_is_type(val, json_type_int) && json_object_get_int64(val) <= 0)
		m->nofailover = true;
	m->noloadbalance = patroni_tag_true(tags, "noloadbalance");
}

bool
patroni_member_parse(const char *json, size_t len, struct patroni_member *out,
		     char *err, size_t errlen)
{
	struct patroni_member m;
	struct json_object *obj;
	struct json_object *val;
	const char *url;

	obj = json_strict_parse("member record", json, len, PATRONI_MEMBER_MAX_LEN, err, errlen);
	if (obj == NULL)
		return false;
	memset(&m, 0, sizeof(m));
	if (!json_object_is_type(obj, json_type_object)) {
		errbuf_set(err, errlen, "member record is not a json object");
		goto fail;
	}
	if (!json_object_object_get_ex(obj, "conn_url", &val)) {
		errbuf_set(err, errlen, "member record has no conn_url");
		goto fail;
	}
	if (!json_object_is_type(val, json_type_string)) {
		errbuf_set(err, errlen, "conn_url in member record is not a string");
		goto fail;
	}
	url = json_object_get_string(val);
	if (strlen(url) != (size_t) json_object_get_string_len(val)) {
		errbuf_set(err, errlen, "conn_url in member record contains a nul byte");
		goto fail;
	}
	if (!patroni_conn_url_parse(url, m.host, sizeof(m.host), &m.port, err, errlen))
		goto fail;
	if (!patroni_member_field(obj, "state", m.state, sizeof(m.state), err, errlen))
		goto fail;
	if (!patroni_member_field(obj, "role", m.role, sizeof(m.role), err, errlen))
		goto fail;
	/* api_url is informative only: a strange one does not cost the record */
	if (!json_object_object_get_ex(obj, "api_url", &val) ||
	    !patroni_copy_string(val, m.api_url, sizeof(m.api_url)))
		m.api_url[0] = '\0';
	if (!json_object_object_get_ex(obj, "replication_state", &val) ||
	    !patroni_copy_string(val, m.replication_state, sizeof(m.replication_state)))
		m.replication_state[0] = '\0';
	patroni_member_tags(obj, &m);
	json_object_put(obj);
	*out = m;
	return true;
fail:
	json_object_put(obj);
	return false;
}

bool
patroni_member_is_running(const struct patroni_member *m)
{
	return m != NULL && strcmp(m->state, "running") == 0;
}

bool
patroni_member_is_streaming(const struct patroni_member *m)
{
	return m != NULL && (m->replication_state[0] == '\0' ||
			     strcmp(m->replication_state, "streaming") == 0);
}

bool
patroni_member_is_primary_role(const struct patroni_member *m)
{
	return m != NULL && (strcmp(m->role, "master") == 0 || strcmp(m->role, "primary") == 0);
}

const char *
patroni_member_tag(const struct patroni_member *m, const char *key)
{
	int i;

	for (i = 0; i < m->tag_count; i++) {
		if (strcmp(m->tags[i].key, key) == 0)
			return m->tags[i].value;
	}
	return NULL;
}
