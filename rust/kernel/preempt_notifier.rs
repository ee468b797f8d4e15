// SPDX-License-Identifier: GPL-2.0

//! Preempt notifiers: callbacks when the current task is switched out and back in.
//!
//! A notifier registered on a task sees every context switch of that task: `sched_out` when it
//! stops running (it blocked, or was preempted) and `sched_in` when it runs again. KVM uses them
//! to swap guest state; syslet uses them to notice that a system call blocks.
//!
//! C header: [`include/linux/preempt.h`](srctree/include/linux/preempt.h).

use crate::{
    bindings,
    prelude::*,
    task::Task,
    types::Opaque, //
};
use core::marker::PhantomData;

/// Preempt notifiers are enabled for as long as this lives.
///
/// Notifiers sit behind a static key, off until someone needs them: flipping it patches kernel
/// text on every CPU, far too costly (and too disruptive) to do per registration. A user enables
/// notifiers once, typically for the lifetime of its module; without that, registered notifiers
/// are never called.
pub struct Enabled(());

impl Enabled {
    /// Enables preempt notifiers until the returned value is dropped.
    ///
    /// Must not be called from atomic context.
    pub fn new() -> Self {
        // SAFETY: Always valid in process context; balanced in `drop`.
        unsafe { bindings::preempt_notifier_inc() };
        Self(())
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        // SAFETY: Balances the `preempt_notifier_inc` in `new`.
        unsafe { bindings::preempt_notifier_dec() };
    }
}

/// The callbacks of a [`PreemptNotifier`].
pub trait PreemptOps: Sync {
    /// The task is about to run again, on `cpu`. Runs with interrupts enabled and preemption
    /// disabled: must not sleep.
    fn sched_in(&self, cpu: i32);

    /// The task is being switched out in favour of `next`. Runs with the runqueue lock held and
    /// interrupts disabled: must not sleep, take locks a wakeup takes, or wake tasks (defer that,
    /// for example with an [`IrqWork`](crate::irq_work::IrqWork)).
    ///
    /// Whether the task blocked or was merely preempted: [`Task::is_runnable`] on the current
    /// task is `false` if it blocked.
    fn sched_out(&self, next: &Task);
}

/// A `struct preempt_notifier` embedded next to its handler data.
///
/// # Examples
///
/// Counting how often the current task blocks while it runs a closure:
///
/// ```
/// use kernel::{
///     current,
///     preempt_notifier::{
///         PreemptNotifier,
///         PreemptOps, //
///     },
///     sync::atomic::{
///         Atomic,
///         Relaxed, //
///     },
///     task::Task,
/// };
///
/// struct Blocks(Atomic<u32>);
///
/// impl PreemptOps for Blocks {
///     fn sched_in(&self, _cpu: i32) {}
///
///     fn sched_out(&self, _next: &Task) {
///         if !current!().is_runnable() {
///             self.0.fetch_add(1, Relaxed);
///         }
///     }
/// }
///
/// let enabled = kernel::preempt_notifier::Enabled::new();
/// pin_init::stack_pin_init!(let blocks = PreemptNotifier::new(Blocks(Atomic::new(0))));
/// blocks.as_mut().with_registered(|| {
///     kernel::time::delay::fsleep(kernel::time::Delta::from_millis(1))
/// });
/// assert!(blocks.data().0.load(Relaxed) >= 1);
/// ```
///
/// # Invariants
///
/// `notifier` is initialized with the operations of `T`; it is registered on at most one task,
/// only within [`PreemptNotifier::with_registered`], which holds the only mutable borrow of it and
/// unregisters it before returning.
#[pin_data]
pub struct PreemptNotifier<T: PreemptOps> {
    #[pin]
    notifier: Opaque<bindings::preempt_notifier>,
    data: T,
    _t: PhantomData<T>,
}

// SAFETY: The notifier is only linked into a task's list while `with_registered` runs on that
// task; the handler data is `Sync`.
unsafe impl<T: PreemptOps + Send> Send for PreemptNotifier<T> {}
// SAFETY: As above.
unsafe impl<T: PreemptOps> Sync for PreemptNotifier<T> {}

impl<T: PreemptOps> PreemptNotifier<T> {
    const OPS: bindings::preempt_ops = bindings::preempt_ops {
        sched_in: Some(Self::sched_in_raw),
        sched_out: Some(Self::sched_out_raw),
    };

    /// Creates an unregistered notifier with handler data `data`.
    pub fn new(data: T) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes. `OPS` is a constant promoted to `'static`, and
            // the C side never writes through the pointer.
            // INVARIANT: Initialized with the operations of `T`.
            notifier <- Opaque::ffi_init(|slot| unsafe {
                bindings::preempt_notifier_init(slot, (&Self::OPS as *const bindings::preempt_ops).cast_mut())
            }),
            data,
            _t: PhantomData,
        })
    }

    /// Returns the handler data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// Runs `f` with the notifier registered on the current task.
    ///
    /// Every context switch of the current task while `f` runs calls the notifier, provided
    /// notifiers are enabled (an [`Enabled`] is alive). Must be called from process context.
    ///
    /// Takes the notifier by `Pin<&mut Self>`: a notifier is linked into one task's list at a
    /// time, and linking it twice (from `f`, or from another thread) would corrupt that list
    /// under the runqueue lock. The exclusive borrow makes both impossible.
    pub fn with_registered<R>(self: Pin<&mut Self>, f: impl FnOnce() -> R) -> R {
        // The list is walked by this task's own context switches: link it with preemption off.
        // SAFETY: Balanced right below.
        unsafe { bindings::preempt_disable() };
        // SAFETY: `notifier` is initialized and pinned (a `PreemptNotifier` only exists
        // initialized in place, and `Opaque` makes it `!Unpin`), and it is unregistered below
        // before this function returns, so the task never holds a dangling notifier.
        unsafe { bindings::preempt_notifier_register(self.notifier.get()) };
        // SAFETY: Balances the `preempt_disable` above.
        unsafe { bindings::preempt_enable() };

        let ret = f();

        // SAFETY: As for registering.
        unsafe { bindings::preempt_disable() };
        // SAFETY: Registered above on this same task, which is still current.
        unsafe { bindings::preempt_notifier_unregister(self.notifier.get()) };
        // SAFETY: Balances the `preempt_disable` above.
        unsafe { bindings::preempt_enable() };
        ret
    }

    /// # Safety
    ///
    /// `notifier` must be the `notifier` field of a live `PreemptNotifier<T>`.
    unsafe fn from_raw<'a>(notifier: *mut bindings::preempt_notifier) -> &'a Self {
        let notifier = notifier.cast::<Opaque<bindings::preempt_notifier>>();
        // SAFETY: By the safety requirement; registered notifiers are alive (type invariant).
        unsafe { &*crate::container_of!(notifier, Self, notifier) }
    }

    unsafe extern "C" fn sched_in_raw(notifier: *mut bindings::preempt_notifier, cpu: i32) {
        // SAFETY: Only registered notifiers are called, and they are `PreemptNotifier<T>`s.
        let this = unsafe { Self::from_raw(notifier) };
        this.data.sched_in(cpu);
    }

    unsafe extern "C" fn sched_out_raw(
        notifier: *mut bindings::preempt_notifier,
        next: *mut bindings::task_struct,
    ) {
        // SAFETY: Only registered notifiers are called, and they are `PreemptNotifier<T>`s.
        let this = unsafe { Self::from_raw(notifier) };
        // SAFETY: `next` is the task being switched to, alive for the duration of the call.
        let next = unsafe { &*next.cast::<Task>() };
        this.data.sched_out(next);
    }
}
