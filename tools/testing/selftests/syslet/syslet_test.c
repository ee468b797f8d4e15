// SPDX-License-Identifier: GPL-2.0
/*
 * syslet kselftests: setup and mmap, the rings in both directions, inline
 * execution of real system calls, chains, policy, seccomp, and bad input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/syslet.h>

#include "libsyslet.h"
#include "syslet_util.h"
#include "../kselftest_harness.h"

/* Opens the device or skips the test if the module is not loaded. */
static int open_syslet(struct __test_metadata *_metadata)
{
	int fd = open(SYSLET_DEVICE, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		SKIP(return -1, "%s missing: is the syslet module loaded?", SYSLET_DEVICE);
	return fd;
}

/* A ring set up and mapped, with 8 submission and 16 completion entries. */
FIXTURE(ring) {
	struct syslet_ring ring;
};

FIXTURE_SETUP(ring)
{
	int fd = open_syslet(_metadata);

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_EQ(0, syslet_queue_init(&self->ring, 8, 0));
}

FIXTURE_TEARDOWN(ring)
{
	syslet_queue_exit(&self->ring);
}

/* Submits one atom and returns its completion (copied). */
static struct syslet_cqe run_one(struct __test_metadata *_metadata, struct syslet_ring *ring,
				 unsigned int nr, uint64_t a0, uint64_t a1, uint64_t a2,
				 uint64_t a3)
{
	struct syslet_cqe out = { 0 }, *cqe;
	struct syslet_sqe *sqe = syslet_get_sqe(ring);

	EXPECT_NE(NULL, sqe);
	if (!sqe)
		return out;
	syslet_prep(sqe, nr, a0, a1, a2, a3, 0, 0);
	sqe->user_data = 0x5157 + nr;
	EXPECT_EQ(1, syslet_submit(ring));
	cqe = syslet_peek_cqe(ring);
	EXPECT_NE(NULL, cqe);
	if (!cqe)
		return out;
	out = *cqe;
	EXPECT_EQ(0x5157 + nr, out.user_data);
	syslet_cqe_seen(ring);
	return out;
}

TEST_F(ring, setup_reports_layout)
{
	struct syslet_params *p = &self->ring.params;

	EXPECT_EQ(8, p->sq_entries);
	EXPECT_EQ(16, p->cq_entries);
	EXPECT_EQ(0, p->mmap_size % getpagesize());
	EXPECT_GE(p->sqes_off, sizeof(struct syslet_ring_header));
	EXPECT_GE(p->cqes_off, p->sqes_off + 8 * sizeof(struct syslet_sqe));
	EXPECT_LE(p->cqes_off + 16 * sizeof(struct syslet_cqe), p->mmap_size);
	EXPECT_EQ(7, self->ring.hdr->sq_mask);
	EXPECT_EQ(15, self->ring.hdr->cq_mask);
	EXPECT_EQ(0, self->ring.hdr->sq_head);
	EXPECT_EQ(0, self->ring.hdr->cq_tail);
}

TEST_F(ring, setup_twice_is_busy)
{
	struct syslet_params p = { .sq_entries = 8 };

	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_SETUP, &p));
	EXPECT_EQ(EBUSY, errno);
}

/*
 * The output fields are ignored on entry: the structure an earlier setup
 * filled (offsets, threadlet slots and all) sets up another file's rings,
 * which get the same layout.
 */
TEST_F(ring, setup_params_reused_from_an_earlier_setup)
{
	struct syslet_params p = self->ring.params;
	int fd = open_syslet(_metadata);

	ASSERT_GE(fd, 0);
	ASSERT_NE(0, p.threadlets_off);
	ASSERT_NE(0, p.mmap_size);
	EXPECT_EQ(0, ioctl(fd, SYSLET_IOC_SETUP, &p)) TH_LOG("errno %d", errno);
	EXPECT_EQ(self->ring.params.mmap_size, p.mmap_size);
	EXPECT_EQ(self->ring.params.threadlets_off, p.threadlets_off);
	EXPECT_EQ(self->ring.params.cqes_off, p.cqes_off);
	close(fd);
}

TEST(bad_sizes_and_flags)
{
	static const struct { unsigned int sq, cq, flags; } bad[] = {
		{ 0, 0, 0 }, { 3, 0, 0 }, { 8192, 0, 0 }, { 8, 4, 0 }, { 8, 24, 0 },
		{ 8, 65536, 0 }, { 8, 0, 2 }, { 8, 0, 1U << 31 },
	};
	int fd = open_syslet(_metadata);

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct syslet_params p = {
			.sq_entries = bad[i].sq, .cq_entries = bad[i].cq, .flags = bad[i].flags,
		};

		EXPECT_EQ(-1, ioctl(fd, SYSLET_IOC_SETUP, &p))
			TH_LOG("sq %u cq %u flags %u accepted", bad[i].sq, bad[i].cq, bad[i].flags);
		EXPECT_EQ(EINVAL, errno);
	}
	{
		struct syslet_params p = { .sq_entries = 8, .resv = { 1 } };

		EXPECT_EQ(-1, ioctl(fd, SYSLET_IOC_SETUP, &p));
		EXPECT_EQ(EINVAL, errno);
	}
	/* The largest sizes work. */
	{
		struct syslet_params p = {
			.sq_entries = SYSLET_MAX_SQ_ENTRIES, .cq_entries = SYSLET_MAX_CQ_ENTRIES,
		};

		EXPECT_EQ(0, ioctl(fd, SYSLET_IOC_SETUP, &p));
	}
	close(fd);
}

