/*
 * Durations as operators write them in pgbouncer.ini and helper.ini
 * ("300s", "5m", "1.5s", "250ms", "1h30m", a plain number of seconds).
 */
#ifndef PGBC_DURATION_H
#define PGBC_DURATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DURATION_USEC_PER_SEC UINT64_C(1000000)

/*
 * Parse text into microseconds.  Units: us, ms, s, m, h, d; several
 * number+unit parts may follow each other ("1h30m"); a plain number
 * means seconds.  Fractions are allowed ("1.5s"); sub-microsecond
 * remainders are dropped.  Refuses empty text, signs, spaces, unknown
 * units, trailing junk and values that do not fit in uint64_t.
 */
bool duration_parse(const char *text, uint64_t *usec, char *err, size_t errlen);

/*
 * Format usec with the largest of s, ms, us that represents it exactly:
 * "300s", "250ms", "1500us", "0".  Consul and duration_parse read all.
 */
void duration_format(uint64_t usec, char *buf, size_t len);

#endif
