/*
 * libFuzzer target for lib/consul_kv.c: any bytes as a KV answer, as an
 * X-Consul-Index value and as base64; decoded values must hold together.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consul_kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct consul_kv *entries;
	char err[256];
	char *text;
	char *out;
	size_t outlen;
	uint64_t index;
	int count;
	int i;

	if (consul_kv_parse((const char *) data, size, &entries, &count, err, sizeof(err))) {
		for (i = 0; i < count; i++) {
			if (entries[i].key == NULL)
				abort();
			if (entries[i].value != NULL &&
			    strlen(entries[i].value) != entries[i].value_len)
				abort();
			if (entries[i].session != NULL && entries[i].session[0] == '\0')
				abort();
		}
		consul_kv_free(entries, count);
	} else if (entries != NULL || count != 0) {
		abort();
	}

	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (consul_index_parse(text, &index))
		(void) consul_index_next(index / 2, index);
	out = malloc(size / 4 * 3 + 1);
	if (out != NULL && consul_kv_base64_decode(text, size, out, &outlen)) {
		if (outlen > size / 4 * 3 || out[outlen] != '\0')
			abort();
	}
	free(out);
	free(text);
	return 0;
}
