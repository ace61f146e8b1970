/*
 * userlist-sync: PgBouncer's auth_file from pg_shadow on the Patroni
 * leader (found through Consul), written atomically only when it changed,
 * then RELOAD through the admin console; once or as a daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "backoff.h"
#include "commands.h"
#include "clock.h"
#include "daemon.h"
#include "consul_kv.h"
#include "duration.h"
#include "errbuf.h"
#include "http.h"
#include "log.h"
#include "pg_connect.h"
#include "patroni_member.h"

#define SYNC_ERR_LEN 1024
#define SYNC_RETRY_MIN_USEC (UINT64_C(1) * DURATION_USEC_PER_SEC)
#define SYNC_RETRY_MAX_USEC (UINT64_C(30) * DURATION_USEC_PER_SEC)

struct sync_leader {
	char name[256];
	char host[PATRONI_HOST_MAX];
	int port;
};

struct sync_buf {
	char *data;
	size_t len;
	size_t cap;
	bool no_memory;
};

/* the user names of extra_users_file, which win over pg_shadow's */
struct sync_extra {
	char (*names)[256];
	int count;
};

#define sync_stop daemon_stop

static void
buf_append(struct sync_buf *b, const char *p, size_t n)
{
	size_t cap;
	char *grown;

	if (b->no_memory)
		return;
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 65536;
		while (b->len + n + 1 > cap)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (grown == NULL) {
			b->no_memory = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* "text" with every '"' doubled, as PgBouncer's auth_file parser reads it */
static void
buf_quoted(struct sync_buf *b, const char *s)
{
	const char *q;

	buf_append(b, "\"", 1);
	while ((q = strchr(s, '"')) != NULL) {
		buf_append(b, s, (size_t) (q - s) + 1);
		buf_append(b, "\"", 1);
		s = q + 1;
	}
	buf_append(b, s, strlen(s));
	buf_append(b, "\"", 1);
}

static bool
has_control(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return true;
	}
	return false;
}

/* leader key -> members/<name> -> host and port of its conn_url */
static bool
find_leader(const struct helper_config *cfg, struct sync_leader *l, char *err, size_t errlen)
{
	struct consul_response resp;
	struct consul_kv *kv = NULL;
	struct patroni_member m;
	char key[300];
	char msg[512];
	int count = 0;
	bool ok = false;

	if (!http_consul_kv(cfg, "leader", 0, 0, &resp, err, errlen))
		return false;
	if (resp.status == 404) {
		errbuf_set(err, errlen, "no leader for scope %s in consul (key %s/%s/leader absent)",
			   cfg->scope, cfg->consul.namespace_, cfg->scope);
		goto done;
	}
	if (resp.status != 200) {
		errbuf_set(err, errlen, "consul answered HTTP %ld reading %s/%s/leader",
			   resp.status, cfg->consul.namespace_, cfg->scope);
		goto done;
	}
	if (!consul_kv_parse(resp.body, resp.len, &kv, &count, msg, sizeof(msg)) || count != 1 ||
	    kv[0].value == NULL || kv[0].value[0] == '\0') {
		errbuf_set(err, errlen, "leader key of scope %s: unusable answer", cfg->scope);
		goto done;
	}
	if (strlen(kv[0].value) >= sizeof(l->name)) {
		errbuf_set(err, errlen, "leader name of scope %s too long", cfg->scope);
		goto done;
	}
	strcpy(l->name, kv[0].value);
	consul_kv_free(kv, count);
	kv = NULL;
	consul_response_free(&resp);

	snprintf(key, sizeof(key), "members/%s", l->name);
	if (!http_consul_kv(cfg, key, 0, 0, &resp, msg, sizeof(msg))) {
		errbuf_set(err, errlen, "leader %s: %s", l->name, msg);
		return false;
	}
	if (resp.status != 200) {
		errbuf_set(err, errlen, "member record of leader %s: consul answered HTTP %ld",
			   l->name, resp.status);
		goto done;
	}
	if (!consul_kv_parse(resp.body, resp.len, &kv, &count, msg, sizeof(msg)) ||
	    count != 1 || kv[0].value == NULL) {
		errbuf_set(err, errlen, "member record of leader %s: unusable answer", l->name);
		goto done;
	}
	if (!patroni_member_parse(kv[0].value, kv[0].value_len, &m, msg, sizeof(msg))) {
		errbuf_set(err, errlen, "member record of leader %s: %s", l->name, msg);
		goto done;
	}
	strcpy(l->host, m.host);
	l->port = m.port;
	ok = true;
done:
	consul_kv_free(kv, count);
	consul_response_free(&resp);
	return ok;
}

static bool
extra_has(const struct sync_extra *x, const char *name)
{
	int i;

	for (i = 0; i < x->count; i++) {
		if (strcmp(x->names[i], name) == 0)
			return true;
	}
	return false;
}

/*
 * extra_users_file's entries, each line copied verbatim into out (blank
 * and comment lines dropped); a missing file or a bad line fails the sync
 * before anything is written.
 */
static bool
read_extra(const char *path, struct sync_buf *out, struct sync_extra *x, char *err,
	   size_t errlen)
{
	FILE *f;
	char line[4096];
	char user[256];
	char msg[256];
	char (*grown)[256];
	size_t n;
	int lineno = 0;
	bool skip;
	bool ok = false;

	f = fopen(path, "r");
	if (f == NULL) {
		errbuf_set(err, errlen, "extra_users_file %s: cannot open: %s", path,
			   strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\n') {
			line[--n] = '\0';
		} else if (!feof(f)) {
			errbuf_set(err, errlen, "%s:%d: line too long", path, lineno);
			goto done;
		}
		if (!helper_userlist_line(line, user, sizeof(user), &skip, msg, sizeof(msg))) {
			if (skip)
				continue;
			errbuf_set(err, errlen, "%s:%d: %s", path, lineno, msg);
			goto done;
		}
		if (extra_has(x, user)) {
			errbuf_printable(user, msg, 128);
			errbuf_set(err, errlen, "%s:%d: user \"%s\" listed twice", path, lineno, msg);
			goto done;
		}
		grown = realloc(x->names, (size_t) (x->count + 1) * sizeof(*x->names));
		if (grown == NULL) {
			errbuf_set(err, errlen, "out of memory reading %s", path);
			goto done;
		}
		x->names = grown;
		strcpy(x->names[x->count++], user);
		buf_append(out, line, n);
		buf_append(out, "\n", 1);
	}
	if (ferror(f)) {
		errbuf_set(err, errlen, "extra_users_file %s: read error", path);
		goto done;
	}
	ok = true;
done:
	fclose(f);
	return ok;
}

/*
 * the auth_file text from pg_shadow on the leader, after extra_users_file's
 * lines; *users = roles read (before the extra file's overrides)
 */
static bool
read_users(const struct helper_config *cfg, const struct sync_leader *l,
	   const struct sync_extra *extra, struct sync_buf *out, int *users, char *err,
	   size_t errlen)
{
	char shown[ERRBUF_VALUE_MAX], what[300];
	PGconn *conn;
	PGresult *res;
	const char *name, *secret;
	int i, n;
	bool ok = false;

	*users = 0;
	snprintf(what, sizeof(what), "leader %s", l->name);
	conn = pg_connect(cfg, l->host, l->port, 10, what, err, errlen);
	if (conn == NULL)
		return false;
	res = PQexec(conn, "SELECT usename, passwd FROM pg_catalog.pg_shadow "
		     "WHERE passwd IS NOT NULL AND passwd <> '' "
		     "ORDER BY usename COLLATE \"C\"");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errbuf_set(err, errlen, "reading pg_shadow on %s:%d failed: %s", l->host, l->port,
			   pg_error_line(conn));
		goto done;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		name = PQgetvalue(res, i, 0);
		secret = PQgetvalue(res, i, 1);
		if (helper_config_excluded(cfg, name))
			continue;
		if (has_control(name) || has_control(secret)) {
			errbuf_printable(name, shown, sizeof(shown));
			log_warning("skipping role \"%s\": control characters in its name or secret",
				    shown);
			continue;
		}
		(*users)++;
		if (extra_has(extra, name)) {
			errbuf_printable(name, shown, sizeof(shown));
			log_info("role \"%s\": extra_users_file's entry wins over pg_shadow's", shown);
			continue;
		}
		buf_quoted(out, name);
		buf_append(out, " ", 1);
		buf_quoted(out, secret);
		buf_append(out, "\n", 1);
	}
	if (out->no_memory) {
		errbuf_set(err, errlen, "out of memory building the auth_file");
		goto done;
	}
	ok = true;
done:
	PQclear(res);
	PQfinish(conn);
	return ok;
}

