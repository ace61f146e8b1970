/*
 * Recorded Consul and Patroni answers for the unit tests, read from
 * $TEST_DATA_DIR (default "tests/unit/data").
 */
#ifndef PGBC_DATA_FILES_H
#define PGBC_DATA_FILES_H

#include <stdio.h>
#include <stdlib.h>

/* the whole file, malloc'd and NUL-terminated; fails the test when absent */
static char *
test_data_read(const char *name, size_t *len)
{
	const char *dir = getenv("TEST_DATA_DIR");
	char path[1024];
	FILE *f;
	char *buf;
	long size;

	if (dir == NULL || dir[0] == '\0')
		dir = "tests/unit/data";
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL) {
		fail_msg("cannot open test data \"%s\" (set TEST_DATA_DIR)", path);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t) size, f), (size_t) size);
	fclose(f);
	buf[size] = '\0';
	*len = (size_t) size;
	return buf;
}

#endif
