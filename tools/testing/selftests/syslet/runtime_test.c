// SPDX-License-Identifier: GPL-2.0
/*
 * syslet runtime kselftests (libsyslet): a submit whose call blocks returns
 * on another OS thread with the program's state intact; what changes with
 * the thread (gettid, pthread_self, thread-local variables, errno's
 * address); a pool of zero; the pool's bound under a burst of blocks; kill
 * -9 with spares and blocked calls in flight.
 *
 * The harness runs each test in a child process, on its main thread's
 * stack: the one stack the runtime lets move between threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/syslet.h>

#include "libsyslet.h"
#include "syslet_util.h"
#include "../kselftest_harness.h"

static __thread int tls_word;

static pid_t sys_gettid(void)
{
	return syscall(SYS_gettid);
}

FIXTURE(runtime) {
	struct syslet_ring ring;
	int pipe[2];
};

FIXTURE_SETUP(runtime)
{
	int ret = syslet_queue_init(&self->ring, 16, 0);

	if (ret == -ENOENT)
		SKIP(return, "%s missing: is the syslet module loaded?", SYSLET_DEVICE);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, pipe(self->pipe));
}

FIXTURE_TEARDOWN(runtime)
{
	/* The process ends after each test: threads on the ring go with it. */
}

/* Queues a read of @len bytes from @fd into @buf with @user_data. */
static void queue_read(struct syslet_ring *ring, int fd, void *buf, size_t len, uint64_t user_data)
{
	struct syslet_sqe *sqe = syslet_get_sqe(ring);

	syslet_prep(sqe, __NR_read, fd, (uintptr_t)buf, len, 0, 0, 0);
	sqe->user_data = user_data;
}

/* Takes the next completion, waiting for it. */
static struct syslet_cqe next_cqe(struct syslet_ring *ring)
{
	struct syslet_cqe *cqe, copy = { .res = -ENODATA };

	if (syslet_wait(ring, 1, 10LL * 1000 * 1000 * 1000) < 0)
		return copy;
	cqe = syslet_peek_cqe(ring);
	copy = *cqe;
	syslet_cqe_seen(ring);
	return copy;
}

/*
 * The call blocks: the program goes on on a spare, with its locals, its
 * callee-saved registers and its floating-point modes as they were, and
 * the completion arrives once, flagged ASYNC.
 */
TEST_F(runtime, blocked_submit_returns_on_another_thread)
{
	volatile double acc = 1.0;
	double a = 1.25, b = 3.5, c = -7.0;
	long l1 = 0x1111, l2 = 0x2222, l3 = 0x3333, l4 = 0x4444, l5 = 0x5555;
	pid_t tid = sys_gettid();
	struct syslet_pool_stats stats;
	struct late_write w;
	struct syslet_cqe cqe;
	char buf[8] = { 0 };
	int ret;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	ASSERT_EQ(0, fesetround(FE_UPWARD));
	queue_read(&self->ring, self->pipe[0], buf, 5, 42);
	start_late_write(&w, self->pipe[1], 200, "hello");
	ret = syslet_submit_async(&self->ring, 1);
	ASSERT_EQ(SYSLET_WENT_ASYNC, ret);
	/* Another OS thread runs the program now (gettid() is not const). */
	EXPECT_NE(tid, sys_gettid());
	/* Its state came along. */
	EXPECT_EQ(FE_UPWARD, fegetround()) TH_LOG("the rounding mode was lost");
	EXPECT_EQ(0x1111, l1);
	EXPECT_EQ(0x2222, l2);
	EXPECT_EQ(0x3333, l3);
	EXPECT_EQ(0x4444, l4);
	EXPECT_EQ(0x5555, l5);
	acc = a * b + c;
	EXPECT_TRUE(acc == -2.625);
	fesetround(FE_TONEAREST);
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(42, cqe.user_data);
	EXPECT_EQ(5, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC, cqe.flags);
	EXPECT_STREQ("hello", buf);
	/* Exactly once. */
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	pthread_join(w.thread, NULL);
	syslet_pool_stats(&self->ring, &stats);
	EXPECT_EQ(1, stats.handoffs);
	EXPECT_EQ(1, stats.went_async);
}

