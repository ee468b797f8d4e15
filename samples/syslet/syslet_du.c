// SPDX-License-Identifier: GPL-2.0
/*
 * syslet_du: a du-and-checksum tree walker (getdents64, statx, openat, read,
 * close: getdents64 has no io_uring opcode) written three ways, measured in
 * one run:
 *
 *   syslet  one event loop: each round submits the next step of every ready
 *           task (directories and files, up to 64 alive) in batches of 8
 *           with syslet_submit_async(); a step that blocks (a cold cache)
 *           hands the loop to a spare, so the loop goes on with the other
 *           tasks while it waits;
 *   threadlet  one event loop that runs each directory listing and each
 *           file's hashing as a threadlet: plain calls, inline; one that
 *           blocks returns the loop to it on a spare, and its result comes
 *           back as a completion;
 *   pool    the fallback every io_uring runtime keeps for such calls: worker
 *           threads pulling tasks from a queue, plain system calls;
 *   seq     a plain recursive loop.
 *
 * Every mode prints bytes, files, directories and an order-independent
 * checksum of the contents, which must agree; the syslet mode also prints
 * how many calls ran inline and how many completed after a handoff, and how
 * often the loop went on while a call blocked; the threadlet mode how many
 * threadlets ran inline and how many went async.
 *
 * Usage: syslet_du [-m syslet|threadlet|pool|seq] [-t threads] [-b batch] DIR
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "libsyslet.h"

#define READ_CHUNK	(64 * 1024)
#define DENTS_BUF	(32 * 1024)
#define MAX_ACTIVE	64

struct totals {
	unsigned long long bytes, files, dirs, sum;
};

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* FNV-1a, folded per file and summed, so the order files are read in does not matter. */
static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static char *join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

/* ---- plain calls: the sequential loop and the thread pool ------------- */

/* Hashes the contents of regular file @path with plain calls, in @data. */
static uint64_t plain_hash_file(const char *path, char *data)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t h = FNV_INIT;
	long r;

	while (fd >= 0 && (r = read(fd, data, READ_CHUNK)) > 0)
		h = fnv(h, (void *)data, r);
	if (fd >= 0)
		close(fd);
	return h;
}

/*
 * Lists directory @path with plain calls (getdents64, statx) into @dents,
 * calling @entry with the path of each directory and regular file in it
 * (the callee takes the path) and its statx.
 */
static void list_dir(const char *path, char *dents,
		     void (*entry)(void *ctx, char *child, const struct statx *stx), void *ctx)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long n;

	while (fd >= 0 && (n = syscall(SYS_getdents64, fd, dents, DENTS_BUF)) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (void *)(dents + off);
			struct statx stx;
			char *child;

			off += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			child = join(path, d->d_name);
			if (statx(AT_FDCWD, child, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_SIZE, &stx) ||
			    !(S_ISDIR(stx.stx_mode) || S_ISREG(stx.stx_mode))) {
				free(child);
				continue;
			}
			entry(ctx, child, &stx);
		}
	}
	if (fd >= 0)
		close(fd);
}

/* plain_dir()'s state while it lists one directory. */
struct plain_dir {
	struct totals *t;
	char *data;
	void (*subdir)(void *ctx, char *child);
	void *ctx;
};

static void plain_entry(void *arg, char *child, const struct statx *stx)
{
	struct plain_dir *pd = arg;

	if (S_ISDIR(stx->stx_mode)) {
		pd->subdir(pd->ctx, child);
		return;
	}
	pd->t->files++;
	pd->t->bytes += stx->stx_size;
	pd->t->sum += plain_hash_file(child, pd->data);
	free(child);
}

/*
 * Walks the entries of directory @path with plain calls: regular files are
 * hashed and counted into @t, subdirectories handed to @subdir, which takes
 * the path it is given. @dents and @data are the caller's buffers.
 */
static void plain_dir(const char *path, struct totals *t, char *dents, char *data,
		      void (*subdir)(void *ctx, char *child), void *ctx)
{
	struct plain_dir pd = { .t = t, .data = data, .subdir = subdir, .ctx = ctx };

	t->dirs++;
	list_dir(path, dents, plain_entry, &pd);
}

static void seq_walk(const char *path, struct totals *t);

static void seq_subdir(void *ctx, char *child)
{
	seq_walk(child, ctx);
	free(child);
}

static void seq_walk(const char *path, struct totals *t)
{
	char *dents = malloc(DENTS_BUF), *data = malloc(READ_CHUNK);

	plain_dir(path, t, dents, data, seq_subdir, t);
	free(dents);
	free(data);
}

/* ---- thread pool ------------------------------------------------------- */

struct pool_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char **paths;		/* directories to walk */
	size_t n, cap;
	int busy;		/* workers walking a directory */
	struct totals t;
};

