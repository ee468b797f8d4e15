// SPDX-License-Identifier: GPL-2.0

//! `SYSLET_IOC_EXEC`: running a batch of atoms in the submitter's own context.
//!
//! Every atom runs as a real system call on the submitting task, in order. Without a
//! continuation nothing watches the task: an atom that blocks simply blocks. With one, each atom
//! runs with a preempt notifier registered and a parked spare lent (`handoff.rs`, `spares.rs`),
//! so that a block hands the continuation to the spare.
//!
//! Everything that can fail happens before the first submission is consumed: a consumed
//! submission always completes, exactly once.

use kernel::{
    bindings,
    irq_work::IrqWork,
    list::ListArc,
    preempt_notifier::PreemptNotifier,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
    syscall::{
        self,
        AtomMark,
        CheckedSyscall,
        Return, //
    },
};

use crate::{
    atom::{
        self,
        Outcome, //
    },
    context::Context,
    defs::{
        Cqe,
        ExecArgs,
        Sqe,
        CQE_F_ASYNC,
        CQE_F_INLINE,
        EXEC_HANDED_OFF,
        EXEC_RET_HANDED_OFF,
        RING_NEED_SPARE,
        SQE_LINK, //
    },
    handoff::{
        BlockHook,
        Continuation,
        SpareWaker, //
    },
    ring::{
        ClaimError,
        Rings, //
    },
    spares::Spare,
    stats::{
        BatchCounts,
        Stats, //
    },
};

/// Batches up to this many atoms are copied out to the stack instead of an allocation.
const SMALL_BATCH: usize = 4;

/// Consumes up to `args.to_submit` submissions of `ctx` and runs each one in the current task, in
/// order, posting one completion each.
///
/// Returns how many were consumed, with [`EXEC_RET_HANDED_OFF`] set if a spare took the
/// continuation over. Must be called from process context without locks held, by the owner.
pub(crate) fn exec(ctx: &Context, args: &mut ExecArgs) -> Result<isize> {
    if args.flags != 0 || args.resv != 0 {
        return Err(EINVAL);
    }
    // Atoms do not pass through the system call entry: a tracer, the audit log or the
    // `raw_syscalls` tracepoints would not see them. While any of them watches this thread's
    // calls, none runs unseen.
    if syscall::current_syscalls_watched() {
        return Err(EPERM);
    }
    let rings = ctx.rings()?;
    // A threadlet's hook watches this thread already: a second continuation would let two
    // spares resume two programs.
    if args.continuation != 0 && ctx.in_threadlet() {
        return Err(EBUSY);
    }
    let max = args.to_submit.min(rings.layout().sq_entries);
    if max == 0 {
        return Ok(0);
    }
    // Atoms may not drive syslet again, on this task, until the batch is done.
    let _mark = AtomMark::new()?;
    // Small batches, the common case of latency-bound callers, need no allocation.
    let mut small = [Sqe::default(); SMALL_BATCH];
    let mut large: KVVec<Sqe>;
    let batch: &mut [Sqe] = if max as usize <= SMALL_BATCH {
        &mut small[..max as usize]
    } else {
        large = KVVec::from_elem(Sqe::default(), max as usize, GFP_KERNEL)?;
        &mut large
    };
    let cont = match args.continuation {
        0 => None,
        cookie => Some(Continuation::new(cookie)?),
    };
    let _entry = match &cont {
        Some(cont) => Some(ctx.inflight.register(cont)?),
        None => None,
    };

    let count = rings.claim(batch).map_err(|err| match err {
        ClaimError::Corrupt => EINVAL,
        ClaimError::CqFull => EBUSY,
    })?;
    ctx.stats.submitted.fetch_add(u64::from(count), Relaxed);
    if count > 0 {
        Stats::inc(&ctx.stats.execs);
    }
    args.submitted = count;
    let batch = &batch[..count as usize];
    let handed = Batch {
        ctx,
        rings,
        cont: cont.as_ref(),
        lent: None,
        handed: false,
    }
    .run(batch);
    let mut ret = count as isize;
    if handed {
        args.status = EXEC_HANDED_OFF;
        ret |= EXEC_RET_HANDED_OFF as isize;
    }
    Ok(ret)
}

/// The state of one batch while it runs.
struct Batch<'a> {
    ctx: &'a Context,
    rings: &'a Rings,
    cont: Option<&'a Arc<Continuation>>,
    /// The spare lent for the next atom that may block.
    lent: Option<ListArc<Spare>>,
    /// A spare took the continuation over.
    handed: bool,
}