TEST(use_before_setup)
{
	struct syslet_exec exec = { .to_submit = 1 };
	struct syslet_park park = { 0 };
	struct syslet_wait wait = { .min_complete = 1 };
	int fd = open_syslet(_metadata);
	struct pollfd pfd;
	__u32 index;

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	EXPECT_EQ(-1, ioctl(fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, ioctl(fd, SYSLET_IOC_PARK, &park));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, ioctl(fd, SYSLET_IOC_WAIT, &wait));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, ioctl(fd, SYSLET_IOC_THREADLET_REGISTER, &index));
	EXPECT_EQ(ENXIO, errno);
	/* No rings, nothing to wait for: poll says so at once. */
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLERR, pfd.revents & POLLERR);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, ioctl(fd, _IO(SYSLET_IOC_MAGIC, 99)));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

TEST_F(ring, bad_mmap)
{
	size_t size = self->ring.mem_size;
	struct syslet_ring_header *h2;
	int fd = self->ring.fd;

	EXPECT_EQ(MAP_FAILED, mmap(NULL, size - 4096 ?: 4096 * 2, PROT_READ, MAP_SHARED, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size + 4096, PROT_READ, MAP_SHARED, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 4096));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0));
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
	EXPECT_EQ(EINVAL, errno);

	/* A second full mapping works and shows the same memory. */
	h2 = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, h2);
	EXPECT_EQ(self->ring.hdr->sq_entries, h2->sq_entries);
	munmap(h2, size);
}

TEST_F(ring, getpid_runs_inline)
{
	struct syslet_cqe cqe = run_one(_metadata, &self->ring, __NR_getpid, 0, 0, 0, 0);

	EXPECT_EQ(getpid(), cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_INLINE, cqe.flags);
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "submitted"));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "completed_inline"));
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "errors"));
	/* The shared indices moved. */
	EXPECT_EQ(1, self->ring.hdr->sq_head);
	EXPECT_EQ(1, self->ring.hdr->cq_tail);
}

