/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * syslet: asynchronous system calls.
 *
 * A process opens /dev/syslet, sizes the rings with SYSLET_IOC_SETUP and
 * maps them with mmap(). It writes submission entries (atoms: a system call
 * number and six arguments) to the submission ring and calls
 * SYSLET_IOC_EXEC, which runs them in order, in the caller's own context,
 * and posts one completion entry per atom to the completion ring.
 *
 * Atoms that block: threads of the process park as spares with
 * SYSLET_IOC_PARK. An exec that names a continuation cookie hands it to the
 * most recently parked spare when an atom blocks; the spare returns to user
 * space with the cookie and resumes the program, while the blocked thread
 * finishes the batch (completions flagged SYSLET_CQE_F_ASYNC). Completions
 * can be waited for with SYSLET_IOC_WAIT or poll(); SYSLET_IOC_CANCEL
 * interrupts a handed-off atom.
 *
 * Ring protocol (like io_uring's):
 *
 *  - The submission ring is written by user space at sq_tail and consumed
 *    by the kernel at sq_head. User space fills entries, then publishes
 *    them with a store-release of sq_tail; the kernel reads sq_tail with a
 *    load-acquire, copies each entry out exactly once, then publishes its
 *    progress with a store-release of sq_head.
 *  - The completion ring is written by the kernel at cq_tail and consumed
 *    by user space at cq_head. The kernel writes entries, then a
 *    store-release of cq_tail; user space reads cq_tail with a load-acquire,
 *    reads the entries, then a store-release of cq_head.
 *  - Indices are free-running 32-bit counters; an entry's slot is
 *    index & mask. The kernel keeps its own copies of sq_head and cq_tail
 *    and only reads sq_tail and cq_head from the shared page: garbage there
 *    makes SYSLET_IOC_EXEC fail with EINVAL, never corrupts the kernel.
 *  - Every atom the kernel consumes gets exactly one completion, and it
 *    consumes no more atoms than the completion ring has room for, so the
 *    completion ring never overflows.
 */
#ifndef _UAPI_LINUX_SYSLET_H
#define _UAPI_LINUX_SYSLET_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SYSLET_DEVICE		"/dev/syslet"

/* Ring sizes: powers of two. cq_entries == 0 means 2 * sq_entries. */
#define SYSLET_MAX_SQ_ENTRIES	4096
#define SYSLET_MAX_CQ_ENTRIES	32768

/*
 * Submission entry: one system call (an "atom").
 */
struct syslet_sqe {
	__u32	nr;		/* system call number (x86-64 numbering) */
	__u32	flags;		/* SYSLET_SQE_* */
	__u64	args[6];	/* arguments, in system call ABI order */
	__u64	user_data;	/* copied to the completion untouched */
};

/*
 * sqe->flags
 *
 * SYSLET_SQE_LINK:	the next entry is part of the same chain: it runs
 *			only if this one succeeds (result >= 0). If an
 *			entry of a chain fails, every later entry of the
 *			chain completes with -ECANCELED without running.
 *			A chain ends at the first entry without the flag,
 *			and never extends past one SYSLET_IOC_EXEC.
 */
#define SYSLET_SQE_LINK		(1U << 0)
/*
 * SYSLET_SQE_FWD_ARG(n): result forwarding. Before this entry runs, its
 * argument args[n] (n = 0..5) is replaced by the result of the previous
 * entry of its chain (the entry before it, which must carry
 * SYSLET_SQE_LINK; else this entry is refused with -EINVAL), or, with
 * SYSLET_SQE_FWD_HEAD too, by the result of the chain's first entry. Since
 * a chain runs only while its entries succeed, the value forwarded is never
 * an error: openat, then read (FWD_ARG(0)) and close (FWD_ARG(0) |
 * FWD_HEAD) of the descriptor it returned run in one exec with no round
 * trip to user space. Seccomp, policy and the trace events see the
 * substituted value, as a direct call would show it.
 */
#define SYSLET_SQE_FWD_SHIFT	8
#define SYSLET_SQE_FWD_MASK	(7U << SYSLET_SQE_FWD_SHIFT)
#define SYSLET_SQE_FWD_ARG(n)	(((__u32)(n) + 1) << SYSLET_SQE_FWD_SHIFT)
#define SYSLET_SQE_FWD_HEAD	(1U << 11)
/*
 * SYSLET_SQE_LINK_TIMEOUT: not a call but a time limit of args[0]
 * nanoseconds (1..2^62; nr and the other arguments 0, no other flag but
 * SYSLET_SQE_LINK) on the entry before it, which must link to it and be a
 * call; else it completes with -EINVAL and limits nothing. The limit counts
 * from the moment the atom is reached (its exec runs or arms it, after the
 * entries before it), as io_uring's LINK_TIMEOUT does. If the atom has not
 * completed when the time is up, it is cut short and completes with
 * -ETIME: an armed atom (SYSLET_SETUP_POLL) is taken off its file's queues
 * without running, a running one (inline, or blocked after a handoff) is
 * interrupted as SYSLET_IOC_CANCEL interrupts it (interruptible sleeps
 * only: a call in an uninterruptible sleep finishes first). The timeout
 * entry completes with -ETIME if it cut the atom short, 0 if the atom
 * completed in time, -ECANCELED if the atom failed on its own.
 */
#define SYSLET_SQE_LINK_TIMEOUT	(1U << 12)
#define SYSLET_SQE_VALID_FLAGS	(SYSLET_SQE_LINK | SYSLET_SQE_FWD_MASK | SYSLET_SQE_FWD_HEAD | \
				 SYSLET_SQE_LINK_TIMEOUT)

