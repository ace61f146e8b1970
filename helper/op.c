/*
 * Shared machinery of upgrade and restore: cluster discovery over
 * Patroni REST, template expansion, member commands through
 * member_command, Patroni up/down checks, DCS removal and the state file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "op.h"
#include "run.h"
#include "secret.h"

#define OP_POLL_NSEC 500000000L

static uint64_t
op_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void
op_sleep(void)
{
	struct timespec ts = {0, OP_POLL_NSEC};

	nanosleep(&ts, NULL);
}

static bool
copy_text(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return false;
	strcpy(dst, src);
	return true;
}

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

/* GET base + path as a JSON object */
static struct json_object *
rest_get(const struct op *op, const char *base, const char *path, char *err, size_t errlen)
{
	static struct helper_config one;
	struct consul_response resp;
	struct json_object *obj;
	char what[600];

	one = *op->cfg;
	if (!copy_text(one.patroni_url, sizeof(one.patroni_url), base)) {
		errbuf_set(err, errlen, "patroni url too long");
		return NULL;
	}
	if (!http_patroni(&one, "GET", path, NULL, 5000L, &resp, err, errlen))
		return NULL;
	snprintf(what, sizeof(what), "patroni %s%s", base, path);
	obj = http_json(&resp, json_type_object, what, err, errlen);
	consul_response_free(&resp);
	return obj;
}

/* "http://127.0.0.1:8008/patroni" -> "http://127.0.0.1:8008" */
static bool
api_base(const char *api_url, char *out, size_t len)
{
	const char *p = strstr(api_url, "://");
	const char *slash;

	if (p == NULL || !copy_text(out, len, api_url))
		return false;
	slash = strchr(p + 3, '/');
	if (slash != NULL)
		out[slash - api_url] = '\0';
	return true;
}

/* names and hosts end up in shell commands and paths: keep them plain */
static bool
plain_word(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("._-:", *s)))
			return false;
	}
	return true;
}

/* Patroni's own answer (/patroni: {"patroni": {"scope": ...}}) is helper.ini's scope */
static bool
scope_matches(const struct op *op, struct json_object *patroni, char *err, size_t errlen)
{
	const char *scope = http_json_text(http_json_member(patroni, "patroni"), "scope");
	char shown[ERRBUF_VALUE_MAX];

	if (*scope == '\0') {
		errbuf_set(err, errlen, "patroni %s/patroni does not report its scope: refusing",
			   op->cfg->patroni_url);
		return false;
	}
	if (strcmp(scope, op->cfg->scope) != 0) {
		errbuf_printable(scope, shown, sizeof(shown));
		errbuf_set(err, errlen, "patroni %s serves scope %s, not %s (helper.ini scope): "
			   "refusing", op->cfg->patroni_url, shown, op->cfg->scope);
		return false;
	}
	return true;
}

/* "/v1/kv/<namespace>/<scope>/<key>" */
static bool
kv_path(const struct op *op, const char *key, char *out, size_t len)
{
	if (op->cfg->scope[0] == '\0' || op->cfg->consul.namespace_[0] == '\0')
		return false;
	return snprintf(out, len, "/v1/kv/%s/%s/%s", op->cfg->consul.namespace_,
			op->cfg->scope, key) < (int) len;
}

/* <namespace>/<scope>/config from Consul as compact JSON into out; false + err */
static bool
dcs_config_get(const struct op *op, char *out, size_t len, char *err, size_t errlen)
{
	struct consul_response resp;
	struct json_object *obj;
	char path[600];
	const char *text;
	bool ok = false;

	if (!kv_path(op, "config?raw", path, sizeof(path))) {
		errbuf_set(err, errlen, "no scope or namespace for the DCS configuration key");
		return false;
	}
	if (!http_consul(op->cfg, "GET", path, NULL, HTTP_TIMEOUT_MS, &resp, err, errlen))
		return false;
	if (resp.status != 200) {
		errbuf_set(err, errlen, "GET %s%s: HTTP %ld (Patroni keeps its dynamic "
			   "configuration there: check namespace and scope)", op->cfg->consul.url,
			   path, resp.status);
		consul_response_free(&resp);
		return false;
	}
	obj = http_json(&resp, json_type_object, "the DCS configuration", err, errlen);
	consul_response_free(&resp);
	if (obj == NULL)
		return false;
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	if (strlen(text) >= len)
		errbuf_set(err, errlen, "%s/%s/config: over %zu bytes", op->cfg->consul.namespace_,
			   op->cfg->scope, len - 1);
	else {
		strcpy(out, text);
		ok = true;
	}
	json_object_put(obj);
	return ok;
}

