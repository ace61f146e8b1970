/*
 * Patroni on the members: stop, start, and the waits until it is down,
 * up in a role, or every replica streams.
 */
#ifndef PGBC_HELPER_OP_WAIT_H
#define PGBC_HELPER_OP_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/* Patroni on member m stopped: REST silent and pg_ctl status says no server */
bool op_wait_patroni_down(struct op *op, int m, int version, uint64_t timeout_usec);

/* patroni_stop on member m (templates at version), then op_wait_patroni_down */
bool op_stop_patroni(struct op *op, int m, int version, uint64_t timeout_usec);

/* patroni_start on member m (templates at version); no wait */
bool op_start_patroni(struct op *op, int m, int version);

/*
 * Poll member m's GET /patroni until state running with role want_role
 * ("primary" also matches "master"; "replica") and, when version > 0,
 * that major server version.
 */
bool op_wait_patroni_up(struct op *op, int m, const char *want_role, int version,
			uint64_t timeout_usec);

/* the leader's /patroni lists every other member as streaming */
bool op_wait_streaming(struct op *op, uint64_t timeout_usec);

#endif
