// SPDX-License-Identifier: GPL-2.0

//! Waiting for a file to become ready without a sleeping task.
//!
//! A [`PollWaiter`] is a small record that a file's `poll` operation queues on the wait queues it
//! would sleep on, the way `select()`, epoll and io_uring queue theirs: when the file becomes
//! ready, whoever wakes the queue calls [`PollWake::wake`] with the events it reports, in its own
//! context. Nothing sleeps, and no kernel stack is held for the wait.
//!
//! A waiter sits on at most two wait queues (as io_uring's poll does: one for reading, one for
//! writing on files that have both); a file that queues it on more cannot be waited for this way
//! ([`ArmError::TooManyQueues`]).
//!
//! A wait queue may be freed while waiters are on it, after a wakeup with `POLLFREE` (signalfd,
//! binder) and an RCU grace period: the waiter leaves such a queue in its wakeup, and
//! [`PollWaiter::disarm`] reads the queues it is still on under RCU.
//!
//! C header: [`include/linux/poll.h`](srctree/include/linux/poll.h),
//! [`include/linux/wait.h`](srctree/include/linux/wait.h).

use crate::{
    bindings,
    ffi::{
        c_int,
        c_uint,
        c_void, //
    },
    fs::File,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        rcu,
    },
    types::Opaque, //
};
use core::{
    cell::UnsafeCell,
    marker::PhantomPinned,
    ptr, //
};

/// How many wait queues one waiter can be on.
const MAX_QUEUES: usize = 2;

/// What a [`PollWaiter`] does when a wait queue it is on is woken.
pub trait PollWake: Sync {
    /// The file reported `events` (a subset of the armed events, `POLLERR` or `POLLHUP`, or 0
    /// when the waker did not say which).
    ///
    /// Runs in the waker's context, which may be a hard or soft interrupt, with the wait queue's
    /// lock held: it must not sleep, must take only locks that are safe with interrupts disabled
    /// (no `SpinLock`), and must not wake the same wait queue.
    fn wake(&self, events: u32);
}

/// Why [`PollWaiter::arm`] could not queue the waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmError {
    /// The file has no `poll` operation: it is always "ready", and blocks in its calls.
    NotPollable,
    /// The file's `poll` queued the waiter on more than two wait queues.
    TooManyQueues,
}

/// Returns whether waiting on `file` for `events` means anything: the file has a `poll`
/// operation, and the operation the events are about (reading for `POLLIN`, writing for
/// `POLLOUT`), so that a call that would fail at once is never held back waiting.
pub fn can_wait(file: &File, events: u32) -> bool {
    // SAFETY: `f_op` of a valid file is set when it is opened, points to operations that live as
    // long as the file, and is not changed afterwards.
    let fops = unsafe { &*(*file.as_ptr()).f_op };
    let reads = events & bindings::POLLIN == 0 || fops.read.is_some() || fops.read_iter.is_some();
    let writes =
        events & bindings::POLLOUT == 0 || fops.write.is_some() || fops.write_iter.is_some();
    fops.poll.is_some() && reads && writes
}

/// A record waiting on a file's wait queues, with data `T` for its wakeups.
///
/// Armed with [`PollWaiter::arm`], it holds a reference to the file, so that the wait queues it
/// is on live as long as it is on them (or until a `POLLFREE` wakeup takes it off); it is
/// disarmed by [`PollWaiter::disarm`] or when dropped.
///
/// # Examples
///
/// Counting the wakeups of a pipe's read side:
///
/// ```
/// use kernel::{
///     poll_waiter::{PollWaiter, PollWake},
///     sync::atomic::{Atomic, Relaxed},
/// };
///
/// struct Count(Atomic<u32>);
///
/// impl PollWake for Count {
///     fn wake(&self, _events: u32) {
///         self.0.fetch_add(1, Relaxed);
///     }
/// }
///
/// let waiter = KBox::pin_init(PollWaiter::new(Count(Atomic::new(0))), GFP_KERNEL)?;
/// // `waiter.as_mut().arm(file, POLLIN)` queues it; a write to the pipe then counts.
/// assert_eq!(waiter.data().0.load(Relaxed), 0);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// - `heads[i]` is null or the wait queue `entries[i]` is on; it is set under that queue's lock
///   when the entry is added, and cleared under it when the entry is taken off.
/// - While any `heads[i]` is not null, `file` is `Some`: the file whose `poll` queued the
///   entries.
/// - Every initialized entry's `private` is the address of this waiter and its function is
///   [`PollWaiter::wake_raw`] for `T`.
#[pin_data(PinnedDrop)]
pub struct PollWaiter<T: PollWake> {
    #[pin]
    table: Opaque<bindings::poll_table>,
    #[pin]
    entries: [Opaque<bindings::wait_queue_entry>; MAX_QUEUES],
    heads: [Atomic<*mut bindings::wait_queue_head>; MAX_QUEUES],
    /// The events armed for; read by the wakeups.
    events: Atomic<u32>,
    /// Entries queued by the `poll` call in progress, and whether it wanted more. Only touched
    /// by the task in [`PollWaiter::arm`], in the queueing function it calls synchronously.
    queued: UnsafeCell<(usize, bool)>,
    /// The armed file. Only touched through `Pin<&mut Self>`.
    file: UnsafeCell<Option<ARef<File>>>,
    data: T,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The waiter may be armed, disarmed and dropped on any thread (`ARef<File>` is `Send`);
// `T: Send` moves its data with it.
unsafe impl<T: PollWake + Send> Send for PollWaiter<T> {}
// SAFETY: Through `&self` only `data` (`T: Sync`) and atomics are reached; `queued` and `file`
// are touched by the one task that holds `Pin<&mut Self>`.
unsafe impl<T: PollWake> Sync for PollWaiter<T> {}

impl<T: PollWake> PollWaiter<T> {
    /// Creates a waiter, not armed, with data `data`.
    pub fn new(data: T) -> impl PinInit<Self> {
        pin_init!(Self {
            table: Opaque::uninit(),
            entries: [Opaque::uninit(), Opaque::uninit()],
            heads: [Atomic::new(ptr::null_mut()), Atomic::new(ptr::null_mut())],
            events: Atomic::new(0),
            queued: UnsafeCell::new((0, false)),
            file: UnsafeCell::new(None),
            data,
            _pin: PhantomPinned,
        })
    }

