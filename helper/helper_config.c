/*
 * helper.ini reader: [consul] and [helper] keys, each checked as it is
 * read so errors name file, line and key; the same setters serve
 * command-line overrides.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul_proxy.h"
#include "duration.h"
#include "errbuf.h"
#include "helper_config.h"
#include "secret.h"

typedef bool (*config_setter)(struct helper_config *cfg, const char *value,
			      char *err, size_t errlen);

struct config_key {
	const char *section;
	const char *name;
	config_setter set;
};

static bool
copy_value(char *dst, size_t len, const char *value, char *err, size_t errlen)
{
	if (strlen(value) >= len) {
		errbuf_set(err, errlen, "value too long (max %zu bytes)", len - 1);
		return false;
	}
	strcpy(dst, value);
	return true;
}

static bool
name_valid(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char) *s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	}
	return true;
}

static bool
set_duration(uint64_t *dst, const char *value, bool allow_zero, char *err, size_t errlen)
{
	uint64_t usec;

	if (!duration_parse(value, &usec, err, errlen))
		return false;
	if (usec == 0 && !allow_zero) {
		errbuf_set(err, errlen, "must be greater than 0");
		return false;
	}
	*dst = usec;
	return true;
}

static bool
set_consul_url(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!consul_url_check(value, err, errlen))
		return false;
	if (!copy_value(cfg->consul.url, sizeof(cfg->consul.url), value, err, errlen))
		return false;
	cfg->url_set = true;
	return true;
}

static bool
set_token_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->token_file, sizeof(cfg->token_file), value, err, errlen);
}

static bool
set_ca_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->consul.ca_file, sizeof(cfg->consul.ca_file), value, err, errlen);
}

static bool
set_cert_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->consul.cert_file, sizeof(cfg->consul.cert_file), value, err,
			  errlen);
}

static bool
set_key_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->consul.key_file, sizeof(cfg->consul.key_file), value, err, errlen);
}

static bool
set_proxy(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!consul_proxy_check(value, err, errlen))
		return false;
	return copy_value(cfg->consul.proxy, sizeof(cfg->consul.proxy), value, err, errlen);
}

static bool
set_namespace(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!name_valid(value)) {
		errbuf_set(err, errlen, "must be [A-Za-z0-9._-] without slashes");
		return false;
	}
	return copy_value(cfg->consul.namespace_, sizeof(cfg->consul.namespace_), value,
			  err, errlen);
}

static bool
set_wait(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	uint64_t usec;

	if (!set_duration(&usec, value, false, err, errlen))
		return false;
	if (usec > UINT64_C(600) * DURATION_USEC_PER_SEC) {
		errbuf_set(err, errlen, "must be at most 10m (consul's max_query_time)");
		return false;
	}
	cfg->consul.wait_usec = usec;
	return true;
}

static bool
set_no_leader_timeout(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_duration(&cfg->no_leader_timeout_usec, value, true, err, errlen);
}

static bool
set_consistency(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!consul_consistency_parse(value, &cfg->consul.consistency)) {
		errbuf_set(err, errlen, "must be default, consistent or stale");
		return false;
	}
	return true;
}

/* Patroni's keys in this datacenter (dc= on every KV request); empty: the agent's */
static bool
set_datacenter(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	const char *why;

	if (value[0] != '\0' && !consul_datacenter_valid(value, &why)) {
		errbuf_set(err, errlen, "%s", why);
		return false;
	}
	return copy_value(cfg->consul.datacenter, sizeof(cfg->consul.datacenter), value,
			  err, errlen);
}

static bool
set_scope(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!name_valid(value)) {
		errbuf_set(err, errlen, "must be a non-empty [A-Za-z0-9._-] name");
		return false;
	}
	return copy_value(cfg->scope, sizeof(cfg->scope), value, err, errlen);
}

static bool
set_patroni_url(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!consul_url_check_as(value, "patroni_url", err, errlen))
		return false;
	return copy_value(cfg->patroni_url, sizeof(cfg->patroni_url), value, err, errlen);
}

