// SPDX-License-Identifier: GPL-2.0
/*
 * syslet handoff kselftests: an atom that blocks hands the submitter's
 * continuation to a parked spare thread. The tests resume "the program" by
 * hand: a spare that returns from SYSLET_IOC_PARK records the cookie it got.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/syslet.h>

#include "libsyslet.h"
#include "syslet_util.h"
#include "../kselftest_harness.h"

static void noop_handler(int sig)
{
	(void)sig;
}

/* A thread parked as a spare; with @repark it parks again after each claim. */
struct spare {
	struct syslet_ring *ring;
	pthread_t thread;
	int repark;
	volatile int ret;		/* last park result */
	volatile uint64_t cookie;	/* last cookie claimed */
	volatile int claims;
	volatile int done;
	uint64_t *claimed;		/* optional: cookies claimed, in order */
	int max_claimed;
};

static void *spare_main(void *data)
{
	struct spare *s = data;

	do {
		uint64_t cookie = 0;

		s->ret = syslet_park(s->ring, &cookie);
		if (s->ret == 0) {
			s->cookie = cookie;
			if (s->claimed && s->claims < s->max_claimed)
				s->claimed[s->claims] = cookie;
			__atomic_add_fetch(&s->claims, 1, __ATOMIC_SEQ_CST);
		}
	} while (s->repark && (s->ret == 0 || s->ret == -EINTR));
	s->done = 1;
	return NULL;
}

/* A thread that submits one atom with a continuation cookie. */
struct submitter {
	struct syslet_ring *ring;
	pthread_mutex_t *sq_lock;
	pthread_t thread;
	unsigned int nr;
	uint64_t args[6];
	uint64_t cookie;
	uint64_t user_data;
	volatile int ret;
	volatile int handed_off;
	volatile int done;
};

static void *submitter_main(void *data)
{
	struct submitter *s = data;
	struct syslet_sqe *sqe;
	int handed = 0;

	pthread_mutex_lock(s->sq_lock);
	sqe = syslet_get_sqe(s->ring);
	syslet_prep(sqe, s->nr, s->args[0], s->args[1], s->args[2], s->args[3], s->args[4],
		    s->args[5]);
	sqe->user_data = s->user_data;
	__atomic_store_n(&s->ring->hdr->sq_tail, s->ring->sq_tail, __ATOMIC_RELEASE);
	pthread_mutex_unlock(s->sq_lock);
	s->ret = syslet_submit_cont(s->ring, 1, s->cookie, &handed);
	s->handed_off = handed;
	s->done = 1;
	return NULL;
}

FIXTURE(handoff) {
	struct syslet_ring ring;
	pthread_mutex_t sq_lock;
	int pipe[2];
};

FIXTURE_SETUP(handoff)
{
	struct sigaction sa = { .sa_handler = noop_handler };
	int fd = open(SYSLET_DEVICE, O_RDWR);

	if (fd < 0 && errno == ENOENT)
		SKIP(return, "%s missing: is the syslet module loaded?", SYSLET_DEVICE);
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_EQ(0, syslet_queue_init(&self->ring, 64, 128));
	pthread_mutex_init(&self->sq_lock, NULL);
	ASSERT_EQ(0, pipe(self->pipe));
	/* No SA_RESTART: signals interrupt sleeps with EINTR. */
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
}

FIXTURE_TEARDOWN(handoff)
{
	syslet_queue_exit(&self->ring);
	close(self->pipe[0]);
	close(self->pipe[1]);
}

static void start_submitter(struct submitter *s, FIXTURE_DATA(handoff) *self, unsigned int nr,
			    uint64_t a0, uint64_t a1, uint64_t a2, uint64_t cookie)
{
	memset(s, 0, sizeof(*s));
	s->ring = &self->ring;
	s->sq_lock = &self->sq_lock;
	s->nr = nr;
	s->args[0] = a0;
	s->args[1] = a1;
	s->args[2] = a2;
	s->cookie = cookie;
	s->user_data = cookie;
	pthread_create(&s->thread, NULL, submitter_main, s);
}

static void start_spare(struct spare *s, struct syslet_ring *ring, int repark)
{
	memset(s, 0, sizeof(*s));
	s->ring = ring;
	s->repark = repark;
	pthread_create(&s->thread, NULL, spare_main, s);
}

/*
 * Parks @spare, starts @sub blocked in a read() of the fixture's empty pipe
 * with continuation @cookie, and waits until the spare has taken the
 * continuation over.
 */
