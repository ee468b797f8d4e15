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
    current,
    error::to_result,
    ffi::c_void,
    new_spinlock,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        SpinLock, //
    },
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

    /// The task exits with the notifier registered through [`TaskNotifiers`]; the notifier has
    /// just been unregistered. Runs on the exiting task, with preemption disabled and the set's
    /// lock held: must not sleep, nor use the set.
    fn task_exit(&self) {}

    /// The task is about to block: it set a sleeping state and called `schedule()`. Called only
    /// for notifiers created with an [`OpsTable`] for which a [`SleepHook`] is installed, and
    /// only while the task runs syslet atoms (`task_struct::in_syslet`). Runs on the task, with
    /// preemption disabled and no scheduler lock held: unlike `sched_out`, it may take spinlocks
    /// and wake tasks, but it must not sleep (that would recurse into `schedule()`), change the
    /// task's state, or register or unregister notifiers of the task (the scheduler is walking
    /// its list).
    ///
    /// The task may still be woken before it is switched out: `sched_out` follows only if it
    /// really blocks.
    fn sleeping(&self) {}
}

/// The operations table of the notifiers of type `T`, at one address.
///
/// Notifiers created with [`PreemptNotifier::new_with`] use it, and a [`SleepHook`] recognizes
/// them by its address. Declare one `static` per type: the table is [`Opaque`], so a reference
/// to a constant is never promoted to a copy of its own (which would have another address).
pub struct OpsTable<T: PreemptOps> {
    ops: Opaque<bindings::preempt_ops>,
    _t: PhantomData<T>,
}

// SAFETY: The table is never written after initialization: two function pointers that are safe
// to call from any thread.
unsafe impl<T: PreemptOps> Sync for OpsTable<T> {}

impl<T: PreemptOps> OpsTable<T> {
    /// The table of `T`.
    pub const fn new() -> Self {
        Self {
            ops: Opaque::new(PreemptNotifier::<T>::OPS),
            _t: PhantomData,
        }
    }

    fn as_ptr(&'static self) -> *mut bindings::preempt_ops {
        self.ops.get()
    }
}

/// Makes the scheduler call [`PreemptOps::sleeping`] on the notifiers of one [`OpsTable`] while
/// this is installed (there is one such hook at a time).
///
/// # Invariants
///
/// `ops` is installed with `syslet_set_sleep_ops()` from initialization until drop, and names
/// `table` and the `sleeping` of `T`.
#[pin_data(PinnedDrop)]
pub struct SleepHook<T: PreemptOps + 'static> {
    #[pin]
    ops: Opaque<bindings::syslet_sleep_ops>,
    table: &'static OpsTable<T>,
}

// SAFETY: The hook is only read by the scheduler after installation; nothing mutates it.
unsafe impl<T: PreemptOps> Send for SleepHook<T> {}
// SAFETY: As above.
unsafe impl<T: PreemptOps> Sync for SleepHook<T> {}

impl<T: PreemptOps + 'static> SleepHook<T> {
    /// Installs the hook for the notifiers created with `table`; fails with `EBUSY` if another
    /// hook is installed.
    pub fn new(table: &'static OpsTable<T>) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            ops <- Opaque::try_ffi_init(|slot: *mut bindings::syslet_sleep_ops| {
                // SAFETY: `slot` is valid for writes, and pinned: it lives until `drop`, which
                // uninstalls it first.
                unsafe {
                    slot.write(bindings::syslet_sleep_ops {
                        ops: table.as_ptr(),
                        sleeping: Some(Self::sleeping_raw),
                    });
                    to_result(bindings::syslet_set_sleep_ops(slot))
                }
            }),
            table,
        })
    }

    unsafe extern "C" fn sleeping_raw(notifier: *mut bindings::preempt_notifier) {
        // SAFETY: The scheduler calls this only for notifiers whose operations are `table`'s,
        // which only `PreemptNotifier<T>::new_with` sets; they are alive while registered.
        let this = unsafe { PreemptNotifier::<T>::from_raw(notifier) };
        this.data.sleeping();
    }
}

