/*
 * json_strict.h - parse one JSON text strictly (json-c strict mode, UTF-8
 * checked), refusing empty input, oversized input, NUL bytes and trailing
 * data, with errors that name what was being read.
 */
#ifndef PGBC_JSON_STRICT_H
#define PGBC_JSON_STRICT_H

#include <stddef.h>

#include <json-c/json.h>

/*
 * what names the input in errors ("kv answer", "member record"); max is
 * the largest len accepted.  Returns a new reference, or NULL with err
 * filled.
 */
struct json_object *json_strict_parse(const char *what, const char *text, size_t len,
				      size_t max, char *err, size_t errlen);

#endif
