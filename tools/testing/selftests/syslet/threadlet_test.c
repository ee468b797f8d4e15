// SPDX-License-Identifier: GPL-2.0
/*
 * syslet threadlet kselftests.
 *
 * The kernel protocol, driven by hand (no library): registration, the slot
 * word, a block handing the caller over to a parked spare, the result
 * posted once, what is refused inside a threadlet, preemption that is not a
 * block, threads that exit registered or with a result pending.
 *
 * The library's syslet_threadlet_run(): inline with no thread switch, a
 * block returning on another thread with the program's state intact, a
 * thousand threadlets of which half block, a pool of zero, the pool's
 * bound, signals, a page fault that blocks, refused calls inside, kill -9.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fenv.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
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

static struct syslet_threadlet_slot *slot_of(struct syslet_ring *ring, __u32 index)
{
	struct syslet_threadlet_slot *slots =
		(void *)((char *)ring->mem + ring->params.threadlets_off);

	return &slots[index];
}

/* Takes the next completion, waiting up to 10 s for it. */
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

FIXTURE(threadlet) {
	struct syslet_ring ring;
	int pipe[2];
};

FIXTURE_SETUP(threadlet)
{
	int ret = syslet_queue_init(&self->ring, 64, 1024);
	__u32 index;

	if (ret == -ENOENT)
		SKIP(return, "%s missing: is the syslet module loaded?", SYSLET_DEVICE);
	ASSERT_EQ(0, ret);
	if (ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index) < 0 && errno == ENOTTY)
		SKIP(return, "the module has no threadlets");
	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_UNREGISTER));
	ASSERT_EQ(0, pipe(self->pipe));
}

FIXTURE_TEARDOWN(threadlet)
{
	/* The process ends after each test. */
}

/* A spare thread: parks once on @fd (for @timeout_ns, 0: no limit) and records what PARK said. */
struct spare {
	int fd;
	__s64 timeout_ns;
	pthread_t thread;
	pid_t tid;
	long ret;
	int err;
	__u64 cookie;
};

static void *spare_main(void *arg)
{
	struct spare *s = arg;
	struct syslet_park park = { .timeout_ns = s->timeout_ns };

	s->tid = sys_gettid();

	s->ret = ioctl(s->fd, SYSLET_IOC_PARK, &park);
	s->err = errno;
	s->cookie = park.continuation;
	return NULL;
}

static void start_spare(struct __test_metadata *_metadata, struct spare *s, int fd)
{
	long parked = syslet_fdinfo_counter(fd, "spares_parked");

	s->fd = fd;
	ASSERT_EQ(0, pthread_create(&s->thread, NULL, spare_main, s));
	ASSERT_EQ(0, wait_counter(fd, "spares_parked", parked + 1));
}

/* Registration: one slot per thread, zeroed; every misuse has its error. */
TEST_F(threadlet, register_gives_one_zeroed_slot)
{
	struct syslet_threadlet_slot *slot;
	__u32 index = ~0U;
	__s64 res = 0;

	ASSERT_NE(0, self->ring.params.threadlets_off);
	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	ASSERT_LT(index, SYSLET_MAX_THREADLET_SLOTS);
	slot = slot_of(&self->ring, index);
	EXPECT_EQ(0, slot->state);
	EXPECT_EQ(0, slot->sync_blocks);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_DONE, &res));
	EXPECT_EQ(EINVAL, errno) TH_LOG("a result posted with no handoff");
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, (void *)8));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_UNREGISTER));
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_UNREGISTER));
	EXPECT_EQ(ENOENT, errno);
	/* A slot index that cannot be written back leaves the thread unregistered. */
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_UNREGISTER));
	EXPECT_EQ(ENOENT, errno);
}

static void *register_and_exit_main(void *arg)
{
	int fd = *(int *)arg;
	__u32 index;

	if (ioctl(fd, SYSLET_IOC_THREADLET_REGISTER, &index) < 0)
		return (void *)(long)errno;
	/* Leaves without unregistering. */
	return NULL;
}

/*
 * Threads that exit registered give their slot back: 3 x 64 of them, one
 * after another, all register.
 */