/* Voluntary context switches of the calling thread so far. */
static long voluntary_switches(void)
{
	char line[256];
	long value = -1;
	FILE *f = fopen("/proc/thread-self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "voluntary_ctxt_switches:", 24))
			value = strtol(line + 24, NULL, 10);
	if (f)
		fclose(f);
	return value;
}

/* Runs @rounds batches of 8 getppid atoms; returns how many completed right. */
static int run_getppid_batches(struct syslet_ring *ring, int rounds)
{
	int good = 0;

	for (int round = 0; round < rounds; round++) {
		for (int i = 0; i < 8; i++)
			syslet_prep(syslet_get_sqe(ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		if (syslet_submit(ring) != 8)
			return -1;
		for (struct syslet_cqe *cqe; (cqe = syslet_peek_cqe(ring)); syslet_cqe_seen(ring))
			good += cqe->res == getppid();
	}
	return good;
}

TEST_F(ring, inline_path_switches_no_thread)
{
	long before, after;

	/*
	 * Warm up with the very code measured below: a first touch of a page
	 * of this program may fault it in from the (9p) root, which sleeps.
	 */
	ASSERT_EQ(8, run_getppid_batches(&self->ring, 1));
	before = voluntary_switches();
	ASSERT_GE(before, 0);
	ASSERT_EQ(64, run_getppid_batches(&self->ring, 8));
	after = voluntary_switches();
	/* 64 atoms ran in this thread's own context: it never gave up the CPU. */
	EXPECT_EQ(before, after);
	EXPECT_EQ(72, syslet_fdinfo_counter(self->ring.fd, "completed_inline"));
}

TEST_F(ring, openat_read_close_real_file)
{
	static const char text[] = "syslet reads this file\n";
	char path[] = "/tmp/syslet-test-XXXXXX", buf[64] = { 0 };
	struct syslet_cqe cqe;
	int fd = mkstemp(path);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(sizeof(text) - 1, write(fd, text, sizeof(text) - 1));
	close(fd);

	cqe = run_one(_metadata, &self->ring, __NR_openat, AT_FDCWD, (uintptr_t)path, O_RDONLY, 0);
	ASSERT_GE(cqe.res, 0);
	fd = cqe.res;
	cqe = run_one(_metadata, &self->ring, __NR_read, fd, (uintptr_t)buf, sizeof(buf), 0);
	EXPECT_EQ(sizeof(text) - 1, cqe.res);
	EXPECT_STREQ(text, buf);
	cqe = run_one(_metadata, &self->ring, __NR_close, fd, 0, 0, 0);
	EXPECT_EQ(0, cqe.res);
	/* The descriptor really is closed. */
	EXPECT_EQ(-1, fcntl(fd, F_GETFD));
	EXPECT_EQ(EBADF, errno);
	unlink(path);
}

TEST_F(ring, write_to_pipe)
{
	char buf[16] = { 0 };
	struct syslet_cqe cqe;
	int p[2];

	ASSERT_EQ(0, pipe(p));
	cqe = run_one(_metadata, &self->ring, __NR_write, p[1], (uintptr_t)"hello", 5, 0);
	EXPECT_EQ(5, cqe.res);
	EXPECT_EQ(5, read(p[0], buf, sizeof(buf)));
	EXPECT_STREQ("hello", buf);
	close(p[0]);
	close(p[1]);
}

TEST_F(ring, batch_runs_in_order)
{
	static const char bytes[] = "01234567";
	char buf[16] = { 0 };
	int p[2];

	ASSERT_EQ(0, pipe(p));
	for (int i = 0; i < 8; i++) {
		struct syslet_sqe *sqe = syslet_get_sqe(&self->ring);

		ASSERT_NE(NULL, sqe);
		syslet_prep(sqe, __NR_write, p[1], (uintptr_t)&bytes[i], 1, 0, 0, 0);
		sqe->user_data = i;
	}
	/* The submission ring is full now. */
	EXPECT_EQ(NULL, syslet_get_sqe(&self->ring));
	EXPECT_EQ(8, syslet_submit(&self->ring));
	for (int i = 0; i < 8; i++) {
		struct syslet_cqe *cqe = syslet_peek_cqe(&self->ring);

		ASSERT_NE(NULL, cqe);
		EXPECT_EQ(i, cqe->user_data);
		EXPECT_EQ(1, cqe->res);
		syslet_cqe_seen(&self->ring);
	}
	EXPECT_EQ(NULL, syslet_peek_cqe(&self->ring));
	EXPECT_EQ(8, read(p[0], buf, sizeof(buf)));
	EXPECT_STREQ(bytes, buf);
	close(p[0]);
	close(p[1]);
}

TEST_F(ring, partial_submit_and_wraparound)
{
	/* 40 atoms through an 8-entry ring, 3 at a time: indices wrap. */
	int done = 0;

	while (done < 40) {
		struct syslet_cqe *cqe;
		int queued = 0, ret;

		while (queued < 5 && done + queued < 40) {
			struct syslet_sqe *sqe = syslet_get_sqe(&self->ring);

			ASSERT_NE(NULL, sqe);
			syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
			sqe->user_data = done + queued;
			queued++;
		}
		ret = syslet_submit_n(&self->ring, 3);
		ASSERT_GT(ret, 0);
		ASSERT_LE(ret, 3);
		while ((cqe = syslet_peek_cqe(&self->ring))) {
			EXPECT_EQ(done, cqe->user_data);
			EXPECT_EQ(getppid(), cqe->res);
			syslet_cqe_seen(&self->ring);
			done++;
		}
		/* Whatever was not consumed is still queued: drain it. */
		while (self->ring.hdr->sq_head != self->ring.sq_tail) {
			ASSERT_GT(syslet_submit(&self->ring), 0);
			while ((cqe = syslet_peek_cqe(&self->ring))) {
				EXPECT_EQ(done, cqe->user_data);
				syslet_cqe_seen(&self->ring);
				done++;
			}
		}
	}
	EXPECT_EQ(40, syslet_fdinfo_counter(self->ring.fd, "completed_inline"));
}

TEST_F(ring, chain_stops_at_first_error)
{
	static const struct { unsigned int nr; int64_t arg0; unsigned int flags; } atoms[] = {
		{ __NR_getpid, 0, SYSLET_SQE_LINK },
		{ __NR_close, -1, SYSLET_SQE_LINK },	/* fails: EBADF */
		{ __NR_getpid, 0, SYSLET_SQE_LINK },	/* cancelled */
		{ __NR_getpid, 0, 0 },			/* end of chain: cancelled */
		{ __NR_getpid, 0, 0 },			/* new chain: runs */
	};
	const int64_t expect[] = { getpid(), -EBADF, -ECANCELED, -ECANCELED, getpid() };

	for (int i = 0; i < 5; i++) {
		struct syslet_sqe *sqe = syslet_get_sqe(&self->ring);

		syslet_prep(sqe, atoms[i].nr, atoms[i].arg0, 0, 0, 0, 0, 0);
		sqe->flags = atoms[i].flags;
		sqe->user_data = i;
	}
	EXPECT_EQ(5, syslet_submit(&self->ring));
	for (int i = 0; i < 5; i++) {
		struct syslet_cqe *cqe = syslet_peek_cqe(&self->ring);

		ASSERT_NE(NULL, cqe);
		EXPECT_EQ(i, cqe->user_data);
		EXPECT_EQ(expect[i], cqe->res) TH_LOG("atom %d", i);
		if (i == 2 || i == 3)
			EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe->flags);
		syslet_cqe_seen(&self->ring);
	}
}

TEST_F(ring, refused_calls)
{
	static const unsigned int refused[] = {
		__NR_fork, __NR_vfork, __NR_clone, __NR_clone3, __NR_execve, __NR_execveat,
		__NR_exit, __NR_exit_group, __NR_rt_sigreturn, __NR_sigaltstack,
		__NR_arch_prctl, __NR_iopl, __NR_ioperm, __NR_modify_ldt, __NR_restart_syscall,
	};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct syslet_cqe cqe = run_one(_metadata, &self->ring, refused[i], 0, 0, 0, 0);

		EXPECT_EQ(-EINVAL, cqe.res) TH_LOG("syscall %u not refused", refused[i]);
		EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe.flags);
	}
	/* We are still here, with our own pid. */
	EXPECT_EQ(getpid(), syscall(__NR_getpid));
}