/*
 * Completion entry.
 */
struct syslet_cqe {
	__u64	user_data;	/* sqe->user_data */
	__s64	res;		/* the call's result, or -errno */
	__u32	flags;		/* SYSLET_CQE_F_* */
	__u32	resv0;
	__u64	resv1;
};

/*
 * cqe->flags
 *
 * SYSLET_CQE_F_INLINE:	the atom ran in the submitter's context while the
 *			submitter still owned its continuation (it may have
 *			blocked if no spare was parked).
 * SYSLET_CQE_F_ASYNC:	the atom completed after the submitter's
 *			continuation was handed off to a spare: the blocked
 *			atom itself and the rest of its batch.
 * SYSLET_CQE_F_REFUSED: the atom did not run: refused by policy
 *			(res -EINVAL: acts on the caller's own entry frame,
 *			such as clone or rt_sigreturn; -EDEADLK: an ioctl
 *			on a syslet device), by seccomp (res as the filter
 *			says), bad flags or forwarding (-EINVAL), a failed
 *			chain (-ECANCELED), or a signal that became
 *			pending after an earlier atom of its batch
 *			(-EINTR). An armed atom (SYSLET_CQE_F_POLLED)
 *			that expired or was cancelled before it ran
 *			completes with -ETIME or -ECANCELED.
 */
#define SYSLET_CQE_F_INLINE	(1U << 0)
#define SYSLET_CQE_F_ASYNC	(1U << 1)
#define SYSLET_CQE_F_REFUSED	(1U << 2)
/*
 * SYSLET_CQE_F_THREADLET: the result of a threadlet that blocked (see
 * below), posted with SYSLET_IOC_THREADLET_DONE; always with ..._F_ASYNC.
 * res is what the threadlet returned, or -EOWNERDEAD if the thread running
 * it exited first.
 */
#define SYSLET_CQE_F_THREADLET	(1U << 3)
/*
 * SYSLET_CQE_F_POLLED: (contexts set up with SYSLET_SETUP_POLL) the atom
 * waited on the pollable path before it ran (or was cancelled): its file (a socket, pipe, eventfd, tty... anything with poll) was not
 * ready when its exec consumed it, so it was *armed*: a small record on the
 * file's wait queues, no thread and no spare. It ran when the file became
 * ready, in the next SYSLET_IOC_EXEC or SYSLET_IOC_WAIT of a thread of the
 * owner confined as its submitter was, before anything else that call does
 * (with ..._F_INLINE or, after a handoff, ..._F_ASYNC, as any atom).
 * Only read, readv, recvfrom, recvmsg, accept, accept4 (POLLIN) and write,
 * writev, sendto, sendmsg (POLLOUT) on a descriptor whose file has poll and
 * is not O_NONBLOCK are armed, never with MSG_DONTWAIT; the entries linked
 * after an armed atom wait with it. Seccomp and policy judge an atom once,
 * when its exec consumes it; if the submitting thread's confinement changes
 * before the atom runs (a seccomp filter added, credentials changed), the
 * atom does not run: -EPERM with ..._F_REFUSED. Each armed atom keeps the
 * completion slot its exec reserved, so at most cq_entries atoms are armed
 * per context; an exec that finds no free slot fails with EBUSY, as always.
 * SYSLET_IOC_CANCEL completes an armed atom with -ECANCELED at once; the
 * owner's close (or exit) completes every armed atom with -ECANCELED.
 */
