// SPDX-License-Identifier: GPL-2.0

//! A wakeup for one known task that can be sent from any context.
//!
//! [`CondVar`](super::CondVar) loses a wakeup sent without holding its lock, and the lock cannot
//! be taken in hard interrupt context. A [`Parker`] is the classic pattern instead: the waiter
//! sets its task state before it checks a token, so an [`unpark`](Parker::unpark) that comes in
//! between is never lost, and `unpark` itself only stores the token and wakes the task, which
//! hard interrupt handlers may do.

use crate::{
    bindings, current,
    error::code::ERESTARTSYS,
    ffi::c_long,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Release, //
        },
        CondVar,
    },
    task::{
        Task,
        MAX_SCHEDULE_TIMEOUT, //
    },
    types::Opaque,
};

/// Lets its task sleep until another context unparks it.
///
/// # Examples
///
/// ```
/// use kernel::sync::Parker;
///
/// let parker = Parker::new();
/// parker.unpark();
/// // Returns at once: the token is already there.
/// assert!(parker.park_interruptible().is_ok());
/// ```
///
/// # Invariants
///
/// `task` is the task that created the parker.
pub struct Parker {
    task: ARef<Task>,
    /// 1 if an unpark has not been consumed by a park yet.
    token: Atomic<i32>,
}

impl Parker {
    /// Creates a parker for the current task.
    pub fn new() -> Self {
        // INVARIANT: The current task creates it.
        Self {
            task: ARef::from(&**current!()),
            token: Atomic::new(0),
        }
    }

    /// Returns the task that parks.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Sleeps until unparked; returns at once if an unpark came since the last park.
    ///
    /// Fails with `ERESTARTSYS` if a signal is pending. Must be called from process context by
    /// the task that created the parker: another task would sleep without anyone to wake it.
    pub fn park_interruptible(&self) -> Result {
        match self.park_interruptible_timeout(MAX_SCHEDULE_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Like [`Parker::park_interruptible`], for at most `timeout` jiffies
    /// ([`MAX_SCHEDULE_TIMEOUT`] for no limit).
    ///
    /// Returns `Ok(true)` if unparked, `Ok(false)` if the time ran out first.
    pub fn park_interruptible_timeout(&self, timeout: c_long) -> Result<bool> {
        let mut left = timeout;
        loop {
            // The state is set (with a full barrier) before the token is checked, so an
            // `unpark` after the check finds us sleeping and wakes us.
            // SAFETY: Sets the current task's state; always valid in process context.
            unsafe { bindings::set_current_state(bindings::TASK_INTERRUPTIBLE) };
            // Pairs with the `Release` store in `unpark`.
            if self.token.xchg(0, Acquire) != 0 {
                break;
            }
            if current!().signal_pending() {
                // SAFETY: As above.
                unsafe { bindings::__set_current_state(bindings::TASK_RUNNING) };
                return Err(ERESTARTSYS);
            }
            if left <= 0 {
                // SAFETY: As above.
                unsafe { bindings::__set_current_state(bindings::TASK_RUNNING) };
                return Ok(false);
            }
            // SAFETY: Sleeping is allowed in process context without locks held; the task state
            // was set above, as `schedule_timeout` requires.
            left = unsafe { bindings::schedule_timeout(left) };
        }
        // SAFETY: As above.
        unsafe { bindings::__set_current_state(bindings::TASK_RUNNING) };
        Ok(true)
    }

    /// Like [`Parker::park_interruptible_timeout`], also waiting on `queue` as an exclusive
    /// waiter and returning `Ok(true)` as soon as `ready` says so.
    ///
    /// A [`CondVar::notify_one`] on `queue` wakes exactly one such waiter that is asleep, and
    /// may be sent from any context without a lock: `ready` is checked after the task is on the
    /// queue with its state set, so a notification sent after what `ready` checks became true
    /// is never lost. `ready` runs with the task state set: it must not sleep.
    pub fn park_interruptible_timeout_queued(
        &self,
        timeout: c_long,
        queue: &CondVar,
        mut ready: impl FnMut() -> bool,
    ) -> Result<bool> {
        let entry = Opaque::<bindings::wait_queue_entry>::uninit();
        // SAFETY: `entry` is valid for writes; `init_wait` initializes it for the current task.
        unsafe { bindings::init_wait(entry.get()) };
        let mut left = timeout;
        let ret = loop {
            // SAFETY: `queue` is an initialized wait queue and `entry` an initialized entry that
            // stays in place (it is never moved) until `finish_wait` below takes it off. This
            // sets the task state with a full barrier, before the checks.
            unsafe {
                bindings::prepare_to_wait_exclusive(
                    queue.wait_queue_head.get(),
                    entry.get(),
                    bindings::TASK_INTERRUPTIBLE as i32,
                )
            };
            // Pairs with the `Release` store in `unpark`.
            if self.token.xchg(0, Acquire) != 0 || ready() {
                break Ok(true);
            }
            if current!().signal_pending() {
                break Err(ERESTARTSYS);
            }
            if left <= 0 {
                break Ok(false);
            }
            // SAFETY: As in `park_interruptible_timeout`.
            left = unsafe { bindings::schedule_timeout(left) };
        };
        // SAFETY: Takes `entry` off `queue` (if a wakeup did not already) and sets the task
        // running again.
        unsafe { bindings::finish_wait(queue.wait_queue_head.get(), entry.get()) };
        ret
    }

    /// Wakes the task if it is parked, or makes its next park return at once.
    ///
    /// Only an interruptible sleep (the one [`Parker::park_interruptible`] uses) is woken: a late
    /// unpark, after the task stopped parking, must not wake it from an unrelated
    /// uninterruptible sleep. Callable from any context, including hard interrupt context.
    pub fn unpark(&self) {
        self.token.store(1, Release);
        // SAFETY: `task` is a valid task (type invariant and `ARef`); waking a task is allowed
        // from any context.
        unsafe { bindings::wake_up_state(self.task.as_ptr(), bindings::TASK_INTERRUPTIBLE) };
    }
}