/* true when path holds exactly data[0..len) */
static bool
file_same(const char *path, const char *data, size_t len)
{
	struct stat st;
	char *cur;
	ssize_t got;
	size_t off = 0;
	bool same = false;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) != 0 || (size_t) st.st_size != len) {
		close(fd);
		return false;
	}
	cur = malloc(len + 1);
	if (cur != NULL) {
		while (off < len && (got = read(fd, cur + off, len - off)) > 0)
			off += (size_t) got;
		same = off == len && memcmp(cur, data, len) == 0;
		free(cur);
	}
	close(fd);
	return same;
}

/*
 * Replace path with data: temp file in the same directory, given the old
 * file's owner, group and mode (a new file: ours, 0600) before anything is
 * written, fsync, rename, fsync of the directory.  PgBouncer may run as
 * another user than we do and read the file through its group: when the
 * owner or mode cannot be kept, fail.  On failure the old file is untouched.
 */
static bool
write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
	char tmp[HELPER_VALUE_MAX + 32];
	char dircopy[HELPER_VALUE_MAX];
	const char *dir;
	struct stat st;
	bool exists;
	mode_t mode = 0600;
	ssize_t put;
	size_t off = 0;
	int fd, dfd;

	snprintf(dircopy, sizeof(dircopy), "%s", path);
	dir = dirname(dircopy);
	exists = stat(path, &st) == 0;
	if (!exists && errno != ENOENT) {
		errbuf_set(err, errlen, "cannot stat auth_file %s: %s", path, strerror(errno));
		return false;
	}
	if (exists)
		mode = st.st_mode & 07777;
	snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM || errno == EROFS)
			errbuf_set(err, errlen, "cannot replace %s: its directory %s is not writable "
				   "for uid %d (userlist-sync writes a temp file there and renames "
				   "it): %s", path, dir, (int) geteuid(), strerror(errno));
		else
			errbuf_set(err, errlen, "cannot create a temporary file beside %s: %s", path,
				   strerror(errno));
		return false;
	}
	if (exists && fchown(fd, st.st_uid, st.st_gid) != 0) {
		errbuf_set(err, errlen, "cannot keep owner %d:%d of %s on its replacement: %s "
			   "(run userlist-sync as that user or as root); %s left as it was",
			   (int) st.st_uid, (int) st.st_gid, path, strerror(errno), path);
		goto fail;
	}
	if (fchmod(fd, mode) != 0) {
		errbuf_set(err, errlen, "cannot give %s mode %04o of %s: %s", tmp, (unsigned) mode,
			   path, strerror(errno));
		goto fail;
	}
	while (off < len) {
		put = write(fd, data + off, len - off);
		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0) {
			errbuf_set(err, errlen, "write %s: %s", tmp, strerror(errno));
			goto fail;
		}
		off += (size_t) put;
	}
	if (fsync(fd) != 0) {
		errbuf_set(err, errlen, "fsync %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		errbuf_set(err, errlen, "close %s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		errbuf_set(err, errlen, "rename %s to %s: %s", tmp, path, strerror(errno));
		goto fail;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) != 0)
			log_warning("fsync of directory %s failed: %s", dir, strerror(errno));
		close(dfd);
	}
	return true;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return false;
}

