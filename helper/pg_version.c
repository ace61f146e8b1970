/*
 * Major versions from server_version_num: two-part majors (9.6 = 906)
 * before 10, one part (15) from 10 on.
 */
#include "pg_version.h"

int
pg_major_of(int num)
{
	return num >= 100000 ? num / 10000 : num / 100;
}

int
pg_next_major(int num)
{
	if (num >= 100000)
		return num / 10000 + 1;
	if (num >= 90600)
		return 10;
	return num / 100 + 1;
}
