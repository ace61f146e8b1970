/*
 * json_strict.c - one strict JSON parse for every answer we read from
 * Consul or Patroni, so that each parser refuses the same bad input the
 * same way.
 */
#include "json_strict.h"
#include "errbuf.h"

#include <string.h>

struct json_object *
json_strict_parse(const char *what, const char *text, size_t len, size_t max,
		  char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t end;

	if (text == NULL || len == 0) {
		errbuf_set(err, errlen, "%s is empty", what);
		return NULL;
	}
	if (len > max) {
		errbuf_set(err, errlen, "%s of %zu bytes exceeds the limit of %zu bytes",
			   what, len, max);
		return NULL;
	}
	if (memchr(text, '\0', len) != NULL) {
		errbuf_set(err, errlen, "%s contains a nul byte", what);
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		errbuf_set(err, errlen, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int) len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (obj == NULL) {
		if (jerr == json_tokener_continue)
			errbuf_set(err, errlen, "%s is not valid json: truncated", what);
		else
			errbuf_set(err, errlen, "%s is not valid json: %s", what,
				   json_tokener_error_desc(jerr));
		return NULL;
	}
	for (; end < len; end++) {
		if (text[end] != ' ' && text[end] != '\t' && text[end] != '\n' && text[end] != '\r') {
			errbuf_set(err, errlen, "%s is not valid json: trailing data", what);
			json_object_put(obj);
			return NULL;
		}
	}
	return obj;
}
