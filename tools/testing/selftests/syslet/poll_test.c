// SPDX-License-Identifier: GPL-2.0
/*
 * The pollable path (SYSLET_SETUP_POLL): an atom that would wait for a
 * socket, pipe or eventfd that is not ready is armed on the file's wait
 * queues instead of holding a thread, and runs when the file is ready, in
 * the next exec or wait. Counters prove that no spare was used; every armed
 * atom completes exactly once, also when cancelled, closed or killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/syslet.h>

#include "syslet_util.h"
#include "../kselftest_harness.h"

#define COOKIE		0x9011ULL
#define NO_WAIT		0		/* timeout_ns: only look */
#define LONG_WAIT	20000000000LL	/* 20 s: a hang fails, not a slow guest */

/* Submits one atom receiving up to @len bytes from @fd into @buf. */
static int submit_recv(struct syslet_ring *ring, int fd, void *buf, size_t len,
		       uint64_t user_data, unsigned int sqe_flags)
{
	struct syslet_sqe *sqe = syslet_get_sqe(ring);

	if (!sqe)
		return -ENOSPC;
	syslet_prep_recv(sqe, fd, buf, len, 0);
	sqe->user_data = user_data;
	sqe->flags = sqe_flags;
	return syslet_submit_n(ring, 1);
}

/* A context on the pollable path and a connected pair of stream sockets. */
FIXTURE(pollable) {
	struct syslet_ring ring;
	int sv[2];		/* sv[0]: the atoms' end, sv[1]: the peer */
	char buf[64];
};

FIXTURE_SETUP(pollable)
{
	int ret = syslet_queue_init_flags(&self->ring, 8, 16, SYSLET_SETUP_POLL);

	if (ret == -ENOENT)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, self->sv));
	memset(self->buf, 0, sizeof(self->buf));
}

FIXTURE_TEARDOWN(pollable)
{
	syslet_queue_exit(&self->ring);
	close(self->sv[0]);
	close(self->sv[1]);
}

/*
 * A receive on an empty socket in an exec that names a continuation, with a
 * spare parked: it is armed, the exec returns at once without a handoff and
 * the spare stays parked; data arriving completes it in the next wait,
 * flagged POLLED, with the data.
 */
struct parked {
	struct syslet_ring *ring;
	int ret;
	uint64_t cookie;
};

static void *park_main(void *arg)
{
	struct parked *p = arg;

	p->ret = syslet_park(p->ring, &p->cookie);
	return NULL;
}

TEST_F(pollable, recv_on_empty_socket_is_armed_without_a_thread)
{
	struct parked spare = { .ring = &self->ring };
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;
	pthread_t thread;
	int handed = -1;

	ASSERT_EQ(0, pthread_create(&thread, NULL, park_main, &spare));
	ASSERT_EQ(0, wait_counter(self->ring.fd, "spares_parked", 1));

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, sizeof(self->buf), 0);
	sqe->user_data = 7;
	ASSERT_EQ(1, syslet_submit_cont(&self->ring, 1, COOKIE, &handed));
	EXPECT_EQ(0, handed);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	EXPECT_EQ(0, reap_cqes(&self->ring, cqe, 2)) TH_LOG("an armed atom completed unasked");
	EXPECT_EQ(-ETIMEDOUT, syslet_wait(&self->ring, 1, NO_WAIT));

	ASSERT_EQ(5, write(self->sv[1], "hello", 5));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe, 2));
	EXPECT_EQ(7, cqe[0].user_data);
	EXPECT_EQ(5, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe[0].flags);
	EXPECT_EQ(0, memcmp(self->buf, "hello", 5));

	/* No thread was used: no handoff, no fallback, the spare still parked. */
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "handoffs"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "sync_fallbacks"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "armed"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "completed_after_poll"));

	/* The spare leaves when the context closes. */
	syslet_queue_exit(&self->ring);
	ASSERT_EQ(0, join_within(thread, 20));
	EXPECT_EQ(-ESHUTDOWN, spare.ret);
}

/* A ready file runs inline, as without the pollable path: nothing is armed. */
TEST_F(pollable, ready_socket_runs_inline)
{
	struct syslet_cqe cqe;

	ASSERT_EQ(2, write(self->sv[1], "ok", 2));
	ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, sizeof(self->buf), 1, 0));
	ASSERT_EQ(1, reap_cqes(&self->ring, &cqe, 1));
	EXPECT_EQ(2, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "completed_after_poll"));
}

/*
 * The ring's descriptor is readable while an armed atom's file is ready, so
 * an event loop's poll or epoll wakes; an exec of nothing runs the atom.
 */
