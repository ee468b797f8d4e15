/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * libsyslet: a small C API over /dev/syslet.
 *
 * The ring helpers are inline (this header alone is enough for them); the
 * runtime (syslet_pool_*, syslet_submit_async) is in the library
 * (-lsyslet, pkg-config libsyslet).
 *
 *	struct syslet_ring ring;
 *	syslet_queue_init(&ring, 64, 0);
 *	struct syslet_sqe *sqe = syslet_get_sqe(&ring);
 *	syslet_prep(sqe, __NR_getpid, 0, 0, 0, 0, 0, 0);
 *	sqe->user_data = 1;
 *	syslet_submit(&ring);			// runs it
 *	struct syslet_cqe *cqe = syslet_peek_cqe(&ring);
 *	... cqe->res ...
 *	syslet_cqe_seen(&ring);
 *	syslet_queue_exit(&ring);
 *
 * Functions return 0 or a count on success and -errno on failure.
 */
#ifndef LIBSYSLET_H
#define LIBSYSLET_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/syslet.h>

struct syslet_ring {
	int fd;
	void *mem;
	size_t mem_size;
	struct syslet_ring_header *hdr;
	struct syslet_sqe *sqes;
	struct syslet_cqe *cqes;
	unsigned int sq_tail;	/* local, published by syslet_submit() */
	struct syslet_params params;
	struct syslet_pool *pool;	/* the runtime's spares, if started */
};

/*
 * The runtime (in the library).
 *
 * syslet_submit_async() runs up to @count submissions like syslet_submit_n(),
 * naming the caller's continuation: if a call blocks, a spare thread of the
 * pool goes on with the program, and syslet_submit_async() returns
 * SYSLET_WENT_ASYNC there while the blocked thread finishes the batch; the
 * completions arrive in the completion ring. Otherwise it returns the number
 * consumed, every one completed, with no thread switch.
 *
 * After SYSLET_WENT_ASYNC the program runs on ANOTHER OS THREAD: gettid(),
 * pthread_self(), thread-local variables, the signal mask and errno's
 * address are that thread's. glibc declares __errno_location() and
 * pthread_self() const, so a compiler may compute them once per function
 * and reuse the result across the call: in the function that called
 * syslet_submit_async(), errno, pthread_self() and thread-local variables
 * may still refer to the old thread (the kselftests saw exactly that with
 * gcc -O2). Look them up only in a function of its own (not inlined) that
 * runs after the call returned. Also per thread, and not carried: the
 * protection-key register (pkey_set()), and the owner of locks that
 * record one (recursive, error-checking and PI mutexes, flockfile()):
 * hold none across a submit. Signal handlers may run on a parked spare's
 * 64 KiB exec stack: keep them small. Only a program on the main thread's stack can move (its
 * main() may return on any thread: exit() is right everywhere); from any
 * other stack the submission runs without a continuation and a call that
 * blocks blocks the caller. A thread belongs to at most one pool: a
 * submit to another ring's pool from it also runs without a continuation.
 */
#define SYSLET_WENT_ASYNC	(1 << 30)

/*
 * A bounded pool of spares. max_spares bounds the threads the pool starts:
 * one is needed per call blocked at the same time; beyond the bound a call
 * that blocks blocks its caller (a synchronous fallback), which is correct,
 * only slower. 0 is allowed: then every block is such a fallback.
 */
#define SYSLET_POOL_DEFAULT_MAX	16	/* a thread each, with a 64 KiB exec stack */

struct syslet_pool_params {
	unsigned int min_spares;	/* parked from the start and kept when idle */
	unsigned int max_spares;	/* at most this many pool threads */
	unsigned int idle_ms;		/* an extra spare parked this long leaves */
};

struct syslet_pool_stats {
	unsigned int threads;		/* pool threads now */
	unsigned int parked;		/* of them, parked now */
	unsigned int peak_threads;	/* most pool threads at once */
	unsigned int peak_busy;		/* most threads out of PARK at once */
	unsigned long handoffs;		/* continuations a spare took over */
	unsigned long went_async;	/* submits that returned SYSLET_WENT_ASYNC */
	unsigned long threadlets_async;	/* threadlets that returned SYSLET_WENT_ASYNC */
};

