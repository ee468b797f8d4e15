// SPDX-License-Identifier: GPL-2.0

//! The continuation of an exec and the scheduler hook that hands it to a spare.
//!
//! An exec with a nonzero continuation cookie lends a parked spare (`spares.rs`) for each atom and
//! registers a preempt notifier on the submitting task for the span of that atom. Who owns the
//! continuation (the right to resume the submitter's user program) is [`Continuation::state`]:
//!
//! ```text
//!              atom blocks (sched_out, spare lent)         spare claims (park ioctl)
//!   RUNNING ------------------------------------> BLOCKED ---------------------------> HANDED
//!      ^                                             |
//!      +---------------------------------------------+
//!        the atom returns before a spare claims (submitter, after each atom)
//! ```
//!
//! - RUNNING: the submitter owns it; preemption is not blocking and changes nothing.
//! - BLOCKED: the submitter is asleep in an atom (or about to be: the sleep hook runs before the
//!   switch); the lent spare has been woken and races the submitter for it.
//! - HANDED: the spare returned to user space with the cookie and resumes the program there;
//!   the submitter finishes its batch, posting completions flagged `SYSLET_CQE_F_ASYNC`. HANDED is
//!   final.
//!
//! # Invariants
//!
//! Both transitions out of BLOCKED are compare-and-exchanges ([`Continuation::claim`],
//! [`Continuation::reclaim`]), so exactly one thread owns the continuation at any time: it is
//! never resumed twice and never lost.
//!
//! Cancellation: [`Continuation::atom`] names the atom running now. A cancel marks it and
//! interrupts the submitter under that lock, and the submitter clears it under the same lock when
//! the atom ends, so a cancel either reaches the atom it named while it runs or fails with
//! `ENOENT`; it never reaches a later atom.

use kernel::{
    current,
    irq_work::{
        IrqWork,
        IrqWorkHandler, //
    },
    list::ListArc,
    new_spinlock,
    preempt_notifier::{
        OpsTable,
        PreemptOps, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        Arc,
        SpinLock, //
    },
    task::Task,
    time::{
        Instant,
        Monotonic, //
    },
};

use crate::{
    spares::Spare,
    trace::{
        self,
        CtxId, //
    },
};

/// The submitter owns the continuation.
const RUNNING: u32 = 0;
/// The submitter blocked in an atom with a spare lent; the spare has been woken to claim.
const BLOCKED: u32 = 1;
/// A spare claimed the continuation.
const HANDED: u32 = 2;

/// The atom of an exec that is running now, for cancellation.
struct RunningAtom {
    /// `user_data` of the atom running now, if one is.
    user_data: Option<u64>,
    /// A cancel of the running atom was requested and `TIF_NOTIFY_SIGNAL` set for it.
    cancelled: bool,
}

/// The continuation of one exec: the submitter's user context, named by a cookie.
#[pin_data]
pub(crate) struct Continuation {
    /// The cookie user space passed to exec; handed to the spare that claims.
    pub(crate) cookie: u64,
    /// The exec's context, in trace events.
    pub(crate) ctx: CtxId,
    /// `RUNNING`, `BLOCKED` or `HANDED`; see the module documentation.
    state: Atomic<u32>,
    /// When the exec started; times are kept relative to it.
    base: Instant<Monotonic>,
    /// When the submitter last blocked with a spare lent, in ns after `base`.
    blocked_ns: Atomic<i64>,
    /// `user_data` of the atom that last blocked with a spare lent, in trace events.
    blocked_atom: Atomic<u64>,
    /// The current atom blocked while no spare was lent.
    blocked_without_spare: Atomic<bool>,
    /// The submitting task.
    submitter: ARef<Task>,
    /// The atom running now. A leaf lock.
    #[pin]
    atom: SpinLock<RunningAtom>,
    /// The spare lent to the exec now, so that closing the context can reach it. Set and cleared
    /// by the submitter in process context; never read by the scheduler hook. A leaf lock.
    #[pin]
    lent: SpinLock<Option<Arc<Spare>>>,
}

impl Continuation {
    /// Creates the continuation of an exec by the current task on the context `ctx`.
    pub(crate) fn new(cookie: u64, ctx: CtxId) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                cookie,
                ctx,
                state: Atomic::new(RUNNING),
                base: Instant::now(),
                blocked_ns: Atomic::new(0),
                blocked_atom: Atomic::new(0),
                blocked_without_spare: Atomic::new(false),
                submitter: ARef::from(&**current!()),
                atom <- new_spinlock!(
                    RunningAtom {
                        user_data: None,
                        cancelled: false,
                    },
                    "Continuation::atom"
                ),
                lent <- new_spinlock!(None, "Continuation::lent"),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Returns whether a spare owns the continuation (final).
    pub(crate) fn is_handed(&self) -> bool {
        self.state.load(Relaxed) == HANDED
    }

