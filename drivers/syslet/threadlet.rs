// SPDX-License-Identifier: GPL-2.0

//! Threadlets: user code run inline by a registered thread, handed over to a spare if it blocks.
//!
//! A thread registers (`SYSLET_IOC_THREADLET_REGISTER`) and gets a slot in the shared region and
//! a preempt notifier that stays on the thread until it unregisters or exits
//! ([`TaskNotifiers`]). User space enters and leaves a threadlet with plain stores to the slot's
//! `state` word, no system call; the notifier reads that word at every context switch:
//!
//! ```text
//!          thread sleeps (sched_out), a spare parked         spare claims (park ioctl)
//!   cookie ------------------------------------> cookie|BLOCKED ------------------> cookie|HANDED
//!     ^                                              |
//!     +----------------------------------------------+
//!          thread runs again first (sched_in)
//! ```
//!
//! User space leaves with an exchange to 0: it finds the cookie (ran inline) or
//! `cookie|HANDED` (a spare runs the caller's program now: the thread posts the threadlet's
//! result with `SYSLET_IOC_THREADLET_DONE`).
//!
//! # Invariants
//!
//! The word lives in memory user space writes at will, so the kernel's own promises rest on
//! kernel state only: a spare hands out a cookie only after a successful compare-and-exchange
//! from `cookie|BLOCKED` to `cookie|HANDED` made while holding [`Threadlet::post`], which then
//! records the one pending result and the completion slot reserved for it. At most one result
//! is pending per registration, and every pending result is posted exactly once: by
//! `SYSLET_IOC_THREADLET_DONE`, or as `-EOWNERDEAD` when the thread exits.
//!
//! A registration holds a reference to the file, so the context outlives every notifier it put
//! on a thread; the reference goes when the thread unregisters or exits.

use kernel::{
    current,
    fs::File,
    irq_work::{
        IrqWork,
        IrqWorkHandler, //
    },
    mm::Mm,
    new_spinlock,
    preempt_notifier::{
        PreemptNotifier,
        PreemptOps,
        TaskNotifiers, //
    },
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
    syscall::{
        self,
        AtomMark, //
    },
    task::Task,
};

use crate::{
    defs::{
        Cqe,
        CQE_F_ASYNC,
        CQE_F_THREADLET,
        MAX_THREADLET_SLOTS,
        RING_NEED_SPARE,
        THREADLET_BLOCKED,
        THREADLET_HANDED,
        THREADLET_STATE_MASK, //
    },
    ring::Rings,
    spares::SpareSignal,
};

/// The registered threads of a context.
pub(crate) type Threadlets = TaskNotifiers<Threadlet>;

/// Creates the (empty) set of registered threads of a context.
pub(crate) fn new_set() -> impl PinInit<Threadlets, Error> {
    TaskNotifiers::new(MAX_THREADLET_SLOTS as usize)
}

/// Slot indices in use, one bit each.
pub(crate) struct SlotMap {
    used: Atomic<u64>,
}

impl SlotMap {
    pub(crate) fn new() -> Self {
        Self {
            used: Atomic::new(0),
        }
    }

    /// Takes the lowest free index, or `None` if all are in use.
    fn alloc(&self) -> Option<u32> {
        let mut used = self.used.load(Relaxed);
        loop {
            let index = (!used).trailing_zeros();
            if index >= MAX_THREADLET_SLOTS {
                return None;
            }
            match self.used.cmpxchg(used, used | (1 << index), Relaxed) {
                Ok(_) => return Some(index),
                Err(now) => used = now,
            }
        }
    }

    fn free(&self, index: u32) {
        let mut used = self.used.load(Relaxed);
        while let Err(now) = self.used.cmpxchg(used, used & !(1 << index), Relaxed) {
            used = now;
        }
    }
}

/// The result of a handed-off threadlet, not posted yet.
struct Post {
    /// A spare took the continuation over; a completion slot is reserved.
    pending: bool,
    /// The threadlet's `user_data`, read when the spare took over.
    user_data: u64,
    /// The thread unregistered or exited: no spare may take anything over any more.
    gone: bool,
}

/// Wakes one parked spare of the context, from hard interrupt context.
pub(crate) struct WakeSpare {
    signal: Arc<SpareSignal>,
}

