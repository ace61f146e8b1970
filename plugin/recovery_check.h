/*
 * recovery_check - checks each new server connection of a primary entry
 * with pg_is_in_recovery() so writes never reach a node in recovery.
 */
#ifndef CONSUL_REDIRECT_RECOVERY_CHECK_H
#define CONSUL_REDIRECT_RECOVERY_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "pgb_plugin.h"

struct consul_redirect;

const char *recovery_check_query(struct consul_redirect *cr, const char *db);
enum pgb_check_verdict recovery_check_verdict(struct consul_redirect *cr, const char *db,
					      const char *host, int port, const char *value,
					      unsigned int *again_ms, char *err, size_t errlen);

#endif
