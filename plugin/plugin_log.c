/*
 * plugin_log.c - formats a message and hands it to PgBouncer's logger
 * (api->log has no va_list variant) with a "consul_redirect: " prefix.
 */

#include <stdarg.h>
#include <stdio.h>

#include "plugin_log.h"

#define PLUGIN_LOG_MAX 1024

void
plugin_log(const struct pgb_plugin_api *api, enum pgb_log_level level,
	   const char *fmt, ...)
{
	char buf[PLUGIN_LOG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	api->log(level, "consul_redirect: %s", buf);
}
