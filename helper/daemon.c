/*
 * daemon.c -- signals and sd_notify for the helper's daemon loops.
 * The notify datagram is written by hand (a few lines, see sd_notify(3))
 * so the helper needs no libsystemd.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "clock.h"
#include "daemon.h"
#include "http.h"
#include "log.h"

volatile sig_atomic_t daemon_stop;
volatile sig_atomic_t daemon_reload;

static void
daemon_on_stop(int sig)
{
	daemon_stop = 1;
}

static void
daemon_on_hup(int sig)
{
	daemon_reload = 1;
}

void
daemon_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = daemon_on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = daemon_on_hup;
	sigaction(SIGHUP, &sa, NULL);
	http_set_stop_flag(&daemon_stop);
}

void
daemon_notify(const char *state)
{
	static bool warned;
	struct sockaddr_un sa;
	const char *path = getenv("NOTIFY_SOCKET");
	socklen_t salen;
	size_t n;
	int fd;

	if (path == NULL || path[0] == '\0')
		return;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
		if (!warned)
			log_error("NOTIFY_SOCKET=%s: not a unix socket path", path);
		warned = true;
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';	/* abstract namespace */
	salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			     (struct sockaddr *) &sa, salen) < 0) {
		if (!warned)
			log_error("sd_notify %s to %s: %s", state, path, strerror(errno));
		warned = true;
	}
	if (fd >= 0)
		close(fd);
}

/* "RELOADING=1\nMONOTONIC_USEC=...", which Type=notify-reload wants */
static void
notify_reloading(void)
{
	char msg[80];

	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long) clock_usec());
	daemon_notify(msg);
}

void
daemon_sleep(uint64_t usec)
{
	uint64_t end = clock_usec() + usec;
	uint64_t now;

	while (!daemon_stop && !daemon_reload && (now = clock_usec()) < end)
		clock_sleep_usec(end - now < 200000 ? end - now : 200000);
}

bool
daemon_reload_config(struct helper_config *cfg)
{
	char err[1024];
	bool ok;

	daemon_reload = 0;
	notify_reloading();
	ok = helper_reload_config(cfg, err, sizeof(err));
	if (ok)
		log_info("configuration reloaded on SIGHUP");
	else
		log_error("SIGHUP: keeping the old configuration: %s", err);
	daemon_notify("READY=1");
	return ok;
}