TEST_F(threadlet, exited_threads_free_their_slots)
{
	for (int i = 0; i < 3 * SYSLET_MAX_THREADLET_SLOTS; i++) {
		pthread_t thread;
		void *err;

		ASSERT_EQ(0, pthread_create(&thread, NULL, register_and_exit_main, &self->ring.fd));
		ASSERT_EQ(0, pthread_join(thread, &err));
		ASSERT_EQ(NULL, err) TH_LOG("thread %d: register failed with %ld", i, (long)err);
	}
}

/* Registers, reports the result and stays registered until told to go. */
struct held_registration {
	int fd;
	int err;			/* 0, or REGISTER's errno */
	pthread_barrier_t *registered;	/* passed once the ioctl returned */
	pthread_barrier_t *go;		/* passed to leave */
};

static void *register_and_hold_main(void *arg)
{
	struct held_registration *h = arg;
	__u32 index;

	h->err = ioctl(h->fd, SYSLET_IOC_THREADLET_REGISTER, &index) < 0 ? errno : 0;
	pthread_barrier_wait(h->registered);
	pthread_barrier_wait(h->go);
	return NULL;
}

/*
 * With every slot held by a live thread, one more registration fails with
 * ENOSPC (exited_threads_free_their_slots shows exits give slots back).
 */
TEST_F(threadlet, all_slots_taken_is_enospc)
{
	enum { N = SYSLET_MAX_THREADLET_SLOTS };
	struct held_registration h[N];
	pthread_barrier_t registered, go;
	pthread_t threads[N];
	pthread_t extra;
	void *err;

	ASSERT_EQ(0, pthread_barrier_init(&registered, NULL, N + 1));
	ASSERT_EQ(0, pthread_barrier_init(&go, NULL, N + 1));
	for (int i = 0; i < N; i++) {
		h[i] = (struct held_registration){
			.fd = self->ring.fd, .registered = &registered, .go = &go,
		};
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, register_and_hold_main, &h[i]));
	}
	pthread_barrier_wait(&registered);
	for (int i = 0; i < N; i++) {
		EXPECT_EQ(0, h[i].err) TH_LOG("thread %d: %s", i, strerror(h[i].err));
	}
	ASSERT_EQ(0, pthread_create(&extra, NULL, register_and_exit_main, &self->ring.fd));
	ASSERT_EQ(0, pthread_join(extra, &err));
	EXPECT_EQ(ENOSPC, (long)err);
	pthread_barrier_wait(&go);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(0, pthread_join(threads[i], NULL));
	pthread_barrier_destroy(&registered);
	pthread_barrier_destroy(&go);
}

/*
 * The protocol by hand: inside a threadlet, a block hands the cookie to a
 * parked spare; the slot says HANDED; the thread posts its result once.
 */
TEST_F(threadlet, block_hands_the_cookie_to_a_spare)
{
	const __u64 cookie = 0x7ff0001000;
	struct syslet_threadlet_slot *slot;
	struct late_write w;
	struct syslet_cqe cqe;
	struct spare s = { 0 };
	__s64 res = 77;
	char buf[4];
	__u64 old;
	__u32 index;

	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	slot = slot_of(&self->ring, index);
	start_spare(_metadata, &s, self->ring.fd);
	slot->user_data = 1234;
	__atomic_store_n(&slot->state, cookie, __ATOMIC_RELEASE);
	start_late_write(&w, self->pipe[1], 200, "abc");
	EXPECT_EQ(3, read(self->pipe[0], buf, 3));
	old = __atomic_exchange_n(&slot->state, 0, __ATOMIC_ACQ_REL);
	EXPECT_EQ(cookie | SYSLET_THREADLET_HANDED, old);
	ASSERT_EQ(0, join_within(s.thread, 10));
	EXPECT_EQ(0, s.ret) TH_LOG("park failed: %s", strerror(s.err));
	EXPECT_EQ(cookie, s.cookie);
	/* No result until the thread posts it, then exactly one. */
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_DONE, &res));
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_DONE, &res));
	EXPECT_EQ(EINVAL, errno);
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(1234, cqe.user_data);
	EXPECT_EQ(77, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC | SYSLET_CQE_F_THREADLET, cqe.flags);
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "threadlets_done"));
	pthread_join(w.thread, NULL);
}