bool
op_discover(struct op *op, char *err, size_t errlen)
{
	struct json_object *cluster = NULL, *patroni = NULL, *members, *m, *lag;
	struct op_member *om;
	const char *role;
	size_t i, n;
	bool ok = false;

	cluster = rest_get(op, op->cfg->patroni_url, "/cluster", err, errlen);
	if (cluster == NULL)
		goto done;
	patroni = rest_get(op, op->cfg->patroni_url, "/patroni", err, errlen);
	if (patroni == NULL)
		goto done;
	/* before anything else: the cluster we would stop is the one we would remove */
	if (!scope_matches(op, patroni, err, errlen))
		goto done;
	members = http_json_member(cluster, "members");
	if (members == NULL || !json_object_is_type(members, json_type_array)) {
		errbuf_set(err, errlen, "patroni %s/cluster: no members list", op->cfg->patroni_url);
		goto done;
	}
	op->paused = json_object_get_boolean(http_json_member(cluster, "pause"));
	op->server_version = json_object_get_int(http_json_member(patroni, "server_version"));
	n = json_object_array_length(members);
	if (n > OP_MEMBERS_MAX) {
		errbuf_set(err, errlen, "cluster has %zu members, at most %d supported", n,
			   OP_MEMBERS_MAX);
		goto done;
	}
	op->member_count = 0;
	op->leader = -1;
	for (i = 0; i < n; i++) {
		m = json_object_array_get_idx(members, i);
		om = &op->members[op->member_count];
		memset(om, 0, sizeof(*om));
		if (!copy_text(om->name, sizeof(om->name), http_json_text(m, "name")) ||
		    !copy_text(om->host, sizeof(om->host), http_json_text(m, "host")) ||
		    !api_base(http_json_text(m, "api_url"), om->api, sizeof(om->api)) ||
		    !plain_word(om->name) || !plain_word(om->host)) {
			errbuf_set(err, errlen, "patroni /cluster: member %zu has an unusable "
				   "name, host or api_url", i + 1);
			goto done;
		}
		om->port = json_object_get_int(http_json_member(m, "port"));
		copy_text(om->role, sizeof(om->role), http_json_text(m, "role"));
		copy_text(om->state, sizeof(om->state), http_json_text(m, "state"));
		lag = http_json_member(m, "lag");
		om->lag = lag && json_object_is_type(lag, json_type_int) ?
			json_object_get_int64(lag) : -1;
		role = om->role;
		if (strcmp(role, "leader") == 0 || strcmp(role, "standby_leader") == 0)
			op->leader = op->member_count;
		op->member_count++;
	}
	if (op->leader < 0) {
		errbuf_set(err, errlen, "scope %s has no leader (patroni %s/cluster): refusing",
			   op->cfg->scope, op->cfg->patroni_url);
		goto done;
	}
	if (strcmp(op->members[op->leader].role, "standby_leader") == 0) {
		errbuf_set(err, errlen, "scope %s is a standby cluster: refusing", op->cfg->scope);
		goto done;
	}
	if (op->server_version <= 0) {
		errbuf_set(err, errlen, "patroni %s/patroni: no server_version (is postgres "
			   "running?)", op->cfg->patroni_url);
		goto done;
	}
	if (!dcs_config_get(op, op->dcs_config, sizeof(op->dcs_config), err, errlen))
		goto done;
	ok = true;
done:
	json_object_put(cluster);
	json_object_put(patroni);
	return ok;
}

bool
op_replicas_healthy(struct op *op, char *err, size_t errlen)
{
	struct op_member *m;
	int i;

	for (i = 0; i < op->member_count; i++) {
		m = &op->members[i];
		if (i == op->leader)
			continue;
		if (strcmp(m->state, "running") != 0 && strcmp(m->state, "streaming") != 0) {
			errbuf_set(err, errlen, "replica %s is %s, not running: refusing", m->name,
				   m->state[0] ? m->state : "in an unknown state");
			return false;
		}
		if (m->lag < 0 || m->lag > op->cfg->max_lag) {
			errbuf_set(err, errlen, "replica %s lags %lld bytes (max_lag %lld): refusing",
				   m->name, m->lag, op->cfg->max_lag);
			return false;
		}
	}
	return true;
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

bool
op_state_save(struct op *op, char *err, size_t errlen)
{
	char tmp[sizeof(op->state_path) + 8];
	struct op_member *m;
	FILE *f;
	int i;

	snprintf(tmp, sizeof(tmp), "%s.tmp", op->state_path);
	f = fopen(tmp, "w");
	if (f == NULL) {
		errbuf_set(err, errlen, "cannot write state file %s: %s", tmp, strerror(errno));
		return false;
	}
	fprintf(f, "kind=%s\nscope=%s\nstatus=%s\nnext_step=%d\nleader=%d\n"
		"server_version=%d\n", op->kind, op->cfg->scope, op->status, op->next_step,
		op->leader, op->server_version);
	for (i = 0; i < op->member_count; i++) {
		m = &op->members[i];
		fprintf(f, "member=%s %s %d %s\n", m->name, m->host, m->port, m->api);
	}
	for (i = 0; i < op->var_count; i++)
		fprintf(f, "var.%s=%s\n", op->vars[i].key, op->vars[i].value);
	if (op->dcs_config[0] != '\0')
		fprintf(f, "dcs_config=%s\n", op->dcs_config);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || ferror(f)) {
		errbuf_set(err, errlen, "cannot write state file %s: %s", tmp, strerror(errno));
		fclose(f);
		unlink(tmp);
		return false;
	}
	fclose(f);
	if (rename(tmp, op->state_path) != 0) {
		errbuf_set(err, errlen, "cannot rename %s to %s: %s", tmp, op->state_path,
			   strerror(errno));
		unlink(tmp);
		return false;
	}
	return true;
}

