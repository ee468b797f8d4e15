// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! Threadlets: a closure run inline by the program's thread, with the kernel watching it; if
//! it blocks, the program goes on at once on a spare thread of the
//! [`Runtime`](crate::Runtime)'s pool, while the blocked thread finishes the closure and posts
//! its result.
//!
//! ```no_run
//! use syslet::{PoolParams, Runtime, threadlet::{self, Outcome}};
//! let rt = Runtime::start(PoolParams::default()).unwrap_or_else(|_| Runtime::direct());
//! let total = rt.program(|p| {
//!     let mut pending = Vec::new();
//!     let mut total = 0;
//!     for i in 0..10u64 {
//!         // SAFETY: Nothing thread-bound (thread-locals, locks, `Rc`s) is held across it.
//!         let read = move || std::fs::read(format!("/tmp/f{i}")).map_or(0, |v| v.len());
//!         match unsafe { threadlet::run(p, read) } {
//!             Outcome::Done(n) => total += n,
//!             Outcome::Async(p) => pending.push(p),
//!         }
//!     }
//!     total + pending.into_iter().map(|p| p.wait().unwrap()).sum::<usize>()
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Where each piece runs, and why it is sound:
//!
//! - The program (the closure given to [`Runtime::program`](crate::Runtime::program)) runs on a
//!   stack the runtime owns, not the calling thread's. At a threadlet that blocks, that whole stack
//!   changes threads; it is never run by two threads at once, and the thread that called
//!   `Runtime::program` gets its own stack back at the end. No other stack ever moves: a program
//!   can only be on a runtime stack, so a thread's own stack (its start routine, its thread-local
//!   destructors, a stack the C library recycles when the thread exits) stays with it.
//! - The threadlet's closure runs on the current thread's threadlet stack, start to end on
//!   that thread; being `Send + 'static`, it borrows nothing of the program's stack, which
//!   may be running elsewhere by the time it ends. Its result goes through a heap slot shared
//!   with the [`Pending`]; the kernel's completion (tag = [`Pending::ticket`]) says it is
//!   there, exactly once. A panic in the closure is caught on its stack and resumed by the
//!   taker.
//! - What cannot be checked is what the program holds on its stack across [`run`]: that is
//!   why [`run`] is `unsafe` (see its `# Safety`): no thread-local references and no
//!   thread-bound values may be held across it.

use std::collections::HashMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::runtime::{Program, Shared};
use crate::sys::Entered;
pub use crate::sys::threadlet_run as run;

/// What [`run`] gives back.
#[derive(Debug)]
pub enum Outcome<R> {
    /// The closure did not block: its result, on the same thread, with no system call.
    Done(R),
    /// The closure blocked: the program goes on here, on another thread; the result comes
    /// later.
    Async(Pending<R>),
}

impl<R> Outcome<R> {
    /// Whether the program went on on another thread.
    pub fn is_async(&self) -> bool {
        matches!(self, Outcome::Async(_))
    }

    /// The result, waiting for it if the closure blocked.
    pub fn wait(self) -> io::Result<R> {
        match self {
            Outcome::Done(r) => Ok(r),
            Outcome::Async(p) => p.wait(),
        }
    }
}

/// A threadlet that blocked: its result, once the blocked thread has posted it.
///
/// Waiting reaps the runtime's completions (each marks its own threadlet's result arrived);
/// so does [`Runtime::completions`](crate::Runtime::completions). A `Pending` may be sent to
/// and waited for on any thread. Dropping it drops the result when it comes.
pub struct Pending<R> {
    ticket: u64,
    slot: Arc<ResultSlot<R>>,
    shared: Arc<Shared>,
}

impl<R> std::fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl<R> Pending<R> {
    /// The tag of the threadlet's completion (the `ticket` of its
    /// [`Finished`] in [`Runtime::completions`](crate::Runtime::completions)).
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// Whether the result is there (reaps what completed, without waiting).
    pub fn is_ready(&self) -> bool {
        if !self.slot.arrived() {
            self.shared.reap(Duration::ZERO, || self.slot.arrived());
        }
        self.slot.arrived()
    }