    /// Returns the waiter's data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// Returns whether the file reports any of `events` now, without queueing anything.
    ///
    /// Must be called from process context.
    pub fn ready_now(file: &File, events: u32) -> Result<bool, ArmError> {
        // SAFETY: `file` is a valid file, and a null poll table asks for the mask only.
        let mask = unsafe { Self::poll_file(file, ptr::null_mut())? };
        Ok(mask & (events | bindings::POLLERR | bindings::POLLHUP) != 0)
    }

    /// # Safety
    ///
    /// `table` is null or an initialized poll table valid for the call.
    unsafe fn poll_file(file: &File, table: *mut bindings::poll_table) -> Result<u32, ArmError> {
        // SAFETY: `file.as_ptr()` is valid; `f_op` is set for the file's whole life.
        if unsafe { (*(*file.as_ptr()).f_op).poll.is_none() } {
            return Err(ArmError::NotPollable);
        }
        // SAFETY: As above; `table` by the safety requirement.
        Ok(unsafe { bindings::vfs_poll(file.as_ptr(), table) })
    }

    /// Asks `file` for `events` and queues the waiter on the wait queues its `poll` names.
    ///
    /// Returns the events ready now (then the waiter is queued all the same: the caller may
    /// disarm it and act at once). Disarms first if the waiter was armed. Fails, queued nowhere,
    /// if the file cannot be waited for this way.
    ///
    /// Must be called from process context.
    pub fn arm(mut self: Pin<&mut Self>, file: ARef<File>, events: u32) -> Result<u32, ArmError> {
        self.as_mut().disarm();
        let this = self.as_ref().get_ref();
        let events = events | bindings::POLLERR | bindings::POLLHUP;
        this.events.store(events, Relaxed);
        // SAFETY: `table` is part of this pinned waiter; the helper initializes it.
        unsafe { bindings::init_poll_funcptr(this.table.get(), Some(Self::queue_raw)) };
        // SAFETY: `table` was just initialized; `_key` tells `poll` what is wanted.
        unsafe { (*this.table.get())._key = events };
        // SAFETY: Only this task, holding `Pin<&mut Self>`, touches `queued`.
        unsafe { *this.queued.get() = (0, false) };
        // INVARIANT: The file is stored before `poll` can queue an entry on one of its queues.
        // SAFETY: As for `queued`.
        unsafe { *this.file.get() = Some(file) };
        // SAFETY: As above; the file is alive while stored in `self`.
        let file = unsafe { (*this.file.get()).as_deref() }.ok_or(ArmError::NotPollable)?;
        // SAFETY: `table` is initialized and stays valid during the call.
        let mask = unsafe { Self::poll_file(file, this.table.get()) };
        // SAFETY: As for `queued` above; the `poll` call has returned.
        let (_, overflow) = unsafe { *this.queued.get() };
        match mask {
            Ok(_) if overflow => {
                self.disarm();
                Err(ArmError::TooManyQueues)
            }
            Ok(mask) => Ok(mask & events),
            Err(err) => {
                self.disarm();
                Err(err)
            }
        }
    }

    /// Takes the waiter off every wait queue it is on and gives the file back.
    ///
    /// When it returns no wakeup of this waiter is running or will run. Must be called from
    /// process context.
    pub fn disarm(self: Pin<&mut Self>) -> Option<ARef<File>> {
        let this = self.as_ref().get_ref();
        this.take_off_queues();
        // SAFETY: Only this task, holding `Pin<&mut Self>`, touches `file`.
        unsafe { (*this.file.get()).take() }
    }