static bool
set_patroni_username(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	const char *p;

	/* basic auth sends "user:password": a ':' would end the name early */
	for (p = value; *p; p++) {
		if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == ':') {
			errbuf_set(err, errlen, "must not hold ':' or control characters");
			return false;
		}
	}
	return copy_value(cfg->patroni_username, sizeof(cfg->patroni_username), value, err,
			  errlen);
}

static bool
set_patroni_password_file(struct helper_config *cfg, const char *value, char *err,
			  size_t errlen)
{
	return copy_value(cfg->patroni_password_file, sizeof(cfg->patroni_password_file), value,
			  err, errlen);
}

static bool
set_patroni_ca_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->patroni_ca_file, sizeof(cfg->patroni_ca_file), value, err, errlen);
}

static bool
set_patroni_cert_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->patroni_cert_file, sizeof(cfg->patroni_cert_file), value, err,
			  errlen);
}

static bool
set_patroni_key_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->patroni_key_file, sizeof(cfg->patroni_key_file), value, err,
			  errlen);
}

static bool
set_pgbouncer_admin(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->pgbouncer_admin, sizeof(cfg->pgbouncer_admin), value, err, errlen);
}

static bool
set_auth_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (value[0] != '/') {
		errbuf_set(err, errlen, "must be an absolute path");
		return false;
	}
	return copy_value(cfg->auth_file, sizeof(cfg->auth_file), value, err, errlen);
}

static bool
set_extra_users_file(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (value[0] != '\0' && value[0] != '/') {
		errbuf_set(err, errlen, "must be an absolute path");
		return false;
	}
	return copy_value(cfg->extra_users_file, sizeof(cfg->extra_users_file), value,
			  err, errlen);
}

static bool
set_source(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->source, sizeof(cfg->source), value, err, errlen);
}

/* split on blanks and commas into a fixed table of words */
static bool
split_words(const char *value, char *words, size_t wordlen, int max, int *count,
	    char *err, size_t errlen)
{
	const char *p = value;
	size_t n;
	int c = 0;

	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, " \t,");
		if (c >= max) {
			errbuf_set(err, errlen, "too many entries (max %d)", max);
			return false;
		}
		if (n >= wordlen) {
			errbuf_set(err, errlen, "entry too long (max %zu bytes)", wordlen - 1);
			return false;
		}
		memcpy(words + (size_t) c * wordlen, p, n);
		words[(size_t) c * wordlen + n] = '\0';
		c++;
		p += n;
	}
	*count = c;
	return true;
}

static bool
set_exclude_users(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return split_words(value, &cfg->exclude_users[0][0], sizeof(cfg->exclude_users[0]),
			   HELPER_LIST_MAX, &cfg->exclude_count, err, errlen);
}

static bool
set_sync_interval(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_duration(&cfg->sync_interval_usec, value, false, err, errlen);
}

static bool
set_stanza(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (!name_valid(value)) {
		errbuf_set(err, errlen, "must be a non-empty [A-Za-z0-9._-] name");
		return false;
	}
	return copy_value(cfg->pgbackrest_stanza, sizeof(cfg->pgbackrest_stanza), value,
			  err, errlen);
}

static bool
set_datacenters(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	int i;

	if (!split_words(value, &cfg->datacenters[0][0], sizeof(cfg->datacenters[0]),
			 HELPER_DC_MAX, &cfg->datacenter_count, err, errlen))
		return false;
	for (i = 0; i < cfg->datacenter_count; i++) {
		if (!name_valid(cfg->datacenters[i])) {
			errbuf_set(err, errlen, "invalid datacenter name");
			cfg->datacenter_count = 0;
			return false;
		}
	}
	return true;
}

static bool
set_dns_ttl(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_duration(&cfg->dns_ttl_usec, value, true, err, errlen);
}

/* [prepared_queries]: per-query DNS TTLs (unset: dns_ttl) and NearestN */
static bool
set_pq_ttl(struct helper_config *cfg, int kind, const char *value, char *err, size_t errlen)
{
	if (!set_duration(&cfg->pq_ttl_usec[kind], value, true, err, errlen))
		return false;
	cfg->pq_ttl_set[kind] = true;
	return true;
}

static bool
set_writer_ttl(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_pq_ttl(cfg, HELPER_PQ_WRITER, value, err, errlen);
}

static bool
set_query_ttl(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_pq_ttl(cfg, HELPER_PQ_QUERY, value, err, errlen);
}

