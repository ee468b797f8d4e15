// SPDX-License-Identifier: GPL-2.0
/*
 * syslet security kselftests: no syslet ioctl from inside an atom (whatever
 * the descriptor's high bits, whatever descriptor is swapped in), none through
 * the 32-bit ioctl entry, seccomp as a direct x86-64 call sees it (arch,
 * ERRNO(0), KILL ending the batch), calls on the submitting thread's own state
 * refused when the program may move to a spare, uprobe refused, an atom that
 * closes the device, ring memory charged to the memory cgroup, and execs
 * refused while a tracer or the audit log watches the thread's calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/magic.h>
#include <linux/syslet.h>

#include "libsyslet.h"
#include "syslet_util.h"
#include "../kselftest_harness.h"

#ifndef __NR_uretprobe
#define __NR_uretprobe 335
#endif
#ifndef __NR_uprobe
#define __NR_uprobe 336
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif
#ifndef __NR_lsm_set_self_attr
#define __NR_lsm_set_self_attr 460
#endif

/* i386 numbers, for the int $0x80 (compat) entry. */
#define NR32_getpid	20
#define NR32_ioctl	54

#define HIGH_FD_BIT	(1ULL << 32)

/* Opens the device or skips the test if the module is not loaded. */
static int open_syslet(struct __test_metadata *_metadata)
{
	int fd = open(SYSLET_DEVICE, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		SKIP(return -1, "%s missing: is the syslet module loaded?", SYSLET_DEVICE);
	return fd;
}

/* Skips the test (returning from it) if the device is missing. */
#define REQUIRE_SYSLET() do {						\
	int __fd = open_syslet(_metadata);				\
									\
	if (__fd < 0)							\
		return;							\
	close(__fd);							\
} while (0)

static void prep(struct syslet_ring *ring, uint64_t user_data, unsigned int nr, uint64_t a0,
		 uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct syslet_sqe *sqe = syslet_get_sqe(ring);

	/* The callers size their rings for what they queue. */
	if (!sqe)
		abort();
	syslet_prep(sqe, nr, a0, a1, a2, a3, 0, 0);
	sqe->user_data = user_data;
}

/* Takes the next completion, or one with user_data ~0 if there is none. */
static struct syslet_cqe take_cqe(struct syslet_ring *ring)
{
	struct syslet_cqe out = { .user_data = ~0ULL, .res = 1 }, *cqe = syslet_peek_cqe(ring);

	if (cqe) {
		out = *cqe;
		syslet_cqe_seen(ring);
	}
	return out;
}

/*
 * An atom may close the syslet descriptor it runs from: the close succeeds,
 * the atoms after it run and complete into the rings, which stay mapped.
 */
TEST(atom_closes_own_device)
{
	const int64_t expect[] = { 0, getppid(), 5, getpid() };
	struct syslet_ring ring;
	struct syslet_cqe cqe;
	char buf[8] = { 0 };
	int p[2], fd;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, syslet_queue_init(&ring, 8, 0));
	ASSERT_EQ(0, pipe(p));
	fd = ring.fd;
	prep(&ring, 1, __NR_close, fd, 0, 0, 0);
	prep(&ring, 2, __NR_getppid, 0, 0, 0, 0);
	prep(&ring, 3, __NR_write, p[1], (uintptr_t)"after", 5, 0);
	prep(&ring, 4, __NR_getpid, 0, 0, 0, 0);
	EXPECT_EQ(4, syslet_submit(&ring));
	/* The descriptor is gone... */
	EXPECT_EQ(-1, fcntl(fd, F_GETFD));
	EXPECT_EQ(EBADF, errno);
	/* ...and every atom completed, in order, into the still-mapped rings. */
	for (int i = 0; i < 4; i++) {
		cqe = take_cqe(&ring);
		EXPECT_EQ(i + 1, cqe.user_data) TH_LOG("completion %d missing", i + 1);
		EXPECT_EQ(expect[i], cqe.res) TH_LOG("atom %d", i + 1);
		EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
	}
	EXPECT_EQ(NULL, syslet_peek_cqe(&ring));
	EXPECT_EQ(5, read(p[0], buf, sizeof(buf)));
	EXPECT_STREQ("after", buf);
	ring.fd = -1;
	syslet_queue_exit(&ring);
	close(p[0]);
	close(p[1]);
}

/*
 * The same close, then task work run from inside the exec: with the rings
 * unmapped the descriptor holds the file's last reference (this process is
 * single-threaded, so the ioctl itself holds none), the close atom's fput()
 * queues the release as task work, and io_uring_enter(GETEVENTS) runs it while
 * the exec still runs. The atoms after it must run and the exec must finish
 * normally; a use after free shows in dmesg (slub_debug), which the runner
 * scans.
 */
TEST(atom_closes_own_device_then_runs_task_work)
{
	struct syslet_exec exec = { .to_submit = 5 };
	struct syslet_ring ring;
	struct raw_uring uring;
	char buf[8] = { 0 };
	int p[2], fd, ret;

	REQUIRE_SYSLET();
	ret = raw_uring_init(&uring, 4);
	if (ret == -ENOSYS || ret == -EPERM)
		SKIP(return, "io_uring unavailable: %s", strerror(-ret));
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, syslet_queue_init(&ring, 8, 0));
	ASSERT_EQ(0, pipe(p));
	fd = ring.fd;
	prep(&ring, 1, __NR_close, fd, 0, 0, 0);
	prep(&ring, 2, __NR_io_uring_enter, uring.fd, 0, 0, IORING_ENTER_GETEVENTS);
	prep(&ring, 3, __NR_getppid, 0, 0, 0, 0);
	prep(&ring, 4, __NR_write, p[1], (uintptr_t)"after", 5, 0);
	prep(&ring, 5, __NR_getpid, 0, 0, 0, 0);
	__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
	ASSERT_EQ(0, munmap(ring.mem, ring.mem_size));
	ring.mem = NULL;

	EXPECT_EQ(5, ioctl(fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(5, exec.submitted);
	EXPECT_EQ(-1, fcntl(fd, F_GETFD));
	EXPECT_EQ(EBADF, errno);
	/* The atoms after the release ran: the write is there. */
	EXPECT_EQ(5, read(p[0], buf, sizeof(buf)));
	EXPECT_STREQ("after", buf);
	raw_uring_exit(&uring);
	close(p[0]);
	close(p[1]);
}

/*
 * A syslet ioctl from an atom is refused up front (-EDEADLK, REFUSED) however
 * the descriptor is spelled: the kernel's ioctl() takes fd and cmd as unsigned
 * int, so bits above 31 do not hide the device; nor does another descriptor
 * of it, or another syslet device.
 */
TEST(reentry_high_fd_bits)
{
	struct syslet_params params = { .sq_entries = 8 };
	struct syslet_exec exec = { .to_submit = 1 };
	struct syslet_wait wait = { 0 };	/* min 0, timeout 0: returns at once if it runs */
	struct syslet_park park = { 0 };
	struct syslet_ring ring, other;
	uint64_t user_data = 1;
	int dup_fd;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, syslet_queue_init(&ring, 16, 0));
	ASSERT_EQ(0, syslet_queue_init(&other, 4, 0));
	dup_fd = dup(ring.fd);
	ASSERT_GE(dup_fd, 0);
	/* Queued on the other context: an exec of it that ran would consume it. */
	prep(&other, 1, __NR_getppid, 0, 0, 0, 0);
	__atomic_store_n(&other.hdr->sq_tail, other.sq_tail, __ATOMIC_RELEASE);
	{
		const uint64_t fd = ring.fd;
		const struct {
			const char *what;
			uint64_t fd, cmd;
			void *arg;
		} calls[] = {
			{ "WAIT, fd bit 32", fd | HIGH_FD_BIT, SYSLET_IOC_WAIT, &wait },
			{ "CANCEL, fd bit 32", fd | HIGH_FD_BIT, SYSLET_IOC_CANCEL, &user_data },
			{ "SETUP, fd bit 32", fd | HIGH_FD_BIT, SYSLET_IOC_SETUP, &params },
			{ "EXEC, fd bit 32", fd | HIGH_FD_BIT, SYSLET_IOC_EXEC, &exec },
			{ "WAIT, fd bits 32-63", fd | 0xffffffff00000000ULL, SYSLET_IOC_WAIT, &wait },
			{ "WAIT, cmd bit 32", fd, HIGH_FD_BIT | SYSLET_IOC_WAIT, &wait },
			{ "WAIT, dup", dup_fd, SYSLET_IOC_WAIT, &wait },
			{ "WAIT, other device", other.fd, SYSLET_IOC_WAIT, &wait },
			{ "EXEC, other device, fd bit 32", other.fd | HIGH_FD_BIT, SYSLET_IOC_EXEC,
			  &exec },
			/* Last: if it ran, it would park this thread. */
			{ "PARK, fd bit 32", fd | HIGH_FD_BIT, SYSLET_IOC_PARK, &park },
		};
		const int n = sizeof(calls) / sizeof(calls[0]);

		for (int i = 0; i < n; i++)
			prep(&ring, i, __NR_ioctl, calls[i].fd, calls[i].cmd,
			     (uintptr_t)calls[i].arg, 0);
		ASSERT_EQ(n, syslet_submit(&ring));
		for (int i = 0; i < n; i++) {
			struct syslet_cqe cqe = take_cqe(&ring);

			ASSERT_EQ(i, cqe.user_data);
			EXPECT_EQ(-EDEADLK, cqe.res) TH_LOG("%s", calls[i].what);
			EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe.flags) TH_LOG("%s", calls[i].what);
		}
	}
	/* Nothing ran on the other context either. */
	EXPECT_EQ(0, syslet_fdinfo_counter(other.fd, "submitted"));
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "spares_parked"));
	close(dup_fd);
	syslet_queue_exit(&other);
	syslet_queue_exit(&ring);
}