static void hand_off_read(struct __test_metadata *_metadata, FIXTURE_DATA(handoff) *self,
			  struct spare *spare, struct submitter *sub, char *buf, size_t len,
			  uint64_t cookie)
{
	start_spare(spare, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	start_submitter(sub, self, __NR_read, self->pipe[0], (uintptr_t)buf, len, cookie);
	pthread_join(spare->thread, NULL);
	ASSERT_EQ(0, spare->ret);
	ASSERT_EQ(cookie, spare->cookie);
}

TEST_F(handoff, pipe_read_hands_off)
{
	struct submitter sub;
	struct syslet_cqe *cqe;
	struct spare spare;
	char buf[16] = { 0 };

	start_spare(&spare, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));

	start_submitter(&sub, self, __NR_read, self->pipe[0], (uintptr_t)buf, sizeof(buf),
			0xC0FFEE);
	/* The read blocks: the spare comes back with the submitter's cookie... */
	pthread_join(spare.thread, NULL);
	EXPECT_EQ(0, spare.ret);
	EXPECT_EQ(0xC0FFEE, spare.cookie);
	/* ...while the submitter is still blocked and nothing has completed. */
	EXPECT_EQ(0, sub.done);
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "handoffs"));

	ASSERT_EQ(5, write(self->pipe[1], "hello", 5));
	pthread_join(sub.thread, NULL);
	EXPECT_EQ(1, sub.ret);
	EXPECT_TRUE(sub.handed_off);
	EXPECT_STREQ("hello", buf);
	cqe = syslet_peek_cqe(&self->ring);
	ASSERT_NE(NULL, cqe);
	EXPECT_EQ(0xC0FFEE, cqe->user_data);
	EXPECT_EQ(5, cqe->res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC, cqe->flags);
	syslet_cqe_seen(&self->ring);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "completed_async"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
}

