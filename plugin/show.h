/*
 * show - the SHOW CONSUL admin console command.
 */
#ifndef CONSUL_REDIRECT_SHOW_H
#define CONSUL_REDIRECT_SHOW_H

#include <stdbool.h>

struct consul_redirect;

bool show_register(struct consul_redirect *cr);

#endif