bool
op_state_load(struct op *op, bool *exists, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	struct op_member *m;
	char *eq, *nl;
	FILE *f;
	int lineno = 0;

	*exists = false;
	f = fopen(op->state_path, "r");
	if (f == NULL) {
		if (errno == ENOENT)
			return false;
		errbuf_set(err, errlen, "cannot read state file %s: %s", op->state_path,
			   strerror(errno));
		return false;
	}
	*exists = true;
	op->member_count = 0;
	op->var_count = 0;
	while (getline(&line, &cap, f) != -1) {
		lineno++;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		eq = strchr(line, '=');
		if (eq == NULL)
			goto bad;
		*eq++ = '\0';
		if (strcmp(line, "kind") == 0) {
			if (strcmp(eq, op->kind) != 0)
				goto bad;
		} else if (strcmp(line, "scope") == 0) {
			if (strcmp(eq, op->cfg->scope) != 0)
				goto bad;
		} else if (strcmp(line, "status") == 0) {
			snprintf(op->status, sizeof(op->status), "%s", eq);
		} else if (strcmp(line, "next_step") == 0) {
			op->next_step = atoi(eq);
		} else if (strcmp(line, "leader") == 0) {
			op->leader = atoi(eq);
		} else if (strcmp(line, "server_version") == 0) {
			op->server_version = atoi(eq);
		} else if (strcmp(line, "member") == 0) {
			if (op->member_count == OP_MEMBERS_MAX)
				goto bad;
			m = &op->members[op->member_count];
			memset(m, 0, sizeof(*m));
			if (sscanf(eq, "%127s %255s %d %511s", m->name, m->host, &m->port,
				   m->api) != 4)
				goto bad;
			m->lag = -1;
			op->member_count++;
		} else if (strncmp(line, "var.", 4) == 0) {
			op_set(op, line + 4, eq);
		} else if (strcmp(line, "dcs_config") == 0) {
			if (!copy_text(op->dcs_config, sizeof(op->dcs_config), eq))
				goto bad;
		}
	}
	free(line);
	fclose(f);
	if (op->leader < 0 || op->leader >= op->member_count) {
		errbuf_set(err, errlen, "state file %s: no valid leader", op->state_path);
		return false;
	}
	return true;
bad:
	errbuf_set(err, errlen, "state file %s:%d: not a %s state of scope %s", op->state_path,
		   lineno, op->kind, op->cfg->scope);
	free(line);
	fclose(f);
	return false;
}

static bool
expand(const struct op *op, const char *tmpl, int m, int depth, char *out, size_t len)
{
	const struct op_member *om = m >= 0 ? &op->members[m] : NULL;
	char val[HELPER_VALUE_MAX + 300];
	const char *p;
	size_t n = 0, vl;

	if (depth > 1)
		return false;
	for (p = tmpl; *p; p++) {
		if (*p != '%') {
			if (n + 1 >= len)
				return false;
			out[n++] = *p;
			continue;
		}
		p++;
		switch (*p) {
		case '%':
			strcpy(val, "%");
			break;
		case 'm':
		case 'h':
		case 'p':
			if (om == NULL)
				return false;
			if (*p == 'm')
				snprintf(val, sizeof(val), "%s", om->name);
			else if (*p == 'h')
				snprintf(val, sizeof(val), "%s", om->host);
			else
				snprintf(val, sizeof(val), "%d", om->port);
			break;
		case 'v':
			snprintf(val, sizeof(val), "%d", op->version);
			break;
		case 's':
			snprintf(val, sizeof(val), "%s", op->cfg->scope);
			break;
		case 'd':
		case 'b':
			if (!expand(op, *p == 'd' ? op->cfg->data_dir : op->cfg->bin_dir, m,
				    depth + 1, val, sizeof(val)))
				return false;
			break;
		default:
			return false;
		}
		vl = strlen(val);
		if (n + vl >= len)
			return false;
		memcpy(out + n, val, vl);
		n += vl;
	}
	out[n] = '\0';
	return true;
}

bool
op_expand(const struct op *op, const char *tmpl, int m, char *out, size_t len)
{
	return expand(op, tmpl, m, 0, out, len);
}

