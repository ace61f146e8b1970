/*
 * Guards around pg_upgrade for upgrade run: its transfer mode from
 * pg_upgrade_options, the free-space check before a copy, and what a
 * pg_upgrade killed at step_timeout left behind.
 */
#ifndef PGBC_HELPER_UPGRADE_GUARD_H
#define PGBC_HELPER_UPGRADE_GUARD_H

#include <stdbool.h>
#include <stddef.h>

enum upgrade_guard_mode {
	UPGRADE_GUARD_COPY,	/* the default: data files copied, old cluster untouched */
	UPGRADE_GUARD_LINK,	/* --link / -k: hard links shared with the old cluster */
	UPGRADE_GUARD_CLONE,	/* --clone: reflinks, no extra space, old cluster untouched */
};

/* the transfer mode the words of pg_upgrade_options select (the last one wins) */
enum upgrade_guard_mode upgrade_guard_mode(const char *options);

/*
 * A copying pg_upgrade needs about the old data directory's size free
 * where the new one lives.  need_kb: du -sk of olddata; avail_kb: df's
 * available KiB on newparent's filesystem.  False (err names both) when
 * short.
 */
bool upgrade_guard_space(unsigned long long need_kb, unsigned long long avail_kb,
			 const char *olddata, const char *newparent, char *err, size_t errlen);

/*
 * The state pg_upgrade left when it was killed mid-run, and what to do
 * next.  old_disabled: olddata/global/pg_control.old exists, which
 * pg_upgrade --link creates just before its link phase.
 */
void upgrade_guard_killed(enum upgrade_guard_mode mode, bool old_disabled,
			  const char *olddata, const char *newdata, char *out, size_t len);

#endif