    /// Takes every entry off its wait queue.
    fn take_off_queues(&self) {
        // A queue that a `POLLFREE` wakeup left is freed after a grace period: read the heads
        // under RCU.
        let _rcu = rcu::read_lock();
        for (head, entry) in self.heads.iter().zip(&self.entries) {
            // Pairs with the `Release` store of a `POLLFREE` wakeup that took the entry off.
            let queue = head.load(Acquire);
            if queue.is_null() {
                continue;
            }
            // SAFETY: `queue` is alive: the file is held (type invariant), or a `POLLFREE` wakeup
            // that may free it waits for the grace period we are in. Taking its lock waits for
            // a wakeup running on this entry; removing an entry a `POLLFREE` wakeup already
            // took off (it is then initialized empty) does nothing.
            unsafe { bindings::remove_wait_queue(queue, entry.get()) };
            // INVARIANT: Off the queue.
            head.store(ptr::null_mut(), Relaxed);
        }
    }

    /// The queueing function `poll` calls (through `poll_wait`) for each of its wait queues.
    ///
    /// # Safety
    ///
    /// `table` is the `table` field of a `PollWaiter<T>` being armed, and `head` a valid wait
    /// queue of the file being polled.
    unsafe extern "C" fn queue_raw(
        _file: *mut bindings::file,
        head: *mut bindings::wait_queue_head,
        table: *mut bindings::poll_table,
    ) {
        let table = table.cast::<Opaque<bindings::poll_table>>();
        // SAFETY: By the safety requirement `table` is the `table` field of a live waiter.
        let this = unsafe { &*crate::container_of!(table, Self, table) };
        // SAFETY: Only the arming task touches `queued`, and it is in `arm`, inside `poll`.
        let queued = unsafe { &mut *this.queued.get() };
        let Some(entry) = this.entries.get(queued.0) else {
            queued.1 = true;
            return;
        };
        // SAFETY: `entry` is part of this pinned waiter and not on any queue (disarmed before
        // `poll`); the helper initializes it with our function.
        unsafe { bindings::init_waitqueue_func_entry(entry.get(), Some(Self::wake_raw)) };
        // INVARIANT: `private` names this waiter.
        // SAFETY: As above.
        unsafe { (*entry.get()).private = ptr::from_ref(this).cast_mut().cast() };
        // INVARIANT: Stored before the entry is on the queue, so a `POLLFREE` wakeup (under the
        // queue's lock, taken by `add_wait_queue`) sees it.
        this.heads[queued.0].store(head, Release);
        // SAFETY: `head` is valid by the safety requirement; `entry` is initialized and stays in
        // place until it is taken off.
        unsafe { bindings::add_wait_queue(head, entry.get()) };
        queued.0 += 1;
    }

    /// The wakeup function of the waiter's entries.
    ///
    /// # Safety
    ///
    /// `entry` is one of the `entries` of a live, armed `PollWaiter<T>`, on the queue being
    /// woken, whose lock is held.
    unsafe extern "C" fn wake_raw(
        entry: *mut bindings::wait_queue_entry,
        _mode: c_uint,
        _flags: c_int,
        key: *mut c_void,
    ) -> c_int {
        // SAFETY: `private` was set to the waiter's address when the entry was queued (type
        // invariant), and the waiter is alive while it is on a queue.
        let this = unsafe { &*(*entry).private.cast::<Self>() };
        // The key carries the events, as `key_to_poll()` reads it.
        let events = key as usize as u32;
        if events & bindings::POLLFREE != 0 {
            // The queue is about to be freed. Tell the data first: once the head below is
            // cleared, `disarm` may return without waiting for this wakeup, and the waiter may be
            // freed.
            this.data.wake(events);
            // SAFETY: `entry` is on the queue whose lock is held; leaving it now.
            unsafe { bindings::list_del_init(&raw mut (*entry).entry) };
            for (head, queued) in this.heads.iter().zip(&this.entries) {
                if queued.get() == entry {
                    // INVARIANT: Off the queue, under its lock. Pairs with the `Acquire` load in
                    // `take_off_queues`. Nothing of the waiter is touched after this store.
                    head.store(ptr::null_mut(), Release);
                    break;
                }
            }
            return 1;
        }
        if events != 0 && events & this.events.load(Relaxed) == 0 {
            // Not what we wait for (a pipe's reader woken for its writers' sake).
            return 0;
        }
        this.data.wake(events);
        1
    }
}

#[pinned_drop]
impl<T: PollWake> PinnedDrop for PollWaiter<T> {
    /// Disarms the waiter: must be dropped from process context.
    fn drop(self: Pin<&mut Self>) {
        self.disarm();
    }
}
