// SPDX-License-Identifier: GPL-2.0

//! The pollable path: an atom that would wait for a descriptor to become readable or writable
//! waits on the file's wait queues, in a small record, instead of in a thread.
//!
//! Before an atom that reads, receives, accepts, writes or sends on a descriptor runs
//! ([`wanted_events`] says which calls and why), its file is asked whether it is ready. If it is,
//! the atom runs inline as any other. If not, the atom is *armed*: an [`Armed`] record, whose
//! [`PollWaiter`] sits on the file's wait queues, holds the atom and the entries of its chain
//! after it (they wait for it), and the exec goes on with the next chain. No thread sleeps, and
//! no spare is used.
//!
//! When the file becomes ready, the waiter's wakeup (any context) marks the atom's slot in the
//! [`ReadySet`] and wakes the ring's waiters. The atom then runs in the owner's context, in the
//! next `SYSLET_IOC_EXEC` or `SYSLET_IOC_WAIT` of a thread confined as its submitter is
//! (`exec.rs`), before anything else that call does. This is io_uring's choice for
//! `IORING_SETUP_DEFER_TASKRUN` too: the completion costs no thread switch and no interruption
//! of whatever the thread is doing, and an event loop is in `WAIT` (or polls the ring) exactly
//! when it wants completions. Before it runs, the file is asked again: a file no longer ready
//! (another reader was first) arms the atom again. A call that blocks all the same blocks as any
//! atom does: in an exec with a continuation it hands the program to a spare.
//!
//! The seccomp filters and the refused-call policy judge an armed atom once, when its exec
//! consumes it, before it is armed, as a direct call is judged at entry before it sleeps; it runs
//! later only on a thread confined as its submitter ([`DeferredSyscall`]).
//!
//! # Invariants
//!
//! - Each consumed atom holds one reserved completion slot until it completes, armed or not, so
//!   armed atoms are at most `cq_entries`, the number of slots of [`Polled`].
//! - An armed atom is in exactly one place: its slot in [`PolledInner::slots`], or owned by the
//!   thread that took it out (to run it, cancel it or close); it completes exactly once.
//! - A slot's ready bit is set only by the wakeup of the waiter of the atom in it, and cleared
//!   when the atom is taken out of it after its waiter was disarmed (so a reused slot starts
//!   clear).
//!
//! Lock order: `Rings::state`, then [`Polled::inner`]; a waiter's wakeup runs under its file's
//! wait queue lock and takes only the ring's wait queue lock. No lock is held while an atom runs
//! or a waiter is armed or disarmed.

use kernel::{
    bindings,
    fs::{
        File,
        LocalFile, //
    },
    new_spinlock,
    poll_waiter::{
        self,
        PollWaiter,
        PollWake, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        Arc,
        SpinLock, //
    },
    syscall::{
        CheckedSyscall,
        DeferredSyscall, //
    },
};

use crate::{
    atom::{
        self,
        ChainResults, //
    },
    defs::{
        Sqe,
        SQE_LINK, //
    },
    ring::Rings,
    stats::Stats,
    timeout::{
        self,
        ArmedTimer,
        Deadline, //
    },
    trace::{
        self,
        CtxId, //
    },
};

/// Returns the poll events the atom `sqe` waits for on its first argument, a descriptor, or
/// `None` if it does not wait for one on the pollable path.
///
/// These are the calls whose wait is for one descriptor to become readable (read, readv,
/// recvfrom, recvmsg, accept, accept4) or writable (write, writev, sendto, sendmsg): exactly what
/// a file's `poll` reports. `pread`/`pwrite` act on seekable files, which do not wait that way;
/// a receive or send with `MSG_DONTWAIT` never waits. Other calls that wait (connect, epoll_wait,
/// futex, fsync, reads of regular files) keep the thread handoff.
pub(crate) fn wanted_events(sqe: &Sqe) -> Option<u32> {
    let dontwait = |flags: u64| flags & u64::from(bindings::MSG_DONTWAIT) != 0;
    let events = match sqe.nr {
        bindings::__NR_read | bindings::__NR_readv => bindings::POLLIN,
        bindings::__NR_accept | bindings::__NR_accept4 => bindings::POLLIN,
        bindings::__NR_recvfrom if !dontwait(sqe.args[3]) => bindings::POLLIN,
        bindings::__NR_recvmsg if !dontwait(sqe.args[2]) => bindings::POLLIN,
        bindings::__NR_write | bindings::__NR_writev => bindings::POLLOUT,
        bindings::__NR_sendto if !dontwait(sqe.args[3]) => bindings::POLLOUT,
        bindings::__NR_sendmsg if !dontwait(sqe.args[2]) => bindings::POLLOUT,
        _ => return None,
    };
    Some(events)
}