TEST_F(pollable, ring_polls_readable_when_an_armed_atom_is_ready)
{
	struct pollfd pfd = { .fd = self->ring.fd, .events = POLLIN };
	struct syslet_cqe cqe;

	ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, sizeof(self->buf), 3, 0));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	ASSERT_EQ(1, write(self->sv[1], "x", 1));
	ASSERT_EQ(1, poll(&pfd, 1, 20000));
	EXPECT_TRUE(pfd.revents & POLLIN);
	EXPECT_EQ(0, reap_cqes(&self->ring, &cqe, 1)) TH_LOG("ran before anyone asked");
	EXPECT_EQ(0, syslet_submit_n(&self->ring, 0));
	ASSERT_EQ(1, reap_cqes(&self->ring, &cqe, 1));
	EXPECT_EQ(3, cqe.user_data);
	EXPECT_EQ(1, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe.flags);
}

/*
 * Two receives armed on one socket: one byte wakes both; the first takes it,
 * the second finds the socket empty again and is armed again (poll_rearmed),
 * and completes with the next byte. Each completes exactly once.
 */
TEST_F(pollable, woken_but_not_ready_is_armed_again)
{
	struct syslet_cqe cqe[3];
	char second[8];

	ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, 1, 1, 0));
	ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], second, 1, 2, 0));
	EXPECT_EQ(2, syslet_fdinfo_counter(self->ring.fd, "armed"));
	ASSERT_EQ(1, write(self->sv[1], "a", 1));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe, 3));
	EXPECT_EQ(1, cqe[0].res);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "poll_rearmed"));
	ASSERT_EQ(1, write(self->sv[1], "b", 1));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe + 1, 2));
	EXPECT_EQ(1, cqe[1].res);
	EXPECT_NE(cqe[0].user_data, cqe[1].user_data);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "armed"));
}

/*
 * SYSLET_IOC_CANCEL completes an armed atom with -ECANCELED at once, and the
 * entry linked after it with -ECANCELED too; the data that arrives later is
 * still in the socket.
 */
TEST_F(pollable, cancel_completes_an_armed_atom_at_once)
{
	struct syslet_cqe cqe[3];
	struct syslet_sqe *sqe;

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, sizeof(self->buf), 0);
	sqe->user_data = 10;
	sqe->flags = SYSLET_SQE_LINK;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->user_data = 11;
	ASSERT_EQ(2, syslet_submit_n(&self->ring, 2));
	EXPECT_EQ(0, reap_cqes(&self->ring, cqe, 3)) TH_LOG("the linked entry did not wait");

	EXPECT_EQ(-ENOENT, syslet_cancel(&self->ring, 99));
	ASSERT_EQ(0, syslet_cancel(&self->ring, 10));
	ASSERT_EQ(2, reap_cqes(&self->ring, cqe, 3));
	EXPECT_EQ(10, cqe[0].user_data);
	EXPECT_EQ(-ECANCELED, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_REFUSED, cqe[0].flags);
	EXPECT_EQ(11, cqe[1].user_data);
	EXPECT_EQ(-ECANCELED, cqe[1].res);
	EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe[1].flags);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "armed"));
	EXPECT_EQ(-ENOENT, syslet_cancel(&self->ring, 10)) TH_LOG("cancelled twice");

	ASSERT_EQ(4, write(self->sv[1], "late", 4));
	EXPECT_EQ(-ETIMEDOUT, syslet_wait(&self->ring, 1, 100000000));
	EXPECT_EQ(4, recv(self->sv[0], self->buf, sizeof(self->buf), MSG_DONTWAIT));
}

/*
 * An entry linked after an armed atom waits for it, and runs right after it
 * in the same call once the file is ready; an unlinked entry after them does
 * not wait.
 */
TEST_F(pollable, linked_entry_waits_for_the_armed_atom)
{
	struct syslet_cqe cqe[4];
	struct syslet_sqe *sqe;

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, sizeof(self->buf), 0);
	sqe->user_data = 20;
	sqe->flags = SYSLET_SQE_LINK;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_write(sqe, self->sv[0], "pong", 4);
	sqe->user_data = 21;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->user_data = 22;
	ASSERT_EQ(3, syslet_submit_n(&self->ring, 3));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe, 4));
	EXPECT_EQ(22, cqe[0].user_data);
	EXPECT_EQ(getppid(), cqe[0].res);

	ASSERT_EQ(4, write(self->sv[1], "ping", 4));
	ASSERT_EQ(2, syslet_wait(&self->ring, 2, LONG_WAIT));
	ASSERT_EQ(2, reap_cqes(&self->ring, cqe + 1, 3));
	EXPECT_EQ(20, cqe[1].user_data);
	EXPECT_EQ(4, cqe[1].res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe[1].flags);
	EXPECT_EQ(21, cqe[2].user_data);
	EXPECT_EQ(4, cqe[2].res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe[2].flags);
	EXPECT_EQ(4, recv(self->sv[1], self->buf, sizeof(self->buf), MSG_DONTWAIT));
	EXPECT_EQ(0, memcmp(self->buf, "pong", 4));
}