struct swapper {
	int target, null_fd, syslet_fd;
	volatile int stop;
	long swaps;
};

static void *swapper_main(void *data)
{
	struct swapper *s = data;

	while (!s->stop) {
		dup2(s->syslet_fd, s->target);
		dup2(s->null_fd, s->target);
		s->swaps++;
	}
	return NULL;
}

/* How atoms ioctl()ing a swapped descriptor completed. */
struct swapped_results {
	long notty;	/* reached /dev/null */
	long refused;	/* the check up front saw the device */
	long marked;	/* the per-task mark refused it */
	long bad;	/* anything else: a syslet ioctl ran inside an atom */
};

/*
 * Runs @batch atoms ioctl(@target, @cmd, @arg) in one exec and counts how
 * each completed in @r; returns the exec's result.
 */
static int run_swapped_ioctls(struct syslet_ring *ring, int target, int batch,
			      unsigned long cmd, void *arg, struct swapped_results *r)
{
	int ret;

	for (int i = 0; i < batch; i++)
		prep(ring, i, __NR_ioctl, target, cmd, (uintptr_t)arg, 0);
	ret = syslet_submit(ring);
	for (int i = 0; i < ret; i++) {
		struct syslet_cqe cqe = take_cqe(ring);

		if (cqe.res == -ENOTTY && !(cqe.flags & SYSLET_CQE_F_REFUSED)) {
			r->notty++;
		} else if (cqe.res == -EDEADLK) {
			if (cqe.flags & SYSLET_CQE_F_REFUSED)
				r->refused++;
			else
				r->marked++;
		} else if (r->bad++ < 3) {
			fprintf(stderr, "# ioctl %#lx: res %lld flags %#x\n", cmd,
				(long long)cqe.res, cqe.flags);
		}
	}
	return ret;
}

/* Starts @thread swapping the syslet device @syslet_fd and /dev/null at @target. */
static int start_swapper(struct swapper *s, pthread_t *thread, int target, int syslet_fd)
{
	*s = (struct swapper){
		.target = target,
		.null_fd = open("/dev/null", O_RDWR | O_CLOEXEC),
		.syslet_fd = syslet_fd,
	};
	if (s->null_fd < 0 || dup2(s->null_fd, target) != target)
		return -1;
	return pthread_create(thread, NULL, swapper_main, s);
}

/*
 * Atoms ioctl() a descriptor that another thread keeps switching between
 * /dev/null and the syslet device: whatever the check up front saw, a syslet
 * ioctl never runs inside an atom. Each completes with -ENOTTY (it reached
 * /dev/null) or -EDEADLK (refused up front, or by the per-task mark when the
 * device was swapped in after the check), never anything else.
 */
TEST(reentry_swapped_descriptor_race)
{
	enum { TARGET = 100, BATCH = 8, ROUNDS = 250 };
	struct syslet_wait wait = { .min_complete = 0, .timeout_ns = 0 };
	struct swapped_results r = { 0 };
	struct syslet_ring ring;
	struct swapper swapper;
	pthread_t thread;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, syslet_queue_init(&ring, BATCH, 2 * BATCH));
	ASSERT_EQ(0, start_swapper(&swapper, &thread, TARGET, ring.fd));
	for (int round = 0; round < ROUNDS; round++)
		ASSERT_EQ(BATCH, run_swapped_ioctls(&ring, TARGET, BATCH, SYSLET_IOC_WAIT,
						    &wait, &r));
	swapper.stop = 1;
	pthread_join(thread, NULL);
	TH_LOG("%ld swaps: %ld reached /dev/null, %ld refused up front, %ld by the task mark",
	       swapper.swaps, r.notty, r.refused, r.marked);
	EXPECT_EQ(0, r.bad);
	EXPECT_EQ(ROUNDS * BATCH, r.notty + r.refused + r.marked);
	close(TARGET);
	close(swapper.null_fd);
	syslet_queue_exit(&ring);
}

/*
 * The per-task mark, for every syslet ioctl: atoms ioctl() a descriptor that
 * another thread keeps switching between /dev/null and the syslet device,
 * so that for some atoms the device is swapped in after the check up front
 * saw /dev/null. Those are refused by the mark (-EDEADLK, not flagged
 * REFUSED). Each argument is one the ioctl would accept, so that any that
 * ran would say so (0, a count, -EBUSY, -ENOENT, -ETIMEDOUT...). Rounds go
 * on, within a bound, until the mark has refused each kind a few times:
 * a kind it never refused would not be tested, and fails.
 */