TEST_F(ring, reentry_is_refused)
{
	struct syslet_exec exec = { .to_submit = 1 };
	struct syslet_cqe cqe = run_one(_metadata, &self->ring, __NR_ioctl, self->ring.fd,
					SYSLET_IOC_EXEC, (uintptr_t)&exec, 0);

	EXPECT_EQ(-EDEADLK, cqe.res);
	EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe.flags);
}

TEST_F(ring, bad_numbers_and_flags)
{
	struct syslet_cqe cqe = run_one(_metadata, &self->ring, 100000, 0, 0, 0, 0);
	struct syslet_sqe *sqe;

	EXPECT_EQ(-ENOSYS, cqe.res);
	cqe = run_one(_metadata, &self->ring, 0xffffffff, 0, 0, 0, 0);
	EXPECT_EQ(-ENOSYS, cqe.res);
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
	sqe->flags = 0x80;
	EXPECT_EQ(1, syslet_submit(&self->ring));
	EXPECT_EQ(-EINVAL, syslet_peek_cqe(&self->ring)->res);
	syslet_cqe_seen(&self->ring);
}

TEST_F(ring, bad_exec_args)
{
	struct syslet_exec exec = { .to_submit = 1, .flags = 1 };

	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(EINVAL, errno);
	exec.flags = 0;
	exec.resv = 1;
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	/* Nothing queued: nothing to do. */
	exec.resv = 0;
	EXPECT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
}

TEST_F(ring, bad_park_and_wait_args)
{
	struct syslet_park park = { .resv = 1 };
	struct syslet_wait wait = { .flags = 1 };

	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_PARK, &park));
	EXPECT_EQ(EINVAL, errno);
	park = (struct syslet_park){ .timeout_ns = -1 };
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_PARK, &park));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_WAIT, &wait));
	EXPECT_EQ(EINVAL, errno);
	wait = (struct syslet_wait){ .resv = 1 };
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_WAIT, &wait));
	EXPECT_EQ(EINVAL, errno);
	/* More than the completion ring holds could never be waited for. */
	wait = (struct syslet_wait){ .min_complete = self->ring.params.cq_entries + 1 };
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_WAIT, &wait));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_PARK, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_CANCEL, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	/* Nothing was parked by any of it. */
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
	/* A time limit: the spare leaves with ETIMEDOUT, unparked. */
	park = (struct syslet_park){ .timeout_ns = 20 * 1000 * 1000 };
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_PARK, &park));
	EXPECT_EQ(ETIMEDOUT, errno);
	EXPECT_EQ(0, park.continuation);
	EXPECT_EQ(0, syslet_fdinfo_counter(self->ring.fd, "spares_parked"));
}

TEST_F(ring, corrupt_indices)
{
	struct syslet_ring_header *h = self->ring.hdr;
	struct syslet_exec exec = { .to_submit = 8 };

	/* More submissions than the ring holds. */
	h->sq_tail = h->sq_head + 9;
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(EINVAL, errno);
	h->sq_tail = h->sq_head - 1;
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(EINVAL, errno);
	/* A completion head ahead of the tail. */
	h->sq_tail = h->sq_head;
	h->cq_head = h->cq_tail + 5;
	EXPECT_EQ(-1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &(struct syslet_exec){ .to_submit = 1 }));
	/* Nothing queued is fine even then; queue one to see the error. */
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getpid, 0, 0, 0, 0, 0, 0);
	EXPECT_EQ(-EINVAL, syslet_submit(&self->ring));
	/* Garbage in the ring's (kernel-owned) head is ignored: repair and run. */
	h->cq_head = h->cq_tail;
	h->sq_head = 12345;
	EXPECT_EQ(1, syslet_submit(&self->ring));
	EXPECT_EQ(1, h->sq_head);
}