#[pinned_drop]
impl<T: PreemptOps + 'static> PinnedDrop for SleepHook<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Installed in `new` (type invariant); this waits until no task runs the hook.
        unsafe { bindings::syslet_clear_sleep_ops(self.ops.get()) };
    }
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
/// `notifier` is initialized with the operations of `T`; it is registered on at most one task:
/// within [`PreemptNotifier::with_registered`], which holds the only mutable borrow of it and
/// unregisters it before returning, or by a [`TaskNotifiers`] set that holds a reference to it
/// (in an [`Arc`], so never mutably borrowed) until it is unlinked.
#[pin_data]
pub struct PreemptNotifier<T: PreemptOps> {
    #[pin]
    notifier: Opaque<bindings::preempt_notifier>,
    #[pin]
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

    /// Creates an unregistered notifier with the operations of `table`, whose handler data is
    /// initialized in place: a [`SleepHook`] for `table` calls its [`PreemptOps::sleeping`].
    pub fn new_with<E: From<core::convert::Infallible>>(
        table: &'static OpsTable<T>,
        data: impl PinInit<T, E>,
    ) -> impl PinInit<Self, E> {
        try_pin_init!(Self {
            // SAFETY: `slot` is valid for writes; `table` is `'static` and the C side never
            // writes through the pointer.
            // INVARIANT: Initialized with the operations of `T`.
            notifier <- Opaque::ffi_init(|slot| unsafe {
                bindings::preempt_notifier_init(slot, table.as_ptr())
            }),
            data <- data,
            _t: PhantomData,
        }? E)
    }

