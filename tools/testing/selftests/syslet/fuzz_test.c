// SPDX-License-Identifier: GPL-2.0
/*
 * syslet fuzzer: random and mutated use of /dev/syslet from several
 * processes and threads at once, for a bounded number of operations.
 *
 * Each round forks workers. A worker confines itself first (stdout and
 * stderr to /dev/null, a private directory, and a seccomp filter that lets
 * through what the fuzzer needs and refuses everything else with EPERM, so
 * random atoms cannot reboot or kill anything), starts two spare threads
 * that park and exec at random, and then does random operations:
 * submissions with random system call numbers (huge, negative, x32-flagged),
 * flags and arguments (garbage pointers included), execs with random counts
 * and continuation cookies, ring indices and flags corrupted while execs
 * run, random ioctl numbers and argument structs, random mmap offsets and
 * lengths, waits, cancels, threadlet registrations and forged slot words,
 * duplicated and closed descriptors, new contexts. The parent kills some
 * workers with SIGKILL at random moments and waits for the rest.
 *
 * What counts: nothing hangs (every worker ends within its alarm), the
 * module still works afterwards, and the test command's dmesg scan and
 * final rmmod find no oops, warning, lockdep or KASAN report and no leaked
 * reference. SYSLET_FUZZ_OPS sets the operations (default 20000; the long
 * run, scripts/fuzz.sh, does 1000000); SYSLET_FUZZ_SEED the seed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/syslet.h>

#include "libsyslet.h"
#include "syslet_util.h"
#include "../kselftest_harness.h"

#define WORKERS		3
#define OPS_PER_ROUND	2000

/* xorshift64*: one stream per worker, from the seed. */
static __thread uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static uint64_t pick(uint64_t n)
{
	return rnd() % n;
}

/* The state a worker fuzzes; spares read the descriptor racily, on purpose. */
static struct syslet_ring ring;
static volatile int ring_fd = -1;
static int pipe_fds[2];
/*
 * A blocking socket pair: atoms on sock_fds[0] are armed in a context set
 * up with SYSLET_SETUP_POLL, and block in the others until a spare thread
 * writes to sock_fds[1] (or drains it, for a blocked send).
 */
static int sock_fds[2];
static char scratch[2][4096];
static volatile int stop;

/* A value for an argument: small, huge, negative, a real buffer, or garbage. */
static uint64_t random_arg(void)
{
	switch (pick(8)) {
	case 0: return 0;
	case 1: return pick(16);
	case 2: return (uint64_t)-1 - pick(4);
	case 3: return (uintptr_t)scratch[pick(2)];
	case 4: return (uintptr_t)scratch[0] + pick(8192);
	case 5: return pick(2) ? pipe_fds[pick(2)] : sock_fds[pick(2)];
	case 6: return 1ULL << pick(64);
	default: return rnd();
	}
}

/* A system call number: a harmless one, one the policy refuses, or garbage. */
static uint32_t random_nr(void)
{
	static const uint32_t calls[] = {
		__NR_getppid, __NR_read, __NR_write, __NR_close, __NR_clone,
		__NR_rt_sigreturn, __NR_exit, __NR_ioctl, __NR_setuid, __NR_rt_sigprocmask,
		__NR_getpid, __NR_sched_yield, __NR_mmap, __NR_munmap,
	};
	uint32_t nr;

	switch (pick(4)) {
	case 0: nr = calls[pick(sizeof(calls) / sizeof(calls[0]))]; break;
	case 1: nr = (uint32_t)rnd(); break;
	case 2: nr = 0x40000000 | (uint32_t)pick(600); break;	/* x32 */
	default: nr = (uint32_t)pick(600);
	}
	/*
	 * Calls the filter lets through that could sleep for good on garbage
	 * arguments, or make the pipe's reads block (fcntl).
	 */
	if (nr == __NR_futex || nr == __NR_clock_nanosleep || nr == __NR_nanosleep ||
	    nr == __NR_poll || nr == __NR_fcntl)
		nr = __NR_getppid;
	return nr;
}