TEST_F(ring, full_completion_ring_is_busy)
{
	/* 16 completions fill the completion ring; the 17th atom waits. */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 8; i++)
			syslet_prep(syslet_get_sqe(&self->ring), __NR_getpid, 0, 0, 0, 0, 0, 0);
		EXPECT_EQ(8, syslet_submit(&self->ring));
	}
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getpid, 0, 0, 0, 0, 0, 0);
	EXPECT_EQ(-EBUSY, syslet_submit(&self->ring));
	syslet_cqe_seen(&self->ring);
	EXPECT_EQ(1, syslet_submit(&self->ring));
}

TEST_F(ring, munmap_while_in_use)
{
	struct syslet_ring_header *h2;
	struct syslet_exec exec = { .to_submit = 1 };
	size_t size = self->ring.mem_size;

	/* Queue through a second mapping, drop the first, run anyway. */
	syslet_prep(syslet_get_sqe(&self->ring), __NR_getpid, 0, 0, 0, 0, 0, 0);
	__atomic_store_n(&self->ring.hdr->sq_tail, self->ring.sq_tail, __ATOMIC_RELEASE);
	h2 = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, self->ring.fd, 0);
	ASSERT_NE(MAP_FAILED, h2);
	ASSERT_EQ(0, munmap(self->ring.mem, size));
	self->ring.mem = NULL;
	EXPECT_EQ(1, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(1, h2->cq_tail);
	ASSERT_EQ(0, munmap(h2, size));
	/* With no mapping at all, exec still runs what is queued (none) safely. */
	EXPECT_EQ(0, ioctl(self->ring.fd, SYSLET_IOC_EXEC, &exec));
	EXPECT_EQ(1, syslet_fdinfo_counter(self->ring.fd, "completed_inline"));
}

TEST(closed_fd_keeps_mapping)
{
	struct syslet_ring ring;
	int fd = open_syslet(_metadata);

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_EQ(0, syslet_queue_init(&ring, 4, 0));
	close(ring.fd);
	/* The mapping stays valid after the last descriptor is gone. */
	EXPECT_EQ(4, ring.hdr->sq_entries);
	ring.hdr->sq_tail = 1;
	EXPECT_EQ(-1, ioctl(ring.fd, SYSLET_IOC_EXEC, &(struct syslet_exec){ .to_submit = 1 }));
	EXPECT_EQ(EBADF, errno);
	munmap(ring.mem, ring.mem_size);
}

TEST(foreign_process_is_refused)
{
	struct syslet_ring ring;
	int fd = open_syslet(_metadata), status;
	pid_t pid;

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_EQ(0, syslet_queue_init(&ring, 4, 0));
	syslet_prep(syslet_get_sqe(&ring), __NR_getpid, 0, 0, 0, 0, 0, 0);
	__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct syslet_exec exec = { .to_submit = 1 };
		struct syslet_params p = { .sq_entries = 4 };

		/* The rings are not inherited (VM_DONTCOPY)... */
		if (msync(ring.mem, ring.mem_size, MS_ASYNC) != -1 || errno != ENOMEM)
			_exit(4);
		/* ...and the inherited fd is refused. */
		if (ioctl(ring.fd, SYSLET_IOC_EXEC, &exec) != -1 || errno != EPERM)
			_exit(1);
		if (ioctl(ring.fd, SYSLET_IOC_SETUP, &p) != -1 || errno != EPERM)
			_exit(2);
		if (mmap(NULL, ring.mem_size, PROT_READ, MAP_SHARED, ring.fd, 0) != MAP_FAILED ||
		    errno != EPERM)
			_exit(3);
		if (ioctl(ring.fd, SYSLET_IOC_PARK, &(struct syslet_park){ 0 }) != -1 ||
		    errno != EPERM)
			_exit(5);
		if (ioctl(ring.fd, SYSLET_IOC_WAIT, &(struct syslet_wait){ 0 }) != -1 ||
		    errno != EPERM)
			_exit(6);
		if (ioctl(ring.fd, SYSLET_IOC_CANCEL, &(uint64_t){ 1 }) != -1 || errno != EPERM)
			_exit(7);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	/* Nothing ran on the child's behalf; the owner still can. */
	EXPECT_EQ(0, syslet_fdinfo_counter(ring.fd, "submitted"));
	EXPECT_EQ(1, syslet_submit(&ring));
	syslet_queue_exit(&ring);
}

struct exec_thread_arg {
	struct syslet_ring *ring;
	int consumed;
};

