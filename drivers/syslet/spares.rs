// SPDX-License-Identifier: GPL-2.0

//! Spares: threads of the owning process parked in `SYSLET_IOC_PARK`, ready to take over a
//! blocked submitter's continuation.
//!
//! # Invariants
//!
//! Every parked thread is in exactly one place: its [`Spare`] has one [`ListArc`], which is
//! either in [`Spares`]' list (state `PARKED`) or held by the one exec it is lent to (state
//! `LENT`). A spare that leaves while lent (a signal, the context closing, a fault) is marked
//! `LEFT` and its exec drops it; one that claims a continuation is marked `CLAIMED`. Every state
//! change happens under [`Spares::inner`].
//!
//! Lock order: [`Spares::inner`], then `Continuation::lent`. The scheduler hook takes neither: it
//! only wakes the spare lent for the atom through that spare's [`Parker`].

use kernel::{
    current,
    ffi::c_long,
    list::{
        List,
        ListArc,
        ListLinks, //
    },
    new_condvar, new_spinlock,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        CondVar,
        Parker,
        SpinLock,
        UniqueArc, //
    },
    syscall::same_confinement,
    task::{
        Task,
        MAX_SCHEDULE_TIMEOUT, //
    },
    time::{
        msecs_to_jiffies,
        Instant,
        Monotonic, //
    },
};

use crate::{
    defs::MAX_THREADLET_SLOTS,
    handoff::Continuation,
    stats::Stats,
    threadlet::{
        Threadlet,
        Threadlets, //
    },
};

/// Parked, in the list.
const PARKED: u32 = 0;
/// Lent to an exec, which holds its `ListArc`.
const LENT: u32 = 1;
/// Left while lent; its exec drops it.
const LEFT: u32 = 2;
/// Claimed a continuation and returned to user space with it.
const CLAIMED: u32 = 3;

/// A thread parked in `SYSLET_IOC_PARK`.
#[pin_data]
pub(crate) struct Spare {
    #[pin]
    links: ListLinks,
    parker: Parker,
    /// `PARKED`, `LENT`, `LEFT` or `CLAIMED`; changed under [`Spares::inner`] only.
    state: Atomic<u32>,
    /// The continuation of the exec this spare is lent to, while `LENT`.
    #[pin]
    lent_to: SpinLock<Option<Arc<Continuation>>>,
}

kernel::list::impl_list_arc_safe! {
    impl ListArcSafe<0> for Spare { untracked; }
}
kernel::list::impl_list_item! {
    impl ListItem<0> for Spare { using ListLinks { self.links }; }
}

impl Spare {
    /// Wakes the spare's thread, or makes its next park return at once. Any context.
    pub(crate) fn unpark(&self) {
        self.parker.unpark();
    }

    /// Returns whether the spare is still lent (it has not left or claimed).
    pub(crate) fn is_lent(&self) -> bool {
        self.state.load(Relaxed) == LENT
    }
}

/// What the scheduler hook of a threadlet needs of the spares: whether any is parked, and a way
/// to wake one, from any context and without [`Spares::inner`].
#[pin_data]
pub(crate) struct SpareSignal {
    /// Every parking spare waits here too, as an exclusive waiter.
    #[pin]
    queue: CondVar,
    /// Spares in the list; read without the lock.
    parked: Atomic<u32>,
    /// Threadlet blocks not yet looked at by a spare: each lets one spare look once. Kernel
    /// state, so that what user space writes to the slots cannot keep a spare looking.
    blocks: Atomic<u32>,
}

impl SpareSignal {
    /// Returns whether a spare is parked (not lent to an exec).
    pub(crate) fn any_parked(&self) -> bool {
        self.parked.load(Relaxed) != 0
    }

    /// Records a threadlet block and wakes one parking spare that is asleep to look at it. Any
    /// context.
    pub(crate) fn post_block(&self) {
        // Bounded: a spare that parks later looks once per block recorded, at most this often.
        if self.blocks.load(Relaxed) < MAX_THREADLET_SLOTS {
            self.blocks.fetch_add(1, Relaxed);
        }
        self.queue.notify_one();
    }

    /// Takes one recorded block, if there is one.
    fn take_block(&self) -> bool {
        let mut blocks = self.blocks.load(Relaxed);
        while blocks != 0 {
            match self.blocks.cmpxchg(blocks, blocks - 1, Relaxed) {
                Ok(_) => return true,
                Err(now) => blocks = now,
            }
        }
        false
    }
}

/// The parked spares of a context.
struct SparesInner {
    /// Parked spares not lent to any exec, most recently parked first.
    parked: List<Spare>,
    /// The owner closed a descriptor or is exiting: spares leave, none may park.
    closing: bool,
}

