// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! Asynchronous system calls through `/dev/syslet`, from Rust.
//!
//! A [`Ring`] runs batches of system calls ("atoms") in the calling thread, in order, as real
//! system calls, through one `ioctl`: typed operations ([`op`]) own their buffers and hand them
//! back with the result ([`Completion::into_bytes`], [`Completion::into_fd`]); [`Request::raw`]
//! runs any system call by number, `unsafe` because its pointers are the caller's promise.
//! [`probe`] asks the kernel what it supports; [`Executor`] chooses, explicitly, between a ring
//! and plain system calls ([`Fallback`]) so a program runs where the module is missing.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! let file = std::fs::File::open("/etc/hostname")?;
//! let mut ring = syslet::Ring::new(8)?;
//! let done = ring.run(vec![syslet::op::read(file.as_fd(), vec![0; 64])])?;
//! let n = done[0].result()? as usize;
//! let bytes = done.into_iter().next().and_then(|c| c.into_bytes()).unwrap_or_default();
//! println!("{}", String::from_utf8_lossy(&bytes[..n]));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`Runtime`] adds the handoff runtime: a bounded pool of spare threads and
//! [threadlets](threadlet): closures run inline by a program, which goes on on a spare thread
//! if one blocks. See [`threadlet`] for what that guarantees and what it asks of the caller.
//!
//! All `unsafe` code is in the `sys` module, each block with its `SAFETY` argument. No async
//! runtime is involved: an exec returns when its batch is done, a threadlet when it is done or
//! has blocked.

mod fallback;
pub mod op;
mod probe;
mod queue;
mod ring;
mod runtime;
mod sys;
pub mod threadlet;

pub use fallback::{Executor, Fallback};
pub use probe::{Features, probe};
pub use ring::{Completion, Ring};
pub use runtime::{DEFAULT_MAX_SPARES, PoolParams, Program, Runtime, Stats};
pub use sys::{DEVICE, Request};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// The fallback runs the typed operations as plain calls and hands buffers back.
    #[test]
    fn fallback_reads_and_writes() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let done = Fallback::run(vec![
            op::write(w.as_fd(), b"hello".to_vec()),
            op::read(r.as_fd(), vec![0; 5]),
        ]);
        assert_eq!(done[0].result().unwrap(), 5);
        assert_eq!(done[1].result().unwrap(), 5);
        let bytes = done.into_iter().nth(1).unwrap().into_bytes().unwrap();
        assert_eq!(&bytes, b"hello");
    }

    /// A failed link cancels the rest of its chain, as on the ring.
    #[test]
    fn fallback_chain_stops_at_first_error() {
        let path = std::ffi::CString::new("/nonexistent/syslet").unwrap();
        let done = Fallback::run(vec![
            op::openat(None, &path, 0, 0).link(),
            op::getppid(),
            op::getppid(),
        ]);
        assert_eq!(done[0].result().unwrap_err().raw_os_error(), Some(2));
        assert_eq!(done[1].raw_result(), -125);
        assert!(done[1].is_refused());
        assert!(done[2].result().is_ok());
    }

    /// `openat` hands the new descriptor over; nothing else does.
    #[test]
    fn fallback_openat_owns_the_descriptor() {
        let path = std::ffi::CString::new("/proc/self/status").unwrap();
        let mut done = Fallback::run(vec![op::openat(None, &path, 0, 0), op::getppid()]);
        let ppid = done.pop().unwrap();
        assert!(ppid.into_fd().is_err());
        assert!(done.pop().unwrap().into_fd().is_ok());
    }

    /// Where the device is missing, starting a runtime says so; the caller picks the fallback.
    #[test]
    fn runtime_start_needs_the_device() {
        match Runtime::start(PoolParams::default()) {
            Ok(rt) => assert!(rt.is_syslet()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        }
        let bad = PoolParams { min_spares: 2, max_spares: 1, idle_ms: 0 };
        assert_eq!(Runtime::start(bad).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    }

    /// Without the device, the executor says so and falls back.
    #[test]
    fn executor_falls_back_explicitly() {
        let (mut ex, why) = Executor::new(4);
        assert_eq!(ex.is_syslet(), why.is_none());
        let done = ex.run(vec![op::getppid()]).unwrap();
        assert_eq!(done[0].result().unwrap(), std::os::unix::process::parent_id() as u64);
    }
}