/*
 * A linked write after an armed read on a pipe, where the read's own chain
 * arms a second time: a read linked after the first read waits for both the
 * first read and its own data.
 */
TEST_F(pollable, chain_of_two_armed_atoms)
{
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;
	char a, b;

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], &a, 1, 0);
	sqe->user_data = 30;
	sqe->flags = SYSLET_SQE_LINK;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], &b, 1, 0);
	sqe->user_data = 31;
	ASSERT_EQ(2, syslet_submit_n(&self->ring, 2));
	ASSERT_EQ(1, write(self->sv[1], "1", 1));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe, 2));
	EXPECT_EQ(30, cqe[0].user_data);
	/* The second read of the chain found the socket empty: armed in its turn. */
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	ASSERT_EQ(1, write(self->sv[1], "2", 1));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe + 1, 1));
	EXPECT_EQ(31, cqe[1].user_data);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe[1].flags);
	EXPECT_EQ('1', a);
	EXPECT_EQ('2', b);
}

/*
 * Result forwarding across the pollable path: a receive is armed with a
 * send linked after it that echoes as many bytes as were received
 * (FWD_ARG(2), the length); both run when the data arrives.
 */
TEST_F(pollable, forwarded_result_of_an_armed_atom)
{
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;
	char echo[16] = { 0 };

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, sizeof(self->buf), 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe->user_data = 60;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_send(sqe, self->sv[0], self->buf, 0, 0);
	sqe->flags = SYSLET_SQE_FWD_ARG(2);
	sqe->user_data = 61;
	ASSERT_EQ(2, syslet_submit_n(&self->ring, 2));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	ASSERT_EQ(6, write(self->sv[1], "echo!!", 6));
	ASSERT_EQ(2, syslet_wait(&self->ring, 2, LONG_WAIT));
	ASSERT_EQ(2, reap_cqes(&self->ring, cqe, 2));
	EXPECT_EQ(6, cqe[0].res);
	EXPECT_EQ(61, cqe[1].user_data);
	EXPECT_EQ(6, cqe[1].res);
	EXPECT_EQ(6, recv(self->sv[1], echo, sizeof(echo), MSG_DONTWAIT));
	EXPECT_EQ(0, memcmp(echo, "echo!!", 6));
}

/*
 * Pipes and eventfds are pollable: armed. A regular file is not: a read runs
 * inline. A non-blocking socket fails with EAGAIN at once, and so does a
 * receive with MSG_DONTWAIT: neither is armed.
 */
TEST_F(pollable, pipe_and_eventfd_armed_regular_file_and_nonblocking_not)
{
	struct syslet_cqe cqe[4];
	uint64_t count = 0, one = 1;
	int p[2], efd, file, nb[2];
	struct syslet_sqe *sqe;

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, efd);
	/* An empty regular file of shmem, which has no poll. */
	file = memfd_create("syslet-poll", MFD_CLOEXEC);
	ASSERT_LE(0, file);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, nb));

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_read(sqe, p[0], self->buf, 1);
	sqe->user_data = 40;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_read(sqe, efd, &count, sizeof(count));
	sqe->user_data = 41;
	ASSERT_EQ(2, syslet_submit_n(&self->ring, 2));
	EXPECT_EQ(2, syslet_fdinfo_counter(self->ring.fd, "armed"));

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_read(sqe, file, self->buf, 1);
	sqe->user_data = 42;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_read(sqe, nb[0], self->buf, 1);
	sqe->user_data = 43;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, 1, MSG_DONTWAIT);
	sqe->user_data = 44;
	ASSERT_EQ(3, syslet_submit_n(&self->ring, 3));
	ASSERT_EQ(3, reap_cqes(&self->ring, cqe, 3));
	EXPECT_EQ(0, cqe[0].res);		/* end of an empty file */
	EXPECT_EQ(-EAGAIN, cqe[1].res);
	EXPECT_EQ(-EAGAIN, cqe[2].res);
	EXPECT_EQ(2, syslet_fdinfo_counter(self->ring.fd, "armed"));

	ASSERT_EQ(sizeof(one), write(efd, &one, sizeof(one)));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe, 1));
	EXPECT_EQ(41, cqe[0].user_data);
	EXPECT_EQ(sizeof(count), cqe[0].res);
	EXPECT_EQ(1, count);
	ASSERT_EQ(1, write(p[1], "p", 1));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, cqe, 1));
	EXPECT_EQ(40, cqe[0].user_data);
	EXPECT_EQ(1, cqe[0].res);
	EXPECT_EQ(2, syslet_fdinfo_counter(self->ring.fd, "completed_after_poll"));
	close(p[0]);
	close(p[1]);
	close(efd);
	close(file);
	close(nb[0]);
	close(nb[1]);
}

/*
 * A write to a full pipe waits for room (POLLOUT), and completes once the
 * reader drains it.
 */