#define SYSLET_CQE_F_POLLED	(1U << 4)

/*
 * The shared region starts with this header. Fields marked (K) are
 * written by the kernel only, (U) by user space only; (RO) are set at
 * setup.
 */
struct syslet_ring_header {
	__u32	sq_head;	/* (K) next submission the kernel consumes */
	__u32	sq_tail;	/* (U) one past the last submission */
	__u32	cq_head;	/* (U) next completion user space consumes */
	__u32	cq_tail;	/* (K) one past the last completion */
	__u32	sq_mask;	/* (RO) sq_entries - 1 */
	__u32	cq_mask;	/* (RO) cq_entries - 1 */
	__u32	sq_entries;	/* (RO) */
	__u32	cq_entries;	/* (RO) */
	__u32	flags;		/* (K) SYSLET_RING_* */
	__u32	resv[7];
};

/* header->flags */
/*
 * SYSLET_RING_NEED_SPARE: an exec with a continuation had an atom block
 * and no spare was lent to it (none parked, or none of the submitter's
 * confinement), or a threadlet blocked with no spare parked. For an exec
 * it is set after the blocked atom returns, for a threadlet when it
 * blocks; SYSLET_IOC_PARK clears it.
 */
#define SYSLET_RING_NEED_SPARE	(1U << 0)

/*
 * SYSLET_IOC_SETUP argument. In: sq_entries, cq_entries, flags. Out, copied
 * back: the rest (what they hold on entry is ignored, so a structure filled
 * by an earlier setup may be passed again). One setup per open file. Fails
 * with
 *   EINVAL  bad sizes or flags, or nonzero reserved fields
 *   EBUSY   the file's rings are already set up
 *   ENOMEM  the rings cannot be allocated (they are charged to the memory
 *           cgroup)
 *   EPERM   the file belongs to another process, or the administrator's
 *           sysctl kernel.syslet_disabled says so: 1, the caller lacks
 *           CAP_SYS_ADMIN; 2, always. Rings set up before keep working.
 */
struct syslet_params {
	__u32	sq_entries;	/* in: power of two, 1..SYSLET_MAX_SQ_ENTRIES */
	__u32	cq_entries;	/* in: 0, or power of two, sq..SYSLET_MAX_CQ_ENTRIES */
	__u32	flags;		/* in: SYSLET_SETUP_* */
	__u32	resv0;
	__u64	mmap_size;	/* out: length to mmap at offset 0 */
	__u64	sqes_off;	/* out: offset of the submission entries */
	__u64	cqes_off;	/* out: offset of the completion entries */
	__u64	threadlets_off;	/* out: offset of the threadlet slots */
	__u64	resv[3];
};

/*
 * params->flags
 *
 * SYSLET_SETUP_POLL:	the pollable path (see SYSLET_CQE_F_POLLED): an
 *			atom that would wait for a descriptor that is not
 *			ready is armed on the file's wait queues, with no
 *			thread, and its exec goes on; it completes later,
 *			from an exec or a wait. Without it every atom runs
 *			when its exec reaches it, and a wait is a block.
 */
#define SYSLET_SETUP_POLL		(1U << 0)
#define SYSLET_SETUP_VALID_FLAGS	(SYSLET_SETUP_POLL)