TEST(reentry_mark_refuses_every_ioctl_through_a_swapped_descriptor)
{
	enum { TARGET = 101, BATCH = 8, MAX_ROUNDS = 1500, WANT_MARKED = 3 };
	struct syslet_params params = { .sq_entries = 8 };
	struct syslet_exec exec = { .to_submit = 0 };
	struct syslet_park park = { .timeout_ns = 1000000 };
	struct syslet_wait wait = { .min_complete = 0, .timeout_ns = 0 };
	uint64_t user_data = 12345;
	uint32_t index;
	int64_t res = 0;
	const struct {
		const char *what;
		unsigned long cmd;
		void *arg;
	} kinds[] = {
		{ "SETUP", SYSLET_IOC_SETUP, &params },
		{ "EXEC", SYSLET_IOC_EXEC, &exec },
		{ "PARK", SYSLET_IOC_PARK, &park },
		{ "WAIT", SYSLET_IOC_WAIT, &wait },
		{ "CANCEL", SYSLET_IOC_CANCEL, &user_data },
		{ "THREADLET_REGISTER", SYSLET_IOC_THREADLET_REGISTER, &index },
		{ "THREADLET_UNREGISTER", SYSLET_IOC_THREADLET_UNREGISTER, NULL },
		{ "THREADLET_DONE", SYSLET_IOC_THREADLET_DONE, &res },
	};
	struct syslet_ring ring;
	struct swapper swapper;
	pthread_t thread;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, syslet_queue_init(&ring, BATCH, 2 * BATCH));
	ASSERT_EQ(0, start_swapper(&swapper, &thread, TARGET, ring.fd));
	for (unsigned int k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct swapped_results r = { 0 };
		int round;

		for (round = 0; round < MAX_ROUNDS && r.marked < WANT_MARKED; round++)
			ASSERT_EQ(BATCH, run_swapped_ioctls(&ring, TARGET, BATCH, kinds[k].cmd,
							    kinds[k].arg, &r));
		TH_LOG("%s: %d rounds: %ld reached /dev/null, %ld refused up front, %ld by the mark",
		       kinds[k].what, round, r.notty, r.refused, r.marked);
		EXPECT_EQ(0, r.bad) TH_LOG("%s ran inside an atom", kinds[k].what);
		EXPECT_GE(r.marked, WANT_MARKED) TH_LOG("%s: the mark was never reached",
							 kinds[k].what);
	}
	swapper.stop = 1;
	pthread_join(thread, NULL);
	/* Nothing ran: no spare parked, no threadlet registered. */
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "spares_parked"));
	close(TARGET);
	close(swapper.null_fd);
	syslet_queue_exit(&ring);
}

/* A system call through the 32-bit entry, from this 64-bit process. */
static long int80(long nr, long a, long b, long c)
{
	long ret;

	asm volatile("int $0x80"
		     : "=a"(ret)
		     : "a"(nr), "b"(a), "c"(b), "d"(c)
		     : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

/* Child of compat_ioctl_is_refused: 0 if every compat ioctl said ENOTTY. */
static int compat_child(int ready)
{
	struct syslet_ring ring;
	struct syslet_params p64 = { .sq_entries = 4 };
	char *low;
	int fresh;

	alarm(20);	/* a compat PARK that parks must not hang the test */
	if ((int)int80(NR32_getpid, 0, 0, 0) != getpid())
		return 10;
	/* The 32-bit entry works: from here on a SIGSEGV is a failure. */
	if (write(ready, "1", 1) != 1)
		return 11;
	if (syslet_queue_init(&ring, 4, 0))
		return 12;
	fresh = open(SYSLET_DEVICE, O_RDWR | O_CLOEXEC);
	low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
		   -1, 0);
	if (fresh < 0 || low == MAP_FAILED)
		return 13;

	/* SETUP of a fresh context: refused, and it stays unset. */
	memset(low, 0, 4096);
	((struct syslet_params *)low)->sq_entries = 4;
	if ((int)int80(NR32_ioctl, fresh, SYSLET_IOC_SETUP, (long)low) != -ENOTTY)
		return 1;
	if (ioctl(fresh, SYSLET_IOC_SETUP, &p64))
		return 2;

	/* EXEC of a queued atom: refused, nothing consumed or run. */
	syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
	memset(low, 0, 4096);
	((struct syslet_exec *)low)->to_submit = 1;
	if ((int)int80(NR32_ioctl, ring.fd, SYSLET_IOC_EXEC, (long)low) != -ENOTTY)
		return 3;
	if (ring.hdr->sq_head != 0 || ring.hdr->cq_tail != 0)
		return 4;

	/* WAIT (min 0, timeout 0 would return 0), CANCEL (would be ENOENT). */
	memset(low, 0, 4096);
	if ((int)int80(NR32_ioctl, ring.fd, SYSLET_IOC_WAIT, (long)low) != -ENOTTY)
		return 5;
	memset(low, 0, 4096);
	*(uint64_t *)low = 1;
	if ((int)int80(NR32_ioctl, ring.fd, SYSLET_IOC_CANCEL, (long)low) != -ENOTTY)
		return 6;

	/* PARK (would park until the alarm). */
	memset(low, 0, 4096);
	if ((int)int80(NR32_ioctl, ring.fd, SYSLET_IOC_PARK, (long)low) != -ENOTTY)
		return 7;
	if (syslet_fdinfo_counter(ring.fd, "submitted") != 0)
		return 8;
	/* The 64-bit entry still runs the queued atom. */
	if (syslet_submit(&ring) != 1)
		return 9;
	return 0;
}

/*
 * Every syslet ioctl through the 32-bit (compat) entry fails with ENOTTY:
 * int $0x80 from a 64-bit process, pointers below 4 GiB. Skipped without
 * IA32 emulation (int $0x80 then raises SIGSEGV).
 */
TEST(compat_ioctl_is_refused)
{
	int status, ready[2];
	char c = 0;
	pid_t pid;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, pipe(ready));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		close(ready[0]);
		_exit(compat_child(ready[1]));
	}
	close(ready[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	if (read(ready[0], &c, 1) != 1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV)
		SKIP(return, "int $0x80 faults: no IA32 emulation");
	close(ready[0]);
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child killed by signal %d", WTERMSIG(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("compat step %d failed", WEXITSTATUS(status));
}

/*
 * Runs @n atoms in one exec in a child whose filter gives @nr @action (see
 * install_filter()); the child sends the completions back. Returns the
 * child's wait status; *@got is how many completions came back.
 */
struct atom {
	unsigned int nr;
	uint64_t args[4];
};

static int filtered_child(unsigned int nr, unsigned int action, const struct atom *atoms, int n,
			  struct syslet_cqe *out, int *got)
{
	int status, p[2];
	pid_t pid;

	*got = 0;
	if (pipe(p))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct syslet_ring ring;

		close(p[0]);
		if (syslet_queue_init(&ring, 8, 0) || install_filter(nr, action))
			_exit(100);
		for (int i = 0; i < n; i++)
			prep(&ring, i, atoms[i].nr, atoms[i].args[0], atoms[i].args[1],
			     atoms[i].args[2], atoms[i].args[3]);
		if (syslet_submit(&ring) != n)
			_exit(101);
		for (int i = 0; i < n; i++) {
			struct syslet_cqe cqe = take_cqe(&ring);

			if (write(p[1], &cqe, sizeof(cqe)) != sizeof(cqe))
				_exit(102);
		}
		_exit(0);
	}
	close(p[1]);
	while (*got < n && read(p[0], &out[*got], sizeof(*out)) == sizeof(*out))
		(*got)++;
	close(p[0]);
	waitpid(pid, &status, 0);
	return status;
}

/*
 * SECCOMP_RET_ERRNO with errno 0 means "pretend it succeeded": the atom
 * completes with 0 and the call does not run.
 */
TEST(seccomp_errno_zero_skips_call)
{
	char path[] = "/tmp/syslet-seccomp-XXXXXX";
	struct syslet_cqe cqe;
	int fd, status, got;

	REQUIRE_SYSLET();
	fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	close(fd);
	{
		const struct atom atoms[] = {
			{ __NR_unlinkat, { AT_FDCWD, (uintptr_t)path, 0 } },
		};

		status = filtered_child(__NR_unlinkat, SECCOMP_RET_ERRNO | 0, atoms, 1, &cqe,
					&got);
	}
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(1, got);
	EXPECT_EQ(0, cqe.res);
	/* The filter's answer stood in for the call: the file is still there. */
	EXPECT_EQ(0, access(path, F_OK)) TH_LOG("the filtered unlinkat ran");
	unlink(path);
}

