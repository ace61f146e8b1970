/*
 * Patroni on the members during upgrade and restore: patroni_stop and
 * patroni_start, and the polls of its REST API until it is down, up in a
 * role and version, or every replica streams from the leader.
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "http.h"
#include "log.h"
#include "op_exec.h"
#include "op_template.h"
#include "op_wait.h"
#include "patroni_rest.h"
#include "progress.h"

#define OP_POLL_USEC 500000

bool
op_wait_patroni_down(struct op *op, int m, int version, uint64_t timeout_usec)
{
	struct json_object *obj;
	struct progress pr;
	char err[1024], bin[HELPER_VALUE_MAX], data[HELPER_VALUE_MAX];
	char cmd[3 * HELPER_VALUE_MAX], what[700];
	uint64_t deadline = clock_usec() + timeout_usec;

	if (!op_path(op, op->cfg->bin_dir, m, version, bin, sizeof(bin)) ||
	    !op_path(op, op->cfg->data_dir, m, version, data, sizeof(data)))
		return false;
	if (op->dry_run) {
		printf("    check: %s/patroni stops answering\n", op->members[m].api);
	} else {
		snprintf(what, sizeof(what), "patroni on %s to stop answering at %s",
			 op->members[m].name, op->members[m].api);
		progress_begin(&pr, PROGRESS_WAIT, timeout_usec, what);
		for (;;) {
			obj = patroni_get(op->cfg, op->members[m].api, "/patroni", err,
					  sizeof(err));
			if (obj == NULL)
				break;
			snprintf(err, sizeof(err), "answers, state %s",
				 http_json_text(obj, "state"));
			json_object_put(obj);
			if (clock_usec() >= deadline) {
				progress_end(&pr, false);
				log_error("patroni on %s still answers at %s/patroni after %.0f s",
					  op->members[m].name, op->members[m].api,
					  (double) timeout_usec / 1e6);
				return false;
			}
			progress_tick(&pr, err);
			clock_sleep_usec(OP_POLL_USEC);
		}
		progress_end(&pr, true);
		log_info("patroni on %s no longer answers at %s", op->members[m].name,
			 op->members[m].api);
	}
	/* pg_ctl status: 3 = no server running, 4 = no data directory */
	snprintf(cmd, sizeof(cmd), "%s/pg_ctl status -D %s >/dev/null; test $? -eq 3",
		 bin, data);
	return op_exec(op, m, cmd, "check postgres is stopped");
}

bool
op_stop_patroni(struct op *op, int m, int version, uint64_t timeout_usec)
{
	char cmd[OP_CMD_MAX];

	op->version = version;
	if (!op_expand(op, op->cfg->patroni_stop, m, cmd, sizeof(cmd))) {
		log_error("cannot expand patroni_stop \"%s\"", op->cfg->patroni_stop);
		return false;
	}
	if (!op_exec(op, m, cmd, "stop patroni"))
		return false;
	return op_wait_patroni_down(op, m, version, timeout_usec);
}

bool
op_start_patroni(struct op *op, int m, int version)
{
	char cmd[OP_CMD_MAX];

	op->version = version;
	if (!op_expand(op, op->cfg->patroni_start, m, cmd, sizeof(cmd))) {
		log_error("cannot expand patroni_start \"%s\"", op->cfg->patroni_start);
		return false;
	}
	return op_exec(op, m, cmd, "start patroni");
}

static bool
role_matches(const char *role, const char *want)
{
	if (strcmp(want, "primary") == 0)
		return strcmp(role, "master") == 0 || strcmp(role, "primary") == 0;
	return strcmp(role, want) == 0;
}

