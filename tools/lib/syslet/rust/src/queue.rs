// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The ring protocol without the memory: index arithmetic of the submission and completion
//! rings, and the bookkeeping of the requests in flight. [`crate::sys::RawRing`] runs it on the
//! mapped region; the tests run it on a `Vec`-backed fake, playing the kernel.
//!
//! Indices are free-running 32-bit counters (they wrap); an entry's place is `index & mask`.
//! User space owns `sq_tail` and `cq_head`, the kernel `sq_head` and `cq_tail`.

use std::io;

use crate::sys::{Buf, Cqe, Request, Sqe};

/// The memory of a ring, as the protocol sees it.
pub(crate) trait Shm {
    /// Load-acquire of `sq_head` (pairs with the kernel's store-release).
    fn sq_head(&self) -> u32;
    /// Store-release of `sq_tail` (pairs with the kernel's load-acquire).
    fn publish_sq_tail(&self, tail: u32);
    /// Load of `cq_head` (only user space writes it).
    fn cq_head(&self) -> u32;
    /// Load-acquire of `cq_tail` (pairs with the kernel's store-release).
    fn cq_tail(&self) -> u32;
    /// Store-release of `cq_head` (pairs with the kernel's load-acquire).
    fn publish_cq_head(&self, head: u32);
    /// Writes submission entry `index` (`< sq_entries`); only entries the kernel does not own.
    fn write_sqe(&mut self, index: usize, sqe: Sqe);
    /// Reads submission entry `index` back.
    fn read_sqe(&self, index: usize) -> Sqe;
    /// Reads completion entry `index` (`< cq_entries`).
    fn read_cqe(&self, index: usize) -> Cqe;
}

/// The place of free-running index `counter` in a ring of `entries` (a power of two).
pub(crate) fn slot_of(counter: u32, entries: u32) -> usize {
    (counter & entries.wrapping_sub(1)) as usize
}

/// Free submission entries with the kernel at `head` and user space at `tail`.
pub(crate) fn sq_room(entries: u32, tail: u32, head: u32) -> u32 {
    entries.saturating_sub(tail.wrapping_sub(head))
}

/// Takes the oldest unread completion, if any, and publishes its consumption.
pub(crate) fn pop_cqe(shm: &impl Shm, cq_entries: u32) -> Option<Cqe> {
    let head = shm.cq_head();
    let tail = shm.cq_tail();
    if head == tail {
        return None;
    }
    let cqe = shm.read_cqe(slot_of(head, cq_entries));
    shm.publish_cq_head(head.wrapping_add(1));
    Some(cqe)
}

/// What a request in flight owns until its completion is taken.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    pub buf: Option<Buf>,
    /// The call returns a new descriptor (openat).
    pub opens_fd: bool,
}

/// The submission side's state and the requests in flight, by completion tag.
///
/// # Invariants
///
/// `inflight[i]` is `Some` exactly for the tags `i + 1` given to a submission whose completion
/// has not been taken, and then `i` is not in `free`; `free` holds every other index once.
#[derive(Debug)]
pub(crate) struct Queue {
    sq_entries: u32,
    cq_entries: u32,
    sq_tail: u32,
    inflight: Vec<Option<Owned>>,
    free: Vec<usize>,
}

impl Queue {
    /// A queue for rings of these sizes, with user space's tail at `sq_tail`; at most
    /// `cq_entries` requests in flight (each gets one completion).
    pub fn new(sq_entries: u32, cq_entries: u32, sq_tail: u32) -> Self {
        let cq = cq_entries as usize;
        Self {
            sq_entries,
            cq_entries,
            sq_tail,
            inflight: (0..cq).map(|_| None).collect(),
            free: (0..cq).rev().collect(),
        }
    }

    pub fn sq_entries(&self) -> u32 {
        self.sq_entries
    }

