/*
 * The state file of an upgrade or restore, written whole (tmp, fsync,
 * rename) after each step and read back to resume, and its lock file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errbuf.h"
#include "log.h"
#include "op_state.h"

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
			if (strlen(eq) >= sizeof(op->dcs_config))
				goto bad;
			strcpy(op->dcs_config, eq);
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

/*
 * One run per scope and kind: a write lock (fcntl) on <state file>.lock,
 * held until the process exits.  fcntl, not flock, so that F_GETLK can
 * name the holder's PID in the refusal.
 */
bool
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
