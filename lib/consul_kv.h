/*
 * Consul KV answers: the JSON array of GET /v1/kv/<key>[?recurse] with
 * base64 values decoded, and the X-Consul-Index rules of blocking queries.
 */
#ifndef PGBC_CONSUL_KV_H
#define PGBC_CONSUL_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct consul_kv {
	char *key;
	char *value;		/* base64-decoded, NUL-terminated; NULL when Consul's Value is null */
	size_t value_len;
	char *session;		/* NULL when the key is not locked */
	uint64_t modify_index;
};

/*
 * body = Consul's JSON array answer to GET /v1/kv/<key>[?recurse] (need
 * not be NUL-terminated).  Every element needs a string Key and a
 * numeric ModifyIndex; Value is null or valid base64 of a value without
 * NUL bytes; Session, when present and not empty, is a string.  An empty
 * array gives *entries = NULL, *count = 0.  On failure nothing is left
 * to free.
 */
bool consul_kv_parse(const char *body, size_t len, struct consul_kv **entries, int *count,
		     char *err, size_t errlen);
void consul_kv_free(struct consul_kv *entries, int count);

/* the entry whose key is exactly key, or NULL */
const struct consul_kv *consul_kv_find(const struct consul_kv *entries, int count,
				       const char *key);

/*
 * Strict base64 (RFC 4648, padded, as Go's StdEncoding writes it) of
 * inlen bytes into out; *outlen is the decoded length.  out needs room
 * for inlen / 4 * 3 + 1 bytes and ends NUL-terminated.
 */
bool consul_kv_base64_decode(const char *in, size_t inlen, char *out, size_t *outlen);

/* X-Consul-Index value: digits only (surrounding blanks allowed), fits uint64 */
bool consul_index_parse(const char *header_value, uint64_t *index);

/*
 * Consul's blocking-query rules: given the index we waited on and the one
 * returned, the index to wait on next.  Returned < previous (went
 * backwards: snapshot restore, restarted dev agent) -> 0 (reset: the next
 * query is non-blocking); never 0 after a good answer: returned 0 -> 1.
 */
uint64_t consul_index_next(uint64_t previous, uint64_t returned);

#endif
