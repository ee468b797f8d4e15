// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The raw layer: the ABI of `include/uapi/linux/syslet.h`, the device, the shared mapping, and
//! the crate's only `unsafe` code.
//!
//! Safety model: the kernel reads and writes user memory named by the pointers in a submission
//! while the exec that consumed it runs. [`RawRing::submit`] is the only way to reach the kernel
//! and it takes [`Request`]s, whose pointers come from buffers the request owns ([`Buf`]) or
//! from [`Request::raw`], whose caller promised them valid. The ring keeps each owned buffer
//! until its completion has been read, and an exec without a continuation (the only kind this
//! crate issues) has completed every submission it consumed when it returns.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Updater, ioctl, opcode};
use rustix::mm::{MapFlags, ProtFlags};

/// `struct syslet_sqe`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    pub nr: u32,
    pub flags: u32,
    pub args: [u64; 6],
    pub user_data: u64,
}

/// `struct syslet_cqe`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i64,
    pub flags: u32,
    pub resv0: u32,
    pub resv1: u64,
}

/// `struct syslet_ring_header`.
#[repr(C)]
#[derive(Debug, Default)]
struct RingHeader {
    sq_head: AtomicU32,
    sq_tail: AtomicU32,
    cq_head: AtomicU32,
    cq_tail: AtomicU32,
    sq_mask: u32,
    cq_mask: u32,
    sq_entries: u32,
    cq_entries: u32,
    flags: AtomicU32,
    resv: [u32; 7],
}

/// `struct syslet_params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    resv0: u32,
    mmap_size: u64,
    sqes_off: u64,
    cqes_off: u64,
    resv: [u64; 4],
}

/// `struct syslet_exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Exec {
    to_submit: u32,
    flags: u32,
    continuation: u64,
    submitted: u32,
    status: u32,
    resv: u64,
}

const _: () = {
    assert!(size_of::<Sqe>() == 64);
    assert!(size_of::<Cqe>() == 32);
    assert!(size_of::<RingHeader>() == 64);
    assert!(size_of::<Params>() == 72);
    assert!(size_of::<Exec>() == 32);
};

/// `SYSLET_CQE_F_*`.
pub const CQE_F_INLINE: u32 = 1 << 0;
pub const CQE_F_ASYNC: u32 = 1 << 1;
pub const CQE_F_REFUSED: u32 = 1 << 2;
/// `SYSLET_SQE_LINK`.
pub const SQE_LINK: u32 = 1 << 0;

const IOC_MAGIC: u8 = 0xB9;
const IOC_SETUP: rustix::ioctl::Opcode = opcode::read_write::<Params>(IOC_MAGIC, 1);
const IOC_EXEC: rustix::ioctl::Opcode = opcode::read_write::<Exec>(IOC_MAGIC, 2);

/// The device node.
pub const DEVICE: &str = "/dev/syslet";

/// A buffer a request owns while the kernel may use it; handed back with the completion.
#[derive(Debug)]
pub enum Buf {
    /// Bytes the call reads into (read) or writes out of (write); its length bounds the call.
    Bytes(Vec<u8>),
    /// A NUL-terminated path the call reads.
    Path(CString),
}

impl Buf {
    fn addr(&mut self) -> u64 {
        match self {
            Buf::Bytes(v) => v.as_mut_ptr() as u64,
            Buf::Path(p) => p.as_ptr() as u64,
        }
    }
}