static void random_submit(void)
{
	unsigned int n = 1 + pick(8);
	struct syslet_exec exec = { 0 };

	if (!ring.mem)
		return;
	for (unsigned int i = 0; i < n; i++) {
		struct syslet_sqe *sqe = syslet_get_sqe(&ring);

		if (!sqe)
			break;
		if (pick(3)) {
			/* Mostly harmless and short: getppid, a 100 us sleep, a pipe read. */
			static const struct timespec ts = { 0, 100000 };

			switch (pick(4)) {
			case 0: syslet_prep(sqe, __NR_getppid, 0, 0, 0, 0, 0, 0); break;
			case 1: syslet_prep(sqe, __NR_nanosleep, (uintptr_t)&ts, 0, 0, 0, 0, 0); break;
			case 2:
				syslet_prep(sqe, __NR_read, pipe_fds[0], (uintptr_t)scratch[1], 16,
					    0, 0, 0);
				break;
			default:
				/* Armed, or blocked; cut short by a linked timeout of up to 2 ms. */
				syslet_prep_recv(sqe, sock_fds[0], scratch[1], 16, 0);
				sqe->flags = SYSLET_SQE_LINK;
				sqe->user_data = rnd();
				sqe = syslet_get_sqe(&ring);
				if (!sqe) {
					/* The ring is full: submit what is there. */
					i = n;
					continue;
				}
				syslet_prep(sqe, 0, 1 + pick(2000000), 0, 0, 0, 0, 0);
				sqe->flags = SYSLET_SQE_LINK_TIMEOUT;
				sqe->user_data = rnd();
				i++;
				continue;
			}
		} else {
			syslet_prep(sqe, random_nr(), random_arg(), random_arg(), random_arg(),
				    random_arg(), random_arg(), random_arg());
		}
		/* No flag or LINK mostly; a forwarded argument, or anything. */
		switch (pick(8)) {
		case 0: sqe->flags = (uint32_t)rnd(); break;
		case 1: sqe->flags = SYSLET_SQE_FWD_ARG(pick(7)) | (uint32_t)pick(2) |
				     (pick(2) ? SYSLET_SQE_FWD_HEAD : 0); break;
		default: sqe->flags = (uint32_t)pick(2);
		}
		sqe->user_data = rnd();
	}
	__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
	exec.to_submit = pick(4) ? n : (uint32_t)rnd();
	exec.continuation = pick(2) ? 0 : (pick(2) ? rnd() & ~3ULL : rnd());
	exec.flags = pick(16) ? 0 : (uint32_t)rnd();
	ioctl(ring_fd, SYSLET_IOC_EXEC, &exec);
	/* Keep the local tail in step with whatever the kernel consumed. */
	ring.sq_tail = __atomic_load_n(&ring.hdr->sq_head, __ATOMIC_ACQUIRE);
	__atomic_store_n(&ring.hdr->sq_tail, ring.sq_tail, __ATOMIC_RELEASE);
}