/// Returns whether `file` can be waited for on the pollable path for `events`: it has `poll` and
/// the operation the call needs (so a read of an epoll or syslet descriptor, which fails anyway,
/// is never armed on their queues), and is not non-blocking (a call on it must fail with
/// `EAGAIN` rather than wait).
fn file_waits(file: &File, events: u32) -> bool {
    file.flags() & bindings::O_NONBLOCK == 0 && poll_waiter::can_wait(file, events)
}

/// Slots whose atom's file became ready, marked from the waiters' wakeups (any context), and the
/// rings whose waiters a mark wakes.
pub(crate) struct ReadySet {
    /// One bit per slot.
    bits: KVec<Atomic<u64>>,
    /// Bits set now (at least; a clear may lag a set by one).
    marked: Atomic<u32>,
    rings: Arc<Rings>,
}

impl ReadySet {
    fn new(slots: u32, rings: Arc<Rings>) -> Result<Arc<Self>> {
        let words = slots.div_ceil(64) as usize;
        let mut bits = KVec::with_capacity(words, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..words {
            bits.push(Atomic::new(0), GFP_KERNEL_ACCOUNT)?;
        }
        Ok(Arc::new(
            Self {
                bits,
                marked: Atomic::new(0),
                rings,
            },
            GFP_KERNEL_ACCOUNT,
        )?)
    }

    fn word(&self, slot: u32) -> Option<(&Atomic<u64>, u64)> {
        let word = self.bits.get((slot / 64) as usize)?;
        Some((word, 1u64 << (slot % 64)))
    }

    /// Marks `slot` ready and wakes the ring's waiters. Callable from any context.
    pub(crate) fn mark(&self, slot: u32) {
        let Some((word, bit)) = self.word(slot) else {
            return;
        };
        let mut old = word.load(Relaxed);
        while old & bit == 0 {
            // Release: the waiter's wakeup happened before the runner sees the bit.
            match word.cmpxchg(old, old | bit, Release) {
                Ok(_) => {
                    self.marked.fetch_add(1, Relaxed);
                    self.rings.wake_waiters();
                    return;
                }
                Err(now) => old = now,
            }
        }
    }

    /// Clears `slot`'s bit; returns whether it was set.
    fn clear(&self, slot: u32) -> bool {
        let Some((word, bit)) = self.word(slot) else {
            return false;
        };
        let mut old = word.load(Relaxed);
        while old & bit != 0 {
            // Acquire: pairs with the `Release` of the mark.
            match word.cmpxchg(old, old & !bit, Acquire) {
                Ok(_) => {
                    self.marked.fetch_sub(1, Relaxed);
                    return true;
                }
                Err(now) => old = now,
            }
        }
        false
    }

    /// Returns whether `slot` is marked.
    fn is_marked(&self, slot: u32) -> bool {
        self.word(slot)
            .is_some_and(|(word, bit)| word.load(Acquire) & bit != 0)
    }

    /// Returns whether any slot may be marked.
    fn any(&self) -> bool {
        self.marked.load(Relaxed) != 0
    }

    /// Returns the marked slots, in order.
    fn marked_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, word)| {
            let mut bits = word.load(Acquire);
            core::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }
}

/// The wakeup of one armed atom: marks its slot.
pub(crate) struct ArmedWake {
    slot: u32,
    ready: Arc<ReadySet>,
}

impl PollWake for ArmedWake {
    fn wake(&self, _events: u32) {
        // Also for POLLERR, POLLHUP and POLLFREE: the call then fails or returns at once.
        self.ready.mark(self.slot);
    }
}

