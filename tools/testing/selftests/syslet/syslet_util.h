/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the syslet kselftests. */
#ifndef SYSLET_SELFTEST_UTIL_H
#define SYSLET_SELFTEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libsyslet.h"

/* Waits (up to 20 s) until fdinfo counter @name of @fd reaches @value. */
static inline int wait_counter(int fd, const char *name, long value)
{
	for (int i = 0; i < 20000; i++) {
		if (syslet_fdinfo_counter(fd, name) == value)
			return 0;
		usleep(1000);
	}
	return -1;
}

#endif /* SYSLET_SELFTEST_UTIL_H */