/*
 * SYSLET_IOC_EXEC argument. The ioctl returns the number of submissions
 * consumed (each gets one completion; also copied to @submitted), ORed with
 * SYSLET_EXEC_RET_HANDED_OFF if the continuation was handed off, or -1 with
 * errno:
 *   EINVAL  bad flags/reserved fields or corrupt ring indices
 *   EBUSY   submissions pending but the completion ring is full
 *   ENXIO   the rings are not set up
 *   EPERM   the file belongs to another process, or the calling thread's
 *           system calls are being watched: ptrace syscall tracing or
 *           emulation (PTRACE_SYSCALL, PTRACE_SYSEMU), syscall auditing
 *           (an audit context with syscall rules), or the raw_syscalls
 *           tracepoints enabled (perf trace, ftrace, BPF). Atoms do not
 *           pass through the system call entry, so none of these would
 *           see them: syslet refuses to run them unseen. (Calls made
 *           inside a threadlet are direct calls, seen as usual.)
 *   EDEADLK called from an atom (no syslet ioctl runs inside an atom)
 *   ENOTTY  called through the 32-bit (compat) ioctl entry
 *
 * @continuation: 0, or an opaque nonzero cookie naming the caller's user
 * context. With a cookie, if an atom blocks while a spare thread is parked
 * (SYSLET_IOC_PARK), the spare returns to user space with the cookie and
 * resumes the caller's program; the caller finishes the batch and returns
 * with SYSLET_EXEC_RET_HANDED_OFF set in the return value (and @status
 * SYSLET_EXEC_HANDED_OFF): its continuation now belongs to the spare. The
 * return value is authoritative: it cannot be lost to a fault copying
 * @status back, which would make the caller resume a program that already
 * runs elsewhere. With 0, atoms that block just block the caller.
 *
 * An exec with a continuation refuses (-EINVAL, SYSLET_CQE_F_REFUSED) the
 * calls that act on the state of the calling thread itself: credentials
 * (setuid and friends, setgroups, capset, landlock_restrict_self,
 * lsm_set_self_attr; keyctl, add_key and request_key, which reach the
 * thread keyring), namespaces (unshare, setns), the signal mask
 * (rt_sigprocmask, rt_sigsuspend, rt_sigtimedwait), prctl, seccomp,
 * personality, set_tid_address, set_robust_list, rseq, sched_setaffinity,
 * sched_setparam, sched_setscheduler, sched_setattr, setpriority,
 * ioprio_set, set_mempolicy, pkey_alloc, ptrace (the tracer is a thread)
 * and the x86 thread-area calls. After a handoff the program runs on the
 * spare's thread while later atoms still run on the submitter's: such a
 * call would act on the wrong thread. For the same reason a spare is lent
 * only if it runs under the submitter's confinement: the same credentials
 * (struct cred, shared by threads until one changes its own), seccomp
 * filter and no_new_privs; otherwise a block is a synchronous fallback.
 *
 * An atom interrupted by task work of its own thread (io_uring's, for
 * example) runs that work and restarts, as a direct call would (a
 * temporary signal mask, as ppoll's, is put back first); only a pending
 * signal ends the batch as described below.
 *
 * A signal pending after an atom ends the batch early: the atoms left
 * complete with -EINTR (SYSLET_CQE_F_REFUSED) without running, so a handler
 * or a kill takes effect before anything else runs. "Pending" includes the
 * freezer's and ptrace's fake signals.
 */
struct syslet_exec {
	__u32	to_submit;	/* in: consume at most this many entries */
	__u32	flags;		/* in: must be 0 */
	__u64	continuation;	/* in: see above */
	__u32	submitted;	/* out: entries consumed */
	__u32	status;		/* out: SYSLET_EXEC_* */
	__u64	resv;		/* must be 0 */
};

/* exec->status */
#define SYSLET_EXEC_DONE	0	/* the caller keeps its continuation */
#define SYSLET_EXEC_HANDED_OFF	1	/* a spare resumed the continuation */

/* In SYSLET_IOC_EXEC's return value: a spare resumed the continuation. */
#define SYSLET_EXEC_RET_HANDED_OFF	(1 << 30)

