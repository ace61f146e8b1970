/*
 * plugin_log - the plugin's messages through PgBouncer's logger, each
 * marked with the plugin's name (the core adds no prefix of its own).
 */
#ifndef CONSUL_REDIRECT_PLUGIN_LOG_H
#define CONSUL_REDIRECT_PLUGIN_LOG_H

#include "pgb_plugin.h"

void plugin_log(const struct pgb_plugin_api *api, enum pgb_log_level level,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
