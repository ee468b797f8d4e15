// SPDX-License-Identifier: GPL-2.0

//! Per-atom time limits: the linked timeout entry (`SYSLET_SQE_LINK_TIMEOUT`).
//!
//! A timeout entry is not a call: it limits the entry before it, which links to it, to
//! `args[0]` nanoseconds from the moment its exec reaches it. The limit holds wherever the atom
//! is when the time is up:
//!
//! - running (inline, or blocked after its program was handed to a spare): an [`AtomDeadline`]
//!   on the running task's stack interrupts it as `SYSLET_IOC_CANCEL` does
//!   (`TIF_NOTIFY_SIGNAL`: interruptible sleeps return), and it completes with `-ETIME`;
//! - armed on the pollable path: an [`ArmedExpiry`] marks its slot ready and expired, and
//!   whoever takes it out completes it with `-ETIME` without running it.
//!
//! The timeout entry then completes with `-ETIME`; with 0 if the atom completed in time, or
//! `-ECANCELED` if it failed on its own, as any later entry of a failed chain.

use core::cell::Cell;

use kernel::{
    impl_has_hr_timer,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Release, //
        },
        Arc,
        ArcBorrow, //
    },
    task::Task,
    time::{
        hrtimer::{
            ArcHrTimerHandle,
            HrTimer,
            HrTimerCallback,
            HrTimerCallbackContext,
            HrTimerPointer,
            HrTimerRestart,
            RelativeMode,
            ScopedHrTimerPointer, //
        },
        Delta,
        Instant,
        Monotonic, //
    },
};

use crate::{
    defs::{
        Sqe,
        SQE_LINK,
        SQE_LINK_TIMEOUT, //
    },
    poll::ReadySet,
};

/// When an atom's time is up.
pub(crate) type Deadline = Instant<Monotonic>;

/// Returns whether `sqe` is a timeout entry.
pub(crate) fn is_timeout(sqe: &Sqe) -> bool {
    sqe.flags & SQE_LINK_TIMEOUT != 0
}

/// The longest time limit, in nanoseconds (146 years): added to the monotonic clock it cannot
/// overflow.
const MAX_TIMEOUT_NS: u64 = 1 << 62;

/// Returns whether `sqe` is a well-formed timeout entry: no call (`nr` 0), a limit in `args[0]`
/// from 1 to `MAX_TIMEOUT_NS`, every other argument 0, no flag but `SYSLET_SQE_LINK`.
pub(crate) fn is_valid_timeout(sqe: &Sqe) -> bool {
    sqe.nr == 0
        && (1..=MAX_TIMEOUT_NS).contains(&sqe.args[0])
        && sqe.args[1..].iter().all(|&a| a == 0)
        && sqe.flags & !(SQE_LINK_TIMEOUT | SQE_LINK) == 0
}

/// The deadline a well-formed timeout entry `next` sets on the atom `sqe` consumed now, if `sqe`
/// links to it.
pub(crate) fn deadline_of(sqe: &Sqe, next: Option<&Sqe>) -> Option<Deadline> {
    let next = next.filter(|n| sqe.flags & SQE_LINK != 0 && is_valid_timeout(n))?;
    Some(Instant::now() + Delta::from_nanos(next.args[0] as i64))
}

/// Returns the time left until `deadline`, or `None` if it has passed.
pub(crate) fn left(deadline: Deadline) -> Option<Delta> {
    let left = deadline - Instant::now();
    (left.as_nanos() > 0).then_some(left)
}

/// A time limit on the atom the current task runs: when it expires, the task is interrupted as
/// a cancel interrupts it. Lives on the running task's stack, for one atom.
#[pin_data]
pub(crate) struct AtomDeadline {
    #[pin]
    timer: HrTimer<Self>,
    task: ARef<Task>,
    fired: Atomic<bool>,
}

impl AtomDeadline {
    /// Creates a deadline for the current task.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            timer <- HrTimer::new(),
            task: ARef::from(&**kernel::current!()),
            fired: Atomic::new(false),
        })
    }

    /// Runs `f` with the timer armed for `left`; `f` is given a check that says whether the time
    /// is up (and records that it said so: see the return value). Returns what `f` returned and
    /// whether the check said the time was up.
    ///
    /// When this returns, the timer is stopped and its callback not running.
    pub(crate) fn run<T>(
        self: Pin<&Self>,
        left: Delta,
        f: impl FnOnce(&dyn Fn() -> bool) -> T,
    ) -> (T, bool) {
        let cut = Cell::new(false);
        let expired = || {
            // Pairs with the `Release` store of the callback.
            let fired = self.fired.load(Acquire);
            if fired {
                cut.set(true);
            }
            fired
        };
        let ret = self.start_scoped(left, || f(&expired));
        // The timer is stopped. If it fired after the call's last look at notifications, its
        // `TIF_NOTIFY_SIGNAL` is still set: cleared here, or it would cut the next call short.
        if self.fired.load(Acquire) {
            kernel::syscall::run_notified_task_work();
        }
        (ret, cut.get())
    }
}

impl HrTimerCallback for AtomDeadline {
    type Pointer<'a> = Pin<&'a Self>;

    /// Runs in hard interrupt context.
    fn run(this: Pin<&Self>, _ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        this.fired.store(true, Release);
        // Interrupts an interruptible sleep; a call that does not sleep ends on its own and the
        // notification is cleared after it.
        this.task.notify_signal();
        HrTimerRestart::NoRestart
    }
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for AtomDeadline {
        mode: RelativeMode<Monotonic>, field: self.timer
    }
}

/// The time limit of an armed atom: when it expires, the atom's slot is marked ready, so that
/// the next exec or wait takes it out and completes it with `-ETIME`.
#[pin_data]
pub(crate) struct ArmedExpiry {
    #[pin]
    timer: HrTimer<Self>,
    /// The atom's slot in `ready`.
    index: u32,
    ready: Arc<ReadySet>,
    fired: Atomic<bool>,
}

/// A started [`ArmedExpiry`]; stopping it waits for a callback that is running.
pub(crate) struct ArmedTimer {
    expiry: Arc<ArmedExpiry>,
    handle: ArcHrTimerHandle<ArmedExpiry>,
}

impl ArmedTimer {
    /// Starts the limit of the atom in slot `index` of `ready`, due after `left`.
    pub(crate) fn start(index: u32, ready: Arc<ReadySet>, left: Delta) -> Result<Self> {
        let expiry = Arc::pin_init(
            pin_init!(ArmedExpiry {
                timer <- HrTimer::new(),
                index,
                ready,
                fired: Atomic::new(false),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        let handle = expiry.clone().start(left);
        Ok(Self { expiry, handle })
    }

    /// Stops the timer; returns whether it fired.
    pub(crate) fn stop(self) -> bool {
        // Dropping the handle cancels the timer and waits for a running callback.
        drop(self.handle);
        self.expiry.fired.load(Acquire)
    }
}

impl HrTimerCallback for ArmedExpiry {
    type Pointer<'a> = Arc<Self>;

    /// Runs in hard interrupt context.
    fn run(this: ArcBorrow<'_, Self>, _ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        this.fired.store(true, Release);
        this.ready.mark(this.index);
        HrTimerRestart::NoRestart
    }
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for ArmedExpiry {
        mode: RelativeMode<Monotonic>, field: self.timer
    }
}