static void reap(void)
{
	if (!ring.mem)
		return;
	__atomic_store_n(&ring.hdr->cq_head,
			 __atomic_load_n(&ring.hdr->cq_tail, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
}

static void corrupt_header(void)
{
	uint32_t *fields[] = { &ring.hdr->sq_tail, &ring.hdr->cq_head, &ring.hdr->flags,
			       &ring.hdr->sq_head, &ring.hdr->cq_tail };

	if (!ring.mem)
		return;
	__atomic_store_n(fields[pick(5)], (uint32_t)rnd(), __ATOMIC_RELAXED);
}

static void random_ioctl(void)
{
	static const unsigned int cmds[] = {
		SYSLET_IOC_SETUP, SYSLET_IOC_EXEC, SYSLET_IOC_PARK, SYSLET_IOC_WAIT,
		SYSLET_IOC_CANCEL, SYSLET_IOC_THREADLET_REGISTER,
		SYSLET_IOC_THREADLET_UNREGISTER, SYSLET_IOC_THREADLET_DONE,
	};
	unsigned int cmd;
	uint64_t arg;

	for (unsigned int i = 0; i < sizeof(scratch[0]) / 8; i += 1 + pick(64))
		((uint64_t *)scratch[0])[i] = pick(2) ? rnd() : pick(4);
	switch (pick(4)) {
	case 0: cmd = cmds[pick(8)]; break;
	case 1: cmd = _IOC(pick(4), SYSLET_IOC_MAGIC, pick(32), pick(256)); break;
	case 2: cmd = (unsigned int)rnd(); break;
	default: cmd = cmds[pick(8)] ^ (1U << pick(32)); break;
	}
	arg = pick(4) ? (uintptr_t)scratch[0] : random_arg();
	/* PARK and WAIT get short time limits: they could sleep for good otherwise. */
	if (cmd == SYSLET_IOC_PARK) {
		struct syslet_park *p = (void *)scratch[0];

		p->timeout_ns = 1 + pick(2000000);
		arg = (uintptr_t)p;
	} else if (cmd == SYSLET_IOC_WAIT) {
		struct syslet_wait *w = (void *)scratch[0];

		w->timeout_ns = pick(2000000);
		arg = (uintptr_t)w;
	}
	ioctl(pick(8) ? ring_fd : (int)random_arg(), cmd, arg);
}

static void random_mmap(void)
{
	size_t len = pick(4) ? ring.mem_size : pick(1 << 20);
	off_t off = pick(4) ? 0 : (off_t)(pick(16) << 12);
	int prot = (int)pick(8), flags = pick(8) ? MAP_SHARED : MAP_PRIVATE;
	void *p = mmap(NULL, len, prot, flags, ring_fd, off);

	if (p != MAP_FAILED)
		munmap(p, len);
}

static void random_threadlet(void)
{
	struct syslet_threadlet_slot *slots;
	int64_t res = (int64_t)rnd();
	__u32 index;

	switch (pick(4)) {
	case 0: ioctl(ring_fd, SYSLET_IOC_THREADLET_REGISTER, &index); break;
	case 1: ioctl(ring_fd, SYSLET_IOC_THREADLET_UNREGISTER); break;
	case 2: ioctl(ring_fd, SYSLET_IOC_THREADLET_DONE, &res); break;
	default:
		if (!ring.mem || !ring.params.threadlets_off)
			break;
		slots = (void *)((char *)ring.mem + ring.params.threadlets_off);
		__atomic_store_n(&slots[pick(SYSLET_MAX_THREADLET_SLOTS)].state,
				 pick(2) ? 0 : rnd(), __ATOMIC_RELEASE);
	}
}

/*
 * A fresh context: set up with random (@sane: valid) sizes, on the pollable
 * path or not, mapped when that works.
 */
static void new_context(int sane)
{
	int old = ring_fd;
	struct syslet_ring fresh;

	if (syslet_queue_init_flags(&fresh, sane ? 16 : 1U << pick(8),
				    sane || pick(4) ? 0 : 1U << pick(14),
				    pick(2) ? SYSLET_SETUP_POLL : sane || pick(8) ? 0 : (uint32_t)rnd()))
		return;
	ring = fresh;
	ring_fd = fresh.fd;
	if (old >= 0)
		close(old);
}

static void one_op(void)
{
	struct syslet_wait w = { .min_complete = (uint32_t)pick(4), .timeout_ns = pick(100000) };
	uint64_t user_data = rnd();

	switch (pick(16)) {
	case 0: case 1: case 2: case 3: random_submit(); break;
	case 4: reap(); break;
	case 5: corrupt_header(); break;
	case 6: case 7: random_ioctl(); break;
	case 8: random_mmap(); break;
	case 9: case 10: random_threadlet(); break;
	case 11: ioctl(ring_fd, SYSLET_IOC_WAIT, &w); break;
	case 12: ioctl(ring_fd, SYSLET_IOC_CANCEL, &user_data); break;
	case 13: close(dup(ring_fd)); break;	/* a flush: the context closes */
	case 14: if (!pick(8)) new_context(0); break;
	default:
		if (write(pipe_fds[1], "x", 1) < 0)
			break;
	}
}

/* A spare: parks (briefly) and execs, at random, until told to stop. */
static void *spare_main(void *arg)
{
	uint64_t *seed = arg;

	rng = *seed;
	while (!stop) {
		struct syslet_park park = { .timeout_ns = 1 + pick(5000000) };

		if (pick(4))
			ioctl(ring_fd, SYSLET_IOC_PARK, &park);
		else
			random_ioctl();
		/* Wakes armed or blocked receives; drains for blocked sends. */
		if (!pick(4) && write(sock_fds[1], "y", 1) < 0)
			continue;
		if (!pick(8))
			recv(sock_fds[1], scratch[1] + 2048, 1024, MSG_DONTWAIT);
	}
	return NULL;
}

/*
 * Lets through what a worker needs and refuses every other call with EPERM
 * (atoms and direct calls alike), checking the architecture first.
 */
static int confine(void)
{
	static const unsigned int allowed[] = {
		__NR_read, __NR_write, __NR_close, __NR_ioctl, __NR_mmap, __NR_munmap,
		__NR_mprotect, __NR_madvise, __NR_brk, __NR_nanosleep, __NR_clock_nanosleep,
		__NR_clock_gettime, __NR_futex, __NR_clone, __NR_clone3, __NR_exit,
		__NR_exit_group, __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_getppid,
		__NR_getpid, __NR_gettid, __NR_sched_yield, __NR_dup, __NR_openat, __NR_set_robust_list,
		__NR_rseq, __NR_fcntl, __NR_getrandom, __NR_sched_getaffinity, __NR_recvfrom,
		__NR_sendto,
	};
	enum { N = sizeof(allowed) / sizeof(allowed[0]) };
	struct sock_filter filter[4 + 2 * N + 2];
	struct sock_fprog prog = { .filter = filter };
	unsigned int i = 0;

	filter[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						   offsetof(struct seccomp_data, arch));
	filter[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	filter[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	filter[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						   offsetof(struct seccomp_data, nr));
	for (unsigned int k = 0; k < N; k++) {
		filter[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, allowed[k], 0, 1);
		filter[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	}
	filter[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
	prog.len = i;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static void worker(uint64_t seed, long ops)
{
	uint64_t seeds[2] = { seed * 3 + 1, seed * 5 + 2 };
	pthread_t spares[2];
	int null = open("/dev/null", O_RDWR);
	char dir[] = "/tmp/syslet-fuzz-XXXXXX";

	rng = seed | 1;
	if (null < 0 || !mkdtemp(dir) || chdir(dir))
		_exit(2);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	/*
	 * Nothing inherited: random atoms read from random descriptors, and one
	 * the harness or the guest's console left open may block for good.
	 */
	if (syscall(SYS_close_range, 3, ~0U, 0))
		_exit(6);
	alarm(300);
	if (pipe(pipe_fds) || socketpair(AF_UNIX, SOCK_STREAM, 0, sock_fds))
		_exit(3);
	fcntl(sock_fds[1], F_SETFL, O_NONBLOCK);
	/* A write atom on a socket whose peer an atom closed must not kill the worker. */
	signal(SIGPIPE, SIG_IGN);
	fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
	new_context(1);
	if (ring_fd < 0)
		_exit(4);
	if (confine())
		_exit(5);
	for (int i = 0; i < 2; i++)
		pthread_create(&spares[i], NULL, spare_main, &seeds[i]);
	for (long i = 0; i < ops; i++)
		one_op();
	stop = 1;
	/* The spares wake within their time limits; a close ends their parks now. */
	close(dup(ring_fd));
	for (int i = 0; i < 2; i++)
		pthread_join(spares[i], NULL);
	_exit(0);
}

/* Logs the first line of /proc/@pid/task/@tid/@what. */
static void log_task_file(struct __test_metadata *_metadata, pid_t pid, const char *tid,
			  const char *what)
{
	char path[96], buf[512] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", pid, tid, what);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		TH_LOG("  %s %s: %s", tid, what, buf);
	}
	fclose(f);
}

/* Seconds on the monotonic clock. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Waits for worker @pid until @deadline (its own alarm comes later).
 * Returns 1 with its status, or 0 when it hangs: then the system call and
 * kernel stack of each of its threads are logged and it is killed.
 */
static int wait_or_dump(struct __test_metadata *_metadata, pid_t pid, int *status,
			double deadline)
{
	char path[64];
	struct dirent *d;
	DIR *dir;

	while (now_s() < deadline) {
		if (waitpid(pid, status, WNOHANG) == pid)
			return 1;
		usleep(20000);
	}
	if (waitpid(pid, status, WNOHANG) == pid)
		return 1;
	TH_LOG("worker %d hangs; its threads:", pid);
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = opendir(path);
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		log_task_file(_metadata, pid, d->d_name, "syscall");
		log_task_file(_metadata, pid, d->d_name, "wchan");
		log_task_file(_metadata, pid, d->d_name, "stack");
	}
	if (dir)
		closedir(dir);
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	return 0;
}

FIXTURE(fuzz) {
	int unused;
};

FIXTURE_SETUP(fuzz)
{
	if (access(SYSLET_DEVICE, R_OK | W_OK))
		SKIP(return, "%s missing: is the syslet module loaded?", SYSLET_DEVICE);
}

FIXTURE_TEARDOWN(fuzz)
{
}

TEST_F_TIMEOUT(fuzz, random_operations, 3600)
{
	const char *env_ops = getenv("SYSLET_FUZZ_OPS"), *env_seed = getenv("SYSLET_FUZZ_SEED");
	long total = env_ops ? atol(env_ops) : 20000;
	uint64_t seed = env_seed ? strtoull(env_seed, NULL, 0) : 2007;
	long done = 0, killed = 0, hung = 0, crashed = 0, broken = 0;
	struct timespec t0, t1;
	struct syslet_ring ring_after;

	rng = seed;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (done < total) {
		long share = OPS_PER_ROUND < total - done ? OPS_PER_ROUND : total - done;
		/* A round that takes this long has a worker that hangs. */
		double deadline = now_s() + 100;
		pid_t pids[WORKERS];

		for (int w = 0; w < WORKERS; w++) {
			uint64_t s = rnd();

			pids[w] = fork();
			ASSERT_LE(0, pids[w]);
			if (pids[w] == 0)
				worker(s, share / WORKERS + 1);
		}
		/* kill -9 one worker in three, at a random moment. */
		usleep(pick(200000));
		for (int w = 0; w < WORKERS; w++) {
			if (!pick(3) && !kill(pids[w], SIGKILL))
				killed++;
		}
		for (int w = 0; w < WORKERS; w++) {
			int status;

			if (!wait_or_dump(_metadata, pids[w], &status, deadline))
				hung++;
			else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
				hung++;
			else if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL) {
				if (!crashed)
					TH_LOG("first worker that died otherwise: signal %d",
					       WTERMSIG(status));
				crashed++;
			}
			else if (WIFEXITED(status) && WEXITSTATUS(status) >= 2) {
				TH_LOG("a worker's setup failed: step %d", WEXITSTATUS(status));
				broken++;
			}
		}
		done += share;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* Died otherwise: a random munmap may take a worker's own memory. */
	TH_LOG("%ld ops in %.1f s, seed %llu", done,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, (unsigned long long)seed);
	TH_LOG("workers: %ld killed, %ld hung, %ld died otherwise, %ld broken", killed, hung,
	       crashed, broken);
	EXPECT_EQ(0, hung) TH_LOG("a worker never finished: something hangs");
	EXPECT_EQ(0, broken) TH_LOG("a worker could not set itself up");
	/* The module still works. */
	ASSERT_EQ(0, syslet_queue_init(&ring_after, 4, 0));
	syslet_prep(syslet_get_sqe(&ring_after), __NR_getppid, 0, 0, 0, 0, 0, 0);
	EXPECT_EQ(1, syslet_submit_n(&ring_after, 1));
	EXPECT_EQ(getppid(), syslet_peek_cqe(&ring_after)->res);
	syslet_queue_exit(&ring_after);
}

TEST_HARNESS_MAIN
