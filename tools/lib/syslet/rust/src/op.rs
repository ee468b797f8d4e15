// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! Typed operations: each builds a [`Request`] whose pointers come from buffers it owns, and
//! turns the completion back into a typed result with the buffer handed back.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys::{Buf, Request};

/// x86-64 system call numbers the typed operations use.
mod nr {
    pub const READ: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const CLOSE: u32 = 3;
    pub const FSYNC: u32 = 74;
    pub const GETPPID: u32 = 110;
    pub const OPENAT: u32 = 257;
}

/// `AT_FDCWD`, for [`crate::Request::raw`].
pub const AT_FDCWD: RawFd = -100;

/// Turns a raw result (`-errno` or a value) into an `io::Result`.
pub fn result(res: i64) -> io::Result<u64> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res as i32))
    } else {
        Ok(res as u64)
    }
}

/// `read(fd, buf, buf.len())` into a buffer the operation owns.
pub fn read(fd: BorrowedFd<'_>, buf: Vec<u8>) -> Request<'_> {
    let len = buf.len() as u64;
    Request::with_buf(nr::READ, [fd.as_raw_fd() as u64, 0, len, 0, 0, 0], 1, Buf::Bytes(buf))
}

/// `write(fd, buf, buf.len())` from a buffer the operation owns.
pub fn write(fd: BorrowedFd<'_>, buf: Vec<u8>) -> Request<'_> {
    let len = buf.len() as u64;
    Request::with_buf(nr::WRITE, [fd.as_raw_fd() as u64, 0, len, 0, 0, 0], 1, Buf::Bytes(buf))
}

/// `openat(dir, path, flags, mode)`, relative to `dir` or, for `None`, the current directory;
/// the completion's [`into_fd`](crate::Completion::into_fd) owns the new descriptor.
pub fn openat<'fd>(dir: Option<BorrowedFd<'fd>>, path: &CStr, flags: i32, mode: u32) -> Request<'fd> {
    let dirfd = dir.map_or(AT_FDCWD, |d| d.as_raw_fd());
    let mut request = Request::with_buf(
        nr::OPENAT,
        [dirfd as u64, 0, flags as u64, u64::from(mode), 0, 0],
        1,
        Buf::Path(CString::from(path)),
    );
    request.opens_fd = true;
    request
}

/// `close(fd)`: the descriptor is consumed; it is closed by the call.
pub fn close(fd: OwnedFd) -> Request<'static> {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    let mut request = Request::plain(nr::CLOSE, [raw as u64, 0, 0, 0, 0, 0]);
    request.closes_fd = true;
    request
}

/// `fsync(fd)`.
pub fn fsync(fd: BorrowedFd<'_>) -> Request<'_> {
    Request::plain(nr::FSYNC, [fd.as_raw_fd() as u64, 0, 0, 0, 0, 0])
}

/// `getppid()`: the cheapest call, for measuring.
pub fn getppid() -> Request<'static> {
    Request::plain(nr::GETPPID, [0; 6])
}
