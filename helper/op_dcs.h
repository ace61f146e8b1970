/*
 * The cluster's keys in Consul: its dynamic configuration read, put
 * back and verified, and the recursive removal.
 */
#ifndef PGBC_HELPER_OP_DCS_H
#define PGBC_HELPER_OP_DCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/* <namespace>/<scope>/config from Consul as compact JSON into out; false + err */
bool op_dcs_config_get(const struct op *op, char *out, size_t len, char *err, size_t errlen);

/* DELETE <namespace>/<scope>/ recursively in Consul and check it is gone */
bool op_dcs_remove(struct op *op);

/*
 * Write the saved dynamic configuration back to <namespace>/<scope>/config
 * before Patroni starts (it adopts a configuration it finds in the DCS);
 * a key already there must hold the same configuration.
 */
bool op_dcs_config_put(struct op *op);

/* every key of the saved configuration has its value in the leader's GET /config */
bool op_dcs_config_verify(struct op *op);

#endif