/*
 * Filters see an atom as an x86-64 call: the filter answers EPERM only for
 * arch == AUDIT_ARCH_X86_64 && nr == __NR_getppid and kills the process for
 * any other arch, so a wrong arch shows as SIGSYS. An allowed atom still runs.
 */
TEST(seccomp_sees_x86_64_arch)
{
	const struct atom atoms[] = { { __NR_getppid }, { __NR_getuid } };
	struct syslet_cqe cqe[2];
	int status, got;

	REQUIRE_SYSLET();
	status = filtered_child(__NR_getppid, SECCOMP_RET_ERRNO | EPERM, atoms, 2, cqe, &got);
	ASSERT_TRUE(WIFEXITED(status)) TH_LOG("child killed by signal %d (wrong arch?)",
					      WTERMSIG(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(2, got);
	EXPECT_EQ(-EPERM, cqe[0].res);
	EXPECT_EQ(getuid(), cqe[1].res);
}

/*
 * A KILL verdict kills the process before anything after the killed atom
 * runs: the write queued after it never reaches the pipe.
 */
TEST(seccomp_kill_stops_the_batch)
{
	int status, p[2], result[2];
	char buf[8];
	pid_t pid;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, pipe(p));
	ASSERT_EQ(0, pipe(result));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct syslet_ring ring;

		close(p[0]);
		close(result[0]);
		if (syslet_queue_init(&ring, 8, 0) ||
		    install_filter(__NR_getppid, SECCOMP_RET_KILL_PROCESS))
			_exit(100);
		prep(&ring, 1, __NR_getpid, 0, 0, 0, 0);
		prep(&ring, 2, __NR_getppid, 0, 0, 0, 0);	/* killed */
		prep(&ring, 3, __NR_write, p[1], (uintptr_t)"x", 1, 0);
		prep(&ring, 4, __NR_write, p[1], (uintptr_t)"y", 1, 0);
		syslet_submit(&ring);
		/* Not reached. */
		if (write(result[1], "r", 1) != 1)
			_exit(101);
		_exit(0);
	}
	close(p[1]);
	close(result[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGSYS, WTERMSIG(status));
	/* The child is gone and held the only write ends: EOF, nothing written. */
	EXPECT_EQ(0, read(p[0], buf, sizeof(buf))) TH_LOG("an atom after the kill ran");
	EXPECT_EQ(0, read(result[0], buf, sizeof(buf)));
	close(p[0]);
	close(result[0]);
}

/*
 * An exec with a continuation refuses (-EINVAL, REFUSED) every call that acts
 * on the calling thread's own state: after a handoff the program runs on
 * another thread. Arguments are harmless, so that a call run by mistake shows
 * as a missing REFUSED flag rather than damage.
 */
TEST(identity_calls_refused_with_continuation)
{
	static int tid_word;
	const uint64_t none = (uint64_t)-1;
	char name[16] = { 0 }, name_after[16] = { 0 };
	uint64_t old_mask = 0, empty_mask = 0;
	unsigned int action = SECCOMP_RET_ALLOW;
	struct timespec zero = { 0, 0 };
	struct sched_param param = { 0 };
	struct syslet_ring ring;
	cpu_set_t cpus;
	int handed = -1, prio, ioprio;

	REQUIRE_SYSLET();
	/* Current values, so that a call run by mistake changes nothing. */
	prio = getpriority(PRIO_PROCESS, 0);
	ioprio = syscall(__NR_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
	{
		const struct {
			const char *name;
			unsigned int nr;
			uint64_t a[4];
		} calls[] = {
			{ "setuid", __NR_setuid, { getuid() } },
			{ "setgid", __NR_setgid, { getgid() } },
			{ "setreuid", __NR_setreuid, { none, none } },
			{ "setregid", __NR_setregid, { none, none } },
			{ "setresuid", __NR_setresuid, { none, none, none } },
			{ "setresgid", __NR_setresgid, { none, none, none } },
			{ "setfsuid", __NR_setfsuid, { none } },
			{ "setfsgid", __NR_setfsgid, { none } },
			{ "setgroups", __NR_setgroups, { (uint32_t)-1, 0 } },
			{ "capset", __NR_capset, { 0, 0 } },
			{ "unshare", __NR_unshare, { 0 } },
			{ "setns", __NR_setns, { none, 0 } },
			{ "rt_sigprocmask", __NR_rt_sigprocmask,
			  { SIG_BLOCK, 0, (uintptr_t)&old_mask, 8 } },
			{ "rt_sigsuspend", __NR_rt_sigsuspend, { 0, 8 } },
			{ "rt_sigtimedwait", __NR_rt_sigtimedwait,
			  { (uintptr_t)&empty_mask, 0, (uintptr_t)&zero, 8 } },
			{ "prctl", __NR_prctl, { PR_SET_NAME, (uintptr_t)"syslet-refused" } },
			{ "seccomp", __NR_seccomp,
			  { SECCOMP_GET_ACTION_AVAIL, 0, (uintptr_t)&action } },
			{ "personality", __NR_personality, { 0xffffffff } },
			{ "set_tid_address", __NR_set_tid_address, { (uintptr_t)&tid_word } },
			{ "set_robust_list", __NR_set_robust_list, { 0, 0 } },
			{ "rseq", __NR_rseq, { 0, 0, 0, 0 } },
			{ "sched_setaffinity", __NR_sched_setaffinity,
			  { 0, sizeof(cpus), (uintptr_t)&cpus } },
			{ "sched_setparam", __NR_sched_setparam, { 0, (uintptr_t)&param } },
			{ "sched_setscheduler", __NR_sched_setscheduler,
			  { 0, SCHED_OTHER, (uintptr_t)&param } },
			{ "sched_setattr", __NR_sched_setattr, { 0, 0, 0 } },
			{ "setpriority", __NR_setpriority, { PRIO_PROCESS, 0, (int64_t)prio } },
			{ "ioprio_set", __NR_ioprio_set, { 1, 0, (uint64_t)ioprio } },
			{ "set_thread_area", __NR_set_thread_area, { 0 } },
			{ "get_thread_area", __NR_get_thread_area, { 0 } },
			{ "landlock_restrict_self", __NR_landlock_restrict_self, { none, 0 } },
			{ "lsm_set_self_attr", __NR_lsm_set_self_attr, { 0, 0, 0, 0 } },
			{ "keyctl", __NR_keyctl, { 0 /* KEYCTL_GET_KEYRING_ID */, 0, 0 } },
			{ "add_key", __NR_add_key, { 0, 0, 0, 0 } },
			{ "request_key", __NR_request_key, { 0, 0, 0, 0 } },
			{ "set_mempolicy", __NR_set_mempolicy, { 0 /* MPOL_DEFAULT */, 0, 0 } },
			{ "pkey_alloc", __NR_pkey_alloc, { 1 /* bad flags */, 0 } },
			{ "ptrace", __NR_ptrace, { 3 /* PTRACE_PEEKUSER */, 0, 0, 0 } },
		};
		const int n = sizeof(calls) / sizeof(calls[0]);

		ASSERT_EQ(0, prctl(PR_GET_NAME, name));
		ASSERT_EQ(0, sched_getaffinity(0, sizeof(cpus), &cpus));
		ASSERT_GE(ioprio, 0);
		ASSERT_EQ(0, syslet_queue_init(&ring, 64, 128));
		for (int i = 0; i < n; i++)
			prep(&ring, i, calls[i].nr, calls[i].a[0], calls[i].a[1], calls[i].a[2],
			     calls[i].a[3]);
		/* A continuation, no spare: nothing is handed off, the policy applies. */
		ASSERT_EQ(n, syslet_submit_cont(&ring, n, 0x1D, &handed));
		EXPECT_FALSE(handed);
		for (int i = 0; i < n; i++) {
			struct syslet_cqe cqe = take_cqe(&ring);

			ASSERT_EQ(i, cqe.user_data);
			EXPECT_EQ(-EINVAL, cqe.res) TH_LOG("%s", calls[i].name);
			EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe.flags) TH_LOG("%s not refused",
									  calls[i].name);
		}
	}
	/* Nothing changed. */
	ASSERT_EQ(0, prctl(PR_GET_NAME, name_after));
	EXPECT_STREQ(name, name_after);
	syslet_queue_exit(&ring);
}

/* The same calls run without a continuation: the program stays on this thread. */
TEST(identity_calls_run_without_continuation)
{
	char name[16] = { 0 }, got_name[16] = { 0 };
	uint64_t mask = 0, got_mask = ~0ULL;
	const uint64_t none = (uint64_t)-1;
	struct syslet_ring ring;
	cpu_set_t cpus;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, prctl(PR_GET_NAME, name));
	ASSERT_EQ(0, syscall(__NR_rt_sigprocmask, SIG_BLOCK, NULL, &mask, 8));
	ASSERT_EQ(0, sched_getaffinity(0, sizeof(cpus), &cpus));
	ASSERT_EQ(0, syslet_queue_init(&ring, 8, 0));
	prep(&ring, 0, __NR_setresuid, none, none, none, 0);
	prep(&ring, 1, __NR_unshare, 0, 0, 0, 0);
	prep(&ring, 2, __NR_prctl, PR_GET_NAME, (uintptr_t)got_name, 0, 0);
	prep(&ring, 3, __NR_rt_sigprocmask, SIG_BLOCK, 0, (uintptr_t)&got_mask, 8);
	prep(&ring, 4, __NR_sched_setaffinity, 0, sizeof(cpus), (uintptr_t)&cpus, 0);
	ASSERT_EQ(5, syslet_submit(&ring));
	for (int i = 0; i < 5; i++) {
		struct syslet_cqe cqe = take_cqe(&ring);

		ASSERT_EQ(i, cqe.user_data);
		EXPECT_EQ(0, cqe.res) TH_LOG("atom %d", i);
		EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags) TH_LOG("atom %d", i);
	}
	EXPECT_STREQ(name, got_name);
	EXPECT_EQ(mask, got_mask);
	syslet_queue_exit(&ring);
}