static void pq_push(struct pool_queue *q, char *path)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 64;
		q->paths = realloc(q->paths, q->cap * sizeof(*q->paths));
	}
	q->paths[q->n++] = path;
	pthread_cond_signal(&q->cond);
}

static void pool_subdir(void *ctx, char *child)
{
	struct pool_queue *q = ctx;

	pthread_mutex_lock(&q->lock);
	pq_push(q, child);
	pthread_mutex_unlock(&q->lock);
}

static void *pool_worker(void *arg)
{
	struct pool_queue *q = arg;
	char *buf = malloc(DENTS_BUF), *data = malloc(READ_CHUNK);
	struct totals t = { 0 };

	pthread_mutex_lock(&q->lock);
	for (;;) {
		char *path;

		while (!q->n && q->busy)
			pthread_cond_wait(&q->cond, &q->lock);
		if (!q->n)
			break;
		path = q->paths[--q->n];
		q->busy++;
		pthread_mutex_unlock(&q->lock);

		plain_dir(path, &t, buf, data, pool_subdir, q);
		free(path);
		pthread_mutex_lock(&q->lock);
		q->busy--;
		if (!q->busy && !q->n)
			pthread_cond_broadcast(&q->cond);
	}
	q->t.bytes += t.bytes;
	q->t.files += t.files;
	q->t.dirs += t.dirs;
	q->t.sum += t.sum;
	pthread_mutex_unlock(&q->lock);
	free(buf);
	free(data);
	return NULL;
}

