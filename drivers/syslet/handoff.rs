// SPDX-License-Identifier: GPL-2.0

//! Handing the submitter's continuation to a spare thread when an atom blocks.
//!
//! An exec with a nonzero continuation cookie borrows the most recently parked spare (LIFO) for
//! its duration and registers a preempt notifier on the submitting task. Who owns the
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
//! - BLOCKED: the submitter is asleep in an atom; the spare has been woken (hard irq work,
//!   since `sched_out` runs under the runqueue lock) and races the submitter for it.
//! - HANDED: the spare returned to user space with the cookie and resumed the program there;
//!   the submitter finishes its batch, posting completions flagged `SYSLET_CQE_F_ASYNC`, and
//!   its exec reports `SYSLET_EXEC_HANDED_OFF`.
//!
//! Both transitions out of BLOCKED are compare-and-exchanges, so exactly one thread owns the
//! continuation at any time: it is never resumed twice and never lost. With no spare parked an
//! atom that blocks simply blocks ("synchronous fallback"); that is counted and the shared header
//! asks for spares (`SYSLET_RING_NEED_SPARE`).

use kernel::{
    current,
    irq_work::{
        IrqWork,
        IrqWorkHandler, //
    },
    new_spinlock,
    preempt_notifier::PreemptOps,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        Parker,
        SetOnce,
        SpinLock, //
    },
    task::Task,
    time::{
        Instant,
        Monotonic, //
    },
};

/// The submitter owns the continuation.
pub(crate) const RUNNING: u32 = 0;
/// The submitter blocked in an atom with a spare lent; the spare has been woken to claim.
pub(crate) const BLOCKED: u32 = 1;
/// A spare claimed the continuation.
pub(crate) const HANDED: u32 = 2;

/// A thread parked in `SYSLET_IOC_PARK`, ready to take over a blocked submitter's continuation.
#[pin_data]
pub(crate) struct Spare {
    pub(crate) parker: Parker,
    /// The continuation of the exec this spare is lent to, if any.
    ///
    /// Set and cleared under `Context::handoff`, which is taken first.
    #[pin]
    pub(crate) lent_to: SpinLock<Option<Arc<Continuation>>>,
}

impl Spare {
    /// Creates a spare for the current task.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                parker: Parker::new(),
                lent_to <- new_spinlock!(None, "Spare::lent_to"),
            }),
            GFP_KERNEL,
        )
    }
}

/// Wakes the lent spare, from hard interrupt context.
pub(crate) struct SpareWaker {
    pub(crate) spare: SetOnce<Arc<Spare>>,
}

impl IrqWorkHandler for SpareWaker {
    fn run(&self) {
        if let Some(spare) = self.spare.as_ref() {
            spare.parker.unpark();
        }
    }
}

/// The continuation of one exec: the submitter's user context, named by a cookie.
#[pin_data]
pub(crate) struct Continuation {
    /// The cookie user space passed to exec; handed to the spare that claims.
    pub(crate) cookie: u64,
    /// `RUNNING`, `BLOCKED` or `HANDED`; see the module documentation.
    pub(crate) state: Atomic<u32>,
    /// When the exec started; times are kept relative to it.
    base: Instant<Monotonic>,
    /// When the submitter last blocked with a spare lent, in ns after `base`.
    blocked_ns: Atomic<i64>,
    /// The current atom blocked while no spare was lent.
    pub(crate) blocked_without_spare: Atomic<bool>,
    /// The submitting task.
    pub(crate) submitter: ARef<Task>,
    /// `user_data` of the atom running now, for cancellation.
    pub(crate) running_user_data: Atomic<u64>,
    /// An atom is running (`running_user_data` is valid).
    pub(crate) atom_running: Atomic<bool>,
    /// Cancellation of the running atom was requested.
    pub(crate) cancel_requested: Atomic<bool>,
    /// Wakes the lent spare; queued from `sched_out`.
    #[pin]
    pub(crate) wake: IrqWork<SpareWaker>,
}

impl Continuation {
    /// Creates the continuation of an exec by the current task.
    pub(crate) fn new(cookie: u64) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                cookie,
                state: Atomic::new(RUNNING),
                base: Instant::now(),
                blocked_ns: Atomic::new(0),
                blocked_without_spare: Atomic::new(false),
                submitter: ARef::from(&**current!()),
                running_user_data: Atomic::new(0),
                atom_running: Atomic::new(false),
                cancel_requested: Atomic::new(false),
                wake <- IrqWork::new(SpareWaker { spare: SetOnce::new() }),
            }),
            GFP_KERNEL,
        )
    }

    /// Returns the spare lent to this exec, if any.
    pub(crate) fn spare(&self) -> Option<&Arc<Spare>> {
        self.wake.data().spare.as_ref()
    }

    /// Takes the continuation back after an atom returned; `false` if a spare has it.
    pub(crate) fn reclaim(&self) -> bool {
        match self.state.cmpxchg(BLOCKED, RUNNING, Relaxed) {
            Ok(_) => true,
            Err(state) => state != HANDED,
        }
    }

    /// Claims the continuation for the spare; `false` if the submitter took it back first.
    pub(crate) fn claim(&self) -> bool {
        self.state.cmpxchg(BLOCKED, HANDED, Relaxed).is_ok()
    }

    /// Returns the time from the block to now, in microseconds.
    pub(crate) fn handoff_latency_us(&self) -> i64 {
        (self.base.elapsed().as_nanos() - self.blocked_ns.load(Relaxed)) / 1000
    }
}

/// The preempt notifier of an exec: sees the submitter block.
pub(crate) struct BlockHook {
    pub(crate) cont: Arc<Continuation>,
}

impl PreemptOps for BlockHook {
    fn sched_in(&self, _cpu: i32) {}

    fn sched_out(&self, _next: &Task) {
        // Preemption leaves the task runnable: only a task going to sleep has blocked.
        if current!().is_runnable() {
            return;
        }
        let cont = &self.cont;
        if cont.spare().is_none() {
            cont.blocked_without_spare.store(true, Relaxed);
            return;
        }
        if cont.state.cmpxchg(RUNNING, BLOCKED, Relaxed).is_ok() {
            cont.blocked_ns
                .store(cont.base.elapsed().as_nanos(), Relaxed);
            // The runqueue lock is held: the wakeup happens in the irq work.
            cont.wake.queue();
        }
    }
}