/*
 * SYSLET_IOC_PARK argument. Parks the calling thread (of the owning
 * process) as a spare of this context; the most recently parked spare is
 * used first. Returns 0 when the thread must take over a submitter whose
 * atom blocked: @continuation is the cookie that submitter passed to
 * SYSLET_IOC_EXEC, and the thread resumes that program. The cookie is
 * written to @continuation before the spare takes the continuation over,
 * so a fault there leaves it with the submitter. Fails with
 *   EINTR      a signal arrived: handle it, then park again
 *   ETIMEDOUT  @timeout_ns passed without a continuation to take over (a
 *              pool can let idle spares go this way)
 *   ESHUTDOWN  the context is closing: the owner closed a descriptor of it,
 *              or is exiting
 *   EFAULT     @continuation is not writable (the continuation stays with
 *              its submitter)
 *   EPERM      the file belongs to another process
 *   EDEADLK    called from an atom
 *   EINVAL     nonzero @resv or negative @timeout_ns
 *   ENXIO      the rings are not set up
 *   EBUSY      called from inside a threadlet
 *   ENOMEM     no memory for the spare's bookkeeping
 */
struct syslet_park {
	__u64	continuation;	/* out */
	__s64	timeout_ns;	/* in: > 0, give up after this long (ETIMEDOUT);
				 * 0: no limit; < 0: EINVAL */
	__u64	resv;		/* must be 0 */
};

/*
 * SYSLET_IOC_WAIT argument. Waits until at least @min_complete completions
 * are unread, and returns how many are (or -1 with errno ETIMEDOUT after
 * @timeout_ns, EINTR on a signal, EINVAL for min_complete > cq_entries,
 * ESHUTDOWN when fewer than @min_complete are unread and the owner has
 * closed a descriptor of the context, before or during the wait).
 * poll()/epoll report POLLIN while completions are unread.
 */
struct syslet_wait {
	__u32	min_complete;
	__u32	flags;		/* must be 0 */
	__s64	timeout_ns;	/* < 0: no timeout */
	__u64	resv;		/* must be 0 */
};

/*
 * SYSLET_IOC_CANCEL argument: the user_data of an atom running in an exec
 * whose submitter was handed off (the atom that blocked, or a later atom
 * of its batch). Its interruptible sleep is interrupted
 * (as by a signal, but none is delivered); if the call then fails with
 * -EINTR its completion says -ECANCELED, otherwise it reports what the call
 * returned. Uninterruptible sleeps (most disk waits) are not cut short.
 * Fails with ENOENT if no such atom is in flight (also when it has just
 * completed: a cancel never reaches the atom after it). A call that
 * handles TIF_NOTIFY_SIGNAL itself and sleeps again (io_uring_enter waiting
 * for completions) is not cut short either; its completion still says
 * -ECANCELED if it then fails with -EINTR.
 *
 * Every ioctl fails with EDEADLK when issued from inside an atom, and with
 * ENOTTY through the 32-bit (compat) ioctl entry: atoms are x86-64 system
 * calls, judged by seccomp as AUDIT_ARCH_X86_64 whatever the entry.
 *
 * Seccomp: the caller's filters see every atom that comes to run, before
 * the policy's checks (so they see the calls syslet refuses too), as a
 * direct x86-64 call with the same number and arguments. Atoms that never
 * come to run are not shown to them: those after a pending signal
 * (-EINTR), in a failed chain (-ECANCELED), with invalid flags or a
 * malformed forwarding request (-EINVAL); timeout entries are not calls. ALLOW and LOG run it. ERRNO completes it with the filter's
 * errno without running it (ERRNO(0): result 0, nothing runs). KILL kills
 * the process (KILL_THREAD too: the thread cannot exit inside the ioctl)
 * and nothing after it runs. TRAP, TRACE and USER_NOTIF complete it with
 * -ENOSYS without running it and without a signal: a SIGSYS handler, a
 * tracer or a listener would see the registers of the exec ioctl, not the
 * atom's. Skipped atoms carry SYSLET_CQE_F_REFUSED. Strict mode entered by
 * an atom lets later atoms read and write and kills on anything else.
 */

