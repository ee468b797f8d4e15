// SPDX-License-Identifier: GPL-2.0

//! `SYSLET_IOC_EXEC`: running a batch of atoms in the submitter's own context.
//!
//! Every atom runs as a real system call on the submitting task, in order. Without a
//! continuation nothing watches the task: an atom that blocks simply blocks. With one, each atom
//! runs with a preempt notifier registered and a parked spare lent (`handoff.rs`, `spares.rs`),
//! so that a block hands the continuation to the spare.
//!
//! An atom that would wait for a descriptor that is not ready is armed on the pollable path
//! instead (`poll.rs`), with the rest of its chain, and the batch goes on; armed atoms whose files
//! became ready run at the start of the next exec (or in a wait), before the new batch.
//!
//! Everything that can fail happens before the first submission is consumed: a consumed
//! submission always completes, exactly once.

use kernel::{
    bindings,
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
        ChainResults,
        Outcome, //
    },
    context::Context,
    defs::{
        Cqe,
        ExecArgs,
        Sqe,
        CQE_F_ASYNC,
        CQE_F_INLINE,
        CQE_F_POLLED,
        EXEC_HANDED_OFF,
        EXEC_RET_HANDED_OFF,
        RING_NEED_SPARE,
        SQE_LINK, //
    },
    handoff::{
        BlockHook,
        Continuation,
        BLOCK_HOOK_OPS,
        WOKEN_AFTER_SWITCH,
        WOKEN_BEFORE_SWITCH, //
    },
    poll::{
        self,
        Arming,
        Polled,
        Waiting, //
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
    timeout::{
        self,
        AtomDeadline,
        Deadline, //
    },
    trace::{
        self,
        CtxId, //
    },
};

/// Batches up to this many atoms are copied out to the stack.
const SMALL_BATCH: usize = 4;

/// Consumes up to `args.to_submit` submissions of `ctx` and runs each one in the current task, in
/// order, posting one completion each; first runs the armed atoms whose files became ready
/// (`poll.rs`), if this task may run them.
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
    let ready = ctx.polled().is_some_and(Polled::has_ready_here);
    if max == 0 && !ready {
        return Ok(0);
    }
    // Atoms may not drive syslet again, on this task, until the batch is done.
    let _mark = AtomMark::new()?;
    // Small batches, the common case of latency-bound callers, are copied to the stack; larger
    // ones to the buffer the rings keep between execs (allocated once).
    let mut small = [Sqe::default(); SMALL_BATCH];
    let mut large;
    let batch: &mut [Sqe] = if max as usize <= SMALL_BATCH {
        &mut small[..max as usize]
    } else {
        large = rings.batch_buffer(max as usize)?;
        &mut large
    };
    let cont = match args.continuation {
        0 => None,
        cookie => Some(Continuation::new(cookie, CtxId::of(ctx))?),
    };
    let _entry = match &cont {
        Some(cont) => Some(ctx.inflight.register(cont)?),
        None => None,
    };

    // Claimed before the ready atoms run: one of them may block and hand the program off, and
    // what the program queues after that is not this exec's to consume.
    let claimed = rings.claim(batch);
    let mut run = Batch::new(ctx, rings, cont.as_ref());
    let count = match claimed {
        Ok(count) => count,
        Err(ClaimError::Corrupt) => return Err(EINVAL),
        Err(ClaimError::CqFull) => {
            // Ready atoms complete into slots they hold already: a full completion ring does
            // not keep them waiting.
            run.run_ready();
            if run.finish() {
                // The program went on on a spare: the return value must say so.
                args.status = EXEC_HANDED_OFF;
                return Ok(EXEC_RET_HANDED_OFF as isize);
            }
            return Err(EBUSY);
        }
    };
    ctx.stats.submitted.fetch_add(u64::from(count), Relaxed);
    if count > 0 {
        Stats::inc(&ctx.stats.execs);
    }
    args.submitted = count;
    let batch = &batch[..count as usize];
    run.run_ready();
    run.run_entries(batch, None, ChainState::default());
    let handed = run.finish();
    let mut ret = count as isize;
    if handed {
        args.status = EXEC_HANDED_OFF;
        ret |= EXEC_RET_HANDED_OFF as isize;
    }
    Ok(ret)
}