/*
 * uprobe and uretprobe rewrite the entry frame (they are the probe
 * trampolines' calls): refused like clone. Run by mistake, they would kill
 * this process with SIGILL (or fail with -ENOSYS without CONFIG_UPROBES).
 */
TEST(uprobe_is_refused)
{
	struct syslet_ring ring;
	int handed = -1;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, syslet_queue_init(&ring, 8, 0));
	for (int cont = 0; cont < 2; cont++) {
		prep(&ring, __NR_uprobe, __NR_uprobe, 0, 0, 0, 0);
		prep(&ring, __NR_uretprobe, __NR_uretprobe, 0, 0, 0, 0);
		if (cont) {
			ASSERT_EQ(2, syslet_submit_cont(&ring, 2, 0x0B, &handed));
			EXPECT_FALSE(handed);
		} else {
			ASSERT_EQ(2, syslet_submit(&ring));
		}
		for (int i = 0; i < 2; i++) {
			struct syslet_cqe cqe = take_cqe(&ring);

			EXPECT_EQ(i ? __NR_uretprobe : __NR_uprobe, cqe.user_data);
			EXPECT_EQ(-EINVAL, cqe.res) TH_LOG("nr %llu, continuation %d",
							   (unsigned long long)cqe.user_data, cont);
			EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe.flags);
		}
	}
	EXPECT_EQ(4, syslet_fdinfo_counter(ring.fd, "refused"));
	syslet_queue_exit(&ring);
}

#define CGROUP_ROOT "/sys/fs/cgroup"

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = -1;

	if (fd < 0)
		return -1;
	if (write(fd, text, strlen(text)) == (ssize_t)strlen(text))
		ret = 0;
	close(fd);
	return ret;
}

static int read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return -1;
	len = read(fd, buf, size - 1);
	close(fd);
	if (len < 0)
		return -1;
	buf[len] = 0;
	return 0;
}

/* Whether the space-separated list @list holds @word. */
static int has_word(const char *list, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += len)
		if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\n' || !p[len]))
			return 1;
	return 0;
}

/* Child of ring_memory_charged_to_memcg, moved into @cgroup. */
static int memcg_child(const char *cgroup, int result)
{
	enum { CONTEXTS = 8 };
	long long out[3] = { 0 };	/* before, after, total mmap_size */
	char path[256], buf[64];
	int fds[CONTEXTS];

	snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
	snprintf(buf, sizeof(buf), "%d", getpid());
	if (write_text(path, buf))
		return 1;
	snprintf(path, sizeof(path), "%s/memory.current", cgroup);
	if (read_text(path, buf, sizeof(buf)))
		return 2;
	out[0] = atoll(buf);
	for (int i = 0; i < CONTEXTS; i++) {
		struct syslet_params params = {
			.sq_entries = SYSLET_MAX_SQ_ENTRIES,
			.cq_entries = SYSLET_MAX_CQ_ENTRIES,
		};

		fds[i] = open(SYSLET_DEVICE, O_RDWR | O_CLOEXEC);
		if (fds[i] < 0 || ioctl(fds[i], SYSLET_IOC_SETUP, &params))
			return 3;
		out[2] += params.mmap_size;
	}
	if (read_text(path, buf, sizeof(buf)))
		return 4;
	out[1] = atoll(buf);
	if (write(result, out, sizeof(out)) != sizeof(out))
		return 5;
	return 0;
}

/*
 * The rings are charged to the memory cgroup of the process that sets them
 * up (__GFP_ACCOUNT), as io_uring's are: 8 contexts of the largest size make
 * memory.current grow by at least their mmap size. The memcg charges in
 * per-CPU batches (MEMCG_CHARGE_BATCH, 64 pages), so up to that much per CPU
 * may have been charged before the first reading.
 */
TEST(ring_memory_charged_to_memcg)
{
	char cgroup[128], buf[512];
	int mounted = 0, enabled = 0, status, result[2];
	long long out[3] = { 0 }, slack;
	struct statfs sfs;
	pid_t pid;

	REQUIRE_SYSLET();
	if (statfs(CGROUP_ROOT, &sfs) || sfs.f_type != CGROUP2_SUPER_MAGIC) {
		if (mount("none", CGROUP_ROOT, "cgroup2", 0, NULL))
			SKIP(return, "no cgroup2 at %s, and mounting one failed: %s", CGROUP_ROOT,
			     strerror(errno));
		mounted = 1;
	}
	if (read_text(CGROUP_ROOT "/cgroup.controllers", buf, sizeof(buf)) ||
	    !has_word(buf, "memory")) {
		if (mounted)
			umount(CGROUP_ROOT);
		SKIP(return, "no memory controller (CONFIG_MEMCG)");
	}
	ASSERT_EQ(0, read_text(CGROUP_ROOT "/cgroup.subtree_control", buf, sizeof(buf)));
	if (!has_word(buf, "memory")) {
		ASSERT_EQ(0, write_text(CGROUP_ROOT "/cgroup.subtree_control", "+memory"));
		enabled = 1;
	}
	snprintf(cgroup, sizeof(cgroup), CGROUP_ROOT "/syslet-test-%d", getpid());
	ASSERT_EQ(0, mkdir(cgroup, 0755));
	ASSERT_EQ(0, pipe(result));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		close(result[0]);
		_exit(memcg_child(cgroup, result[1]));
	}
	close(result[1]);
	EXPECT_EQ(sizeof(out), read(result[0], out, sizeof(out)));
	close(result[0]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child step %d failed", WEXITSTATUS(status));
	slack = 64LL * getpagesize() * sysconf(_SC_NPROCESSORS_CONF);
	TH_LOG("memory.current %lld -> %lld (+%lld) for %lld bytes of rings", out[0], out[1],
	       out[1] - out[0], out[2]);
	EXPECT_GT(out[2], 8LL * 512 * 1024);
	EXPECT_GE(out[1] - out[0], out[2] - slack);

	/* The cgroup empties once the child is reaped; rmdir may lag a little. */
	for (int i = 0; i < 100 && rmdir(cgroup) && errno == EBUSY; i++)
		usleep(10 * 1000);
	EXPECT_EQ(-1, access(cgroup, F_OK));
	if (enabled)
		write_text(CGROUP_ROOT "/cgroup.subtree_control", "-memory");
	if (mounted)
		umount(CGROUP_ROOT);
}

