/*
 * libFuzzer target for helper/helper_config.c: any bytes as helper.ini
 * (through a memfd, since the loader takes a path), and each line as an
 * extra_users_file line and a scope name; refusals name the file and
 * what is accepted stays within its limits.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helper_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fh_fd = -1;
static char fh_path[64];

#define FH_STR_OK(field) (strnlen((field), sizeof(field)) < sizeof(field))

static void
fh_check_config(const struct helper_config *c)
{
	const char *why;
	int i;

	if (c->exclude_count < 0 || c->exclude_count > HELPER_LIST_MAX ||
	    c->datacenter_count < 0 || c->datacenter_count > HELPER_DC_MAX ||
	    c->nearest_n < 0 || c->nearest_n > 100)
		abort();
	if (!FH_STR_OK(c->scope) || !FH_STR_OK(c->patroni_url) || !FH_STR_OK(c->consul.url) ||
	    !FH_STR_OK(c->consul.namespace_) || !FH_STR_OK(c->consul.proxy) ||
	    !FH_STR_OK(c->member_command) || !FH_STR_OK(c->state_dir) ||
	    !FH_STR_OK(c->token_file) || !FH_STR_OK(c->source))
		abort();
	for (i = 0; i < c->exclude_count; i++)
		if (!FH_STR_OK(c->exclude_users[i]) || !helper_config_excluded(c, c->exclude_users[i]))
			abort();
	for (i = 0; i < c->datacenter_count; i++)
		if (!FH_STR_OK(c->datacenters[i]))
			abort();
	/* the [consul] datacenter that goes into every KV request's dc= */
	if (c->consul.datacenter[0] != '\0' && !consul_datacenter_valid(c->consul.datacenter, &why))
		abort();
	for (i = 0; i < 3; i++)
		if (helper_config_pq_ttl(c, i) != (c->pq_ttl_set[i] ? c->pq_ttl_usec[i] : c->dns_ttl_usec))
			abort();
}

/* one line as an auth_file entry and as a scope name */
static void
fh_check_line(const char *line)
{
	char user[256], err[512], name[512];
	bool skip = false;
	size_t i, n;

	if (helper_userlist_line(line, user, sizeof(user), &skip, err, sizeof(err))) {
		if (skip || !FH_STR_OK(user))
			abort();
	} else if (!skip && err[0] == '\0') {
		abort();
	}
	helper_service_name(line, name, sizeof(name));
	n = strlen(name);
	if (n > 230)
		abort();
	/* Patroni's service names: [a-z0-9-] only */
	for (i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '-'))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct helper_config *cfg;
	char err[1024], *text, *line, *save = NULL;

	if (fh_fd < 0) {
		fh_fd = memfd_create("helper.ini", 0);
		if (fh_fd < 0)
			abort();
		snprintf(fh_path, sizeof(fh_path), "/proc/self/fd/%d", fh_fd);
	}
	if (ftruncate(fh_fd, 0) != 0 || pwrite(fh_fd, data, size, 0) != (ssize_t) size)
		abort();
	cfg = malloc(sizeof(*cfg));
	if (cfg == NULL)
		return 0;
	helper_config_init(cfg);
	err[0] = '\0';
	if (helper_config_load(cfg, fh_path, err, sizeof(err))) {
		fh_check_config(cfg);
	} else if (strncmp(err, fh_path, strlen(fh_path)) != 0 || err[strlen(fh_path)] != ':') {
		/* a refusal starts with "file:line:" */
		abort();
	}
	free(cfg);

	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		fh_check_line(line);
	free(text);
	return 0;
}