/// Runs, in `SYSLET_IOC_WAIT`, the armed atoms of `ctx` whose files became ready and that the
/// current task may run, with no continuation: an atom that blocks all the same blocks the wait.
///
/// Must be called from process context without locks held, by the owner.
pub(crate) fn run_ready(ctx: &Context, rings: &Rings) {
    // As in an exec: unseen atoms never run, and atoms may not drive syslet.
    if syscall::current_syscalls_watched() {
        return;
    }
    let Ok(_mark) = AtomMark::new() else {
        return;
    };
    let mut run = Batch::new(ctx, rings, None);
    run.run_ready();
    run.finish();
}

/// Posts the completions of an armed atom's chain that will never run: `err` for the atom
/// (flagged `SYSLET_CQE_F_POLLED`), `-ECANCELED` for the entries linked after it, but `-ETIME`
/// for its timeout entry if `err` is its time limit.
pub(crate) fn complete_unrun(ctx: &Context, rings: &Rings, entries: &[Sqe], err: Error) {
    let id = CtxId::of(ctx);
    let mut counts = BatchCounts::default();
    for (i, sqe) in entries.iter().enumerate() {
        let outcome = if i == 0 {
            let mut outcome = Outcome::refused(err);
            outcome.flags |= CQE_F_POLLED;
            outcome
        } else if i == 1 && err == ETIME && timeout::is_valid_timeout(sqe) {
            trace::submit(id, sqe);
            Outcome::not_a_call(ETIME.to_errno().into())
        } else {
            // Linked entries that waited with the atom had no submit event yet.
            trace::submit(id, sqe);
            Outcome::refused(ECANCELED)
        };
        counts.add(&outcome);
        post(rings, id, sqe, &outcome);
    }
    counts.flush(&ctx.stats);
}

/// Posts the completion of `sqe` with `outcome`.
fn post(rings: &Rings, id: CtxId, sqe: &Sqe, outcome: &Outcome) {
    rings.complete(&[Cqe {
        user_data: sqe.user_data,
        res: outcome.res,
        flags: outcome.flags,
        ..Default::default()
    }]);
    trace::complete(id, sqe, outcome.res, outcome.flags);
}

/// An armed atom whose file became ready, to run: the call its submitter's filters allowed,
/// and its time limit.
struct Resumed {
    call: CheckedSyscall,
    deadline: Option<Deadline>,
}

/// Where a chain stands before its next entry.
#[derive(Clone, Copy, Default)]
struct ChainState {
    /// An entry of the chain failed: the rest is cancelled.
    failed: bool,
    /// What its entries returned, for result forwarding.
    results: ChainResults,
    /// The previous entry is a call that links to the next one (a timeout entry may follow).
    after_call: bool,
    /// That call was cut short by its time limit.
    cut: bool,
}

impl ChainState {
    /// Where the chain stands after `sqe` completed with `res`; `cut`: its time limit cut it
    /// short.
    fn after(self, sqe: &Sqe, res: i64, cut: bool) -> Self {
        let linked = sqe.flags & SQE_LINK != 0;
        if !linked {
            return Self::default();
        }
        if timeout::is_timeout(sqe) {
            // Not a call: forwarding reaches past it, to the call it limited.
            return Self {
                failed: self.failed || res < 0,
                after_call: false,
                cut: false,
                ..self
            };
        }
        Self {
            failed: res < 0,
            results: self.results.after(res, true),
            after_call: true,
            cut,
        }
    }
}

/// The state of one batch while it runs.
struct Batch<'a> {
    ctx: &'a Context,
    /// `ctx` in trace events.
    id: CtxId,
    rings: &'a Rings,
    cont: Option<&'a Arc<Continuation>>,
    /// The spare lent for the next atom that may block.
    lent: Option<ListArc<Spare>>,
    /// A spare took the continuation over.
    handed: bool,
    /// The last atom run blocked (handed off, or blocked with no spare lent).
    blocked: bool,
    /// A signal arrived: the entries not yet run are refused with `-EINTR`.
    interrupted: bool,
    counts: BatchCounts,
}