/* Inside a threadlet, parking and an exec with a continuation are refused. */
TEST_F(threadlet, park_and_continuation_refused_inside)
{
	struct syslet_exec exec = { .to_submit = 1, .continuation = 0x1000 };
	struct syslet_park park = { 0 };
	struct syslet_threadlet_slot *slot;
	__u32 index;

	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	slot = slot_of(&self->ring, index);
	__atomic_store_n(&slot->state, 0x2000, __ATOMIC_RELEASE);
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	__atomic_store_n(&self->ring.hdr->sq_tail, self->ring.sq_tail, __ATOMIC_RELEASE);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_PARK, &park));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_UNREGISTER));
	EXPECT_EQ(EBUSY, errno);
	/* An exec without a continuation runs: the threadlet's hook watches it. */
	exec.continuation = 0;
	EXPECT_EQ(1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(getppid(), next_cqe(&self->ring).res);
	__atomic_store_n(&slot->state, 0, __ATOMIC_RELEASE);
	EXPECT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_UNREGISTER));
}

/* With no spare parked a block is synchronous, counted in the slot and flagged. */
TEST_F(threadlet, block_without_spare_is_synchronous)
{
	struct syslet_threadlet_slot *slot;
	struct late_write w;
	char buf[2];
	__u32 index;

	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	slot = slot_of(&self->ring, index);
	__atomic_store_n(&slot->state, 0x3000, __ATOMIC_RELEASE);
	start_late_write(&w, self->pipe[1], 100, "z");
	EXPECT_EQ(1, read(self->pipe[0], buf, 1));
	EXPECT_EQ(0x3000, __atomic_exchange_n(&slot->state, 0, __ATOMIC_ACQ_REL));
	EXPECT_LE(1, slot->sync_blocks);
	EXPECT_TRUE(self->ring.hdr->flags & SYSLET_RING_NEED_SPARE);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	pthread_join(w.thread, NULL);
}

static volatile int hog_stop;

static void *hog_main(void *arg)
{
	while (!hog_stop)
		;
	return NULL;
}

/*
 * Preemption is not a block: a threadlet that yields the CPU to a busy
 * thread on the same CPU, over and over, keeps its caller; the spare stays
 * parked.
 */
TEST_F(threadlet, preemption_is_not_a_block)
{
	struct syslet_threadlet_slot *slot;
	struct timespec start, now;
	struct spare s = { 0 };
	pthread_t hog;
	cpu_set_t one;
	__u32 index;

	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	slot = slot_of(&self->ring, index);
	start_spare(_metadata, &s, self->ring.fd);
	/* This thread and the hog on one CPU: every yield switches to the other. */
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	ASSERT_EQ(0, sched_setaffinity(0, sizeof(one), &one));
	ASSERT_EQ(0, pthread_create(&hog, NULL, hog_main, NULL));
	__atomic_store_n(&slot->state, 0x4000, __ATOMIC_RELEASE);
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
		 300000000L);
	EXPECT_EQ(0x4000, __atomic_exchange_n(&slot->state, 0, __ATOMIC_ACQ_REL));
	hog_stop = 1;
	pthread_join(hog, NULL);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
}

/* Returns the scheduler state letter of thread @tid of this process ('R', 'S'...). */
static char thread_state(pid_t tid)
{
	char path[64], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' ? p[2] : '?';
}

struct sleeper {
	int fd;
	int pipe_rd;
	__u32 index;
};

/* Registers, then sleeps in a read outside any threadlet. */
static void *register_and_sleep_main(void *arg)
{
	struct sleeper *z = arg;
	char c;

	if (ioctl(z->fd, SYSLET_IOC_THREADLET_REGISTER, &z->index) < 0)
		return (void *)1;
	if (read(z->pipe_rd, &c, 1) != 1)
		return (void *)2;
	return NULL;
}

/*
 * What user space writes to a slot cannot keep a spare busy: with the slot
 * of a registered thread asleep outside any threadlet forged to BLOCKED,
 * and the ring's cq_head made impossible (so no claim can succeed), a spare
 * parked for 300 ms sleeps and times out as if nothing were written.
 */
