/*
 * helper.ini: the [consul] and [helper] sections pgbouncer-helper reads,
 * command-line overrides of the same keys, and the checks applied after both.
 */
#ifndef PGBC_HELPER_CONFIG_H
#define PGBC_HELPER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consul_client.h"

#define HELPER_CONFIG_DEFAULT_FILE "/etc/pgbouncer-consul/helper.ini"
#define HELPER_VALUE_MAX 1024
#define HELPER_DC_MAX 16
#define HELPER_LIST_MAX 64

struct helper_config {
	/* [consul] */
	struct consul_settings consul;	/* url, namespace, wait, consistency, ca_file, cert_file, key_file, proxy; token read from token_file */
	char token_file[HELPER_VALUE_MAX];
	bool url_set;			/* url given in the file or on the command line */
	uint64_t no_leader_timeout_usec;	/* read for symmetry with pgbouncer.ini, unused */

	/* [helper] */
	char scope[256];
	char patroni_url[CONSUL_URL_MAX];
	/* every Patroni REST call: basic auth and TLS ("" = none, system CAs) */
	char patroni_username[256];
	char patroni_password_file[HELPER_VALUE_MAX];
	char patroni_password[256];	/* read from patroni_password_file by finish */
	char patroni_ca_file[HELPER_VALUE_MAX];
	char patroni_cert_file[HELPER_VALUE_MAX];
	char patroni_key_file[HELPER_VALUE_MAX];
	char pgbouncer_admin[HELPER_VALUE_MAX];
	char auth_file[HELPER_VALUE_MAX];
	char extra_users_file[HELPER_VALUE_MAX];	/* auth_file lines kept verbatim; "" = none */
	char source[HELPER_VALUE_MAX];
	char exclude_users[HELPER_LIST_MAX][256];
	int exclude_count;
	uint64_t sync_interval_usec;
	char pgbackrest_stanza[256];
	char datacenters[HELPER_DC_MAX][128];
	int datacenter_count;
	uint64_t dns_ttl_usec;

	/* [prepared_queries]: TTL per query (HELPER_PQ_*), unset: dns_ttl */
	uint64_t pq_ttl_usec[3];
	bool pq_ttl_set[3];
	int nearest_n;				/* Failover NearestN, 0..100 */

	/* [upgrade]: how upgrade and restore reach members (templates, see op.h) */
	char member_command[HELPER_VALUE_MAX];	/* prefix, e.g. "ssh postgres@%h"; empty = local */
	char patroni_config[HELPER_VALUE_MAX];	/* %m -> member name */
	char data_dir[HELPER_VALUE_MAX];	/* %v -> major version, %m */
	char bin_dir[HELPER_VALUE_MAX];		/* %v, %m */
	char patroni_stop[HELPER_VALUE_MAX];
	char patroni_start[HELPER_VALUE_MAX];
	char connect_options[HELPER_VALUE_MAX];	/* client options for vacuumdb */
	char pgbackrest[HELPER_VALUE_MAX];	/* pgbackrest command on a member */
	char pg_upgrade_options[HELPER_VALUE_MAX];
	char state_dir[HELPER_VALUE_MAX];
	uint64_t step_timeout_usec;
	long long max_lag;			/* bytes a replica may lag before upgrade refuses */
};

/* the prepared queries <scope>-writer, -query and -any */
#define HELPER_PQ_WRITER 0
#define HELPER_PQ_QUERY 1
#define HELPER_PQ_ANY 2

/* built-in defaults (DESIGN.md's example values where it gives one) */
void helper_config_init(struct helper_config *cfg);

/*
 * Read an ini file: "[section]", "key = value", ";" or "#" comments.
 * Unknown sections/keys and bad values are refused with
 * "file:line: key: message" in err.
 */
bool helper_config_load(struct helper_config *cfg, const char *path, char *err, size_t errlen);

/* one setting; section "consul", "helper", "prepared_queries" or "upgrade" */
bool helper_config_set(struct helper_config *cfg, const char *section, const char *key,
		       const char *value, char *err, size_t errlen);

/*
 * Map a command-line option name ("scope", "patroni-url", "consul-url",
 * "consul-token-file", ...) to its section and key; false if unknown.
 */
bool helper_config_option(const char *option, const char **section, char *key, size_t keylen);

/* consul's own CLI environment variables; NULL or "" = unset */
struct helper_consul_env {
	const char *addr;		/* CONSUL_HTTP_ADDR */
	const char *ssl;		/* CONSUL_HTTP_SSL */
	const char *token;		/* CONSUL_HTTP_TOKEN */
	const char *token_file;		/* CONSUL_HTTP_TOKEN_FILE */
	const char *cacert;		/* CONSUL_CACERT */
	const char *client_cert;	/* CONSUL_CLIENT_CERT */
	const char *client_key;		/* CONSUL_CLIENT_KEY */
};

/*
 * consul's own CLI environment, below what the file and the command line
 * set (as consul's flags win over it): CONSUL_HTTP_ADDR when [consul] url
 * was not set (host:port means http://, https:// with CONSUL_HTTP_SSL
 * true, or a full http(s) URL); CONSUL_HTTP_TOKEN_FILE, else
 * CONSUL_HTTP_TOKEN, when token_file was not set (the file wins over the
 * token, as in consul's api); CONSUL_CACERT, CONSUL_CLIENT_CERT and
 * CONSUL_CLIENT_KEY each when ca_file, cert_file or key_file was not set.
 * The token goes to cfg->consul.token, the token file to cfg->token_file
 * (read by finish).
 */
bool helper_config_consul_env(struct helper_config *cfg, const struct helper_consul_env *env,
			      char *err, size_t errlen);

/*
 * After file and overrides: the environment above (getenv), then read
 * token_file and patroni_password_file, and check that every CA,
 * certificate and key file can be opened (errors name the setting).
 */
bool helper_config_finish(struct helper_config *cfg, char *err, size_t errlen);

/*
 * Patroni's Consul service name for a scope (service_name_from_scope_name):
 * lower case, '.', ' ' and '_' -> '-', other bytes outside [a-z0-9-] ->
 * "u%04d" (decimal, as Patroni writes it), at most 230 characters.
 */
void helper_service_name(const char *scope, char *out, size_t outlen);

/* the DNS TTL of prepared query kind (HELPER_PQ_*): its own key or dns_ttl */
uint64_t helper_config_pq_ttl(const struct helper_config *cfg, int kind);

/* NearestN as helper.ini and --nearest-n take it: 0..100 */
bool helper_config_nearest_n(const char *value, int *out, char *err, size_t errlen);

/*
 * One line of extra_users_file in PgBouncer's auth_file format:
 * "user" "secret" ('"' doubled inside), blanks between, trailing blanks
 * allowed.  *user gets the unquoted name.  Blank lines and lines starting
 * with ';' or '#' are not entries: false with *skip set.
 */
bool helper_userlist_line(const char *line, char *user, size_t userlen, bool *skip,
			  char *err, size_t errlen);

/* true if user is listed in exclude_users */
bool helper_config_excluded(const struct helper_config *cfg, const char *user);

#endif
