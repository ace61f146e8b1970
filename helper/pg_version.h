/*
 * PostgreSQL version numbers (server_version_num) for pgbouncer-helper:
 * the major version and the one after it.
 */
#ifndef PGBC_HELPER_PG_VERSION_H
#define PGBC_HELPER_PG_VERSION_H

/* 150004 -> 15, 90624 -> 906 (9.6: majors before 10 have two parts) */
int pg_major_of(int num);

/* the next major: 150004 -> 16, 90624 -> 10, 90524 -> 906 (9.6) */
int pg_next_major(int num);

#endif
