/*
 * The state of one upgrade or restore: init, the values kept for
 * resuming, and notes that a plan prints and a run logs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "op.h"
#include "secret.h"

int
op_major(int num)
{
	return num / 10000;
}

void
op_init(struct op *op, struct helper_config *cfg, const char *kind)
{
	memset(op, 0, sizeof(*op));
	op->cfg = cfg;
	op->kind = kind;
	op->leader = -1;
	op->next_step = 1;
	strcpy(op->status, "new");
	snprintf(op->state_path, sizeof(op->state_path), "%s/%s-%s.state", cfg->state_dir,
		 kind, cfg->scope);
}

void
op_set(struct op *op, const char *key, const char *value)
{
	int i;

	for (i = 0; i < op->var_count; i++) {
		if (strcmp(op->vars[i].key, key) == 0)
			break;
	}
	if (i == op->var_count) {
		if (op->var_count == OP_VARS_MAX)
			return;
		op->var_count++;
		snprintf(op->vars[i].key, sizeof(op->vars[i].key), "%s", key);
	}
	snprintf(op->vars[i].value, sizeof(op->vars[i].value), "%s", value);
}

const char *
op_get(const struct op *op, const char *key)
{
	int i;

	for (i = 0; i < op->var_count; i++) {
		if (strcmp(op->vars[i].key, key) == 0)
			return op->vars[i].value;
	}
	return "";
}

void
op_note(struct op *op, const char *fmt, ...)
{
	char msg[2048], shown[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (op->dry_run) {
		secret_mask(msg, shown, sizeof(shown));
		printf("    %s\n", shown);
	}
	else
		log_info("%s", msg);
}