static bool
set_any_ttl(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_pq_ttl(cfg, HELPER_PQ_ANY, value, err, errlen);
}

bool
helper_config_nearest_n(const char *value, int *out, char *err, size_t errlen)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < 0 || v > 100) {
		errbuf_set(err, errlen, "must be a number from 0 to 100");
		return false;
	}
	*out = (int) v;
	return true;
}

static bool
set_nearest_n(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return helper_config_nearest_n(value, &cfg->nearest_n, err, errlen);
}

uint64_t
helper_config_pq_ttl(const struct helper_config *cfg, int kind)
{
	return cfg->pq_ttl_set[kind] ? cfg->pq_ttl_usec[kind] : cfg->dns_ttl_usec;
}

/* [upgrade] command templates: any text, expanded when used (see helper/op.h) */
static bool
set_member_command(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->member_command, sizeof(cfg->member_command), value, err, errlen);
}

static bool
set_patroni_stop(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->patroni_stop, sizeof(cfg->patroni_stop), value, err, errlen);
}

static bool
set_patroni_start(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->patroni_start, sizeof(cfg->patroni_start), value, err, errlen);
}

static bool
set_connect_options(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->connect_options, sizeof(cfg->connect_options), value, err, errlen);
}

static bool
set_pg_upgrade_options(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return copy_value(cfg->pg_upgrade_options, sizeof(cfg->pg_upgrade_options), value, err, errlen);
}

static bool
set_path_template(char *dst, size_t len, const char *value, char *err, size_t errlen)
{
	if (value[0] != '/') {
		errbuf_set(err, errlen, "must be an absolute path");
		return false;
	}
	return copy_value(dst, len, value, err, errlen);
}

static bool
set_patroni_config(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_path_template(cfg->patroni_config, sizeof(cfg->patroni_config), value,
				 err, errlen);
}

static bool
set_data_dir(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_path_template(cfg->data_dir, sizeof(cfg->data_dir), value, err, errlen);
}

static bool
set_bin_dir(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_path_template(cfg->bin_dir, sizeof(cfg->bin_dir), value, err, errlen);
}

static bool
set_state_dir(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	return set_path_template(cfg->state_dir, sizeof(cfg->state_dir), value, err, errlen);
}

static bool
set_pgbackrest(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	if (value[0] == '\0') {
		errbuf_set(err, errlen, "must not be empty");
		return false;
	}
	return copy_value(cfg->pgbackrest, sizeof(cfg->pgbackrest), value, err, errlen);
}

static bool
set_step_timeout(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	/* 0: no limit, for a pg_upgrade that must never be killed half-way */
	return set_duration(&cfg->step_timeout_usec, value, true, err, errlen);
}

static bool
set_max_lag(struct helper_config *cfg, const char *value, char *err, size_t errlen)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < 0) {
		errbuf_set(err, errlen, "must be a number of bytes >= 0");
		return false;
	}
	cfg->max_lag = v;
	return true;
}