TEST_F(pollable, write_to_full_pipe_waits_for_room)
{
	static char big[1 << 16];
	struct syslet_cqe cqe;
	int p[2];

	ASSERT_EQ(0, pipe2(p, O_CLOEXEC | O_NONBLOCK));
	while (write(p[1], big, sizeof(big)) > 0)
		;
	/* The atoms' end blocks, so that the write would wait. */
	ASSERT_EQ(0, fcntl(p[1], F_SETFL, 0));
	syslet_prep_write(syslet_get_sqe(&self->ring), p[1], "w", 1);
	ASSERT_EQ(1, syslet_submit_n(&self->ring, 1));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	while (read(p[0], big, sizeof(big)) > 0)
		;
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, &cqe, 1));
	EXPECT_EQ(1, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe.flags);
	close(p[0]);
	close(p[1]);
}

/*
 * Every armed atom keeps its completion slot: with a completion ring of 16,
 * 16 receives are armed and the 17th exec fails with EBUSY, the same bound
 * as for completions nobody read.
 */
TEST_F(pollable, armed_atoms_are_bounded_by_the_completion_ring)
{
	int i;

	for (i = 0; i < 16; i++)
		ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, 1, i, 0));
	EXPECT_EQ(16, syslet_fdinfo_counter(self->ring.fd, "armed"));
	EXPECT_EQ(-EBUSY, submit_recv(&self->ring, self->sv[0], self->buf, 1, 16, 0));
}

/*
 * A full completion ring does not keep ready atoms waiting: an exec that
 * fails with EBUSY (its new submission has no slot) still runs the armed
 * atom whose data arrived, before it gives up.
 */
TEST_F(pollable, ready_atoms_run_when_the_completion_ring_is_full)
{
	struct syslet_cqe cqe;
	int i;

	for (i = 0; i < 16; i++)
		ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, 1, i, 0));
	ASSERT_EQ(1, write(self->sv[1], "f", 1));
	EXPECT_EQ(-EBUSY, submit_recv(&self->ring, self->sv[0], self->buf, 1, 16, 0));
	ASSERT_EQ(1, reap_cqes(&self->ring, &cqe, 1)) TH_LOG("the ready atom did not run");
	EXPECT_EQ(1, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe.flags);
	EXPECT_EQ(15, syslet_fdinfo_counter(self->ring.fd, "armed"));
}

/*
 * A chain with a call that acts on the submitting thread (here
 * rt_sigprocmask) is never armed: its entries would run on whichever thread
 * runs the armed atom. The receive blocks its exec as without the pollable
 * path, and the chain runs on the submitter.
 */
TEST_F(pollable, chain_with_a_thread_scoped_call_is_not_armed)
{
	struct syslet_cqe cqe[2];
	struct late_write late;
	struct syslet_sqe *sqe;
	sigset_t none;

	sigemptyset(&none);
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, 1, 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep(sqe, __NR_rt_sigprocmask, SIG_BLOCK, (uintptr_t)&none, 0, 8, 0, 0);
	ASSERT_EQ(0, start_late_write(&late, self->sv[1], 200, "t"));
	ASSERT_EQ(2, syslet_submit_n(&self->ring, 2));
	pthread_join(late.thread, NULL);
	ASSERT_EQ(2, reap_cqes(&self->ring, cqe, 2)) TH_LOG("the chain was armed");
	EXPECT_EQ(1, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe[0].flags);
	EXPECT_EQ(0, cqe[1].res);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "completed_after_poll"));
}

/*
 * A context may not travel in SCM_RIGHTS (it pins the files its atoms wait
 * for: over one of its own sockets it would make a loop nothing frees); a
 * pipe may.
 */
static int send_fd(int sock, int fd)
{
	char data = 'x';
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) < 0 ? -errno : 0;
}

TEST_F(pollable, context_cannot_be_sent_in_scm_rights)
{
	int p[2];

	ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, 1, 1, 0));
	EXPECT_EQ(-EINVAL, send_fd(self->sv[1], self->ring.fd));
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	EXPECT_EQ(0, send_fd(self->sv[1], p[0]));
	close(p[0]);
	close(p[1]);
}

/*
 * An armed call names its descriptor by number: only a thread that shares
 * the submitter's descriptor table runs it. A thread that unshared its
 * table waits without running the ready atom; the submitter's wait runs it.
 */
struct unshared_waiter {
	struct syslet_ring *ring;
	int unshared, ret;
	int done[2];		/* the thread writes when its wait returned */
	int leave[2];		/* and exits when it may */
};

static void *unshared_wait_main(void *arg)
{
	struct unshared_waiter *w = arg;
	char c;

	w->unshared = unshare(CLONE_FILES);
	w->ret = syslet_wait(w->ring, 1, 300000000);
	/*
	 * Its exit closes its copy of the device's descriptor, and a close by
	 * the owner closes the context: it stays until the test is done.
	 */
	if (write(w->done[1], "d", 1) != 1 || read(w->leave[0], &c, 1) != 1)
		w->ret = -EPIPE;
	return NULL;
}