TEST_F(threadlet, forged_slot_does_not_wake_a_spare)
{
	struct sleeper z = { .fd = self->ring.fd, .pipe_rd = self->pipe[0], .index = ~0U };
	struct spare t = { .timeout_ns = 300 * 1000 * 1000 };
	struct syslet_threadlet_slot *slot;
	pthread_t sleeper;
	__u32 cq_head;
	int joined;

	ASSERT_EQ(0, pthread_create(&sleeper, NULL, register_and_sleep_main, &z));
	for (int i = 0; i < 10000 && __atomic_load_n(&z.index, __ATOMIC_ACQUIRE) == ~0U; i++)
		usleep(1000);
	ASSERT_NE(~0U, z.index);
	slot = slot_of(&self->ring, z.index);
	start_spare(_metadata, &t, self->ring.fd);
	cq_head = self->ring.hdr->cq_head;
	__atomic_store_n(&self->ring.hdr->cq_head, cq_head + 0x40000000, __ATOMIC_RELEASE);
	__atomic_store_n(&slot->state, 0x6000 | SYSLET_THREADLET_BLOCKED, __ATOMIC_RELEASE);
	joined = join_within(t.thread, 10);
	EXPECT_EQ(0, joined) TH_LOG("the spare is still in PARK after 10 s: state %c",
				    thread_state(t.tid));
	__atomic_store_n(&self->ring.hdr->cq_head, cq_head, __ATOMIC_RELEASE);
	__atomic_store_n(&slot->state, 0, __ATOMIC_RELEASE);
	if (joined) {
		close(dup(self->ring.fd));	/* the context closes: the spare leaves */
		ASSERT_EQ(0, join_within(t.thread, 10));
	}
	EXPECT_EQ(-1, t.ret);
	EXPECT_EQ(ETIMEDOUT, t.err);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	ASSERT_EQ(1, write(self->pipe[1], "w", 1));
	ASSERT_EQ(0, join_within(sleeper, 10));
}

/*
 * A thread inside a threadlet of one context that parks on another: that
 * park's sleep is not a block of the threadlet (two hooks would let two
 * spares resume two programs), whatever the first context's spares do.
 */
TEST_F(threadlet, park_on_another_context_is_not_a_block)
{
	struct syslet_park park = { .timeout_ns = 200 * 1000 * 1000 };
	struct syslet_threadlet_slot *slot;
	struct syslet_ring other;
	struct spare s = { 0 };
	__u32 index;

	ASSERT_EQ(0, syslet_queue_init(&other, 4, 0));
	ASSERT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	slot = slot_of(&self->ring, index);
	start_spare(_metadata, &s, self->ring.fd);
	__atomic_store_n(&slot->state, 0x7000, __ATOMIC_RELEASE);
	EXPECT_EQ(-1, ioctl(other.fd, SYSLET_IOC_PARK, &park));
	EXPECT_EQ(ETIMEDOUT, errno);
	EXPECT_EQ(0x7000, __atomic_exchange_n(&slot->state, 0, __ATOMIC_ACQ_REL));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
}

struct exiting {
	int fd;
	struct syslet_threadlet_slot *slots;
	int pipe_rd;
};

static void *exit_with_result_pending_main(void *arg)
{
	struct exiting *e = arg;
	struct syslet_threadlet_slot *slot;
	char buf[2];
	__u32 index;

	if (ioctl(e->fd, SYSLET_IOC_THREADLET_REGISTER, &index) < 0)
		return (void *)1;
	slot = &e->slots[index];
	slot->user_data = 99;
	__atomic_store_n(&slot->state, 0x5000, __ATOMIC_RELEASE);
	if (read(e->pipe_rd, buf, 1) != 1)
		return (void *)2;
	/* Handed off (or not): leave without posting, as a thread that dies. */
	syscall(SYS_exit, 0);
	return NULL;
}