/* every key helper.ini knows, per section */
static const struct config_key config_keys[] = {
	{"consul", "ca_file", set_ca_file},
	{"consul", "cert_file", set_cert_file},
	{"consul", "consistency", set_consistency},
	{"consul", "datacenter", set_datacenter},
	{"consul", "key_file", set_key_file},
	{"consul", "namespace", set_namespace},
	{"consul", "no_leader_timeout", set_no_leader_timeout},
	{"consul", "proxy", set_proxy},
	{"consul", "token_file", set_token_file},
	{"consul", "url", set_consul_url},
	{"consul", "wait", set_wait},
	{"helper", "auth_file", set_auth_file},
	{"helper", "datacenters", set_datacenters},
	{"helper", "dns_ttl", set_dns_ttl},
	{"helper", "exclude_users", set_exclude_users},
	{"helper", "extra_users_file", set_extra_users_file},
	{"helper", "patroni_ca_file", set_patroni_ca_file},
	{"helper", "patroni_cert_file", set_patroni_cert_file},
	{"helper", "patroni_key_file", set_patroni_key_file},
	{"helper", "patroni_password_file", set_patroni_password_file},
	{"helper", "patroni_url", set_patroni_url},
	{"helper", "patroni_username", set_patroni_username},
	{"helper", "pgbackrest_stanza", set_stanza},
	{"helper", "pgbouncer_admin", set_pgbouncer_admin},
	{"helper", "scope", set_scope},
	{"helper", "source", set_source},
	{"helper", "sync_interval", set_sync_interval},
	{"prepared_queries", "any_ttl", set_any_ttl},
	{"prepared_queries", "nearest_n", set_nearest_n},
	{"prepared_queries", "query_ttl", set_query_ttl},
	{"prepared_queries", "writer_ttl", set_writer_ttl},
	{"upgrade", "bin_dir", set_bin_dir},
	{"upgrade", "connect_options", set_connect_options},
	{"upgrade", "data_dir", set_data_dir},
	{"upgrade", "max_lag", set_max_lag},
	{"upgrade", "member_command", set_member_command},
	{"upgrade", "patroni_config", set_patroni_config},
	{"upgrade", "patroni_start", set_patroni_start},
	{"upgrade", "patroni_stop", set_patroni_stop},
	{"upgrade", "pg_upgrade_options", set_pg_upgrade_options},
	{"upgrade", "pgbackrest", set_pgbackrest},
	{"upgrade", "state_dir", set_state_dir},
	{"upgrade", "step_timeout", set_step_timeout},
	{NULL, NULL, NULL}
};

void
helper_config_init(struct helper_config *cfg)
{
	char err[64];

	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->consul.url, "http://127.0.0.1:8500");
	strcpy(cfg->consul.namespace_, "service");
	cfg->consul.wait_usec = UINT64_C(300) * DURATION_USEC_PER_SEC;
	cfg->consul.consistency = CONSUL_CONSISTENCY_DEFAULT;
	cfg->no_leader_timeout_usec = UINT64_C(30) * DURATION_USEC_PER_SEC;
	strcpy(cfg->patroni_url, "http://127.0.0.1:8008");
	strcpy(cfg->source, "user=postgres dbname=postgres");
	cfg->sync_interval_usec = UINT64_C(60) * DURATION_USEC_PER_SEC;
	strcpy(cfg->pgbackrest_stanza, "main");
	cfg->dns_ttl_usec = UINT64_C(30) * DURATION_USEC_PER_SEC;
	cfg->nearest_n = 3;
	set_exclude_users(cfg, "postgres", err, sizeof(err));
	strcpy(cfg->patroni_config, "/etc/patroni/%m.yml");
	strcpy(cfg->data_dir, "/var/lib/postgresql/%v/%m");
	strcpy(cfg->bin_dir, "/usr/lib/postgresql/%v/bin");
	strcpy(cfg->patroni_stop, "systemctl stop patroni");
	strcpy(cfg->patroni_start, "systemctl start patroni");
	strcpy(cfg->connect_options, "-p %p");
	strcpy(cfg->pgbackrest, "pgbackrest");
	strcpy(cfg->state_dir, "/var/lib/pgbouncer-consul");
	cfg->step_timeout_usec = UINT64_C(3600) * DURATION_USEC_PER_SEC;
	cfg->max_lag = 1048576;
}

static const struct config_key *
find_key(const char *section, const char *key)
{
	const struct config_key *k;

	for (k = config_keys; k->name; k++) {
		if (strcmp(k->section, section) == 0 && strcmp(k->name, key) == 0)
			return k;
	}
	return NULL;
}

bool
helper_config_set(struct helper_config *cfg, const char *section, const char *key,
		  const char *value, char *err, size_t errlen)
{
	const struct config_key *k = find_key(section, key);
	char msg[256];

	if (k == NULL) {
		errbuf_set(err, errlen, "%s: unknown key in [%s]", key, section);
		return false;
	}
	if (!k->set(cfg, value, msg, sizeof(msg))) {
		errbuf_set(err, errlen, "%s: %s", key, msg);
		return false;
	}
	return true;
}

