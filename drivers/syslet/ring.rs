// SPDX-License-Identifier: GPL-2.0

//! The submission and completion rings, in memory shared with user space.
//!
//! One region, mapped by user space at offset 0, holds the header (`struct
//! syslet_ring_header`), then the submission entries, then the completion entries. The barrier
//! pairings, each repeated where it happens:
//!
//! - `sq_tail`: user space fills entries, then store-release `sq_tail`; [`Rings::claim`]
//!   load-acquires `sq_tail` before copying the entries out.
//! - `sq_head`: [`Rings::claim`] copies the entries, then store-release `sq_head`; user space
//!   load-acquires `sq_head` before reusing the slots.
//! - `cq_tail`: [`Rings::complete`] writes the entries, then store-release `cq_tail`; user
//!   space load-acquires `cq_tail` before reading entries.
//! - `cq_head`: user space reads entries, then store-release `cq_head`; [`Rings::claim`]
//!   load-acquires `cq_head` before counting free completion slots.
//!
//! The kernel keeps its own `sq_head` and `cq_tail` and never reads them back from the shared
//! region; what it reads there (`sq_tail`, `cq_head`) is validated before use.

use core::mem::{
    offset_of,
    size_of, //
};
use kernel::{
    bindings,
    fs::File,
    mm::shared_buffer::UserSharedBuffer,
    mm::virt::VmaNew,
    new_poll_condvar, new_spinlock,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        poll::{
            PollCondVar,
            PollTable, //
        },
        Arc,
        CondVarTimeoutResult,
        SpinLock, //
    },
    time::{
        msecs_to_jiffies,
        Jiffies, //
    },
};

use crate::defs::{
    Cqe,
    Params,
    RingHeader,
    Sqe,
    ThreadletSlot,
    MAX_CQ_ENTRIES,
    MAX_SQ_ENTRIES,
    MAX_THREADLET_SLOTS,
    SETUP_POLL,
    SETUP_VALID_FLAGS, //
};

const HDR_SQ_HEAD: usize = offset_of!(RingHeader, sq_head);
const HDR_SQ_TAIL: usize = offset_of!(RingHeader, sq_tail);
const HDR_CQ_HEAD: usize = offset_of!(RingHeader, cq_head);
const HDR_CQ_TAIL: usize = offset_of!(RingHeader, cq_tail);
const HDR_FLAGS: usize = offset_of!(RingHeader, flags);
const SLOT_STATE: usize = offset_of!(ThreadletSlot, state);
const SLOT_USER_DATA: usize = offset_of!(ThreadletSlot, user_data);
const SLOT_SYNC_BLOCKS: usize = offset_of!(ThreadletSlot, sync_blocks);

/// The kernel's private view of the rings.
///
/// Protected by [`Rings::state`].
struct RingState {
    /// Next submission to consume; published as the header's `sq_head`.
    sq_head: u32,
    /// One past the last completion posted; published as the header's `cq_tail`.
    cq_tail: u32,
    /// Completion slots promised to consumed submissions that have not completed yet.
    cq_reserved: u32,
    /// The owner closed a descriptor: waiters return with `ESHUTDOWN`.
    shutdown: bool,
    /// Threads sleeping in [`Rings::wait`] now.
    waiters: u32,
    /// The file was ever polled: a poll or epoll waiter may be queued at any time since.
    polled: bool,
}

/// A snapshot of the ring indices, for fdinfo.
pub(crate) struct RingSnapshot {
    pub(crate) sq_head: u32,
    pub(crate) sq_tail: u32,
    pub(crate) cq_head: u32,
    pub(crate) cq_tail: u32,
    pub(crate) cq_reserved: u32,
}

/// Ring geometry chosen at setup.
#[derive(Clone, Copy)]
pub(crate) struct RingLayout {
    pub(crate) sq_entries: u32,
    pub(crate) cq_entries: u32,
    pub(crate) sqes_off: usize,
    pub(crate) cqes_off: usize,
    pub(crate) threadlets_off: usize,
    pub(crate) size: usize,
    /// `SYSLET_SETUP_POLL`: atoms that would wait for a pollable file are armed instead.
    pub(crate) poll: bool,
}