TEST_F(pollable, thread_with_another_descriptor_table_does_not_run_it)
{
	struct unshared_waiter w = { .ring = &self->ring };
	struct syslet_cqe cqe;
	pthread_t thread;

	char c;

	ASSERT_EQ(0, pipe2(w.done, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(w.leave, O_CLOEXEC));
	ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, 1, 5, 0));
	ASSERT_EQ(1, write(self->sv[1], "u", 1));
	ASSERT_EQ(0, pthread_create(&thread, NULL, unshared_wait_main, &w));
	ASSERT_EQ(1, read(w.done[0], &c, 1));
	ASSERT_EQ(0, w.unshared);
	EXPECT_EQ(-ETIMEDOUT, w.ret) TH_LOG("a thread with its own descriptor table ran the atom");
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	ASSERT_EQ(1, syslet_wait(&self->ring, 1, LONG_WAIT));
	ASSERT_EQ(1, reap_cqes(&self->ring, &cqe, 1));
	EXPECT_EQ(1, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe.flags);
	ASSERT_EQ(1, write(w.leave[1], "l", 1));
	ASSERT_EQ(0, join_within(thread, 20));
	close(w.done[0]);
	close(w.done[1]);
	close(w.leave[0]);
	close(w.leave[1]);
}

/*
 * Closing the context with armed atoms completes each of them with
 * -ECANCELED in the still-mapped ring, and unhooks them from the socket.
 */
TEST_F(pollable, close_completes_armed_atoms)
{
	struct syslet_cqe cqe[4];
	int i;

	for (i = 0; i < 3; i++)
		ASSERT_EQ(1, submit_recv(&self->ring, self->sv[0], self->buf, 1, 50 + i, 0));
	close(self->ring.fd);
	self->ring.fd = -1;
	ASSERT_EQ(3, reap_cqes(&self->ring, cqe, 4));
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(50 + i, cqe[i].user_data);
		EXPECT_EQ(-ECANCELED, cqe[i].res);
		EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_REFUSED, cqe[i].flags);
	}
	/* Nothing of the context is left on the socket's queue to be woken. */
	ASSERT_EQ(1, write(self->sv[1], "z", 1));
	EXPECT_EQ(1, recv(self->sv[0], self->buf, 1, MSG_DONTWAIT));
}

/* Queues a linked timeout entry of @ns nanoseconds with @flags; returns it. */
static struct syslet_sqe *prep_timeout(struct syslet_ring *ring, int64_t ns, unsigned int flags,
				       uint64_t user_data)
{
	struct syslet_sqe *sqe = syslet_get_sqe(ring);

	syslet_prep(sqe, 0, ns, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_LINK_TIMEOUT | flags;
	sqe->user_data = user_data;
	return sqe;
}

/*
 * A linked timeout on an armed receive: when the time is up the receive is
 * taken off the socket without running (-ETIME, POLLED | REFUSED), the
 * timeout entry completes with -ETIME and the entry linked after it is
 * cancelled; data that arrives later stays in the socket.
 */
TEST_F(pollable, linked_timeout_expires_an_armed_atom)
{
	struct syslet_cqe cqe[3];
	struct syslet_sqe *sqe;

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, sizeof(self->buf), 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe->user_data = 70;
	prep_timeout(&self->ring, 50000000, SYSLET_SQE_LINK, 71);
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	ASSERT_EQ(3, syslet_submit_n(&self->ring, 3));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "armed"));
	ASSERT_EQ(3, syslet_wait(&self->ring, 3, LONG_WAIT));
	ASSERT_EQ(3, reap_cqes(&self->ring, cqe, 3));
	EXPECT_EQ(70, cqe[0].user_data);
	EXPECT_EQ(-ETIME, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_REFUSED, cqe[0].flags);
	EXPECT_EQ(71, cqe[1].user_data);
	EXPECT_EQ(-ETIME, cqe[1].res);
	EXPECT_EQ(-ECANCELED, cqe[2].res);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "armed"));
	ASSERT_EQ(1, write(self->sv[1], "l", 1));
	EXPECT_EQ(1, recv(self->sv[0], self->buf, 1, MSG_DONTWAIT));
}