/// One system call to run, with the buffer its pointer argument names.
///
/// # Invariants
///
/// Every pointer in `args` is valid, for what `nr` does with it, until the call completes:
/// either it is `buf`'s address at index `buf_arg` (set by [`RawRing::submit`]) with the
/// lengths in `args` within `buf`, or the creator of a [`Request::raw`] promised it.
///
/// `'fd` is the lifetime of the descriptors it names: a request cannot outlive a borrowed
/// descriptor and then act on whatever file reuses the number.
#[derive(Debug)]
pub struct Request<'fd> {
    pub(crate) nr: u32,
    pub(crate) args: [u64; 6],
    pub(crate) flags: u32,
    pub(crate) buf: Option<(usize, Buf)>,
    /// The call returns a new descriptor for this process (openat).
    pub(crate) opens_fd: bool,
    /// The call closes a descriptor the request owns (close).
    pub(crate) closes_fd: bool,
    pub(crate) _fds: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> Request<'fd> {
    /// A call with no pointer arguments, or only pointers to the `'static` data `args` names.
    pub(crate) fn plain(nr: u32, args: [u64; 6]) -> Self {
        Self { nr, args, flags: 0, buf: None, opens_fd: false, closes_fd: false, _fds: PhantomData }
    }

    /// A call whose argument `arg` is the address of `buf`; the other arguments must keep the
    /// call within `buf` (the crate's typed operations do).
    pub(crate) fn with_buf(nr: u32, args: [u64; 6], arg: usize, buf: Buf) -> Self {
        Self { buf: Some((arg, buf)), ..Self::plain(nr, args) }
    }
}

impl Request<'static> {
    /// Any system call by number and arguments.
    ///
    /// # Safety
    ///
    /// Every pointer in `args` must be valid, for what system call `nr` does with it, until its
    /// completion has been taken from the ring, and every descriptor it names must stay open
    /// (and not be closed by the call unless the caller gives up its ownership) until then.
    pub unsafe fn raw(nr: u32, args: [u64; 6]) -> Self {
        Self::plain(nr, args)
    }
}

impl Request<'_> {

    /// Links this request to the next one: if it fails, the rest of the chain is cancelled.
    pub fn link(mut self) -> Self {
        self.flags |= SQE_LINK;
        self
    }
}

/// The mapped rings of one `/dev/syslet` context, and the buffers of requests in flight.
///
/// # Invariants
///
/// `map` is a shared mapping of `map_len` bytes of the context's rings, laid out as `params`
/// says; `inflight[slot]` holds the buffer of the submission with `user_data` slot + 1 until
/// its completion is taken.
pub struct RawRing {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    params: Params,
    sq_tail: u32,
    inflight: Vec<(Option<Buf>, bool)>,
    free: Vec<usize>,
}

/// A completion taken from the ring, with what its request owned.
#[derive(Debug)]
pub struct Taken {
    pub cqe: Cqe,
    pub buf: Option<Buf>,
    /// The descriptor an `openat` returned, owned now.
    pub fd: Option<OwnedFd>,
}

// SAFETY: The mapping is owned by the ring and only reached through `&mut self` or atomics.
unsafe impl Send for RawRing {}