/* RELOAD through PgBouncer's admin console (simple query protocol) */
static bool
reload_pgbouncer(const struct helper_config *cfg, char *err, size_t errlen)
{
	PGconn *conn;
	PGresult *res;
	bool ok;

	conn = PQconnectdb(cfg->pgbouncer_admin);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		errbuf_set(err, errlen, "cannot connect to pgbouncer admin console (pgbouncer_admin): %s",
			   conn ? pg_error_line(conn) : "out of memory");
		PQfinish(conn);
		return false;
	}
	res = PQexec(conn, "RELOAD");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		errbuf_set(err, errlen, "RELOAD on pgbouncer admin console failed: %s",
			   pg_error_line(conn));
	PQclear(res);
	PQfinish(conn);
	return ok;
}

/*
 * One sync.  *reload_pending carries a RELOAD that failed after a write
 * into the next round, so a changed file is never left unloaded.
 */
static bool
sync_once(const struct helper_config *cfg, bool *reload_pending, char *err, size_t errlen)
{
	struct sync_leader l;
	struct sync_buf buf = {NULL, 0, 0, false};
	struct sync_extra extra = {NULL, 0};
	uint64_t t0 = clock_usec();
	int users;
	bool ok = false;

	if (cfg->extra_users_file[0] != '\0' &&
	    !read_extra(cfg->extra_users_file, &buf, &extra, err, errlen))
		goto done;
	if (!find_leader(cfg, &l, err, errlen))
		goto done;
	if (!read_users(cfg, &l, &extra, &buf, &users, err, errlen))
		goto done;
	if (users == 0) {
		errbuf_set(err, errlen, "no login roles with a password on leader %s (after "
			   "exclude_users): refusing to write an empty %s", l.name, cfg->auth_file);
		goto done;
	}
	if (file_same(cfg->auth_file, buf.data, buf.len)) {
		log_info("auth_file %s unchanged (%d users from leader %s at %s:%d, %d from "
			 "extra_users_file, %.3f s)", cfg->auth_file, users, l.name, l.host, l.port,
			 extra.count,
			 (double) (clock_usec() - t0) / 1e6);
	} else {
		if (!write_atomic(cfg->auth_file, buf.data, buf.len, err, errlen))
			goto done;
		log_info("wrote auth_file %s: %d users from leader %s at %s:%d, %d from "
			 "extra_users_file (%.3f s)", cfg->auth_file, users, l.name, l.host, l.port,
			 extra.count,
			 (double) (clock_usec() - t0) / 1e6);
		*reload_pending = true;
	}
	if (*reload_pending) {
		if (cfg->pgbouncer_admin[0] == '\0') {
			log_info("pgbouncer_admin not set: not reloading pgbouncer");
			*reload_pending = false;
		} else {
			if (!reload_pgbouncer(cfg, err, errlen))
				goto done;
			log_info("RELOAD sent to pgbouncer");
			*reload_pending = false;
		}
	}
	ok = true;
done:
	free(extra.names);
	free(buf.data);
	return ok;
}

