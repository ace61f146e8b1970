/*
 * What the helper's daemon loops (register, userlist-sync) share: SIGTERM/
 * SIGINT set a stop flag, SIGHUP a reload flag, and sd_notify(3) datagrams
 * to $NOTIFY_SOCKET for Type=notify units.
 */
#ifndef PGBC_HELPER_DAEMON_H
#define PGBC_HELPER_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "helper_config.h"

extern volatile sig_atomic_t daemon_stop;	/* SIGTERM or SIGINT seen */
extern volatile sig_atomic_t daemon_reload;	/* SIGHUP seen, not yet handled */

/* install the handlers and make http.c abort transfers on daemon_stop */
void daemon_install_signals(void);

/*
 * Send one sd_notify state ("READY=1", "RELOADING=1", "STOPPING=1") when
 * $NOTIFY_SOCKET is set; a no-op otherwise.  Failures are logged once.
 */
void daemon_notify(const char *state);

/* sleep usec, cut short by SIGTERM/SIGINT (daemon_stop) or SIGHUP (daemon_reload) */
void daemon_sleep(uint64_t usec);

/*
 * SIGHUP: read the configuration file and the command-line overrides
 * again into *cfg, telling systemd RELOADING=1 then READY=1.  On failure
 * *cfg is left as it was and the error logged.  Clears daemon_reload.
 */
bool daemon_reload_config(struct helper_config *cfg);

#endif
