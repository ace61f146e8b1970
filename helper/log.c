/*
 * Log lines for pgbouncer-helper: "2026-01-02 03:04:05.678 UTC [pid]
 * command LEVEL message" on stderr, one write per line, with passwords
 * and tokens masked (secret.c) whoever wrote the message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "secret.h"

static const char *log_command = "pgbouncer-helper";

void
log_set_command(const char *name)
{
	log_command = name;
}

static void
log_line(const char *level, const char *fmt, va_list ap)
{
	char line[4096];
	char msg[4096];
	char stamp[64];
	struct timeval tv;
	struct tm tm;
	int n, m;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03d UTC [%d] %s %s ", stamp,
		     (int) (tv.tv_usec / 1000), (int) getpid(), log_command, level);
	if (n < 0 || (size_t) n >= sizeof(line))
		return;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		return;
	secret_mask(msg, line + n, sizeof(line) - (size_t) n - 1);
	m = (int) strlen(line + n);
	n = (size_t) (n + m) >= sizeof(line) - 1 ? (int) sizeof(line) - 2 : n + m;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t) n) < 0)
		return;
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("LOG", fmt, ap);
	va_end(ap);
}

void
log_warning(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("WARNING", fmt, ap);
	va_end(ap);
}

void
log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line("ERROR", fmt, ap);
	va_end(ap);
}
