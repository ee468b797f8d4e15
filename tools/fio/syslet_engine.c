// SPDX-License-Identifier: GPL-2.0
/*
 * fio ioengine "syslet": reads and writes as syslet atoms.
 *
 * An external engine (ioengine=external:/path/to/syslet.so), built against
 * the headers of the fio that loads it (tools/fio/Makefile). Per job: one
 * syslet ring of at least iodepth entries and, with continuation=1, a
 * bounded pool of spare threads (libsyslet's runtime).
 *
 * ->queue() preps a pread64/pwrite64 atom (fsync/fdatasync for fio's sync
 * requests) tagged with its io_u; ->commit() runs every queued atom in one
 * SYSLET_IOC_EXEC; ->getevents() reaps the completion ring and waits with
 * SYSLET_IOC_WAIT only when fio asks for more than is there.
 *
 * continuation=1 submits with syslet_submit_async(): a read that does not
 * block (a page-cache hit) completes inline, with no thread switch; one
 * that blocks hands the fio job to a parked spare, which returns from
 * ->commit() while the blocked thread finishes the batch. The atoms after
 * the blocked one in the same exec run on that thread, one after another:
 * with fio's default iodepth_batch_submit=1 every I/O is an exec of its
 * own and iodepth I/Os can be blocked at once, each on its own thread;
 * with larger batches a batch is one thread's sequence after its first
 * block. continuation=0 submits with syslet_submit_n(): a call that blocks
 * blocks fio, as the psync engine would, batched.
 *
 * After a handoff the job runs on ANOTHER OS THREAD of the same process.
 * libsyslet moves only a program on the main thread's stack, which is where
 * fio runs a job in its default process mode (thread_main() in a child
 * forked by the main thread). With thread=1 every job is a pthread and no
 * submission could name a continuation, so that combination is refused
 * rather than silently measured as something else.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "fio.h"
#include "optgroup.h"

#include "libsyslet.h"

struct syslet_options {
	void *pad;			/* fio: no option may sit at offset 0 */
	unsigned int spares;
	unsigned int continuation;
};

struct syslet_data {
	struct syslet_ring ring;
	struct io_u **events;		/* reaped by ->getevents(), handed out by ->event() */
	struct io_u **queued;		/* prepped since the last exec, in ring order */
	unsigned int nr_queued;
	unsigned int inflight;		/* consumed by an exec, completion not reaped */
};

static struct fio_option options[] = {
	{
		.name	= "spares",
		.lname	= "syslet spare threads",
		.type	= FIO_OPT_INT,
		.off1	= offsetof(struct syslet_options, spares),
		.def	= "0",
		.minval	= 0,
		.maxval	= 4096,
		.help	= "With continuation=1: most threads in libsyslet's spare pool, one per "
			  "I/O blocked at once (beyond it a blocked I/O blocks fio); 0: iodepth + 4",
		.category = FIO_OPT_C_ENGINE,
		.group	= FIO_OPT_G_INVALID,
	},
	{
		.name	= "continuation",
		.lname	= "syslet continuation",
		.type	= FIO_OPT_BOOL,
		.off1	= offsetof(struct syslet_options, continuation),
		.def	= "1",
		.help	= "Name fio's continuation in each exec: a blocked I/O hands fio to a "
			  "spare thread (0: it blocks fio)",
		.category = FIO_OPT_C_ENGINE,
		.group	= FIO_OPT_G_INVALID,
	},
	{
		.name	= NULL,
	},
};