bool
helper_config_option(const char *option, const char **section, char *key, size_t keylen)
{
	const struct config_key *k;
	const char *name = option;
	const char *want = "helper";
	size_t i;

	if (strncmp(option, "consul-", 7) == 0) {
		name = option + 7;
		want = "consul";
	} else if (strncmp(option, "upgrade-", 8) == 0) {
		name = option + 8;
		want = "upgrade";
	}
	if (strlen(name) >= keylen)
		return false;
	for (i = 0; name[i]; i++)
		key[i] = name[i] == '-' ? '_' : name[i];
	key[i] = '\0';
	for (k = config_keys; k->name; k++) {
		if (strcmp(k->section, want) == 0 && strcmp(k->name, key) == 0) {
			*section = k->section;
			return true;
		}
	}
	return false;
}

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
			   end[-1] == '\n'))
		end--;
	*end = '\0';
	return s;
}

/* cut an inline " ;comment" or " #comment" (needs a blank before it) */
static void
cut_comment(char *s)
{
	char *p;

	for (p = s; *p; p++) {
		if ((*p == ';' || *p == '#') && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

bool
helper_config_load(struct helper_config *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f;
	char line[4096];
	char section[64] = "";
	char msg[512];
	char *s, *eq, *key, *value, *end;
	int lineno = 0;
	bool ok = false;

	f = fopen(path, "r");
	if (f == NULL) {
		errbuf_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			errbuf_set(err, errlen, "%s:%d: line too long", path, lineno);
			goto done;
		}
		s = trim(line);
		if (*s == '\0' || *s == ';' || *s == '#')
			continue;
		if (*s == '[') {
			end = strchr(s, ']');
			if (end != NULL)
				cut_comment(end + 1);
			if (end == NULL || trim(end + 1)[0] != '\0') {
				errbuf_set(err, errlen, "%s:%d: malformed section header", path, lineno);
				goto done;
			}
			*end = '\0';
			key = trim(s + 1);
			if (strcmp(key, "consul") != 0 && strcmp(key, "helper") != 0 &&
			    strcmp(key, "prepared_queries") != 0 && strcmp(key, "upgrade") != 0) {
				errbuf_printable(key, msg, 128);
				errbuf_set(err, errlen, "%s:%d: unknown section [%s]", path, lineno, msg);
				goto done;
			}
			strcpy(section, key);
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			errbuf_set(err, errlen, "%s:%d: expected key = value", path, lineno);
			goto done;
		}
		*eq = '\0';
		key = trim(s);
		value = eq + 1;
		cut_comment(value);
		value = trim(value);
		if (*key == '\0') {
			errbuf_set(err, errlen, "%s:%d: missing key before '='", path, lineno);
			goto done;
		}
		if (section[0] == '\0') {
			errbuf_printable(key, msg, 128);
			errbuf_set(err, errlen, "%s:%d: %s: key outside a section", path, lineno, msg);
			goto done;
		}
		if (find_key(section, key) == NULL) {
			errbuf_printable(key, msg, 128);
			errbuf_set(err, errlen, "%s:%d: %s: unknown key in [%s]", path, lineno, msg,
				   section);
			goto done;
		}
		if (!helper_config_set(cfg, section, key, value, msg, sizeof(msg))) {
			errbuf_set(err, errlen, "%s:%d: %s", path, lineno, msg);
			goto done;
		}
	}
	if (ferror(f)) {
		errbuf_set(err, errlen, "%s: read error", path);
		goto done;
	}
	ok = true;
done:
	fclose(f);
	return ok;
}

static bool
env_true(const char *v)
{
	/* what Go's strconv.ParseBool takes as true (consul reads CONSUL_HTTP_SSL so) */
	return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "t") == 0 || strcmp(v, "T") == 0 ||
			     strcmp(v, "true") == 0 || strcmp(v, "TRUE") == 0 ||
			     strcmp(v, "True") == 0);
}

/* an environment variable's path into an unset setting */
static bool
env_path(char *dst, size_t len, const char *value, const char *name, char *err, size_t errlen)
{
	char msg[128];

	if (dst[0] != '\0' || value == NULL || value[0] == '\0')
		return true;
	if (!copy_value(dst, len, value, msg, sizeof(msg))) {
		errbuf_set(err, errlen, "%s: %s", name, msg);
		return false;
	}
	return true;
}