/* A submit whose calls do not block returns on the same thread, no switch. */
TEST_F(runtime, inline_submit_stays_on_the_thread)
{
	pid_t tid = sys_gettid();
	struct syslet_cqe cqe;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	ASSERT_EQ(1, syslet_submit_async(&self->ring, 1));
	EXPECT_EQ(tid, sys_gettid());
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(getppid(), cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
}

/*
 * What a function sees of its thread after the program moved, when it asks
 * afresh: it is not inlined into its caller, so no thread-local address
 * (errno's included: __errno_location() is const) is carried over from
 * before the move.
 */
static __attribute__((noinline)) void check_new_thread(struct __test_metadata *_metadata,
						       pid_t old_tid, pthread_t old_self,
						       int *old_tls, int *old_errno)
{
	EXPECT_NE(old_tid, sys_gettid());
	EXPECT_FALSE(pthread_equal(old_self, pthread_self()));
	EXPECT_NE(old_tls, &tls_word);
	EXPECT_EQ(0, tls_word) TH_LOG("not the spare's own thread-local variable");
	EXPECT_NE(old_errno, &errno);
	EXPECT_EQ(-1, close(-1));
	EXPECT_EQ(EBADF, errno);
}

/*
 * The header's claims: after a submit that went async, gettid(),
 * pthread_self(), thread-local variables and errno's address are the new
 * thread's, and errno works, for code that looks them up after the move.
 */
TEST_F(runtime, tls_and_errno_follow_the_thread)
{
	/* Taken before the submit, through volatile so they are not recomputed. */
	int *volatile tls_before = &tls_word;
	int *volatile errno_before = &errno;
	pthread_t me = pthread_self();
	pid_t tid = sys_gettid();
	struct late_write w;
	char buf[4];

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	tls_word = 7;
	queue_read(&self->ring, self->pipe[0], buf, 1, 1);
	start_late_write(&w, self->pipe[1], 200, "x");
	ASSERT_EQ(SYSLET_WENT_ASYNC, syslet_submit_async(&self->ring, 1));
	check_new_thread(_metadata, tid, me, tls_before, errno_before);
	EXPECT_EQ(1, next_cqe(&self->ring).res);
	pthread_join(w.thread, NULL);
}

/* A pool of zero: a call that blocks blocks the caller; all completes. */
TEST_F(runtime, pool_of_zero_is_synchronous)
{
	struct syslet_pool_params params = { .min_spares = 0, .max_spares = 0 };
	pid_t tid = sys_gettid();
	struct late_write w;
	char buf[8] = { 0 };

	ASSERT_EQ(0, syslet_pool_start(&self->ring, &params));
	queue_read(&self->ring, self->pipe[0], buf, 3, 3);
	start_late_write(&w, self->pipe[1], 100, "abc");
	EXPECT_EQ(1, syslet_submit_async(&self->ring, 1));
	EXPECT_EQ(tid, sys_gettid());
	EXPECT_EQ(3, next_cqe(&self->ring).res);
	EXPECT_STREQ("abc", buf);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "sync_fallbacks"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	pthread_join(w.thread, NULL);
}

/*
 * A burst of calls that block at once, more than the pool may hold: the
 * pool never exceeds its bound, the calls beyond it block their caller,
 * and every result arrives exactly once.
 */
TEST_F(runtime, pool_bound_holds_under_a_burst)
{
	enum { CALLS = 8, MAX = 3 };
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = MAX, .idle_ms = 5000 };
	struct syslet_pool_stats stats;
	int pipes[CALLS][2], seen[CALLS] = { 0 };
	char bufs[CALLS][4];
	struct late_write w[CALLS];

	ASSERT_EQ(0, syslet_pool_start(&self->ring, &params));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	for (int i = 0; i < CALLS; i++) {
		ASSERT_EQ(0, pipe(pipes[i]));
		/* Staggered, so that the calls block one after another. */
		start_late_write(&w[i], pipes[i][1], 300 + 100 * i, "z");
	}
	for (int i = 0; i < CALLS; i++) {
		int ret;

		queue_read(&self->ring, pipes[i][0], bufs[i], 1, i);
		ret = syslet_submit_async(&self->ring, 1);
		EXPECT_TRUE(ret == 1 || ret == SYSLET_WENT_ASYNC) TH_LOG("submit %d: %d", i, ret);
	}
	for (int i = 0; i < CALLS; i++) {
		struct syslet_cqe cqe = next_cqe(&self->ring);

		ASSERT_LT(cqe.user_data, CALLS);
		EXPECT_EQ(1, cqe.res);
		seen[cqe.user_data]++;
	}
	for (int i = 0; i < CALLS; i++) {
		EXPECT_EQ(1, seen[i]) TH_LOG("call %d", i);
	}
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	syslet_pool_stats(&self->ring, &stats);
	/* The pool's own threads, plus the main thread once it parked. */
	EXPECT_LE(stats.peak_threads, MAX);
	EXPECT_LE(stats.threads, MAX + 1);
	TH_LOG("peak pool threads %u, peak out of PARK %u, handoffs %lu",
	       stats.peak_threads, stats.peak_busy, stats.handoffs);
	for (int i = 0; i < CALLS; i++)
		pthread_join(w[i].thread, NULL);
}