/// Why a spare stopped parking without a continuation.
pub(crate) enum Leave {
    /// A signal is pending.
    Signal,
    /// The context is closing.
    Shutdown,
    /// Writing the cookie to user space faulted; the continuation stayed with its submitter.
    Fault,
    /// No memory to park.
    NoMemory,
    /// The time limit passed.
    TimedOut,
}

/// The spares of one context.
#[pin_data]
pub(crate) struct Spares {
    #[pin]
    inner: SpinLock<SparesInner>,
    /// Shared with the threadlet hooks; its count is of the spares in the list.
    pub(crate) signal: Arc<SpareSignal>,
}

impl Spares {
    pub(crate) fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            inner <- new_spinlock!(
                SparesInner {
                    parked: List::new(),
                    closing: false,
                },
                "Spares::inner"
            ),
            signal: Arc::pin_init(
                pin_init!(SpareSignal {
                    queue <- new_condvar!("SpareSignal::queue"),
                    parked: Atomic::new(0),
                    blocks: Atomic::new(0),
                }),
                GFP_KERNEL_ACCOUNT,
            )?,
        })
    }

    /// Lends the most recently parked spare (LIFO: the cache-warm one) that runs under the same
    /// confinement as the current task (credentials, seccomp, `no_new_privs`) to `cont`.
    ///
    /// The program moves to the spare's thread at a handoff: a thread that is confined
    /// differently would run it with other rights. Returns `None` if no such spare is parked or
    /// the context is closing.
    pub(crate) fn lend(&self, cont: &Arc<Continuation>) -> Option<ListArc<Spare>> {
        if !self.signal.any_parked() {
            return None;
        }
        let current = current!();
        let mut inner = self.inner.lock();
        if inner.closing {
            return None;
        }
        let mut cursor = inner.parked.cursor_front();
        let spare = loop {
            let next = cursor.peek_next()?;
            if same_confinement(current, next.arc().parker.task()) {
                break next.remove();
            }
            cursor.move_next();
        };
        self.signal.parked.fetch_sub(1, Relaxed);
        spare.state.store(LENT, Relaxed);
        *spare.lent_to.lock() = Some(cont.clone());
        // Under `inner`, so that a close in between cannot miss the spare (see `close`).
        let old = cont.set_lent(Some(spare.clone_arc()));
        drop(inner);
        drop(old);
        Some(spare)
    }

    /// Gives back a spare lent to `cont`: one still lent goes back on top of the list (or is
    /// sent away if the context is closing); one that left or claimed is dropped.
    pub(crate) fn give_back(&self, cont: &Continuation, spare: ListArc<Spare>) {
        let old = cont.set_lent(None);
        let mut inner = self.inner.lock();
        let lent_to = spare.lent_to.lock().take();
        let mut wake = None;
        if spare.state.load(Relaxed) == LENT {
            if inner.closing {
                spare.state.store(LEFT, Relaxed);
                wake = Some(spare);
            } else {
                spare.state.store(PARKED, Relaxed);
                inner.parked.push_front(spare);
                self.signal.parked.fetch_add(1, Relaxed);
            }
        }
        drop(inner);
        // Outside the lock: the wakeup takes the runqueue lock, and the drops may free.
        if let Some(spare) = wake {
            spare.unpark();
        }
        drop((old, lent_to));
    }

    /// Marks the context closing: parked spares leave with `ESHUTDOWN`, none may park again.
    ///
    /// Lent spares are woken by the caller through the execs in flight (`cancel.rs`): a spare is
    /// recorded there before `inner` is released by [`Spares::lend`], so one of the two reaches
    /// every spare.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closing = true;
        for spare in inner.parked.iter() {
            spare.unpark();
        }
    }

    /// Parks the current task as a spare until it takes over a continuation: of an exec it is
    /// lent to, or of a thread of `threadlets` that blocked inside a threadlet.
    ///
    /// `write_cookie` stores the cookie in user space; it runs before the continuation is
    /// claimed, so that a fault leaves the continuation with its owner. Returns the cookie of the
    /// continuation the caller now owns.
    ///
    /// Must be called from process context without locks held.
    pub(crate) fn park(
        &self,
        stats: &Stats,
        timeout_ns: i64,
        threadlets: Option<&Threadlets>,
        mut write_cookie: impl FnMut(u64) -> Result,
    ) -> Result<u64, Leave> {
        let start = Instant::<Monotonic>::now();
        let unique = UniqueArc::pin_init(
            try_pin_init!(Spare {
                links <- ListLinks::new(),
                parker: Parker::new(),
                state: Atomic::new(PARKED),
                lent_to <- new_spinlock!(None, "Spare::lent_to"),
            }),
            GFP_KERNEL_ACCOUNT,
        )
        .map_err(|_: Error| Leave::NoMemory)?;
        let list_arc = ListArc::from(unique);
        let spare = list_arc.clone_arc();
        {
            let mut inner = self.inner.lock();
            if inner.closing {
                return Err(Leave::Shutdown);
            }
            inner.parked.push_front(list_arc);
            self.signal.parked.fetch_add(1, Relaxed);
        }
        Stats::inc(&stats.spares_parked);

        let ret = loop {
            let woken = spare.parker.park_interruptible_timeout_queued(
                timeout_left(start, timeout_ns),
                &self.signal.queue,
                || threadlets.is_some() && self.signal.take_block(),
            );
            let lent_to = spare.lent_to.lock().clone();
            if let Some(cont) = lent_to.filter(|c| c.is_blocked()) {
                // Prove the cookie can be delivered before taking the continuation.
                if write_cookie(cont.cookie).is_err() {
                    self.leave(&spare, false);
                    break Err(Leave::Fault);
                }
                if cont.claim() {
                    self.leave(&spare, true);
                    stats.record_latency(cont.handoff_latency_us());
                    Stats::inc(&stats.handoffs);
                    break Ok(cont.cookie);
                }
            }
            if let Some(set) = threadlets {
                match claim_threadlet(set, &mut write_cookie) {
                    Ok(Some(cookie)) => {
                        self.leave(&spare, true);
                        Stats::inc(&stats.threadlet_handoffs);
                        break Ok(cookie);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        self.leave(&spare, false);
                        break Err(Leave::Fault);
                    }
                }
            }
            let closing = self.inner.lock().closing;
            let leave = match woken {
                _ if closing => Some(Leave::Shutdown),
                Err(_) => Some(Leave::Signal),
                Ok(false) => Some(Leave::TimedOut),
                Ok(true) => None,
            };
            if let Some(leave) = leave {
                self.leave(&spare, false);
                break Err(leave);
            }
            // Woken for a continuation its owner took back first: park again.
        };
        stats.spares_parked.fetch_sub(1, Relaxed);
        ret
    }

    /// Takes `spare` out of service: out of the list if parked; marked `CLAIMED` if `claimed`
    /// (it took a continuation over), else `LEFT` if lent, so that its exec drops it.
    fn leave(&self, spare: &Spare, claimed: bool) {
        let mut inner = self.inner.lock();
        let mut removed = None;
        if spare.state.load(Relaxed) == PARKED {
            let mut cursor = inner.parked.cursor_front();
            while let Some(next) = cursor.peek_next() {
                if core::ptr::eq(&*next.arc(), spare) {
                    removed = Some(next.remove());
                    self.signal.parked.fetch_sub(1, Relaxed);
                    break;
                }
                cursor.move_next();
            }
        }
        if claimed {
            spare.state.store(CLAIMED, Relaxed);
        } else if spare.state.load(Relaxed) == LENT {
            spare.state.store(LEFT, Relaxed);
        }
        let lent_to = spare.lent_to.lock().take();
        drop(inner);
        drop((removed, lent_to));
    }
}