/*
 * Wait on the leader key (a blocking query from *index) for at most
 * wait_usec; *name = the leader or "" when there is none.
 */
static bool
watch_leader(const struct helper_config *cfg, uint64_t *index, uint64_t wait_usec,
	     char *name, size_t namelen, char *err, size_t errlen)
{
	struct consul_response resp;
	struct consul_kv *kv = NULL;
	char msg[256];
	int count = 0;
	bool ok = false;

	if (!http_consul_kv(cfg, "leader", *index, wait_usec, &resp, err, errlen))
		return false;
	if (resp.status == 404) {
		name[0] = '\0';
	} else if (resp.status == 200 &&
		   consul_kv_parse(resp.body, resp.len, &kv, &count, msg, sizeof(msg)) &&
		   count == 1) {
		snprintf(name, namelen, "%s", kv[0].value ? kv[0].value : "");
	} else {
		errbuf_set(err, errlen, "watching leader key of scope %s: HTTP %ld", cfg->scope,
			   resp.status);
		goto done;
	}
	if (!resp.has_index) {
		errbuf_set(err, errlen, "consul answer without X-Consul-Index");
		goto done;
	}
	*index = consul_index_next(*index, resp.index);
	ok = true;
done:
	consul_kv_free(kv, count);
	consul_response_free(&resp);
	return ok;
}