/// An armed atom: its waiter on the file's wait queues, the call seccomp allowed, and the
/// entries of its chain (the atom first).
struct Armed {
    waiter: Pin<KBox<PollWaiter<ArmedWake>>>,
    call: DeferredSyscall,
    entries: KVec<Sqe>,
    /// What the entries of the chain before the atom returned, for result forwarding.
    results: ChainResults,
    /// The atom's time limit (a linked timeout entry), and its timer.
    deadline: Option<Deadline>,
    timer: Option<ArmedTimer>,
}

impl Armed {
    /// The atom's `user_data`.
    fn user_data(&self) -> u64 {
        // `entries` holds the atom itself first (`Polled::new_armed`).
        self.entries.first().map_or(0, |sqe| sqe.user_data)
    }

    /// Whether the current task may take the atom out when its file is ready: to run it, or to
    /// complete it as refused if its submitter's confinement changed.
    fn takeable_here(&self) -> bool {
        self.call.runnable_here() || !self.call.verdict_stands()
    }
}

/// An atom taken out of the pollable path, disarmed: the call seccomp allowed and the entries of
/// its chain, the atom first.
pub(crate) struct Disarmed {
    pub(crate) call: DeferredSyscall,
    pub(crate) entries: KVec<Sqe>,
    pub(crate) results: ChainResults,
    pub(crate) deadline: Option<Deadline>,
    /// The time limit expired while the atom was armed.
    pub(crate) expired: bool,
}

/// An atom to arm: its submission (arguments forwarded), the entries linked after it, what the
/// entries of its chain before it returned, and its time limit.
pub(crate) struct Waiting<'a> {
    pub(crate) sqe: &'a Sqe,
    pub(crate) linked: &'a [Sqe],
    pub(crate) results: ChainResults,
    pub(crate) deadline: Option<Deadline>,
}

/// What [`Polled::arm`] did with an atom.
pub(crate) enum Arming {
    /// The atom waits; its chain's entries went with it.
    Armed,
    /// The atom should run now: its file is ready, cannot be waited for, the context is closing,
    /// a call linked after it acts on the submitting thread, or arming failed.
    Run(CheckedSyscall),
    /// The owner closed the context while the atom was being armed: it was taken off its file
    /// again, to be completed with `-ECANCELED` as close completes every armed atom.
    Cancelled(Disarmed),
}

/// The armed atoms of a context, by slot. Protected by [`Polled::inner`].
struct PolledInner {
    slots: KVVec<Option<Armed>>,
    /// Slots not in use.
    free: KVVec<u32>,
    /// The owner closed the context: nothing more is armed.
    closed: bool,
}

/// The pollable path of one context.
#[pin_data]
pub(crate) struct Polled {
    #[pin]
    inner: SpinLock<PolledInner>,
    ready: Arc<ReadySet>,
}