/* the token from CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN, when token_file is unset */
static bool
env_token(struct helper_config *cfg, const struct helper_consul_env *env, char *err,
	  size_t errlen)
{
	const char *p;

	if (cfg->token_file[0] != '\0')
		return true;
	if (env->token_file != NULL && env->token_file[0] != '\0')
		return env_path(cfg->token_file, sizeof(cfg->token_file), env->token_file,
				"CONSUL_HTTP_TOKEN_FILE", err, errlen);
	if (env->token == NULL || env->token[0] == '\0')
		return true;
	/* a header value: printable, no blanks; never shown */
	for (p = env->token; *p; p++) {
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f) {
			errbuf_set(err, errlen, "CONSUL_HTTP_TOKEN: not a token (blank, control "
				   "or non-ASCII character)");
			return false;
		}
	}
	if (strlen(env->token) >= sizeof(cfg->consul.token)) {
		errbuf_set(err, errlen, "CONSUL_HTTP_TOKEN: too long");
		return false;
	}
	strcpy(cfg->consul.token, env->token);
	return true;
}

bool
helper_config_consul_env(struct helper_config *cfg, const struct helper_consul_env *env,
			 char *err, size_t errlen)
{
	char url[CONSUL_URL_MAX];
	char msg[512];
	const char *addr = env->addr;

	if (!cfg->url_set && addr != NULL && addr[0] != '\0') {
		if (strstr(addr, "://") != NULL)
			snprintf(url, sizeof(url), "%s", addr);
		else if (snprintf(url, sizeof(url), "%s://%s",
				  env_true(env->ssl) ? "https" : "http", addr) >= (int) sizeof(url))
			url[0] = '\0';
		if (!consul_url_check(url, msg, sizeof(msg)) ||
		    !copy_value(cfg->consul.url, sizeof(cfg->consul.url), url, msg, sizeof(msg))) {
			errbuf_set(err, errlen, "CONSUL_HTTP_ADDR: %s", msg);
			return false;
		}
	}
	return env_path(cfg->consul.ca_file, sizeof(cfg->consul.ca_file), env->cacert,
			"CONSUL_CACERT", err, errlen) &&
	       env_path(cfg->consul.cert_file, sizeof(cfg->consul.cert_file), env->client_cert,
			"CONSUL_CLIENT_CERT", err, errlen) &&
	       env_path(cfg->consul.key_file, sizeof(cfg->consul.key_file), env->client_key,
			"CONSUL_CLIENT_KEY", err, errlen) &&
	       env_token(cfg, env, err, errlen);
}

