/*
 * The state file of an upgrade or restore (members, step, values) and
 * the lock that keeps a second run of the same scope and kind out.
 */
#ifndef PGBC_HELPER_OP_STATE_H
#define PGBC_HELPER_OP_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/* state file: false when absent (exists = false) or unreadable (err) */
bool op_state_load(struct op *op, bool *exists, char *err, size_t errlen);
bool op_state_save(struct op *op, char *err, size_t errlen);

/* write lock on <state file>.lock for the process's lifetime; false (logged) */
bool op_lock(struct op *op);

#endif