    /// Creates an unregistered notifier whose handler data is initialized in place.
    pub fn new_pinned<E: From<core::convert::Infallible>>(
        data: impl PinInit<T, E>,
    ) -> impl PinInit<Self, E> {
        try_pin_init!(Self {
            // SAFETY: As in `new`.
            notifier <- Opaque::ffi_init(|slot| unsafe {
                bindings::preempt_notifier_init(slot, (&Self::OPS as *const bindings::preempt_ops).cast_mut())
            }),
            data <- data,
            _t: PhantomData,
        }? E)
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

/// One notifier of a [`TaskNotifiers`] set.
struct Registered<T: PreemptOps> {
    /// The task it is registered on; `None` once that task exited.
    task: Option<ARef<Task>>,
    notifier: Arc<PreemptNotifier<T>>,
}

/// Preempt notifiers that stay registered on their tasks after the call that registered them
/// returns: until the task unregisters its own, or exits.
///
/// A notifier is linked into its task's list and walked by that task's context switches, so it
/// must stay alive until it is unlinked, and only the task itself may unlink it (its list has no
/// lock). The set keeps a reference to every notifier it registered, unlinks one on its task's
/// request ([`TaskNotifiers::unregister_current`]) or when the task exits (from the
/// `sched_process_exit` tracepoint, which runs on the exiting task), and drops the references
/// of exited tasks later, in process context ([`TaskNotifiers::reap`]).
///
/// # Invariants
///
/// Every entry of `entries` whose `task` is `Some` is linked into that task's notifier list, and
/// no other notifier of the set is linked anywhere. `live` counts the former. Once
/// `probe_registered` is set, `exit_probe` is registered on `sched_process_exit` with `self` as
/// its data until `self` is dropped.
#[pin_data(PinnedDrop)]
pub struct TaskNotifiers<T: PreemptOps> {
    #[pin]
    entries: SpinLock<KVec<Registered<T>>>,
    capacity: usize,
    live: Atomic<u32>,
    /// `exit_probe` was registered (creation can fail before it is).
    probe_registered: Atomic<bool>,
    #[pin]
    _pin: core::marker::PhantomPinned,
}

// SAFETY: The set only hands out shared references to `T`, which is `Sync`; the entries are
// protected by a lock.
unsafe impl<T: PreemptOps + Send> Send for TaskNotifiers<T> {}
// SAFETY: As above.
unsafe impl<T: PreemptOps + Send> Sync for TaskNotifiers<T> {}

impl<T: PreemptOps> TaskNotifiers<T> {
    /// Creates a set that holds at most `capacity` notifiers, live or exited.
    ///
    /// Must be called from process context. Registers a probe on the `sched_process_exit`
    /// tracepoint: the set is meant to be created when first needed, not per file opened.
    pub fn new(capacity: usize) -> impl PinInit<Self, Error> {
        let init = try_pin_init!(Self {
            entries <- new_spinlock!(KVec::with_capacity(capacity, GFP_KERNEL)?, "TaskNotifiers::entries"),
            capacity,
            live: Atomic::new(0),
            probe_registered: Atomic::new(false),
            _pin: core::marker::PhantomPinned,
        }? Error);
        init.pin_chain(|this| {
            let data = core::ptr::from_ref::<Self>(&this)
                .cast_mut()
                .cast::<c_void>();
            // SAFETY: `this` is pinned and initialized; the probe is unregistered in `drop`
            // before the set goes away, and it only reads the set through `data`.
            to_result(unsafe {
                bindings::register_trace_sched_process_exit(Some(Self::exit_probe), data)
            })?;
            this.probe_registered.store(true, Relaxed);
            Ok(())
        })
    }

    /// Registers `notifier` on the current task until it calls
    /// [`TaskNotifiers::unregister_current`] or exits.
    ///
    /// Fails with `EBUSY` if the current task already has a notifier in the set or `notifier`
    /// is registered already, and with `ENOSPC` if the set is full. Must be called from process
    /// context.
    pub fn register_current(&self, notifier: Arc<PreemptNotifier<T>>) -> Result {
        self.reap();
        let task = current!();
        let mut entries = self.entries.lock();
        if entries.iter().any(|e| {
            Arc::ptr_eq(&e.notifier, &notifier)
                || e.task.as_ref().is_some_and(|t| t.as_ptr() == task.as_ptr())
        }) {
            return Err(EBUSY);
        }
        if entries.len() >= self.capacity {
            return Err(ENOSPC);
        }
        let ptr = notifier.notifier.get();
        // Within the capacity reserved at creation: no allocation.
        entries.push(
            Registered {
                task: Some(ARef::from(&**task)),
                notifier,
            },
            GFP_ATOMIC,
        )?;
        self.live.fetch_add(1, Relaxed);
        // SAFETY: The list is walked by this task's own context switches: link it with
        // preemption off, as `with_registered` does.
        unsafe { bindings::preempt_disable() };
        // SAFETY: `ptr` is the initialized, pinned notifier of an `Arc` the set now holds until
        // the notifier is unlinked (type invariant), and it was linked nowhere (checked above).
        unsafe { bindings::preempt_notifier_register(ptr) };
        // SAFETY: Balances the `preempt_disable` above.
        unsafe { bindings::preempt_enable() };
        Ok(())
    }

    /// Unregisters the current task's notifier and returns it, if it has one in the set.
    ///
    /// Must be called from process context.
    pub fn unregister_current(&self) -> Option<Arc<PreemptNotifier<T>>> {
        let task = current!();
        let removed = {
            let mut entries = self.entries.lock();
            let index = entries
                .iter()
                .position(|e| e.task.as_ref().is_some_and(|t| t.as_ptr() == task.as_ptr()))?;
            let removed = entries.remove(index).ok()?;
            // SAFETY: As in `register_current`.
            unsafe { bindings::preempt_disable() };
            // SAFETY: Linked on the current task (type invariant), which unlinks it itself.
            unsafe { bindings::preempt_notifier_unregister(removed.notifier.notifier.get()) };
            // SAFETY: Balances the `preempt_disable` above.
            unsafe { bindings::preempt_enable() };
            self.live.fetch_sub(1, Relaxed);
            removed
        };
        drop(removed.task);
        Some(removed.notifier)
    }

    /// Returns the current task's notifier, if it has one in the set.
    pub fn current(&self) -> Option<Arc<PreemptNotifier<T>>> {
        if self.live.load(Relaxed) == 0 {
            return None;
        }
        let task = current!();
        let entries = self.entries.lock();
        entries
            .iter()
            .find(|e| e.task.as_ref().is_some_and(|t| t.as_ptr() == task.as_ptr()))
            .map(|e| e.notifier.clone())
    }

    /// Returns the first live notifier for which `f` returns `true`.
    ///
    /// `f` runs under a spinlock: it must not sleep.
    pub fn find(&self, mut f: impl FnMut(&T, &Task) -> bool) -> Option<Arc<PreemptNotifier<T>>> {
        if self.live.load(Relaxed) == 0 {
            return None;
        }
        let entries = self.entries.lock();
        entries
            .iter()
            .find(|e| e.task.as_ref().is_some_and(|t| f(&e.notifier.data, t)))
            .map(|e| e.notifier.clone())
    }

    /// Returns whether `f` returns `true` for a live notifier. `f` runs under a spinlock: it
    /// must not sleep. Takes no reference: usable where the last one must not go.
    pub fn any(&self, mut f: impl FnMut(&T, &Task) -> bool) -> bool {
        if self.live.load(Relaxed) == 0 {
            return false;
        }
        let entries = self.entries.lock();
        entries
            .iter()
            .any(|e| e.task.as_ref().is_some_and(|t| f(&e.notifier.data, t)))
    }

    /// Calls `f` on every live notifier. `f` runs under a spinlock: it must not sleep.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        let entries = self.entries.lock();
        for e in entries.iter().filter(|e| e.task.is_some()) {
            f(&e.notifier.data);
        }
    }

    /// Drops the set's references to the notifiers of exited tasks.
    ///
    /// Must be called from process context: the last reference to a notifier may go here.
    pub fn reap(&self) {
        loop {
            let dead = {
                let mut entries = self.entries.lock();
                let Some(index) = entries.iter().position(|e| e.task.is_none()) else {
                    return;
                };
                entries.remove(index).ok()
            };
            // Outside the lock.
            drop(dead);
        }
    }

    /// The `sched_process_exit` probe: runs on every exiting task, with preemption disabled.
    unsafe extern "C" fn exit_probe(
        data: *mut c_void,
        _task: *mut bindings::task_struct,
        _group_dead: bool,
    ) {
        // SAFETY: `data` is the set the probe was registered with, alive until the probe is
        // unregistered (type invariant).
        let this = unsafe { &*data.cast::<Self>() };
        if this.live.load(Relaxed) == 0 {
            return;
        }
        let task = current!();
        let mut entries = this.entries.lock();
        let Some(entry) = entries
            .iter_mut()
            .find(|e| e.task.as_ref().is_some_and(|t| t.as_ptr() == task.as_ptr()))
        else {
            return;
        };
        // SAFETY: Linked on the current task (type invariant); preemption is disabled, so no
        // context switch walks the list meanwhile.
        unsafe { bindings::preempt_notifier_unregister(entry.notifier.notifier.get()) };
        this.live.fetch_sub(1, Relaxed);
        // The task's reference goes, not the last: the task is running.
        // INVARIANT: Unlinked above.
        entry.task = None;
        // Under the lock, with the entry's reference: `reap` cannot take the last one from under
        // it, and the notifier is never dropped here.
        entry.notifier.data.task_exit();
    }
}

#[pinned_drop]
impl<T: PreemptOps> PinnedDrop for TaskNotifiers<T> {
    fn drop(self: Pin<&mut Self>) {
        let data = core::ptr::from_ref::<Self>(&self)
            .cast_mut()
            .cast::<c_void>();
        if self.probe_registered.load(Relaxed) {
            // SAFETY: Registered with the same function and data in `new`.
            unsafe { bindings::unregister_trace_sched_process_exit(Some(Self::exit_probe), data) };
            // SAFETY: Always valid in process context: waits until no probe call is running.
            unsafe { bindings::tracepoint_synchronize_unregister() };
        }
        // A notifier still linked to a live task must never be freed: keep it forever. Users
        // make sure every task unregisters or exits first.
        // Dropped outside the lock: the last reference to a notifier may go here.
        let mut entries = core::mem::replace(&mut *self.entries.lock(), KVec::new());
        while let Some(entry) = entries.pop() {
            if entry.task.is_some() {
                crate::pr_warn!("TaskNotifiers dropped with a task still registered\n");
                core::mem::forget(entry);
            }
        }
    }
}
