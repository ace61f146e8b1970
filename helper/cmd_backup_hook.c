/*
 * backup-hook: Patroni callback.  When this node becomes (or starts as)
 * the primary, make sure the pgBackRest repository path exists, run
 * "pgbackrest check" and, as its exit code says, stanza-create or
 * stanza-upgrade followed by a second check.  Other roles: nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "duration.h"
#include "errbuf.h"
#include "log.h"
#include "run.h"

/*
 * Exit codes of "pgbackrest check", measured with pgBackRest 2.45 (the
 * numbers of its error.yaml): 55 FileMissingError when archive.info or
 * backup.info are missing (no stanza yet), 28 BackupMismatchError when they
 * describe another database system or version (after a major upgrade).
 * Anything else (82 ArchiveTimeoutError when WAL does not reach the
 * repository, ...) needs a human: the hook does not touch the stanza then.
 */
#define PGBR_OK 0
#define PGBR_BACKUP_MISMATCH 28	/* info files do not match the database: stanza-upgrade */
#define PGBR_FILE_MISSING 55	/* archive.info/backup.info missing: stanza-create */

#define HOOK_DEFAULT_REPO "/var/lib/pgbackrest"
#define HOOK_DEFAULT_CONFIG "/etc/pgbackrest/pgbackrest.conf"

struct hook_ctx {
	const struct helper_config *cfg;
	const char *program;
	uint64_t timeout_usec;
};

/* mkdir -p with mode 0750 for new levels */
static bool
mkdir_p(const char *path, char *err, size_t errlen)
{
	char buf[1024];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int) sizeof(buf)) {
		errbuf_set(err, errlen, "repository path too long");
		return false;
	}
	for (p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;

			*p = '\0';
			if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
				errbuf_set(err, errlen, "cannot create repository path %s: %s", buf,
					   strerror(errno));
				return false;
			}
			*p = save;
			if (save == '\0')
				break;
		}
	}
	return true;
}

/*
 * repo1-path (and repo1-type) as pgBackRest would see them: environment
 * first, then the config file's [global] and [<stanza>] sections.
 */
static void
repo_from_config(const char *stanza, char *path, size_t pathlen, bool *posix)
{
	const char *env = getenv("PGBACKREST_REPO1_PATH");
	const char *conf = getenv("PGBACKREST_CONFIG");
	const char *type = getenv("PGBACKREST_REPO1_TYPE");
	char line[2048], section[256] = "";
	char *s, *eq, *end;
	FILE *f;

	snprintf(path, pathlen, "%s", HOOK_DEFAULT_REPO);
	*posix = true;
	f = fopen(conf ? conf : HOOK_DEFAULT_CONFIG, "r");
	while (f && fgets(line, sizeof(line), f)) {
		s = line + strspn(line, " \t");
		end = s + strcspn(s, "\r\n");
		*end = '\0';
		while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*s == '[') {
			snprintf(section, sizeof(section), "%.*s", (int) strcspn(s + 1, "]"), s + 1);
			continue;
		}
		if (strcmp(section, "global") != 0 && strcmp(section, stanza) != 0)
			continue;
		eq = strchr(s, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (strcmp(s, "repo1-path") == 0)
			snprintf(path, pathlen, "%s", eq + 1);
		else if (strcmp(s, "repo1-type") == 0)
			*posix = strcmp(eq + 1, "posix") == 0;
	}
	if (f)
		fclose(f);
	if (env && *env)
		snprintf(path, pathlen, "%s", env);
	if (type && *type)
		*posix = strcmp(type, "posix") == 0;
}

