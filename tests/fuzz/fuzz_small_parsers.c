/*
 * libFuzzer target for the small string parsers of lib/: durations,
 * [consul] proxy and url values, consistency and role names, preferences,
 * X-Consul-Index and errbuf_printable.  Whatever one accepts, its own
 * formatter must write back as text it reads to the same value.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "consul_client.h"
#include "consul_kv.h"
#include "consul_proxy.h"
#include "duration.h"
#include "errbuf.h"
#include "patroni_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fs_duration(const char *text)
{
	char buf[64], err[256];
	uint64_t usec, again;

	if (!duration_parse(text, &usec, err, sizeof(err)))
		return;
	duration_format(usec, buf, sizeof(buf));
	if (!duration_parse(buf, &again, err, sizeof(err)) || again != usec)
		abort();
}

static void
fs_proxy(const char *text)
{
	char shown[ERRBUF_VALUE_MAX], err[256];
	bool ok = consul_proxy_check(text, err, sizeof(err));
	size_t i;

	/* shown for refused values too: the plugin quotes them so */
	consul_proxy_shown(text, shown, sizeof(shown));
	if (strnlen(shown, sizeof(shown)) >= sizeof(shown))
		abort();
	for (i = 0; shown[i]; i++)
		if (shown[i] < 0x20 || shown[i] > 0x7e)
			abort();
	if (ok && strchr(shown, '@') != NULL)
		abort();
	if (!ok && err[0] == '\0')
		abort();
}

static void
fs_names(const char *text)
{
	enum consul_consistency c, c2;
	enum patroni_entry_role r, r2;

	if (consul_consistency_parse(text, &c) &&
	    (!consul_consistency_parse(consul_consistency_name(c), &c2) || c2 != c))
		abort();
	if (patroni_role_parse(text, &r) &&
	    (!patroni_role_parse(patroni_role_name(r), &r2) || r2 != r))
		abort();
}

static void
fs_prefer(const char *text)
{
	struct patroni_prefer p, again;
	char buf[PATRONI_PREFER_TEXT_MAX * 2], err[256];

	if (!patroni_prefer_parse(text, &p, err, sizeof(err)))
		return;
	if (p.count < 0 || p.count > PATRONI_PREFER_MAX)
		abort();
	patroni_prefer_format(&p, buf, sizeof(buf));
	if (!patroni_prefer_parse(buf, &again, err, sizeof(err)) || !patroni_prefer_equal(&p, &again))
		abort();
}

static void
fs_url(const char *text)
{
	char host[256], err[256];
	const char *why = NULL;
	long port;

	(void) consul_url_check(text, err, sizeof(err));
	if (consul_host_port_parse(text, host, sizeof(host), &port, &why)) {
		if (port < -1 || port > 65535)
			abort();
	} else if (why == NULL) {
		abort();
	}
}

static void
fs_printable(const char *text)
{
	char out[ERRBUF_VALUE_MAX];
	size_t i;

	errbuf_printable(text, out, sizeof(out));
	for (i = 0; out[i]; i++)
		if (out[i] < 0x20 || out[i] > 0x7e || out[i] == '"' || out[i] == '\\')
			abort();
	if (i >= sizeof(out))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	uint64_t index;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	fs_duration(text);
	fs_proxy(text);
	fs_names(text);
	fs_prefer(text);
	fs_url(text);
	fs_printable(text);
	(void) consul_index_parse(text, &index);
	free(text);
	return 0;
}