/// Returns whether the current task, a spare, may take over the continuation of `threadlet`,
/// registered by `task`: it blocked, and the program would run with the same rights.
fn claimable(threadlet: &Threadlet, task: &Task, current: &Task) -> bool {
    threadlet.is_blocked() && same_confinement(task, current)
}

/// Takes over the continuation of a blocked threadlet of `set`, if there is one the current
/// task may take; `Err` if `write_cookie` faulted.
fn claim_threadlet(
    set: &Threadlets,
    write_cookie: &mut impl FnMut(u64) -> Result,
) -> Result<Option<u64>> {
    let current = current!();
    // Each threadlet is tried once: one that cannot be taken (its thread ran again, a result
    // is pending, no completion room) does not hide the others.
    let mut tried = 0u64;
    loop {
        let Some(notifier) =
            set.find(|t, task| t.index_bit() & tried == 0 && claimable(t, task, current))
        else {
            return Ok(None);
        };
        tried |= notifier.data().index_bit();
        if let Some(cookie) = notifier.data().claim(write_cookie)? {
            return Ok(Some(cookie));
        }
    }
}

/// Returns the jiffies left of `timeout_ns` (zero: no limit) since `start`, for a park.
fn timeout_left(start: Instant<Monotonic>, timeout_ns: i64) -> c_long {
    if timeout_ns == 0 {
        return MAX_SCHEDULE_TIMEOUT;
    }
    let left_ns = timeout_ns.saturating_sub(start.elapsed().as_nanos());
    if left_ns <= 0 {
        return 0;
    }
    let ms = left_ns.saturating_add(999_999) / 1_000_000;
    let jiffies = msecs_to_jiffies(u32::try_from(ms).unwrap_or(u32::MAX));
    c_long::try_from(jiffies).unwrap_or(MAX_SCHEDULE_TIMEOUT)
}
