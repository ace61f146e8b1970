/*
 * The helper's one clock: monotonic microseconds for deadlines and
 * elapsed times, and a plain sleep for poll loops.
 */
#ifndef PGBC_HELPER_CLOCK_H
#define PGBC_HELPER_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in microseconds */
uint64_t clock_usec(void);

/* sleep usec microseconds (a signal may cut it short) */
void clock_sleep_usec(uint64_t usec);

#endif