static unsigned int roundup_pow2(unsigned int n)
{
	unsigned int p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static int fio_syslet_init(struct thread_data *td)
{
	struct syslet_options *o = td->eo;
	unsigned int depth = td->o.iodepth;
	struct syslet_data *sd;
	int ret;

	if (o->continuation && td->o.use_thread) {
		log_err("syslet: continuation=1 needs fio's process mode: with thread=1 "
			"jobs run on pthread stacks, which libsyslet never moves to a spare "
			"(use continuation=0, or drop thread=1)\n");
		td_verror(td, EINVAL, "syslet continuation with thread=1");
		return EINVAL;
	}
	if (depth > SYSLET_MAX_SQ_ENTRIES) {
		log_err("syslet: iodepth %u is above the ring's %u entries\n", depth,
			SYSLET_MAX_SQ_ENTRIES);
		td_verror(td, EINVAL, "syslet iodepth");
		return EINVAL;
	}

	sd = calloc(1, sizeof(*sd));
	if (!sd) {
		td_verror(td, ENOMEM, "calloc");
		return ENOMEM;
	}
	sd->events = calloc(depth, sizeof(*sd->events));
	sd->queued = calloc(depth, sizeof(*sd->queued));
	if (!sd->events || !sd->queued) {
		td_verror(td, ENOMEM, "calloc");
		ret = -ENOMEM;
		goto err_free;
	}

	/*
	 * fio keeps at most iodepth I/Os between ->queue() and ->event(), so
	 * a submission ring of iodepth entries never fills, and the
	 * completion ring (twice that) always has room for a whole batch:
	 * an exec never stops short for want of it.
	 */
	ret = syslet_queue_init(&sd->ring, roundup_pow2(depth), 0);
	if (ret) {
		log_err("syslet: %s: %s%s\n", SYSLET_DEVICE, strerror(-ret),
			ret == -ENOENT ? " (is the syslet module loaded?)" : "");
		td_verror(td, -ret, "syslet_queue_init");
		goto err_free;
	}

	if (o->continuation) {
		struct syslet_pool_params params = {
			.max_spares = o->spares ? o->spares : depth + 4,
			.idle_ms = 1000,
		};

		/* Parked from the start: the first blocked I/Os find a spare. */
		params.min_spares = depth < params.max_spares ? depth : params.max_spares;
		ret = syslet_pool_start(&sd->ring, &params);
		if (ret) {
			log_err("syslet: starting %u spare threads: %s\n", params.min_spares,
				strerror(-ret));
			td_verror(td, -ret, "syslet_pool_start");
			goto err_ring;
		}
	}

	td->io_ops_data = sd;
	return 0;

err_ring:
	syslet_queue_exit(&sd->ring);
err_free:
	free(sd->events);
	free(sd->queued);
	free(sd);
	return -ret;
}

static void fio_syslet_cleanup(struct thread_data *td)
{
	struct syslet_data *sd = td->io_ops_data;

	if (!sd)
		return;
	/*
	 * fio reaped every I/O before this, so no atom still writes into its
	 * buffers. Closing the ring sends the spares away (ESHUTDOWN); they
	 * leave on their own, which is why syslet.so is linked -z nodelete:
	 * fio dlclose()s the engine next.
	 */
	syslet_pool_stop(&sd->ring);
	syslet_queue_exit(&sd->ring);
	free(sd->events);
	free(sd->queued);
	free(sd);
	td->io_ops_data = NULL;
}

/* What runs as an atom: reads, writes, fsync and fdatasync. */
static bool fio_syslet_is_atom(enum fio_ddir ddir)
{
	return ddir == DDIR_READ || ddir == DDIR_WRITE || ddir == DDIR_SYNC ||
	       ddir == DDIR_DATASYNC;
}

static enum fio_q_status fio_syslet_queue(struct thread_data *td, struct io_u *io_u)
{
	struct syslet_data *sd = td->io_ops_data;
	struct fio_file *f = io_u->file;
	struct syslet_sqe *sqe;

	fio_ro_check(td, io_u);

	/*
	 * Trim and sync_file_range are not atoms: fio's own helpers do them
	 * synchronously, once what was queued before is submitted (as the
	 * libaio engine does).
	 */
	if (!fio_syslet_is_atom(io_u->ddir)) {
		if (sd->nr_queued)
			return FIO_Q_BUSY;
		if (io_u->ddir == DDIR_TRIM)
			do_io_u_trim(td, io_u);
		else
			do_io_u_sync(td, io_u);	/* EINVAL for what it does not know */
		io_u_mark_submit(td, 1);
		io_u_mark_complete(td, 1);
		return FIO_Q_COMPLETED;
	}

	sqe = syslet_get_sqe(&sd->ring);
	if (!sqe)
		return FIO_Q_BUSY;	/* not with iodepth entries; commit and retry */
	if (io_u->ddir == DDIR_READ)
		syslet_prep_pread(sqe, f->fd, io_u->xfer_buf, io_u->xfer_buflen, io_u->offset);
	else if (io_u->ddir == DDIR_WRITE)
		syslet_prep_pwrite(sqe, f->fd, io_u->xfer_buf, io_u->xfer_buflen,
				   io_u->offset);
	else if (io_u->ddir == DDIR_SYNC)
		/* Ordered after the atoms of its own batch only, as libaio's fsync is. */
		syslet_prep_fsync(sqe, f->fd);
	else
		syslet_prep(sqe, SYS_fdatasync, f->fd, 0, 0, 0, 0, 0);
	sqe->user_data = (uintptr_t)io_u;
	sd->queued[sd->nr_queued++] = io_u;
	return FIO_Q_QUEUED;
}

/*
 * Stamps the issue time of the atoms about to run: before the exec, since
 * with continuation=0, or for a hit, the I/O is done by the time it returns.
 */
static void fio_syslet_stamp(struct thread_data *td, struct syslet_data *sd)
{
	struct timespec now;

	if (!fio_fill_issue_time(td))
		return;
	fio_gettime(&now, NULL);
	for (unsigned int i = 0; i < sd->nr_queued; i++) {
		sd->queued[i]->issue_time = now;
		io_u_queued(td, sd->queued[i]);
	}
	if (td->o.read_iolog_file)
		td->last_issue = now;
}

/*
 * With continuation=1 this may return on another thread than it was
 * called on: nothing thread-local (errno included) is read after the
 * submit, here or in what the compiler might inline into this function.
 */
static int fio_syslet_commit(struct thread_data *td)
{
	struct syslet_options *o = td->eo;
	struct syslet_data *sd = td->io_ops_data;
	unsigned int n = sd->nr_queued;
	int ret;

	if (!n)
		return 0;
	fio_syslet_stamp(td, sd);
	if (o->continuation)
		ret = syslet_submit_async(&sd->ring, n);
	else
		ret = syslet_submit_n(&sd->ring, n);
	if (ret < 0) {
		log_err("syslet: exec of %u atoms: %s\n", n, strerror(-ret));
		return ret;
	}
	/*
	 * Handed off: the blocked thread runs the whole batch (the completion
	 * ring has room for it). Otherwise the exec says how many it consumed;
	 * the rest stay queued for the next commit.
	 */
	if (ret != SYSLET_WENT_ASYNC)
		n = ret;
	sd->nr_queued -= n;
	memmove(sd->queued, sd->queued + n, sd->nr_queued * sizeof(*sd->queued));
	sd->inflight += n;
	io_u_mark_submit(td, n);
	return 0;
}

/*
 * fio's convention: a failure is error, a short read or write is resid
 * (fio issues the rest); a sync has nothing to transfer.
 */
static void fio_syslet_complete(struct io_u *io_u, int64_t res)
{
	if (res < 0)
		io_u->error = -res;
	else if (ddir_rw(io_u->ddir) && (unsigned long long)res < io_u->xfer_buflen)
		io_u->resid = io_u->xfer_buflen - res;
}

static int fio_syslet_getevents(struct thread_data *td, unsigned int min, unsigned int max,
				const struct timespec *t)
{
	struct syslet_data *sd = td->io_ops_data;
	int64_t timeout_ns = t ? t->tv_sec * 1000000000LL + t->tv_nsec : -1;
	unsigned int events = 0;
	int ret;

	while (events < max) {
		struct syslet_cqe *cqe = syslet_peek_cqe(&sd->ring);
		struct io_u *io_u;

		if (!cqe) {
			/* min may be 0: then take what is there and never wait. */
			if (events >= min)
				break;
			/* Nothing runs what is still queued: submit it first. */
			if (sd->nr_queued) {
				ret = fio_syslet_commit(td);
				if (ret)
					return ret;
			}
			/* Nothing in flight: waiting would never end. */
			if (!sd->inflight)
				break;
			ret = syslet_wait(&sd->ring, min - events, timeout_ns);
			if (ret == -ETIMEDOUT)
				break;
			if (ret < 0 && ret != -EINTR) {
				log_err("syslet: waiting for %u completions: %s\n", min - events,
					strerror(-ret));
				return ret;
			}
			continue;
		}
		io_u = (struct io_u *)(uintptr_t)cqe->user_data;
		fio_syslet_complete(io_u, cqe->res);
		sd->events[events++] = io_u;
		sd->inflight--;
		syslet_cqe_seen(&sd->ring);
	}
	return events;
}

static struct io_u *fio_syslet_event(struct thread_data *td, int event)
{
	struct syslet_data *sd = td->io_ops_data;

	return sd->events[event];
}

struct ioengine_ops ioengine = {
	.name			= "syslet",
	.version		= FIO_IOOPS_VERSION,
	/*
	 * NO_OFFLOAD: offload workers are pthreads, whose submissions would
	 * run without a continuation. SETS_ISSUE_TIME: ->commit() stamps it
	 * before the exec, which may do the I/O itself.
	 */
	.flags			= FIO_ASYNCIO_SYNC_TRIM | FIO_NO_OFFLOAD |
				  FIO_ASYNCIO_SETS_ISSUE_TIME,
	.init			= fio_syslet_init,
	.cleanup		= fio_syslet_cleanup,
	.queue			= fio_syslet_queue,
	.commit			= fio_syslet_commit,
	.getevents		= fio_syslet_getevents,
	.event			= fio_syslet_event,
	.open_file		= generic_open_file,
	.close_file		= generic_close_file,
	.get_file_size		= generic_get_file_size,
	.options		= options,
	.option_struct_size	= sizeof(struct syslet_options),
};
