/*
 * Guards around pg_upgrade: the transfer mode, the free-space check
 * before a copying run, and the state a killed run left.  Pure functions:
 * the caller gathers sizes and files on the leader and logs.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "upgrade_guard.h"

#define KB_PER_MB 1024ULL

enum upgrade_guard_mode
upgrade_guard_mode(const char *options)
{
	enum upgrade_guard_mode mode = UPGRADE_GUARD_COPY;
	const char *p = options, *end;
	size_t n;

	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		end = p;
		while (*end && *end != ' ' && *end != '\t')
			end++;
		n = (size_t) (end - p);
		if ((n == 6 && strncmp(p, "--link", n) == 0) || (n == 2 && strncmp(p, "-k", n) == 0))
			mode = UPGRADE_GUARD_LINK;
		else if (n == 7 && strncmp(p, "--clone", n) == 0)
			mode = UPGRADE_GUARD_CLONE;
		else if (n == 6 && strncmp(p, "--copy", n) == 0)
			mode = UPGRADE_GUARD_COPY;
		p = end;
	}
	return mode;
}

bool
upgrade_guard_space(unsigned long long need_kb, unsigned long long avail_kb,
		    const char *olddata, const char *newparent, char *err, size_t errlen)
{
	if (avail_kb >= need_kb)
		return true;
	errbuf_set(err, errlen, "pg_upgrade copies the data files (no --link or --clone in "
		   "pg_upgrade_options): %s holds %llu MB, the filesystem of %s has %llu MB "
		   "free, %llu MB short: refusing; free space there or use --link",
		   olddata, need_kb / KB_PER_MB, newparent, avail_kb / KB_PER_MB,
		   (need_kb - avail_kb + KB_PER_MB - 1) / KB_PER_MB);
	return false;
}

void
upgrade_guard_killed(enum upgrade_guard_mode mode, bool old_disabled,
		     const char *olddata, const char *newdata, char *out, size_t len)
{
	if (mode == UPGRADE_GUARD_LINK && old_disabled)
		snprintf(out, len, "pg_upgrade --link was stopped in or after its link phase "
			 "(%s/global/pg_control.old exists): the old cluster can no longer be "
			 "started, its data files are shared with %s. do not start it; finish "
			 "with a longer step_timeout (0 = no limit): move %s aside, rename "
			 "pg_control.old back to pg_control (only if the new cluster never "
			 "started) and resume with --from-step 4, or restore from pgBackRest",
			 olddata, newdata, newdata);
	else if (mode == UPGRADE_GUARD_LINK)
		snprintf(out, len, "pg_upgrade --link was stopped before its link phase "
			 "(%s/global/pg_control.old absent): the old cluster is untouched and "
			 "can be started. move %s aside and resume with --from-step 4 (with a "
			 "longer step_timeout, 0 = no limit), or go back: start patroni on the "
			 "leader, then the replicas", olddata, newdata);
	else
		snprintf(out, len, "pg_upgrade was stopped while it %s: the old cluster %s is "
			 "untouched and can be started. move %s aside and resume with "
			 "--from-step 4 (with a longer step_timeout, 0 = no limit), or go back: "
			 "start patroni on the leader, then the replicas",
			 mode == UPGRADE_GUARD_CLONE ? "cloned" : "copied", olddata, newdata);
}