impl IrqWorkHandler for WakeSpare {
    fn run(&self) {
        self.signal.post_block();
    }
}

/// One registered thread.
#[pin_data(PinnedDrop)]
pub(crate) struct Threadlet {
    /// Its slot in the shared region.
    index: u32,
    /// The address space it registered in, kept allocated so that its address names it: after
    /// an execve nothing is watched.
    mm: ARef<Mm>,
    rings: Arc<Rings>,
    slots: Arc<SlotMap>,
    signal: Arc<SpareSignal>,
    /// Queued by the notifier when the thread blocks inside a threadlet.
    #[pin]
    wake: IrqWork<WakeSpare>,
    /// The pending result. A leaf lock, except that [`Rings`]' lock nests inside it.
    #[pin]
    post: SpinLock<Post>,
    /// Keeps the context alive while the thread is registered; dropped when it leaves.
    #[pin]
    file: SpinLock<Option<ARef<File>>>,
}

impl Threadlet {
    /// Returns whether the thread is inside a threadlet (its slot's state is not 0).
    pub(crate) fn is_inside(&self) -> bool {
        self.rings.threadlet_state(self.index) != 0
    }

    /// Returns whether the thread blocked inside a threadlet and waits for a spare.
    pub(crate) fn is_blocked(&self) -> bool {
        self.rings.threadlet_state(self.index) & THREADLET_STATE_MASK == THREADLET_BLOCKED
    }

    /// Returns this registration's bit in a mask of slot indices.
    pub(crate) fn index_bit(&self) -> u64 {
        1 << self.index
    }

    /// Takes the blocked threadlet's continuation over for the current task (a spare).
    ///
    /// `write_cookie` stores the cookie in the spare's user memory first, so that a fault
    /// leaves the continuation with the thread. Returns the cookie, `Ok(None)` if there was
    /// nothing to take (the thread ran again first, a result is still pending, or the
    /// completion ring has no room), or the fault.
    pub(crate) fn claim(
        &self,
        write_cookie: &mut impl FnMut(u64) -> Result,
    ) -> Result<Option<u64>> {
        let state = self.rings.threadlet_state(self.index);
        if state & THREADLET_STATE_MASK != THREADLET_BLOCKED {
            return Ok(None);
        }
        let cookie = state & !THREADLET_STATE_MASK;
        write_cookie(cookie)?;
        let mut post = self.post.lock();
        if post.gone || post.pending || !self.rings.reserve_completion() {
            return Ok(None);
        }
        if !self
            .rings
            .threadlet_cmpxchg(self.index, state, cookie | THREADLET_HANDED)
        {
            self.rings.unreserve_completion();
            return Ok(None);
        }
        // The thread is asleep and wrote `user_data` before `state`: this is the tag of the
        // threadlet whose continuation was just taken.
        post.pending = true;
        post.user_data = self.rings.threadlet_user_data(self.index);
        Ok(Some(cookie))
    }

    /// `SYSLET_IOC_THREADLET_DONE`: posts the pending result as `res`.
    pub(crate) fn done(&self, res: i64) -> Result {
        let mut post = self.post.lock();
        if !post.pending {
            return Err(EINVAL);
        }
        post.pending = false;
        // Into the slot reserved at the handoff.
        self.rings.complete(&[Cqe {
            user_data: post.user_data,
            res,
            flags: CQE_F_ASYNC | CQE_F_THREADLET,
            ..Default::default()
        }]);
        Ok(())
    }

    /// The thread leaves, unless a result is pending and `force` is not set: no spare takes
    /// anything over from now on, and the slot is cleared. Returns the reference to the file,
    /// or `None` if it did not leave.
    fn leave(&self, force: bool) -> Option<Option<ARef<File>>> {
        {
            let mut post = self.post.lock();
            if post.pending && !force {
                return None;
            }
            post.gone = true;
        }
        self.rings.clear_threadlet_slot(self.index);
        Some(self.file.lock().take())
    }
}

#[pinned_drop]
impl PinnedDrop for Threadlet {
    fn drop(self: Pin<&mut Self>) {
        // Every path that ends a registration posts a pending result first (`task_exit`) or
        // refuses to end it (`unregister`); a reservation left would fill the ring for good.
        if self.post.lock().pending {
            self.rings.unreserve_completion();
        }
        self.slots.free(self.index);
    }
}