    /// Requests in flight (submitted, completion not taken).
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.inflight.len() - self.free.len()
    }

    /// Writes `requests` as submission entries, tagged `slot + 1`, and publishes them.
    /// Returns the index of the first one; fails with `WouldBlock`, writing nothing, if they do
    /// not fit in the submission ring or in the completions' bookkeeping.
    pub fn push(&mut self, shm: &mut impl Shm, requests: Vec<Request<'_>>) -> io::Result<u32> {
        let room = sq_room(self.sq_entries, self.sq_tail, shm.sq_head());
        if requests.len() > room as usize || requests.len() > self.free.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let first = self.sq_tail;
        for mut request in requests {
            let slot = self.free.pop().ok_or(io::ErrorKind::WouldBlock)?;
            let mut args = request.args;
            if let Some((arg, buf)) = request.buf.as_mut() {
                args[*arg] = buf.addr();
            }
            let sqe = Sqe {
                nr: request.nr,
                flags: request.flags,
                args,
                user_data: slot as u64 + 1,
            };
            shm.write_sqe(slot_of(self.sq_tail, self.sq_entries), sqe);
            // INVARIANT: The buffer the submission names is kept until its completion.
            self.inflight[slot] = Some(Owned {
                buf: request.buf.map(|(_, buf)| buf),
                opens_fd: request.opens_fd,
            });
            self.sq_tail = self.sq_tail.wrapping_add(1);
        }
        shm.publish_sq_tail(self.sq_tail);
        Ok(first)
    }

    /// After an exec of the `count` entries from `first`: takes back (and drops) those the
    /// kernel did not consume, and returns how many it did.
    pub fn settle(&mut self, shm: &mut impl Shm, first: u32, count: u32) -> u32 {
        let consumed = shm.sq_head().wrapping_sub(first).min(count);
        if consumed < count {
            for i in consumed..count {
                let sqe = shm.read_sqe(slot_of(first.wrapping_add(i), self.sq_entries));
                if let Some(slot) = self.slot_of_tag(sqe.user_data) {
                    self.release(slot);
                }
            }
            self.sq_tail = first.wrapping_add(consumed);
            shm.publish_sq_tail(self.sq_tail);
        }
        consumed
    }

    /// Takes the oldest completion, with what its request owned (nothing for a tag this queue
    /// did not give, or gave back already).
    pub fn pop(&mut self, shm: &impl Shm) -> Option<(Cqe, Owned)> {
        let cqe = pop_cqe(shm, self.cq_entries)?;
        let owned = self
            .slot_of_tag(cqe.user_data)
            .and_then(|s| self.release(s))
            .unwrap_or_default();
        Some((cqe, owned))
    }

    fn slot_of_tag(&self, tag: u64) -> Option<usize> {
        usize::try_from(tag)
            .ok()?
            .checked_sub(1)
            .filter(|&s| s < self.inflight.len())
    }

    fn release(&mut self, slot: usize) -> Option<Owned> {
        let owned = self.inflight[slot].take()?;
        self.free.push(slot);
        Some(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A region in plain memory; the test plays the kernel.
    struct Fake {
        sq_head: Cell<u32>,
        sq_tail: Cell<u32>,
        cq_head: Cell<u32>,
        cq_tail: Cell<u32>,
        sqes: Vec<Sqe>,
        cqes: Vec<Cqe>,
    }

    impl Fake {
        fn new(sq: u32, cq: u32, start: u32) -> Self {
            Self {
                sq_head: Cell::new(start),
                sq_tail: Cell::new(start),
                cq_head: Cell::new(start),
                cq_tail: Cell::new(start),
                sqes: vec![Sqe::default(); sq as usize],
                cqes: vec![Cqe::default(); cq as usize],
            }
        }

        /// The kernel: consumes up to `n` published submissions, completing each with
        /// `res` = its system call number.
        fn exec(&mut self, n: u32) {
            for _ in 0..n {
                let head = self.sq_head.get();
                if head == self.sq_tail.get() {
                    break;
                }
                let sqe = self.sqes[slot_of(head, self.sqes.len() as u32)];
                let tail = self.cq_tail.get();
                let at = slot_of(tail, self.cqes.len() as u32);
                self.cqes[at] = Cqe {
                    user_data: sqe.user_data,
                    res: i64::from(sqe.nr),
                    ..Default::default()
                };
                self.cq_tail.set(tail.wrapping_add(1));
                self.sq_head.set(head.wrapping_add(1));
            }
        }
    }

    impl Shm for Fake {
        fn sq_head(&self) -> u32 {
            self.sq_head.get()
        }
        fn publish_sq_tail(&self, tail: u32) {
            self.sq_tail.set(tail);
        }
        fn cq_head(&self) -> u32 {
            self.cq_head.get()
        }
        fn cq_tail(&self) -> u32 {
            self.cq_tail.get()
        }
        fn publish_cq_head(&self, head: u32) {
            self.cq_head.set(head);
        }
        fn write_sqe(&mut self, index: usize, sqe: Sqe) {
            self.sqes[index] = sqe;
        }
        fn read_sqe(&self, index: usize) -> Sqe {
            self.sqes[index]
        }
        fn read_cqe(&self, index: usize) -> Cqe {
            self.cqes[index]
        }
    }

    fn call(nr: u32) -> Request<'static> {
        Request::plain(nr, [0; 6])
    }

    fn with_bytes(nr: u32, bytes: &[u8]) -> Request<'static> {
        Request::with_buf(nr, [0; 6], 1, Buf::Bytes(bytes.to_vec()))
    }

    #[test]
    fn index_arithmetic_wraps() {
        assert_eq!(slot_of(u32::MAX, 8), 7);
        assert_eq!(slot_of(u32::MAX.wrapping_add(1), 8), 0);
        assert_eq!(sq_room(8, u32::MAX - 1, u32::MAX - 4), 5);
        assert_eq!(sq_room(8, 2, u32::MAX - 5), 0);
        assert_eq!(sq_room(8, 10, 3), 1);
    }

    /// Submissions across the 2^32 wrap complete in order, each with its own buffer back.
    #[test]
    fn completions_come_back_in_order_across_the_wrap() {
        let mut fake = Fake::new(4, 8, u32::MAX - 2);
        let mut q = Queue::new(4, 8, u32::MAX - 2);
        for round in 0..5u32 {
            let first = q
                .push(
                    &mut fake,
                    vec![
                        with_bytes(round, &[round as u8]),
                        call(100 + round),
                        call(200),
                    ],
                )
                .unwrap();
            assert_eq!(fake.sq_tail.get(), first.wrapping_add(3));
            fake.exec(3);
            assert_eq!(q.settle(&mut fake, first, 3), 3);
            let (c0, o0) = q.pop(&fake).unwrap();
            assert_eq!(c0.res, i64::from(round));
            assert!(matches!(o0.buf, Some(Buf::Bytes(ref v)) if v == &[round as u8]));
            assert_eq!(q.pop(&fake).unwrap().0.res, i64::from(100 + round));
            assert_eq!(q.pop(&fake).unwrap().0.res, 200);
            assert!(q.pop(&fake).is_none());
            assert_eq!(q.in_flight(), 0);
        }
    }

    /// A batch larger than the free room is refused whole.
    #[test]
    fn full_ring_refuses_the_batch() {
        let mut fake = Fake::new(4, 8, 0);
        let mut q = Queue::new(4, 8, 0);
        q.push(&mut fake, vec![call(1), call(2), call(3)]).unwrap();
        let err = q.push(&mut fake, vec![call(4), call(5)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(fake.sq_tail.get(), 3);
        assert_eq!(q.in_flight(), 3);
    }

    /// Entries the kernel did not consume are taken back: their tags are free again, and the
    /// tail moves back so they are written anew.
    #[test]
    fn unconsumed_entries_are_taken_back() {
        let mut fake = Fake::new(8, 8, 5);
        let mut q = Queue::new(8, 8, 5);
        let first = q.push(&mut fake, (0..5).map(call).collect()).unwrap();
        fake.exec(2);
        assert_eq!(q.settle(&mut fake, first, 5), 2);
        assert_eq!(fake.sq_tail.get(), 7);
        assert_eq!(q.in_flight(), 2);
        let again = q.push(&mut fake, vec![call(9)]).unwrap();
        assert_eq!(again, 7);
        fake.exec(8);
        let res: Vec<i64> = std::iter::from_fn(|| q.pop(&fake).map(|(c, _)| c.res)).collect();
        assert_eq!(res, [0, 1, 9]);
        assert_eq!(q.in_flight(), 0);
    }

    /// A completion whose tag the queue did not give (or gave back) owns nothing and frees
    /// nothing twice.
    #[test]
    fn foreign_tags_free_nothing() {
        let mut fake = Fake::new(2, 4, 0);
        let mut q = Queue::new(2, 4, 0);
        for tag in [0, 1, 4, 5, u64::MAX] {
            fake.cqes[slot_of(fake.cq_tail.get(), 4)] = Cqe {
                user_data: tag,
                ..Default::default()
            };
            fake.cq_tail.set(fake.cq_tail.get() + 1);
            let (cqe, owned) = q.pop(&fake).unwrap();
            assert_eq!(cqe.user_data, tag);
            assert!(owned.buf.is_none());
        }
        assert_eq!(q.in_flight(), 0);
        // Every tag is still handed out once: four requests fit, a fifth does not.
        let first = q.push(&mut fake, vec![call(1), call(2)]).unwrap();
        fake.exec(2);
        q.settle(&mut fake, first, 2);
        let first = q.push(&mut fake, vec![call(3), call(4)]).unwrap();
        fake.exec(2);
        q.settle(&mut fake, first, 2);
        assert_eq!(q.in_flight(), 4);
        let mut tags: Vec<u64> =
            std::iter::from_fn(|| q.pop(&fake).map(|(c, _)| c.user_data)).collect();
        tags.sort();
        assert_eq!(tags, [1, 2, 3, 4]);
    }
}
