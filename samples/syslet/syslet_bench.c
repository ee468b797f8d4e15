// SPDX-License-Identifier: GPL-2.0
/*
 * syslet_bench: syslet against plain system calls, io_uring and threads,
 * measured side by side in one run. Absolute times on a shared or emulated
 * machine are noise; the ratios are the result.
 *
 *  1. a null system call (getppid; io_uring has none: IORING_OP_NOP),
 *  2. a cached 4 KiB pread (shmem), one at a time and in batches of 32,
 *  3. a call that blocks (read from an empty pipe): how long until the
 *     program goes on, with a syslet handoff to a parked spare, a new
 *     thread per call, a thread-pool worker, and io_uring,
 *  4. a threadlet that does not block (enter, run, leave: no system call)
 *     against a plain function call and a getppid, and what naming the
 *     continuation (syslet_submit_async()) adds to an exec that does not
 *     block.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "libsyslet.h"

#define BATCH 32

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void report(const char *what, double ns_per_op, double base)
{
	printf("  %-34s %9.0f ns/op  %6.2fx\n", what, ns_per_op, ns_per_op / base);
}

static struct syslet_ring ring;
static struct io_uring uring;
static char buf[BATCH][4096];
static int data_fd;

/* Runs @n syslet atoms of @nr(args) in batches of @batch; returns ns/op. */
static double syslet_run(unsigned int n, unsigned int batch, unsigned int nr, int pread_fd)
{
	double t0 = now_ns();

	for (unsigned int done = 0; done < n; done += batch) {
		for (unsigned int i = 0; i < batch; i++)
			syslet_prep(syslet_get_sqe(&ring), nr, pread_fd, (uintptr_t)buf[i], 4096,
				    (uint64_t)((done + i) % 256) * 4096, 0, 0);
		if (syslet_submit(&ring) != (int)batch)
			exit(1);
		for (unsigned int i = 0; i < batch; i++)
			syslet_cqe_seen(&ring);
	}
	return (now_ns() - t0) / n;
}

/* The same with io_uring: reads, or NOPs when @fd < 0. */
static double uring_run(unsigned int n, unsigned int batch, int fd)
{
	double t0 = now_ns();

	for (unsigned int done = 0; done < n; done += batch) {
		struct io_uring_cqe *cqe;

		for (unsigned int i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&uring);

			if (fd < 0)
				io_uring_prep_nop(sqe);
			else
				io_uring_prep_read(sqe, fd, buf[i], 4096,
						   (uint64_t)((done + i) % 256) * 4096);
		}
		io_uring_submit_and_wait(&uring, batch);
		for (unsigned int i = 0; i < batch; i++) {
			if (io_uring_wait_cqe(&uring, &cqe))
				exit(1);
			io_uring_cqe_seen(&uring, cqe);
		}
	}
	return (now_ns() - t0) / n;
}

static void bench_null(unsigned int n)
{
	double t0 = now_ns(), plain;

	for (unsigned int i = 0; i < n; i++)
		syscall(__NR_getppid);
	plain = (now_ns() - t0) / n;
	printf("null system call (getppid), %u calls; ratio to a plain syscall:\n", n);
	report("plain syscall", plain, plain);
	report("syslet, 1 per exec", syslet_run(n, 1, __NR_getppid, 0), plain);
	report("syslet, 32 per exec", syslet_run(n, BATCH, __NR_getppid, 0), plain);
	report("io_uring NOP, 1 per enter", uring_run(n, 1, -1), plain);
	report("io_uring NOP, 32 per enter", uring_run(n, BATCH, -1), plain);
}

static void bench_pread(unsigned int n)
{
	double t0 = now_ns(), plain;

	for (unsigned int i = 0; i < n; i++)
		if (pread(data_fd, buf[0], 4096, (i % 256) * 4096) != 4096)
			exit(1);
	plain = (now_ns() - t0) / n;
	printf("cached 4 KiB pread, %u reads; ratio to a plain syscall:\n", n);
	report("plain pread", plain, plain);
	report("syslet, 1 per exec", syslet_run(n, 1, __NR_pread64, data_fd), plain);
	report("syslet, 32 per exec", syslet_run(n, BATCH, __NR_pread64, data_fd), plain);
	report("io_uring, 1 per enter", uring_run(n, 1, data_fd), plain);
	report("io_uring, 32 per enter", uring_run(n, BATCH, data_fd), plain);
}

