/*
 * agent_log - what the watches share about the Consul agent: how many
 * scopes its connection limit refuses now, and the transport last logged,
 * so that each is said once for all scopes rather than once per scope.
 */
#ifndef CONSUL_REDIRECT_AGENT_LOG_H
#define CONSUL_REDIRECT_AGENT_LOG_H

#include <stdbool.h>

#include "curl_loop.h"

struct pgb_plugin_api;

struct agent_log {
	int limited;				/* scopes refused by the limit now */
	enum curl_loop_transport logged;	/* CURL_LOOP_UNKNOWN: none yet */
};

/* a scope's query was refused by the limit; *counted: this scope's mark */
void agent_log_limited(struct agent_log *a, const struct pgb_plugin_api *api,
		       bool *counted, const char *err);

/* that scope goes away: uncounted without a word */
void agent_log_forget(struct agent_log *a, bool *counted);

/* that scope answers again, or fails for another reason */
void agent_log_unlimited(struct agent_log *a, const struct pgb_plugin_api *api,
			 bool *counted);

/* after an answer: say the transport when it is new or changed */
void agent_log_transport(struct agent_log *a, const struct pgb_plugin_api *api,
			 const struct curl_loop *loop);

#endif