impl Batch<'_> {
    /// Runs `batch` in order, posting one completion per entry as soon as its atom ends; returns
    /// whether a spare took the continuation over.
    ///
    /// Completions are never held back to the end of the batch: another thread of the owner may
    /// be waiting for one before it does what a later atom waits for.
    fn run(mut self, batch: &[Sqe]) -> bool {
        let mut counts = BatchCounts::default();
        let mut chain_failed = false;
        let mut interrupted = false;
        for sqe in batch {
            let mut outcome = if interrupted {
                // A signal arrived: let it be handled (or kill) before anything else runs.
                Outcome::refused(EINTR)
            } else if chain_failed {
                Outcome::refused(ECANCELED)
            } else {
                match atom::check(sqe, self.cont.is_some()) {
                    Ok(call) => self.run_atom(sqe, call),
                    Err(refused) => refused,
                }
            };
            chain_failed = sqe.flags & SQE_LINK != 0 && outcome.res < 0;
            if self.handed {
                outcome.flags = (outcome.flags & !CQE_F_INLINE) | CQE_F_ASYNC;
            }
            counts.add(&outcome);
            self.rings.complete(&[Cqe {
                user_data: sqe.user_data,
                res: outcome.res,
                flags: outcome.flags,
                ..Default::default()
            }]);
            // Notifications (task work of this thread) were handled by the atom; only a pending
            // signal ends the batch.
            if !interrupted && syscall::signal_pending_current() {
                interrupted = true;
            }
        }
        counts.flush(&self.ctx.stats);
        if let (Some(cont), Some(spare)) = (self.cont, self.lent.take()) {
            self.ctx.spares.give_back(cont, spare);
        }
        self.handed
    }

    /// Runs one checked atom, watched for a block if the exec has a continuation the submitter
    /// still owns.
    fn run_atom(&mut self, sqe: &Sqe, call: CheckedSyscall) -> Outcome {
        let Some(cont) = self.cont else {
            return Outcome::ran(run_call(call, None));
        };
        if self.handed {
            // The program runs elsewhere already: nothing more to hand off.
            return self.run_cancellable(sqe, call, cont);
        }
        self.ensure_spare(cont);
        pin_init::stack_pin_init!(let wake = IrqWork::new(SpareWaker::new(self.lent.as_ref())));
        pin_init::stack_pin_init!(let hook = PreemptNotifier::new(BlockHook {
            cont,
            wake: wake.as_ref(),
        }));
        let outcome = hook
            .as_mut()
            .with_registered(|| self.run_cancellable(sqe, call, cont));
        // The notifier is unregistered: no new block can queue the work; `wake` is synced when
        // dropped, after `hook`.
        if !cont.reclaim() {
            self.handed = true;
        }
        if cont.take_blocked_without_spare() {
            Stats::inc(&self.ctx.stats.sync_fallbacks);
            self.rings.set_flag(RING_NEED_SPARE, true);
        }
        outcome
    }

    /// Makes sure a spare that has not left is lent to the exec, if one is parked: a lent spare
    /// that left (signal, fault) is replaced.
    fn ensure_spare(&mut self, cont: &Arc<Continuation>) {
        if self.lent.as_ref().is_some_and(|s| s.is_lent()) {
            return;
        }
        if let Some(gone) = self.lent.take() {
            self.ctx.spares.give_back(cont, gone);
        }
        self.lent = self.ctx.spares.lend(cont);
    }

    /// Runs `call` as the running atom of `cont`, so that `SYSLET_IOC_CANCEL` can interrupt it.
    fn run_cancellable(&self, sqe: &Sqe, call: CheckedSyscall, cont: &Continuation) -> Outcome {
        cont.begin_atom(sqe.user_data);
        let mut res = run_call(call, Some(cont));
        if cont.end_atom() {
            // The cancel's notification may still be set: don't let it interrupt the next atom.
            syscall::run_notified_task_work();
            Stats::inc(&self.ctx.stats.cancelled);
            if res == -i64::from(bindings::EINTR) {
                res = ECANCELED.to_errno().into();
            }
        }
        Outcome::ran(res)
    }
}

/// Runs `call` to completion as a direct call would, restarting it after notifications.
///
/// A direct call interrupted by `TIF_NOTIFY_SIGNAL` alone (task work of this thread, such as
/// io_uring's) runs the work on its way to user space and restarts; so does an atom, here. A
/// pending signal, or a cancel of `cont`'s running atom, ends it with `-EINTR` or `-ECANCELED`:
/// the restart would happen only after the signal's handler, which runs when the exec returns.
fn run_call(mut call: CheckedSyscall, cont: Option<&Continuation>) -> i64 {
    let res = loop {
        match call.run() {
            Return::Done(res) => break res,
            Return::Interrupted => {
                if cont.is_some_and(|c| c.atom_cancelled()) {
                    break ECANCELED.to_errno().into();
                }
                if syscall::signal_pending_current() || !syscall::run_notified_task_work() {
                    break EINTR.to_errno().into();
                }
                // As the exit to user mode does before a restart: the call's temporary signal
                // mask (ppoll, pselect6...) goes, or the restart would save it as the original.
                syscall::restore_saved_sigmask();
            }
        }
    };
    // With a signal pending its delivery restores the mask, after the handler ran with the
    // temporary one, as for a direct call. Without, nothing else would.
    if !syscall::signal_pending_current() {
        syscall::restore_saved_sigmask();
    }
    // Task work that arrived while the call could not be interrupted runs now, as it would on
    // the way back to user space, instead of cutting the next atom short. (A cancel's
    // notification is cleared here too; `run_cancellable` clears one that comes later.)
    syscall::run_notified_task_work();
    res
}