/* --- 3. a call that blocks: time until the program goes on --- */

static volatile double resumed_at;
static int block_pipe[2];

static void *spare_main(void *arg)
{
	uint64_t cookie;

	(void)arg;
	while (syslet_park(&ring, &cookie) == 0) {
		resumed_at = now_ns();
		/* "The program" goes on here; it unblocks the submitter. */
		if (write(block_pipe[1], "x", 1) != 1)
			exit(1);
	}
	return NULL;
}

static long fdinfo(const char *name)
{
	return syslet_fdinfo_counter(ring.fd, name);
}

static double syslet_block(unsigned int n)
{
	double total = 0;
	pthread_t spare;
	char c;

	pthread_create(&spare, NULL, spare_main, NULL);
	for (unsigned int i = 0; i < n; i++) {
		double t0;
		int handed = 0;

		while (fdinfo("spares_parked") < 1)
			usleep(100);
		syslet_prep(syslet_get_sqe(&ring), __NR_read, block_pipe[0], (uintptr_t)&c, 1, 0,
			    0, 0);
		t0 = now_ns();
		syslet_submit_cont(&ring, 1, i + 1, &handed);
		if (!handed)
			exit(2);
		total += resumed_at - t0;
		syslet_cqe_seen(&ring);
	}
	close(dup(ring.fd));	/* sends the spare away */
	pthread_join(spare, NULL);
	return total / n;
}

static void *reader_main(void *arg)
{
	char c;

	(void)arg;
	if (read(block_pipe[0], &c, 1) != 1)
		exit(1);
	return NULL;
}

static double thread_block(unsigned int n)
{
	double total = 0;

	for (unsigned int i = 0; i < n; i++) {
		pthread_t t;
		double t0 = now_ns();

		pthread_create(&t, NULL, reader_main, NULL);
		total += now_ns() - t0;	/* the caller goes on now */
		if (write(block_pipe[1], "x", 1) != 1)
			exit(1);
		pthread_join(t, NULL);
	}
	return total / n;
}

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static int pool_work, pool_stop;

static void *pool_main(void *arg)
{
	char c;

	(void)arg;
	pthread_mutex_lock(&pool_lock);
	for (;;) {
		while (!pool_work && !pool_stop)
			pthread_cond_wait(&pool_cond, &pool_lock);
		if (pool_stop)
			break;
		pool_work = 0;
		pthread_mutex_unlock(&pool_lock);
		if (read(block_pipe[0], &c, 1) != 1)
			exit(1);
		pthread_mutex_lock(&pool_lock);
	}
	pthread_mutex_unlock(&pool_lock);
	return NULL;
}

