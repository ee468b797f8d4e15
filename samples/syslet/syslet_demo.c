// SPDX-License-Identifier: GPL-2.0
/*
 * syslet_demo: submits one batch of real system calls through the ring,
 * runs it with one ioctl, and prints each result and the fdinfo counters;
 * then shows a raw handoff, and the program going on with libsyslet's
 * runtime while its read() blocks.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pthread.h>

#include "libsyslet.h"

static struct syslet_ring ring;
static int demo_pipe[2];

static long fdinfo(const char *name)
{
	return syslet_fdinfo_counter(ring.fd, name);
}

/*
 * A spare: parks in the kernel until a submitter's atom blocks, then
 * continues that submitter's program. Here "the program" just reports and
 * produces the data the blocked read is waiting for.
 */
static void *spare_main(void *arg)
{
	uint64_t cookie = 0;
	int ret = syslet_park(&ring, &cookie);

	(void)arg;
	if (ret) {
		printf("spare: park: %s\n", strerror(-ret));
		return NULL;
	}
	printf("spare (tid %ld): took over continuation %#llx while the submitter is blocked\n",
	       (long)syscall(__NR_gettid), (unsigned long long)cookie);
	if (write(demo_pipe[1], "late data", 9) != 9)
		perror("write");
	return NULL;
}

/* An atom that blocks hands the program to a parked spare. */
static void demo_handoff(void)
{
	struct syslet_cqe *cqe;
	pthread_t spare;
	char buf[32] = { 0 };
	int handed = 0;

	printf("\nhandoff: read() from an empty pipe, with a spare parked\n");
	if (pipe(demo_pipe) || pthread_create(&spare, NULL, spare_main, NULL))
		return;
	while (fdinfo("spares_parked") < 1)
		usleep(1000);
	syslet_prep(syslet_get_sqe(&ring), __NR_read, demo_pipe[0], (uintptr_t)buf,
		    sizeof(buf) - 1, 0, 0, 0);
	syslet_submit_cont(&ring, 1, 0xC0FFEE, &handed);
	pthread_join(spare, NULL);
	cqe = syslet_peek_cqe(&ring);
	printf("submitter (tid %ld): exec returned, status %s\n", (long)syscall(__NR_gettid),
	       handed ? "HANDED_OFF" : "DONE");
	if (cqe) {
		printf("  read res %lld \"%s\"%s\n", (long long)cqe->res, buf,
		       cqe->flags & SYSLET_CQE_F_ASYNC ? " async" : "");
		syslet_cqe_seen(&ring);
	}
}

static void *late_writer(void *arg)
{
	usleep(300 * 1000);
	if (write(*(int *)arg, "arrived", 7) != 7)
		perror("write");
	return NULL;
}

/* Prints the thread it runs on: not inlined, so the tid is asked afresh. */
static __attribute__((noinline)) void say(const char *what)
{
	printf("%s (tid %ld)\n", what, (long)syscall(__NR_gettid));
}

/*
 * libsyslet's runtime: the read blocks, a spare goes on with this very
 * function, and the completion arrives later in the ring.
 */
static void demo_program_goes_on(void)
{
	static struct syslet_ring r;	/* outlives this function: spares park on it */
	pthread_t writer;
	char buf[16] = { 0 };
	int p[2], ret;

	printf("\nthe program goes on: syslet_submit_async() of a read() that blocks\n");
	if (syslet_queue_init(&r, 4, 0) || pipe(p) || syslet_pool_start(&r, NULL))
		return;
	while (syslet_fdinfo_counter(r.fd, "spares_parked") < 1)
		usleep(1000);
	syslet_prep(syslet_get_sqe(&r), __NR_read, p[0], (uintptr_t)buf, sizeof(buf) - 1, 0, 0, 0);
	pthread_create(&writer, NULL, late_writer, &p[1]);
	say("  submitting");
	ret = syslet_submit_async(&r, 1);
	say(ret == SYSLET_WENT_ASYNC ? "  read() blocked; the program went on" :
				       "  read() did not block");
	ret = syslet_wait(&r, 1, -1);
	if (ret > 0) {
		struct syslet_cqe *cqe = syslet_peek_cqe(&r);

		printf("  completion: res %lld \"%s\"%s\n", (long long)cqe->res, buf,
		       cqe->flags & SYSLET_CQE_F_ASYNC ? " async" : "");
		syslet_cqe_seen(&r);
	}
	pthread_join(writer, NULL);
}

int main(void)
{
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

	demo_handoff();
	demo_program_goes_on();

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