TEST_F(handoff, no_spare_is_synchronous_fallback)
{
	struct submitter sub;
	struct spare spare;
	char buf[8];

	start_submitter(&sub, self, __NR_read, self->pipe[0], (uintptr_t)buf, sizeof(buf), 7);
	/* Nothing to hand to: the submitter just blocks. */
	usleep(100 * 1000);
	EXPECT_EQ(0, sub.done);
	ASSERT_EQ(3, write(self->pipe[1], "abc", 3));
	pthread_join(sub.thread, NULL);
	EXPECT_EQ(1, sub.ret);
	EXPECT_FALSE(sub.handed_off);
	EXPECT_EQ(3, syslet_peek_cqe(&self->ring)->res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, syslet_peek_cqe(&self->ring)->flags);
	syslet_cqe_seen(&self->ring);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "sync_fallbacks"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	/* The shared header asks for spares, until one parks. */
	EXPECT_EQ(SYSLET_RING_NEED_SPARE, self->ring.hdr->flags & SYSLET_RING_NEED_SPARE);
	start_spare(&spare, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	EXPECT_EQ(0, self->ring.hdr->flags & SYSLET_RING_NEED_SPARE);
	/* Closing the context sends the spare away. */
	close(dup(self->ring.fd));
	pthread_join(spare.thread, NULL);
	EXPECT_EQ(-ESHUTDOWN, spare.ret);
}

TEST_F(handoff, no_cookie_never_hands_off)
{
	struct submitter sub;
	struct spare spare;
	char buf[8];

	start_spare(&spare, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	start_submitter(&sub, self, __NR_read, self->pipe[0], (uintptr_t)buf, sizeof(buf), 0);
	usleep(100 * 1000);
	EXPECT_EQ(0, sub.done);
	EXPECT_EQ(0, spare.done);
	ASSERT_EQ(1, write(self->pipe[1], "x", 1));
	pthread_join(sub.thread, NULL);
	EXPECT_FALSE(sub.handed_off);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
	pthread_kill(spare.thread, SIGUSR1);
	pthread_join(spare.thread, NULL);
	EXPECT_EQ(-EINTR, spare.ret);
}

TEST_F(handoff, many_blocked_across_many_spares)
{
	enum { N = 64 };
	struct submitter *subs = calloc(N, sizeof(*subs));
	struct spare *spares = calloc(N, sizeof(*spares));
	int pipes[N][2], seen[N] = { 0 };
	char bufs[N][4];

	ASSERT_NE(NULL, subs);
	ASSERT_NE(NULL, spares);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(0, pipe(pipes[i]));
		start_spare(&spares[i], &self->ring, 0);
	}
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", N));
	for (int i = 0; i < N; i++)
		start_submitter(&subs[i], self, __NR_read, pipes[i][0], (uintptr_t)bufs[i], 4,
				1000 + i);
	/* Every submitter blocks; every spare takes over exactly one of them. */
	for (int i = 0; i < N; i++) {
		pthread_join(spares[i].thread, NULL);
		ASSERT_EQ(0, spares[i].ret);
		ASSERT_GE(spares[i].cookie, 1000);
		ASSERT_LT(spares[i].cookie, 1000 + N);
		seen[spares[i].cookie - 1000]++;
	}
	for (int i = 0; i < N; i++) {
		EXPECT_EQ(1, seen[i]) TH_LOG("cookie %d claimed %d times", 1000 + i, seen[i]);
	}
	EXPECT_EQ(N, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	for (int i = 0; i < N; i++)
		ASSERT_EQ(1, write(pipes[i][1], "z", 1));
	for (int i = 0; i < N; i++) {
		pthread_join(subs[i].thread, NULL);
		EXPECT_EQ(1, subs[i].ret);
		EXPECT_TRUE(subs[i].handed_off);
	}
	for (int i = 0; i < N; i++) {
		struct syslet_cqe *cqe = syslet_peek_cqe(&self->ring);

		ASSERT_NE(NULL, cqe);
		EXPECT_EQ(1, cqe->res);
		EXPECT_EQ(SYSLET_CQE_F_ASYNC, cqe->flags);
		syslet_cqe_seen(&self->ring);
	}
	for (int i = 0; i < N; i++) {
		close(pipes[i][0]);
		close(pipes[i][1]);
	}
	free(subs);
	free(spares);
}

TEST_F(handoff, short_blocks_race_exactly_one_owner)
{
	enum { N = 2000 };
	uint64_t *claimed = calloc(N, sizeof(*claimed));
	char *got = calloc(N + 1, 1);
	struct spare spare;
	int handed_total = 0;

	ASSERT_NE(NULL, claimed);
	start_spare(&spare, &self->ring, 1);
	spare.claimed = claimed;
	spare.max_claimed = N;
	for (int i = 1; i <= N; i++) {
		/* Sleep a microsecond: a block so short that both sides race for it. */
		struct timespec ts = { 0, 1000 };
		struct syslet_sqe *sqe = syslet_get_sqe(&self->ring);
		struct syslet_cqe *cqe;
		int handed = 0;

		ASSERT_NE(NULL, sqe);
		syslet_prep(sqe, __NR_nanosleep, (uintptr_t)&ts, 0, 0, 0, 0, 0);
		sqe->user_data = i;
		ASSERT_EQ(1, syslet_submit_cont(&self->ring, 1, i, &handed));
		cqe = syslet_peek_cqe(&self->ring);
		ASSERT_NE(NULL, cqe);
		EXPECT_EQ(0, cqe->res);
		EXPECT_EQ(handed ? SYSLET_CQE_F_ASYNC : SYSLET_CQE_F_INLINE, cqe->flags);
		syslet_cqe_seen(&self->ring);
		if (handed) {
			handed_total++;
			got[i] = 1;
		}
		/* The spare re-parks after a claim; give it a chance to before going on. */
		if (handed)
			wait_counter(self->ring.fd, "spares_parked", 1);
	}
	/* Closing sends the spare away; then compare what each side saw. */
	close(dup(self->ring.fd));
	pthread_join(spare.thread, NULL);
	EXPECT_EQ(-ESHUTDOWN, spare.ret);
	EXPECT_EQ(handed_total, spare.claims);
	for (int i = 0; i < spare.claims && i < N; i++) {
		ASSERT_GE(claimed[i], 1);
		ASSERT_LE(claimed[i], N);
		/* A cookie the spare got was handed off by its exec, and only once. */
		EXPECT_EQ(1, got[claimed[i]]) TH_LOG("cookie %llu", (unsigned long long)claimed[i]);
		got[claimed[i]] = 2;
	}
	for (int i = 1; i <= N; i++) {
		/* Every handed-off cookie reached the spare. */
		EXPECT_NE(1, got[i]) TH_LOG("cookie %d handed off but never claimed", i);
	}
	EXPECT_EQ(handed_total, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	TH_LOG("%d of %d short blocks were handed off", handed_total, N);
	free(claimed);
	free(got);
}

TEST_F(handoff, signals_to_spare_and_blocked_submitter)
{
	struct submitter sub;
	struct spare spare;
	char buf[8];

	/* A signal to a parked spare: EINTR, and it can park again. */
	start_spare(&spare, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	pthread_kill(spare.thread, SIGUSR1);
	pthread_join(spare.thread, NULL);
	EXPECT_EQ(-EINTR, spare.ret);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));

	/* A signal to a submitter blocked with no spare: the atom fails with EINTR. */
	start_submitter(&sub, self, __NR_read, self->pipe[0], (uintptr_t)buf, sizeof(buf), 9);
	usleep(100 * 1000);
	pthread_kill(sub.thread, SIGUSR1);
	pthread_join(sub.thread, NULL);
	EXPECT_EQ(1, sub.ret);
	EXPECT_EQ(-EINTR, syslet_peek_cqe(&self->ring)->res);
	syslet_cqe_seen(&self->ring);

	/* A signal to a submitter blocked after a handoff: same, on the async path. */
	hand_off_read(_metadata, self, &spare, &sub, buf, sizeof(buf), 10);
	pthread_kill(sub.thread, SIGUSR1);
	pthread_join(sub.thread, NULL);
	EXPECT_TRUE(sub.handed_off);
	EXPECT_EQ(-EINTR, syslet_peek_cqe(&self->ring)->res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC, syslet_peek_cqe(&self->ring)->flags);
	syslet_cqe_seen(&self->ring);
}

TEST_F(handoff, close_sends_spares_away)
{
	struct spare spares[4];

	for (int i = 0; i < 4; i++)
		start_spare(&spares[i], &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 4));
	close(dup(self->ring.fd));
	for (int i = 0; i < 4; i++) {
		pthread_join(spares[i].thread, NULL);
		EXPECT_EQ(-ESHUTDOWN, spares[i].ret);
	}
	/* No more parking on a closing context. */
	{
		uint64_t cookie;

		EXPECT_EQ(-ESHUTDOWN, syslet_park(&self->ring, &cookie));
	}
}

TEST_F(handoff, wait_and_poll)
{
	struct pollfd pfd = { .fd = self->ring.fd, .events = POLLIN };
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct submitter sub;
	int ep;
	struct spare spare;
	char buf[8];

	EXPECT_EQ(-ETIMEDOUT, syslet_wait(&self->ring, 1, 20 * 1000 * 1000));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_EQ(0, syslet_wait(&self->ring, 0, 0));
	EXPECT_EQ(-EINVAL, syslet_wait(&self->ring, 1000, 0));

	hand_off_read(_metadata, self, &spare, &sub, buf, sizeof(buf), 11);
	/* The program, resumed on the spare, waits for the completion. */
	ASSERT_EQ(2, write(self->pipe[1], "ok", 2));
	EXPECT_EQ(1, syslet_wait(&self->ring, 1, -1));
	EXPECT_EQ(1, poll(&pfd, 1, 1000));
	EXPECT_EQ(POLLIN, pfd.revents & POLLIN);

	ep = epoll_create1(0);
	ASSERT_GE(ep, 0);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, self->ring.fd, &ev));
	EXPECT_EQ(1, epoll_wait(ep, &out, 1, 1000));
	EXPECT_EQ(EPOLLIN, out.events & EPOLLIN);
	pthread_join(sub.thread, NULL);
	syslet_cqe_seen(&self->ring);
	EXPECT_EQ(0, epoll_wait(ep, &out, 1, 0));
	close(ep);
	EXPECT_EQ(0, poll(&pfd, 1, 0));
}