/* a CA, certificate or key file named by setting what must open for reading */
static bool
tls_file_readable(const char *path, const char *what, char *err, size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX];
	FILE *f;

	if (path[0] == '\0')
		return true;
	f = fopen(path, "r");
	if (f == NULL) {
		errbuf_printable(path, shown, sizeof(shown));
		errbuf_set(err, errlen, "%s: \"%s\": cannot open: %s", what, shown,
			   strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

/* ca/cert/key of one API: readable, and no key without its certificate */
static bool
tls_files_check(const char *ca, const char *cert, const char *key, const char *prefix,
		char *err, size_t errlen)
{
	char what[64];

	if (key[0] != '\0' && cert[0] == '\0') {
		errbuf_set(err, errlen, "%skey_file: set without %scert_file", prefix, prefix);
		return false;
	}
	snprintf(what, sizeof(what), "%sca_file", prefix);
	if (!tls_file_readable(ca, what, err, errlen))
		return false;
	snprintf(what, sizeof(what), "%scert_file", prefix);
	if (!tls_file_readable(cert, what, err, errlen))
		return false;
	snprintf(what, sizeof(what), "%skey_file", prefix);
	return tls_file_readable(key, what, err, errlen);
}

/* patroni_username and patroni_password_file come together; the password read */
static bool
patroni_auth_finish(struct helper_config *cfg, char *err, size_t errlen)
{
	char msg[512];

	secret_wipe(cfg->patroni_password, sizeof(cfg->patroni_password));
	if (cfg->patroni_username[0] == '\0' && cfg->patroni_password_file[0] == '\0')
		return true;
	if (cfg->patroni_password_file[0] == '\0') {
		errbuf_set(err, errlen, "patroni_username: set without patroni_password_file");
		return false;
	}
	if (cfg->patroni_username[0] == '\0') {
		errbuf_set(err, errlen, "patroni_password_file: set without patroni_username");
		return false;
	}
	if (!secret_password_read(cfg->patroni_password_file, cfg->patroni_password,
				  sizeof(cfg->patroni_password), msg, sizeof(msg))) {
		errbuf_set(err, errlen, "patroni_password_file: %s", msg);
		return false;
	}
	return true;
}

bool
helper_config_finish(struct helper_config *cfg, char *err, size_t errlen)
{
	struct helper_consul_env env = {
		.addr = getenv("CONSUL_HTTP_ADDR"),
		.ssl = getenv("CONSUL_HTTP_SSL"),
		.token = getenv("CONSUL_HTTP_TOKEN"),
		.token_file = getenv("CONSUL_HTTP_TOKEN_FILE"),
		.cacert = getenv("CONSUL_CACERT"),
		.client_cert = getenv("CONSUL_CLIENT_CERT"),
		.client_key = getenv("CONSUL_CLIENT_KEY"),
	};
	char msg[512];

	cfg->consul.token[0] = '\0';
	if (!helper_config_consul_env(cfg, &env, err, errlen))
		return false;
	if (cfg->token_file[0] != '\0' &&
	    !consul_token_read(cfg->token_file, cfg->consul.token, sizeof(cfg->consul.token),
			       msg, sizeof(msg))) {
		errbuf_set(err, errlen, "token_file: %s", msg);
		return false;
	}
	return tls_files_check(cfg->consul.ca_file, cfg->consul.cert_file, cfg->consul.key_file,
			       "", err, errlen) &&
	       tls_files_check(cfg->patroni_ca_file, cfg->patroni_cert_file,
			       cfg->patroni_key_file, "patroni_", err, errlen) &&
	       patroni_auth_finish(cfg, err, errlen);
}

void
helper_service_name(const char *scope, char *out, size_t outlen)
{
	size_t n = 0;
	char buf[8];
	unsigned char c;
	size_t max = outlen - 1 < 230 ? outlen - 1 : 230;

	for (; *scope && n < max; scope++) {
		c = (unsigned char) tolower((unsigned char) *scope);
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			out[n++] = (char) c;
		} else if (c == '.' || c == ' ' || c == '_') {
			out[n++] = '-';
		} else {
			snprintf(buf, sizeof(buf), "u%04d", c);
			if (n + strlen(buf) > max)
				break;
			memcpy(out + n, buf, strlen(buf));
			n += strlen(buf);
		}
	}
	out[n] = '\0';
}

bool
helper_config_excluded(const struct helper_config *cfg, const char *user)
{
	int i;

	for (i = 0; i < cfg->exclude_count; i++) {
		if (strcmp(cfg->exclude_users[i], user) == 0)
			return true;
	}
	return false;
}

/* a "quoted" field with '"' doubled; *p moves past it; out gets the text */
static bool
quoted_field(const char **p, char *out, size_t outlen)
{
	const char *s = *p;
	size_t n = 0;

	if (*s++ != '"')
		return false;
	for (;;) {
		if (*s == '\0')
			return false;
		if (*s == '"') {
			if (s[1] != '"')
				break;
			s++;
		}
		if ((unsigned char) *s < 0x20 || *s == 0x7f || n + 1 >= outlen)
			return false;
		out[n++] = *s++;
	}
	out[n] = '\0';
	*p = s + 1;
	return true;
}

bool
helper_userlist_line(const char *line, char *user, size_t userlen, bool *skip,
		     char *err, size_t errlen)
{
	char secret[4096];
	const char *p = line;

	*skip = false;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == ';' || *p == '#') {
		*skip = true;
		return false;
	}
	if (!quoted_field(&p, user, userlen) || (*p != ' ' && *p != '\t'))
		goto bad;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!quoted_field(&p, secret, sizeof(secret)))
		goto bad;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '\0')
		goto bad;
	if (user[0] == '\0') {
		errbuf_set(err, errlen, "empty user name");
		return false;
	}
	return true;
bad:
	errbuf_set(err, errlen, "expected \"user\" \"secret\" (PgBouncer auth_file format, "
		   "'\"' doubled inside, no control characters)");
	return false;
}
