/*
 * The live cluster for upgrade and restore: members, leader, pause and
 * version from Patroni, and a state file's members checked against it.
 */
#ifndef PGBC_HELPER_OP_DISCOVER_H
#define PGBC_HELPER_OP_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/*
 * GET /cluster and /patroni on patroni_url: members, leader, pause and
 * server version, and the dynamic configuration from Consul.  False (err
 * filled) without a leader, when patroni_url serves another scope than
 * helper.ini's, or when the scope has no configuration in Consul.
 */
bool op_discover(struct op *op, char *err, size_t errlen);

/* replicas that are not running/streaming or lag more than max_lag; false + err */
bool op_replicas_healthy(struct op *op, char *err, size_t errlen);

/*
 * --from-step: the state file's members against the live cluster (when
 * patroni_url answers); false + err on a mismatch.
 */
bool op_check_live(struct op *op, char *err, size_t errlen);

#endif