/* A thread that exits with its result unposted: the result says -EOWNERDEAD. */
TEST_F(threadlet, exit_with_result_pending_posts_eownerdead)
{
	struct exiting e = {
		.fd = self->ring.fd,
		.slots = slot_of(&self->ring, 0),
		.pipe_rd = self->pipe[0],
	};
	struct spare s = { 0 };
	struct late_write w;
	struct syslet_cqe cqe;
	pthread_t thread;

	start_spare(_metadata, &s, self->ring.fd);
	start_late_write(&w, self->pipe[1], 200, "q");
	ASSERT_EQ(0, pthread_create(&thread, NULL, exit_with_result_pending_main, &e));
	ASSERT_EQ(0, join_within(s.thread, 10));
	ASSERT_EQ(0, s.ret) TH_LOG("park failed: %s", strerror(s.err));
	EXPECT_EQ(0x5000, s.cookie);
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(99, cqe.user_data);
	EXPECT_EQ(-EOWNERDEAD, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC | SYSLET_CQE_F_THREADLET, cqe.flags);
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	pthread_join(w.thread, NULL);
}

/* The library's threadlets. */

static long add_one(void *arg)
{
	return (long)arg + 1;
}

/* Nothing blocks: fn's result comes back directly, on the same thread, no handoff. */
TEST_F(threadlet, inline_threadlet_returns_its_result)
{
	pid_t tid = sys_gettid();
	struct syslet_pool_stats stats;
	long result = 0;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	for (int i = 0; i < 100; i++) {
		ASSERT_EQ(0, syslet_threadlet_run(&self->ring, add_one, (void *)(long)i, i, &result));
		ASSERT_EQ(i + 1, result);
	}
	EXPECT_EQ(tid, sys_gettid());
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	syslet_pool_stats(&self->ring, &stats);
	EXPECT_EQ(0, stats.threadlets_async);
}

static long getppid_fn(void *arg)
{
	/* A tail call: syscall() reads its seventh argument from this frame's caller. */
	return syscall(SYS_getppid);
}

/* fn's first frame is a normal one: a tail call to syscall() works there. */
TEST_F(threadlet, threadlet_frame_is_a_normal_frame)
{
	long result = 0;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, syslet_threadlet_run(&self->ring, getppid_fn, NULL, 1, &result));
	EXPECT_EQ(getppid(), result);
}

struct pipe_read {
	int fd;
	char buf[8];
	pid_t tid;
};

static long read_pipe(void *arg)
{
	struct pipe_read *r = arg;
	long n;

	r->tid = sys_gettid();
	n = read(r->fd, r->buf, 5);
	return n < 0 ? -errno : n + 1000;
}

/*
 * fn blocks: the caller comes back at once on another thread with its
 * state intact; fn's result arrives once as a threadlet completion.
 */
TEST_F(threadlet, blocking_threadlet_returns_on_another_thread)
{
	volatile double acc = 1.0;
	double a = 1.25, b = 3.5, c = -7.0;
	long l1 = 0x1111, l2 = 0x2222, l3 = 0x3333, l4 = 0x4444, l5 = 0x5555;
	struct pipe_read r = { .fd = self->pipe[0] };
	pid_t tid = sys_gettid();
	struct syslet_pool_stats stats;
	struct late_write w;
	struct syslet_cqe cqe;
	long result = -1;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	ASSERT_EQ(0, fesetround(FE_DOWNWARD));
	start_late_write(&w, self->pipe[1], 200, "hello");
	ASSERT_EQ(SYSLET_WENT_ASYNC, syslet_threadlet_run(&self->ring, read_pipe, &r, 31, &result));
	EXPECT_EQ(-1, result) TH_LOG("no result may be stored when it went async");
	EXPECT_NE(tid, sys_gettid());
	EXPECT_EQ(tid, r.tid) TH_LOG("fn ran on the caller's thread");
	EXPECT_EQ(FE_DOWNWARD, fegetround()) TH_LOG("the rounding mode was lost");
	EXPECT_EQ(0x1111, l1);
	EXPECT_EQ(0x2222, l2);
	EXPECT_EQ(0x3333, l3);
	EXPECT_EQ(0x4444, l4);
	EXPECT_EQ(0x5555, l5);
	acc = a * b + c;
	EXPECT_TRUE(acc == -2.625);
	fesetround(FE_TONEAREST);
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(31, cqe.user_data);
	EXPECT_EQ(1005, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC | SYSLET_CQE_F_THREADLET, cqe.flags);
	EXPECT_STREQ("hello", r.buf);
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	pthread_join(w.thread, NULL);
	syslet_pool_stats(&self->ring, &stats);
	EXPECT_EQ(1, stats.threadlets_async);
}

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

