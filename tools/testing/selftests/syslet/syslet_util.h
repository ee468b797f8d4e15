/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the syslet kselftests. */
#ifndef SYSLET_SELFTEST_UTIL_H
#define SYSLET_SELFTEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a counter from /proc/self/fdinfo/@fd, or -1. */
static inline long fdinfo_counter(int fd, const char *name)
{
	char path[64], line[512];
	size_t len = strlen(name);
	long value = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, len) && line[len] == ':')
			value = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return value;
}

/* Waits (up to 20 s) until fdinfo counter @name of @fd reaches @value. */
static inline int wait_counter(int fd, const char *name, long value)
{
	for (int i = 0; i < 20000; i++) {
		if (fdinfo_counter(fd, name) == value)
			return 0;
		usleep(1000);
	}
	return -1;
}

#endif /* SYSLET_SELFTEST_UTIL_H */