int syslet_pool_start(struct syslet_ring *ring, const struct syslet_pool_params *params);
void syslet_pool_stop(struct syslet_ring *ring);
void syslet_pool_stats(struct syslet_ring *ring, struct syslet_pool_stats *stats);
int syslet_submit_async(struct syslet_ring *ring, unsigned int count);

/*
 * Threadlets (syslet_threadlet_run(3)): fn(arg) runs on a stack of its own,
 * inline on the calling thread, with the kernel watching for a block
 * anywhere in it (any system call, a page fault on a file mapping). If
 * nothing blocks, it returns 0 with fn's result in *@result: no system call
 * and no thread switch. If fn blocks, the caller returns SYSLET_WENT_ASYNC
 * at once, on a spare thread of the pool (everything said above about
 * syslet_submit_async() and other threads applies), while the blocked
 * thread finishes fn; fn's return value then arrives as a completion with
 * @user_data, res = the value and flags SYSLET_CQE_F_ASYNC |
 * SYSLET_CQE_F_THREADLET (-EOWNERDEAD if that thread exits first). fn must
 * therefore not touch the caller's stack frame after it may have blocked,
 * and must return through its own frame (no longjmp out of it). Under the
 * same conditions as syslet_submit_async() runs without a continuation
 * (no pool, not on the main thread's stack, nested in a threadlet, every
 * slot taken), fn simply runs and blocks its caller: 0 is returned.
 */
typedef long (*syslet_threadlet_fn)(void *arg);

int syslet_threadlet_run(struct syslet_ring *ring, syslet_threadlet_fn fn, void *arg,
			 uint64_t user_data, long *result);

/*
 * Opens a context, sets up its rings with @flags (SYSLET_SETUP_*: 0, or
 * SYSLET_SETUP_POLL for the pollable path) and maps them: 0 or -errno.
 */
static inline int syslet_queue_init_flags(struct syslet_ring *ring, unsigned int sq_entries,
					  unsigned int cq_entries, unsigned int flags)
{
	memset(ring, 0, sizeof(*ring));
	ring->fd = open(SYSLET_DEVICE, O_RDWR | O_CLOEXEC);
	if (ring->fd < 0)
		return -errno;
	ring->params.sq_entries = sq_entries;
	ring->params.cq_entries = cq_entries;
	ring->params.flags = flags;
	if (ioctl(ring->fd, SYSLET_IOC_SETUP, &ring->params) < 0)
		goto fail;
	ring->mem_size = ring->params.mmap_size;
	ring->mem = mmap(NULL, ring->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring->fd, 0);
	if (ring->mem == MAP_FAILED)
		goto fail;
	ring->hdr = ring->mem;
	ring->sqes = (void *)((char *)ring->mem + ring->params.sqes_off);
	ring->cqes = (void *)((char *)ring->mem + ring->params.cqes_off);
	ring->sq_tail = ring->hdr->sq_tail;
	return 0;
fail:
	{
		int err = -errno;

		close(ring->fd);
		ring->fd = -1;
		return err;
	}
}

static inline int syslet_queue_init(struct syslet_ring *ring, unsigned int sq_entries,
				    unsigned int cq_entries)
{
	return syslet_queue_init_flags(ring, sq_entries, cq_entries, 0);
}

static inline void syslet_queue_exit(struct syslet_ring *ring)
{
	if (ring->mem && ring->mem != MAP_FAILED)
		munmap(ring->mem, ring->mem_size);
	if (ring->fd >= 0)
		close(ring->fd);
	ring->fd = -1;
	ring->mem = NULL;
}

/* Next free submission entry, or NULL if the ring is full. */
static inline struct syslet_sqe *syslet_get_sqe(struct syslet_ring *ring)
{
	/* Pairs with the kernel's store-release of sq_head. */
	unsigned int head = __atomic_load_n(&ring->hdr->sq_head, __ATOMIC_ACQUIRE);
	struct syslet_sqe *sqe;

	if (ring->sq_tail - head >= ring->hdr->sq_entries)
		return NULL;
	sqe = &ring->sqes[ring->sq_tail & ring->hdr->sq_mask];
	ring->sq_tail++;
	memset(sqe, 0, sizeof(*sqe));
	return sqe;
}

