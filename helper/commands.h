/*
 * The subcommands of pgbouncer-helper: each takes the loaded helper.ini
 * and its own arguments (argv[0] = the subcommand name) and returns the
 * process exit status.
 */
#ifndef PGBC_HELPER_COMMANDS_H
#define PGBC_HELPER_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>

#include "helper_config.h"

#define HELPER_EXIT_OK 0
#define HELPER_EXIT_FAIL 1	/* the work failed: unreachable service, refused change */
#define HELPER_EXIT_USAGE 2	/* bad arguments or configuration */

int cmd_userlist_sync(struct helper_config *cfg, int argc, char **argv);
int cmd_prepared_queries(struct helper_config *cfg, int argc, char **argv);
int cmd_register(struct helper_config *cfg, int argc, char **argv);
int cmd_maintenance(struct helper_config *cfg, int argc, char **argv);
int cmd_topology(struct helper_config *cfg, int argc, char **argv);
int cmd_backup(struct helper_config *cfg, int argc, char **argv);
int cmd_backup_hook(struct helper_config *cfg, int argc, char **argv);
int cmd_upgrade(struct helper_config *cfg, int argc, char **argv);
int cmd_restore(struct helper_config *cfg, int argc, char **argv);

/* true if argv holds -h or --help (before a "--") */
bool cmd_wants_help(int argc, char **argv);

/* true if argv[next..] is empty; false (logged) otherwise */
bool cmd_no_more_args(int argc, char **argv, int next);

/* --name D: a duration above 0 into *usec; false (logged, naming the option) otherwise */
bool cmd_parse_duration(const char *name, const char *value, uint64_t *usec);

/* true if [helper] scope is set; false (logged) otherwise */
bool cmd_scope_set(const struct helper_config *cfg);

/*
 * Read the configuration file and command-line overrides main() read,
 * again, into *cfg (left alone on failure); for SIGHUP in daemons.
 */
bool helper_reload_config(struct helper_config *cfg, char *err, size_t errlen);

#endif