static void *exec_thread(void *data)
{
	struct exec_thread_arg *arg = data;
	struct syslet_exec exec = { .to_submit = 1 };
	int ret;

	while ((ret = ioctl(arg->ring->fd, SYSLET_IOC_EXEC, &exec)) > 0)
		arg->consumed += ret;
	return NULL;
}

TEST(two_threads_exec_concurrently)
{
	struct exec_thread_arg args[2];
	struct syslet_ring ring;
	pthread_t threads[2];
	int fd = open_syslet(_metadata), seen[256] = { 0 };

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_EQ(0, syslet_queue_init(&ring, 256, 256));
	for (int i = 0; i < 256; i++) {
		struct syslet_sqe *sqe = syslet_get_sqe(&ring);

		syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
		sqe->user_data = i;
	}
	__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++) {
		args[i] = (struct exec_thread_arg){ .ring = &ring };
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, exec_thread, &args[i]));
	}
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	EXPECT_EQ(256, args[0].consumed + args[1].consumed);
	for (int i = 0; i < 256; i++) {
		struct syslet_cqe *cqe = syslet_peek_cqe(&ring);

		ASSERT_NE(NULL, cqe);
		ASSERT_LT(cqe->user_data, 256);
		seen[cqe->user_data]++;
		EXPECT_EQ(getpid(), cqe->res);
		syslet_cqe_seen(&ring);
	}
	for (int i = 0; i < 256; i++) {
		EXPECT_EQ(1, seen[i]) TH_LOG("user_data %d seen %d times", i, seen[i]);
	}
	syslet_queue_exit(&ring);
}