    /// Waits for the result. Resumes the closure's panic, if it panicked; fails with
    /// `EOWNERDEAD` if the thread running it exited first.
    pub fn wait(self) -> io::Result<R> {
        while !self.slot.arrived() {
            self.shared
                .reap(Duration::from_secs(1), || self.slot.arrived());
        }
        self.slot.take()
    }
}

/// A threadlet completion, as [`Runtime::completions`](crate::Runtime::completions) reaps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The threadlet's [`Pending::ticket`].
    pub ticket: u64,
    /// 0: the closure returned (its result is in the `Pending`); 1: it panicked; `-errno`:
    /// it never finished (`-EOWNERDEAD`: its thread exited).
    pub res: i64,
}

/// Status a threadlet's job reports: its result is stored.
const STATUS_STORED: i64 = 0;
/// Status a threadlet's job reports: it panicked; the panic is stored.
const STATUS_PANICKED: i64 = 1;

/// Something a completion can be delivered to.
pub(crate) trait Arrive: Send + Sync {
    fn arrive(&self, res: i64);
}

/// The heap slot a threadlet's result travels through.
pub(crate) struct ResultSlot<R> {
    inner: Mutex<SlotInner<R>>,
}

struct SlotInner<R> {
    /// What the closure returned, or its panic; stored before the status is posted.
    value: Option<std::thread::Result<R>>,
    /// The completion's `res`, once it arrived; `taken` after the value went to its taker.
    res: Option<i64>,
    taken: bool,
}

