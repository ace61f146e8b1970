/*
 * libFuzzer target for lib/patroni_member.c: any bytes as a member record
 * and as a conn_url; whatever is accepted must be a safe host and port.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "patroni_member.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_member(const struct patroni_member *m)
{
	/* an accepted host must be one we would put into a connection string */
	if (!patroni_host_valid(m->host) || m->port < 1 || m->port > 65535)
		abort();
	if (strpbrk(m->host, " '\"=,;\\?#@/") != NULL)
		abort();
	(void) patroni_member_is_running(m);
	(void) patroni_member_is_primary_role(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct patroni_member m;
	char err[256];
	char host[PATRONI_HOST_MAX];
	char *url;
	int port;

	if (patroni_member_parse((const char *) data, size, &m, err, sizeof(err)))
		fuzz_check_member(&m);
	if (strnlen(err, sizeof(err)) >= sizeof(err))
		abort();

	/* the same bytes as a bare conn_url */
	url = malloc(size + 1);
	if (url == NULL)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	if (patroni_conn_url_parse(url, host, sizeof(host), &port, err, sizeof(err))) {
		strcpy(m.host, host);
		m.port = port;
		fuzz_check_member(&m);
	}
	(void) patroni_host_valid(url);
	free(url);
	return 0;
}