impl RingLayout {
    /// Validates the sizes user space asked for and lays the region out.
    ///
    /// Fails with `EINVAL` for sizes that are zero, not powers of two or out of bounds, for
    /// unknown flags and for nonzero reserved fields. The output fields are ignored: a structure
    /// filled by an earlier setup may be passed again.
    pub(crate) fn new(params: &Params) -> Result<Self> {
        if params.flags & !SETUP_VALID_FLAGS != 0
            || params.resv0 != 0
            || params.resv.iter().any(|&r| r != 0)
        {
            return Err(EINVAL);
        }
        let sq_entries = params.sq_entries;
        if sq_entries == 0 || !sq_entries.is_power_of_two() || sq_entries > MAX_SQ_ENTRIES {
            return Err(EINVAL);
        }
        let cq_entries = match params.cq_entries {
            0 => sq_entries * 2,
            n => n,
        };
        if !cq_entries.is_power_of_two() || cq_entries < sq_entries || cq_entries > MAX_CQ_ENTRIES {
            return Err(EINVAL);
        }
        // Sizes are bounded above, so none of this can overflow.
        let sqes_off = size_of::<RingHeader>();
        let cqes_off = sqes_off + sq_entries as usize * size_of::<Sqe>();
        let cqes_end = cqes_off + cq_entries as usize * size_of::<Cqe>();
        // Slots on cache lines of their own: each is written by its thread on every threadlet.
        let threadlets_off = cqes_end.next_multiple_of(size_of::<ThreadletSlot>());
        let end = threadlets_off + MAX_THREADLET_SLOTS as usize * size_of::<ThreadletSlot>();
        Ok(Self {
            sq_entries,
            cq_entries,
            sqes_off,
            cqes_off,
            threadlets_off,
            size: end,
            poll: params.flags & SETUP_POLL != 0,
        })
    }
}

/// The rings of one context.
///
/// # Invariants
///
/// `buf` holds at least `layout.size` bytes laid out as `layout` says, and every submission the
/// kernel consumed has either completed or holds one of `state.cq_reserved` completion slots.
#[pin_data]
pub(crate) struct Rings {
    buf: UserSharedBuffer,
    layout: RingLayout,
    #[pin]
    state: SpinLock<RingState>,
    /// Notified, with `state` held, whenever a completion is posted.
    #[pin]
    cq_wait: PollCondVar,
    /// A buffer of `sq_entries` submissions kept between execs, so that copying a batch out
    /// needs no allocation: taken by an exec for its batch, given back when it ends. An exec
    /// that finds it taken (another thread of the owner is executing) allocates its own. A leaf
    /// lock.
    #[pin]
    batch_buf: SpinLock<Option<KVVec<Sqe>>>,
    /// A full-size buffer was made for `batch_buf` (it may be in use now).
    batch_buf_made: Atomic<bool>,
}

/// A buffer an exec copies its claimed submissions to; from [`Rings::batch_buffer`].
pub(crate) struct BatchBuffer<'a> {
    rings: &'a Rings,
    /// Always `Some` until dropped; at least as long as was asked for.
    buf: Option<KVVec<Sqe>>,
    len: usize,
}

impl core::ops::Deref for BatchBuffer<'_> {
    type Target = [Sqe];

    fn deref(&self) -> &[Sqe] {
        self.buf.as_deref().map_or(&[], |buf| &buf[..self.len])
    }
}

impl core::ops::DerefMut for BatchBuffer<'_> {
    fn deref_mut(&mut self) -> &mut [Sqe] {
        let len = self.len;
        self.buf
            .as_deref_mut()
            .map_or(&mut [], |buf| &mut buf[..len])
    }
}

impl Drop for BatchBuffer<'_> {
    fn drop(&mut self) {
        // Only a buffer of the full size is kept: any later batch fits it.
        if let Some(buf) = self.buf.take() {
            if buf.len() == self.rings.layout.sq_entries as usize {
                let mut kept = self.rings.batch_buf.lock();
                if kept.is_none() {
                    *kept = Some(buf);
                }
            }
        }
    }
}

/// Why [`Rings::wait`] returned without enough completions.
pub(crate) enum WaitError {
    /// `cq_head` in the shared header is impossible, or more completions were asked for than
    /// the ring holds.
    Invalid,
    TimedOut,
    Interrupted,
    /// The owner closed a descriptor of the context.
    Shutdown,
}