static void pool_walk(const char *root, int threads, struct totals *t)
{
	struct pool_queue q = {
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	pthread_t tid[64];

	if (threads > 64)
		threads = 64;
	pq_push(&q, strdup(root));
	for (int i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, pool_worker, &q);
	for (int i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	*t = q.t;
	free(q.paths);
}

/* ---- syslet: one event loop, one step of many tasks per batch ----------- */

enum step { OPEN, DENTS, STAT, READ, CLOSE, DONE };

struct task {
	char *path;
	int is_dir;		/* -1: unknown yet (needs statx) */
	enum step step;
	int fd;
	int in_flight;
	uint64_t hash;
	struct statx stx;
	char *buf;		/* getdents64 or read buffer */
	struct task *next;
};

struct walker {
	struct syslet_ring ring;
	struct task *ready;	/* tasks with a step to submit */
	int active;		/* tasks alive */
	int in_flight;		/* steps submitted, not completed */
	struct task *pending;	/* tasks not started: over MAX_ACTIVE */
	struct totals t;
	unsigned long inline_done, async_done, batches, went_async;
};

static void push_ready(struct walker *w, struct task *task)
{
	task->next = w->ready;
	w->ready = task;
}

static void add_task(struct walker *w, char *path, int is_dir)
{
	struct task *task = calloc(1, sizeof(*task));

	task->path = path;
	task->is_dir = is_dir;
	task->step = is_dir < 0 ? STAT : OPEN;
	task->fd = -1;
	task->hash = FNV_INIT;
	if (w->active >= MAX_ACTIVE) {
		task->next = w->pending;
		w->pending = task;
		return;
	}
	w->active++;
	push_ready(w, task);
}

static void finish_task(struct walker *w, struct task *task)
{
	if (task->is_dir == 1)
		w->t.dirs++;
	else if (task->is_dir == 0) {
		w->t.files++;
		w->t.bytes += task->stx.stx_size;
		w->t.sum += task->hash;
	}
	free(task->path);
	free(task->buf);
	free(task);
	w->active--;
	if (w->pending) {
		struct task *next = w->pending;

		w->pending = next->next;
		w->active++;
		push_ready(w, next);
	}
}

/* Queues the task's next step; returns 0 if it has none (done). */
static int prep_step(struct walker *w, struct task *task)
{
	struct syslet_sqe *sqe = syslet_get_sqe(&w->ring);

	switch (task->step) {
	case STAT:
		syslet_prep(sqe, __NR_statx, AT_FDCWD, (uintptr_t)task->path, AT_SYMLINK_NOFOLLOW,
			    STATX_TYPE | STATX_SIZE, (uintptr_t)&task->stx, 0);
		break;
	case OPEN:
		syslet_prep(sqe, __NR_openat, AT_FDCWD, (uintptr_t)task->path,
			    O_RDONLY | O_CLOEXEC | (task->is_dir ? O_DIRECTORY : 0), 0, 0, 0);
		break;
	case DENTS:
		syslet_prep(sqe, __NR_getdents64, task->fd, (uintptr_t)task->buf, DENTS_BUF, 0, 0, 0);
		break;
	case READ:
		syslet_prep(sqe, __NR_read, task->fd, (uintptr_t)task->buf, READ_CHUNK, 0, 0, 0);
		break;
	case CLOSE:
		syslet_prep(sqe, __NR_close, task->fd, 0, 0, 0, 0, 0);
		break;
	case DONE:
		return 0;
	}
	sqe->user_data = (uintptr_t)task;
	task->in_flight = 1;
	w->in_flight++;
	return 1;
}

/* A step completed: advance the task, maybe spawning children. */
static void complete_step(struct walker *w, struct syslet_cqe *cqe)
{
	struct task *task = (void *)(uintptr_t)cqe->user_data;
	long res = cqe->res;

	task->in_flight = 0;
	w->in_flight--;
	if (cqe->flags & SYSLET_CQE_F_ASYNC)
		w->async_done++;
	else
		w->inline_done++;
	switch (task->step) {
	case STAT:
		if (res < 0 || (!S_ISDIR(task->stx.stx_mode) && !S_ISREG(task->stx.stx_mode))) {
			task->is_dir = 2;	/* neither: not counted */
			task->step = DONE;
			break;
		}
		task->is_dir = S_ISDIR(task->stx.stx_mode);
		task->step = OPEN;
		break;
	case OPEN:
		if (res < 0) {
			task->step = DONE;
			break;
		}
		task->fd = res;
		task->buf = malloc(task->is_dir ? DENTS_BUF : READ_CHUNK);
		task->step = task->is_dir ? DENTS : READ;
		break;
	case DENTS:
		if (res <= 0) {
			task->step = CLOSE;
			break;
		}
		for (long off = 0; off < res;) {
			struct linux_dirent64 *d = (void *)(task->buf + off);

			off += d->d_reclen;
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				add_task(w, join(task->path, d->d_name), -1);
		}
		break;
	case READ:
		if (res <= 0) {
			task->step = CLOSE;
			break;
		}
		task->hash = fnv(task->hash, (void *)task->buf, res);
		break;
	case CLOSE:
		task->step = DONE;
		break;
	case DONE:
		break;
	}
	if (task->step == DONE)
		finish_task(w, task);
	else
		push_ready(w, task);
}

static void reap(struct walker *w)
{
	for (struct syslet_cqe *cqe; (cqe = syslet_peek_cqe(&w->ring));) {
		struct syslet_cqe copy = *cqe;

		syslet_cqe_seen(&w->ring);
		complete_step(w, &copy);
	}
}

static int syslet_walk(const char *root, unsigned int batch, struct totals *t, struct walker *w)
{
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = 8, .idle_ms = 1000 };
	int ret;

	memset(w, 0, sizeof(*w));
	ret = syslet_queue_init(&w->ring, MAX_ACTIVE, 4 * MAX_ACTIVE);
	if (ret)
		return ret;
	ret = syslet_pool_start(&w->ring, &params);
	if (ret)
		return ret;
	add_task(w, strdup(root), 1);
	while (w->ready || w->in_flight) {
		/*
		 * Small batches: a blocked thread runs the rest of its batch
		 * itself, one call after the other, so the overlap between
		 * blocked calls comes from many batches in flight.
		 */
		while (w->ready) {
			unsigned int n = 0;

			while (w->ready && n < batch) {
				struct task *task = w->ready;

				w->ready = task->next;
				n += prep_step(w, task);
			}
			w->batches++;
			if (!n)
				continue;
			ret = syslet_submit_async(&w->ring, n);
			if (ret == SYSLET_WENT_ASYNC)
				w->went_async++;
			else if (ret < 0)
				return ret;
		}
		reap(w);
		/* Nothing to submit: wait for a step that blocked. */
		if (!w->ready && w->in_flight) {
			ret = syslet_wait(&w->ring, 1, -1);
			if (ret < 0 && ret != -EINTR)
				return ret;
		}
		reap(w);
	}
	*t = w->t;
	return 0;
}

/* ---- threadlets: plain calls, inline, handed over when they block ------ */

/* A directory to list or a file to hash; run as one threadlet. */
struct job {
	char *path;
	int is_dir;
	struct totals t;	/* what the job found */
	struct job *next;
};

struct threadlet_walk {
	struct syslet_ring ring;
	pthread_mutex_t lock;	/* jobs are queued by threadlets, maybe on other threads */
	struct job *queue;
	struct totals t;
	unsigned long inline_done, async_done;
};

static struct threadlet_walk tw = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void tw_queue(char *path, int is_dir)
{
	struct job *job = calloc(1, sizeof(*job));

	job->path = path;
	job->is_dir = is_dir;
	pthread_mutex_lock(&tw.lock);
	job->next = tw.queue;
	tw.queue = job;
	pthread_mutex_unlock(&tw.lock);
}

static void job_entry(void *arg, char *child, const struct statx *stx)
{
	struct job *job = arg;

	if (S_ISREG(stx->stx_mode)) {
		job->t.files++;
		job->t.bytes += stx->stx_size;
	}
	tw_queue(child, S_ISDIR(stx->stx_mode));
}

/* The threadlet: lists a directory (queueing what is in it) or hashes a file. */
static long run_job(void *arg)
{
	struct job *job = arg;
	char *buf;

	if (!job->is_dir) {
		buf = malloc(READ_CHUNK);
		job->t.sum = plain_hash_file(job->path, buf);
		free(buf);
		return 0;
	}
	buf = malloc(DENTS_BUF);
	job->t.dirs = 1;
	list_dir(job->path, buf, job_entry, job);
	free(buf);
	return 0;
}

static void tw_done(struct job *job)
{
	tw.t.bytes += job->t.bytes;
	tw.t.files += job->t.files;
	tw.t.dirs += job->t.dirs;
	tw.t.sum += job->t.sum;
	free(job->path);
	free(job);
}

static int threadlet_walk(const char *root, struct totals *t)
{
	struct syslet_pool_params params = { .min_spares = 1, .max_spares = 8, .idle_ms = 1000 };
	unsigned long in_flight = 0;
	int ret;

	ret = syslet_queue_init(&tw.ring, 64, 1024);
	if (ret)
		return ret;
	ret = syslet_pool_start(&tw.ring, &params);
	if (ret)
		return ret;
	tw_queue(strdup(root), 1);
	for (;;) {
		struct syslet_cqe *cqe;
		struct job *job;

		pthread_mutex_lock(&tw.lock);
		job = tw.queue;
		if (job)
			tw.queue = job->next;
		pthread_mutex_unlock(&tw.lock);
		if (job) {
			long result;

			if (syslet_threadlet_run(&tw.ring, run_job, job, (uintptr_t)job, &result) ==
			    SYSLET_WENT_ASYNC) {
				/* The job finishes on the thread that blocked. */
				in_flight++;
			} else {
				tw.inline_done++;
				tw_done(job);
			}
		}
		while ((cqe = syslet_peek_cqe(&tw.ring))) {
			if (cqe->flags & SYSLET_CQE_F_THREADLET) {
				in_flight--;
				tw.async_done++;
				tw_done((struct job *)(uintptr_t)cqe->user_data);
			}
			syslet_cqe_seen(&tw.ring);
		}
		if (job)
			continue;
		if (!in_flight)
			break;
		/* Nothing queued: wait for a job that blocked (it may queue more). */
		ret = syslet_wait(&tw.ring, 1, -1);
		if (ret < 0 && ret != -EINTR)
			return ret;
	}
	*t = tw.t;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *mode = "syslet", *root;
	int threads = 8, opt, ret = 0;
	unsigned int batch = 8;
	struct totals t = { 0 };
	static struct walker w;
	double start, took;

	while ((opt = getopt(argc, argv, "m:t:b:")) != -1) {
		if (opt == 'm')
			mode = optarg;
		else if (opt == 't')
			threads = atoi(optarg);
		else if (opt == 'b')
			batch = atoi(optarg) > 0 ? atoi(optarg) : 1;
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: %s [-m syslet|threadlet|pool|seq] [-t threads] [-b batch] DIR\n",
			argv[0]);
		return 2;
	}
	root = argv[optind];
	start = now_s();
	if (!strcmp(mode, "seq"))
		seq_walk(root, &t);
	else if (!strcmp(mode, "pool"))
		pool_walk(root, threads, &t);
	else if (!strcmp(mode, "threadlet"))
		ret = threadlet_walk(root, &t);
	else
		ret = syslet_walk(root, batch, &t, &w);
	took = now_s() - start;
	if (ret) {
		fprintf(stderr, "syslet_du: %s\n", strerror(-ret));
		return 1;
	}
	printf("%-6s %8.3f s  %llu bytes in %llu files, %llu dirs, checksum %016llx", mode, took,
	       t.bytes, t.files, t.dirs, t.sum);
	if (!strcmp(mode, "syslet")) {
		struct syslet_pool_stats stats;

		syslet_pool_stats(&w.ring, &stats);
		printf("  (calls: %lu inline, %lu async; the loop went on %lu times while a call "
		       "blocked, of %lu batches; spares: peak %u pool threads, at most %u out of "
		       "PARK at once)", w.inline_done, w.async_done, w.went_async, w.batches,
		       stats.peak_threads, stats.peak_busy);
	}
	if (!strcmp(mode, "threadlet")) {
		struct syslet_pool_stats stats;

		syslet_pool_stats(&tw.ring, &stats);
		printf("  (threadlets: %lu inline, %lu async; spares: peak %u pool threads, at "
		       "most %u out of PARK at once)", tw.inline_done, tw.async_done,
		       stats.peak_threads, stats.peak_busy);
	}
	printf("\n");
	return 0;
}