impl<'a> Batch<'a> {
    fn new(ctx: &'a Context, rings: &'a Rings, cont: Option<&'a Arc<Continuation>>) -> Self {
        Self {
            ctx,
            id: CtxId::of(ctx),
            rings,
            cont,
            lent: None,
            handed: false,
            blocked: false,
            interrupted: false,
            counts: BatchCounts::default(),
        }
    }

    /// Ends the batch: flushes its counters and gives a lent spare back; returns whether a spare
    /// took the continuation over.
    fn finish(mut self) -> bool {
        self.counts.flush(&self.ctx.stats);
        if let (Some(cont), Some(spare)) = (self.cont, self.lent.take()) {
            self.ctx.spares.give_back(cont, spare);
        }
        self.handed
    }

    /// Runs the armed atoms whose files became ready and that this task may take, each with the
    /// rest of its chain.
    fn run_ready(&mut self) {
        let Some(polled) = self.ctx.polled() else {
            return;
        };
        // Each pass takes an atom out; one armed again may be woken again at once by a reader
        // that keeps winning the race for its data. A bound on the passes, and a signal, end the
        // loop: what is left runs in the next call.
        let mut budget = self.rings.layout().cq_entries;
        while !self.interrupted && budget > 0 {
            budget -= 1;
            if syscall::signal_pending_current() {
                break;
            }
            let Some(ready) = polled.take_ready(&self.ctx.stats) else {
                break;
            };
            if ready.expired {
                // Its time limit expired while it waited: it never runs.
                complete_unrun(self.ctx, self.rings, &ready.entries, ETIME);
                continue;
            }
            match ready.call.resume() {
                Ok(call) => {
                    let resumed = Resumed {
                        call,
                        deadline: ready.deadline,
                    };
                    let chain = ChainState {
                        results: ready.results,
                        ..ChainState::default()
                    };
                    self.run_entries(&ready.entries, Some(resumed), chain)
                }
                // The submitter's confinement changed after its filters judged the call: they
                // never judged it as it would run now.
                Err(_) => complete_unrun(self.ctx, self.rings, &ready.entries, EPERM),
            }
        }
    }

    /// Runs `entries` in order, posting one completion per entry as soon as its atom ends; an
    /// atom armed on the pollable path takes the rest of its chain with it.
    ///
    /// `resumed`: `entries[0]` is an armed atom whose file became ready, allowed as this call
    /// (its arguments were forwarded, if asked, before it was armed). `chain`: where the chain of
    /// `entries[0]` stands.
    ///
    /// Completions are never held back to the end of the batch: another thread of the owner may
    /// be waiting for one before it does what a later atom waits for.
    fn run_entries(
        &mut self,
        entries: &[Sqe],
        mut resumed: Option<Resumed>,
        mut chain: ChainState,
    ) {
        let mut i = 0;
        while let Some(entry) = entries.get(i) {
            let polled = resumed.is_some();
            let mut sqe = *entry;
            let mut cut = false;
            let mut outcome = if timeout::is_timeout(&sqe) {
                self.timeout_entry(&sqe, chain)
            } else {
                let checked = match resumed.take() {
                    Some(resumed) => Ok((resumed.call, resumed.deadline)),
                    None => self.check_entry(&mut sqe, chain).map(|call| {
                        // A linked timeout entry limits the call from now on.
                        (call, timeout::deadline_of(&sqe, entries.get(i + 1)))
                    }),
                };
                match checked {
                    Ok((call, deadline)) => {
                        let rest = entries.get(i + 1..).unwrap_or(&[]);
                        let atom = Waiting {
                            sqe: &sqe,
                            linked: rest,
                            results: chain.results,
                            deadline,
                        };
                        match self.arm_or_run(atom, call, polled) {
                            Some((outcome, was_cut)) => {
                                cut = was_cut;
                                outcome
                            }
                            None => {
                                // Armed: its chain waits with it.
                                i += poll::chain_len(&entries[i..]);
                                chain = ChainState::default();
                                continue;
                            }
                        }
                    }
                    Err(refused) => refused,
                }
            };
            if polled {
                outcome.flags |= CQE_F_POLLED;
            }
            chain = chain.after(&sqe, outcome.res, cut);
            if self.handed {
                outcome.flags = (outcome.flags & !CQE_F_INLINE) | CQE_F_ASYNC;
            }
            self.counts.add(&outcome);
            post(self.rings, self.id, &sqe, &outcome);
            // Notifications (task work of this thread) were handled by the atom; only a pending
            // signal ends the batch.
            if !self.interrupted && syscall::signal_pending_current() {
                self.interrupted = true;
            }
            i += 1;
        }
    }