/* An armed receive whose data comes in time runs; its timeout entry completes with 0. */
TEST_F(pollable, linked_timeout_not_reached)
{
	struct syslet_cqe cqe[3];
	struct syslet_sqe *sqe;

	sqe = syslet_get_sqe(&self->ring);
	syslet_prep_recv(sqe, self->sv[0], self->buf, sizeof(self->buf), 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe->user_data = 72;
	prep_timeout(&self->ring, 20000000000LL, SYSLET_SQE_LINK, 73);
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	ASSERT_EQ(3, syslet_submit_n(&self->ring, 3));
	ASSERT_EQ(2, write(self->sv[1], "in", 2));
	ASSERT_EQ(3, syslet_wait(&self->ring, 3, LONG_WAIT));
	ASSERT_EQ(3, reap_cqes(&self->ring, cqe, 3));
	EXPECT_EQ(2, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe[0].flags);
	EXPECT_EQ(73, cqe[1].user_data);
	EXPECT_EQ(0, cqe[1].res);
	EXPECT_EQ(getppid(), cqe[2].res);
}

/*
 * Without the pollable path, a linked timeout cuts short a call blocked in
 * its exec (a read from an empty pipe, an interruptible sleep): -ETIME for
 * both, and the exec returns.
 */
TEST(linked_timeout_cuts_an_inline_block)
{
	struct syslet_ring ring;
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;
	int p[2], ret;
	char c;

	ret = syslet_queue_init(&ring, 4, 8);
	if (ret == -ENOENT)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	sqe = syslet_get_sqe(&ring);
	syslet_prep_read(sqe, p[0], &c, 1);
	sqe->flags = SYSLET_SQE_LINK;
	sqe->user_data = 80;
	prep_timeout(&ring, 100000000, 0, 81);
	ASSERT_EQ(2, syslet_submit_n(&ring, 2));
	ASSERT_EQ(2, reap_cqes(&ring, cqe, 2));
	EXPECT_EQ(-ETIME, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe[0].flags);
	EXPECT_EQ(-ETIME, cqe[1].res);
	/* The pipe is untouched, and the next atom is not interrupted. */
	ASSERT_EQ(1, write(p[1], "k", 1));
	syslet_prep_read(syslet_get_sqe(&ring), p[0], &c, 1);
	ASSERT_EQ(1, syslet_submit_n(&ring, 1));
	ASSERT_EQ(1, reap_cqes(&ring, cqe, 1));
	EXPECT_EQ(1, cqe[0].res);
	close(p[0]);
	close(p[1]);
	syslet_queue_exit(&ring);
}

/*
 * A linked timeout cuts short a call that blocked after its program was
 * handed to a spare: the spare resumes the program, the blocked thread's
 * read ends with -ETIME when the time is up, flagged ASYNC.
 */
struct submitter {
	struct syslet_ring *ring;
	int ret, handed;
};

static void *submit_main(void *arg)
{
	struct submitter *s = arg;

	s->ret = syslet_submit_cont(s->ring, 2, COOKIE, &s->handed);
	return NULL;
}

TEST(linked_timeout_cuts_a_handed_off_block)
{
	struct submitter sub = { 0 };
	struct parked spare = { 0 };
	struct syslet_ring ring;
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;
	pthread_t st, pt;
	int p[2], ret;
	char c;

	ret = syslet_queue_init(&ring, 4, 8);
	if (ret == -ENOENT)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	spare.ring = &ring;
	ASSERT_EQ(0, pthread_create(&pt, NULL, park_main, &spare));
	ASSERT_EQ(0, wait_counter(ring.fd, "spares_parked", 1));
	sqe = syslet_get_sqe(&ring);
	syslet_prep_read(sqe, p[0], &c, 1);
	sqe->flags = SYSLET_SQE_LINK;
	sqe->user_data = 90;
	prep_timeout(&ring, 300000000, 0, 91);
	sub.ring = &ring;
	ASSERT_EQ(0, pthread_create(&st, NULL, submit_main, &sub));
	/* The spare takes the program over when the read blocks. */
	ASSERT_EQ(0, join_within(pt, 20));
	EXPECT_EQ(0, spare.ret);
	EXPECT_EQ(COOKIE, spare.cookie);
	/* The blocked thread's exec ends when the time is up. */
	ASSERT_EQ(0, join_within(st, 20));
	EXPECT_EQ(2, sub.ret);
	EXPECT_EQ(1, sub.handed);
	ASSERT_EQ(2, reap_cqes(&ring, cqe, 2));
	EXPECT_EQ(90, cqe[0].user_data);
	EXPECT_EQ(-ETIME, cqe[0].res);
	EXPECT_EQ(SYSLET_CQE_F_ASYNC, cqe[0].flags);
	EXPECT_EQ(-ETIME, cqe[1].res);
	EXPECT_EQ(1, syslet_fdinfo_counter(ring.fd, "handoffs"));
	close(p[0]);
	close(p[1]);
	syslet_queue_exit(&ring);
}

/*
 * Malformed timeout entries complete with -EINVAL and limit nothing: first
 * in a batch, after an unlinked call, with a call number, with no time, with
 * more than 2^62 ns.
 */
TEST(malformed_timeout_entries_are_refused)
{
	struct syslet_ring ring;
	struct syslet_cqe cqe[10];
	struct syslet_sqe *sqe;
	int ret, n;

	ret = syslet_queue_init(&ring, 8, 16);
	if (ret == -ENOENT)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret);
	prep_timeout(&ring, 1000, 0, 1);			/* first: limits nothing */
	syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	prep_timeout(&ring, 1000, 0, 2);			/* after an unlinked call */
	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_LINK;
	prep_timeout(&ring, 0, 0, 3);				/* no time */
	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_LINK;
	prep_timeout(&ring, 1000, 0, 4)->nr = __NR_getpid;	/* a call number */
	ASSERT_EQ(7, syslet_submit_n(&ring, 7));
	n = reap_cqes(&ring, cqe, 8);
	ASSERT_EQ(7, n);
	/* Past 2^62 ns: a deadline that would overflow the clock. */
	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_LINK;
	prep_timeout(&ring, INT64_MAX, 0, 5);
	ASSERT_EQ(2, syslet_submit_n(&ring, 2));
	ASSERT_EQ(2, reap_cqes(&ring, cqe + n, 2));
	n += 2;
	for (int i = 0; i < n; i++) {
		if (cqe[i].user_data >= 1 && cqe[i].user_data <= 5) {
			EXPECT_EQ(-EINVAL, cqe[i].res) TH_LOG("timeout entry %d", (int)cqe[i].user_data);
			EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe[i].flags);
		} else {
			EXPECT_EQ(getppid(), cqe[i].res);
		}
	}
	syslet_queue_exit(&ring);
}