/// Why [`Rings::claim`] consumed nothing.
pub(crate) enum ClaimError {
    /// `sq_tail` or `cq_head` in the shared header is impossible.
    Corrupt,
    /// Submissions are pending but the completion ring has no free slot.
    CqFull,
}

impl Rings {
    /// Allocates zeroed rings for `layout` and writes the read-only header fields.
    ///
    /// Must not be called from atomic context.
    pub(crate) fn new(layout: RingLayout) -> Result<Arc<Self>> {
        let buf = UserSharedBuffer::new(layout.size)?;
        let header = RingHeader {
            sq_mask: layout.sq_entries - 1,
            cq_mask: layout.cq_entries - 1,
            sq_entries: layout.sq_entries,
            cq_entries: layout.cq_entries,
            ..Default::default()
        };
        buf.write(0, &header)?;
        Arc::pin_init(
            try_pin_init!(Self {
                buf,
                layout,
                state <- new_spinlock!(
                    RingState {
                        sq_head: 0,
                        cq_tail: 0,
                        cq_reserved: 0,
                        shutdown: false,
                        waiters: 0,
                        polled: false,
                    },
                    "Rings::state"
                ),
                cq_wait <- new_poll_condvar!("Rings::cq_wait"),
                batch_buf <- new_spinlock!(None, "Rings::batch_buf"),
                batch_buf_made: Atomic::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// Returns the geometry of the rings.
    pub(crate) fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// Returns the length user space must map: the region rounded up to whole pages.
    pub(crate) fn mmap_size(&self) -> usize {
        self.buf.size()
    }

    /// Maps the shared region into `vma`, which must cover all of it at offset zero.
    pub(crate) fn map(&self, vma: &VmaNew) -> Result {
        self.buf.map(vma)
    }

    /// Returns a buffer for a batch of `len` submissions (at most `sq_entries`): the one kept
    /// between execs, or a new one if it is in use.
    ///
    /// Must not be called from atomic context.
    pub(crate) fn batch_buffer(&self, len: usize) -> Result<BatchBuffer<'_>> {
        let full = self.layout.sq_entries as usize;
        if len > full {
            return Err(EINVAL);
        }
        let kept = self.batch_buf.lock().take();
        let buf = match kept {
            Some(buf) => buf,
            // The first batch allocates the buffer that is kept; one that finds it in use (an
            // exec of another thread, or one that handed off and still runs) allocates just
            // what it needs. Charged to the owner's memory cgroup, like the rings.
            None => {
                let size = if self.batch_buf_made.load(Relaxed) {
                    len
                } else {
                    full
                };
                self.batch_buf_made.store(true, Relaxed);
                KVVec::from_elem(Sqe::default(), size, GFP_KERNEL_ACCOUNT)?
            }
        };
        Ok(BatchBuffer {
            rings: self,
            buf: Some(buf),
            len,
        })
    }

    /// Consumes up to `batch.len()` submissions, copying them to the start of `batch`, and
    /// reserves a completion slot for each.
    ///
    /// Returns how many were consumed; zero if none are pending.
    pub(crate) fn claim(&self, batch: &mut [Sqe]) -> Result<u32, ClaimError> {
        let max = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let mut state = self.state.lock();
        // Pairs with user space's store-release of `sq_tail` after filling entries.
        let sq_tail = self
            .buf
            .load_acquire(HDR_SQ_TAIL)
            .map_err(|_| ClaimError::Corrupt)?;
        // Pairs with user space's store-release of `cq_head` after reading completions.
        let cq_head = self
            .buf
            .load_acquire(HDR_CQ_HEAD)
            .map_err(|_| ClaimError::Corrupt)?;

        let pending = sq_tail.wrapping_sub(state.sq_head);
        let unread = state.cq_tail.wrapping_sub(cq_head);
        if pending > self.layout.sq_entries || unread > self.layout.cq_entries {
            return Err(ClaimError::Corrupt);
        }
        let cq_free = self.layout.cq_entries - unread;
        let cq_free = cq_free.saturating_sub(state.cq_reserved);
        let count = pending.min(max).min(cq_free);
        if count == 0 {
            return if pending > 0 && max > 0 {
                Err(ClaimError::CqFull)
            } else {
                Ok(0)
            };
        }

        let mask = self.layout.sq_entries - 1;
        for (i, out) in (0..count).zip(batch.iter_mut()) {
            let slot = (state.sq_head.wrapping_add(i) & mask) as usize;
            let offset = self.layout.sqes_off + slot * size_of::<Sqe>();
            // The slot is within the ring by construction; read it exactly once.
            *out = self
                .buf
                .read::<Sqe>(offset)
                .map_err(|_| ClaimError::Corrupt)?;
        }
        state.sq_head = state.sq_head.wrapping_add(count);
        state.cq_reserved += count;
        // Pairs with user space's load-acquire of `sq_head` before reusing the slots.
        let _ = self.buf.store_release(HDR_SQ_HEAD, state.sq_head);
        Ok(count)
    }

    /// Posts the completions of consumed submissions, using their reserved slots, and wakes
    /// waiters once.
    pub(crate) fn complete(&self, cqes: &[Cqe]) {
        if cqes.is_empty() {
            return;
        }
        let mut state = self.state.lock();
        for cqe in cqes {
            let slot = (state.cq_tail & (self.layout.cq_entries - 1)) as usize;
            let offset = self.layout.cqes_off + slot * size_of::<Cqe>();
            // Within the ring by construction.
            let _ = self.buf.write(offset, cqe);
            state.cq_tail = state.cq_tail.wrapping_add(1);
            state.cq_reserved = state.cq_reserved.saturating_sub(1);
        }
        // Pairs with user space's load-acquire of `cq_tail` before reading the entries.
        let _ = self.buf.store_release(HDR_CQ_TAIL, state.cq_tail);
        // With `state` held: a waiter counts itself (or a poller marks the ring) under it before
        // it sleeps, so one that saw too few completions is counted here. Without any, the
        // wakeup (an irq-disabling lock on the wait queue per completion) is skipped.
        if state.waiters > 0 || state.polled {
            self.cq_wait.notify_all();
        }
    }

    /// Returns the number of unread completions, or `None` if `cq_head` is impossible.
    fn unread(&self, state: &RingState) -> Option<u32> {
        // Pairs with user space's store-release of `cq_head` after reading completions.
        let cq_head = self.buf.load_acquire(HDR_CQ_HEAD).ok()?;
        let unread = state.cq_tail.wrapping_sub(cq_head);
        (unread <= self.layout.cq_entries).then_some(unread)
    }

    /// Waits until at least `min` completions are unread or `timeout_ns` (if not negative)
    /// passes. Returns the number unread.
    ///
    /// While `work()` says there is work for the waiter (armed atoms whose files became ready),
    /// `run()` does it first, without the lock held; `work` is checked again once the waiter is
    /// queued, so that a [`Rings::wake_waiters`] from any context is never missed.
    ///
    /// Must be called from process context without locks held.
    pub(crate) fn wait(
        &self,
        min: u32,
        timeout_ns: i64,
        work: impl Fn() -> bool,
        mut run: impl FnMut(),
    ) -> Result<u32, WaitError> {
        if min > self.layout.cq_entries {
            return Err(WaitError::Invalid);
        }
        let mut left: Jiffies = if timeout_ns < 0 {
            Jiffies::MAX
        } else {
            let ms = timeout_ns.saturating_add(999_999) / 1_000_000;
            msecs_to_jiffies(u32::try_from(ms).unwrap_or(u32::MAX))
        };
        let mut state = self.state.lock();
        loop {
            if work() {
                drop(state);
                run();
                state = self.state.lock();
            }
            let unread = self.unread(&state).ok_or(WaitError::Invalid)?;
            if unread >= min {
                return Ok(unread);
            }
            if state.shutdown {
                return Err(WaitError::Shutdown);
            }
            if left == 0 {
                return Err(WaitError::TimedOut);
            }
            state.waiters += 1;
            let woken = self
                .cq_wait
                .wait_interruptible_timeout_unless(&mut state, left, &work);
            state.waiters -= 1;
            match woken {
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Timeout => left = 0,
                CondVarTimeoutResult::Signal { .. } => return Err(WaitError::Interrupted),
            }
        }
    }

    /// Wakes every waiter and poller of the ring, so that it looks again at what it waits for.
    ///
    /// Callable from any context, also with a wait queue's lock held (a waiter's wakeup on a
    /// file's queue): it takes only this ring's wait queue lock, with interrupts disabled.
    pub(crate) fn wake_waiters(&self) {
        self.cq_wait.notify_all();
    }

    /// Registers `file`'s poll on new completions and returns its readiness mask.
    pub(crate) fn poll(&self, file: &File, table: &PollTable<'_>) -> u32 {
        table.register_wait(file, &self.cq_wait);
        let mut state = self.state.lock();
        // From now on every completion wakes the queue: a poll or epoll entry may be on it. One
        // posted between the registration and here is seen by the check below instead.
        state.polled = true;
        match self.unread(&state) {
            Some(0) => 0,
            Some(_) => bindings::POLLIN | bindings::POLLRDNORM,
            None => bindings::POLLERR,
        }
    }

    /// Makes every waiter, now and later, return with [`WaitError::Shutdown`].
    pub(crate) fn shutdown(&self) {
        let mut state = self.state.lock();
        state.shutdown = true;
        // With `state` held, so a waiter that has not seen the flag is already queued.
        self.cq_wait.notify_all();
    }

    /// Sets or clears `flag` in the shared header's `flags`.
    ///
    /// An atomic change of the shared word, with no lock: the scheduler hook of a threadlet sets
    /// `SYSLET_RING_NEED_SPARE` under the runqueue lock. User space may overwrite the word; the
    /// flags are hints to it, never read back by the kernel.
    pub(crate) fn set_flag(&self, flag: u32, on: bool) {
        let _ = if on {
            self.buf.fetch_or(HDR_FLAGS, flag)
        } else {
            self.buf.fetch_andnot(HDR_FLAGS, flag)
        };
    }

    /// Reserves a completion slot for a completion posted later with [`Rings::complete`];
    /// returns `false` if the ring has no free slot (or `cq_head` is impossible).
    pub(crate) fn reserve_completion(&self) -> bool {
        let mut state = self.state.lock();
        let Some(unread) = self.unread(&state) else {
            return false;
        };
        if unread + state.cq_reserved >= self.layout.cq_entries {
            return false;
        }
        state.cq_reserved += 1;
        true
    }

    /// Gives back a slot reserved with [`Rings::reserve_completion`] and not used.
    pub(crate) fn unreserve_completion(&self) {
        let mut state = self.state.lock();
        state.cq_reserved = state.cq_reserved.saturating_sub(1);
    }

    /// Returns the offset of field `field` of threadlet slot `index`.
    fn slot_field(&self, index: u32, field: usize) -> usize {
        self.layout.threadlets_off + index as usize * size_of::<ThreadletSlot>() + field
    }

    /// Returns the `state` word of threadlet slot `index` (0 for an index out of range).
    pub(crate) fn threadlet_state(&self, index: u32) -> u64 {
        self.buf
            .load_acquire_u64(self.slot_field(index, SLOT_STATE))
            .unwrap_or(0)
    }

    /// Replaces the `state` word of slot `index` with `new` if it is `old`; returns whether it
    /// did.
    pub(crate) fn threadlet_cmpxchg(&self, index: u32, old: u64, new: u64) -> bool {
        matches!(
            self.buf
                .cmpxchg_u64(self.slot_field(index, SLOT_STATE), old, new),
            Ok(Ok(_))
        )
    }

    /// Returns the `user_data` user space stored in slot `index`.
    pub(crate) fn threadlet_user_data(&self, index: u32) -> u64 {
        self.buf
            .load_acquire_u64(self.slot_field(index, SLOT_USER_DATA))
            .unwrap_or(0)
    }

    /// Counts a block without a spare in slot `index`.
    pub(crate) fn threadlet_count_sync_block(&self, index: u32) {
        let _ = self
            .buf
            .fetch_add(self.slot_field(index, SLOT_SYNC_BLOCKS), 1);
    }

    /// Zeroes slot `index`, for a thread that registers or leaves.
    pub(crate) fn clear_threadlet_slot(&self, index: u32) {
        let _ = self
            .buf
            .write(self.slot_field(index, 0), &ThreadletSlot::default());
    }

    /// Returns the current indices, for fdinfo.
    pub(crate) fn snapshot(&self) -> RingSnapshot {
        let state = self.state.lock();
        RingSnapshot {
            sq_head: state.sq_head,
            sq_tail: self.buf.load_acquire(HDR_SQ_TAIL).unwrap_or(0),
            cq_head: self.buf.load_acquire(HDR_CQ_HEAD).unwrap_or(0),
            cq_tail: state.cq_tail,
            cq_reserved: state.cq_reserved,
        }
    }
}