    /// The outcome of the timeout entry `sqe`, which is not a call: `-ETIME` if it cut the call
    /// before it short, 0 if that call completed in time, `-ECANCELED` if it failed on its own,
    /// `-EINVAL` if it is malformed or limits no call.
    fn timeout_entry(&self, sqe: &Sqe, chain: ChainState) -> Outcome {
        trace::submit(self.id, sqe);
        if self.interrupted {
            Outcome::refused(EINTR)
        } else if !timeout::is_valid_timeout(sqe) || !chain.after_call {
            Outcome::refused(EINVAL)
        } else if chain.cut {
            Outcome::not_a_call(ETIME.to_errno().into())
        } else if chain.failed {
            Outcome::refused(ECANCELED)
        } else {
            Outcome::not_a_call(0)
        }
    }

    /// Decides whether the consumed entry `sqe` may run: not after a signal or a failed entry of
    /// its chain, its forwarded argument substituted, then policy and seccomp.
    fn check_entry(&self, sqe: &mut Sqe, chain: ChainState) -> Result<CheckedSyscall, Outcome> {
        if self.interrupted {
            trace::submit(self.id, sqe);
            // A signal arrived: let it be handled (or kill) before anything else runs.
            return Err(Outcome::refused(EINTR));
        }
        if chain.failed {
            trace::submit(self.id, sqe);
            return Err(Outcome::refused(ECANCELED));
        }
        let forwarded = atom::forward(sqe, chain.results);
        // After the substitution: the event shows the call as seccomp judges it.
        trace::submit(self.id, sqe);
        forwarded?;
        atom::check(sqe, self.cont.is_some())
    }

    /// Arms `atom`, allowed as `call`, on the pollable path if it waits for a file that is not
    /// ready (`None`: the entries of its chain went with it), or runs it; returns its outcome and
    /// whether its time limit cut it short.
    ///
    /// `polled`: the atom waited on the pollable path already and its file became ready.
    fn arm_or_run(
        &mut self,
        atom: Waiting<'_>,
        call: CheckedSyscall,
        polled: bool,
    ) -> Option<(Outcome, bool)> {
        let sqe = atom.sqe;
        let target = match poll::wanted_events(sqe) {
            Some(events) if self.rings.layout().poll => {
                self.ctx.polled_or_init().map(|path| (events, path))
            }
            _ => None,
        };
        let deadline = atom.deadline;
        let call = match target {
            Some((events, path)) => {
                let linked = if sqe.flags & SQE_LINK != 0 {
                    &atom.linked[..poll::chain_len(atom.linked)]
                } else {
                    &[]
                };
                let atom = Waiting { linked, ..atom };
                match path.arm(self.id, &self.ctx.stats, atom, call, events) {
                    Arming::Armed => {
                        if polled {
                            // Woken, but another reader (or writer) was first.
                            Stats::inc(&self.ctx.stats.poll_rearmed);
                        }
                        return None;
                    }
                    Arming::Cancelled(armed) => {
                        complete_unrun(self.ctx, self.rings, &armed.entries, ECANCELED);
                        return None;
                    }
                    Arming::Run(call) => call,
                }
            }
            None => call,
        };
        trace::start(self.id, sqe, self.cont.is_some() && !self.handed);
        let ran = self.run_atom(sqe, call, deadline);
        if polled {
            Stats::inc(&self.ctx.stats.completed_after_poll);
            if self.blocked {
                Stats::inc(&self.ctx.stats.poll_fallbacks);
            }
        }
        Some(ran)
    }

