// SPDX-License-Identifier: GPL-2.0
/*
 * syslet_demo: submits one batch of real system calls through the ring,
 * runs it with one ioctl, and prints each result and the fdinfo counters.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libsyslet.h"

int main(void)
{
	struct syslet_ring ring;
	char buf[256] = { 0 }, path[64], line[128], uts[390];
	int p[2], ret, fd_slot;
	FILE *f;

	ret = syslet_queue_init(&ring, 16, 0);
	if (ret) {
		fprintf(stderr, "syslet_queue_init: %s\n", strerror(-ret));
		return 1;
	}
	if (pipe(p))
		return 1;

	/*
	 * openat's result (the fd) is needed by read and close: syslet atoms
	 * take literal arguments, so run openat first, then the rest.
	 */
	syslet_prep(syslet_get_sqe(&ring), __NR_openat, AT_FDCWD,
		    (uintptr_t)"/proc/version", O_RDONLY, 0, 0, 0);
	syslet_submit(&ring);
	fd_slot = syslet_peek_cqe(&ring)->res;
	syslet_cqe_seen(&ring);

	syslet_prep(syslet_get_sqe(&ring), __NR_getpid, 0, 0, 0, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_fcntl, fd_slot, F_GETFD, 0, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_read, fd_slot, (uintptr_t)buf, sizeof(buf) - 1, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_write, p[1], (uintptr_t)"hello", 5, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_close, fd_slot, 0, 0, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_uname, (uintptr_t)uts, 0, 0, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_clone, 0, 0, 0, 0, 0, 0);
	syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	for (unsigned int i = 0; i < 8; i++)
		ring.sqes[(ring.sq_tail - 8 + i) & ring.hdr->sq_mask].user_data = i;

	printf("openat(/proc/version) = %d\n", fd_slot);
	ret = syslet_submit(&ring);
	printf("SYSLET_IOC_EXEC ran %d atoms in one call (pid %d)\n", ret, getpid());
	for (struct syslet_cqe *cqe; (cqe = syslet_peek_cqe(&ring)); syslet_cqe_seen(&ring)) {
		static const char *const batch[] = {
			"getpid", "fcntl(F_GETFD)", "read", "write(pipe)", "close", "uname",
			"clone (refused)", "getppid",
		};

		printf("  atom %llu %-16s res %-6lld%s%s\n", (unsigned long long)cqe->user_data,
		       batch[cqe->user_data & 7], (long long)cqe->res,
		       cqe->flags & SYSLET_CQE_F_INLINE ? " inline" : "",
		       cqe->flags & SYSLET_CQE_F_REFUSED ? " refused" : "");
	}
	printf("read: %s", buf);
	printf("uname: %s %s\n", uts, uts + 2 * 65);

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ring.fd);
	f = fopen(path, "r");
	printf("fdinfo:\n");
	while (f && fgets(line, sizeof(line), f))
		printf("  %s", line);
	if (f)
		fclose(f);
	syslet_queue_exit(&ring);
	return 0;
}