bool
op_path(struct op *op, const char *tmpl, int m, int version, char *out, size_t len)
{
	int saved = op->version;
	const char *p;
	bool ok;

	op->version = version;
	ok = op_expand(op, tmpl, m, out, len);
	op->version = saved;
	if (!ok) {
		log_error("cannot expand path template \"%s\" (escapes: %%m %%h %%p %%v %%s %%%%)",
			  tmpl);
		return false;
	}
	for (p = out; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("/._-+@:,=", *p))) {
			log_error("path \"%s\" (from \"%s\") has characters other than "
				  "[A-Za-z0-9/._-+@:,=]", out, tmpl);
			return false;
		}
	}
	return true;
}

bool
op_shell_quote(const char *s, char *out, size_t len)
{
	size_t n = 0;

	if (len < 3)
		return false;
	out[n++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			if (n + 5 >= len)
				return false;
			memcpy(out + n, "'\\''", 4);
			n += 4;
		} else {
			if (n + 2 >= len)
				return false;
			out[n++] = *s;
		}
	}
	out[n++] = '\'';
	out[n] = '\0';
	return true;
}

/* the command as it runs: member_command prefix + quoted cmd, or cmd */
static bool
full_command(struct op *op, int m, const char *cmd, char *out, size_t len)
{
	static char prefix[OP_CMD_MAX];
	static char quoted[OP_CMD_MAX];

	if (op->cfg->member_command[0] == '\0')
		return copy_text(out, len, cmd);
	if (!op_expand(op, op->cfg->member_command, m, prefix, sizeof(prefix))) {
		log_error("cannot expand member_command \"%s\"", op->cfg->member_command);
		return false;
	}
	if (!op_shell_quote(cmd, quoted, sizeof(quoted)))
		return false;
	return snprintf(out, len, "%s %s", prefix, quoted) < (int) len;
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

/* a command that could not run, or was killed at step_timeout (op->timed_out) */
static void
exec_failed(const struct op *op, int m, const char *what, const char *err)
{
	const char *on = m >= 0 ? op->members[m].name : "local";

	if (op->timed_out)
		log_error("%s on %s: %s: killed at step_timeout ([upgrade] step_timeout in "
			  "helper.ini or --upgrade-step-timeout; 0 = no limit)", what, on, err);
	else
		log_error("%s on %s: %s", what, on, err);
}

/* run cmd on member m (-1: here) through /bin/sh; out NULL: no capture */
static bool
op_run(struct op *op, int m, const char *cmd, const char *what, char *out, size_t len)
{
	static char full[OP_CMD_MAX * 2];
	static char shown[OP_CMD_MAX * 2];
	const char *on = m >= 0 ? op->members[m].name : "local";
	char *argv[4];
	char err[1024];
	int status = 0;
	bool ran;

	if (!full_command(op, m, cmd, full, sizeof(full))) {
		log_error("%s: command too long for member %s", what,
			  m >= 0 ? op->members[m].name : "-");
		return false;
	}
	if (!out && op->dry_run) {
		secret_mask(full, shown, sizeof(shown));
		printf("    [%s] %s\n", on, shown);
		return true;
	}
	log_info("%s on %s: $ %s", what, on, full);
	argv[0] = (char *) "/bin/sh";
	argv[1] = (char *) "-c";
	argv[2] = full;
	argv[3] = NULL;
	op->timed_out = false;
	if (out)
		ran = run_capture(argv, op->cfg->step_timeout_usec, &status, out, len, err,
				  sizeof(err));
	else
		ran = run_command(argv, op->cfg->step_timeout_usec, &status, err, sizeof(err));
	if (!ran) {
		op->timed_out = status == -1;
		exec_failed(op, m, what, err);
		return false;
	}
	if (status != 0) {
		log_error("%s on %s failed (exit code %d): %s", what, on, status, full);
		return false;
	}
	return true;
}

bool
op_capture(struct op *op, int m, const char *cmd, const char *what, char *out, size_t len)
{
	return op_run(op, m, cmd, what, out, len);
}

bool
op_exec(struct op *op, int m, const char *cmd, const char *what)
{
	return op_run(op, m, cmd, what, NULL, 0);
}

bool
op_wait_patroni_down(struct op *op, int m, int version, uint64_t timeout_usec)
{
	struct json_object *obj;
	char err[1024], bin[HELPER_VALUE_MAX], data[HELPER_VALUE_MAX];
	char cmd[3 * HELPER_VALUE_MAX];
	uint64_t deadline = op_now() + timeout_usec;

	if (!op_path(op, op->cfg->bin_dir, m, version, bin, sizeof(bin)) ||
	    !op_path(op, op->cfg->data_dir, m, version, data, sizeof(data)))
		return false;
	if (op->dry_run) {
		printf("    check: %s/patroni stops answering\n", op->members[m].api);
	} else {
		for (;;) {
			obj = rest_get(op, op->members[m].api, "/patroni", err, sizeof(err));
			if (obj == NULL)
				break;
			json_object_put(obj);
			if (op_now() >= deadline) {
				log_error("patroni on %s still answers at %s/patroni after %.0f s",
					  op->members[m].name, op->members[m].api,
					  (double) timeout_usec / 1e6);
				return false;
			}
			op_sleep();
		}
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
	char err[1024] = "", last[256] = "no answer";
	const char *state, *role;
	uint64_t deadline = op_now() + timeout_usec;
	int num;

	if (op->dry_run) {
		printf("    check: %s/patroni says state running, role %s", op->members[m].api,
		       want_role);
		if (version > 0)
			printf(", server version %d", version);
		printf("\n");
		return true;
	}
	for (;;) {
		obj = rest_get(op, op->members[m].api, "/patroni", err, sizeof(err));
		if (obj != NULL) {
			state = http_json_text(obj, "state");
			role = http_json_text(obj, "role");
			num = json_object_get_int(http_json_member(obj, "server_version"));
			snprintf(last, sizeof(last), "state %s, role %s, server_version %d",
				 state, role, num);
			json_object_put(obj);
			if (strcmp(state, "running") == 0 && role_matches(role, want_role) &&
			    (version <= 0 || op_major(num) == version)) {
				log_info("%s is up: %s", op->members[m].name, last);
				return true;
			}
		} else {
			snprintf(last, sizeof(last), "%s", err);
		}
		if (op_now() >= deadline) {
			log_error("%s not running as %s%s within %.0f s; last seen: %s",
				  op->members[m].name, want_role,
				  version > 0 ? " of the new version" : "",
				  (double) timeout_usec / 1e6, last);
			return false;
		}
		op_sleep();
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
	char err[1024], missing[128] = "?";
	uint64_t deadline = op_now() + timeout_usec;
	bool ok;

	if (op->dry_run) {
		printf("    check: %s/patroni lists every replica as streaming\n", l->api);
		return true;
	}
	for (;;) {
		obj = rest_get(op, l->api, "/patroni", err, sizeof(err));
		ok = obj != NULL && all_streaming(obj, op, missing, sizeof(missing));
		json_object_put(obj);
		if (ok) {
			log_info("every replica streams from %s", l->name);
			return true;
		}
		if (op_now() >= deadline) {
			log_error("replica %s does not stream from %s after %.0f s", missing, l->name,
				  (double) timeout_usec / 1e6);
			return false;
		}
		op_sleep();
	}
}

bool
op_dcs_remove(struct op *op)
{
	struct consul_response resp;
	char path[600], err[1024];
	long status;

	/* an empty scope would make this service//?recurse, or the whole namespace */
	if (!kv_path(op, "?recurse", path, sizeof(path))) {
		log_error("refusing to remove DCS state without a scope and namespace");
		return false;
	}
	if (op->dry_run) {
		printf("    [local] DELETE %s%s\n", op->cfg->consul.url, path);
		printf("    check: GET %s%s answers 404\n", op->cfg->consul.url, path);
		return true;
	}
	log_info("removing the cluster from the DCS: DELETE %s%s", op->cfg->consul.url, path);
	if (!http_consul(op->cfg, "DELETE", path, NULL, HTTP_TIMEOUT_MS, &resp, err,
			 sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	status = resp.status;
	consul_response_free(&resp);
	if (status != 200) {
		log_error("DELETE %s%s: HTTP %ld", op->cfg->consul.url, path, status);
		return false;
	}
	if (!http_consul(op->cfg, "GET", path, NULL, HTTP_TIMEOUT_MS, &resp, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	status = resp.status;
	consul_response_free(&resp);
	if (status != 404) {
		log_error("keys under %s/%s/ are still in Consul after the delete (HTTP %ld)",
			  op->cfg->consul.namespace_, op->cfg->scope, status);
		return false;
	}
	log_info("no key left under %s/%s/", op->cfg->consul.namespace_, op->cfg->scope);
	return true;
}

/* "loop_wait 3, ttl 23, retry_timeout 5, 4 postgresql parameters" of a saved config */
static void
describe_config(const char *json, char *out, size_t len)
{
	struct json_object *obj = json_tokener_parse(json), *params;
	const char *keys[] = {"loop_wait", "ttl", "retry_timeout", "synchronous_mode"};
	size_t i, n = 0;

	out[0] = '\0';
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]) && n < len; i++) {
		if (http_json_member(obj, keys[i]) != NULL)
			n += snprintf(out + n, len - n, "%s%s %s", n ? ", " : "", keys[i],
				      http_json_text(obj, keys[i]));
	}
	params = http_json_member(http_json_member(obj, "postgresql"), "parameters");
	if (n < len)
		snprintf(out + n, len - n, "%s%d postgresql parameters", n ? ", " : "",
			 params && json_object_is_type(params, json_type_object) ?
			 json_object_object_length(params) : 0);
	json_object_put(obj);
}

/* same JSON value, whatever the spacing and key order */
static bool
same_config(const char *a, const char *b)
{
	struct json_object *x = json_tokener_parse(a), *y = json_tokener_parse(b);
	bool same = x != NULL && y != NULL && json_object_equal(x, y);

	json_object_put(x);
	json_object_put(y);
	return same;
}

bool
op_dcs_config_put(struct op *op)
{
	static char now[OP_CONFIG_MAX];
	struct consul_response resp;
	char path[600], shown[256], err[1024];
	bool written;

	if (op->dcs_config[0] == '\0') {
		log_error("state file %s holds no saved dynamic configuration: start over, or put "
			  "it back with patronictl edit-config after the cluster is up",
			  op->state_path);
		return false;
	}
	if (!kv_path(op, "config?cas=0", path, sizeof(path))) {
		log_error("no scope or namespace for the DCS configuration key");
		return false;
	}
	describe_config(op->dcs_config, shown, sizeof(shown));
	op_note(op, "dynamic configuration saved from the DCS: %s", shown);
	if (op->dry_run) {
		printf("    [local] PUT %s%s (the saved configuration, only if absent)\n",
		       op->cfg->consul.url, path);
		printf("    check: GET %s/v1/kv/%s/%s/config holds it\n", op->cfg->consul.url,
		       op->cfg->consul.namespace_, op->cfg->scope);
		return true;
	}
	/* cas=0: never overwrite a configuration someone wrote since the removal */
	log_info("putting back the dynamic configuration: PUT %s%s", op->cfg->consul.url, path);
	if (!http_consul(op->cfg, "PUT", path, op->dcs_config, HTTP_TIMEOUT_MS, &resp, err,
			 sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	written = resp.status == 200 && resp.len >= 4 && strncmp(resp.body, "true", 4) == 0;
	if (resp.status != 200) {
		log_error("PUT %s%s: HTTP %ld", op->cfg->consul.url, path, resp.status);
		consul_response_free(&resp);
		return false;
	}
	consul_response_free(&resp);
	if (!dcs_config_get(op, now, sizeof(now), err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	if (!same_config(now, op->dcs_config)) {
		log_error("%s/%s/config %s and differs from the saved configuration (state file "
			  "%s): refusing to overwrite it", op->cfg->consul.namespace_, op->cfg->scope,
			  written ? "was changed right after the write" : "already exists",
			  op->state_path);
		return false;
	}
	log_info("%s/%s/config holds the saved configuration%s", op->cfg->consul.namespace_,
		 op->cfg->scope, written ? "" : " (already there)");
	return true;
}

bool
op_dcs_config_verify(struct op *op)
{
	struct json_object_iterator it, end;
	struct json_object *saved, *now, *value;
	const char *key;
	char err[1024];
	bool ok = true;

	if (op->dry_run) {
		printf("    check: %s/config holds every value of the saved configuration\n",
		       op->members[op->leader].api);
		return true;
	}
	saved = json_tokener_parse(op->dcs_config);
	if (saved == NULL) {
		log_error("state file %s: the saved dynamic configuration is not JSON",
			  op->state_path);
		return false;
	}
	now = rest_get(op, op->members[op->leader].api, "/config", err, sizeof(err));
	if (now == NULL) {
		log_error("%s", err);
		json_object_put(saved);
		return false;
	}
	for (it = json_object_iter_begin(saved), end = json_object_iter_end(saved);
	     !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		key = json_object_iter_peek_name(&it);
		value = json_object_iter_peek_value(&it);
		if (!json_object_equal(value, http_json_member(now, key))) {
			log_error("patroni %s/config: %s is %s, the saved configuration had %s",
				  op->members[op->leader].api, key,
				  json_object_to_json_string_ext(http_json_member(now, key),
								 JSON_C_TO_STRING_PLAIN),
				  json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN));
			ok = false;
			break;
		}
	}
	if (ok)
		log_info("patroni on %s uses the saved dynamic configuration",
			 op->members[op->leader].name);
	json_object_put(saved);
	json_object_put(now);
	return ok;
}

int
op_run_steps(struct op *op, const struct op_step *steps, int count, int from,
	     const char *resume_cmd)
{
	char err[1024];
	uint64_t t0, all = op_now();
	int k;

	for (k = from; k <= count; k++) {
		if (op->dry_run) {
			printf("\nstep %d/%d: %s\n", k, count, steps[k - 1].title);
			if (!steps[k - 1].func(op))
				return HELPER_EXIT_FAIL;
			continue;
		}
		log_info("step %d/%d: %s", k, count, steps[k - 1].title);
		op->next_step = k;
		strcpy(op->status, "running");
		if (!op_state_save(op, err, sizeof(err))) {
			log_error("%s", err);
			return HELPER_EXIT_FAIL;
		}
		t0 = op_now();
		if (!steps[k - 1].func(op)) {
			strcpy(op->status, "failed");
			if (!op_state_save(op, err, sizeof(err)))
				log_error("%s", err);
			log_error("step %d/%d (%s) failed; nothing after it was run", k, count,
				  steps[k - 1].title);
			if (steps[k - 1].retry_hint)
				log_error("what to do: %s", steps[k - 1].retry_hint);
			log_error("after fixing it, resume with: %s --from-step %d", resume_cmd, k);
			return HELPER_EXIT_FAIL;
		}
		log_info("step %d/%d done in %.1f s", k, count, (double) (op_now() - t0) / 1e6);
	}
	if (!op->dry_run) {
		op->next_step = count + 1;
		strcpy(op->status, "done");
		if (!op_state_save(op, err, sizeof(err)))
			log_error("%s", err);
		log_info("%s of scope %s finished: steps %d-%d in %.1f s", op->kind,
			 op->cfg->scope, from, count, (double) (op_now() - all) / 1e6);
	}
	return HELPER_EXIT_OK;
}

/* --from-step K, 1..steps; false (logged) otherwise */
bool
op_parse_step(const char *arg, int steps, int *step)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (*arg == '\0' || *end != '\0' || v < 1 || v > steps) {
		log_error("--from-step: \"%.32s\" is not a step number (1..%d)", arg, steps);
		return false;
	}
	*step = (int) v;
	return true;
}

/* --wait D, a duration above 0; false (logged) otherwise */
bool
op_parse_wait(const char *arg, uint64_t *usec)
{
	char err[256];

	if (!duration_parse(arg, usec, err, sizeof(err))) {
		log_error("--wait: \"%.32s\": %s", arg, err);
		return false;
	}
	if (*usec == 0) {
		log_error("--wait: \"%.32s\": must be > 0", arg);
		return false;
	}
	return true;
}

/* the one word after the options: plan or run; NULL (logged) otherwise */
const char *
op_parse_action(int argc, char **argv, int optind_, const char *kind)
{
	if (optind_ >= argc || (strcmp(argv[optind_], "plan") != 0 &&
				strcmp(argv[optind_], "run") != 0)) {
		log_error("%s needs plan or run (try --help)", kind);
		return NULL;
	}
	if (optind_ + 1 < argc) {
		log_error("unexpected argument \"%s\" (try --help)", argv[optind_ + 1]);
		return NULL;
	}
	return argv[optind_];
}

/*
 * One run per scope and kind: a write lock (fcntl) on <state file>.lock,
 * held until the process exits.  fcntl, not flock, so that F_GETLK can
 * name the holder's PID in the refusal.
 */
static bool
op_lock(struct op *op)
{
	struct flock fl;
	char path[sizeof(op->state_path) + 8];
	int fd;

	snprintf(path, sizeof(path), "%s.lock", op->state_path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("cannot open lock file %s: %s", path, strerror(errno));
		return false;
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_SETLK, &fl) == 0)
		return true;	/* fd stays open: the lock lasts as long as the run */
	if (errno != EACCES && errno != EAGAIN) {
		log_error("cannot lock %s: %s", path, strerror(errno));
	} else {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			log_error("another %s of scope %s is running: %s is locked by pid %ld: "
				  "refusing", op->kind, op->cfg->scope, path, (long) fl.l_pid);
		else
			log_error("another %s of scope %s is running: %s is locked: refusing",
				  op->kind, op->cfg->scope, path);
	}
	close(fd);
	return false;
}

static int
find_member(const struct op *op, const char *name)
{
	int i;

	for (i = 0; i < op->member_count; i++) {
		if (strcmp(op->members[i].name, name) == 0)
			return i;
	}
	return -1;
}

/*
 * A state member the live /cluster does not list: fine when it is stopped
 * (its REST API silent, as after the stop step), not when it answers
 * under another name or scope.
 */
static bool
absent_member_ok(const struct op *op, const struct op_member *sm, char *err, size_t errlen)
{
	struct json_object *p;
	char ignored[256], shown[ERRBUF_VALUE_MAX];
	const char *name, *scope;
	bool ok;

	p = rest_get(op, sm->api, "/patroni", ignored, sizeof(ignored));
	if (p == NULL) {
		log_info("state file member %s: patroni at %s does not answer (stopped)",
			 sm->name, sm->api);
		return true;
	}
	name = http_json_text(http_json_member(p, "patroni"), "name");
	scope = http_json_text(http_json_member(p, "patroni"), "scope");
	ok = strcmp(name, sm->name) == 0 && strcmp(scope, op->cfg->scope) == 0;
	if (!ok) {
		errbuf_printable(name[0] ? name : "(none)", shown, sizeof(shown));
		errbuf_set(err, errlen, "state file member %s: patroni at %s answers as member "
			   "%s of scope %s", sm->name, sm->api, shown,
			   scope[0] ? scope : "(none)");
	}
	json_object_put(p);
	return ok;
}

/*
 * --from-step: the state file's members against the live cluster.  When
 * patroni_url answers, its scope must be helper.ini's, every member it
 * lists must be in the state file with the same host, port and API, and a
 * state member it does not list must be stopped.  When it does not answer
 * (the run stopped the cluster) there is nothing live to compare: say so.
 */
static bool
check_live(struct op *op, char *err, size_t errlen)
{
	struct json_object *cluster, *patroni, *members, *m;
	struct op_member *sm;
	char why[512], api[512], shown[ERRBUF_VALUE_MAX];
	bool seen[OP_MEMBERS_MAX] = {false};
	bool ok = false;
	const char *name;
	size_t i, n;
	int k;

	cluster = rest_get(op, op->cfg->patroni_url, "/cluster", why, sizeof(why));
	if (cluster == NULL) {
		log_warning("cannot check the state file's members against the live cluster: "
			    "%s (stopped by this run?)", why);
		return true;
	}
	patroni = rest_get(op, op->cfg->patroni_url, "/patroni", err, errlen);
	if (patroni == NULL || !scope_matches(op, patroni, err, errlen))
		goto done;
	members = http_json_member(cluster, "members");
	n = members && json_object_is_type(members, json_type_array) ?
		json_object_array_length(members) : 0;
	for (i = 0; i < n; i++) {
		m = json_object_array_get_idx(members, i);
		name = http_json_text(m, "name");
		k = find_member(op, name);
		errbuf_printable(name, shown, sizeof(shown));
		if (k < 0) {
			errbuf_set(err, errlen, "live member %s (patroni %s/cluster) is not in "
				   "the state file", shown, op->cfg->patroni_url);
			goto done;
		}
		sm = &op->members[k];
		if (!api_base(http_json_text(m, "api_url"), api, sizeof(api)) ||
		    strcmp(api, sm->api) != 0 ||
		    strcmp(http_json_text(m, "host"), sm->host) != 0 ||
		    json_object_get_int(http_json_member(m, "port")) != sm->port) {
			errbuf_set(err, errlen, "member %s: the live cluster has host %s port %d "
				   "api %s, the state file %s port %d api %s", shown,
				   http_json_text(m, "host"),
				   json_object_get_int(http_json_member(m, "port")), api,
				   sm->host, sm->port, sm->api);
			goto done;
		}
		seen[k] = true;
	}
	for (k = 0; k < op->member_count; k++) {
		if (!seen[k] && !absent_member_ok(op, &op->members[k], err, errlen))
			goto done;
	}
	log_info("state file members match the live cluster (patroni %s/cluster)",
		 op->cfg->patroni_url);
	ok = true;
done:
	json_object_put(cluster);
	json_object_put(patroni);
	return ok;
}

/*
 * Start or resume a run.  With from > 1 the state file must exist and
 * have reached that step: op holds it (OP_BEGIN_RESUME).  Otherwise a run
 * that stopped refuses a fresh start unless this is a plan, and op is
 * reset for one (OP_BEGIN_FRESH).  Errors are logged.
 */
enum op_begin
op_begin(struct op *op, struct helper_config *cfg, const char *kind, bool dry_run, int from)
{
	char err[1024];
	bool exists;

	/* the scope names the state file and every DCS path: never run without one */
	if (!cmd_scope_set(cfg))
		return OP_BEGIN_USAGE;
	op_init(op, cfg, kind);
	op->dry_run = dry_run;
	if (!dry_run && !op_lock(op))
		return OP_BEGIN_FAIL;
	if (!op_state_load(op, &exists, err, sizeof(err)) && exists) {
		log_error("%s", err);
		return OP_BEGIN_FAIL;
	}
	if (from > 1) {
		if (!exists) {
			log_error("--from-step %d: no state file %s (start with --from-step 1)",
				  from, op->state_path);
			return OP_BEGIN_USAGE;
		}
		if (from > op->next_step) {
			log_error("--from-step %d: steps before %d have not been done (state file %s)",
				  from, op->next_step, op->state_path);
			return OP_BEGIN_USAGE;
		}
		/* the state file is only a file: never stop members it merely names */
		if (!check_live(op, err, sizeof(err))) {
			log_error("%s: refusing to resume from the state file %s", err,
				  op->state_path);
			return OP_BEGIN_FAIL;
		}
		return OP_BEGIN_RESUME;
	}
	if (exists && !dry_run && strcmp(op->status, "done") != 0) {
		log_error("the %s of scope %s stopped at step %d (state file %s): resume "
			  "with --from-step %d, or remove the file to start over", kind,
			  cfg->scope, op->next_step, op->state_path, op->next_step);
		return OP_BEGIN_FAIL;
	}
	op_init(op, cfg, kind);
	op->dry_run = dry_run;
	return OP_BEGIN_FRESH;
}