static inline void syslet_prep(struct syslet_sqe *sqe, unsigned int nr, uint64_t a0,
			       uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
	sqe->nr = nr;
	sqe->args[0] = a0;
	sqe->args[1] = a1;
	sqe->args[2] = a2;
	sqe->args[3] = a3;
	sqe->args[4] = a4;
	sqe->args[5] = a5;
}

/*
 * Prep helpers for common calls: each fills @sqe as syslet_prep() would,
 * with the x86-64 system call number and the arguments in the order of
 * the call itself. The memory they name must stay valid until the
 * completion arrives.
 */
static inline void syslet_prep_read(struct syslet_sqe *sqe, int fd, void *buf, size_t len)
{
	syslet_prep(sqe, SYS_read, fd, (uintptr_t)buf, len, 0, 0, 0);
}

static inline void syslet_prep_write(struct syslet_sqe *sqe, int fd, const void *buf, size_t len)
{
	syslet_prep(sqe, SYS_write, fd, (uintptr_t)buf, len, 0, 0, 0);
}

static inline void syslet_prep_pread(struct syslet_sqe *sqe, int fd, void *buf, size_t len,
				     off_t offset)
{
	syslet_prep(sqe, SYS_pread64, fd, (uintptr_t)buf, len, offset, 0, 0);
}

static inline void syslet_prep_pwrite(struct syslet_sqe *sqe, int fd, const void *buf,
				      size_t len, off_t offset)
{
	syslet_prep(sqe, SYS_pwrite64, fd, (uintptr_t)buf, len, offset, 0, 0);
}

static inline void syslet_prep_openat(struct syslet_sqe *sqe, int dirfd, const char *path,
				      int flags, mode_t mode)
{
	syslet_prep(sqe, SYS_openat, (uint64_t)(int64_t)dirfd, (uintptr_t)path, flags, mode, 0,
		    0);
}

static inline void syslet_prep_close(struct syslet_sqe *sqe, int fd)
{
	syslet_prep(sqe, SYS_close, fd, 0, 0, 0, 0, 0);
}

static inline void syslet_prep_fsync(struct syslet_sqe *sqe, int fd)
{
	syslet_prep(sqe, SYS_fsync, fd, 0, 0, 0, 0, 0);
}

/* recvfrom(@fd, @buf, @len, @flags, NULL, NULL): a receive, on the pollable path if armed. */
static inline void syslet_prep_recv(struct syslet_sqe *sqe, int fd, void *buf, size_t len,
				    int flags)
{
	syslet_prep(sqe, __NR_recvfrom, fd, (uintptr_t)buf, len, flags, 0, 0);
}

/* sendto(@fd, @buf, @len, @flags, NULL, 0). */
static inline void syslet_prep_send(struct syslet_sqe *sqe, int fd, const void *buf, size_t len,
				    int flags)
{
	syslet_prep(sqe, __NR_sendto, fd, (uintptr_t)buf, len, flags, 0, 0);
}

struct statx;	/* <sys/stat.h> with _GNU_SOURCE, or <linux/stat.h> */

static inline void syslet_prep_statx(struct syslet_sqe *sqe, int dirfd, const char *path,
				     int flags, unsigned int mask, struct statx *stx)
{
	syslet_prep(sqe, SYS_statx, (uint64_t)(int64_t)dirfd, (uintptr_t)path, flags, mask,
		    (uintptr_t)stx, 0);
}

static inline void syslet_prep_getdents64(struct syslet_sqe *sqe, int fd, void *dirp,
					  size_t count)
{
	syslet_prep(sqe, SYS_getdents64, fd, (uintptr_t)dirp, count, 0, 0, 0);
}

/* Publishes the prepared entries and runs up to @count of them. */
static inline int syslet_submit_n(struct syslet_ring *ring, unsigned int count)
{
	struct syslet_exec exec = { .to_submit = count };
	int ret;

	/* Pairs with the kernel's load-acquire of sq_tail. */
	__atomic_store_n(&ring->hdr->sq_tail, ring->sq_tail, __ATOMIC_RELEASE);
	ret = ioctl(ring->fd, SYSLET_IOC_EXEC, &exec);
	return ret < 0 ? -errno : ret;
}