impl PreemptOps for Threadlet {
    fn sched_in(&self, _cpu: i32) {
        // Running again before a spare took over: the continuation stays here.
        let state = self.rings.threadlet_state(self.index);
        if state & THREADLET_STATE_MASK == THREADLET_BLOCKED {
            self.rings
                .threadlet_cmpxchg(self.index, state, state & !THREADLET_STATE_MASK);
        }
    }

    fn sched_out(&self, _next: &Task) {
        // Preemption is not a block; an exiting thread or one that execed has no program to
        // hand over. Inside an exec or a park (of any context) the thread's continuation is
        // that ioctl's business: two hooks would let two spares resume two programs.
        if current!().is_runnable()
            || syscall::current_is_exiting()
            || syscall::current_mm_id() != self.mm.as_raw() as usize
            || AtomMark::is_set()
        {
            return;
        }
        let state = self.rings.threadlet_state(self.index);
        if state == 0 || state & THREADLET_STATE_MASK != 0 {
            return;
        }
        if !self.signal.any_parked() {
            self.rings.threadlet_count_sync_block(self.index);
            self.rings.set_flag(RING_NEED_SPARE, true);
            return;
        }
        if self
            .rings
            .threadlet_cmpxchg(self.index, state, state | THREADLET_BLOCKED)
        {
            // The runqueue lock is held: the wakeup happens in the irq work.
            self.wake.queue();
        }
    }

    fn task_exit(&self) {
        let post = {
            let mut post = self.post.lock();
            post.gone = true;
            core::mem::replace(&mut post.pending, false).then_some(post.user_data)
        };
        if let Some(user_data) = post {
            self.rings.complete(&[Cqe {
                user_data,
                res: EOWNERDEAD.to_errno().into(),
                flags: CQE_F_ASYNC | CQE_F_THREADLET,
                ..Default::default()
            }]);
        }
        // Not the last reference to the file: released later, by task work or a workqueue.
        drop(self.leave(true));
    }
}

/// `SYSLET_IOC_THREADLET_REGISTER` by the current thread; returns its slot index.
pub(crate) fn register(
    set: &Threadlets,
    slots: &Arc<SlotMap>,
    rings: &Arc<Rings>,
    signal: &Arc<SpareSignal>,
    file: &File,
) -> Result<u32> {
    // Slots of threads that exited come back first.
    set.reap();
    if set.current().is_some() {
        return Err(EBUSY);
    }
    let mm = ARef::from(&**current!().mm().ok_or(EINVAL)?);
    let index = slots.alloc().ok_or(ENOSPC)?;
    rings.clear_threadlet_slot(index);
    let threadlet = try_pin_init!(Threadlet {
        index,
        mm,
        rings: rings.clone(),
        slots: slots.clone(),
        signal: signal.clone(),
        // Waking a wait queue takes its `spinlock_t`.
        wake <- IrqWork::new_threaded_on_rt(WakeSpare {
            signal: signal.clone(),
        }),
        post <- new_spinlock!(
            Post {
                pending: false,
                user_data: 0,
                gone: false,
            },
            "Threadlet::post"
        ),
        file <- new_spinlock!(Some(ARef::from(file)), "Threadlet::file"),
    });
    let notifier = match Arc::pin_init(PreemptNotifier::new_pinned(threadlet), GFP_KERNEL_ACCOUNT) {
        Ok(notifier) => notifier,
        Err(err) => {
            // Never built: its drop, which frees the index, does not run.
            slots.free(index);
            return Err(err);
        }
    };
    // On failure the notifier goes, and its drop frees the index.
    set.register_current(notifier)?;
    Ok(index)
}

/// `SYSLET_IOC_THREADLET_UNREGISTER` by the current thread.
///
/// Fails with `EBUSY` inside a threadlet or with a result not posted, unless `force` (the
/// registration ioctl undoing itself).
pub(crate) fn unregister(set: &Threadlets, force: bool) -> Result {
    let current = set.current().ok_or(ENOENT)?;
    if !force && current.data().is_inside() {
        return Err(EBUSY);
    }
    // Marks it gone under its lock: no spare takes anything over after this.
    let file = current.data().leave(force).ok_or(EBUSY)?;
    let notifier = set.unregister_current();
    drop((notifier, current, file));
    Ok(())
}