/*
 * Threadlets: user code run inline, handed over to a spare if it blocks.
 *
 * A thread registers with SYSLET_IOC_THREADLET_REGISTER and gets a slot in
 * the shared region (at params.threadlets_off, SYSLET_MAX_THREADLET_SLOTS
 * of them). From then on the kernel watches every context switch of the
 * thread and reads its slot's @state; entering and leaving a threadlet take
 * no system call:
 *
 *  - enter: store @user_data, then store-release @state = a nonzero cookie
 *    with the low two bits clear (the address of the caller's saved
 *    continuation);
 *  - leave: atomically exchange @state with 0. The old value is the cookie
 *    if the threadlet ran inline. It is cookie | SYSLET_THREADLET_HANDED if
 *    the thread blocked inside it and a spare (SYSLET_IOC_PARK, which
 *    returned the cookie) took the caller's continuation over: the thread
 *    then posts the threadlet's result with SYSLET_IOC_THREADLET_DONE (a
 *    completion with the slot's @user_data and SYSLET_CQE_F_THREADLET),
 *    and no longer runs the caller's program.
 *
 * A block is any sleep of the thread while @state holds a cookie: in a
 * system call, or in a page fault. The kernel then sets
 * SYSLET_THREADLET_BLOCKED and wakes one parked spare of the context that
 * runs under the thread's confinement (as for an exec); the spare takes
 * the continuation over (..._HANDED) unless the thread runs again first,
 * which clears ..._BLOCKED. A completion slot is reserved for every
 * handoff, so the result always has room. With no spare parked the thread
 * just blocks (@sync_blocks counts it, and SYSLET_RING_NEED_SPARE is set).
 * It also just blocks, uncounted, when the spare that was woken cannot
 * take over: the completion ring is full, the spare runs under another
 * confinement (as for an exec: credentials, seccomp, no_new_privs, not
 * traced), or the thread's previous result is not posted yet.
 *
 * Sleeps inside SYSLET_IOC_EXEC or SYSLET_IOC_PARK (of any context) are
 * not threadlet blocks. A registered thread inside a threadlet may not
 * park or exec with a continuation on the same context (EBUSY). The registration ends with
 * SYSLET_IOC_THREADLET_UNREGISTER or when the thread exits (a pending
 * result is then posted as -EOWNERDEAD); it keeps the file open until then.
 * After an execve the thread is no longer watched.
 */
#define SYSLET_MAX_THREADLET_SLOTS	64

struct syslet_threadlet_slot {
	__u64	state;		/* (U, K) 0, or cookie | SYSLET_THREADLET_* */
	__u64	user_data;	/* (U) the running threadlet's completion tag */
	__u32	sync_blocks;	/* (K) blocks that found no spare */
	__u32	resv0;
	__u64	resv[5];
};

#define SYSLET_THREADLET_BLOCKED	1ULL	/* (K) blocked, a spare was woken */
#define SYSLET_THREADLET_HANDED		2ULL	/* (K) a spare took the continuation */
#define SYSLET_THREADLET_STATE_MASK	3ULL

/*
 * SYSLET_IOC_THREADLET_REGISTER: returns the calling thread's slot index
 * (0..SYSLET_MAX_THREADLET_SLOTS-1), zeroed. Fails with EBUSY if the thread
 * is registered already, ENOSPC if every slot is taken, ENXIO before setup.
 *
 * SYSLET_IOC_THREADLET_UNREGISTER: ends the calling thread's registration.
 * ENOENT if it has none; EBUSY inside a threadlet or with a result not yet
 * posted.
 *
 * SYSLET_IOC_THREADLET_DONE: posts the result of the calling thread's
 * handed-off threadlet. EINVAL if there is none to post.
 */

#define SYSLET_IOC_MAGIC	0xB9
#define SYSLET_IOC_SETUP	_IOWR(SYSLET_IOC_MAGIC, 1, struct syslet_params)
#define SYSLET_IOC_EXEC		_IOWR(SYSLET_IOC_MAGIC, 2, struct syslet_exec)
#define SYSLET_IOC_PARK		_IOWR(SYSLET_IOC_MAGIC, 3, struct syslet_park)
#define SYSLET_IOC_WAIT		_IOW(SYSLET_IOC_MAGIC, 4, struct syslet_wait)
#define SYSLET_IOC_CANCEL	_IOW(SYSLET_IOC_MAGIC, 5, __u64)
#define SYSLET_IOC_THREADLET_REGISTER	_IOR(SYSLET_IOC_MAGIC, 6, __u32)
#define SYSLET_IOC_THREADLET_UNREGISTER	_IO(SYSLET_IOC_MAGIC, 7)
#define SYSLET_IOC_THREADLET_DONE	_IOW(SYSLET_IOC_MAGIC, 8, __s64)

#endif /* _UAPI_LINUX_SYSLET_H */