/* The header's claims hold for threadlets too. */
TEST_F(threadlet, tls_and_errno_follow_the_thread)
{
	int *volatile tls_before = &tls_word;
	int *volatile errno_before = &errno;
	struct pipe_read r = { .fd = self->pipe[0] };
	pthread_t me = pthread_self();
	pid_t tid = sys_gettid();
	struct late_write w;
	long result;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	tls_word = 7;
	start_late_write(&w, self->pipe[1], 200, "x");
	ASSERT_EQ(SYSLET_WENT_ASYNC, syslet_threadlet_run(&self->ring, read_pipe, &r, 1, &result));
	check_new_thread(_metadata, tid, me, tls_before, errno_before);
	EXPECT_EQ(1001, next_cqe(&self->ring).res);
	pthread_join(w.thread, NULL);
}

static long sleep_or_add(void *arg)
{
	long i = (long)arg;

	if (i % 2) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	return i * 3;
}

/* Drains the completions that are there, counting each threadlet's result. */
static int drain(struct syslet_ring *ring, int *seen, int n, int *bad)
{
	struct syslet_cqe *cqe;
	int got = 0;

	while ((cqe = syslet_peek_cqe(ring))) {
		if (cqe->user_data >= (__u64)n || cqe->res != (long long)cqe->user_data * 3 ||
		    cqe->flags != (SYSLET_CQE_F_ASYNC | SYSLET_CQE_F_THREADLET))
			(*bad)++;
		else
			seen[cqe->user_data]++;
		syslet_cqe_seen(ring);
		got++;
	}
	return got;
}

/*
 * Runs fn(i) for i in 0..n as threadlets tagged i, each returning i * 3, and
 * gathers every result, inline or from a completion, into @seen (wrong
 * ones count in @bad); returns how many went async.
 */
static int run_all(struct syslet_ring *ring, syslet_threadlet_fn fn, int n, int *seen, int *bad)
{
	int total = 0, went_async = 0;

	for (long i = 0; i < n; i++) {
		long result;

		if (syslet_threadlet_run(ring, fn, (void *)i, i, &result) == SYSLET_WENT_ASYNC) {
			went_async++;
		} else {
			if (result != i * 3)
				(*bad)++;
			seen[i]++;
			total++;
		}
		total += drain(ring, seen, n, bad);
	}
	for (int i = 0; i < 1000 && total < n; i++) {
		syslet_wait(ring, 1, 10LL * 1000 * 1000);
		total += drain(ring, seen, n, bad);
	}
	return went_async;
}

/* A thousand threadlets, half of which block: every result arrives exactly once. */
TEST_F(threadlet, thousand_threadlets_half_block)
{
	enum { N = 1000 };
	static int seen[N];
	struct syslet_pool_stats stats;
	int bad = 0, went_async;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	went_async = run_all(&self->ring, sleep_or_add, N, seen, &bad);
	EXPECT_EQ(0, bad);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(1, seen[i]) TH_LOG("threadlet %d delivered %d times", i, seen[i]);
	}
	syslet_pool_stats(&self->ring, &stats);
	EXPECT_LT(0, went_async) TH_LOG("no threadlet went async");
	EXPECT_EQ(went_async, stats.threadlets_async);
	EXPECT_LE(stats.peak_threads, SYSLET_POOL_DEFAULT_MAX);
	TH_LOG("%d of %d went async; peak %u pool threads, peak %u out of park", went_async, N,
	       stats.peak_threads, stats.peak_busy);
}

/* A pool of zero: fn blocks its caller and returns inline; counted as a sync block. */
TEST_F(threadlet, pool_of_zero_is_synchronous)
{
	struct syslet_pool_params params = { .min_spares = 0, .max_spares = 0 };
	struct pipe_read r = { .fd = self->pipe[0] };
	pid_t tid = sys_gettid();
	struct late_write w;
	long result = 0;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, &params));
	start_late_write(&w, self->pipe[1], 100, "hey");
	ASSERT_EQ(0, syslet_threadlet_run(&self->ring, read_pipe, &r, 5, &result));
	EXPECT_EQ(1003, result);
	EXPECT_EQ(tid, sys_gettid());
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	pthread_join(w.thread, NULL);
}

