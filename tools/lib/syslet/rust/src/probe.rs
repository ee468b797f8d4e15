// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! What the running kernel supports, asked once.

use std::io;

use crate::op;
use crate::sys::RawRing;

/// What the kernel supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Atoms run: a `getppid` atom returned the parent's pid.
    pub atoms: bool,
    /// `SYSLET_IOC_PARK` takes a time limit (spare pools can shrink).
    pub park_timeout: bool,
    /// Threadlets: the region has slots and a thread can register
    /// (`SYSLET_IOC_THREADLET_REGISTER` is not `ENOTTY`); without them [`crate::threadlet::run`]
    /// runs its closure inline.
    pub threadlets: bool,
    /// The pollable path (`SYSLET_SETUP_POLL`, with result forwarding and linked timeouts), as
    /// the C library's `syslet_queue_init_flags()` sets it up. This crate's [`crate::Ring`] does
    /// not use it yet: it hands every buffer back when `run` returns, and an armed atom completes
    /// later.
    pub pollable: bool,
}

/// Asks the kernel what it supports; `Err` (e.g. `NotFound`) when `/dev/syslet` is unusable,
/// in which case [`crate::Fallback`] runs the same operations as plain system calls.
pub fn probe() -> io::Result<Features> {
    let mut ring = RawRing::new(1, 0)?;
    ring.submit(vec![op::getppid()])?;
    let atoms = ring
        .take_completion()
        .is_some_and(|t| t.cqe.res == i64::from(rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())));
    let park_timeout = matches!(
        ring.park(1).map_err(|e| e.kind()),
        Err(io::ErrorKind::TimedOut)
    );
    let threadlets = ring.threadlets_work();
    let pollable = crate::sys::setup_poll_works()?;
    Ok(Features { atoms, park_timeout, threadlets, pollable })
}
