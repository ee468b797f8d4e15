// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The syslet runtime: submissions that let the program go on when a call
 * blocks, and the bounded pool of spare threads that makes it possible.
 *
 * Threads and stacks. Every thread that takes part (the main thread, pool
 * threads) owns one small exec stack, used by no other thread. A submit
 * saves the program's continuation on the program's stack, moves to the
 * thread's exec stack and runs SYSLET_IOC_EXEC there. If a call blocks, a
 * parked spare takes the continuation over and runs the program on the
 * program's stack; the blocked thread, still on its own exec stack, finishes
 * the batch and parks as a spare. So program stacks move between threads,
 * exec stacks never do, and no stack is ever used by two threads at once.
 *
 * Which programs may move: only one running on the main thread's stack.
 * main() returning calls exit(), which is right on any thread; a pthread's
 * start routine returning on another thread would end the wrong thread, so
 * submissions from other stacks (other threads, signal handlers on an
 * alternate stack) run without a continuation: a call that blocks blocks.
 *
 * The pool. syslet_pool_start() parks min_spares threads. A thread that
 * parks with more than min_spares around gives up after idle_ms (PARK's
 * time limit) and leaves, so the pool shrinks when idle. When the kernel
 * sets SYSLET_RING_NEED_SPARE (a call blocked with no spare parked), the
 * next submit to return starts one more thread, up to max_spares: the pool
 * grows off the hot path, by one thread per call that found none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "libsyslet.h"

/* The library's public functions; everything else is hidden (-fvisibility=hidden). */
#define LIBSYSLET_API __attribute__((visibility("default")))

/* Each thread's exec stack: the kernel's ioctl path needs little of it. */
#define EXEC_STACK_SIZE	(64 * 1024)

/* The pool of one ring. */
struct syslet_pool {
	int fd;				/* a duplicate of the ring's descriptor, for spares */
	unsigned int min_spares;
	unsigned int max_spares;
	long long idle_ns;
	atomic_uint threads;		/* pool threads alive */
	atomic_uint parked;		/* threads in SYSLET_IOC_PARK now */
	atomic_uint starting;		/* threads started, not parked yet */
	atomic_uint peak_threads;
	atomic_uint peak_parked_gap;	/* most threads out of PARK at once */
	atomic_ulong handoffs;		/* continuations resumed by a spare */
	atomic_ulong went_async;	/* submits that came back on another thread */
	atomic_int stopping;
};

/* What the runtime knows about the calling thread. */
struct syslet_thread {
	void *exec_stack;		/* mapping, guard page first */
	void *exec_stack_top;
	struct syslet_pool *pool;	/* a pool thread's pool */
	struct syslet_pool *joined;	/* the pool another thread joined as a spare */
	sigjmp_buf home;		/* a pool thread's way out, on its own stack */
};

static __thread struct syslet_thread *syslet_self;

/* The main thread's stack: the only one a program may leave on. */
static uintptr_t main_stack_lo, main_stack_hi;

__attribute__((constructor)) static void syslet_find_main_stack(void)
{
	pthread_attr_t attr;
	size_t size;
	void *addr;

	/*
	 * Constructors run on the main thread, unless the library is loaded
	 * later from another thread: then no stack may move.
	 */
	if (syscall(SYS_gettid) != getpid() || pthread_getattr_np(pthread_self(), &attr))
		return;
	if (!pthread_attr_getstack(&attr, &addr, &size)) {
		main_stack_lo = (uintptr_t)addr;
		main_stack_hi = (uintptr_t)addr + size;
	}
	pthread_attr_destroy(&attr);
}

static int on_main_stack(void)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);

	return sp >= main_stack_lo && sp < main_stack_hi;
}

/* The calling thread's runtime state, created on first use; NULL without memory. */
static struct syslet_thread *self_get(void)
{
	struct syslet_thread *self = syslet_self;
	long page = sysconf(_SC_PAGESIZE);

