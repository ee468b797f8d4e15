/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the syslet kselftests. */
#ifndef SYSLET_SELFTEST_UTIL_H
#define SYSLET_SELFTEST_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>

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

/* Joins @thread if it ends within @seconds: 0, or ETIMEDOUT (still running). */
static inline int join_within(pthread_t thread, int seconds)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += seconds;
	return pthread_timedjoin_np(thread, NULL, &deadline);
}

/*
 * Installs a seccomp filter that, as real filters do, checks the architecture
 * first (anything but x86-64 kills the process), then gives system call @nr
 * @action and allows everything else.
 */
static inline int install_filter(unsigned int nr, unsigned int action)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = filter,
	};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/*
 * An io_uring set up with raw system calls and no setup flags: no
 * IORING_SETUP_COOP_TASKRUN or DEFER_TASKRUN, so a completion reaches the
 * submitting thread as task work signalled with TIF_NOTIFY_SIGNAL.
 */
struct raw_uring {
	int fd;
	struct io_uring_params p;
	void *sq_ring, *cq_ring;
	size_t sq_ring_size, cq_ring_size, sqes_size;
	struct io_uring_sqe *sqes;
	unsigned int *sq_tail, *sq_mask, *sq_array;
	unsigned int *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
};

/* Returns 0, or -errno of io_uring_setup (ENOSYS, EPERM: no io_uring here). */
static inline int raw_uring_init(struct raw_uring *r, unsigned int entries)
{
	memset(r, 0, sizeof(*r));
	r->fd = syscall(__NR_io_uring_setup, entries, &r->p);
	if (r->fd < 0)
		return -errno;
	r->sq_ring_size = r->p.sq_off.array + r->p.sq_entries * sizeof(unsigned int);
	r->cq_ring_size = r->p.cq_off.cqes + r->p.cq_entries * sizeof(struct io_uring_cqe);
	r->sqes_size = r->p.sq_entries * sizeof(struct io_uring_sqe);
	r->sq_ring = mmap(NULL, r->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  r->fd, IORING_OFF_SQ_RING);
	r->cq_ring = mmap(NULL, r->cq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  r->fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
		       IORING_OFF_SQES);
	if (r->sq_ring == MAP_FAILED || r->cq_ring == MAP_FAILED || r->sqes == MAP_FAILED) {
		int err = -errno;

		close(r->fd);
		r->fd = -1;
		return err;
	}
	r->sq_tail = (void *)((char *)r->sq_ring + r->p.sq_off.tail);
	r->sq_mask = (void *)((char *)r->sq_ring + r->p.sq_off.ring_mask);
	r->sq_array = (void *)((char *)r->sq_ring + r->p.sq_off.array);
	r->cq_head = (void *)((char *)r->cq_ring + r->p.cq_off.head);
	r->cq_tail = (void *)((char *)r->cq_ring + r->p.cq_off.tail);
	r->cq_mask = (void *)((char *)r->cq_ring + r->p.cq_off.ring_mask);
	r->cqes = (void *)((char *)r->cq_ring + r->p.cq_off.cqes);
	return 0;
}

static inline void raw_uring_exit(struct raw_uring *r)
{
	if (r->fd < 0)
		return;
	munmap(r->sq_ring, r->sq_ring_size);
	munmap(r->cq_ring, r->cq_ring_size);
	munmap(r->sqes, r->sqes_size);
	close(r->fd);
	r->fd = -1;
}

/*
 * Submits a pure timeout (IORING_OP_TIMEOUT, count 0) of @ns nanoseconds
 * from the calling thread, whose task work then completes it. Returns what
 * io_uring_enter returned (1: submitted), or -errno.
 */
static inline int raw_uring_timeout(struct raw_uring *r, long long ns, uint64_t user_data)
{
	struct __kernel_timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	unsigned int tail = *r->sq_tail, index = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = &r->sqes[index];
	int ret;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_TIMEOUT;
	sqe->fd = -1;
	sqe->addr = (uintptr_t)&ts;	/* copied at submission */
	sqe->len = 1;
	sqe->off = 0;			/* no completion count: a pure timeout */
	sqe->user_data = user_data;
	r->sq_array[index] = index;
	/* Pairs with the kernel's load-acquire of the SQ tail. */
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	ret = syscall(__NR_io_uring_enter, r->fd, 1, 0, 0, NULL, 0);
	return ret < 0 ? -errno : ret;
}

/* Takes the oldest io_uring completion into @out: 1, or 0 if there is none. */
static inline int raw_uring_reap(struct raw_uring *r, struct io_uring_cqe *out)
{
	unsigned int head = *r->cq_head;
	/* Pairs with the kernel's store-release of the CQ tail. */
	unsigned int tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);

	if (head == tail)
		return 0;
	*out = r->cqes[head & *r->cq_mask];
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return 1;
}


/* Writes @text to @fd after @ms milliseconds, from a thread of its own. */
struct late_write {
	int fd;
	int ms;
	const char *text;
	pthread_t thread;
};

static inline void *late_write_main(void *arg)
{
	struct late_write *w = arg;

	usleep(w->ms * 1000);
	if (write(w->fd, w->text, strlen(w->text)) < 0)
		abort();
	return NULL;
}

static inline int start_late_write(struct late_write *w, int fd, int ms, const char *text)
{
	w->fd = fd;
	w->ms = ms;
	w->text = text;
	return pthread_create(&w->thread, NULL, late_write_main, w);
}

/*
 * Forks a child that runs @setup, which puts calls in flight and returns 0
 * (or the exit code to fail with; 1: no syslet device), then kills it with
 * SIGKILL while they are. Returns 0 with the killed child's wait status in
 * *@status, 1 with its exit status if @setup failed, or -1.
 */
static inline int kill_9_in_flight(int (*setup)(void), int *status)
{
	int ready[2], ret = 0;
	pid_t pid;
	char c;

	if (pipe(ready))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int err = setup();

		if (err)
			_exit(err);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1)
		ret = 1;
	else if (kill(pid, SIGKILL))
		ret = -1;
	close(ready[0]);
	if (waitpid(pid, status, 0) != pid)
		return -1;
	return ret;
}

/* Reads every unread completion of @ring into @out (at most @max); returns how many. */
static inline int reap_cqes(struct syslet_ring *ring, struct syslet_cqe *out, int max)
{
	struct syslet_cqe *cqe;
	int n = 0;

	while (n < max && (cqe = syslet_peek_cqe(ring))) {
		out[n++] = *cqe;
		syslet_cqe_seen(ring);
	}
	return n;
}

/*
 * Runs @body in a child process (for what must not touch the test process:
 * seccomp filters, changed credentials) and returns its exit status: 0 when
 * every step passed, else the step that failed; -1 if it did not exit.
 */
static inline int run_in_child(int (*body)(void))
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0)
		_exit(body());
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

#endif /* SYSLET_SELFTEST_UTIL_H */