impl RawRing {
    /// Opens the device and sets up rings of `sq_entries` submissions and `cq_entries`
    /// completions (0: twice `sq_entries`).
    pub fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Self> {
        let fd = rustix::fs::open(DEVICE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        let mut params = Params { sq_entries, cq_entries, ..Default::default() };
        // SAFETY: `IOC_SETUP` reads and writes a `struct syslet_params`, which `params` is.
        unsafe { ioctl(&fd, Updater::<IOC_SETUP, Params>::new(&mut params)) }?;
        let map_len = usize::try_from(params.mmap_size).map_err(|_| io::ErrorKind::InvalidData)?;
        // SAFETY: A new shared mapping of the device at offset 0, of the length it asked for;
        // it is unmapped only in `drop`.
        let map = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }?;
        let map = NonNull::new(map.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        let cq = params.cq_entries as usize;
        Ok(Self {
            fd,
            map,
            map_len,
            params,
            sq_tail: 0,
            inflight: (0..cq).map(|_| (None, false)).collect(),
            free: (0..cq).rev().collect(),
        })
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: The header is at offset 0 of the mapping (type invariant), aligned, and its
        // shared fields are atomics; the mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().cast::<RingHeader>() }
    }

    /// Returns the number of submission entries.
    pub fn sq_entries(&self) -> u32 {
        self.params.sq_entries
    }

    /// Returns the device's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Queues `requests` and runs them in one exec; returns how many the kernel consumed.
    ///
    /// Requests the kernel did not consume (its completion ring was full) are dropped with
    /// their buffers. Every consumed request has completed when this returns: take the
    /// completions with [`RawRing::take_completion`].
    pub fn submit(&mut self, requests: Vec<Request<'_>>) -> io::Result<u32> {
        let head = self.header().sq_head.load(Ordering::Acquire);
        let room = self.params.sq_entries - self.sq_tail.wrapping_sub(head);
        if requests.len() > room as usize || requests.len() > self.free.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let count = requests.len() as u32;
        let first_tail = self.sq_tail;
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
            let index = (self.sq_tail & self.params.sq_entries.wrapping_sub(1)) as usize;
            let offset = self.params.sqes_off as usize + index * size_of::<Sqe>();
            // SAFETY: `offset` is within the submission entries of the mapping (type invariant),
            // aligned for `Sqe`; the kernel does not read this slot before `sq_tail` covers it.
            unsafe { self.map.as_ptr().add(offset).cast::<Sqe>().write_volatile(sqe) };
            // INVARIANT: The buffer named by the submission is kept until its completion.
            self.inflight[slot] = (request.buf.map(|(_, buf)| buf), request.opens_fd);
            self.sq_tail = self.sq_tail.wrapping_add(1);
        }
        // Pairs with the kernel's load-acquire of `sq_tail`.
        self.header().sq_tail.store(self.sq_tail, Ordering::Release);
        let mut exec = Exec { to_submit: count, ..Default::default() };
        // SAFETY: `IOC_EXEC` reads and writes a `struct syslet_exec`, which `exec` is. The
        // submissions it consumes name only memory this ring keeps (type invariant of
        // `Request`), and without a continuation they all complete before it returns.
        let ret = unsafe { ioctl(&self.fd, Updater::<IOC_EXEC, Exec>::new(&mut exec)) };
        let consumed = self.header().sq_head.load(Ordering::Acquire).wrapping_sub(first_tail);
        if consumed < count {
            // Not consumed: take them back, the kernel will not see them.
            for i in consumed..count {
                let index = first_tail.wrapping_add(i) & self.params.sq_entries.wrapping_sub(1);
                let offset = self.params.sqes_off as usize + index as usize * size_of::<Sqe>();
                // SAFETY: As above; the kernel did not consume this entry.
                let sqe = unsafe { self.map.as_ptr().add(offset).cast::<Sqe>().read_volatile() };
                let slot = sqe.user_data as usize - 1;
                self.inflight[slot] = (None, false);
                self.free.push(slot);
            }
            self.sq_tail = first_tail.wrapping_add(consumed);
            self.header().sq_tail.store(self.sq_tail, Ordering::Release);
        }
        ret?;
        Ok(consumed)
    }

