// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The explicit fallback: the same operations, run as plain system calls where `/dev/syslet` is
//! missing. The caller chooses it, and can tell which one it got.

use std::io;

use crate::ring::{Completion, Ring};
use crate::sys::{self, Request};

/// Runs batches on a syslet ring, or as plain system calls.
pub enum Executor {
    /// A ring on `/dev/syslet`.
    Syslet(Ring),
    /// Plain system calls, one after the other, in the caller's thread.
    Direct,
}

/// The fallback executor alone.
pub struct Fallback;

impl Executor {
    /// A ring of `entries` if the device works, else the plain-syscall fallback, with the reason.
    pub fn new(entries: u32) -> (Self, Option<io::Error>) {
        match Ring::new(entries) {
            Ok(ring) => (Executor::Syslet(ring), None),
            Err(err) => (Executor::Direct, Some(err)),
        }
    }

    /// Whether batches go through syslet.
    pub fn is_syslet(&self) -> bool {
        matches!(self, Executor::Syslet(_))
    }

    /// Runs `ops` in order and returns their completions, in order. The fallback stops a chain
    /// at its first failure as the ring does.
    pub fn run(&mut self, ops: Vec<Request<'_>>) -> io::Result<Vec<Completion>> {
        match self {
            Executor::Syslet(ring) => ring.run(ops),
            Executor::Direct => Ok(Fallback::run(ops)),
        }
    }
}

impl Fallback {
    /// Runs `ops` as plain system calls.
    pub fn run(ops: Vec<Request<'_>>) -> Vec<Completion> {
        let mut chain_failed = false;
        ops.into_iter()
            .map(|op| {
                let linked = op.flags & sys::SQE_LINK != 0;
                let taken = if chain_failed {
                    sys::Taken {
                        cqe: sys::Cqe { res: -125, flags: sys::CQE_F_REFUSED, ..Default::default() },
                        buf: op.buf.map(|(_, b)| b),
                        fd: None,
                    }
                } else {
                    sys::run_direct(op)
                };
                chain_failed = linked && taken.cqe.res < 0;
                Completion::from_taken(taken)
            })
            .collect()
    }
}