bool
op_wait_patroni_up(struct op *op, int m, const char *want_role, int version,
		   uint64_t timeout_usec)
{
	struct json_object *obj;
	struct progress pr;
	char err[1024] = "", last[256] = "no answer", what[200];
	const char *state, *role;
	uint64_t deadline = clock_usec() + timeout_usec;
	int num;

	if (op->dry_run) {
		printf("    check: %s/patroni says state running, role %s", op->members[m].api,
		       want_role);
		if (version > 0)
			printf(", server version %d", version);
		printf("\n");
		return true;
	}
	snprintf(what, sizeof(what), "%s to run as %s", op->members[m].name, want_role);
	if (version > 0)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), " of version %d",
			 version);
	progress_begin(&pr, PROGRESS_WAIT, timeout_usec, what);
	for (;;) {
		obj = patroni_get(op->cfg, op->members[m].api, "/patroni", err, sizeof(err));
		if (obj != NULL) {
			state = http_json_text(obj, "state");
			role = http_json_text(obj, "role");
			num = json_object_get_int(http_json_member(obj, "server_version"));
			snprintf(last, sizeof(last), "state %s, role %s, server_version %d",
				 state, role, num);
			json_object_put(obj);
			if (strcmp(state, "running") == 0 && role_matches(role, want_role) &&
			    (version <= 0 || op_major(num) == version)) {
				progress_end(&pr, true);
				log_info("%s is up: %s", op->members[m].name, last);
				return true;
			}
		} else {
			snprintf(last, sizeof(last), "%s", err);
		}
		if (clock_usec() >= deadline) {
			progress_end(&pr, false);
			log_error("%s not running as %s%s within %.0f s; last seen: %s",
				  op->members[m].name, want_role,
				  version > 0 ? " of the new version" : "",
				  (double) timeout_usec / 1e6, last);
			return false;
		}
		progress_tick(&pr, last);
		clock_sleep_usec(OP_POLL_USEC);
	}
}

/* every member but the leader streams from the leader */
static bool
all_streaming(struct json_object *patroni, const struct op *op, char *missing, size_t len)
{
	struct json_object *repl = http_json_member(patroni, "replication"), *r;
	size_t i, n;
	int k;
	bool found;

	for (k = 0; k < op->member_count; k++) {
		if (k == op->leader)
			continue;
		found = false;
		n = repl && json_object_is_type(repl, json_type_array) ?
			json_object_array_length(repl) : 0;
		for (i = 0; i < n && !found; i++) {
			r = json_object_array_get_idx(repl, i);
			found = strcmp(http_json_text(r, "application_name"), op->members[k].name) == 0 &&
				strcmp(http_json_text(r, "state"), "streaming") == 0;
		}
		if (!found) {
			snprintf(missing, len, "%s", op->members[k].name);
			return false;
		}
	}
	return true;
}

bool
op_wait_streaming(struct op *op, uint64_t timeout_usec)
{
	struct op_member *l = &op->members[op->leader];
	struct json_object *obj;
	struct progress pr;
	char err[1024], missing[128] = "?", what[200], last[1200];
	uint64_t deadline = clock_usec() + timeout_usec;
	bool ok;

	if (op->dry_run) {
		printf("    check: %s/patroni lists every replica as streaming\n", l->api);
		return true;
	}
	snprintf(what, sizeof(what), "every replica to stream from %s", l->name);
	progress_begin(&pr, PROGRESS_WAIT, timeout_usec, what);
	for (;;) {
		obj = patroni_get(op->cfg, l->api, "/patroni", err, sizeof(err));
		ok = obj != NULL && all_streaming(obj, op, missing, sizeof(missing));
		json_object_put(obj);
		if (ok) {
			progress_end(&pr, true);
			log_info("every replica streams from %s", l->name);
			return true;
		}
		if (obj == NULL)
			snprintf(last, sizeof(last), "%s", err);
		else
			snprintf(last, sizeof(last), "%s not streaming", missing);
		if (clock_usec() >= deadline) {
			progress_end(&pr, false);
			log_error("replica %s does not stream from %s after %.0f s", missing, l->name,
				  (double) timeout_usec / 1e6);
			return false;
		}
		progress_tick(&pr, last);
		clock_sleep_usec(OP_POLL_USEC);
	}
}