/*
 * The filters see every atom, also those that policy then refuses: a filter
 * that kills on execve kills a process that submits an execve atom, as it
 * would for a direct call (policy alone would only refuse it with -EINVAL).
 */
TEST(seccomp_sees_refused_calls)
{
	const struct atom atoms[] = {
		{ __NR_execve, { (uintptr_t)"/bin/true", 0, 0 } },
	};
	struct syslet_cqe cqe;
	int status, got;

	REQUIRE_SYSLET();
	status = filtered_child(__NR_execve, SECCOMP_RET_KILL_PROCESS, atoms, 1, &cqe, &got);
	ASSERT_TRUE(WIFSIGNALED(status)) TH_LOG("the filter never saw the execve atom");
	EXPECT_EQ(SIGSYS, WTERMSIG(status));
	EXPECT_EQ(0, got);
}

/*
 * Strict mode entered by an atom holds for the rest of the batch as for
 * direct calls: read and write run, anything else kills the process.
 */
TEST(seccomp_strict_mode_from_atom)
{
	char buf[8] = { 0 };
	int status, p[2];
	pid_t pid;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct syslet_ring ring;

		close(p[0]);
		if (syslet_queue_init(&ring, 8, 0))
			_exit(100);
		prep(&ring, 1, __NR_seccomp, 0 /* SECCOMP_SET_MODE_STRICT */, 0, 0, 0);
		prep(&ring, 2, __NR_write, p[1], (uintptr_t)"a", 1, 0);
		prep(&ring, 3, __NR_getppid, 0, 0, 0, 0);	/* kills */
		prep(&ring, 4, __NR_write, p[1], (uintptr_t)"b", 1, 0);
		syslet_submit(&ring);
		/* Not reached: the exec's return is not a read or a write. */
		_exit(0);
	}
	close(p[1]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status)) TH_LOG("exited with %d", WEXITSTATUS(status));
	EXPECT_EQ(SIGKILL, WTERMSIG(status));
	EXPECT_EQ(1, read(p[0], buf, sizeof(buf)));
	EXPECT_STREQ("a", buf);
	close(p[0]);
}

/*
 * An atom that swaps the signal mask for its duration (ppoll) and is
 * interrupted by task work (an io_uring timeout completing) restarts; the
 * mask afterwards is the thread's own, not the temporary one, as after a
 * direct call.
 */
TEST(temporary_sigmask_survives_restart)
{
	uint64_t before = 0, tmp = 0, after = ~0ULL;
	struct pollfd pfd = { .events = POLLIN };
	struct io_uring_cqe ucqe;
	struct late_write w;
	struct raw_uring uring;
	struct syslet_ring ring;
	struct syslet_cqe cqe;
	int p[2], ret;

	REQUIRE_SYSLET();
	ret = raw_uring_init(&uring, 4);
	if (ret == -ENOSYS || ret == -EPERM)
		SKIP(return, "io_uring unavailable: %s", strerror(-ret));
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, pipe(p));
	pfd.fd = p[0];
	/* The thread blocks nothing; ppoll blocks SIGUSR2 while it waits. */
	ASSERT_EQ(0, syscall(__NR_rt_sigprocmask, SIG_SETMASK, &before, NULL, 8));
	tmp = 1ULL << (SIGUSR2 - 1);
	ASSERT_EQ(0, syslet_queue_init(&ring, 4, 0));
	prep(&ring, 1, __NR_ppoll, (uintptr_t)&pfd, 1, 0, (uintptr_t)&tmp);
	ring.sqes[(ring.sq_tail - 1) & ring.hdr->sq_mask].args[4] = 8;
	ASSERT_EQ(0, start_late_write(&w, p[1], 400, "x"));
	ASSERT_EQ(1, raw_uring_timeout(&uring, 50 * 1000 * 1000, 0x5157));
	ASSERT_EQ(1, syslet_submit(&ring));
	pthread_join(w.thread, NULL);
	cqe = take_cqe(&ring);
	EXPECT_EQ(1, cqe.res) TH_LOG("ppoll did not restart after the task work");
	/* The task work ran. */
	EXPECT_EQ(1, raw_uring_reap(&uring, &ucqe));
	ASSERT_EQ(0, syscall(__NR_rt_sigprocmask, SIG_BLOCK, NULL, &after, 8));
	EXPECT_EQ(before, after) TH_LOG("the temporary mask stayed");
	syslet_queue_exit(&ring);
	raw_uring_exit(&uring);
	close(p[0]);
	close(p[1]);
}

struct confined_spare {
	struct syslet_ring *ring;
	pthread_t thread;
	volatile int filtered;	/* 1: its own filter is on */
	volatile int ret;
	uint64_t cookie;
};

/* A spare that first installs a seccomp filter of its own (this thread only). */
static void *confined_spare_main(void *arg)
{
	struct confined_spare *s = arg;

	s->filtered = install_filter(__NR_getuid, SECCOMP_RET_ERRNO | EPERM) == 0 ? 1 : -1;
	s->ret = syslet_park(s->ring, &s->cookie);
	return NULL;
}

/*
 * A spare confined differently from the submitter (here: its own seccomp
 * filter, which the submitter does not have) is never lent: the program
 * would run on it with other rights. The block is a synchronous fallback,
 * and the spare stays parked until the context closes.
 */
TEST(spare_with_other_confinement_is_not_lent)
{
	struct confined_spare spare = { 0 };
	struct late_write w;
	struct syslet_ring ring;
	struct syslet_cqe cqe;
	char buf[8] = { 0 };
	int p[2], handed = -1;

	REQUIRE_SYSLET();
	ASSERT_EQ(0, syslet_queue_init(&ring, 4, 0));
	ASSERT_EQ(0, pipe(p));
	spare.ring = &ring;
	ASSERT_EQ(0, pthread_create(&spare.thread, NULL, confined_spare_main, &spare));
	ASSERT_EQ(0, wait_counter(ring.fd, "spares_parked", 1));
	ASSERT_EQ(1, spare.filtered);
	prep(&ring, 7, __NR_read, p[0], (uintptr_t)buf, 4, 0);
	ASSERT_EQ(0, start_late_write(&w, p[1], 300, "late"));
	ASSERT_EQ(1, syslet_submit_cont(&ring, 1, 0xC0, &handed));
	EXPECT_EQ(0, handed) TH_LOG("the program was handed to a differently confined spare");
	cqe = take_cqe(&ring);
	EXPECT_EQ(4, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
	EXPECT_EQ(1, syslet_fdinfo_counter(ring.fd, "sync_fallbacks"));
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "handoffs"));
	EXPECT_EQ(1, syslet_fdinfo_counter(ring.fd, "spares_parked"));
	pthread_join(w.thread, NULL);
	/* Closing sends it away. */
	syslet_queue_exit(&ring);
	ASSERT_EQ(0, join_within(spare.thread, 10));
	EXPECT_EQ(-ESHUTDOWN, spare.ret);
}