TEST(process_exit_with_ring_mapped)
{
	int fd = open_syslet(_metadata), status;
	pid_t pid;

	if (fd < 0 && _metadata->exit_code == KSFT_SKIP)
		return;
	ASSERT_GE(fd, 0);
	close(fd);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct syslet_ring ring;

		if (syslet_queue_init(&ring, 16, 0))
			_exit(1);
		for (int i = 0; i < 16; i++)
			syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		if (syslet_submit(&ring) != 16)
			_exit(2);
		/* Leave queued work, the mapping and the fd behind. */
		syslet_prep(syslet_get_sqe(&ring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/*
 * Runs @nr as an atom in a child under a filter giving it @action (the filter
 * checks seccomp_data.arch first: see install_filter()).
 */
static int seccomp_child(unsigned int nr, unsigned int action, int64_t *res)
{
	int status, p[2];
	pid_t pid;

	if (pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		struct syslet_ring ring;
		struct syslet_cqe *cqe;
		int64_t out = 1;

		close(p[0]);
		if (syslet_queue_init(&ring, 4, 0) || install_filter(nr, action))
			_exit(100);
		syslet_prep(syslet_get_sqe(&ring), nr, 0, 0, 0, 0, 0, 0);
		if (syslet_submit(&ring) == 1 && (cqe = syslet_peek_cqe(&ring)))
			out = cqe->res;
		if (write(p[1], &out, sizeof(out)) != sizeof(out))
			_exit(101);
		_exit(0);
	}
	close(p[1]);
	*res = 1;
	if (read(p[0], res, sizeof(*res)) != sizeof(*res))
		*res = 1;
	close(p[0]);
	waitpid(pid, &status, 0);
	return status;
}

TEST(seccomp_errno_applies_to_atoms)
{
	int64_t res;
	int status;

	if (open_syslet(_metadata) < 0)
		return;
	status = seccomp_child(__NR_getppid, SECCOMP_RET_ERRNO | EACCES, &res);
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(-EACCES, res);
}

TEST(seccomp_kill_kills_the_submitter)
{
	int64_t res;
	int status;

	if (open_syslet(_metadata) < 0)
		return;
	status = seccomp_child(__NR_getppid, SECCOMP_RET_KILL_PROCESS, &res);
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(SIGSYS, WTERMSIG(status));
	/* The child never got to report a result. */
	EXPECT_EQ(1, res);
}

TEST(seccomp_trap_and_trace)
{
	int64_t res;
	int status;

	if (open_syslet(_metadata) < 0)
		return;
	/*
	 * TRAP: the call is skipped with -ENOSYS and no SIGSYS is raised: a
	 * handler would see (and, emulating the call, rewrite) the registers
	 * of the exec ioctl, not the atom's.
	 */
	status = seccomp_child(__NR_getppid, SECCOMP_RET_TRAP, &res);
	EXPECT_TRUE(WIFEXITED(status)) TH_LOG("killed by signal %d", WTERMSIG(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(-ENOSYS, res);
	/* TRACE with no tracer: -ENOSYS, as for a direct call. */
	status = seccomp_child(__NR_getppid, SECCOMP_RET_TRACE, &res);
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(-ENOSYS, res);
	/* USER_NOTIF: a listener would see the ioctl's registers: -ENOSYS. */
	status = seccomp_child(__NR_getppid, SECCOMP_RET_USER_NOTIF, &res);
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(-ENOSYS, res);
	/* LOG runs the call. */
	status = seccomp_child(__NR_getppid, SECCOMP_RET_LOG, &res);
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(getpid(), res) TH_LOG("the child's parent is this process");
	/* ALLOW of other calls still runs them. */
	status = seccomp_child(__NR_getuid, SECCOMP_RET_ERRNO | EPERM, &res);
	EXPECT_EQ(-EPERM, res);
}

TEST(seccomp_allowed_atoms_run)
{
	int64_t res;
	int status;

	if (open_syslet(_metadata) < 0)
		return;
	/* The filter targets getuid; getpid as an atom must still run. */
	status = seccomp_child(__NR_getpid, SECCOMP_RET_ALLOW, &res);
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_GT(res, 0);
}

/* Submits the entries queued on @ring and takes their @n results, in order. */
static void run_queued(struct __test_metadata *_metadata, struct syslet_ring *ring, int n,
		       long long *res)
{
	ASSERT_EQ(n, syslet_submit(ring));
	for (int i = 0; i < n; i++) {
		struct syslet_cqe *cqe = syslet_peek_cqe(ring);

		ASSERT_NE(NULL, cqe);
		res[i] = cqe->res;
		syslet_cqe_seen(ring);
	}
}

/* The prep helpers run the calls they are named after, with their arguments in order. */
TEST_F(ring, prep_helpers_run_the_calls_they_name)
{
	char dir[] = "/tmp/syslet-prep-XXXXXX", path[64], back[6] = { 0 }, dents[4096];
	struct statx stx = { 0 };
	long long res[4];
	int fd, dfd;

	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	syslet_prep_openat(syslet_get_sqe(&self->ring), AT_FDCWD, path, O_CREAT | O_RDWR, 0600);
	run_queued(_metadata, &self->ring, 1, res);
	ASSERT_LE(0, res[0]);
	fd = res[0];
	syslet_prep_write(syslet_get_sqe(&self->ring), fd, "hello", 5);
	syslet_prep_pwrite(syslet_get_sqe(&self->ring), fd, "J", 1, 0);
	syslet_prep_fsync(syslet_get_sqe(&self->ring), fd);
	syslet_prep_pread(syslet_get_sqe(&self->ring), fd, back, 5, 0);
	run_queued(_metadata, &self->ring, 4, res);
	EXPECT_EQ(5, res[0]);
	EXPECT_EQ(1, res[1]);
	EXPECT_EQ(0, res[2]);
	EXPECT_EQ(5, res[3]);
	EXPECT_STREQ("Jello", back);
	ASSERT_EQ(0, lseek(fd, 0, SEEK_SET));
	syslet_prep_read(syslet_get_sqe(&self->ring), fd, back, 2);
	syslet_prep_statx(syslet_get_sqe(&self->ring), AT_FDCWD, path, 0, STATX_SIZE, &stx);
	syslet_prep_close(syslet_get_sqe(&self->ring), fd);
	run_queued(_metadata, &self->ring, 3, res);
	EXPECT_EQ(2, res[0]);
	EXPECT_EQ(0, res[1]);
	EXPECT_EQ(5, stx.stx_size);
	EXPECT_EQ(0, res[2]);
	EXPECT_EQ(-1, fcntl(fd, F_GETFD)) TH_LOG("the close atom did not close it");
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, dfd);
	syslet_prep_getdents64(syslet_get_sqe(&self->ring), dfd, dents, sizeof(dents));
	run_queued(_metadata, &self->ring, 1, res);
	EXPECT_LT(0, res[0]);
	EXPECT_NE(NULL, memmem(dents, res[0] > 0 ? res[0] : 0, "f", 2)) TH_LOG("no entry f");
	close(dfd);
	unlink(path);
	rmdir(dir);
}

/*
 * Queues openat(@path), read(fd <- openat's result) and close(fd <- the
 * chain's first result) as one chain, and runs it in one exec.
 */
static int submit_open_read_close(struct syslet_ring *ring, const char *path, char *buf,
				  size_t len)
{
	struct syslet_sqe *sqe;

	sqe = syslet_get_sqe(ring);
	syslet_prep_openat(sqe, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe->user_data = 1;
	sqe = syslet_get_sqe(ring);
	syslet_prep_read(sqe, -1, buf, len);
	sqe->flags = SYSLET_SQE_LINK | SYSLET_SQE_FWD_ARG(0);
	sqe->user_data = 2;
	sqe = syslet_get_sqe(ring);
	syslet_prep_close(sqe, -1);
	sqe->flags = SYSLET_SQE_FWD_ARG(0) | SYSLET_SQE_FWD_HEAD;
	sqe->user_data = 3;
	return syslet_submit_n(ring, 3);
}

/*
 * Result forwarding: openat, then read and close of the descriptor it
 * returned, in one exec; the descriptor is closed after it.
 */
TEST_F(ring, forwarding_open_read_close_in_one_exec)
{
	char path[] = "/tmp/syslet-fwd.XXXXXX", buf[32] = { 0 };
	struct syslet_cqe cqe[3];
	int fd = mkstemp(path);

	ASSERT_LE(0, fd);
	ASSERT_EQ(9, write(fd, "forwarded", 9));
	close(fd);
	ASSERT_EQ(3, submit_open_read_close(&self->ring, path, buf, sizeof(buf)));
	ASSERT_EQ(3, reap_cqes(&self->ring, cqe, 3));
	ASSERT_LE(0, cqe[0].res) TH_LOG("openat: %lld", (long long)cqe[0].res);
	EXPECT_EQ(9, cqe[1].res);
	EXPECT_EQ(0, cqe[2].res);
	EXPECT_EQ(0, memcmp(buf, "forwarded", 9));
	/* The chain closed the descriptor openat returned. */
	EXPECT_EQ(-1, fcntl(cqe[0].res, F_GETFD));
	EXPECT_EQ(EBADF, errno);

	/* A failed openat cancels the rest of the chain: nothing runs on a forwarded error. */
	unlink(path);
	ASSERT_EQ(3, submit_open_read_close(&self->ring, path, buf, sizeof(buf)));
	ASSERT_EQ(3, reap_cqes(&self->ring, cqe, 3));
	EXPECT_EQ(-ENOENT, cqe[0].res);
	EXPECT_EQ(-ECANCELED, cqe[1].res);
	EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe[1].flags);
	EXPECT_EQ(-ECANCELED, cqe[2].res);
}

/*
 * Forwarding needs an entry to forward from (linked before it), an argument
 * that exists, and FWD_HEAD only with an argument named: else -EINVAL.
 */
TEST_F(ring, forwarding_bad_requests_are_refused)
{
	static const unsigned int bad[] = {
		SYSLET_SQE_FWD_ARG(0),				/* first of its chain */
		SYSLET_SQE_FWD_ARG(0) | SYSLET_SQE_FWD_HEAD,	/* the same */
		7U << SYSLET_SQE_FWD_SHIFT,			/* args[6] */
	};
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sqe = syslet_get_sqe(&self->ring);
		syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
		if (bad[i] == (7U << SYSLET_SQE_FWD_SHIFT)) {
			sqe->flags = SYSLET_SQE_LINK;
			sqe = syslet_get_sqe(&self->ring);
			syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
		}
		sqe->flags = bad[i];
		ASSERT_LE(1, syslet_submit(&self->ring));
		while (reap_cqes(&self->ring, cqe, 1) == 1 && cqe[0].res >= 0)
			;
		EXPECT_EQ(-EINVAL, cqe[0].res) TH_LOG("flags 0x%x", bad[i]);
		EXPECT_EQ(SYSLET_CQE_F_REFUSED, cqe[0].flags);
	}
	/* FWD_HEAD without an argument named. */
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe = syslet_get_sqe(&self->ring);
	syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_FWD_HEAD;
	ASSERT_EQ(2, syslet_submit(&self->ring));
	ASSERT_EQ(2, reap_cqes(&self->ring, cqe, 2));
	EXPECT_EQ(getpid(), cqe[0].res);
	EXPECT_EQ(-EINVAL, cqe[1].res);
}

/*
 * Seccomp judges a forwarded call with the substituted value: a filter that
 * refuses kill() aimed at the parent refuses kill(<getppid's result>, 0),
 * though the entry as submitted named pid 0, which it allows.
 */
static int forwarded_value_judged(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_kill, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, getppid(), 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
	struct syslet_ring ring;
	struct syslet_cqe cqe[2];
	struct syslet_sqe *sqe;

	if (syslet_queue_init(&ring, 4, 0))
		return 10;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return 11;
	/* Unforwarded, kill(0, 0) is allowed and succeeds. */
	syslet_prep(syslet_get_sqe(&ring), __NR_kill, 0, 0, 0, 0, 0, 0);
	if (syslet_submit_n(&ring, 1) != 1 || reap_cqes(&ring, cqe, 1) != 1 || cqe[0].res)
		return 12;
	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_LINK;
	sqe = syslet_get_sqe(&ring);
	syslet_prep(sqe, __NR_kill, 0, 0, 0, 0, 0, 0);
	sqe->flags = SYSLET_SQE_FWD_ARG(0);
	if (syslet_submit_n(&ring, 2) != 2 || reap_cqes(&ring, cqe, 2) != 2)
		return 13;
	if (cqe[0].res != getppid())
		return 14;
	if (cqe[1].res != -EACCES || cqe[1].flags != SYSLET_CQE_F_REFUSED)
		return 15;
	return 0;
}

TEST(forwarding_seccomp_sees_the_substituted_value)
{
	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "no syslet device");
	EXPECT_EQ(0, run_in_child(forwarded_value_judged));
}

TEST_HARNESS_MAIN