    /// Runs one checked atom, within `deadline` if it has one; returns its outcome and whether
    /// the deadline cut it short.
    fn run_atom(
        &mut self,
        sqe: &Sqe,
        call: CheckedSyscall,
        deadline: Option<Deadline>,
    ) -> (Outcome, bool) {
        let Some(deadline) = deadline else {
            return (self.run_watched(sqe, call, &|| false), false);
        };
        let Some(left) = timeout::left(deadline) else {
            // The time was up before it could run (it waited armed until the last moment).
            return (Outcome::ran(ETIME.to_errno().into()), true);
        };
        pin_init::stack_pin_init!(let limit = AtomDeadline::new());
        let (mut outcome, cut) = limit
            .as_ref()
            .run(left, |expired| self.run_watched(sqe, call, expired));
        if cut && outcome.res == -i64::from(bindings::EINTR) {
            outcome.res = ETIME.to_errno().into();
        }
        (outcome, cut)
    }

    /// Runs one checked atom, watched for a block if the exec has a continuation the submitter
    /// still owns; `expired` says whether its time limit is up.
    fn run_watched(
        &mut self,
        sqe: &Sqe,
        call: CheckedSyscall,
        expired: &dyn Fn() -> bool,
    ) -> Outcome {
        self.blocked = false;
        let Some(cont) = self.cont else {
            return Outcome::ran(run_call(call, &|| expired().then_some(ETIME)));
        };
        if self.handed {
            // The program runs elsewhere already: nothing more to hand off.
            return self.run_cancellable(sqe, call, cont, expired);
        }
        self.ensure_spare(cont);
        pin_init::stack_pin_init!(let hook = PreemptNotifier::new_with(
            &BLOCK_HOOK_OPS,
            BlockHook::new(cont, self.lent.as_ref(), sqe.user_data, sqe.nr),
        ));
        let outcome = hook
            .as_mut()
            .with_registered(|| self.run_cancellable(sqe, call, cont, expired));
        match hook.data().woken() {
            WOKEN_BEFORE_SWITCH => Stats::inc(&self.ctx.stats.wakes_before_switch),
            WOKEN_AFTER_SWITCH => Stats::inc(&self.ctx.stats.wakes_after_switch),
            _ => {}
        }
        // The notifier is unregistered: no new block can queue the work, and its irq work is
        // synced when `hook` is dropped.
        if !cont.reclaim() {
            self.handed = true;
            self.blocked = true;
        }
        if cont.take_blocked_without_spare() {
            Stats::inc(&self.ctx.stats.sync_fallbacks);
            self.rings.set_flag(RING_NEED_SPARE, true);
            self.blocked = true;
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

    /// Runs `call` as the running atom of `cont`, so that `SYSLET_IOC_CANCEL` can interrupt it;
    /// `expired` says whether its time limit is up.
    fn run_cancellable(
        &self,
        sqe: &Sqe,
        call: CheckedSyscall,
        cont: &Continuation,
        expired: &dyn Fn() -> bool,
    ) -> Outcome {
        cont.begin_atom(sqe.user_data);
        let mut res = run_call(call, &|| {
            if cont.atom_cancelled() {
                Some(ECANCELED)
            } else {
                expired().then_some(ETIME)
            }
        });
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
/// pending signal ends it with `-EINTR`, and a stop request (`stopped`: a cancel, `-ECANCELED`,
/// or an expired time limit, `-ETIME`) with its error: the restart would happen only after the
/// signal's handler, which runs when the exec returns.
fn run_call(mut call: CheckedSyscall, stopped: &dyn Fn() -> Option<Error>) -> i64 {
    let res = loop {
        match call.run() {
            Return::Done(res) => break res,
            Return::Interrupted => {
                if let Some(err) = stopped() {
                    break err.to_errno().into();
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
    // the way back to user space, instead of cutting the next atom short. (A cancel's or a time
    // limit's notification is cleared here too; `run_cancellable` clears one that comes later.)
    syscall::run_notified_task_work();
    res
}