impl Polled {
    /// Creates the pollable path of rings `rings`, for up to `slots` armed atoms.
    pub(crate) fn new(rings: &Arc<Rings>, slots: u32) -> Result<Pin<KBox<Self>>> {
        let mut table = KVVec::with_capacity(slots as usize, GFP_KERNEL_ACCOUNT)?;
        let mut free = KVVec::with_capacity(slots as usize, GFP_KERNEL_ACCOUNT)?;
        for slot in (0..slots).rev() {
            table.push(None, GFP_KERNEL_ACCOUNT)?;
            free.push(slot, GFP_KERNEL_ACCOUNT)?;
        }
        let ready = ReadySet::new(slots, rings.clone())?;
        KBox::pin_init(
            try_pin_init!(Self {
                inner <- new_spinlock!(
                    PolledInner {
                        slots: table,
                        free,
                        closed: false,
                    },
                    "Polled::inner"
                ),
                ready,
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Arms `atom`, allowed as `call`, on the file of its descriptor for `events`, with the
    /// entries linked after it waiting behind it; or says to run it now.
    ///
    /// Must be called by the submitter, in an exec or wait, between atoms.
    pub(crate) fn arm(
        &self,
        ctx: CtxId,
        stats: &Stats,
        atom: Waiting<'_>,
        call: CheckedSyscall,
        events: u32,
    ) -> Arming {
        let sqe = atom.sqe;
        // The entries linked after an armed atom run on whichever thread of the owner runs it:
        // none may act on the submitting thread's own state.
        if atom.linked.iter().any(|e| atom::acts_on_own_thread(e.nr)) {
            return Arming::Run(call);
        }
        let Ok(file) = LocalFile::fget(sqe.args[0] as u32) else {
            // The call itself reports the bad descriptor.
            return Arming::Run(call);
        };
        // SAFETY: Called between atoms of an exec or in a wait: this thread runs `ioctl()` on the
        // syslet device, which takes no `fdget_pos` reference, and no atom is running.
        let file = unsafe { LocalFile::assume_no_fdget_pos(file) };
        if !file_waits(&file, events) {
            return Arming::Run(call);
        }
        // Cheap and common: the file is ready, nothing is queued or allocated.
        if PollWaiter::<ArmedWake>::ready_now(&file, events) != Ok(false) {
            return Arming::Run(call);
        }
        let slot = {
            let mut inner = self.inner.lock();
            if inner.closed {
                return Arming::Run(call);
            }
            match inner.free.pop() {
                Some(slot) => slot,
                // Every slot holds an atom that holds a completion slot: the exec could not have
                // consumed this one. Run it rather than lose it.
                None => return Arming::Run(call),
            }
        };
        match self.new_armed(slot, atom, call, file, events) {
            Ok(armed) => {
                trace::arm(ctx, sqe, events);
                let mut inner = self.inner.lock();
                if inner.closed {
                    // A close ran between the slot's allocation and now, and did not see this
                    // atom: it is cancelled here instead.
                    drop(inner);
                    return Arming::Cancelled(self.release(slot, armed));
                }
                stats.armed.fetch_add(1, Relaxed);
                // INVARIANT: Into its slot; the bit is set only by this atom's wakeup. A wakeup
                // that marked the slot before the atom was in it is found by the next look at
                // the bits.
                if let Some(place) = inner.slots.get_mut(slot as usize) {
                    *place = Some(armed);
                }
                drop(inner);
                // The ring's waiters look at the bits, not at the wakeup: tell them the slot holds
                // an atom now, in case its wakeup came first.
                if self.ready.is_marked(slot) {
                    self.ready.rings.wake_waiters();
                }
                Arming::Armed
            }
            Err(call) => {
                // Disarmed, so no wakeup can mark the slot any more.
                self.ready.clear(slot);
                let _ = self.inner.lock().free.push_within_capacity(slot);
                Arming::Run(call)
            }
        }
    }

    /// Allocates and arms the record of `atom` in `slot`, its time limit started; gives the call
    /// back if the file is ready (or became ready while the waiter was queued), the time is up,
    /// or on failure.
    fn new_armed(
        &self,
        slot: u32,
        atom: Waiting<'_>,
        call: CheckedSyscall,
        file: ARef<File>,
        events: u32,
    ) -> Result<Armed, CheckedSyscall> {
        let wake = ArmedWake {
            slot,
            ready: self.ready.clone(),
        };
        let Ok(mut waiter) = KBox::pin_init(PollWaiter::new(wake), GFP_KERNEL_ACCOUNT) else {
            return Err(call);
        };
        let mut entries = KVec::new();
        if entries.push(*atom.sqe, GFP_KERNEL_ACCOUNT).is_err()
            || entries
                .extend_from_slice(atom.linked, GFP_KERNEL_ACCOUNT)
                .is_err()
        {
            return Err(call);
        }
        match waiter.as_mut().arm(file, events) {
            Ok(0) => {}
            // Ready after all (or not waitable): run it now.
            _ => {
                waiter.as_mut().disarm();
                return Err(call);
            }
        }
        // The time limit runs from now on; one already past runs the atom, to be cut short at
        // once.
        let timer = match atom.deadline.map(timeout::left) {
            None => None,
            Some(Some(left)) => match ArmedTimer::start(slot, self.ready.clone(), left) {
                Ok(timer) => Some(timer),
                Err(_) => {
                    waiter.as_mut().disarm();
                    return Err(call);
                }
            },
            Some(None) => {
                waiter.as_mut().disarm();
                return Err(call);
            }
        };
        match call.defer() {
            Ok(call) => Ok(Armed {
                waiter,
                call,
                entries,
                results: atom.results,
                deadline: atom.deadline,
                timer,
            }),
            Err(call) => {
                waiter.as_mut().disarm();
                if let Some(timer) = timer {
                    timer.stop();
                }
                Err(call)
            }
        }
    }

    /// Takes out, disarmed, the first armed atom whose file is ready and that the current task
    /// may take (see [`Polled::has_ready_here`]).
    pub(crate) fn take_ready(&self, stats: &Stats) -> Option<Disarmed> {
        if !self.ready.any() {
            return None;
        }
        let mut inner = self.inner.lock();
        let slot = self.ready.marked_slots().find(|&slot| {
            inner
                .slots
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(Armed::takeable_here)
        })?;
        let armed = Self::take_locked(&mut inner, slot, stats)?;
        drop(inner);
        Some(self.release(slot, armed))
    }

    /// Returns whether an armed atom whose file is ready may be taken out by the current task: it
    /// is confined as the atom's submitter was (or the submitter's confinement changed since, and
    /// the atom is to be refused by whoever looks).
    ///
    /// Takes [`Polled::inner`]: callable with `Rings::state` held, not from a wakeup.
    pub(crate) fn has_ready_here(&self) -> bool {
        if !self.ready.any() {
            return false;
        }
        let inner = self.inner.lock();
        self.ready.marked_slots().any(|slot| {
            inner
                .slots
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(Armed::takeable_here)
        })
    }

    /// Takes out, disarmed, the armed atom with `user_data` (the first, if several).
    pub(crate) fn take_user_data(&self, user_data: u64, stats: &Stats) -> Option<Disarmed> {
        let mut inner = self.inner.lock();
        let slot = inner
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|a| a.user_data() == user_data))?;
        let slot = u32::try_from(slot).ok()?;
        let armed = Self::take_locked(&mut inner, slot, stats)?;
        drop(inner);
        Some(self.release(slot, armed))
    }

    /// The owner closes the context: arms nothing more, and takes out every armed atom,
    /// disarmed, handing each to `complete`.
    pub(crate) fn close(&self, stats: &Stats, mut complete: impl FnMut(Disarmed)) {
        let slots = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            inner.slots.len()
        };
        for slot in (0..slots).filter_map(|slot| u32::try_from(slot).ok()) {
            let armed = Self::take_locked(&mut self.inner.lock(), slot, stats);
            if let Some(armed) = armed {
                complete(self.release(slot, armed));
            }
        }
    }

    /// Takes the atom out of `slot`. Its slot is free again only once its waiter is disarmed
    /// ([`Polled::release`]): until then a wakeup of this waiter may still mark it.
    fn take_locked(inner: &mut PolledInner, slot: u32, stats: &Stats) -> Option<Armed> {
        let armed = inner.slots.get_mut(slot as usize)?.take()?;
        stats.armed.fetch_sub(1, Relaxed);
        Some(armed)
    }

    /// Disarms an atom taken out of `slot` and frees the slot.
    fn release(&self, slot: u32, mut armed: Armed) -> Disarmed {
        // Gives back the file reference too.
        armed.waiter.as_mut().disarm();
        let expired = armed.timer.take().is_some_and(ArmedTimer::stop);
        // INVARIANT: No wakeup of that waiter can run now; the slot starts clear when reused.
        self.ready.clear(slot);
        let _ = self.inner.lock().free.push_within_capacity(slot);
        Disarmed {
            call: armed.call,
            entries: armed.entries,
            results: armed.results,
            deadline: armed.deadline,
            expired,
        }
    }
}

/// Returns the index one past the last entry of the chain that starts at `entries[0]`.
pub(crate) fn chain_len(entries: &[Sqe]) -> usize {
    entries
        .iter()
        .position(|sqe| sqe.flags & SQE_LINK == 0)
        .map_or(entries.len(), |last| last + 1)
}