impl<R> ResultSlot<R> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(SlotInner {
                value: None,
                res: None,
                taken: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotInner<R>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores what the closure gave; returns the status to post.
    pub(crate) fn store(&self, value: std::thread::Result<R>) -> i64 {
        let status = if value.is_ok() {
            STATUS_STORED
        } else {
            STATUS_PANICKED
        };
        self.lock().value = Some(value);
        status
    }

    pub(crate) fn arrived(&self) -> bool {
        self.lock().res.is_some()
    }

    /// Takes the result once it arrived (or, for a threadlet that ran inline, once stored).
    pub(crate) fn take(&self) -> io::Result<R> {
        let (value, res) = {
            let mut inner = self.lock();
            if inner.taken {
                return Err(io::Error::other("syslet: threadlet result taken already"));
            }
            inner.taken = true;
            (inner.value.take(), inner.res)
        };
        match (value, res) {
            (Some(Ok(r)), _) => Ok(r),
            (Some(Err(panic)), _) => panic::resume_unwind(panic),
            (None, Some(res)) if res < 0 => Err(io::Error::from_raw_os_error(-res as i32)),
            (None, _) => Err(io::Error::other(
                "syslet: threadlet finished without a result",
            )),
        }
    }
}

impl<R: Send> Arrive for ResultSlot<R> {
    fn arrive(&self, res: i64) {
        let mut inner = self.lock();
        if inner.res.is_none() {
            inner.res = Some(res);
        }
    }
}

/// Completions by ticket: delivered to their slots, or kept until the slot is known (a
/// completion can be reaped before the program, on the spare, said it waits for it).
#[derive(Default)]
pub(crate) struct Tickets {
    map: HashMap<u64, Ticket>,
}

enum Ticket {
    Waiting(Arc<dyn Arrive>),
    Arrived(i64),
}

impl Tickets {
    /// A completion for `ticket` arrived.
    pub(crate) fn arrive(&mut self, ticket: u64, res: i64) {
        match self.map.remove(&ticket) {
            Some(Ticket::Waiting(slot)) => slot.arrive(res),
            Some(Ticket::Arrived(first)) => {
                // A second completion for one ticket: keep the first (exactly once).
                self.map.insert(ticket, Ticket::Arrived(first));
            }
            None => {
                self.map.insert(ticket, Ticket::Arrived(res));
            }
        }
    }

    /// The result of `ticket` goes to `slot`.
    pub(crate) fn expect(&mut self, ticket: u64, slot: Arc<dyn Arrive>) {
        match self.map.remove(&ticket) {
            Some(Ticket::Arrived(res)) => slot.arrive(res),
            _ => {
                self.map.insert(ticket, Ticket::Waiting(slot));
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// One call of [`run`], on the program's side.
pub(crate) struct Call<R> {
    ticket: u64,
    slot: Arc<ResultSlot<R>>,
}

impl<R: Send + 'static> Call<R> {
    /// A ticket and a slot for `f`, and the job that runs it on the threadlet stack: it runs
    /// `f`, catching a panic, stores the outcome in the slot and returns the status to post.
    pub(crate) fn new<F>(program: &Program, f: F) -> (Self, impl FnOnce() -> i64 + Send + 'static)
    where
        F: FnOnce() -> R + Send + 'static,
    {
        let ticket = program.shared().map_or(0, |s| s.next_ticket());
        let slot = Arc::new(ResultSlot::new());
        let job = {
            let slot = slot.clone();
            move || slot.store(panic::catch_unwind(AssertUnwindSafe(f)))
        };
        (Self { ticket, slot }, job)
    }

    pub(crate) fn ticket(&self) -> u64 {
        self.ticket
    }

    /// After the threadlet: its result, or the `Pending` for it.
    pub(crate) fn finish(self, program: &Program, entered: Entered) -> Outcome<R> {
        let shared = program.shared().cloned();
        match (entered, shared) {
            (Entered::Async, Some(shared)) => {
                shared.note_async();
                let slot: Arc<dyn Arrive> = self.slot.clone();
                shared.expect(self.ticket, slot);
                shared.grow_if_asked();
                Outcome::Async(Pending {
                    ticket: self.ticket,
                    slot: self.slot,
                    shared,
                })
            }
            (_, shared) => {
                if let Some(shared) = shared {
                    shared.grow_if_asked();
                }
                match self.slot.take() {
                    Ok(r) => Outcome::Done(r),
                    // Cannot happen: the job stored before it returned.
                    Err(e) => panic!("syslet: a threadlet that ran inline left no result: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::any::Any;

    fn panic_text(p: &(dyn Any + Send)) -> String {
        let text = p.downcast_ref::<&str>().map(|s| s.to_string());
        text.or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    }

    #[test]
    fn slot_gives_the_value_once() {
        let slot = ResultSlot::new();
        assert_eq!(slot.store(Ok(5u32)), STATUS_STORED);
        assert!(!slot.arrived());
        slot.arrive(STATUS_STORED);
        slot.arrive(-1); // a second completion changes nothing
        assert!(slot.arrived());
        assert_eq!(slot.take().unwrap(), 5);
        assert!(slot.take().is_err());
    }

    #[test]
    fn slot_resumes_the_panic() {
        let slot = ResultSlot::<u32>::new();
        let caught = panic::catch_unwind(|| -> u32 { panic!("in the threadlet") });
        assert_eq!(slot.store(caught), STATUS_PANICKED);
        slot.arrive(STATUS_PANICKED);
        let resumed = panic::catch_unwind(AssertUnwindSafe(|| slot.take())).unwrap_err();
        assert_eq!(panic_text(&*resumed), "in the threadlet");
    }

    #[test]
    fn slot_of_a_dead_thread_says_eownerdead() {
        let slot = ResultSlot::<u32>::new();
        slot.arrive(-130);
        assert_eq!(slot.take().unwrap_err().raw_os_error(), Some(130));
    }

    /// A completion may be reaped before or after the program says it waits for it; it is
    /// delivered once either way, and the table forgets it.
    #[test]
    fn tickets_deliver_once_in_either_order() {
        let mut t = Tickets::default();
        let early = Arc::new(ResultSlot::<u8>::new());
        let late = Arc::new(ResultSlot::<u8>::new());
        t.arrive(1, 0);
        t.expect(1, early.clone());
        t.expect(2, late.clone());
        assert!(early.arrived() && !late.arrived());
        t.arrive(2, -130);
        assert!(late.arrived());
        assert_eq!(t.len(), 0);
        t.arrive(2, 0); // a stray duplicate stays apart, does not reach the slot again
        assert_eq!(late.take().unwrap_err().raw_os_error(), Some(130));
    }

    #[test]
    fn outcome_done_waits_for_nothing() {
        let o: Outcome<u8> = Outcome::Done(3);
        assert!(!o.is_async());
        assert_eq!(o.wait().unwrap(), 3);
    }
}
