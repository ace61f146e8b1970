/*
 * Bounded child processes: fork, exec in a new process group, poll
 * waitpid until exit or deadline, then TERM and KILL that group only;
 * optionally the child's output relayed line by line while it runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "errbuf.h"
#include "run.h"

#define RUN_KILL_GRACE_USEC UINT64_C(5000000)
#define RUN_POLL_MSEC 50
#define RUN_LINE_MAX 4096

/* the child's output as lines for watch->line; a line over RUN_LINE_MAX is cut */
struct run_lines {
	char buf[RUN_LINE_MAX];
	size_t len;
};

static void
lines_feed(struct run_lines *l, const struct run_watch *w, const char *data, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (data[i] == '\n' || l->len == sizeof(l->buf) - 1) {
			l->buf[l->len] = '\0';
			w->line(w->arg, l->buf);
			l->len = 0;
			if (data[i] == '\n')
				continue;
		}
		l->buf[l->len++] = data[i];
	}
}

/* what is in the pipe now (non-blocking), into the lines; false at EOF */
static bool
lines_read(int fd, struct run_lines *l, const struct run_watch *w)
{
	char data[4096];
	ssize_t n;

	for (;;) {
		n = read(fd, data, sizeof(data));
		if (n > 0) {
			lines_feed(l, w, data, (size_t) n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0;	/* EAGAIN: open, nothing more now */
	}
}

/*
 * waitpid until the child ends or deadline passes; true when it ended.
 * With watch: relay fd's lines and tick while waiting.
 */
static bool
run_wait_watch(pid_t pid, uint64_t deadline, int *wstatus, int fd, struct run_lines *l,
	       const struct run_watch *watch)
{
	struct pollfd pfd;
	pid_t got;

	for (;;) {
		got = waitpid(pid, wstatus, WNOHANG);
		if (got == pid || (got < 0 && errno != EINTR)) {
			if (fd >= 0)
				lines_read(fd, l, watch);
			return true;
		}
		if (clock_usec() >= deadline)
			return false;
		if (fd >= 0) {
			pfd.fd = fd;
			pfd.events = POLLIN;
			pfd.revents = 0;
			if (poll(&pfd, 1, RUN_POLL_MSEC) > 0 && !lines_read(fd, l, watch))
				fd = -1;	/* EOF: nothing more to relay, keep waiting */
			watch->tick(watch->arg);
		} else {
			if (watch)
				watch->tick(watch->arg);
			clock_sleep_usec(RUN_POLL_MSEC * 1000);
		}
	}
}

static bool
run_wait(pid_t pid, uint64_t deadline, int *wstatus)
{
	return run_wait_watch(pid, deadline, wstatus, -1, NULL, NULL);
}

void
run_describe(char *const argv[], char *out, size_t len)
{
	size_t n = 0;
	int i;

	out[0] = '\0';
	for (i = 0; argv[i] && n < len; i++)
		n += (size_t) snprintf(out + n, len - n, "%s%s", i ? " " : "", argv[i]);
}

/*
 * run_command, with the child's stdout on out_fd when out_fd >= 0; with
 * watch, stdout and stderr go to a pipe whose lines watch->line gets.
 */
static bool
run_to(char *const argv[], uint64_t timeout_usec, int out_fd, const struct run_watch *watch,
       int *status, char *err, size_t errlen)
{
	static struct run_lines lines;
	char shown[512];
	int wstatus = 0;
	int pipefd[2] = {-1, -1};
	pid_t pid;
	int fd;
	bool ended;

	run_describe(argv, shown, sizeof(shown));
	if (watch && pipe(pipefd) != 0) {
		errbuf_set(err, errlen, "cannot make a pipe for %s: %s", shown, strerror(errno));
		return false;
	}
	pid = fork();
	if (pid < 0) {
		errbuf_set(err, errlen, "cannot fork for %s: %s", shown, strerror(errno));
		if (watch) {
			close(pipefd[0]);
			close(pipefd[1]);
		}
		return false;
	}
	if (pid == 0) {
		setpgid(0, 0);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		if (out_fd >= 0)
			dup2(out_fd, STDOUT_FILENO);
		if (watch) {
			dup2(pipefd[1], STDOUT_FILENO);
			dup2(pipefd[1], STDERR_FILENO);
			close(pipefd[0]);
			close(pipefd[1]);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	if (watch) {
		close(pipefd[1]);
		fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
		fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
		lines.len = 0;
	}
	ended = run_wait_watch(pid, timeout_usec == 0 ? UINT64_MAX : clock_usec() + timeout_usec,
			       &wstatus, watch ? pipefd[0] : -1, &lines, watch);
	if (watch) {
		if (lines.len > 0)
			lines_feed(&lines, watch, "\n", 1);
		close(pipefd[0]);
	}
	if (!ended) {
		kill(-pid, SIGTERM);
		if (!run_wait(pid, clock_usec() + RUN_KILL_GRACE_USEC, &wstatus)) {
			kill(-pid, SIGKILL);
			run_wait(pid, clock_usec() + RUN_KILL_GRACE_USEC, &wstatus);
		}
		errbuf_set(err, errlen, "%s did not finish within %.0f s: stopped", shown,
			   (double) timeout_usec / 1e6);
		*status = -1;
		return false;
	}
	if (WIFEXITED(wstatus))
		*status = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		*status = 128 + WTERMSIG(wstatus);
	else
		*status = -1;
	if (*status == 127) {
		errbuf_set(err, errlen, "cannot run %s (not installed or not in PATH?)", argv[0]);
		return false;
	}
	return true;
}

bool
run_command(char *const argv[], uint64_t timeout_usec, int *status, char *err, size_t errlen)
{
	return run_to(argv, timeout_usec, -1, NULL, status, err, errlen);
}

bool
run_relay(char *const argv[], uint64_t timeout_usec, const struct run_watch *watch,
	  int *status, char *err, size_t errlen)
{
	return run_to(argv, timeout_usec, -1, watch, status, err, errlen);
}

bool
run_capture(char *const argv[], uint64_t timeout_usec, int *status, char *out, size_t outlen,
	    char *err, size_t errlen)
{
	FILE *f = tmpfile();
	size_t n;
	bool ok;

	if (f == NULL) {
		errbuf_set(err, errlen, "cannot create a temporary file for %s's output: %s",
			   argv[0], strerror(errno));
		return false;
	}
	ok = run_to(argv, timeout_usec, fileno(f), NULL, status, err, errlen);
	rewind(f);
	n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	if (ok && fgetc(f) != EOF) {
		errbuf_set(err, errlen, "%s printed more than %zu bytes", argv[0], outlen - 1);
		ok = false;
	}
	fclose(f);
	return ok;
}
