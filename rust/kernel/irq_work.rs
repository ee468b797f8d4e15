// SPDX-License-Identifier: GPL-2.0

//! Work deferred to hard interrupt context.
//!
//! An [`IrqWork`] lets code that runs where almost nothing is allowed (a scheduler hook with the
//! runqueue lock held, an NMI handler) ask for a callback in hard interrupt context shortly
//! after, typically to wake a task. The work is "hard": it runs in hard interrupt context on
//! PREEMPT_RT too.
//!
//! C header: [`include/linux/irq_work.h`](srctree/include/linux/irq_work.h).

use crate::{
    bindings,
    prelude::*,
    types::Opaque, //
};
use core::marker::PhantomData;

/// The callback of an [`IrqWork`].
pub trait IrqWorkHandler: Sync {
    /// Runs in hard interrupt context: must not sleep. A work made with [`IrqWork::new`] must
    /// not take `spinlock_t` locks either (they sleep on `PREEMPT_RT`); one made with
    /// [`IrqWork::new_threaded_on_rt`] may.
    fn run(&self);
}

/// A hard `struct irq_work` embedded next to its handler data.
///
/// # Examples
///
/// Waking a task from a context that may not (here simply the current one):
///
/// ```
/// use kernel::{
///     irq_work::{
///         IrqWork,
///         IrqWorkHandler, //
///     },
///     sync::Parker,
/// };
///
/// struct Wake(Parker);
///
/// impl IrqWorkHandler for Wake {
///     fn run(&self) {
///         self.0.unpark();
///     }
/// }
///
/// pin_init::stack_pin_init!(let work = IrqWork::new(Wake(Parker::new())));
/// work.queue();
/// work.sync();
/// // The unpark is not lost even though it came first.
/// assert!(work.data().0.park_interruptible().is_ok());
/// ```
///
/// # Invariants
///
/// `work` is initialized as an irq work (hard, unless made by [`IrqWork::new_threaded_on_rt`])
/// whose function is [`IrqWork::run_raw`] for `T`, and it is idle (neither pending nor running)
/// when `self` is dropped.
#[pin_data(PinnedDrop)]
pub struct IrqWork<T: IrqWorkHandler> {
    #[pin]
    work: Opaque<bindings::irq_work>,
    data: T,
    _t: PhantomData<T>,
}

// SAFETY: The work may be queued and synced from any thread; `T: Sync` makes the handler data
// usable from the interrupt that runs it.
unsafe impl<T: IrqWorkHandler + Send> Send for IrqWork<T> {}
// SAFETY: As above: all `&self` methods may run concurrently.
unsafe impl<T: IrqWorkHandler> Sync for IrqWork<T> {}

impl<T: IrqWorkHandler> IrqWork<T> {
    /// Creates an idle irq work with handler data `data`.
    pub fn new(data: T) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; the helper initializes all of it.
            // INVARIANT: Initialized as a hard work with `run_raw` as its function.
            work <- Opaque::ffi_init(|slot| unsafe {
                bindings::init_hard_irq_work(slot, Some(Self::run_raw))
            }),
            data,
            _t: PhantomData,
        })
    }

    /// Creates an idle irq work with handler data `data` that `PREEMPT_RT` runs in a per-CPU
    /// kernel thread, so that its handler may take `spinlock_t` locks (a wait queue's, to wake
    /// one waiter). Elsewhere it runs in hard interrupt context like any other.
    pub fn new_threaded_on_rt(data: T) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; the helper initializes all of it.
            // INVARIANT: Initialized with `run_raw` as its function.
            work <- Opaque::ffi_init(|slot| unsafe {
                bindings::init_irq_work(slot, Some(Self::run_raw))
            }),
            data,
            _t: PhantomData,
        })
    }

    /// Returns the handler data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// Queues the work on the current CPU; returns `false` if it was already pending.
    ///
    /// Callable from any context, including NMI and scheduler hooks with the runqueue lock held.
    pub fn queue(&self) -> bool {
        // SAFETY: `work` is initialized (type invariant) and pinned: an `IrqWork` only exists
        // initialized in place, and `Opaque` makes it `!Unpin`. `drop` waits for the work to be
        // idle before the memory goes away.
        unsafe { bindings::irq_work_queue(self.work.get()) }
    }

    /// Waits until the work is neither pending nor running.
    ///
    /// Must be called where sleeping is allowed: with interrupts enabled (it may wait for the
    /// interrupt that runs the work on this CPU) and not from the work itself.
    pub fn sync(&self) {
        // SAFETY: `work` is initialized by the type invariant.
        unsafe { bindings::irq_work_sync(self.work.get()) }
    }

    /// # Safety
    ///
    /// `work` must be the `work` field of a live `IrqWork<T>`.
    unsafe extern "C" fn run_raw(work: *mut bindings::irq_work) {
        let work = work.cast::<Opaque<bindings::irq_work>>();
        // SAFETY: By the safety requirement `work` is the `work` field of an `IrqWork<T>`, which
        // stays alive until the work is idle (type invariant).
        let this = unsafe { &*crate::container_of!(work, Self, work) };
        this.data.run();
    }
}

#[pinned_drop]
impl<T: IrqWorkHandler> PinnedDrop for IrqWork<T> {
    /// Waits for the work to be idle, so must run where sleeping is allowed: an `IrqWork` (and
    /// whatever embeds it) may only be dropped with interrupts enabled and no spinlock held.
    fn drop(self: Pin<&mut Self>) {
        crate::task::might_sleep();
        // The handler may still run on another CPU with a `&T` to `data` while this borrow
        // exists. That does not assert exclusive access: `IrqWork` is `!Unpin` (`Opaque`), and a
        // mutable reference to a `!Unpin` value does not claim uniqueness of what it points to
        // (the same rule lets a pinned future be referenced by its waker). Nothing is written
        // through this borrow until `sync` returns.
        // INVARIANT: The work is idle from here on: nothing can queue it anymore.
        self.sync();
    }
}