/* pgbackrest --stanza=<stanza> <command>; *status its exit code */
static bool
pgbackrest(const struct hook_ctx *h, const char *command, int *status)
{
	char stanza_arg[300], shown[600], err[1024];
	char *argv[4];

	snprintf(stanza_arg, sizeof(stanza_arg), "--stanza=%s", h->cfg->pgbackrest_stanza);
	argv[0] = (char *) h->program;
	argv[1] = stanza_arg;
	argv[2] = (char *) command;
	argv[3] = NULL;
	run_describe(argv, shown, sizeof(shown));
	log_info("running %s", shown);
	if (!run_command(argv, h->timeout_usec, status, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	log_info("%s exited with code %d", shown, *status);
	return true;
}

static int
hook_run(const struct hook_ctx *h, const char *repo_path)
{
	char path[1024], err[1024];
	const char *fix;
	bool posix;
	int status;

	if (repo_path) {
		snprintf(path, sizeof(path), "%s", repo_path);
		posix = true;
	} else {
		repo_from_config(h->cfg->pgbackrest_stanza, path, sizeof(path), &posix);
	}
	if (posix) {
		if (path[0] != '/') {
			log_error("repository path \"%.200s\" is not absolute", path);
			return HELPER_EXIT_FAIL;
		}
		if (!mkdir_p(path, err, sizeof(err))) {
			log_error("%s", err);
			return HELPER_EXIT_FAIL;
		}
		log_info("repository path %s exists", path);
	}
	if (!pgbackrest(h, "check", &status))
		return HELPER_EXIT_FAIL;
	if (status == PGBR_OK) {
		log_info("stanza %s: check passed, nothing to do", h->cfg->pgbackrest_stanza);
		return HELPER_EXIT_OK;
	}
	if (status == PGBR_FILE_MISSING) {
		fix = "stanza-create";
	} else if (status == PGBR_BACKUP_MISMATCH) {
		fix = "stanza-upgrade";
	} else {
		log_error("pgbackrest check of stanza %s failed with exit code %d (neither a missing "
			  "stanza, %d, nor a database mismatch, %d): not touching the stanza",
			  h->cfg->pgbackrest_stanza, status, PGBR_FILE_MISSING, PGBR_BACKUP_MISMATCH);
		return HELPER_EXIT_FAIL;
	}
	if (!pgbackrest(h, fix, &status))
		return HELPER_EXIT_FAIL;
	if (status != PGBR_OK) {
		log_error("pgbackrest %s of stanza %s failed with exit code %d", fix,
			  h->cfg->pgbackrest_stanza, status);
		return HELPER_EXIT_FAIL;
	}
	if (!pgbackrest(h, "check", &status))
		return HELPER_EXIT_FAIL;
	if (status != PGBR_OK) {
		log_error("pgbackrest check of stanza %s still fails after %s (exit code %d)",
			  h->cfg->pgbackrest_stanza, fix, status);
		return HELPER_EXIT_FAIL;
	}
	log_info("stanza %s: %s done, check passed", h->cfg->pgbackrest_stanza, fix);
	return HELPER_EXIT_OK;
}

static bool
is_primary_role(const char *role)
{
	return strcmp(role, "master") == 0 || strcmp(role, "primary") == 0;
}

/* the callbacks after which a primary should have a working stanza */
static bool
is_hook_action(const char *action)
{
	return strcmp(action, "on_role_change") == 0 || strcmp(action, "on_start") == 0 ||
		strcmp(action, "on_restart") == 0 || strcmp(action, "post_init") == 0;
}

int
cmd_backup_hook(struct helper_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{"pgbackrest", required_argument, NULL, 'p'},
		{"repo-path", required_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0}
	};
	struct hook_ctx h = {cfg, "pgbackrest", UINT64_C(120) * DURATION_USEC_PER_SEC};
	const char *repo_path = NULL;
	char err[256];
	int c, nargs;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			h.program = optarg;
			break;
		case 'r':
			repo_path = optarg;
			break;
		case 't':
			if (!duration_parse(optarg, &h.timeout_usec, err, sizeof(err)) ||
			    h.timeout_usec == 0) {
				log_error("--timeout: \"%s\": %s", optarg,
					  h.timeout_usec == 0 ? "must be > 0" : err);
				return HELPER_EXIT_USAGE;
			}
			break;
		default:
			log_error("unknown option %s (try --help)", argv[optind - 1]);
			return HELPER_EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (nargs == 1) {
		/* bootstrap.post_init: Patroni passes only a connection string */
		log_info("post_init on the new cluster's primary");
		return hook_run(&h, repo_path);
	}
	if (nargs != 3) {
		log_error("expected ACTION ROLE SCOPE (a Patroni callback) or one CONNINFO "
			  "(post_init), got %d arguments", nargs);
		return HELPER_EXIT_USAGE;
	}
	if (cfg->scope[0] != '\0' && strcmp(cfg->scope, argv[optind + 2]) != 0)
		log_warning("callback for scope %.100s, helper.ini says %s", argv[optind + 2],
			    cfg->scope);
	if (!is_hook_action(argv[optind]) || !is_primary_role(argv[optind + 1])) {
		log_info("%.64s as %.64s: nothing to do", argv[optind], argv[optind + 1]);
		return HELPER_EXIT_OK;
	}
	log_info("%s as %s of scope %.100s: checking the pgbackrest stanza", argv[optind],
		 argv[optind + 1], argv[optind + 2]);
	return hook_run(&h, repo_path);
}
