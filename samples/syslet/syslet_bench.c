// SPDX-License-Identifier: GPL-2.0
/*
 * syslet_bench: syslet against plain system calls, io_uring, Linux AIO and
 * thread pools, every contender measured side by side in one run, several
 * repetitions. Absolute times on a shared or emulated machine are noise; the
 * ratios between contenders of the same repetition are the result.
 *
 *  B1 inline cost: getppid and a cached 4 KiB pread in batches of 1, 8 and
 *     32: a plain loop, syslet, io_uring (NOPs for getppid).
 *  B2 handoff latency: from the submit of a call that blocks to user code
 *     running on the spare, against the wake-to-run latency of a futex
 *     between two plain threads; p50 and p99.
 *  B3 blocking I/O: O_DIRECT 4 KiB random reads from a block device (the
 *     benchmark command gives null_blk, completing after 100 us) at queue
 *     depth 1, 8 and 32: syslet (spares), io_uring, Linux AIO, a pthread
 *     pool, and pread (depth 1).
 *  B4 mixed: buffered 4 KiB reads of the same device at depth 32, 90% page
 *     cache hits, 10% misses: syslet, io_uring, a pthread pool.
 *  B5 threads: in B3 at depth 32 and in B4, the most threads the process
 *     had beyond the submitting one, per operation in flight.
 *  T  threadlets and continuations that do not block (not in the JSON).
 *  E  a loop of execs of one getppid, for profiles (not in the JSON).
 *  C  the same, each exec naming a continuation (libsyslet's runtime).
 *
 * Usage: syslet_bench [-r REPS] [-n OPS] [-s SECTIONS] [-d DEVICE] [-j FILE]
 *   -s: the sections to run, e.g. B1,B2 (default B1,B2,B3,B4,B5; B5 is
 *       measured in B3 and B4); -j: write every figure as JSON.
 * A progress line per measurement goes to stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "libsyslet.h"

#define MAX_BATCH	32
#define MAX_DEPTH	32
#define BLOCK		4096

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "syslet_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* --- figures: every one is kept, and written out as JSON at the end --- */

struct figure {
	const char *section, *workload, *contender, *metric, *unit;
	int param, rep;
	double value;
};

/* The block device of B3 and B4, whose page cache B1 reads. */
static const char *device = "/dev/nullb0";
static const char *data_file = "device";

static struct figure *figures;
static unsigned int nr_figures, cap_figures;
static int reps = 5, rep;

static void record(const char *section, const char *workload, const char *contender, int param,
		   const char *metric, const char *unit, double value)
{
	if (nr_figures == cap_figures) {
		cap_figures = cap_figures ? 2 * cap_figures : 256;
		figures = realloc(figures, cap_figures * sizeof(*figures));
		if (!figures)
			die("realloc");
	}
	figures[nr_figures++] = (struct figure){ section, workload, contender, metric, unit,
						 param, rep, value };
	if (strcmp(metric, "sample"))
		fprintf(stderr, "[%s rep %d/%d] %-8s %-10s %3d %-8s %12.1f %s\n", section, rep + 1,
			reps, workload, contender, param, metric, value, unit);
}