TEST_F(handoff, most_recently_parked_spare_goes_first)
{
	struct submitter sub;
	struct spare first, second;
	char buf[8];

	start_spare(&first, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));
	start_spare(&second, &self->ring, 0);
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 2));
	start_submitter(&sub, self, __NR_read, self->pipe[0], (uintptr_t)buf, sizeof(buf), 15);
	/* LIFO: the cache-warm, most recently parked spare takes over. */
	pthread_join(second.thread, NULL);
	EXPECT_EQ(0, second.ret);
	EXPECT_EQ(15, second.cookie);
	EXPECT_EQ(0, first.done);
	ASSERT_EQ(1, write(self->pipe[1], "f", 1));
	pthread_join(sub.thread, NULL);
	EXPECT_TRUE(sub.handed_off);
	syslet_cqe_seen(&self->ring);
	pthread_kill(first.thread, SIGUSR1);
	pthread_join(first.thread, NULL);
	EXPECT_EQ(-EINTR, first.ret);
}

TEST_F(handoff, cancel_handed_off_atom)
{
	struct submitter sub;
	struct spare spare;
	struct syslet_cqe *cqe;
	char buf[8];

	EXPECT_EQ(-ENOENT, syslet_cancel(&self->ring, 12));
	hand_off_read(_metadata, self, &spare, &sub, buf, sizeof(buf), 12);
	EXPECT_EQ(-ENOENT, syslet_cancel(&self->ring, 13));
	EXPECT_EQ(0, syslet_cancel(&self->ring, 12));
	pthread_join(sub.thread, NULL);
	EXPECT_TRUE(sub.handed_off);
	cqe = syslet_peek_cqe(&self->ring);
	ASSERT_NE(NULL, cqe);
	EXPECT_EQ(12, cqe->user_data);
	EXPECT_EQ(-ECANCELED, cqe->res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC, cqe->flags);
	syslet_cqe_seen(&self->ring);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "cancelled"));
	/* The cancelled thread is not left interrupted: its next blocking call sleeps. */
	EXPECT_EQ(-ETIMEDOUT, syslet_wait(&self->ring, 1, 10 * 1000 * 1000));
}

