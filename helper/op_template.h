/*
 * [upgrade] templates expanded for a member (%m %h %p %v %s %d %b),
 * checked paths, and shell quoting.
 */
#ifndef PGBC_HELPER_OP_TEMPLATE_H
#define PGBC_HELPER_OP_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "op.h"

/*
 * Expand a template for member m (-1: none): %m name, %h host, %p port,
 * %v op->version, %s scope, %d data_dir for op->version, %b bin_dir for
 * op->version, %% a percent sign.  False on overflow or an unknown escape.
 */
bool op_expand(const struct op *op, const char *tmpl, int m, char *out, size_t len);

/* data_dir / bin_dir / patroni_config of member m for version v; checked paths */
bool op_path(struct op *op, const char *tmpl, int m, int version, char *out, size_t len);

/* single-quote s for /bin/sh */
bool op_shell_quote(const char *s, char *out, size_t len);

#endif