static void write_json(const char *path, const char *sections, unsigned int ops)
{
	struct utsname u;
	char date[32];
	time_t t = time(NULL);
	FILE *f = fopen(path, "w");

	if (!f)
		die(path);
	uname(&u);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	fprintf(f, "{\n  \"date\": \"%s\",\n  \"kernel\": \"%s\",\n  \"machine\": \"%s\",\n",
		date, u.release, u.machine);
	fprintf(f, "  \"cpus\": %ld,\n  \"reps\": %d,\n  \"ops\": %u,\n  \"sections\": \"%s\",\n",
		sysconf(_SC_NPROCESSORS_ONLN), reps, ops, sections);
	fprintf(f, "  \"device\": \"%s\",\n  \"b1_pread_file\": \"%s\",\n", device, data_file);
	fprintf(f, "  \"figures\": [\n");
	for (unsigned int i = 0; i < nr_figures; i++) {
		const struct figure *g = &figures[i];

		fprintf(f, "    {\"section\": \"%s\", \"workload\": \"%s\", \"contender\": \"%s\", "
			"\"param\": %d, \"metric\": \"%s\", \"unit\": \"%s\", \"rep\": %d, "
			"\"value\": %.3f}%s\n", g->section, g->workload, g->contender, g->param,
			g->metric, g->unit, g->rep, g->value, i + 1 < nr_figures ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The @p-th percentile of @n samples (sorted in place). */
static double percentile(double *v, unsigned int n, double p)
{
	unsigned int i;

	qsort(v, n, sizeof(*v), cmp_double);
	i = (unsigned int)(p / 100.0 * (n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* Threads of this process now (/proc/self/task), the caller included. */
static int threads_now(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* --- B1: inline cost --- */

static struct syslet_ring ring;
static struct io_uring uring;
static char (*bufs)[BLOCK];
static int data_fd;

/* @n syslet atoms of @nr in batches of @batch (pread of data_fd if nr is pread64); ns/op. */
static double syslet_loop(unsigned int n, unsigned int batch, unsigned int nr)
{
	double t0 = now_ns();

	for (unsigned int done = 0; done < n; done += batch) {
		for (unsigned int i = 0; i < batch; i++)
			syslet_prep(syslet_get_sqe(&ring), nr, data_fd, (uintptr_t)bufs[i], BLOCK,
				    (uint64_t)((done + i) % 256) * BLOCK, 0, 0);
		if (syslet_submit(&ring) != (int)batch)
			die("syslet exec");
		for (unsigned int i = 0; i < batch; i++) {
			struct syslet_cqe *cqe = syslet_peek_cqe(&ring);

			if (!cqe || cqe->res < 0 || !(cqe->flags & SYSLET_CQE_F_INLINE))
				die("syslet completion");
			syslet_cqe_seen(&ring);
		}
	}
	return (now_ns() - t0) / n;
}

/* The same with io_uring: reads of data_fd, or NOPs. */
static double uring_loop(unsigned int n, unsigned int batch, int nop)
{
	double t0 = now_ns();

	for (unsigned int done = 0; done < n; done += batch) {
		struct io_uring_cqe *cqe;

		for (unsigned int i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&uring);

			if (nop)
				io_uring_prep_nop(sqe);
			else
				io_uring_prep_read(sqe, data_fd, bufs[i], BLOCK,
						   (uint64_t)((done + i) % 256) * BLOCK);
		}
		if (io_uring_submit_and_wait(&uring, batch) != (int)batch)
			die("io_uring_submit_and_wait");
		for (unsigned int i = 0; i < batch; i++) {
			if (io_uring_wait_cqe(&uring, &cqe) || cqe->res < 0)
				die("io_uring completion");
			io_uring_cqe_seen(&uring, cqe);
		}
	}
	return (now_ns() - t0) / n;
}

static double plain_loop(unsigned int n, int pread_it)
{
	double t0 = now_ns();

	for (unsigned int i = 0; i < n; i++) {
		if (!pread_it)
			syscall(__NR_getppid);
		else if (pread(data_fd, bufs[0], BLOCK, (i % 256) * BLOCK) != BLOCK)
			die("pread");
	}
	return (now_ns() - t0) / n;
}

static void bench_inline(unsigned int n)
{
	static const unsigned int batches[] = { 1, 8, 32 };

	for (int w = 0; w < 2; w++) {
		const char *workload = w ? "pread4k" : "getppid";
		unsigned int nr = w ? __NR_pread64 : __NR_getppid;

		record("B1", workload, "plain", 1, "time", "ns/op", plain_loop(n, w));
		for (unsigned int b = 0; b < 3; b++) {
			record("B1", workload, "syslet", batches[b], "time", "ns/op",
			       syslet_loop(n, batches[b], nr));
			record("B1", workload, "io_uring", batches[b], "time", "ns/op",
			       uring_loop(n, batches[b], !w));
		}
	}
}

/* --- B2: handoff latency against a futex wake --- */

static int block_pipe[2];
static volatile double resumed_at;

static void *spare_main(void *arg)
{
	uint64_t cookie;

	(void)arg;
	while (syslet_park(&ring, &cookie) == 0) {
		resumed_at = now_ns();
		/* "The program" goes on here; it unblocks the submitter. */
		if (write(block_pipe[1], "x", 1) != 1)
			die("write");
	}
	return NULL;
}

static double handoff_once(uint64_t cookie)
{
	double t0;
	int handed = 0;
	char c;

	while (syslet_fdinfo_counter(ring.fd, "spares_parked") < 1)
		usleep(50);
	syslet_prep(syslet_get_sqe(&ring), __NR_read, block_pipe[0], (uintptr_t)&c, 1, 0, 0, 0);
	t0 = now_ns();
	if (syslet_submit_cont(&ring, 1, cookie, &handed) != 1 || !handed)
		die("a handoff did not happen");
	syslet_cqe_seen(&ring);
	return resumed_at - t0;
}

static int futex_word, futex_done;
static volatile double woke_at;
static volatile int waiter_asleep, waiter_stop;

static long futex(int *uaddr, int op, int val)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static void *futex_waiter(void *arg)
{
	(void)arg;
	for (;;) {
		waiter_asleep = 1;
		while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
			futex(&futex_word, FUTEX_WAIT_PRIVATE, 0);
		woke_at = now_ns();
		__atomic_store_n(&futex_word, 0, __ATOMIC_RELAXED);
		if (waiter_stop)
			return NULL;
		__atomic_store_n(&futex_done, 1, __ATOMIC_RELEASE);
		futex(&futex_done, FUTEX_WAKE_PRIVATE, 1);
	}
}

/* One wake: the waker then sleeps too, as the submitter of a handoff does. */
static double futex_once(void)
{
	double t0;

	while (!waiter_asleep)
		usleep(50);
	usleep(200);	/* let it sleep in FUTEX_WAIT */
	waiter_asleep = 0;
	t0 = now_ns();
	__atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
	futex(&futex_word, FUTEX_WAKE_PRIVATE, 1);
	while (__atomic_load_n(&futex_done, __ATOMIC_ACQUIRE) == 0)
		futex(&futex_done, FUTEX_WAIT_PRIVATE, 0);
	futex_done = 0;
	return woke_at - t0;
}

static void bench_handoff(unsigned int samples)
{
	double *syslet = calloc(samples, sizeof(double));
	double *fut = calloc(samples, sizeof(double));
	pthread_t spare, waiter;

	if (!syslet || !fut)
		die("calloc");
	waiter_stop = 0;
	pthread_create(&spare, NULL, spare_main, NULL);
	pthread_create(&waiter, NULL, futex_waiter, NULL);
	/* Interleaved, so that both see the same machine. */
	for (unsigned int i = 0; i < samples; i++) {
		syslet[i] = handoff_once(i + 1);
		fut[i] = futex_once();
	}
	for (unsigned int i = 0; i < samples; i++) {
		record("B2", "block", "syslet", 0, "sample", "ns", syslet[i]);
		record("B2", "block", "futex", 0, "sample", "ns", fut[i]);
	}
	record("B2", "block", "syslet", 0, "p50", "ns", percentile(syslet, samples, 50));
	record("B2", "block", "syslet", 0, "p99", "ns", percentile(syslet, samples, 99));
	record("B2", "block", "futex", 0, "p50", "ns", percentile(fut, samples, 50));
	record("B2", "block", "futex", 0, "p99", "ns", percentile(fut, samples, 99));
	/* Sends the spare away: PARK fails once the owner closes a descriptor. */
	close(dup(ring.fd));
	pthread_join(spare, NULL);
	waiter_stop = 1;
	__atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
	futex(&futex_word, FUTEX_WAKE_PRIVATE, 1);
	pthread_join(waiter, NULL);
	free(syslet);
	free(fut);
}

/* --- B3, B4: reads at a queue depth, from a block device --- */

/*
 * A workload: @n reads of BLOCK bytes from @fd at the offsets next_offset()
 * gives, at most @depth in flight. Each contender's peak threads (beyond the
 * caller) are sampled every few completions for B5.
 */
struct io_load {
	int fd;
	unsigned int n, depth;
	/* B4: 1 in 10 reads goes to blocks never read before. */
	int mixed;
	uint64_t hot_blocks, cold_next, dev_blocks;
	uint64_t seed;
	int peak_threads;
	/* syslet's counters for the run (fdinfo), or -1. */
	long handoffs, sync_fallbacks;
	/* The contender is syslet: its pool's threads are its own. */
	int syslet;
};

static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t next_offset(struct io_load *l)
{
	uint64_t r = next_random(&l->seed);

	if (!l->mixed)
		return (r % l->dev_blocks) * BLOCK;
	if (r % 10 == 0)
		return (l->cold_next++ % l->dev_blocks) * BLOCK;
	return ((r >> 8) % l->hot_blocks) * BLOCK;
}

static struct syslet_ring io_ring;

static void sample_threads(struct io_load *l, unsigned int done)
{
	if (done % 64 == 0) {
		struct syslet_pool_stats pool;
		int t = threads_now() - 1;

		/* The syslet pool's threads count for syslet only. */
		syslet_pool_stats(&io_ring, &pool);
		if (!l->syslet)
			t -= pool.threads;

		if (t > l->peak_threads)
			l->peak_threads = t;
	}
}

static char (*io_bufs)[BLOCK];

static double psync_run(struct io_load *l)
{
	double t0 = now_ns();

	for (unsigned int i = 0; i < l->n; i++)
		if (pread(l->fd, io_bufs[0], BLOCK, next_offset(l)) != BLOCK)
			die("pread");
	return l->n / ((now_ns() - t0) / 1e9);
}

/*
 * The program keeps @depth reads in flight: each submit that blocks returns
 * at once on a spare (SYSLET_WENT_ASYNC) while the blocked thread finishes
 * it; a hit completes inline, with no thread switch. Runs on the main
 * thread's stack (the runtime moves only that one), and may return on
 * another thread: nothing here depends on which.
 */
static __attribute__((noinline)) double syslet_run(struct io_load *l)
{
	unsigned int submitted = 0, done = 0;
	double t0 = now_ns();

	while (done < l->n) {
		while (submitted < l->n && submitted - done < l->depth) {
			struct syslet_sqe *sqe = syslet_get_sqe(&io_ring);
			int ret;

			syslet_prep_pread(sqe, l->fd, io_bufs[submitted % MAX_DEPTH], BLOCK,
					  next_offset(l));
			sqe->user_data = submitted++;
			ret = syslet_submit_async(&io_ring, 1);
			if (ret != 1 && ret != SYSLET_WENT_ASYNC)
				die("syslet_submit_async");
		}
		while (!syslet_peek_cqe(&io_ring)) {
			int ret = syslet_wait(&io_ring, 1, -1);

			if (ret < 0 && ret != -EINTR) {
				errno = -ret;
				die("syslet_wait");
			}
		}
		for (struct syslet_cqe *cqe; (cqe = syslet_peek_cqe(&io_ring));) {
			if (cqe->res != BLOCK) {
				errno = cqe->res < 0 ? -cqe->res : EIO;
				die("syslet read");
			}
			syslet_cqe_seen(&io_ring);
			sample_threads(l, ++done);
		}
	}
	return l->n / ((now_ns() - t0) / 1e9);
}

/*
 * One ring and pool for every syslet run of B3 and B4: a spare parked for
 * each read in flight at the deepest queue, and 4 more at most (the pool
 * starts one more whenever a call found none). One pool only: once the
 * program moved to a pool's thread, it can submit with a continuation to
 * that pool's ring alone. Its counters are read before and after each run.
 */
static int io_pool_started;

static long io_counter(const char *name)
{
	return syslet_fdinfo_counter(io_ring.fd, name);
}

static double syslet_io_run(struct io_load *l)
{
	struct syslet_pool_params params = {
		.min_spares = MAX_DEPTH, .max_spares = MAX_DEPTH + 4, .idle_ms = 600000,
	};
	long handoffs, sync_fallbacks;
	double iops;

	if (!io_pool_started) {
		if (syslet_queue_init(&io_ring, 2 * MAX_DEPTH, 4 * MAX_DEPTH) ||
		    syslet_pool_start(&io_ring, &params))
			die("syslet ring and pool");
		io_pool_started = 1;
		/* Let the spares park before the first run. */
		while (io_counter("spares_parked") < MAX_DEPTH)
			usleep(1000);
	}
	handoffs = io_counter("handoffs");
	sync_fallbacks = io_counter("sync_fallbacks");
	iops = syslet_run(l);
	/* How the reads went: handed off, blocking their caller, or inline (B4's hits). */
	l->handoffs = io_counter("handoffs") - handoffs;
	l->sync_fallbacks = io_counter("sync_fallbacks") - sync_fallbacks;
	return iops;
}

static double uring_run(struct io_load *l)
{
	struct io_uring r;
	unsigned int submitted = 0, done = 0;
	double t0;

	if (io_uring_queue_init(MAX_DEPTH, &r, 0))
		die("io_uring_queue_init");
	t0 = now_ns();
	while (done < l->n) {
		struct io_uring_cqe *cqe;

		while (submitted < l->n && submitted - done < l->depth) {
			io_uring_prep_read(io_uring_get_sqe(&r), l->fd,
					   io_bufs[submitted % MAX_DEPTH], BLOCK, next_offset(l));
			submitted++;
		}
		int ret;

		do
			ret = io_uring_submit_and_wait(&r, 1);
		while (ret == -EINTR);
		if (ret < 0) {
			errno = -ret;
			die("io_uring_submit_and_wait");
		}
		while (io_uring_peek_cqe(&r, &cqe) == 0) {
			if (cqe->res != BLOCK) {
				errno = cqe->res < 0 ? -cqe->res : EIO;
				die("io_uring read");
			}
			io_uring_cqe_seen(&r, cqe);
			sample_threads(l, ++done);
		}
	}
	t0 = l->n / ((now_ns() - t0) / 1e9);
	io_uring_queue_exit(&r);
	return t0;
}

/* Linux AIO through its system calls (what libaio wraps). */
static double aio_run(struct io_load *l)
{
	struct iocb cbs[MAX_DEPTH], *ptrs[MAX_DEPTH];
	struct io_event events[MAX_DEPTH];
	unsigned int submitted = 0, done = 0, free_slots[MAX_DEPTH], nfree = 0;
	aio_context_t ctx = 0;
	double t0;

	if (syscall(SYS_io_setup, MAX_DEPTH, &ctx))
		die("io_setup");
	for (unsigned int i = 0; i < l->depth; i++)
		free_slots[nfree++] = i;
	t0 = now_ns();
	while (done < l->n) {
		unsigned int batch = 0;
		long got;

		while (submitted < l->n && submitted - done < l->depth) {
			unsigned int s = free_slots[--nfree];

			cbs[s] = (struct iocb){
				.aio_data = s,
				.aio_lio_opcode = IOCB_CMD_PREAD,
				.aio_fildes = l->fd,
				.aio_buf = (uintptr_t)io_bufs[s],
				.aio_nbytes = BLOCK,
				.aio_offset = next_offset(l),
			};
			ptrs[batch++] = &cbs[s];
			submitted++;
		}
		if (batch) {
			long ret;

			do
				ret = syscall(SYS_io_submit, ctx, batch, ptrs);
			while (ret < 0 && errno == EINTR);
			if (ret != batch)
				die("io_submit");
		}
		/* The runtime's spares may take signals while this thread waits. */
		do
			got = syscall(SYS_io_getevents, ctx, 1, MAX_DEPTH, events, NULL);
		while (got < 0 && errno == EINTR);
		if (got < 1)
			die("io_getevents");
		for (long i = 0; i < got; i++) {
			if (events[i].res != BLOCK) {
				errno = EIO;
				die("aio read");
			}
			free_slots[nfree++] = events[i].data;
			sample_threads(l, ++done);
		}
	}
	t0 = l->n / ((now_ns() - t0) / 1e9);
	syscall(SYS_io_destroy, ctx);
	return t0;
}

/* A pthread pool of @depth workers taking reads from a queue. */
struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	uint64_t queue[MAX_DEPTH];
	unsigned int head, tail, completed, stop;
	int fd;
};

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	char buf[BLOCK] __attribute__((aligned(BLOCK)));

	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t off;

		while (p->head == p->tail && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->head == p->tail)
			break;
		off = p->queue[p->head++ % MAX_DEPTH];
		pthread_mutex_unlock(&p->lock);
		if (pread(p->fd, buf, BLOCK, off) != BLOCK)
			die("pool pread");
		pthread_mutex_lock(&p->lock);
		p->completed++;
		pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static double pool_run(struct io_load *l)
{
	struct pool p = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.work = PTHREAD_COND_INITIALIZER,
		.done = PTHREAD_COND_INITIALIZER,
		.fd = l->fd,
	};
	pthread_t workers[MAX_DEPTH];
	unsigned int submitted = 0, done = 0;
	double t0;

	for (unsigned int i = 0; i < l->depth; i++)
		pthread_create(&workers[i], NULL, pool_worker, &p);
	t0 = now_ns();
	pthread_mutex_lock(&p.lock);
	while (done < l->n) {
		while (submitted < l->n && submitted - done < l->depth) {
			p.queue[p.tail++ % MAX_DEPTH] = next_offset(l);
			submitted++;
			pthread_cond_signal(&p.work);
		}
		while (p.completed == done)
			pthread_cond_wait(&p.done, &p.lock);
		while (done < p.completed) {
			pthread_mutex_unlock(&p.lock);
			sample_threads(l, ++done);
			pthread_mutex_lock(&p.lock);
		}
	}
	p.stop = 1;
	pthread_cond_broadcast(&p.work);
	pthread_mutex_unlock(&p.lock);
	t0 = l->n / ((now_ns() - t0) / 1e9);
	for (unsigned int i = 0; i < l->depth; i++)
		pthread_join(workers[i], NULL);
	return t0;
}

static uint64_t cold_cursor;

static void run_io(const char *section, const char *workload, struct io_load *l,
		   const char *contender, double (*run)(struct io_load *))
{
	double iops;

	l->peak_threads = 0;
	l->handoffs = l->sync_fallbacks = -1;
	l->syslet = run == syslet_io_run;
	l->seed = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)rep << 32) ^ l->depth;
	l->cold_next = cold_cursor;
	iops = run(l);
	cold_cursor = l->cold_next;
	/* The threads a contender started are gone before the next one starts. */
	for (int i = 0; i < 1000; i++) {
		struct syslet_pool_stats pool;

		syslet_pool_stats(&io_ring, &pool);
		if (threads_now() <= 1 + (int)pool.threads)
			break;
		usleep(1000);
	}
	record(section, workload, contender, l->depth, "rate", "ops/s", iops);
	if (l->handoffs >= 0) {
		record(section, workload, contender, l->depth, "handoffs", "per op",
		       (double)l->handoffs / l->n);
		record(section, workload, contender, l->depth, "sync", "per op",
		       (double)l->sync_fallbacks / l->n);
	}
	if (l->depth == MAX_DEPTH)
		record("B5", workload, contender, l->depth, "threads", "per op in flight",
		       (double)l->peak_threads / l->depth);
}

static int open_device(int flags, uint64_t *blocks)
{
	uint64_t bytes;
	int fd = open(device, O_RDONLY | flags);

	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes)) {
		fprintf(stderr, "syslet_bench: %s: %s; B3 and B4 skipped\n", device,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* A 1 GiB span at most: the same for every contender. */
	*blocks = (bytes < (1ULL << 30) ? bytes : 1ULL << 30) / BLOCK;
	return fd;
}

static void bench_blocking_io(unsigned int n)
{
	static const unsigned int depths[] = { 1, 8, 32 };
	struct io_load l = { 0 };

	l.fd = open_device(O_DIRECT, &l.dev_blocks);
	if (l.fd < 0)
		return;
	for (unsigned int d = 0; d < 3; d++) {
		l.depth = depths[d];
		/* Enough reads for the deeper queues to reach a steady state. */
		l.n = n / 10 * (d + 1);
		if (l.depth == 1)
			run_io("B3", "odirect", &l, "pread", psync_run);
		run_io("B3", "odirect", &l, "io_uring", uring_run);
		run_io("B3", "odirect", &l, "aio", aio_run);
		run_io("B3", "odirect", &l, "pool", pool_run);
		run_io("B3", "odirect", &l, "syslet", syslet_io_run);
	}
	close(l.fd);
}

static void bench_mixed(unsigned int n)
{
	struct io_load l = { .mixed = 1, .depth = MAX_DEPTH, .hot_blocks = 4096 };

	l.fd = open_device(0, &l.dev_blocks);
	if (l.fd < 0)
		return;
	/* No readahead: a miss reads one block, and the next cold block stays cold. */
	posix_fadvise(l.fd, 0, 0, POSIX_FADV_RANDOM);
	if (!cold_cursor)
		cold_cursor = l.dev_blocks / 2;
	/* The hot blocks are cached; they stay so (2 GiB of guest memory, 16 MiB of them). */
	for (uint64_t b = 0; b < l.hot_blocks; b++)
		if (pread(l.fd, io_bufs[0], BLOCK, b * BLOCK) != BLOCK)
			die("warming the page cache");
	l.n = n / 4;
	run_io("B4", "mixed", &l, "io_uring", uring_run);
	run_io("B4", "mixed", &l, "pool", pool_run);
	run_io("B4", "mixed", &l, "syslet", syslet_io_run);
	close(l.fd);
}

/* --- T: threadlets and continuations that do not block (printed only) --- */

static __attribute__((noinline)) long add_one(void *arg)
{
	return (long)arg + 1;
}

static void bench_threadlet(unsigned int n)
{
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = 1, .idle_ms = 1000 };
	static struct syslet_ring tring;
	double t0, plain;
	long result;

	if (syslet_queue_init(&tring, 8, 0) || syslet_pool_start(&tring, &params))
		die("threadlet ring");
	plain = plain_loop(n, 0);
	syslet_threadlet_run(&tring, add_one, NULL, 0, &result);
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++)
		if (syslet_threadlet_run(&tring, add_one, (void *)(long)i, i, &result))
			die("threadlet");
	printf("T: threadlet (enter, call, leave): %.2fx a getppid\n",
	       (now_ns() - t0) / n / plain);
	t0 = now_ns();
	for (unsigned int i = 0; i < n; i++) {
		syslet_prep(syslet_get_sqe(&tring), __NR_getppid, 0, 0, 0, 0, 0, 0);
		if (syslet_submit_async(&tring, 1) != 1)
			die("submit_async");
		syslet_cqe_seen(&tring);
	}
	printf("T: exec of 1 getppid naming a continuation: %.2fx a getppid\n",
	       (now_ns() - t0) / n / plain);
	syslet_pool_stop(&tring);
	syslet_queue_exit(&tring);
}