static long sleep_20ms(void *arg)
{
	struct timespec ts = { 0, 20000000 };

	nanosleep(&ts, NULL);
	return (long)arg * 3;
}

/* A burst of blocking threadlets stays within the pool's bound; all complete. */
TEST_F(threadlet, pool_bound_holds_under_a_burst)
{
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = 4, .idle_ms = 1000 };
	enum { N = 40 };
	static int seen[N];
	struct syslet_pool_stats stats;
	int bad = 0;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, &params));
	run_all(&self->ring, sleep_20ms, N, seen, &bad);
	EXPECT_EQ(0, bad);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(1, seen[i]);
	syslet_pool_stats(&self->ring, &stats);
	EXPECT_LE(stats.peak_threads, 4);
	EXPECT_LT(0, stats.threadlets_async);
}

static volatile sig_atomic_t usr1_seen;
static volatile pid_t usr1_tid;

static void on_usr1(int sig)
{
	usr1_tid = sys_gettid();
	usr1_seen = 1;
}

static long raise_then_add(void *arg)
{
	raise(SIGUSR1);
	return (long)arg + 1;
}

/*
 * Signals: one handled inside fn runs on the threadlet's stack and fn goes
 * on; one sent to the thread blocked in a handed-off threadlet is handled
 * there, and the result still arrives exactly once.
 */
TEST_F(threadlet, signals_during_a_threadlet)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	struct pipe_read r = { .fd = self->pipe[0] };
	struct syslet_cqe cqe;
	long result = 0;

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	ASSERT_EQ(0, syslet_threadlet_run(&self->ring, raise_then_add, (void *)41, 1, &result));
	EXPECT_EQ(42, result);
	EXPECT_TRUE(usr1_seen);
	usr1_seen = 0;

	ASSERT_EQ(SYSLET_WENT_ASYNC, syslet_threadlet_run(&self->ring, read_pipe, &r, 2, &result));
	ASSERT_EQ(0, syscall(SYS_tgkill, getpid(), r.tid, SIGUSR1));
	for (int i = 0; i < 2000 && !usr1_seen; i++)
		usleep(1000);
	EXPECT_TRUE(usr1_seen);
	EXPECT_EQ(r.tid, usr1_tid) TH_LOG("handled on another thread");
	ASSERT_EQ(5, write(self->pipe[1], "data!", 5));
	cqe = next_cqe(&self->ring);
	EXPECT_EQ(2, cqe.user_data);
	EXPECT_EQ(1005, cqe.res) TH_LOG("SA_RESTART: the read goes on after the handler");
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
}

struct refused {
	int fd;
	int park_err, exec_err, getppid_err;
};

static long refused_calls(void *arg)
{
	struct refused *r = arg;
	struct syslet_park park = { 0 };
	struct syslet_exec exec = { .to_submit = 1, .continuation = 0x1000 };

	if (ioctl(r->fd, SYSLET_IOC_PARK, &park) < 0)
		r->park_err = errno;
	if (ioctl(r->fd, SYSLET_IOC_EXEC, &exec) < 0)
		r->exec_err = errno;
	if (syscall(SYS_getppid) < 0)
		r->getppid_err = errno;
	return 7;
}

/*
 * Inside a threadlet, calls are direct calls: seccomp sees them (a filter
 * refusing getppid refuses it there), and the syslet calls that would let a
 * second spare resume the program are refused with EBUSY.
 */
TEST_F(threadlet, refused_calls_inside_a_threadlet)
{
	struct refused r = { .fd = self->ring.fd };
	long result = 0;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, install_filter(__NR_getppid, SECCOMP_RET_ERRNO | EPERM));
	ASSERT_EQ(0, syslet_threadlet_run(&self->ring, refused_calls, &r, 1, &result));
	EXPECT_EQ(7, result);
	EXPECT_EQ(EBUSY, r.park_err);
	EXPECT_EQ(EBUSY, r.exec_err);
	EXPECT_EQ(EPERM, r.getppid_err);
}

struct nested {
	struct syslet_ring *ring;
	int ret;
	long result;
};