	if (self)
		return self;
	self = calloc(1, sizeof(*self));
	if (!self)
		return NULL;
	self->exec_stack = mmap(NULL, EXEC_STACK_SIZE + page, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (self->exec_stack == MAP_FAILED) {
		free(self);
		return NULL;
	}
	/* A guard page below, so an overflow faults instead of corrupting. */
	mprotect(self->exec_stack, page, PROT_NONE);
	self->exec_stack_top = (char *)self->exec_stack + EXEC_STACK_SIZE + page;
	syslet_self = self;
	return self;
}

static void self_free(struct syslet_thread *self)
{
	munmap(self->exec_stack, EXEC_STACK_SIZE + sysconf(_SC_PAGESIZE));
	free(self);
	syslet_self = NULL;
}

/* In cont_x86_64.S. */
long syslet__switch_and_exec(struct syslet_ring *ring, unsigned int count, void *exec_stack_top,
			     struct syslet_pool *pool) __attribute__((visibility("hidden")));
void syslet__resume(void *cookie, long result) __attribute__((visibility("hidden"), noreturn));

/* Called on the exec stack: SYSLET_IOC_EXEC naming the continuation at @cookie. */
__attribute__((visibility("hidden"))) long syslet__exec_cont(struct syslet_ring *ring,
							   unsigned int count, void *cookie)
{
	struct syslet_exec exec = { .to_submit = count, .continuation = (uintptr_t)cookie };
	long ret = syscall(SYS_ioctl, ring->fd, SYSLET_IOC_EXEC, &exec);

	return ret < 0 ? -errno : ret;
}

static void pool_note_out_of_park(struct syslet_pool *pool)
{
	/* Two loads, not one snapshot: clamp what a join in between makes negative. */
	int out = (int)atomic_load(&pool->threads) - (int)atomic_load(&pool->parked);
	unsigned int peak = atomic_load(&pool->peak_parked_gap);

	while (out > (int)peak &&
	       !atomic_compare_exchange_weak(&pool->peak_parked_gap, &peak, (unsigned int)out))
		;
}

/*
 * Leaves the pool for good: a pool thread goes back to its start routine,
 * on its own stack; the main thread, whose stack is the program's now, ends
 * with a plain exit of the thread (the process goes on).
 */
__attribute__((noreturn)) static void spare_leave(struct syslet_thread *self)
{
	if (self->pool)
		siglongjmp(self->home, 1);
	syscall(SYS_exit, 0);
	__builtin_unreachable();
}

/*
 * Returns whether an idle spare may leave (and counts it out): only while
 * at least min_spares others stay parked, so the pool keeps its reserve.
 */
static int pool_retire(struct syslet_pool *pool)
{
	if (atomic_load(&pool->parked) < pool->min_spares)
		return 0;
	atomic_fetch_sub(&pool->threads, 1);
	return 1;
}

/*
 * Parks the calling thread as a spare of @pool until it takes a continuation
 * over (then it resumes it and does not return) or leaves the pool.
 */
__attribute__((noreturn)) static void spare_loop(struct syslet_pool *pool,
						 struct syslet_thread *self)
{
	for (;;) {
		struct syslet_park park = { 0 };
		long ret;

		if (atomic_load(&pool->stopping))
			break;
		/*
		 * Only a pool thread may leave when idle: the main thread has
		 * no stack of its own to go back to (see spare_leave()).
		 */
		if (self->pool && atomic_load(&pool->parked) >= pool->min_spares)
			park.timeout_ns = pool->idle_ns;
		atomic_fetch_add(&pool->parked, 1);
		ret = syscall(SYS_ioctl, pool->fd, SYSLET_IOC_PARK, &park);
		atomic_fetch_sub(&pool->parked, 1);
		if (ret == 0) {
			atomic_fetch_add(&pool->handoffs, 1);
			pool_note_out_of_park(pool);
			syslet__resume((void *)(uintptr_t)park.continuation, SYSLET_WENT_ASYNC);
		}
		if (errno == EINTR)
			continue;
		if (errno == ETIMEDOUT && !pool_retire(pool))
			continue;
		if (errno == ETIMEDOUT)
			goto retired;
		break;	/* ESHUTDOWN: the ring is going away; anything else: give up */
	}
	atomic_fetch_sub(&pool->threads, 1);
retired:
	spare_leave(self);
}

/*
 * Called on the exec stack of a thread whose continuation a spare took over:
 * the thread becomes a spare itself.
 */
__attribute__((visibility("hidden"), noreturn)) void syslet__become_spare(struct syslet_pool *pool)
{
	struct syslet_thread *self = syslet_self;

	/*
	 * @pool was loaded before the exec, not from the ring: the program,
	 * elsewhere now, may have freed the ring. A thread that is not a pool
	 * thread (the main thread) joins the pool, once; it has no home to go
	 * back to (see spare_leave()). syslet_submit_async() keeps every thread
	 * to one pool.
	 */
	if (!self->pool && !self->joined) {
		atomic_fetch_add(&pool->threads, 1);
		self->joined = pool;
	}
	spare_loop(pool, self);
}

static void *pool_thread_main(void *arg)
{
	struct syslet_pool *pool = arg;
	struct syslet_thread *self = self_get();

	atomic_fetch_sub(&pool->starting, 1);
	if (!self) {
		atomic_fetch_sub(&pool->threads, 1);
		return NULL;
	}
	self->pool = pool;
	/* spare_leave() comes back here, from any stack this thread is on. */
	if (sigsetjmp(self->home, 0) == 0)
		spare_loop(pool, self);
	self_free(self);
	return NULL;
}

/* Starts one pool thread, counted in before it runs; 0 or -errno. */
static int pool_spawn(struct syslet_pool *pool)
{
	unsigned int n = atomic_load(&pool->threads);
	pthread_attr_t attr;
	pthread_t thread;
	int err;

	do {
		if (n >= pool->max_spares || atomic_load(&pool->stopping))
			return -EAGAIN;
	} while (!atomic_compare_exchange_weak(&pool->threads, &n, n + 1));
	atomic_fetch_add(&pool->starting, 1);
	n++;
	for (unsigned int peak = atomic_load(&pool->peak_threads);
	     n > peak && !atomic_compare_exchange_weak(&pool->peak_threads, &peak, n);)
		;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&thread, &attr, pool_thread_main, pool);
	pthread_attr_destroy(&attr);
	if (err) {
		atomic_fetch_sub(&pool->starting, 1);
		atomic_fetch_sub(&pool->threads, 1);
		return -err;
	}
	return 0;
}