/*
 * The traced child of exec_refused_while_syscalls_are_traced: an exec with
 * its tracer stopping it at every system call fails with EPERM (exit 0);
 * after the tracer detached it runs (exit 0 too, checked apart: 10 + what
 * went wrong otherwise).
 */
static int traced_exec_child(int go_untraced)
{
	struct syslet_ring ring;

	if (ptrace(PTRACE_TRACEME, 0, 0, 0))
		return 10;
	raise(SIGSTOP);
	if (syslet_queue_init(&ring, 4, 0))
		return 11;
	syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
	if (syslet_submit_n(&ring, 1) != -EPERM)
		return 12;
	/* Tell the tracer to let go, and wait until it has. */
	if (write(go_untraced, "d", 1) != 1)
		return 13;
	raise(SIGSTOP);
	if (syslet_submit_n(&ring, 1) != 1)
		return 14;
	if (syslet_peek_cqe(&ring)->res != getppid())
		return 15;
	return 0;
}

/*
 * Atoms do not pass through the system call entry, where ptrace, audit and
 * the raw_syscalls tracepoints see calls: while a tracer stops a thread at
 * its system calls, the thread's execs fail with EPERM rather than run
 * calls the tracer never sees; once it detaches they run.
 */
TEST(exec_refused_while_syscalls_are_traced)
{
	int status, p[2], detached = 0;
	pid_t pid;

	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(traced_exec_child(p[1]));
	close(p[1]);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int sig;

		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		if (WIFEXITED(status) || WIFSIGNALED(status))
			break;
		ASSERT_TRUE(WIFSTOPPED(status));
		sig = WSTOPSIG(status);
		if (sig == SIGSTOP && !detached && poll(&pfd, 1, 0) == 1) {
			/* Its second stop, after it wrote: let it go, untraced. */
			detached = 1;
			ASSERT_EQ(0, ptrace(PTRACE_DETACH, pid, 0, 0));
			continue;
		}
		/* Stop it at every system call, entry and exit. */
		ASSERT_EQ(0, ptrace(PTRACE_SYSCALL, pid, 0,
				    sig == SIGSTOP || sig == SIGTRAP ? 0 : sig));
	}
	EXPECT_TRUE(detached);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child step %d failed", WEXITSTATUS(status));
}

/*
 * Sends one audit request of @type with @len bytes of @data on the audit
 * netlink socket and reads the kernel's acknowledgement: 0 or -errno.
 */
static int audit_request(int type, const void *data, size_t len)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	union {
		struct nlmsghdr nlh;
		char buf[NLMSG_SPACE(sizeof(struct audit_rule_data) + 64)];
	} req = { 0 }, ack;
	int fd, ret = -EPROTO;
	ssize_t n;

	if (NLMSG_SPACE(len) > sizeof(req.buf))
		return -EINVAL;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
	if (fd < 0)
		return -errno;
	req.nlh.nlmsg_len = NLMSG_LENGTH(len);
	req.nlh.nlmsg_type = type;
	req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.nlh.nlmsg_seq = 1;
	memcpy(NLMSG_DATA(&req.nlh), data, len);
	if (sendto(fd, &req, req.nlh.nlmsg_len, 0, (struct sockaddr *)&kernel,
		   sizeof(kernel)) < 0) {
		ret = -errno;
		goto out;
	}
	/* Replies before the acknowledgement (none for these requests) are skipped. */
	while ((n = recv(fd, &ack, sizeof(ack), 0)) > 0) {
		if (NLMSG_OK(&ack.nlh, n) && ack.nlh.nlmsg_type == NLMSG_ERROR) {
			ret = ((struct nlmsgerr *)NLMSG_DATA(&ack.nlh))->error;
			break;
		}
	}
out:
	close(fd);
	return ret;
}

/* Turns the audit subsystem on (1) or off (0): 0 or -errno. */
static int audit_set_enabled(unsigned int enabled)
{
	struct audit_status status = {
		.mask = AUDIT_STATUS_ENABLED,
		.enabled = enabled,
	};

	return audit_request(AUDIT_SET, &status, sizeof(status));
}

/*
 * Adds (AUDIT_ADD_RULE) or deletes (AUDIT_DEL_RULE) the rule an
 * administrator writes as "auditctl -a always,exit -F arch=b64 -S getppid".
 */
static int audit_getppid_rule(int type)
{
	struct audit_rule_data rule = {
		.flags = AUDIT_FILTER_EXIT,
		.action = AUDIT_ALWAYS,
		.field_count = 1,
		.fields = { AUDIT_ARCH },
		.values = { AUDIT_ARCH_X86_64 },
		.fieldflags = { AUDIT_EQUAL },
	};

	rule.mask[__NR_getppid / 32] |= 1U << (__NR_getppid % 32);
	return audit_request(type, &rule, sizeof(rule));
}

/*
 * In a new process (audit gives a task its audit context when it forks):
 * what SYSLET_IOC_EXEC of one getppid returns, 1 for the atom or -errno;
 * 100 + a step if something else went wrong.
 */
static int exec_in_new_process(void)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return 100;
	if (pid == 0) {
		struct syslet_ring ring;
		int ret;

		if (syslet_queue_init(&ring, 4, 0))
			_exit(101);
		syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		ret = syslet_submit_n(&ring, 1);
		if (ret == 1 && syslet_peek_cqe(&ring)->res != getppid())
			_exit(102);
		/* The exit status carries 1, or the errno offset by 64. */
		_exit(ret == 1 ? 1 : ret < 0 && -ret < 64 ? 64 - ret : 103);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return 104;
	status = WEXITSTATUS(status);
	return status > 64 && status < 100 ? -(status - 64) : status;
}

/*
 * Syscall auditing: while audit is on and a syscall rule is loaded, a
 * thread's calls produce audit records that atoms (which skip the system
 * call entry) would not, so its execs fail with EPERM. Audit being on with
 * no rule, or having been on once (every task forked since keeps the
 * SYSCALL_AUDIT work flag), writes no records and refuses nothing.
 */
TEST(exec_refused_while_syscalls_are_audited)
{
	int ret;

	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	ret = audit_set_enabled(1);
	if (ret == -EPROTONOSUPPORT || ret == -ECONNREFUSED)
		SKIP(return, "no audit in this kernel");
	ASSERT_EQ(0, ret);

	EXPECT_EQ(1, exec_in_new_process()) TH_LOG("audit on, no rule loaded");
	ASSERT_EQ(0, audit_getppid_rule(AUDIT_ADD_RULE));
	EXPECT_EQ(-EPERM, exec_in_new_process()) TH_LOG("audit on, a syscall rule loaded");
	ASSERT_EQ(0, audit_getppid_rule(AUDIT_DEL_RULE));
	EXPECT_EQ(1, exec_in_new_process()) TH_LOG("the rule deleted");

	ASSERT_EQ(0, audit_getppid_rule(AUDIT_ADD_RULE));
	ASSERT_EQ(0, audit_set_enabled(0));
	EXPECT_EQ(1, exec_in_new_process()) TH_LOG("a rule loaded, audit off again");
	ASSERT_EQ(0, audit_getppid_rule(AUDIT_DEL_RULE));
}

/* Writes @value to @path; 0 or -errno. */
static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Writes @value to kernel.syslet_disabled; 0 or -errno. */
static int set_syslet_disabled(const char *value)
{
	return write_file("/proc/sys/kernel/syslet_disabled", value);
}

