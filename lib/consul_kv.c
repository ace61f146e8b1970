/*
 * Consul KV answers: parse the JSON array Consul returns for KV reads,
 * decode the base64 values, and apply the blocking-query index rules.
 */
#include "consul_kv.h"
#include "errbuf.h"
#include "json_strict.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

/* same limit as consul_client's CONSUL_BODY_MAX: one answer, one megabyte */
#define CONSUL_KV_BODY_MAX (1024 * 1024)

static int
consul_kv_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

bool
consul_kv_base64_decode(const char *in, size_t inlen, char *out, size_t *outlen)
{
	size_t i, n = 0;
	int v[4];
	int pad;
	int k;

	if (inlen % 4 != 0)
		return false;
	for (i = 0; i < inlen; i += 4) {
		pad = 0;
		for (k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == inlen && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			/* data after padding ("A=B=") */
			if (pad > 0)
				return false;
			v[k] = consul_kv_b64_value(in[i + k]);
			if (v[k] < 0)
				return false;
		}
		/* the bits padding drops must be zero: one encoding per value */
		if (pad == 2 && (v[1] & 0x0f) != 0)
			return false;
		if (pad == 1 && (v[2] & 0x03) != 0)
			return false;
		out[n++] = (char) ((v[0] << 2) | (v[1] >> 4));
		if (pad < 2)
			out[n++] = (char) (((v[1] & 0x0f) << 4) | (v[2] >> 2));
		if (pad < 1)
			out[n++] = (char) (((v[2] & 0x03) << 6) | v[3]);
	}
	out[n] = '\0';
	*outlen = n;
	return true;
}

/* a JSON string without NUL bytes, copied with malloc; NULL on failure */
static char *
consul_kv_strdup(struct json_object *val)
{
	const char *s = json_object_get_string(val);
	size_t n = (size_t) json_object_get_string_len(val);
	char *copy;

	if (strlen(s) != n)
		return NULL;
	copy = malloc(n + 1);
	if (copy != NULL)
		memcpy(copy, s, n + 1);
	return copy;
}

static bool
consul_kv_parse_value(struct json_object *val, struct consul_kv *kv, const char *shown,
		      char *err, size_t errlen)
{
	const char *s;
	size_t n;

	if (val == NULL || json_object_is_type(val, json_type_null))
		return true;
	if (!json_object_is_type(val, json_type_string)) {
		errbuf_set(err, errlen, "value of key \"%s\" is not a string", shown);
		return false;
	}
	s = json_object_get_string(val);
	n = (size_t) json_object_get_string_len(val);
	kv->value = malloc(n / 4 * 3 + 1);
	if (kv->value == NULL) {
		errbuf_set(err, errlen, "out of memory");
		return false;
	}
	if (!consul_kv_base64_decode(s, n, kv->value, &kv->value_len)) {
		errbuf_set(err, errlen, "value of key \"%s\" is not valid base64", shown);
		return false;
	}
	if (memchr(kv->value, '\0', kv->value_len) != NULL) {
		errbuf_set(err, errlen, "value of key \"%s\" contains a nul byte", shown);
		return false;
	}
	return true;
}