static double pool_block(unsigned int n)
{
	double total = 0;
	pthread_t worker;

	pthread_create(&worker, NULL, pool_main, NULL);
	for (unsigned int i = 0; i < n; i++) {
		double t0 = now_ns();

		pthread_mutex_lock(&pool_lock);
		pool_work = 1;
		pthread_cond_signal(&pool_cond);
		pthread_mutex_unlock(&pool_lock);
		total += now_ns() - t0;	/* the caller goes on now */
		usleep(200);		/* let the worker block in read */
		if (write(block_pipe[1], "x", 1) != 1)
			exit(1);
		usleep(200);
	}
	pthread_mutex_lock(&pool_lock);
	pool_stop = 1;
	pthread_cond_signal(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
	pthread_join(worker, NULL);
	return total / n;
}

static double uring_block(unsigned int n)
{
	double total = 0;
	char c;

	for (unsigned int i = 0; i < n; i++) {
		struct io_uring_cqe *cqe;
		double t0 = now_ns();

		io_uring_prep_read(io_uring_get_sqe(&uring), block_pipe[0], &c, 1, 0);
		io_uring_submit(&uring);
		total += now_ns() - t0;	/* the caller goes on now */
		if (write(block_pipe[1], "x", 1) != 1)
			exit(1);
		if (io_uring_wait_cqe(&uring, &cqe))
			exit(1);
		io_uring_cqe_seen(&uring, cqe);
	}
	return total / n;
}

static void bench_block(unsigned int n)
{
	double syslet;

	if (pipe(block_pipe))
		exit(1);
	syslet = syslet_block(n);
	printf("a call that blocks (read from an empty pipe), %u calls:\n", n);
	printf("time until the program goes on; ratio to the syslet handoff:\n");
	report("syslet handoff to a parked spare", syslet, syslet);
	report("new thread per call", thread_block(n), syslet);
	report("thread-pool worker (condvar)", pool_block(n), syslet);
	report("io_uring (async poll), submit", uring_block(n), syslet);
}

/* --- 4. threadlets that do not block --- */

static __attribute__((noinline)) long add_one(void *arg)
{
	return (long)arg + 1;
}

static long getppid_fn(void *arg)
{
	return syscall(__NR_getppid);
}

static void bench_threadlet(unsigned int n)
{
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = 1, .idle_ms = 1000 };
	long (*volatile call)(void *) = add_one;
	static struct syslet_ring ring;
	double t0, plain, fn_call;
	long result, sum = 0;

	/* A ring of its own: the handoff benchmark closed a descriptor of the other one. */
	if (syslet_queue_init(&ring, 8, 0) || syslet_pool_start(&ring, &params))
		exit(1);
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++)
		syscall(__NR_getppid);
	plain = (now_ns() - t0) / n;
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++)
		sum += call((void *)(long)i);
	fn_call = (now_ns() - t0) / n;
	/* The first run registers the thread (one ioctl): not timed. */
	syslet_threadlet_run(&ring, add_one, NULL, 0, &result);
	printf("threadlets and continuations that do not block, %u runs; ratio to a plain getppid:\n",
	       n);
	report("plain syscall (getppid)", plain, plain);
	report("plain function call", fn_call, plain);
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++) {
		if (syslet_threadlet_run(&ring, add_one, (void *)(long)i, i, &result))
			exit(1);
		sum += result;
	}
	report("threadlet (enter, call, leave)", (now_ns() - t0) / n, plain);
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++)
		if (syslet_threadlet_run(&ring, getppid_fn, NULL, i, &result))
			exit(1);
	report("threadlet calling getppid", (now_ns() - t0) / n, plain);
	/* What naming the continuation adds to an exec that does not block. */
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++) {
		syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		if (syslet_submit_n(&ring, 1) != 1)
			exit(1);
		syslet_cqe_seen(&ring);
	}
	report("exec of 1 getppid, plain submit", (now_ns() - t0) / n, plain);
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++) {
		syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		if (syslet_submit_async(&ring, 1) != 1)
			exit(1);
		syslet_cqe_seen(&ring);
	}
	report("exec of 1 getppid, submit_async", (now_ns() - t0) / n, plain);
	if (sum == 42)
		printf("\n");
	syslet_pool_stop(&ring);
	syslet_queue_exit(&ring);
}

int main(int argc, char **argv)
{
	unsigned int n = argc > 1 ? atoi(argv[1]) : 20000;
	static char block[4096];

	/* In memory (shmem): every read is a cached read, whatever the guest's root is. */
	data_fd = memfd_create("syslet-bench", 0);
	for (int i = 0; i < 256; i++)
		if (write(data_fd, block, sizeof(block)) != sizeof(block))
			return 1;
	if (syslet_queue_init(&ring, 64, 128) || io_uring_queue_init(64, &uring, 0)) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	printf("syslet_bench: %u operations per row\n", n);
	bench_null(n);
	bench_pread(n);
	bench_block(n / 100 ? n / 100 : 1);
	bench_threadlet(n);
	printf("fdinfo counters: handoffs %ld, sync_fallbacks %ld, completed_inline %ld\n",
	       fdinfo("handoffs"), fdinfo("sync_fallbacks"), fdinfo("completed_inline"));
	io_uring_queue_exit(&uring);
	syslet_queue_exit(&ring);
	return 0;
}
