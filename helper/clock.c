/*
 * Monotonic time and sleeps for the helper's waits and deadlines.
 */
#include <time.h>

#include "clock.h"

uint64_t
clock_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

void
clock_sleep_usec(uint64_t usec)
{
	struct timespec ts;

	ts.tv_sec = (time_t) (usec / 1000000);
	ts.tv_nsec = (long) (usec % 1000000) * 1000;
	nanosleep(&ts, NULL);
}