LIBSYSLET_API int syslet_pool_start(struct syslet_ring *ring, const struct syslet_pool_params *params)
{
	struct syslet_pool_params p = {
		.min_spares = 1,
		.max_spares = SYSLET_POOL_DEFAULT_MAX,
		.idle_ms = 1000,
	};
	struct syslet_pool *pool;

	if (ring->pool)
		return -EBUSY;
	if (params)
		p = *params;
	if (p.min_spares > p.max_spares)
		return -EINVAL;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	/* Its own descriptor: the ring's number may be reused after syslet_queue_exit(). */
	pool->fd = fcntl(ring->fd, F_DUPFD_CLOEXEC, 0);
	if (pool->fd < 0) {
		free(pool);
		return -errno;
	}
	pool->min_spares = p.min_spares;
	pool->max_spares = p.max_spares;
	pool->idle_ns = (long long)(p.idle_ms ? p.idle_ms : 1) * 1000 * 1000;
	ring->pool = pool;
	for (unsigned int i = 0; i < p.min_spares; i++) {
		int err = pool_spawn(pool);

		if (err) {
			/* The threads started leave when they see it stopping. */
			syslet_pool_stop(ring);
			return err;
		}
	}
	return 0;
}

LIBSYSLET_API void syslet_pool_stats(struct syslet_ring *ring, struct syslet_pool_stats *stats)
{
	struct syslet_pool *pool = ring->pool;

	memset(stats, 0, sizeof(*stats));
	if (!pool)
		return;
	stats->threads = atomic_load(&pool->threads);
	stats->parked = atomic_load(&pool->parked);
	stats->peak_threads = atomic_load(&pool->peak_threads);
	stats->peak_busy = atomic_load(&pool->peak_parked_gap);
	stats->handoffs = atomic_load(&pool->handoffs);
	stats->went_async = atomic_load(&pool->went_async);
}

/* After a submit: a call found no spare, so start one if the bound allows. */
static void pool_grow_if_asked(struct syslet_pool *pool, struct syslet_ring *ring)
{
	/* Pairs with the kernel's store-release of the flags. */
	unsigned int flags = __atomic_load_n(&ring->hdr->flags, __ATOMIC_ACQUIRE);

	/* One thread per lack: not again while one is on its way to PARK. */
	if ((flags & SYSLET_RING_NEED_SPARE) && !atomic_load(&pool->parked) &&
	    !atomic_load(&pool->starting))
		pool_spawn(pool);
}

LIBSYSLET_API int syslet_submit_async(struct syslet_ring *ring, unsigned int count)
{
	struct syslet_pool *pool = ring->pool;
	struct syslet_thread *self;
	long ret;

	/*
	 * Without a pool, or off the main stack (see the top of this file),
	 * the submission runs without a continuation.
	 */
	if (!pool || !on_main_stack() || !(self = self_get()) ||
	    (self->pool && self->pool != pool) || (self->joined && self->joined != pool))
		return syslet_submit_n(ring, count);
	/* Pairs with the kernel's load-acquire of sq_tail. */
	__atomic_store_n(&ring->hdr->sq_tail, ring->sq_tail, __ATOMIC_RELEASE);
	ret = syslet__switch_and_exec(ring, count, self->exec_stack_top, pool);
	/*
	 * From here on this may be another thread: nothing thread-local read
	 * before the call (self, errno's address) may be used.
	 */
	if (ret == SYSLET_WENT_ASYNC)
		atomic_fetch_add(&pool->went_async, 1);
	pool_grow_if_asked(pool, ring);
	return ret < 0 ? (int)ret : ret == SYSLET_WENT_ASYNC ? SYSLET_WENT_ASYNC : (int)ret;
}

LIBSYSLET_API void syslet_pool_stop(struct syslet_ring *ring)
{
	struct syslet_pool *pool = ring->pool;

	if (!pool)
		return;
	/* No more continuations for it, no more threads; spares leave at the next wakeup. */
	ring->pool = NULL;
	atomic_store(&pool->stopping, 1);
	/*
	 * Spares parked without a time limit leave when the descriptor closes
	 * (ESHUTDOWN); the pool itself stays allocated, since a thread may
	 * still be on its way out of it.
	 */
}