/* A process killed with atoms armed on its sockets: nothing leaks (rmmod at the end checks). */
static int arm_then_wait_to_die(void)
{
	static struct syslet_ring ring;
	static int sv[64][2];
	static char buf[64];
	int i;

	if (syslet_queue_init_flags(&ring, 64, 128, SYSLET_SETUP_POLL))
		return 1;
	for (i = 0; i < 64; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]))
			return 2;
		syslet_prep_recv(syslet_get_sqe(&ring), sv[i][0], buf + i, 1, 0);
	}
	if (syslet_submit_n(&ring, 64) != 64 || syslet_fdinfo_counter(ring.fd, "armed") != 64)
		return 4;
	return 0;
}

TEST(kill_9_with_armed_atoms)
{
	int status;

	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, kill_9_in_flight(arm_then_wait_to_die, &status));
	ASSERT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
}

/*
 * 1000 receives armed across 1000 socket pairs complete in whatever order
 * their data arrives, each exactly once, with its own data, and no spare.
 */
#define PAIRS 1000

TEST(thousand_sockets_armed_complete_once)
{
	static int sv[PAIRS][2], order[PAIRS], seen[PAIRS];
	static char bufs[PAIRS][4];
	struct rlimit nofile = { PAIRS * 2 + 64, PAIRS * 2 + 64 };
	struct syslet_ring ring;
	int i, done = 0, ret;

	ret = syslet_queue_init_flags(&ring, 1024, 1024, SYSLET_SETUP_POLL);
	if (ret == -ENOENT)
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &nofile));
	for (i = 0; i < PAIRS; i++) {
		struct syslet_sqe *sqe;

		ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]));
		sqe = syslet_get_sqe(&ring);
		syslet_prep_recv(sqe, sv[i][0], bufs[i], sizeof(bufs[i]), 0);
		sqe->user_data = i;
		order[i] = i;
	}
	ASSERT_EQ(PAIRS, syslet_submit_n(&ring, PAIRS));
	EXPECT_EQ(PAIRS, syslet_fdinfo_counter(ring.fd, "armed"));

	/* Data arrives in a shuffled order, reaped as it completes. */
	srand(9);
	for (i = PAIRS - 1; i > 0; i--) {
		int j = rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (i = 0; i < PAIRS; i++) {
		char msg[4];
		struct syslet_cqe *cqe;

		snprintf(msg, sizeof(msg), "%03d", order[i] % 1000);
		ASSERT_EQ(3, write(sv[order[i]][1], msg, 3));
		if (i % 100 != 99)
			continue;
		while (done < i + 1) {
			ASSERT_LE(1, syslet_wait(&ring, 1, LONG_WAIT));
			while ((cqe = syslet_peek_cqe(&ring))) {
				ASSERT_LE(0, (long)cqe->user_data);
				ASSERT_GT(PAIRS, cqe->user_data);
				EXPECT_EQ(3, cqe->res);
				EXPECT_EQ(SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE, cqe->flags);
				seen[cqe->user_data]++;
				done++;
				syslet_cqe_seen(&ring);
			}
		}
	}
	EXPECT_EQ(PAIRS, done);
	for (i = 0; i < PAIRS; i++) {
		char want[4];

		snprintf(want, sizeof(want), "%03d", i % 1000);
		EXPECT_EQ(1, seen[i]) TH_LOG("atom %d completed %d times", i, seen[i]);
		EXPECT_EQ(0, memcmp(bufs[i], want, 3));
	}
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "armed"));
	EXPECT_EQ(PAIRS, syslet_fdinfo_counter(ring.fd, "completed_after_poll"));
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "handoffs"));
	syslet_queue_exit(&ring);
	for (i = 0; i < PAIRS; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
}