static long run_nested(void *arg)
{
	struct nested *n = arg;

	n->ret = syslet_threadlet_run(n->ring, add_one, (void *)9, 9, &n->result);
	return 1;
}

/* A threadlet run from inside a threadlet just runs, inline. */
TEST_F(threadlet, nested_threadlet_runs_inline)
{
	struct nested n = { .ring = &self->ring };
	long result = 0;

	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, syslet_threadlet_run(&self->ring, run_nested, &n, 1, &result));
	EXPECT_EQ(1, result);
	EXPECT_EQ(0, n.ret);
	EXPECT_EQ(10, n.result);
}

struct fault {
	volatile char *map;
	size_t len;
	pid_t tid;
};

static long touch_pages(void *arg)
{
	struct fault *f = arg;
	long sum = 0;

	f->tid = sys_gettid();
	for (size_t off = 0; off < f->len; off += 4096)
		sum += f->map[off];
	return sum;
}

/*
 * A page fault that blocks hands the caller over too: this program's own
 * file, mapped whole and read back from the file system (in the guest, 9p:
 * a round trip to the host) after its unmapped pages were dropped from the
 * page cache.
 */
TEST_F(threadlet, page_fault_block_goes_async)
{
	struct fault f = { 0 };
	struct syslet_cqe cqe;
	int fd, went_async = 0;
	long result = 0, expect;
	struct stat st;

	fd = open("/proc/self/exe", O_RDONLY);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fstat(fd, &st));
	f.len = st.st_size;
	ASSERT_EQ(0, syslet_pool_start(&self->ring, NULL));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	f.map = mmap(NULL, f.len, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, f.map);
	expect = touch_pages(&f);
	munmap((void *)f.map, f.len);
	for (int attempt = 0; attempt < 5 && !went_async; attempt++) {
		int drop = open("/proc/sys/vm/drop_caches", O_WRONLY);

		posix_fadvise(fd, 0, f.len, POSIX_FADV_DONTNEED);
		if (drop >= 0) {
			if (write(drop, "1", 1) != 1)
				TH_LOG("drop_caches: %s", strerror(errno));
			close(drop);
		}
		f.map = mmap(NULL, f.len, PROT_READ, MAP_SHARED, fd, 0);
		ASSERT_NE(MAP_FAILED, f.map);
		if (syslet_threadlet_run(&self->ring, touch_pages, &f, 3, &result) ==
		    SYSLET_WENT_ASYNC) {
			went_async = 1;
			cqe = next_cqe(&self->ring);
			EXPECT_EQ(3, cqe.user_data);
			result = cqe.res;
		}
		EXPECT_EQ(expect, result);
		munmap((void *)f.map, f.len);
	}
	close(fd);
	if (!went_async)
		SKIP(return, "no page fault blocked here (page cache not dropped)");
	EXPECT_LE(1, syslet_fdinfo_counter(self->ring.fd, "threadlet_handoffs"));
}

/* The child of kill_9_with_threadlets_in_flight: three threadlets blocked for good. */
static int threadlets_in_flight(void)
{
	static struct pipe_read r[3];
	struct syslet_ring ring;
	long result;
	int p[2];

	if (syslet_queue_init(&ring, 8, 0) || pipe(p) || syslet_pool_start(&ring, NULL))
		return 1;
	for (int i = 0; i < 3; i++) {
		r[i].fd = p[0];
		/* The pool grows by one per block: wait for the next spare. */
		for (int ms = 0; ms < 20000 &&
		     syslet_fdinfo_counter(ring.fd, "spares_parked") < 1; ms++)
			usleep(1000);
		if (syslet_threadlet_run(&ring, read_pipe, &r[i], i, &result) != SYSLET_WENT_ASYNC)
			return 2;
	}
	return 0;
}

/*
 * kill -9 while threadlets are blocked and the program runs on a spare:
 * the process dies, nothing hangs (the suite's rmmod then proves the
 * registrations let the device go).
 */
TEST(kill_9_with_threadlets_in_flight)
{
	int status, ret = kill_9_in_flight(threadlets_in_flight, &status);

	if (ret == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 1)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret) TH_LOG("child failed: status %d", status);
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
}

TEST_HARNESS_MAIN