static int
sync_daemon(struct helper_config *cfg)
{
	struct backoff retry;
	struct rate_limit limit;
	char err[SYNC_ERR_LEN];
	char last_err[SYNC_ERR_LEN] = "";
	char leader[256] = "";
	char seen[256];
	uint64_t index = 0;
	uint64_t next_sync = 0;
	uint64_t now, wait, delay;
	bool reload_pending = false;
	bool need_sync = true;
	bool first = true;
	bool ready = false;

	daemon_install_signals();
	backoff_init(&retry, SYNC_RETRY_MIN_USEC, SYNC_RETRY_MAX_USEC, (unsigned int) getpid());
	/* a churning leader key wakes us at most twice at once, then every 5 s */
	rate_limit_init(&limit, 2, 0.2);
	log_info("watching leader of scope %s in consul %s, syncing every %.0f s",
		 cfg->scope, cfg->consul.url, (double) cfg->sync_interval_usec / 1e6);
	while (!sync_stop) {
		if (daemon_reload) {
			/* seen between calls: a blocking watch ends within consul wait */
			daemon_reload_config(cfg);
			need_sync = true;
			first = true;
			index = 0;
		}
		now = clock_usec();
		if (need_sync || now >= next_sync) {
			if (sync_once(cfg, &reload_pending, err, sizeof(err))) {
				next_sync = clock_usec() + cfg->sync_interval_usec;
				last_err[0] = '\0';
			} else {
				if (sync_stop)
					break;
				log_error("%s", err);
				/* retry soon, but not sooner than the backoff says */
				next_sync = clock_usec() + backoff_next(&retry);
			}
			need_sync = false;
			if (!ready)
				daemon_notify("READY=1");
			ready = true;
		}
		if (sync_stop)
			break;
		now = clock_usec();
		wait = next_sync > now ? next_sync - now : 0;
		if (wait > cfg->consul.wait_usec)
			wait = cfg->consul.wait_usec;
		if (wait < DURATION_USEC_PER_SEC)
			wait = DURATION_USEC_PER_SEC;
		delay = rate_limit_delay(&limit, now);
		if (delay > 0)
			daemon_sleep(delay < wait ? delay : wait);
		if (!watch_leader(cfg, &index, wait, seen, sizeof(seen), err, sizeof(err))) {
			if (sync_stop)
				break;
			if (strcmp(err, last_err) != 0)
				log_error("%s", err);
			snprintf(last_err, sizeof(last_err), "%s", err);
			index = 0;
			daemon_sleep(backoff_next(&retry));
			continue;
		}
		if (last_err[0] != '\0')
			log_info("consul reachable again");
		last_err[0] = '\0';
		backoff_reset(&retry);
		if (first || strcmp(seen, leader) != 0) {
			if (!first)
				log_info("leader of scope %s changed: %s -> %s", cfg->scope,
					 leader[0] ? leader : "(none)", seen[0] ? seen : "(none)");
			/* the first answer only sets the index: we synced just before it */
			need_sync = !first && seen[0] != '\0';
			snprintf(leader, sizeof(leader), "%s", seen);
			first = false;
		}
	}
	daemon_notify("STOPPING=1");
	log_info("stopping on signal");
	return HELPER_EXIT_OK;
}

static void
sync_usage(void)
{
	log_error("usage: pgbouncer-helper [-c FILE] userlist-sync [--once]");
}

int
cmd_userlist_sync(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"once", no_argument, NULL, 'o'},
		{NULL, 0, NULL, 0}
	};
	char err[SYNC_ERR_LEN];
	bool once = false;
	bool reload_pending = false;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'o') {
			once = true;
		} else {
			log_error("unknown option %s", argv[optind - 1]);
			sync_usage();
			return HELPER_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		sync_usage();
		return HELPER_EXIT_USAGE;
	}
	if (!cmd_scope_set(cfg))
		return HELPER_EXIT_USAGE;
	if (cfg->auth_file[0] == '\0') {
		log_error("auth_file is not set ([helper] auth_file or --auth-file)");
		return HELPER_EXIT_USAGE;
	}
	if (!once)
		return sync_daemon(cfg);
	if (!sync_once(cfg, &reload_pending, err, sizeof(err))) {
		log_error("%s", err);
		return HELPER_EXIT_FAIL;
	}
	return HELPER_EXIT_OK;
}
