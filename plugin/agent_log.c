/*
 * agent_log.c - one log line for an agent-wide condition instead of one
 * per scope: the agent's per-client connection limit refusing scopes
 * (said when the first is refused and when the last gets in), and the
 * HTTP version the agent answers with.
 */

#include "pgb_plugin.h"

#include "agent_log.h"
#include "plugin_log.h"

void
agent_log_limited(struct agent_log *a, const struct pgb_plugin_api *api,
		  bool *counted, const char *err)
{
	if (*counted)
		return;
	*counted = true;
	if (a->limited++ > 0)
		return;
	plugin_log(api, PGB_LOG_WARNING,
		   "consul: %s; scopes refused this way show consul_unreachable "
		   "(SHOW CONSUL_STATS counts them) and keep retrying", err);
}

void
agent_log_unlimited(struct agent_log *a, const struct pgb_plugin_api *api,
		    bool *counted)
{
	if (!*counted)
		return;
	*counted = false;
	if (--a->limited > 0)
		return;
	plugin_log(api, PGB_LOG_INFO,
		   "consul: the agent no longer refuses a scope's connection");
}

void
agent_log_forget(struct agent_log *a, bool *counted)
{
	if (*counted && a->limited > 0)
		a->limited--;
	*counted = false;
}

void
agent_log_transport(struct agent_log *a, const struct pgb_plugin_api *api,
		    const struct curl_loop *loop)
{
	struct curl_loop_stats st;

	if (curl_loop_transport(loop) == CURL_LOOP_UNKNOWN ||
	    curl_loop_transport(loop) == a->logged)
		return;
	curl_loop_get_stats(loop, &st);
	a->logged = st.transport;
	plugin_log(api, PGB_LOG_INFO,
		   "consul: the agent answers over %s (%d connection%s open)",
		   curl_loop_transport_name(st.transport), st.connections,
		   st.connections == 1 ? "" : "s");
}