/* Publishes the prepared entries and runs all that are queued. */
static inline int syslet_submit(struct syslet_ring *ring)
{
	/*
	 * The count queued, not the ring's size: the kernel copies out as many
	 * entries as it is asked for at most, and a batch that fits its stack
	 * needs no buffer.
	 */
	return syslet_submit_n(ring, ring->sq_tail -
				     __atomic_load_n(&ring->hdr->sq_head, __ATOMIC_RELAXED));
}

/*
 * Like syslet_submit_n(), naming the caller's continuation @cookie (nonzero):
 * if an atom blocks, a parked spare resumes the program with @cookie and
 * *@handed_off is set: the caller must then not resume it itself. Returns the
 * number of entries consumed (without SYSLET_EXEC_RET_HANDED_OFF).
 */
static inline int syslet_submit_cont(struct syslet_ring *ring, unsigned int count,
				     uint64_t cookie, int *handed_off)
{
	struct syslet_exec exec = { .to_submit = count, .continuation = cookie };
	int ret;

	__atomic_store_n(&ring->hdr->sq_tail, ring->sq_tail, __ATOMIC_RELEASE);
	ret = ioctl(ring->fd, SYSLET_IOC_EXEC, &exec);
	if (ret < 0)
		return -errno;
	/*
	 * The return value is authoritative, not exec.status: a fault copying
	 * the status back cannot lose it.
	 */
	*handed_off = !!(ret & SYSLET_EXEC_RET_HANDED_OFF);
	return ret & ~SYSLET_EXEC_RET_HANDED_OFF;
}

/*
 * Parks the calling thread as a spare; returns 0 with the cookie of the
 * continuation to resume, -EINTR on a signal, -ESHUTDOWN when the context
 * closes.
 */
static inline int syslet_park(struct syslet_ring *ring, uint64_t *cookie)
{
	struct syslet_park park = { 0 };

	if (ioctl(ring->fd, SYSLET_IOC_PARK, &park) < 0)
		return -errno;
	*cookie = park.continuation;
	return 0;
}

/* Waits for @min completions; timeout_ns < 0 waits forever. */
static inline int syslet_wait(struct syslet_ring *ring, unsigned int min, int64_t timeout_ns)
{
	struct syslet_wait wait = { .min_complete = min, .timeout_ns = timeout_ns };
	int ret = ioctl(ring->fd, SYSLET_IOC_WAIT, &wait);

	return ret < 0 ? -errno : ret;
}

/* Interrupts the handed-off atom with @user_data. */
static inline int syslet_cancel(struct syslet_ring *ring, uint64_t user_data)
{
	return ioctl(ring->fd, SYSLET_IOC_CANCEL, &user_data) < 0 ? -errno : 0;
}

/* Oldest unread completion, or NULL. */
static inline struct syslet_cqe *syslet_peek_cqe(struct syslet_ring *ring)
{
	unsigned int head = ring->hdr->cq_head;
	/* Pairs with the kernel's store-release of cq_tail. */
	unsigned int tail = __atomic_load_n(&ring->hdr->cq_tail, __ATOMIC_ACQUIRE);

	if (head == tail)
		return NULL;
	return &ring->cqes[head & ring->hdr->cq_mask];
}

/* Marks the oldest completion consumed. */
static inline void syslet_cqe_seen(struct syslet_ring *ring)
{
	/* Pairs with the kernel's load-acquire of cq_head. */
	__atomic_store_n(&ring->hdr->cq_head, ring->hdr->cq_head + 1, __ATOMIC_RELEASE);
}

/*
 * Reads counter @name (e.g. "handoffs") from the fdinfo of syslet file @fd;
 * -1 if it is not there.
 */
static inline long syslet_fdinfo_counter(int fd, const char *name)
{
	char path[64], line[512];
	size_t len = strlen(name);
	long value = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, len) && line[len] == ':')
			value = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return value;
}

#endif /* LIBSYSLET_H */