struct other_thread_submit {
	struct syslet_ring *ring;
	pid_t tid_before, tid_after;
	int ret;
};

static void *other_thread_submit_main(void *arg)
{
	struct other_thread_submit *o = arg;

	o->tid_before = sys_gettid();
	o->ret = syslet_submit_async(o->ring, 1);
	o->tid_after = sys_gettid();
	return NULL;
}

/*
 * Off the main thread's stack (here a pthread's), a submit runs without a
 * continuation: the call blocks its caller, which never moves.
 */
TEST_F(runtime, submit_off_the_main_stack_does_not_move)
{
	struct other_thread_submit o = { .ring = &self->ring };
	struct syslet_cqe cqe;
	struct late_write w;
	pthread_t thread;
	char buf[4];

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	queue_read(&self->ring, self->pipe[0], buf, 2, 5);
	ASSERT_EQ(0, start_late_write(&w, self->pipe[1], 200, "ok"));
	ASSERT_EQ(0, pthread_create(&thread, NULL, other_thread_submit_main, &o));
	pthread_join(thread, NULL);
	EXPECT_EQ(1, o.ret);
	EXPECT_EQ(o.tid_before, o.tid_after);
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(2, cqe.res);
	/* No continuation was named: not even a synchronous fallback is counted. */
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "sync_fallbacks"));
	pthread_join(w.thread, NULL);
}

/*
 * A thread belongs to one pool: the program, running on a pool thread of
 * ring A after a handoff, submits to ring B (with a pool of its own) without
 * a continuation, and does not move.
 */