    /// Returns whether the submitter is blocked and a spare may claim.
    pub(crate) fn is_blocked(&self) -> bool {
        self.state.load(Relaxed) == BLOCKED
    }

    /// RUNNING -> BLOCKED in the atom `user_data`, from the scheduler hook; `false` if the state
    /// was not RUNNING.
    ///
    /// Full ordering: the submitter's user-space writes before its exec are visible to the spare
    /// that claims, and so are the relaxed stores of the block's time and atom, made before it.
    fn block(&self, user_data: u64) -> bool {
        if self.state.load(Relaxed) != RUNNING {
            return false;
        }
        // Before the transition, which publishes them: a spare awake already (a signal, another
        // wakeup) may claim as soon as the state is BLOCKED. Only the submitter writes them, and
        // only while it owns the continuation.
        self.blocked_ns
            .store(self.base.elapsed().as_nanos(), Relaxed);
        self.blocked_atom.store(user_data, Relaxed);
        self.state.cmpxchg(RUNNING, BLOCKED, Full).is_ok()
    }

    /// BLOCKED -> RUNNING by the submitter after an atom returned; `false` if a spare has the
    /// continuation.
    pub(crate) fn reclaim(&self) -> bool {
        match self.state.cmpxchg(BLOCKED, RUNNING, Full) {
            Ok(_) => true,
            Err(state) => state != HANDED,
        }
    }

    /// BLOCKED -> HANDED by a woken spare, the current task; `false` if the submitter took it
    /// back first.
    pub(crate) fn claim(&self) -> bool {
        if self.state.cmpxchg(BLOCKED, HANDED, Full).is_err() {
            return false;
        }
        trace::handoff(
            self.ctx,
            self.blocked_atom.load(Relaxed),
            self.submitter.pid(),
            self.base.elapsed().as_nanos() - self.blocked_ns.load(Relaxed),
        );
        true
    }

    /// Takes the "blocked without a spare" mark the hook left for the atom that just ended.
    pub(crate) fn take_blocked_without_spare(&self) -> bool {
        self.blocked_without_spare.xchg(false, Relaxed)
    }

    /// Returns the time from the block to now, in microseconds.
    pub(crate) fn handoff_latency_us(&self) -> i64 {
        (self.base.elapsed().as_nanos() - self.blocked_ns.load(Relaxed)) / 1000
    }

    /// Records that the atom with `user_data` starts running on the submitter.
    pub(crate) fn begin_atom(&self, user_data: u64) {
        let mut atom = self.atom.lock();
        atom.user_data = Some(user_data);
        atom.cancelled = false;
    }

    /// Records that the running atom ended; returns whether it was cancelled.
    ///
    /// After this no cancel can interrupt the submitter on this atom's behalf. A cancel that
    /// interrupted it left `TIF_NOTIFY_SIGNAL` set: the caller clears it (and runs any task work)
    /// before the next atom.
    pub(crate) fn end_atom(&self) -> bool {
        let mut atom = self.atom.lock();
        atom.user_data = None;
        core::mem::replace(&mut atom.cancelled, false)
    }

    /// Returns whether the running atom was cancelled.
    pub(crate) fn atom_cancelled(&self) -> bool {
        self.atom.lock().cancelled
    }

    /// Interrupts the running atom if it is `user_data` and the continuation was handed off;
    /// returns whether it did.
    pub(crate) fn request_cancel(&self, user_data: u64) -> bool {
        let mut atom = self.atom.lock();
        if atom.user_data != Some(user_data) || !self.is_handed() {
            return false;
        }
        atom.cancelled = true;
        // Under `atom`, so the atom cannot end (and clear the request) in between.
        self.submitter.notify_signal();
        true
    }

    /// Records the spare lent to the exec now.
    pub(crate) fn set_lent(&self, spare: Option<Arc<Spare>>) -> Option<Arc<Spare>> {
        core::mem::replace(&mut *self.lent.lock(), spare)
    }

    /// Wakes the spare lent to the exec, if any, so that it sees the context closing.
    pub(crate) fn wake_lent(&self) {
        if let Some(spare) = self.lent.lock().as_ref() {
            spare.unpark();
        }
    }
}

