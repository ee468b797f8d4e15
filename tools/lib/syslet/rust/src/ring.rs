// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The safe layer: a ring that runs batches of typed operations and hands each buffer back
//! with its result.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::sys::{Buf, CQE_F_ASYNC, CQE_F_INLINE, CQE_F_REFUSED, RawRing, Request};

/// A syslet context: a submission and a completion ring on `/dev/syslet`.
///
/// [`Ring::run`] runs a batch in the calling thread, in order, as real system calls; a call that
/// blocks blocks the caller (this crate issues no continuations yet).
pub struct Ring {
    raw: RawRing,
}

/// The result of one operation, with what it owned.
#[derive(Debug)]
pub struct Completion {
    res: i64,
    flags: u32,
    buf: Option<Buf>,
    fd: Option<OwnedFd>,
}

impl Completion {
    /// The call's result: its value, or the error it failed with.
    pub fn result(&self) -> io::Result<u64> {
        crate::op::result(self.res)
    }

    /// The raw result (`-errno` on failure).
    pub fn raw_result(&self) -> i64 {
        self.res
    }

    /// The operation ran in the submitter's context without a thread switch.
    pub fn is_inline(&self) -> bool {
        self.flags & CQE_F_INLINE != 0
    }

    /// The operation completed after a spare took the submitter's program over.
    pub fn is_async(&self) -> bool {
        self.flags & CQE_F_ASYNC != 0
    }

    /// The operation did not run: refused by policy or seccomp, or its chain failed.
    pub fn is_refused(&self) -> bool {
        self.flags & CQE_F_REFUSED != 0
    }

    /// Hands back the byte buffer of a read or write (of its full length: the result says how
    /// much was transferred).
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self.buf {
            Some(Buf::Bytes(v)) => Some(v),
            _ => None,
        }
    }

    /// The descriptor a successful `openat` returned, owned by the caller now.
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        self.result()?;
        self.fd.ok_or_else(|| io::ErrorKind::InvalidInput.into())
    }
}

impl Completion {
    pub(crate) fn from_taken(t: crate::sys::Taken) -> Self {
        Self { res: t.cqe.res, flags: t.cqe.flags, buf: t.buf, fd: t.fd }
    }
}

impl Ring {
    /// Opens `/dev/syslet` with rings of `entries` submissions (a power of two, at most 4096).
    ///
    /// Fails with `NotFound` where the device is missing: see [`crate::probe`] and
    /// [`crate::Fallback`].
    pub fn new(entries: u32) -> io::Result<Self> {
        Ok(Self { raw: RawRing::new(entries, 0)? })
    }

    /// The device's descriptor (for poll, fdinfo).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.raw.fd()
    }

    /// Runs `ops` in order in one exec and returns their completions, in order.
    ///
    /// Fails with `WouldBlock` if the batch is larger than the ring. A linked operation
    /// ([`Request::link`]) that fails cancels the rest of its chain (`ECANCELED`).
    pub fn run(&mut self, ops: Vec<Request<'_>>) -> io::Result<Vec<Completion>> {
        let n = ops.len();
        if n > self.raw.sq_entries() as usize {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let consumed = self.raw.submit(ops)? as usize;
        let mut out = Vec::with_capacity(consumed);
        out.extend(self.completions().take(consumed));
        if out.len() < n {
            return Err(io::Error::other("the completion ring was full"));
        }
        Ok(out)
    }

    /// The completions not taken yet, oldest first.
    pub fn completions(&mut self) -> impl Iterator<Item = Completion> + '_ {
        std::iter::from_fn(|| self.raw.take_completion().map(Completion::from_taken))
    }
}
