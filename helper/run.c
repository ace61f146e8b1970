/*
 * Bounded child processes: fork, exec in a new process group, poll
 * waitpid until exit or deadline, then TERM and KILL that group only.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "errbuf.h"
#include "run.h"

#define RUN_KILL_GRACE_USEC UINT64_C(5000000)

static uint64_t
run_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* waitpid until the child ends or deadline passes; true when it ended */
static bool
run_wait(pid_t pid, uint64_t deadline, int *wstatus)
{
	struct timespec ts = {0, 50000000};
	pid_t got;

	for (;;) {
		got = waitpid(pid, wstatus, WNOHANG);
		if (got == pid)
			return true;
		if (got < 0 && errno != EINTR)
			return true;
		if (run_now() >= deadline)
			return false;
		nanosleep(&ts, NULL);
	}
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

/* run_command, with the child's stdout on out_fd when out_fd >= 0 */
static bool
run_to(char *const argv[], uint64_t timeout_usec, int out_fd, int *status, char *err,
       size_t errlen)
{
	char shown[512];
	int wstatus = 0;
	pid_t pid;
	int fd;

	run_describe(argv, shown, sizeof(shown));
	pid = fork();
	if (pid < 0) {
		errbuf_set(err, errlen, "cannot fork for %s: %s", shown, strerror(errno));
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
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);
	if (!run_wait(pid, timeout_usec == 0 ? UINT64_MAX : run_now() + timeout_usec,
		      &wstatus)) {
		kill(-pid, SIGTERM);
		if (!run_wait(pid, run_now() + RUN_KILL_GRACE_USEC, &wstatus)) {
			kill(-pid, SIGKILL);
			run_wait(pid, run_now() + RUN_KILL_GRACE_USEC, &wstatus);
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
	return run_to(argv, timeout_usec, -1, status, err, errlen);
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
	ok = run_to(argv, timeout_usec, fileno(f), status, err, errlen);
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