    /// Takes the oldest completion, with the buffer its request owned.
    pub fn take_completion(&mut self) -> Option<Taken> {
        let head = self.header().cq_head.load(Ordering::Relaxed);
        // Pairs with the kernel's store-release of `cq_tail`.
        let tail = self.header().cq_tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let index = (head & self.params.cq_entries.wrapping_sub(1)) as usize;
        let offset = self.params.cqes_off as usize + index * size_of::<Cqe>();
        // SAFETY: Within the completion entries (type invariant), aligned; written by the kernel
        // before it published `cq_tail`.
        let cqe = unsafe { self.map.as_ptr().add(offset).cast::<Cqe>().read_volatile() };
        // Pairs with the kernel's load-acquire of `cq_head`.
        self.header().cq_head.store(head.wrapping_add(1), Ordering::Release);
        let (buf, opens_fd) = usize::try_from(cqe.user_data)
            .ok()
            .and_then(|u| u.checked_sub(1))
            .filter(|&slot| slot < self.inflight.len())
            .map(|slot| {
                self.free.push(slot);
                std::mem::take(&mut self.inflight[slot])
            })
            .unwrap_or((None, false));
        let fd = match i32::try_from(cqe.res) {
            // SAFETY: An `openat` this ring submitted ran (it was not refused: a seccomp
            // ERRNO(0) completes a skipped call with 0) and returned this descriptor: the kernel
            // just created it for this process, and nothing else was told of it.
            Ok(fd) if opens_fd && fd >= 0 && cqe.flags & CQE_F_REFUSED == 0 => {
                Some(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            _ => None,
        };
        Some(Taken { cqe, buf, fd })
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: The mapping made in `new`, of that length; nothing refers to it any more.
        let _ = unsafe { rustix::mm::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

/// `struct syslet_park`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Park {
    continuation: u64,
    timeout_ns: i64,
    resv: u64,
}

const IOC_PARK: rustix::ioctl::Opcode = opcode::read_write::<Park>(IOC_MAGIC, 3);

impl RawRing {
    /// Parks the calling thread as a spare for at most `timeout_ns` (0: no limit); returns the
    /// cookie of a continuation it must take over. This crate never names one, so with only
    /// its own rings this ends in `TimedOut`; the probe uses it to learn whether the kernel
    /// knows time limits.
    pub fn park(&self, timeout_ns: i64) -> io::Result<u64> {
        let mut park = Park { timeout_ns, ..Default::default() };
        // SAFETY: `IOC_PARK` reads and writes a `struct syslet_park`, which `park` is.
        unsafe { ioctl(&self.fd, Updater::<IOC_PARK, Park>::new(&mut park)) }?;
        Ok(park.continuation)
    }
}

/// Runs `request` as a plain system call, for the fallback: the typed operations only (a raw
/// request fails with `ENOSYS`).
///
/// Returns the result as the ring would (`-errno` on failure), and what the request owned.
pub fn run_direct(request: Request<'_>) -> Taken {
    let Request { nr, args, buf, opens_fd, closes_fd, .. } = request;
    let mut buf = buf.map(|(_, b)| b);
    let mut fd_out = None;
    let to_res = |r: rustix::io::Result<usize>| match r {
        Ok(n) => n as i64,
        Err(e) => -i64::from(e.raw_os_error()),
    };
    let typed = closes_fd || opens_fd || buf.is_some() || nr == 74 || nr == 110;
    let res = if !typed {
        -38 // ENOSYS: no plain equivalent here for a raw request
    } else {
        let fd_arg = args[0] as i32;
        // SAFETY: A typed request names a descriptor it borrowed for `'fd` (still open: the
        // request's lifetime is bounded by the borrow) or owns (close), or AT_FDCWD (openat,
        // handled apart below).
        let fd = || unsafe { BorrowedFd::borrow_raw(fd_arg) };
        match (nr, buf.as_mut()) {
            (0, Some(Buf::Bytes(v))) => to_res(rustix::io::read(fd(), &mut v[..args[2] as usize])),
            (1, Some(Buf::Bytes(v))) => to_res(rustix::io::write(fd(), &v[..args[2] as usize])),
            (257, Some(Buf::Path(p))) => {
                let opened = if fd_arg == -100 {
                    rustix::fs::openat(
                        rustix::fs::CWD,
                        p.as_c_str(),
                        OFlags::from_bits_retain(args[2] as u32),
                        Mode::from_bits_retain(args[3] as u32),
                    )
                } else {
                    rustix::fs::openat(
                        fd(),
                        p.as_c_str(),
                        OFlags::from_bits_retain(args[2] as u32),
                        Mode::from_bits_retain(args[3] as u32),
                    )
                };
                match opened {
                    Ok(owned) => {
                        let raw = std::os::fd::AsRawFd::as_raw_fd(&owned);
                        fd_out = Some(owned);
                        i64::from(raw)
                    }
                    Err(e) => -i64::from(e.raw_os_error()),
                }
            }
            (3, None) if closes_fd => {
                // SAFETY: `op::close` took the descriptor's ownership into the request.
                drop(unsafe { OwnedFd::from_raw_fd(fd_arg) });
                0
            }
            (74, None) => to_res(rustix::fs::fsync(fd()).map(|()| 0)),
            (110, None) => {
                i64::from(rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()))
            }
            _ => -38,
        }
    };
    Taken {
        cqe: Cqe { res, flags: CQE_F_INLINE, ..Default::default() },
        buf,
        fd: fd_out,
    }
}
