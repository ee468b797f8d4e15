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
 * sets SYSLET_RING_NEED_SPARE (a call blocked with no spare parked), or a
 * handoff leaves fewer than min_spares parked, the next submit or threadlet
 * to return starts one more thread, up to max_spares: the pool grows off
 * the hot path, by one thread at a time. The blocked thread parks again
 * once its call is done, so a steady load needs one spare per call blocked
 * at once, plus the reserve.
 *
 * Threadlets. Every thread that may run the program (the main thread, pool
 * threads) registers with the kernel for a threadlet slot and gets a
 * threadlet stack of its own. syslet_threadlet_run() moves to that stack,
 * publishes the continuation in the slot and calls fn, with no system call;
 * if the thread blocks inside fn, a parked spare resumes the continuation
 * (the caller returns SYSLET_WENT_ASYNC there) while this thread finishes
 * fn on its threadlet stack, posts the result and parks as a spare.
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

/*
 * Left unused above a stack's first frame: a function called there may read
 * its caller's frame (glibc's syscall() takes its seventh argument from the
 * stack, and a tail call makes that the first frame itself).
 */
#define STACK_TOP_RESERVE	64

/* Each thread's threadlet stack: user code runs there (pages are touched lazily). */
#define THREADLET_STACK_SIZE	(256 * 1024)

/* The pool of one ring. */
struct syslet_pool {
	int fd;				/* a duplicate of the ring's descriptor, for spares */
	struct syslet_threadlet_slot *slots;	/* the ring's threadlet slots */
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
	atomic_ulong threadlets_async;	/* threadlets that came back on another thread */
	atomic_int stopping;
};

/* What the runtime knows about the calling thread. */
struct syslet_thread {
	void *exec_stack;		/* mapping, guard page first */
	void *exec_stack_top;
	struct syslet_pool *pool;	/* a pool thread's pool */
	struct syslet_pool *joined;	/* the pool another thread joined as a spare */
	sigjmp_buf home;		/* a pool thread's way out, on its own stack */
	void *threadlet_stack;		/* mapping, guard page first; NULL until needed */
	void *threadlet_stack_top;
	struct syslet_threadlet_slot *slot;	/* this thread's, once registered */
	struct syslet_pool *slot_pool;	/* the pool whose ring the slot is in */
	int slot_error;			/* registering failed (-errno): fn runs unwatched */
	int in_threadlet;		/* fn of a threadlet runs on this thread now */
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
	self->exec_stack_top = (char *)self->exec_stack + EXEC_STACK_SIZE + page - STACK_TOP_RESERVE;
	syslet_self = self;
	return self;
}

static void self_free(struct syslet_thread *self)
{
	if (self->threadlet_stack)
		munmap(self->threadlet_stack, THREADLET_STACK_SIZE + sysconf(_SC_PAGESIZE));
	munmap(self->exec_stack, EXEC_STACK_SIZE + sysconf(_SC_PAGESIZE));
	free(self);
	syslet_self = NULL;
}

/* In cont_x86_64.S. */
long syslet__switch_and_exec(struct syslet_ring *ring, unsigned int count, void *exec_stack_top,
			     struct syslet_pool *pool) __attribute__((visibility("hidden")));
void syslet__resume(void *cookie, long result, long went_async)
	__attribute__((visibility("hidden"), noreturn));

struct syslet__threadlet_ret {
	long result;
	long went_async;
};
struct syslet__threadlet_ret syslet__threadlet_enter(void *threadlet_stack_top,
						     syslet_threadlet_fn fn, void *arg,
						     __u64 *slot_state, struct syslet_pool *pool)
	__attribute__((visibility("hidden")));

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
		 * no stack of its own to go back to (see spare_leave()). Each
		 * idle period it decides again (pool_retire()): whether it is
		 * above the reserve depends on who else is parked by then.
		 */
		if (self->pool)
			park.timeout_ns = pool->idle_ns;
		atomic_fetch_add(&pool->parked, 1);
		ret = syscall(SYS_ioctl, pool->fd, SYSLET_IOC_PARK, &park);
		atomic_fetch_sub(&pool->parked, 1);
		if (ret == 0) {
			atomic_fetch_add(&pool->handoffs, 1);
			pool_note_out_of_park(pool);
			syslet__resume((void *)(uintptr_t)park.continuation, SYSLET_WENT_ASYNC, 1);
		}
		if (errno == EINTR)
			continue;
		if (errno == ETIMEDOUT && !pool_retire(pool))
			continue;
		if (errno == ETIMEDOUT)
			goto retired;
		/*
		 * ESHUTDOWN: the ring is going away, and no spare can park on
		 * it again: the pool starts no more threads. Anything else:
		 * give up.
		 */
		if (errno == ESHUTDOWN)
			atomic_store(&pool->stopping, 1);
		break;
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

/*
 * Registers the calling thread for threadlets on @pool's ring and makes its
 * threadlet stack; 0 or -errno (ENOTTY: a kernel without threadlets, ENOSPC:
 * every slot is taken). Then fn of a threadlet runs watched on this thread.
 */
static void pool_grow_if_asked(struct syslet_pool *pool, struct syslet_ring *ring);