/* Sets up a ring on a new descriptor: 0 or -errno, as syslet_queue_init() says. */
static int try_setup(void)
{
	struct syslet_ring ring;
	int ret = syslet_queue_init(&ring, 4, 0);

	if (!ret)
		syslet_queue_exit(&ring);
	return ret;
}

/* Drops CAP_SYS_ADMIN from this thread's effective and permitted sets. */
static int drop_sys_admin(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data))
		return -1;
	data[0].effective &= ~(1U << CAP_SYS_ADMIN);
	data[0].permitted &= ~(1U << CAP_SYS_ADMIN);
	data[0].inheritable &= ~(1U << CAP_SYS_ADMIN);
	return syscall(SYS_capset, &hdr, data);
}

/*
 * The administrator's switch, kernel.syslet_disabled: 2 refuses every
 * setup (a ring set up before keeps working), 1 refuses a caller without
 * CAP_SYS_ADMIN only, 0 lets everyone in again.
 */
TEST(admin_switch_disables_setup)
{
	struct syslet_ring before;
	int status;
	pid_t pid;

	if (access("/proc/sys/kernel/syslet_disabled", W_OK))
		SKIP(return, "no kernel.syslet_disabled to write");
	if (syslet_queue_init(&before, 4, 0))
		SKIP(return, "no syslet device");
	ASSERT_EQ(0, set_syslet_disabled("2"));
	EXPECT_EQ(-EPERM, try_setup());
	/* The ring set up before still runs. */
	syslet_prep(syslet_get_sqe(&before), __NR_getppid, 0, 0, 0, 0, 0, 0);
	EXPECT_EQ(1, syslet_submit_n(&before, 1));
	ASSERT_EQ(0, set_syslet_disabled("1"));
	EXPECT_EQ(0, try_setup()) TH_LOG("refused with CAP_SYS_ADMIN");
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (drop_sys_admin())
			_exit(10);
		_exit(try_setup() == -EPERM ? 0 : 11);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("without CAP_SYS_ADMIN: step %d", WEXITSTATUS(status));
	ASSERT_EQ(0, set_syslet_disabled("0"));
	EXPECT_EQ(0, try_setup());
	EXPECT_EQ(-EINVAL, set_syslet_disabled("3")) TH_LOG("out of range accepted");
	syslet_queue_exit(&before);
}

/* Makes the @nth failslab point this thread reaches from now on fail (0: none). */
static int set_fail_nth(int nth)
{
	char value[16];

	snprintf(value, sizeof(value), "%d", nth);
	return write_file("/proc/thread-self/fail-nth", value);
}

/* Whether the failure set up with set_fail_nth() was injected (and clears it). */
static int fail_nth_injected(void)
{
	char value[16] = "";
	int fd = open("/proc/thread-self/fail-nth", O_RDWR), n;

	if (fd < 0)
		return 0;
	n = read(fd, value, sizeof(value) - 1);
	if (write(fd, "0", 1) < 0)
		n = -1;
	close(fd);
	return n > 0 && atoi(value) == 0;
}

/*
 * One operation under fault injection: returns its result as 0 or -errno.
 * @ring is a set-up, mapped ring (the setup operation makes its own).
 */
enum fault_op { OP_SETUP, OP_MMAP, OP_EXEC, OP_EXEC_CONT, OP_PARK, OP_REGISTER, OP_COUNT };

static const char *const fault_op_names[] = {
	"setup", "mmap", "exec", "exec with a continuation", "park", "threadlet register",
};

static int run_fault_op(enum fault_op op, struct syslet_ring *ring)
{
	struct syslet_exec exec = { .to_submit = 1, .continuation = op == OP_EXEC_CONT ? 8 : 0 };
	struct syslet_park park = { .timeout_ns = 1000 };
	struct syslet_ring fresh;
	__u32 index;
	void *map;
	int ret;

	switch (op) {
	case OP_SETUP:
		ret = syslet_queue_init(&fresh, 8, 0);
		if (!ret)
			syslet_queue_exit(&fresh);
		return ret;
	case OP_MMAP:
		map = mmap(NULL, ring->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring->fd, 0);
		if (map == MAP_FAILED)
			return -errno;
		munmap(map, ring->mem_size);
		return 0;
	case OP_EXEC:
	case OP_EXEC_CONT:
		syslet_prep(syslet_get_sqe(ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		__atomic_store_n(&ring->hdr->sq_tail, ring->sq_tail, __ATOMIC_RELEASE);
		ret = ioctl(ring->fd, SYSLET_IOC_EXEC, &exec) < 0 ? -errno : 0;
		/* Not consumed after a failure: take it back. */
		ring->sq_tail = __atomic_load_n(&ring->hdr->sq_head, __ATOMIC_ACQUIRE);
		__atomic_store_n(&ring->hdr->sq_tail, ring->sq_tail, __ATOMIC_RELEASE);
		__atomic_store_n(&ring->hdr->cq_head, __atomic_load_n(&ring->hdr->cq_tail,
				 __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
		return ret;
	case OP_PARK:
		ret = ioctl(ring->fd, SYSLET_IOC_PARK, &park) < 0 ? -errno : 0;
		return ret == -ETIMEDOUT ? 0 : ret;
	default:
		ret = ioctl(ring->fd, SYSLET_IOC_THREADLET_REGISTER, &index) < 0 ? -errno : 0;
		if (!ret)
			ioctl(ring->fd, SYSLET_IOC_THREADLET_UNREGISTER);
		return ret;
	}
}

/*
 * Every allocation an operation makes, failed in turn (failslab's
 * fail-nth: the Nth slab allocation of this thread fails), ends the
 * operation with ENOMEM or lets it succeed, never anything else; the
 * suite's dmesg scan and rmmod then show that nothing oopsed or leaked.
 */
TEST(allocation_failures_are_clean_errors)
{
	struct syslet_ring ring;

	/*
	 * GFP_KERNEL allocations fail too, and quietly: an injected failure
	 * prints a stack trace by default, which the dmesg scan would take for
	 * a report.
	 */
	if (access("/proc/thread-self/fail-nth", W_OK) ||
	    write_file("/sys/kernel/debug/failslab/ignore-gfp-wait", "N") ||
	    write_file("/sys/kernel/debug/failslab/verbose", "0"))
		SKIP(return, "no failslab fault injection in this kernel");
	ASSERT_EQ(0, syslet_queue_init(&ring, 8, 0));
	for (int op = 0; op < OP_COUNT; op++) {
		int points = 0;

		for (int nth = 1; nth < 100; nth++) {
			int ret, injected;

			ASSERT_EQ(0, set_fail_nth(nth));
			ret = run_fault_op(op, &ring);
			injected = fail_nth_injected();
			if (!injected) {
				EXPECT_EQ(0, ret) TH_LOG("%s failed with no fault injected: %s",
						       fault_op_names[op], strerror(-ret));
				break;
			}
			points++;
			EXPECT_TRUE(ret == 0 || ret == -ENOMEM)
				TH_LOG("%s, allocation %d failed: %s", fault_op_names[op], nth,
				       strerror(-ret));
		}
		TH_LOG("%s: %d allocations failed in turn", fault_op_names[op], points);
		/* A plain exec of a small batch allocates nothing (on the stack). */
		if (op != OP_EXEC)
			EXPECT_LT(0, points) TH_LOG("%s allocates nothing?", fault_op_names[op]);
	}
	write_file("/sys/kernel/debug/failslab/ignore-gfp-wait", "Y");
	write_file("/sys/kernel/debug/failslab/verbose", "2");
	/* Still works. */
	EXPECT_EQ(0, run_fault_op(OP_EXEC, &ring));
	syslet_queue_exit(&ring);
}

TEST_HARNESS_MAIN