/* Whether @a and @b are figures of the same measurement (in different repetitions). */
static int same_series(const struct figure *a, const struct figure *b)
{
	return !strcmp(a->section, b->section) && !strcmp(a->workload, b->workload) &&
	       !strcmp(a->contender, b->contender) && a->param == b->param &&
	       !strcmp(a->metric, b->metric);
}

/* Prints one line per measurement: its median over the repetitions. */
static void print_summary(void)
{
	printf("syslet_bench: medians of %d repetition(s)\n", reps);
	for (unsigned int i = 0; i < nr_figures; i++) {
		const struct figure *g = &figures[i];
		unsigned int k = 0, j;
		double v[64];

		if (!strcmp(g->metric, "sample"))
			continue;
		/* Only at its first figure. */
		for (j = 0; j < i && !same_series(&figures[j], g); j++)
			;
		if (j < i)
			continue;
		for (j = i; j < nr_figures && k < 64; j++)
			if (same_series(&figures[j], g))
				v[k++] = figures[j].value;
		printf("  %-3s %-8s %-10s %3d %-8s %12.1f %s\n", g->section, g->workload,
		       g->contender, g->param, g->metric, percentile(v, k, 50), g->unit);
	}
}

int main(int argc, char **argv)
{
	const char *sections = "B1,B2,B3,B4,B5", *json = NULL;
	unsigned int n = 20000;
	static char block[BLOCK];
	int opt;

	while ((opt = getopt(argc, argv, "r:n:s:d:j:")) != -1) {
		switch (opt) {
		case 'r': reps = atoi(optarg); break;
		case 'n': n = atoi(optarg); break;
		case 's': sections = optarg; break;
		case 'd': device = optarg; break;
		case 'j': json = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-r REPS] [-n OPS] [-s B1,B2,B3,B4,B5,T,E,C] "
				"[-d DEVICE] [-j FILE]\n", argv[0]);
			return 2;
		}
	}
	if (reps < 1 || reps > 64 || n < 320)
		return 2;
	n -= n % MAX_BATCH;
	if (posix_memalign((void **)&bufs, BLOCK, MAX_BATCH * BLOCK) ||
	    posix_memalign((void **)&io_bufs, BLOCK, MAX_DEPTH * BLOCK))
		die("posix_memalign");
	/*
	 * B1's cached reads: the first 1 MiB of the block device, read once so
	 * that it is in the page cache (io_uring reads a block device without
	 * blocking, but punts every read of shmem to a worker thread); without
	 * a device, a file in shmem.
	 */
	data_fd = open(device, O_RDONLY);
	if (data_fd < 0) {
		data_file = "memfd";
		data_fd = memfd_create("syslet-bench", 0);
		for (int i = 0; i < 256; i++)
			if (write(data_fd, block, sizeof(block)) != sizeof(block))
				die("write");
	}
	for (int i = 0; i < 256; i++)
		if (pread(data_fd, block, sizeof(block), i * BLOCK) != sizeof(block))
			die("pread");
	if (pipe(block_pipe))
		die("pipe");
	if (io_uring_queue_init(64, &uring, 0))
		die("io_uring_queue_init");
	for (rep = 0; rep < reps; rep++) {
		if (syslet_queue_init(&ring, 64, 128))
			die("syslet_queue_init");
		if (strstr(sections, "B1"))
			bench_inline(n);
		if (strstr(sections, "B2"))
			bench_handoff(n / 100 < 50 ? 50 : n / 100);
		if (strstr(sections, "B3") || strstr(sections, "B5"))
			bench_blocking_io(n);
		if (strstr(sections, "B4") || strstr(sections, "B5"))
			bench_mixed(n);
		syslet_queue_exit(&ring);
	}
	if (strstr(sections, "T"))
		bench_threadlet(n);
	if (strstr(sections, "C")) {
		/* For profiles: execs of one getppid naming a continuation (a spare parked). */
		struct syslet_pool_params params = { .min_spares = 1, .max_spares = 1,
						      .idle_ms = 1000 };
		static struct syslet_ring cring;
		double t0;

		if (syslet_queue_init(&cring, 8, 0) || syslet_pool_start(&cring, &params))
			die("continuation ring");
		t0 = now_ns();
		for (unsigned int i = 0; i < 4 * n; i++) {
			syslet_prep(syslet_get_sqe(&cring), __NR_getppid, 0, 0, 0, 0, 0, 0);
			if (syslet_submit_async(&cring, 1) != 1)
				die("submit_async");
			syslet_cqe_seen(&cring);
		}
		printf("C: exec of 1 getppid naming a continuation: %.0f ns\n",
		       (now_ns() - t0) / (4 * n));
		syslet_pool_stop(&cring);
		syslet_queue_exit(&cring);
	}
	if (strstr(sections, "E")) {
		/* For profiles: execs of one getppid, nothing else. */
		if (syslet_queue_init(&ring, 64, 128))
			die("syslet_queue_init");
		printf("E: exec of 1 getppid: %.0f ns\n", syslet_loop(4 * n, 1, __NR_getppid));
		syslet_queue_exit(&ring);
	}
	print_summary();
	if (json)
		write_json(json, sections, n);
	if (io_pool_started) {
		syslet_pool_stop(&io_ring);
		syslet_queue_exit(&io_ring);
	}
	io_uring_queue_exit(&uring);
	return 0;
}