TEST_F(runtime, one_pool_per_thread)
{
	struct syslet_ring other;
	struct late_write w1, w2;
	int p2[2];
	char buf[4], buf2[4];
	pid_t tid;

	ASSERT_EQ(0, syslet_queue_init(&other, 4, 0));
	ASSERT_EQ(0, pipe(p2));
	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, syslet_pool_start(&other, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	ASSERT_EQ(0, wait_counter(other.fd, "spares_parked", 1));
	queue_read(&self->ring, self->pipe[0], buf, 1, 1);
	ASSERT_EQ(0, start_late_write(&w1, self->pipe[1], 200, "a"));
	ASSERT_EQ(SYSLET_WENT_ASYNC, syslet_submit_async(&self->ring, 1));
	tid = sys_gettid();
	queue_read(&other, p2[0], buf2, 1, 2);
	ASSERT_EQ(0, start_late_write(&w2, p2[1], 200, "b"));
	EXPECT_EQ(1, syslet_submit_async(&other, 1));
	EXPECT_EQ(tid, sys_gettid());
	EXPECT_EQ(0, syslet_fdinfo_counter(other.fd, "handoffs"));
	EXPECT_EQ(1, next_cqe(&self->ring).res);
	pthread_join(w1.thread, NULL);
	pthread_join(w2.thread, NULL);
}

/*
 * The pool shrinks when idle: spares above min_spares leave after idle_ms,
 * and min_spares stay parked.
 */
TEST_F(runtime, idle_pool_shrinks_to_its_minimum)
{
	enum { CALLS = 4 };
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = 4, .idle_ms = 100 };
	struct syslet_pool_stats stats;
	struct late_write w[CALLS];
	int pipes[CALLS][2];
	char bufs[CALLS][2];

	ASSERT_EQ(0, syslet_pool_start(&self->ring, &params));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	/* Staggered blocks make the pool grow. */
	for (int i = 0; i < CALLS; i++) {
		ASSERT_EQ(0, pipe(pipes[i]));
		ASSERT_EQ(0, start_late_write(&w[i], pipes[i][1], 200 + 150 * i, "z"));
	}
	for (int i = 0; i < CALLS; i++) {
		queue_read(&self->ring, pipes[i][0], bufs[i], 1, i);
		syslet_submit_async(&self->ring, 1);
	}
	for (int i = 0; i < CALLS; i++)
		EXPECT_EQ(1, next_cqe(&self->ring).res);
	for (int i = 0; i < CALLS; i++)
		pthread_join(w[i].thread, NULL);
	syslet_pool_stats(&self->ring, &stats);
	ASSERT_GT(stats.peak_threads, 1) TH_LOG("the pool never grew");
	/* Idle: spares above the minimum leave after 100 ms. */
	for (int i = 0; i < 50; i++) {
		usleep(100 * 1000);
		syslet_pool_stats(&self->ring, &stats);
		if (stats.parked == params.min_spares)
			break;
	}
	EXPECT_EQ(params.min_spares, stats.parked) TH_LOG("%u spares still parked", stats.parked);
	EXPECT_EQ(params.min_spares, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
}

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
	usr1_seen = 1;
}

/*
 * A signal to the process while the program runs on a spare and its call
 * is blocked on the original thread: the handler runs, and the blocked
 * call completes exactly once (with its data, or -EINTR if the signal
 * landed on the thread blocked in it).
 */
TEST_F(runtime, signal_during_handoff)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct syslet_cqe cqe;
	char buf[8] = { 0 };

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	queue_read(&self->ring, self->pipe[0], buf, 4, 9);
	ASSERT_EQ(SYSLET_WENT_ASYNC, syslet_submit_async(&self->ring, 1));
	ASSERT_EQ(0, kill(getpid(), SIGUSR1));
	for (int i = 0; i < 2000 && !usr1_seen; i++)
		usleep(1000);
	EXPECT_TRUE(usr1_seen);
	ASSERT_EQ(4, write(self->pipe[1], "data", 4));
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(9, cqe.user_data);
	EXPECT_TRUE(cqe.res == 4 || cqe.res == -EINTR) TH_LOG("res %lld", (long long)cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC, cqe.flags & SYSLET_CQE_F_ASYNC);
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
}

/* The child of kill_9_with_the_runtime_in_flight: a call blocked for good, handed off. */
static int runtime_in_flight(void)
{
	struct syslet_ring ring;
	char buf[4];
	int p[2];

	if (syslet_queue_init(&ring, 8, 0) || pipe(p) || syslet_pool_start(&ring, NULL))
		return 1;
	wait_counter(ring.fd, "spares_parked", 1);
	queue_read(&ring, p[0], buf, 1, 1);
	if (syslet_submit_async(&ring, 1) != SYSLET_WENT_ASYNC)
		return 2;
	return 0;
}

/*
 * kill -9 while calls are blocked and the program runs on a spare: the
 * process dies, nothing hangs (the suite's rmmod then proves nothing
 * leaked).
 */
TEST(kill_9_with_the_runtime_in_flight)
{
	int status, ret = kill_9_in_flight(runtime_in_flight, &status);

	if (ret == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 1)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret) TH_LOG("child failed: status %d", status);
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
}

TEST_HARNESS_MAIN