/// Wakes the spare lent for one atom, from hard interrupt context.
pub(crate) struct SpareWaker {
    spare: Option<Arc<Spare>>,
}

impl SpareWaker {
    /// Creates the waker of `spare` (none: the atom runs without a spare).
    pub(crate) fn new(spare: Option<&ListArc<Spare>>) -> Self {
        Self {
            spare: spare.map(|s| s.clone_arc()),
        }
    }
}

impl IrqWorkHandler for SpareWaker {
    fn run(&self) {
        if let Some(spare) = &self.spare {
            spare.unpark();
        }
    }
}

/// The scheduler hooks of one atom of an exec with a continuation: they see the submitter block.
///
/// The block is normally seen in [`PreemptOps::sleeping`], as the submitter calls `schedule()`:
/// no scheduler lock is held there, so the spare is woken at once and can take the CPU the
/// submitter gives up. `sched_out` sees every switch; it notes a block without a spare, and
/// hands off (waking the spare from hard irq work, since it runs under the runqueue lock) if the
/// task blocked without passing the sleep hook.
#[pin_data]
pub(crate) struct BlockHook {
    pub(crate) cont: Arc<Continuation>,
    /// Wakes the spare lent for this atom from `sched_out`; idle before the hook is dropped.
    #[pin]
    wake: IrqWork<SpareWaker>,
    /// The atom's `user_data` and system call number, in trace events.
    user_data: u64,
    nr: u32,
    /// How the spare was woken, if it was: [`WOKEN_BEFORE_SWITCH`] or [`WOKEN_AFTER_SWITCH`].
    woken: Atomic<u32>,
}

/// The sleep hook woke the spare.
pub(crate) const WOKEN_BEFORE_SWITCH: u32 = 1;
/// `sched_out` woke the spare, through irq work.
pub(crate) const WOKEN_AFTER_SWITCH: u32 = 2;

/// The operations of every [`BlockHook`] notifier, by which the sleep hook finds them.
pub(crate) static BLOCK_HOOK_OPS: OpsTable<BlockHook> = OpsTable::new();

impl BlockHook {
    /// The hooks of the atom `user_data` (system call `nr`) of the exec of `cont`, with `spare`
    /// lent (none: the atom runs without a spare).
    pub(crate) fn new(
        cont: &Arc<Continuation>,
        spare: Option<&ListArc<Spare>>,
        user_data: u64,
        nr: u32,
    ) -> impl PinInit<Self> {
        let cont = cont.clone();
        let waker = SpareWaker::new(spare);
        pin_init!(Self {
            cont,
            wake <- IrqWork::new(waker),
            user_data,
            nr,
            woken: Atomic::new(0),
        })
    }

    /// How the spare was woken for this atom: 0 if it was not.
    pub(crate) fn woken(&self) -> u32 {
        self.woken.load(Relaxed)
    }

    /// The spare lent for the atom, if it is still lent (it did not leave on a signal).
    fn lent_spare(&self) -> Option<&Arc<Spare>> {
        self.wake.data().spare.as_ref().filter(|s| s.is_lent())
    }
}

impl PreemptOps for BlockHook {
    fn sched_in(&self, _cpu: i32) {}

    fn sleeping(&self) {
        // No spare: `sched_out` notes the synchronous block if the task really sleeps.
        let Some(spare) = self.lent_spare() else {
            return;
        };
        if self.cont.block(self.user_data) {
            trace::block(self.cont.ctx, self.user_data, self.nr, true);
            self.woken.store(WOKEN_BEFORE_SWITCH, Relaxed);
            spare.unpark();
        }
    }

    fn sched_out(&self, _next: &Task) {
        // Preemption leaves the task runnable: only a task going to sleep has blocked.
        if current!().is_runnable() {
            return;
        }
        // A lent spare that left during the atom (a signal) cannot claim: a synchronous block.
        if self.lent_spare().is_none() {
            if !self.cont.blocked_without_spare.xchg(true, Relaxed) {
                trace::block(self.cont.ctx, self.user_data, self.nr, false);
            }
            return;
        }
        // Normally the sleep hook moved the state already, and this fails.
        if self.cont.block(self.user_data) {
            trace::block(self.cont.ctx, self.user_data, self.nr, true);
            self.woken.store(WOKEN_AFTER_SWITCH, Relaxed);
            // The runqueue lock is held: the wakeup happens in the irq work.
            self.wake.queue();
        }
    }
}