static bool
consul_kv_parse_one(struct json_object *item, int pos, struct consul_kv *kv,
		    char *err, size_t errlen)
{
	struct json_object *val;
	char shown[ERRBUF_VALUE_MAX];
	int64_t idx;

	if (!json_object_is_type(item, json_type_object)) {
		errbuf_set(err, errlen, "kv entry %d is not a json object", pos);
		return false;
	}
	if (!json_object_object_get_ex(item, "Key", &val) ||
	    !json_object_is_type(val, json_type_string)) {
		errbuf_set(err, errlen, "kv entry %d has no string Key", pos);
		return false;
	}
	kv->key = consul_kv_strdup(val);
	if (kv->key == NULL) {
		errbuf_set(err, errlen, "kv entry %d has an invalid Key", pos);
		return false;
	}
	errbuf_printable(kv->key, shown, sizeof(shown));
	if (!json_object_object_get_ex(item, "ModifyIndex", &val) ||
	    !json_object_is_type(val, json_type_int)) {
		errbuf_set(err, errlen, "key \"%s\" has no numeric ModifyIndex", shown);
		return false;
	}
	/* json-c keeps values above INT64_MAX as uint64: read them so */
	idx = json_object_get_int64(val);
	if (idx < 0) {
		errbuf_set(err, errlen, "key \"%s\" has a negative ModifyIndex", shown);
		return false;
	}
	kv->modify_index = idx == INT64_MAX ? json_object_get_uint64(val) : (uint64_t) idx;
	if (json_object_object_get_ex(item, "Session", &val) &&
	    !json_object_is_type(val, json_type_null)) {
		if (!json_object_is_type(val, json_type_string)) {
			errbuf_set(err, errlen, "session of key \"%s\" is not a string", shown);
			return false;
		}
		if (json_object_get_string_len(val) > 0) {
			kv->session = consul_kv_strdup(val);
			if (kv->session == NULL) {
				errbuf_set(err, errlen, "session of key \"%s\" is invalid", shown);
				return false;
			}
		}
	}
	if (!json_object_object_get_ex(item, "Value", &val))
		val = NULL;
	return consul_kv_parse_value(val, kv, shown, err, errlen);
}

bool
consul_kv_parse(const char *body, size_t len, struct consul_kv **entries, int *count,
		char *err, size_t errlen)
{
	struct json_object *arr;
	struct consul_kv *list = NULL;
	size_t n = 0;
	size_t i;

	*entries = NULL;
	*count = 0;
	arr = json_strict_parse("kv answer", body, len, CONSUL_KV_BODY_MAX, err, errlen);
	if (arr == NULL)
		return false;
	if (!json_object_is_type(arr, json_type_array)) {
		errbuf_set(err, errlen, "kv answer is not a json array");
		goto fail;
	}
	n = json_object_array_length(arr);
	if (n > 0) {
		list = calloc(n, sizeof(*list));
		if (list == NULL) {
			errbuf_set(err, errlen, "out of memory");
			goto fail;
		}
	}
	for (i = 0; i < n; i++) {
		if (!consul_kv_parse_one(json_object_array_get_idx(arr, i), (int) i,
					 &list[i], err, errlen))
			goto fail;
	}
	json_object_put(arr);
	*entries = list;
	*count = (int) n;
	return true;
fail:
	consul_kv_free(list, (int) n);
	json_object_put(arr);
	return false;
}

void
consul_kv_free(struct consul_kv *entries, int count)
{
	int i;

	if (entries == NULL)
		return;
	for (i = 0; i < count; i++) {
		free(entries[i].key);
		free(entries[i].value);
		free(entries[i].session);
	}
	free(entries);
}

const struct consul_kv *
consul_kv_find(const struct consul_kv *entries, int count, const char *key)
{
	int i;

	for (i = 0; i < count; i++) {
		if (entries[i].key != NULL && strcmp(entries[i].key, key) == 0)
			return &entries[i];
	}
	return NULL;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool
consul_index_parse(const char *header_value, uint64_t *index)
{
	const char *p = header_value;
	uint64_t v = 0;
	unsigned int d;
	bool any = false;

	if (p == NULL)
		return false;
	while (is_blank(*p))
		p++;
	while (*p >= '0' && *p <= '9') {
		d = (unsigned int) (*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
		any = true;
		p++;
	}
	while (is_blank(*p))
		p++;
	if (!any || *p != '\0')
		return false;
	*index = v;
	return true;
}

uint64_t
consul_index_next(uint64_t previous, uint64_t returned)
{
	if (returned < previous)
		return 0;
	if (returned == 0)
		return 1;
	return returned;
}
