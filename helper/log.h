/*
 * pgbouncer-helper's log: one timestamped line per event on stderr,
 * saying what was done or what failed.
 */
#ifndef PGBC_HELPER_LOG_H
#define PGBC_HELPER_LOG_H

#define LOG_FORMAT(a, b) __attribute__((format(printf, a, b)))

void log_info(const char *fmt, ...) LOG_FORMAT(1, 2);
void log_warning(const char *fmt, ...) LOG_FORMAT(1, 2);
void log_error(const char *fmt, ...) LOG_FORMAT(1, 2);

/* the subcommand name shown in every line ("userlist-sync") */
void log_set_command(const char *name);

#endif
