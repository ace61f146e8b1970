/*
 * Unit tests for helper/helper_config.c: helper.ini parsing, the
 * "file:line: key: message" errors, command-line override names and
 * Patroni's service name rule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "helper_config.h"
#include "pg_version.h"
#include "secret.h"

static char ini_path[64];

/* write text to a fresh temporary file; its path in ini_path */
static const char *
ini(const char *text)
{
	FILE *f;
	int fd;

	strcpy(ini_path, "/tmp/test_helper_config.XXXXXX");
	fd = mkstemp(ini_path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return ini_path;
}

static void
load_ok(struct helper_config *cfg, const char *text)
{
	char err[512] = "";

	helper_config_init(cfg);
	if (!helper_config_load(cfg, ini(text), err, sizeof(err)))
		fail_msg("refused: %s", err);
	unlink(ini_path);
}

/* the load fails and the message is "<file>:<expect>" */
static void
load_refused(const char *text, const char *expect)
{
	struct helper_config cfg;
	char err[512] = "";
	char want[600];

	helper_config_init(&cfg);
	if (helper_config_load(&cfg, ini(text), err, sizeof(err)))
		fail_msg("accepted: %s", text);
	snprintf(want, sizeof(want), "%s:%s", ini_path, expect);
	unlink(ini_path);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", err, want);
}

static void
test_helper_config_defaults(void **state)
{
	struct helper_config cfg;

	helper_config_init(&cfg);
	assert_string_equal(cfg.consul.url, "http://127.0.0.1:8500");
	assert_string_equal(cfg.consul.namespace_, "service");
	assert_string_equal(cfg.patroni_url, "http://127.0.0.1:8008");
	assert_string_equal(cfg.pgbackrest_stanza, "main");
	assert_int_equal(cfg.sync_interval_usec, 60000000);
	assert_int_equal(cfg.dns_ttl_usec, 30000000);
	assert_int_equal(cfg.exclude_count, 1);
	assert_string_equal(cfg.exclude_users[0], "postgres");
	assert_string_equal(cfg.scope, "");
}

static void
test_helper_config_design_example(void **state)
{
	struct helper_config cfg;

	load_ok(&cfg,
		"[consul]                 ; same keys and meaning as in pgbouncer.ini\n"
		"url = http://127.0.0.1:8500\n"
		"namespace = service\n"
		"wait = 30s\n"
		"consistency = stale\n"
		"no_leader_timeout = 10s\n"
		"\n"
		"[helper]\n"
		"scope = raddb\n"
		"patroni_url = http://127.0.0.1:8008        ; the local Patroni REST API\n"
		"pgbouncer_admin = host=127.0.0.1 port=6432 dbname=pgbouncer user=pgbouncer\n"
		"auth_file = /etc/pgbouncer/userlist.txt\n"
		"source = user=postgres dbname=postgres      ; conninfo for pg_shadow\n"
		"exclude_users = postgres, replicator  rewind_user\n"
		"sync_interval = 1m30s\n"
		"pgbackrest_stanza = main\n"
		"datacenters = dc1 dc2                       ; prepared-query failover order\n"
		"# a comment\n"
		"dns_ttl = 30s\n");
	assert_string_equal(cfg.scope, "raddb");
	assert_int_equal(cfg.consul.wait_usec, 30000000);
	assert_int_equal(cfg.consul.consistency, CONSUL_CONSISTENCY_STALE);
	assert_int_equal(cfg.no_leader_timeout_usec, 10000000);
	assert_string_equal(cfg.pgbouncer_admin,
			    "host=127.0.0.1 port=6432 dbname=pgbouncer user=pgbouncer");
	assert_string_equal(cfg.source, "user=postgres dbname=postgres");
	assert_int_equal(cfg.exclude_count, 3);
	assert_string_equal(cfg.exclude_users[1], "replicator");
	assert_string_equal(cfg.exclude_users[2], "rewind_user");
	assert_true(helper_config_excluded(&cfg, "rewind_user"));
	assert_false(helper_config_excluded(&cfg, "rewind"));
	assert_int_equal(cfg.sync_interval_usec, 90000000);
	assert_int_equal(cfg.datacenter_count, 2);
	assert_string_equal(cfg.datacenters[1], "dc2");
	assert_int_equal(cfg.dns_ttl_usec, 30000000);
}

/* [consul] datacenter as in pgbouncer.ini: Patroni's keys read in another datacenter */
static void
test_helper_config_datacenter(void **state)
{
	struct helper_config cfg;

	load_ok(&cfg, "[consul]\nurl = http://127.0.0.1:8500\n\n[helper]\nscope = raddb\n");
	assert_string_equal(cfg.consul.datacenter, "");
	load_ok(&cfg, "[consul]\ndatacenter = global\n\n[helper]\nscope = raddb\n");
	assert_string_equal(cfg.consul.datacenter, "global");
	load_refused("[consul]\ndatacenter = a/b\n", "2: datacenter: only letters");
}

static void
test_helper_config_unknown_key(void **state)
{
	load_refused("[helper]\nscope = a\ncolour = blue\n", "3: colour: unknown key in [helper]");
	/* a [helper] key in [consul] is unknown there */
	load_refused("[consul]\nscope = a\n", "2: scope: unknown key in [consul]");
}

static void
test_helper_config_unknown_section(void **state)
{
	load_refused("[consul]\n[pgbouncer]\n", "2: unknown section [pgbouncer]");
	load_refused("[helper\n", "1: malformed section header");
}

static void
test_helper_config_bad_values(void **state)
{
	load_refused("[helper]\nsync_interval = soon\n", "2: sync_interval: ");
	load_refused("[helper]\nsync_interval = 0\n", "2: sync_interval: must be greater than 0");
	load_refused("[consul]\nurl = ftp://x\n", "2: url: ");
	load_refused("[consul]\nurl = http://h:1/path\n", "2: url: ");
	load_refused("[consul]\nwait = 11m\n", "2: wait: must be at most 10m");
	load_refused("[consul]\nconsistency = eventual\n", "2: consistency: must be default");
	load_refused("[consul]\ndatacenter = glo.bal\n",
		     "2: datacenter: only letters, digits, '-' and '_' are allowed");
	load_refused("[consul]\nnamespace = /service/\n", "2: namespace: ");
	load_refused("[helper]\nscope = a/b\n", "2: scope: ");
	load_refused("[helper]\nscope =\n", "2: scope: ");
	load_refused("[helper]\npatroni_url = localhost:8008\n", "2: patroni_url: ");
	load_refused("[helper]\nauth_file = userlist.txt\n", "2: auth_file: must be an absolute path");
	load_refused("[helper]\ndatacenters = dc1 d$c\n", "2: datacenters: invalid datacenter name");
	load_refused("[helper]\npgbackrest_stanza = a b\n", "2: pgbackrest_stanza: ");
}

static void
test_helper_config_malformed_lines(void **state)
{
	load_refused("scope = a\n", "1: scope: key outside a section");
	load_refused("[helper]\n\nscope a\n", "3: expected key = value");
	load_refused("[helper]\n = a\n", "2: missing key before '='");
}

static void
test_helper_config_missing_file(void **state)
{
	struct helper_config cfg;
	char err[512];

	helper_config_init(&cfg);
	assert_false(helper_config_load(&cfg, "/nonexistent/helper.ini", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/helper.ini: cannot open: No such file or directory");
}

static void
test_helper_config_later_value_wins(void **state)
{
	struct helper_config cfg;
	char err[256];

	load_ok(&cfg, "[helper]\nscope = one\nscope = two\n");
	assert_string_equal(cfg.scope, "two");
	/* a command-line override replaces the file's value */
	assert_true(helper_config_set(&cfg, "helper", "scope", "three", err, sizeof(err)));
	assert_string_equal(cfg.scope, "three");
	assert_false(helper_config_set(&cfg, "helper", "scope", "", err, sizeof(err)));
	assert_string_equal(cfg.scope, "three");
	assert_non_null(strstr(err, "scope: "));
}

static void
test_helper_config_option_names(void **state)
{
	const char *section = NULL;
	char key[64];

	assert_true(helper_config_option("patroni-url", &section, key, sizeof(key)));
	assert_string_equal(section, "helper");
	assert_string_equal(key, "patroni_url");
	assert_true(helper_config_option("consul-url", &section, key, sizeof(key)));
	assert_string_equal(section, "consul");
	assert_string_equal(key, "url");
	assert_true(helper_config_option("consul-token-file", &section, key, sizeof(key)));
	assert_string_equal(key, "token_file");
	assert_false(helper_config_option("once", &section, key, sizeof(key)));
	assert_false(helper_config_option("url", &section, key, sizeof(key)));
	assert_false(helper_config_option("consul-scope", &section, key, sizeof(key)));
}

static void
test_helper_config_upgrade_section(void **state)
{
	struct helper_config cfg;
	const char *section = NULL;
	char key[64];

	helper_config_init(&cfg);
	assert_string_equal(cfg.data_dir, "/var/lib/postgresql/%v/%m");
	assert_string_equal(cfg.bin_dir, "/usr/lib/postgresql/%v/bin");
	assert_string_equal(cfg.member_command, "");
	assert_int_equal(cfg.max_lag, 1048576);
	load_ok(&cfg, "[upgrade]\nmember_command = ssh postgres@%h\n"
		"data_dir = /srv/pg/%v/%m\nmax_lag = 0\nstep_timeout = 90s\n"
		"patroni_stop = sudo systemctl stop patroni\n");
	assert_string_equal(cfg.member_command, "ssh postgres@%h");
	assert_string_equal(cfg.data_dir, "/srv/pg/%v/%m");
	assert_string_equal(cfg.patroni_stop, "sudo systemctl stop patroni");
	assert_int_equal(cfg.max_lag, 0);
	assert_true(cfg.step_timeout_usec == UINT64_C(90000000));
	/* the default is one hour; 0 lifts the limit (a pg_upgrade is never killed) */
	helper_config_init(&cfg);
	assert_true(cfg.step_timeout_usec == UINT64_C(3600000000));
	load_ok(&cfg, "[upgrade]\nstep_timeout = 0\n");
	assert_true(cfg.step_timeout_usec == 0);
	load_refused("[upgrade]\ndata_dir = pg/%v\n", "2: data_dir: must be an absolute path");
	load_refused("[upgrade]\nmax_lag = lots\n", "2: max_lag: must be a number of bytes >= 0");
	load_refused("[upgrade]\nscope = x\n", "2: scope: unknown key in [upgrade]");
	assert_true(helper_config_option("upgrade-bin-dir", &section, key, sizeof(key)));
	assert_string_equal(section, "upgrade");
	assert_string_equal(key, "bin_dir");
	assert_false(helper_config_option("bin-dir", &section, key, sizeof(key)));
}

static void
test_helper_config_proxy(void **state)
{
	struct helper_config cfg;
	const char *section;
	char key[64];

	helper_config_init(&cfg);
	assert_string_equal(cfg.consul.proxy, "");
	load_ok(&cfg, "[consul]\nproxy = http://user:pw@127.0.0.1:3128\n");
	assert_string_equal(cfg.consul.proxy, "http://user:pw@127.0.0.1:3128");
	load_ok(&cfg, "[consul]\nproxy =\n");
	assert_string_equal(cfg.consul.proxy, "");
	load_refused("[consul]\nurl = http://127.0.0.1:8500\nproxy = 127.0.0.1:3128\n",
		     "3: proxy: must start with http://, https://, socks5:// or socks5h://");
	load_refused("[consul]\nproxy = http://proxy\n", "2: proxy: needs a port");
	assert_true(helper_config_option("consul-proxy", &section, key, sizeof(key)));
	assert_string_equal(section, "consul");
	assert_string_equal(key, "proxy");
}

static void
test_helper_config_token_file(void **state)
{
	struct helper_config cfg;
	char err[512];
	char token_path[64];

	helper_config_init(&cfg);
	assert_true(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(cfg.consul.token, "");

	strcpy(cfg.token_file, "/nonexistent/token");
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "token_file: "));
	assert_non_null(strstr(err, "/nonexistent/token"));

	ini("0b6d0c3c-secret-token\n");
	strcpy(token_path, ini_path);
	strcpy(cfg.token_file, token_path);
	assert_true(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(cfg.consul.token, "0b6d0c3c-secret-token");
	unlink(token_path);
}

static void
test_helper_service_name(void **state)
{
	char out[256];
	char long_scope[300];

	helper_service_name("raddb", out, sizeof(out));
	assert_string_equal(out, "raddb");
	helper_service_name("Rad_DB.main", out, sizeof(out));
	assert_string_equal(out, "rad-db-main");
	helper_service_name("a+b", out, sizeof(out));
	assert_string_equal(out, "au0043b");
	memset(long_scope, 'x', sizeof(long_scope) - 1);
	long_scope[sizeof(long_scope) - 1] = '\0';
	helper_service_name(long_scope, out, sizeof(out));
	assert_int_equal(strlen(out), 230);
}

/* patroni_url errors name patroni_url, not the consul url */
static void
test_helper_config_patroni_url_wording(void **state)
{
	struct helper_config cfg;
	char err[512] = "";

	(void) state;
	helper_config_init(&cfg);
	assert_false(helper_config_set(&cfg, "helper", "patroni_url", "localhost:8008", err,
				       sizeof(err)));
	assert_non_null(strstr(err, "patroni_url \"localhost:8008\""));
	assert_null(strstr(err, "consul"));
}

/* [prepared_queries]: one TTL per query (default dns_ttl) and nearest_n */
static void
test_helper_config_prepared_queries(void **state)
{
	struct helper_config cfg;

	(void) state;
	load_ok(&cfg, "[helper]\ndns_ttl = 20s\n");
	assert_int_equal(cfg.nearest_n, 3);
	assert_true(helper_config_pq_ttl(&cfg, HELPER_PQ_WRITER) == UINT64_C(20000000));
	assert_true(helper_config_pq_ttl(&cfg, HELPER_PQ_ANY) == UINT64_C(20000000));
	load_ok(&cfg, "[helper]\ndns_ttl = 20s\n[prepared_queries]\nwriter_ttl = 0s\n"
		"query_ttl = 10s\nany_ttl = 1m\nnearest_n = 0\n");
	assert_true(helper_config_pq_ttl(&cfg, HELPER_PQ_WRITER) == 0);
	assert_true(helper_config_pq_ttl(&cfg, HELPER_PQ_QUERY) == UINT64_C(10000000));
	assert_true(helper_config_pq_ttl(&cfg, HELPER_PQ_ANY) == UINT64_C(60000000));
	assert_int_equal(cfg.nearest_n, 0);
	load_refused("[prepared_queries]\nnearest_n = 101\n",
		     "2: nearest_n: must be a number from 0 to 100");
	load_refused("[prepared_queries]\nquery_ttl = ten\n", "2: query_ttl: ");
	load_refused("[prepared_queries]\nttl = 10s\n", "2: ttl: unknown key in [prepared_queries]");
}

/* 9.6 is followed by 10, 10 and later by major + 1 */
static void
test_pg_next_major(void **state)
{
	(void) state;
	assert_int_equal(pg_next_major(90624), 10);
	assert_int_equal(pg_next_major(90600), 10);
	assert_int_equal(pg_next_major(90524), 906);
	assert_int_equal(pg_next_major(100023), 11);
	assert_int_equal(pg_next_major(150004), 16);
	assert_int_equal(pg_major_of(90624), 906);
	assert_int_equal(pg_major_of(150004), 15);
}

static void
masked(const char *in, const char *want)
{
	char out[512];

	secret_mask(in, out, sizeof(out));
	assert_string_equal(out, want);
}

/* passwords and tokens never leave secret_mask, whatever their form */
static void
test_secret_mask(void **state)
{
	(void) state;
	masked("vacuumdb on m1: $ PGPASSWORD=s3cret vacuumdb -p 5432",
	       "vacuumdb on m1: $ PGPASSWORD=*** vacuumdb -p 5432");
	masked("host=h password=s3cret user=u", "host=h password=*** user=u");
	masked("host=h password = 's3 cr\\'et' user=u", "host=h password = *** user=u");
	masked("psql 'dbname=x password=s3cret'", "psql 'dbname=x password=***'");
	masked("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db");
	masked("X-Consul-Token: abc-def", "X-Consul-Token: ***");
	masked("Authorization: Bearer abc", "Authorization: ***");
	masked("curl --password=s3cret -H 'X-Consul-Token: t0k'",
	       "curl --password=*** -H 'X-Consul-Token: ***");
	masked("token=abc token_file=/etc/t", "token=*** token_file=/etc/t");
	masked("password authentication failed for user \"u\"",
	       "password authentication failed for user \"u\"");
	masked("http://127.0.0.1:8008/patroni", "http://127.0.0.1:8008/patroni");
}

static void
test_secret_conninfo_has_password(void **state)
{
	(void) state;
	assert_true(secret_conninfo_has_password("host=h password=x"));
	assert_true(secret_conninfo_has_password("host=h PASSWORD = x"));
	assert_true(secret_conninfo_has_password("postgresql://u:x@h/db"));
	assert_false(secret_conninfo_has_password("host=h user=u passfile=/etc/pgpass"));
	assert_false(secret_conninfo_has_password("postgresql://u@h:5432/db"));
}

static void
userlist_ok(const char *line, const char *want_user)
{
	char user[256], err[256] = "";
	bool skip;

	if (!helper_userlist_line(line, user, sizeof(user), &skip, err, sizeof(err)))
		fail_msg("refused %s: %s", line, err);
	assert_string_equal(user, want_user);
}

static void
userlist_refused(const char *line)
{
	char user[256], err[256] = "";
	bool skip;

	if (helper_userlist_line(line, user, sizeof(user), &skip, err, sizeof(err)))
		fail_msg("accepted: %s", line);
	assert_false(skip);
	assert_true(strstr(err, "expected \"user\" \"secret\"") != NULL ||
		    strstr(err, "empty user name") != NULL);
}

static void
test_helper_extra_users_file(void **state)
{
	struct helper_config cfg;
	char user[256], err[256];
	bool skip;

	load_ok(&cfg, "[helper]\nextra_users_file = /etc/pgbouncer/extra.txt\n");
	assert_string_equal(cfg.extra_users_file, "/etc/pgbouncer/extra.txt");
	load_refused("[helper]\nextra_users_file = extra.txt\n",
		     "2: extra_users_file: must be an absolute path");

	userlist_ok("\"pgbouncer\" \"md5abc\"", "pgbouncer");
	userlist_ok("\"we\"\"ird\"\t \"SCRAM-SHA-256$4096:x\"  ", "we\"ird");
	userlist_ok("\"nopw\" \"\"", "nopw");
	userlist_refused("pgbouncer md5abc");
	userlist_refused("\"pgbouncer\" md5abc");
	userlist_refused("\"pgbouncer\"\"md5abc\"");
	userlist_refused("\"pgbouncer\" \"md5abc\" extra");
	userlist_refused("\"pgbouncer\" \"md5abc");
	userlist_refused("\"\" \"md5abc\"");
	userlist_refused("\"pgbouncer\" \"md5\rabc\"");
	assert_false(helper_userlist_line("", user, sizeof(user), &skip, err, sizeof(err)));
	assert_true(skip);
	assert_false(helper_userlist_line("  ; comment", user, sizeof(user), &skip, err,
					  sizeof(err)));
	assert_true(skip);
	assert_false(helper_userlist_line("# comment", user, sizeof(user), &skip, err,
					  sizeof(err)));
	assert_true(skip);
}

/* the four CONSUL_HTTP_* variables, the TLS ones unset */
static bool
consul_env4(struct helper_config *cfg, const char *addr, const char *ssl, const char *token,
	    const char *token_file, char *err, size_t errlen)
{
	struct helper_consul_env env = {addr, ssl, token, token_file, NULL, NULL, NULL};

	return helper_config_consul_env(cfg, &env, err, errlen);
}

static void
test_helper_config_consul_env(void **state)
{
	struct helper_config cfg;
	char err[512] = "";

	/* nothing set anywhere: the defaults */
	helper_config_init(&cfg);
	assert_true(consul_env4(&cfg, NULL, NULL, NULL, NULL, err, sizeof(err)));
	assert_string_equal(cfg.consul.url, "http://127.0.0.1:8500");
	assert_string_equal(cfg.consul.token, "");
	assert_string_equal(cfg.token_file, "");

	/* host:port means http://, CONSUL_HTTP_SSL=true https://, a URL is kept */
	helper_config_init(&cfg);
	assert_true(consul_env4(&cfg, "10.0.0.5:8501", NULL, NULL, NULL, err,
					     sizeof(err)));
	assert_string_equal(cfg.consul.url, "http://10.0.0.5:8501");
	helper_config_init(&cfg);
	assert_true(consul_env4(&cfg, "10.0.0.5:8501", "true", NULL, NULL, err,
					     sizeof(err)));
	assert_string_equal(cfg.consul.url, "https://10.0.0.5:8501");
	helper_config_init(&cfg);
	assert_true(consul_env4(&cfg, "https://consul.example:8501", "false", NULL,
					     NULL, err, sizeof(err)));
	assert_string_equal(cfg.consul.url, "https://consul.example:8501");
	helper_config_init(&cfg);
	assert_false(consul_env4(&cfg, "unix:///run/consul.sock", NULL, NULL, NULL,
					      err, sizeof(err)));
	assert_non_null(strstr(err, "CONSUL_HTTP_ADDR: "));

	/* an explicit url (file or command line) wins over CONSUL_HTTP_ADDR */
	load_ok(&cfg, "[consul]\nurl = http://127.0.0.1:9500\n");
	assert_true(consul_env4(&cfg, "10.0.0.5:8501", NULL, NULL, NULL, err,
					     sizeof(err)));
	assert_string_equal(cfg.consul.url, "http://127.0.0.1:9500");

	/* CONSUL_HTTP_TOKEN alone; CONSUL_HTTP_TOKEN_FILE wins over it */
	helper_config_init(&cfg);
	assert_true(consul_env4(&cfg, NULL, NULL, "env-token", NULL, err,
					     sizeof(err)));
	assert_string_equal(cfg.consul.token, "env-token");
	helper_config_init(&cfg);
	assert_true(consul_env4(&cfg, NULL, NULL, "env-token", "/run/env.token",
					     err, sizeof(err)));
	assert_string_equal(cfg.token_file, "/run/env.token");
	assert_string_equal(cfg.consul.token, "");

	/* an explicit token_file wins over both */
	load_ok(&cfg, "[consul]\ntoken_file = /etc/ini.token\n");
	assert_true(consul_env4(&cfg, NULL, NULL, "env-token", "/run/env.token",
					     err, sizeof(err)));
	assert_string_equal(cfg.token_file, "/etc/ini.token");
	assert_string_equal(cfg.consul.token, "");
	helper_config_init(&cfg);
	assert_true(helper_config_set(&cfg, "consul", "token_file", "/etc/cli.token", err,
				      sizeof(err)));
	assert_true(consul_env4(&cfg, NULL, NULL, "env-token", NULL, err,
					     sizeof(err)));
	assert_string_equal(cfg.consul.token, "");

	/* a token that cannot be a header value is refused, not shown */
	helper_config_init(&cfg);
	assert_false(consul_env4(&cfg, NULL, NULL, "sec ret\r\nX: y", NULL, err,
					      sizeof(err)));
	assert_null(strstr(err, "sec"));
	assert_non_null(strstr(err, "CONSUL_HTTP_TOKEN: "));
}

/* CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY: each below its setting */
static void
test_helper_config_consul_tls_env(void **state)
{
	struct helper_consul_env env = {
		NULL, NULL, NULL, NULL, "/env/ca.pem", "/env/client.pem", "/env/client.key"
	};
	struct helper_config cfg;
	char err[512] = "";

	helper_config_init(&cfg);
	assert_true(helper_config_consul_env(&cfg, &env, err, sizeof(err)));
	assert_string_equal(cfg.consul.ca_file, "/env/ca.pem");
	assert_string_equal(cfg.consul.cert_file, "/env/client.pem");
	assert_string_equal(cfg.consul.key_file, "/env/client.key");

	load_ok(&cfg, "[consul]\nca_file = /ini/ca.pem\ncert_file = /ini/c.pem\n"
		"key_file = /ini/c.key\n");
	assert_true(helper_config_consul_env(&cfg, &env, err, sizeof(err)));
	assert_string_equal(cfg.consul.ca_file, "/ini/ca.pem");
	assert_string_equal(cfg.consul.cert_file, "/ini/c.pem");
	assert_string_equal(cfg.consul.key_file, "/ini/c.key");
}

/* patroni_* TLS files and basic auth: checked, read and named by finish */
static void
test_helper_config_patroni_auth(void **state)
{
	struct helper_config cfg;
	char err[512] = "";
	char pw_path[64];
	char cert_path[64];

	unsetenv("CONSUL_CACERT");
	unsetenv("CONSUL_CLIENT_CERT");
	unsetenv("CONSUL_CLIENT_KEY");
	load_ok(&cfg, "[helper]\npatroni_username = patroni-admin\n");
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(err, "patroni_username: set without patroni_password_file");

	load_ok(&cfg, "[helper]\npatroni_password_file = /x\n");
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(err, "patroni_password_file: set without patroni_username");

	load_refused("[helper]\npatroni_username = a:b\n", "2: patroni_username: must not hold");

	ini("s3cret pass\r\n\n");
	strcpy(pw_path, ini_path);
	helper_config_init(&cfg);
	assert_true(helper_config_set(&cfg, "helper", "patroni_username", "u", err, sizeof(err)));
	assert_true(helper_config_set(&cfg, "helper", "patroni_password_file", pw_path, err,
				      sizeof(err)));
	assert_true(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(cfg.patroni_password, "s3cret pass");
	unlink(pw_path);

	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "patroni_password_file: \""));
	assert_non_null(strstr(err, "cannot open"));
	assert_string_equal(cfg.patroni_password, "");

	ini("alpha\nbeta\n");
	strcpy(pw_path, ini_path);
	strcpy(cfg.patroni_password_file, pw_path);
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "holds more than one line"));
	assert_null(strstr(err, "alpha"));
	unlink(pw_path);

	ini("\n");
	strcpy(pw_path, ini_path);
	strcpy(cfg.patroni_password_file, pw_path);
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "is empty"));
	unlink(pw_path);

	/* TLS files: a key needs its certificate, every file must open */
	ini("not checked here\n");
	strcpy(cert_path, ini_path);
	helper_config_init(&cfg);
	strcpy(cfg.patroni_key_file, cert_path);
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(err, "patroni_key_file: set without patroni_cert_file");
	strcpy(cfg.patroni_cert_file, cert_path);
	assert_true(helper_config_finish(&cfg, err, sizeof(err)));
	strcpy(cfg.patroni_ca_file, "/nonexistent/ca.pem");
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(err, "patroni_ca_file: \"/nonexistent/ca.pem\": cannot open: "
			    "No such file or directory");
	helper_config_init(&cfg);
	strcpy(cfg.consul.cert_file, cert_path);
	strcpy(cfg.consul.key_file, "/nonexistent/c.key");
	assert_false(helper_config_finish(&cfg, err, sizeof(err)));
	assert_string_equal(err, "key_file: \"/nonexistent/c.key\": cannot open: "
			    "No such file or directory");
	unlink(cert_path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_helper_config_defaults),
		cmocka_unit_test(test_helper_config_design_example),
		cmocka_unit_test(test_helper_config_datacenter),
		cmocka_unit_test(test_helper_config_unknown_key),
		cmocka_unit_test(test_helper_config_unknown_section),
		cmocka_unit_test(test_helper_config_upgrade_section),
		cmocka_unit_test(test_helper_config_bad_values),
		cmocka_unit_test(test_helper_config_malformed_lines),
		cmocka_unit_test(test_helper_config_missing_file),
		cmocka_unit_test(test_helper_config_later_value_wins),
		cmocka_unit_test(test_helper_config_option_names),
		cmocka_unit_test(test_helper_config_proxy),
		cmocka_unit_test(test_helper_config_token_file),
		cmocka_unit_test(test_helper_service_name),
		cmocka_unit_test(test_helper_config_patroni_url_wording),
		cmocka_unit_test(test_helper_config_prepared_queries),
		cmocka_unit_test(test_pg_next_major),
		cmocka_unit_test(test_secret_mask),
		cmocka_unit_test(test_secret_conninfo_has_password),
		cmocka_unit_test(test_helper_extra_users_file),
		cmocka_unit_test(test_helper_config_consul_env),
		cmocka_unit_test(test_helper_config_consul_tls_env),
		cmocka_unit_test(test_helper_config_patroni_auth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