/*
 * Seccomp judges an armed atom once, when its exec consumes it, with the
 * arguments it will run with: a filter refusing receives on one descriptor
 * refuses that atom at once (never armed) and lets the other be armed.
 */
static int judged_before_armed(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_recvfrom, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0 /* the refused fd, below */, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
	struct syslet_ring ring;
	struct syslet_cqe cqe;
	int refused[2], allowed[2];
	char buf[4];

	if (syslet_queue_init_flags(&ring, 4, 8, SYSLET_SETUP_POLL) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, refused) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, allowed))
		return 10;
	filter[6].k = refused[0];
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return 11;
	syslet_prep_recv(syslet_get_sqe(&ring), refused[0], buf, 1, 0);
	syslet_prep_recv(syslet_get_sqe(&ring), allowed[0], buf, 1, 0);
	if (syslet_submit_n(&ring, 2) != 2)
		return 12;
	if (reap_cqes(&ring, &cqe, 1) != 1)
		return 13;
	if (cqe.res != -EACCES || cqe.flags != SYSLET_CQE_F_REFUSED)
		return 14;
	if (syslet_fdinfo_counter(ring.fd, "armed") != 1)
		return 15;
	if (write(allowed[1], "y", 1) != 1 || syslet_wait(&ring, 1, LONG_WAIT) != 1)
		return 16;
	if (reap_cqes(&ring, &cqe, 1) != 1 || cqe.res != 1 ||
	    cqe.flags != (SYSLET_CQE_F_POLLED | SYSLET_CQE_F_INLINE))
		return 17;
	return 0;
}

TEST(seccomp_judges_an_atom_before_it_is_armed)
{
	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	EXPECT_EQ(0, run_in_child(judged_before_armed));
}

/*
 * The verdict stands for the confinement it was given under: the submitter
 * adding a seccomp filter while its atom is armed (a filter that would
 * allow it, even) means the atom does not run: -EPERM, REFUSED. The data
 * stays in the socket.
 */
static int refused_after_confinement_changed(void)
{
	struct syslet_ring ring;
	struct syslet_cqe cqe;
	int sv[2];
	char buf[4];

	if (syslet_queue_init_flags(&ring, 4, 8, SYSLET_SETUP_POLL) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 10;
	syslet_prep_recv(syslet_get_sqe(&ring), sv[0], buf, 1, 0);
	if (syslet_submit_n(&ring, 1) != 1 || syslet_fdinfo_counter(ring.fd, "armed") != 1)
		return 11;
	/* Refuses getpid only: the receive itself would pass. */
	if (install_filter(__NR_getpid, SECCOMP_RET_ERRNO | EACCES))
		return 12;
	if (write(sv[1], "y", 1) != 1 || syslet_wait(&ring, 1, LONG_WAIT) != 1)
		return 13;
	if (reap_cqes(&ring, &cqe, 1) != 1)
		return 14;
	if (cqe.res != -EPERM || cqe.flags != (SYSLET_CQE_F_POLLED | SYSLET_CQE_F_REFUSED))
		return 15;
	if (recv(sv[0], buf, 1, MSG_DONTWAIT) != 1)
		return 16;
	return 0;
}

TEST(armed_atom_refused_after_the_confinement_changed)
{
	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	EXPECT_EQ(0, run_in_child(refused_after_confinement_changed));
}

/*
 * Without SYSLET_SETUP_POLL nothing is armed: a receive on an empty socket
 * blocks its exec until the data arrives, as before. Unknown setup flags are
 * refused.
 */
TEST(pollable_path_is_opt_in)
{
	struct syslet_ring ring;
	struct late_write late;
	struct syslet_cqe cqe;
	int sv[2], ret;
	char c = 0;

	ret = syslet_queue_init_flags(&ring, 4, 8, 1U << 1);
	if (ret == -ENOENT)
		SKIP(return, "no syslet device");
	EXPECT_EQ(-EINVAL, ret);
	ASSERT_EQ(0, syslet_queue_init_flags(&ring, 4, 8, 0));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	ASSERT_EQ(0, start_late_write(&late, sv[1], 200, "n"));
	syslet_prep_recv(syslet_get_sqe(&ring), sv[0], &c, 1, 0);
	ASSERT_EQ(1, syslet_submit_n(&ring, 1));
	/* The exec returned with the completion posted: it waited in the call. */
	ASSERT_EQ(1, reap_cqes(&ring, &cqe, 1));
	EXPECT_EQ(1, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
	EXPECT_EQ('n', c);
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "armed"));
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "completed_after_poll"));
	pthread_join(late.thread, NULL);
	close(sv[0]);
	close(sv[1]);
	syslet_queue_exit(&ring);
}

TEST_HARNESS_MAIN