static int threadlet_register(struct syslet_thread *self, struct syslet_pool *pool)
{
	long page = sysconf(_SC_PAGESIZE);
	__u32 index;

	if (self->slot)
		return self->slot_pool == pool ? 0 : -EBUSY;
	/* Failed once: not again on every threadlet (an ioctl each). */
	if (self->slot_error)
		return self->slot_error;
	if (!pool->slots)
		return -ENOTTY;
	if (!self->threadlet_stack) {
		void *stack = mmap(NULL, THREADLET_STACK_SIZE + page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

		if (stack == MAP_FAILED)
			return -ENOMEM;
		mprotect(stack, page, PROT_NONE);
		self->threadlet_stack = stack;
		self->threadlet_stack_top =
			(char *)stack + THREADLET_STACK_SIZE + page - STACK_TOP_RESERVE;
	}
	if (syscall(SYS_ioctl, pool->fd, SYSLET_IOC_THREADLET_REGISTER, &index) < 0) {
		self->slot_error = -errno;
		return self->slot_error;
	}
	self->slot = &pool->slots[index];
	self->slot_pool = pool;
	return 0;
}

static void threadlet_unregister(struct syslet_thread *self)
{
	if (!self->slot)
		return;
	syscall(SYS_ioctl, self->slot_pool->fd, SYSLET_IOC_THREADLET_UNREGISTER);
	self->slot = NULL;
	self->slot_pool = NULL;
}

/*
 * Called on the threadlet stack of a thread whose caller a spare took over
 * while fn ran: posts fn's result, then becomes a spare.
 */
__attribute__((visibility("hidden"), noreturn)) void syslet__threadlet_orphaned(long result,
									     struct syslet_pool *pool)
{
	struct syslet_thread *self = syslet_self;

	self->in_threadlet = 0;
	/*
	 * Cannot fail but for a broken protocol (the kernel reserved the
	 * completion slot when it handed the caller over): then stop at once,
	 * rather than lose the result and leave the program waiting for it.
	 */
	if (syscall(SYS_ioctl, pool->fd, SYSLET_IOC_THREADLET_DONE, &result) < 0)
		abort();
	syslet__become_spare(pool);
}

LIBSYSLET_API int syslet_threadlet_run(struct syslet_ring *ring, syslet_threadlet_fn fn, void *arg,
				       uint64_t user_data, long *result)
{
	struct syslet_pool *pool = ring->pool;
	struct syslet__threadlet_ret ret;
	struct syslet_thread *self;

	/*
	 * Unwatched, fn just runs: without a pool, off the main stack (see the
	 * top of this file), inside another threadlet, or on a thread that
	 * cannot register.
	 */
	if (!pool || !on_main_stack() || !(self = self_get()) || self->in_threadlet ||
	    (self->pool && self->pool != pool) || (self->joined && self->joined != pool) ||
	    threadlet_register(self, pool)) {
		*result = fn(arg);
		return 0;
	}
	self->slot->user_data = user_data;
	self->in_threadlet = 1;
	ret = syslet__threadlet_enter(self->threadlet_stack_top, fn, arg, &self->slot->state, pool);
	/* As after syslet__switch_and_exec(): this may be another thread now. */
	if (ret.went_async) {
		atomic_fetch_add(&pool->threadlets_async, 1);
		pool_grow_if_asked(pool, ring);
		return SYSLET_WENT_ASYNC;
	}
	self->in_threadlet = 0;
	*result = ret.result;
	pool_grow_if_asked(pool, ring);
	return 0;
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
	/* A pool thread may run the program: its threadlets are watched too. */
	threadlet_register(self, pool);
	/* spare_leave() comes back here, from any stack this thread is on. */
	if (sigsetjmp(self->home, 0) == 0)
		spare_loop(pool, self);
	threadlet_unregister(self);
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
	/* The kernel tells where the slots are since threadlets exist; 0 before. */
	if (ring->params.threadlets_off)
		pool->slots = (void *)((char *)ring->mem + ring->params.threadlets_off);
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
	stats->threadlets_async = atomic_load(&pool->threadlets_async);
}

/*
 * After a submit or a threadlet: start one more thread, within the bound, if
 * a call found no spare (SYSLET_RING_NEED_SPARE) or a handoff took the pool
 * below its reserve of min_spares parked.
 */
static void pool_grow_if_asked(struct syslet_pool *pool, struct syslet_ring *ring)
{
	/* Pairs with the kernel's store-release of the flags. */
	unsigned int flags = __atomic_load_n(&ring->hdr->flags, __ATOMIC_ACQUIRE);
	unsigned int parked = atomic_load(&pool->parked);

	/* One thread at a time: not again while one is on its way to PARK. */
	if (atomic_load(&pool->starting))
		return;
	if (((flags & SYSLET_RING_NEED_SPARE) && !parked) || parked < pool->min_spares)
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
	/* Registered threads keep the ring open; pool threads leave theirs on the way out. */
	if (syslet_self && syslet_self->slot_pool == pool)
		threadlet_unregister(syslet_self);
	atomic_store(&pool->stopping, 1);
	/*
	 * Spares parked without a time limit leave when the descriptor closes
	 * (ESHUTDOWN); the pool itself stays allocated, since a thread may
	 * still be on its way out of it.
	 */
}