/* Installs a filter: @nr fails with EACCES, everything else is allowed. */
static int deny_with_eacces(unsigned int nr)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = 4, .filter = filter };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

TEST_F(handoff, policy_holds_after_handoff)
{
	static const int64_t expect[] = { 2, -EACCES, -EINVAL };
	struct spare spare;
	char buf[8];
	int handed = 0;
	pid_t pid;
	int status;

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		/* The child has its own context (the fixture's is not ours here). */
		struct syslet_ring ring;
		int p[2];

		if (syslet_queue_init(&ring, 8, 0) || pipe(p) || deny_with_eacces(__NR_getppid))
			_exit(10);
		start_spare(&spare, &ring, 0);
		if (wait_counter(ring.fd, "spares_parked", 1))
			_exit(11);
		syslet_prep(syslet_get_sqe(&ring), __NR_read, p[0], (uintptr_t)buf, 8, 0, 0, 0);
		syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		syslet_prep(syslet_get_sqe(&ring), __NR_clone, 0, 0, 0, 0, 0, 0);
		if (fork() == 0) {
			usleep(200 * 1000);
			if (write(p[1], "hi", 2) != 2)
				_exit(1);
			_exit(0);
		}
		if (syslet_submit_cont(&ring, 3, 77, &handed) != 3 || !handed)
			_exit(12);
		pthread_join(spare.thread, NULL);
		if (spare.cookie != 77)
			_exit(13);
		for (int i = 0; i < 3; i++) {
			struct syslet_cqe *cqe = syslet_peek_cqe(&ring);

			if (!cqe || cqe->res != expect[i] || !(cqe->flags & SYSLET_CQE_F_ASYNC))
				_exit(20 + i);
			syslet_cqe_seen(&ring);
		}
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

TEST(kill_9_mid_flight)
{
	int status, ready[2];
	pid_t pid;
	char c;

	ASSERT_EQ(0, pipe(ready));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct syslet_ring ring;
		struct spare spares[2];
		int p[2], handed;
		char buf[8];

		if (syslet_queue_init(&ring, 8, 0) || pipe(p))
			_exit(1);
		start_spare(&spares[0], &ring, 0);
		start_spare(&spares[1], &ring, 0);
		if (wait_counter(ring.fd, "spares_parked", 2))
			_exit(2);
		/* Block with a handoff, leaving one spare parked, then get killed. */
		syslet_prep(syslet_get_sqe(&ring), __NR_read, p[0], (uintptr_t)buf, 8, 0, 0, 0);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		syslet_submit_cont(&ring, 1, 5, &handed);
		_exit(4);
	}
	ASSERT_EQ(1, read(ready[0], &c, 1));
	usleep(200 * 1000);
	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
	close(ready[0]);
	close(ready[1]);
}

TEST_F(handoff, latency_histogram_counts_handoffs)
{
	struct submitter sub;
	struct spare spare;
	char path[64], line[512], *p;
	long total = 0;
	char buf[8];
	FILE *f;

	hand_off_read(_metadata, self, &spare, &sub, buf, sizeof(buf), 14);
	ASSERT_EQ(1, write(self->pipe[1], "l", 1));
	pthread_join(sub.thread, NULL);

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", self->ring.fd);
	f = fopen(path, "r");
	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "handoff_latency_us:", 19))
			continue;
		TH_LOG("%s", line);
		for (p = strchr(line, ':') + 1; (p = strchr(p, ':')); p++)
			total += strtol(p + 1, NULL, 10);
	}
	fclose(f);
	EXPECT_EQ(1, total);
}

TEST_HARNESS_MAIN
