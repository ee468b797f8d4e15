// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The raw layer: the ABI of `include/uapi/linux/syslet.h`, the device, the shared mapping, the
//! stacks and continuations of threadlets, and the crate's only `unsafe` code.
//!
//! Safety model of the rings: the kernel reads and writes user memory named by the pointers in
//! a submission while the exec that consumed it runs. [`RawRing::submit`] is the only way to
//! reach the kernel and it takes [`Request`]s, whose pointers come from buffers the request
//! owns ([`Buf`]) or from [`Request::raw`], whose caller promised them valid. The ring keeps
//! each owned buffer until its completion has been read, and an exec without a continuation
//! (the only kind this crate issues) has completed every submission it consumed when it
//! returns.
//!
//! Safety model of threadlets (see "Continuations" below): program code runs on a [`Fiber`], a
//! stack the runtime owns, which moves between threads only as a whole and is run by one
//! thread at a time; every thread has its own [`Worker`] (its home continuation and its
//! threadlet stack), which never moves. What the compiler cannot check, the program holding
//! thread-bound state across a migration, is the contract of [`threadlet_run`].

use std::ffi::{CString, c_void};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{Getter, NoArg, Setter, Updater, ioctl, opcode};
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};

use crate::queue::{self, Queue, Shm};
use crate::runtime::Program;
use crate::threadlet::{Call, Outcome};

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
    threadlets_off: u64,
    resv: [u64; 3],
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

/// `struct syslet_wait`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Wait {
    min_complete: u32,
    flags: u32,
    timeout_ns: i64,
    resv: u64,
}

/// `struct syslet_threadlet_slot`: one registered thread's word, in the shared region.
///
/// Its fields are private to this module: a cookie stored in `state` is a continuation the
/// kernel may hand to a spare, which resumes it; only `Fiber::threadlet` may publish one.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct ThreadletSlot {
    /// 0, or the cookie of the running threadlet's caller, ORed with `THREADLET_*` bits.
    state: AtomicU64,
    /// The running threadlet's completion tag; written before `state`.
    user_data: AtomicU64,
    /// Blocks inside a threadlet that found no spare (kernel-written).
    sync_blocks: AtomicU32,
    resv0: u32,
    resv: [u64; 5],
}


const _: () = {
    assert!(size_of::<Sqe>() == 64);
    assert!(size_of::<Cqe>() == 32);
    assert!(size_of::<RingHeader>() == 64);
    assert!(size_of::<Params>() == 72);
    assert!(size_of::<Exec>() == 32);
    assert!(size_of::<Wait>() == 24);
    assert!(size_of::<ThreadletSlot>() == 64);
};

/// `SYSLET_CQE_F_*`.
pub const CQE_F_INLINE: u32 = 1 << 0;
pub const CQE_F_ASYNC: u32 = 1 << 1;
pub const CQE_F_REFUSED: u32 = 1 << 2;
/// The result of a threadlet that blocked, posted by `SYSLET_IOC_THREADLET_DONE`.
pub const CQE_F_THREADLET: u32 = 1 << 3;
/// `SYSLET_RING_NEED_SPARE`: something blocked with no spare parked.
pub(crate) const RING_NEED_SPARE: u32 = 1 << 0;
/// `SYSLET_MAX_THREADLET_SLOTS`.
const MAX_THREADLET_SLOTS: u32 = 64;
/// `SYSLET_SQE_LINK`.
pub const SQE_LINK: u32 = 1 << 0;
/// `SYSLET_SETUP_POLL`: atoms that would wait for a pollable file are armed instead.
const SETUP_POLL: u32 = 1 << 0;

const IOC_MAGIC: u8 = 0xB9;
const IOC_SETUP: rustix::ioctl::Opcode = opcode::read_write::<Params>(IOC_MAGIC, 1);
const IOC_EXEC: rustix::ioctl::Opcode = opcode::read_write::<Exec>(IOC_MAGIC, 2);
const IOC_PARK: rustix::ioctl::Opcode = opcode::read_write::<Park>(IOC_MAGIC, 3);
const IOC_WAIT: rustix::ioctl::Opcode = opcode::write::<Wait>(IOC_MAGIC, 4);
const IOC_THREADLET_REGISTER: rustix::ioctl::Opcode = opcode::read::<u32>(IOC_MAGIC, 6);
const IOC_THREADLET_UNREGISTER: rustix::ioctl::Opcode = opcode::none(IOC_MAGIC, 7);
const IOC_THREADLET_DONE: rustix::ioctl::Opcode = opcode::write::<i64>(IOC_MAGIC, 8);

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
    pub(crate) fn addr(&mut self) -> u64 {
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

/// `struct syslet_park`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Park {
    continuation: u64,
    timeout_ns: i64,
    resv: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the layout the kernel reported fits a mapping of `len` bytes: every array inside,
/// aligned, ring sizes powers of two.
fn layout_fits(p: &Params, len: usize) -> bool {
    let fits = |off: u64, count: u64, size: u64| {
        off.is_multiple_of(8)
            && count
                .checked_mul(size)
                .and_then(|n| n.checked_add(off))
                .is_some_and(|end| end <= len as u64)
    };
    p.sq_entries.is_power_of_two()
        && p.cq_entries.is_power_of_two()
        && size_of::<RingHeader>() <= len
        && fits(p.sqes_off, p.sq_entries.into(), size_of::<Sqe>() as u64)
        && fits(p.cqes_off, p.cq_entries.into(), size_of::<Cqe>() as u64)
        && (p.threadlets_off == 0
            || fits(
                p.threadlets_off,
                MAX_THREADLET_SLOTS.into(),
                size_of::<ThreadletSlot>() as u64,
            ))
}

/// One `/dev/syslet` context: its descriptor and its mapped region.
///
/// # Invariants
///
/// `map` is a shared mapping of `map_len` bytes of the context's region, laid out as `params`
/// says (checked by [`layout_fits`]); it is unmapped only in `drop`. Submission entries are
/// written only through `&mut self`; completions are consumed through `&self` only under
/// `cq_lock`.
pub(crate) struct Region {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    params: Params,
    cq_lock: Mutex<()>,
}

// SAFETY: The mapping belongs to the region; through `&self` it is reached only by atomics
// (header, threadlet slots) and by copies of completion entries under `cq_lock` (see the type
// invariants), so sharing and sending it is as safe as sharing its atomics.
unsafe impl Send for Region {}
// SAFETY: As above.
unsafe impl Sync for Region {}

/// Whether the kernel accepts `SYSLET_SETUP_POLL` (the pollable path): a setup with it succeeds
/// rather than failing with `EINVAL`.
pub(crate) fn setup_poll_works() -> io::Result<bool> {
    let fd = rustix::fs::open(DEVICE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let mut params = Params { sq_entries: 1, flags: SETUP_POLL, ..Default::default() };
    // SAFETY: `IOC_SETUP` reads and writes a `struct syslet_params`, which `params` is; the
    // rings it sets up are never mapped, and go with `fd`.
    match unsafe { ioctl(&fd, Updater::<IOC_SETUP, Params>::new(&mut params)) } {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

impl Region {
    /// Opens the device and sets up rings of `sq_entries` submissions and `cq_entries`
    /// completions (0: twice `sq_entries`).
    pub(crate) fn open(sq_entries: u32, cq_entries: u32) -> io::Result<Self> {
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
        // INVARIANT: Checked right here; from now on `drop` unmaps it.
        let region = Self { fd, map, map_len, params, cq_lock: Mutex::new(()) };
        if !layout_fits(&region.params, map_len) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "syslet: bad ring layout"));
        }
        Ok(region)
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: The header is at offset 0 of the mapping (type invariant), aligned, and its
        // shared fields are atomics; the mapping lives as long as `self`.
        unsafe { &*self.map.as_ptr().cast::<RingHeader>() }
    }

    /// The device's descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The ring's `flags` word (`RING_NEED_SPARE`).
    pub(crate) fn flags(&self) -> u32 {
        // Pairs with the kernel's store-release of the flags.
        self.header().flags.load(Ordering::Acquire)
    }

    /// Whether the kernel placed threadlet slots in the region.
    pub(crate) fn has_threadlet_slots(&self) -> bool {
        self.params.threadlets_off != 0
    }

    /// Threadlet slot `index`, if the region has it.
    pub(crate) fn threadlet_slot(&self, index: u32) -> Option<&ThreadletSlot> {
        if !self.has_threadlet_slots() || index >= MAX_THREADLET_SLOTS {
            return None;
        }
        let offset =
            self.params.threadlets_off as usize + index as usize * size_of::<ThreadletSlot>();
        // SAFETY: Within the mapping and aligned (type invariant: `layout_fits`); every field is
        // an atomic or reserved, so a shared reference for as long as `self` is sound.
        Some(unsafe { &*self.map.as_ptr().add(offset).cast::<ThreadletSlot>() })
    }

    /// Takes the oldest completion, if any; one consumer at a time.
    pub(crate) fn take_cqe(&self) -> Option<Cqe> {
        let _consumer = lock(&self.cq_lock);
        queue::pop_cqe(self, self.params.cq_entries)
    }

    /// `SYSLET_IOC_WAIT`: until a completion is unread, at most `timeout_ns` (< 0: no limit).
    pub(crate) fn wait(&self, timeout_ns: i64) -> io::Result<()> {
        let wait = Wait { min_complete: 1, timeout_ns, ..Default::default() };
        // SAFETY: `IOC_WAIT` reads a `struct syslet_wait`, which the setter passes.
        unsafe { ioctl(&self.fd, Setter::<IOC_WAIT, Wait>::new(wait)) }?;
        Ok(())
    }

    /// `SYSLET_IOC_PARK` for at most `timeout_ns` (0: no limit); the cookie of a continuation
    /// the calling thread now owns.
    fn park(&self, timeout_ns: i64) -> io::Result<u64> {
        let mut park = Park { timeout_ns, ..Default::default() };
        // SAFETY: `IOC_PARK` reads and writes a `struct syslet_park`, which `park` is.
        unsafe { ioctl(&self.fd, Updater::<IOC_PARK, Park>::new(&mut park)) }?;
        Ok(park.continuation)
    }

    /// `SYSLET_IOC_THREADLET_REGISTER`: the calling thread's slot index.
    fn register(&self) -> io::Result<u32> {
        // SAFETY: `IOC_THREADLET_REGISTER` writes a `__u32`, which the getter provides.
        unsafe { ioctl(&self.fd, Getter::<IOC_THREADLET_REGISTER, u32>::new()) }.map_err(Into::into)
    }

    /// `SYSLET_IOC_THREADLET_UNREGISTER` for the calling thread.
    fn unregister(&self) -> io::Result<()> {
        // SAFETY: `IOC_THREADLET_UNREGISTER` takes no argument.
        unsafe { ioctl(&self.fd, NoArg::<IOC_THREADLET_UNREGISTER>::new()) }.map_err(Into::into)
    }

    /// `SYSLET_IOC_THREADLET_DONE`: posts the calling thread's handed-off threadlet's result.
    fn threadlet_done(&self, res: i64) -> io::Result<()> {
        // SAFETY: `IOC_THREADLET_DONE` reads an `__s64`, which the setter passes.
        unsafe { ioctl(&self.fd, Setter::<IOC_THREADLET_DONE, i64>::new(res)) }.map_err(Into::into)
    }

    /// Whether the calling thread can register for threadlets here (it registers and leaves).
    pub(crate) fn threadlets_work(&self) -> bool {
        if !self.has_threadlet_slots() {
            return false;
        }
        match self.register() {
            Ok(_) => self.unregister().is_ok(),
            Err(e) => e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()),
        }
    }

    fn sqe_ptr(&self, index: usize) -> *mut Sqe {
        assert!(index < self.params.sq_entries as usize, "submission index out of range");
        let offset = self.params.sqes_off as usize + index * size_of::<Sqe>();
        self.map.as_ptr().wrapping_add(offset).cast()
    }

    fn cqe_ptr(&self, index: usize) -> *const Cqe {
        assert!(index < self.params.cq_entries as usize, "completion index out of range");
        let offset = self.params.cqes_off as usize + index * size_of::<Cqe>();
        self.map.as_ptr().wrapping_add(offset).cast()
    }
}

impl Shm for Region {
    fn sq_head(&self) -> u32 {
        self.header().sq_head.load(Ordering::Acquire)
    }

    fn publish_sq_tail(&self, tail: u32) {
        self.header().sq_tail.store(tail, Ordering::Release);
    }

    fn cq_head(&self) -> u32 {
        self.header().cq_head.load(Ordering::Relaxed)
    }

    fn cq_tail(&self) -> u32 {
        self.header().cq_tail.load(Ordering::Acquire)
    }

    fn publish_cq_head(&self, head: u32) {
        self.header().cq_head.store(head, Ordering::Release);
    }

    fn write_sqe(&mut self, index: usize, sqe: Sqe) {
        // SAFETY: In bounds and aligned (checked, and the type invariant); `&mut self` makes
        // this the only user-space writer, and the kernel does not read the entry before
        // `sq_tail` covers it.
        unsafe { self.sqe_ptr(index).write_volatile(sqe) };
    }

    fn read_sqe(&self, index: usize) -> Sqe {
        // SAFETY: In bounds and aligned, as above; a copy of plain data.
        unsafe { self.sqe_ptr(index).read_volatile() }
    }

    fn read_cqe(&self, index: usize) -> Cqe {
        // SAFETY: In bounds and aligned, as above; a copy of plain data the kernel wrote before
        // it published `cq_tail`.
        unsafe { self.cqe_ptr(index).read_volatile() }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: The mapping made in `open`, of that length; nothing refers to it any more
        // (every reference into it borrows `self`).
        let _ = unsafe { rustix::mm::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

/// The rings of one `/dev/syslet` context, and the buffers of requests in flight.
pub struct RawRing {
    region: Region,
    queue: Queue,
}

/// A completion taken from the ring, with what its request owned.
#[derive(Debug)]
pub struct Taken {
    pub cqe: Cqe,
    pub buf: Option<Buf>,
    /// The descriptor an `openat` returned, owned now.
    pub fd: Option<OwnedFd>,
}

impl RawRing {
    /// Opens the device and sets up rings of `sq_entries` submissions and `cq_entries`
    /// completions (0: twice `sq_entries`).
    pub fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Self> {
        let region = Region::open(sq_entries, cq_entries)?;
        let tail = region.header().sq_tail.load(Ordering::Relaxed);
        let queue = Queue::new(region.params.sq_entries, region.params.cq_entries, tail);
        Ok(Self { region, queue })
    }

    /// Returns the number of submission entries.
    pub fn sq_entries(&self) -> u32 {
        self.queue.sq_entries()
    }

    /// Returns the device's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.region.fd()
    }

    /// Whether the kernel has threadlets (the calling thread could register).
    pub fn threadlets_work(&self) -> bool {
        self.region.threadlets_work()
    }

    /// Queues `requests` and runs them in one exec; returns how many the kernel consumed.
    ///
    /// Requests the kernel did not consume (its completion ring was full) are dropped with
    /// their buffers. Every consumed request has completed when this returns: take the
    /// completions with [`RawRing::take_completion`].
    pub fn submit(&mut self, requests: Vec<Request<'_>>) -> io::Result<u32> {
        let count = requests.len() as u32;
        let first = self.queue.push(&mut self.region, requests)?;
        let mut exec = Exec { to_submit: count, ..Default::default() };
        // SAFETY: `IOC_EXEC` reads and writes a `struct syslet_exec`, which `exec` is. The
        // submissions it consumes name only memory the queue keeps (type invariant of
        // `Request`), and without a continuation they all complete before it returns.
        let ret = unsafe { ioctl(&self.region.fd, Updater::<IOC_EXEC, Exec>::new(&mut exec)) };
        let consumed = self.queue.settle(&mut self.region, first, count);
        ret?;
        Ok(consumed)
    }

    /// Takes the oldest completion, with the buffer its request owned.
    pub fn take_completion(&mut self) -> Option<Taken> {
        let (cqe, owned) = self.queue.pop(&self.region)?;
        let fd = match i32::try_from(cqe.res) {
            // SAFETY: An `openat` this ring submitted ran (it was not refused: a seccomp
            // ERRNO(0) completes a skipped call with 0) and returned this descriptor: the kernel
            // just created it for this process, and nothing else was told of it.
            Ok(fd) if owned.opens_fd && fd >= 0 && cqe.flags & CQE_F_REFUSED == 0 => {
                Some(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            _ => None,
        };
        Some(Taken { cqe, buf: owned.buf, fd })
    }

    /// Parks the calling thread as a spare for at most `timeout_ns` (0: no limit); returns the
    /// cookie of a continuation it must take over. A ring names none, so this ends in
    /// `TimedOut`; the probe uses it to learn whether the kernel knows time limits.
    pub fn park(&self, timeout_ns: i64) -> io::Result<u64> {
        self.region.park(timeout_ns)
    }
}

// ---------------------------------------------------------------------------------------------
// Continuations.
//
// A continuation is "the rest of the program" at a call to one of the functions below: what
// the callee must preserve (rbx, rbp, r12-r15, the stack pointer, the return address, MXCSR and
// the x87 control word), saved on the stack it was called on, just below the return address.
// Its address is the cookie (16-byte aligned: the low bits are free for the kernel's flags).
// Layout from the cookie up, as in tools/lib/syslet/cont_x86_64.S:
//
//	 0	MXCSR (4 bytes), x87 control word (2 bytes), padding
//	 8	r15, r14, r13, r12, rbx, rbp (8 bytes each)
//	56	return address (pushed by the caller's call)
//
// Three kinds of stacks:
//
//  - a thread's own stack, whose continuation while it runs a program is the thread's *home*
//    (`Worker::home`); it never leaves its thread;
//  - a fiber's stack, on which a program runs; it moves between threads as a whole, only at a
//    threadlet that blocked, and is run by one thread at a time;
//  - a thread's threadlet stack, on which a threadlet's closure runs; it never leaves its
//    thread either (a blocked threadlet finishes where it started).
//
// Not carried across threads: the protection-key register, a CET shadow stack (not used by
// Rust binaries on Linux today), and everything the kernel keeps per thread.
//
// No function here has unwind information, on purpose: an unwinder must stop at a fiber's or a
// threadlet's first frame rather than walk into another stack. Nothing unwinds through them:
// the closures they call catch panics first (and an `extern "C"` function aborts on one).
// ---------------------------------------------------------------------------------------------

#[cfg(not(target_arch = "x86_64"))]
compile_error!("syslet: threadlet continuations exist for x86-64 only (atoms are x86-64 calls)");

/// What the switching functions return: rax, rdx (an `{i64, i64}` comes back in both).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Pair {
    a: i64,
    b: i64,
}

/// `Pair::a` back home: the program running on the fiber ended on this thread.
const BACK_FINISHED: i64 = 1;
/// `Pair::a` back home: a threadlet of this thread blocked and a spare took the program over;
/// `Pair::b` is the threadlet's status.
const BACK_ORPHANED: i64 = 2;

core::arch::global_asm!(
    ".text",
    // Pair syslet_rs_switch(u64 *home, void *stack_top, void (*f)(void *), void *arg)
    //
    // Saves the caller's continuation as this thread's home, moves to `stack_top` (a fiber's,
    // 16-byte aligned) and calls f(arg), which never returns: the program it runs ends by
    // resuming the home of whichever thread runs it then, and a threadlet that blocks resumes
    // its own thread's home. Either comes back here as a `Pair` (`BACK_*`).
    ".globl syslet_rs_switch",
    ".hidden syslet_rs_switch",
    ".type syslet_rs_switch, @function",
    "syslet_rs_switch:",
    "    pushq %rbp",              // the callee-saved registers: the continuation
    "    pushq %rbx",
    "    pushq %r12",
    "    pushq %r13",
    "    pushq %r14",
    "    pushq %r15",
    "    subq $8, %rsp",           // room for the two control words; rsp is 16-byte aligned now
    "    stmxcsr (%rsp)",          // SSE rounding and exception masks
    "    fnstcw 4(%rsp)",          // x87 precision, rounding and masks
    "    movq %rsp, (%rdi)",       // home = the cookie: where the continuation is
    "    movq %rsi, %rsp",         // onto the fiber's stack; this one is left as it is
    "    movq %rcx, %rdi",         // f's argument
    "    call *%rdx",              // f(arg), on the fiber: does not return
    "    ud2",
    ".size syslet_rs_switch, .-syslet_rs_switch",
    //
    // Pair syslet_rs_take_over(u64 *home, u64 cookie)
    //
    // Saves the caller's continuation as this thread's home, then resumes the program
    // continuation at `cookie` (handed over by SYSLET_IOC_PARK): its threadlet call returns
    // {0, 1} ("went async") on this thread. Comes back here as `syslet_rs_switch` does.
    ".globl syslet_rs_take_over",
    ".hidden syslet_rs_take_over",
    ".type syslet_rs_take_over, @function",
    "syslet_rs_take_over:",
    "    pushq %rbp",              // the home continuation, as in syslet_rs_switch
    "    pushq %rbx",
    "    pushq %r12",
    "    pushq %r13",
    "    pushq %r14",
    "    pushq %r15",
    "    subq $8, %rsp",
    "    stmxcsr (%rsp)",
    "    fnstcw 4(%rsp)",
    "    movq %rsp, (%rdi)",       // home = the cookie of this continuation
    "    movq %rsi, %rdi",         // the program's cookie, first argument of resume
    "    xorl %esi, %esi",         // its threadlet call returns a = 0 ...
    "    movl $1, %edx",           // ... and b = 1: went async
    "    jmp syslet_rs_resume",
    ".size syslet_rs_take_over, .-syslet_rs_take_over",
    //
    // Pair syslet_rs_threadlet_enter(void *stack_top, i64 (*f)(void *), void *arg,
    //                                u64 *slot_state, u64 *home)
    //
    // Saves the caller's continuation (on the fiber), moves to `stack_top` (this thread's
    // threadlet stack, 16-byte aligned), publishes the cookie in the thread's slot and calls
    // f(arg). From the store of the cookie until its exchange with 0, the kernel hands the
    // continuation to a parked spare if this thread sleeps. Leaving with the cookie still there:
    // f ran inline; back onto the fiber, returning {f's status, 0}. Leaving with anything else
    // (cookie | SYSLET_THREADLET_HANDED): the program runs on a spare now, whose
    // syslet_rs_take_over returned it {0, 1}; this thread never touches the fiber again and
    // goes home with {BACK_ORPHANED, f's status}.
    ".globl syslet_rs_threadlet_enter",
    ".hidden syslet_rs_threadlet_enter",
    ".type syslet_rs_threadlet_enter, @function",
    "syslet_rs_threadlet_enter:",
    "    pushq %rbp",              // the program's continuation, same layout
    "    pushq %rbx",
    "    pushq %r12",
    "    pushq %r13",
    "    pushq %r14",
    "    pushq %r15",
    "    subq $8, %rsp",
    "    stmxcsr (%rsp)",
    "    fnstcw 4(%rsp)",
    "    movq %rcx, %r12",         // the slot's state word; callee-saved, so f keeps it for us
    "    movq %r8, %r13",          // this thread's home word, for the handed-off path
    "    movq %rsp, %rbx",         // the cookie: 16-byte aligned, low bits clear
    "    movq %rdi, %rsp",         // onto the threadlet stack
    "    movq %rdx, %rdi",         // f's argument
    "    movq %rbx, (%r12)",       // enter: a block now hands the continuation over (an x86
                                   // store is a release: the saved registers and user_data
                                   // are visible first)
    "    call *%rsi",              // f(arg), on the threadlet stack; status in rax
    "    xorl %ecx, %ecx",
    "    xchgq %rcx, (%r12)",      // leave, atomically: no handoff after this
    "    cmpq %rcx, %rbx",         // still the bare cookie: nothing took the program over
    "    jne 2f",
    "    movq %rbx, %rsp",         // back onto the fiber
    "    addq $8, %rsp",           // the control words did not change (f is an ABI function)
    "    popq %r15",               // nor did the callee-saved registers
    "    popq %r14",
    "    popq %r13",
    "    popq %r12",
    "    popq %rbx",
    "    popq %rbp",
    "    xorl %edx, %edx",         // b = 0: ran inline; a = f's status, in rax
    "    ret",
    "2:  movq %rax, %rdx",         // handed off: b = f's status, for home to post
    "    movq (%r13), %rdi",       // this thread's home continuation
    "    movl ${orphaned}, %esi",  // a = BACK_ORPHANED
    "    jmp syslet_rs_resume",    // home; the threadlet stack is free again
    ".size syslet_rs_threadlet_enter, .-syslet_rs_threadlet_enter",
    //
    // void syslet_rs_resume(u64 cookie, i64 a, i64 b)
    //
    // Resumes the continuation saved at `cookie` on the calling thread: the call that saved it
    // returns {a, b}. The stack the caller is on is abandoned (nothing on it may still be
    // needed); `cookie` must be a continuation no thread runs.
    ".globl syslet_rs_resume",
    ".hidden syslet_rs_resume",
    ".type syslet_rs_resume, @function",
    "syslet_rs_resume:",
    "    movq %rdi, %rsp",         // onto the saved stack, at the continuation
    "    ldmxcsr (%rsp)",          // its SSE modes, not this thread's
    "    fldcw 4(%rsp)",           // and its x87 control word
    "    addq $8, %rsp",
    "    popq %r15",               // the callee-saved registers as it left them
    "    popq %r14",
    "    popq %r13",
    "    popq %r12",
    "    popq %rbx",
    "    popq %rbp",
    "    movq %rsi, %rax",         // a; b is in rdx already
    "    ret",                     // into the saved call's caller, now on this thread
    ".size syslet_rs_resume, .-syslet_rs_resume",
    orphaned = const BACK_ORPHANED,
    options(att_syntax)
);

unsafe extern "C" {
    fn syslet_rs_switch(
        home: *mut u64,
        stack_top: *mut u8,
        f: extern "C" fn(*mut c_void) -> !,
        arg: *mut c_void,
    ) -> Pair;
    fn syslet_rs_take_over(home: *mut u64, cookie: u64) -> Pair;
    fn syslet_rs_threadlet_enter(
        stack_top: *mut u8,
        f: extern "C" fn(*mut c_void) -> i64,
        arg: *mut c_void,
        slot_state: *mut u64,
        home: *mut u64,
    ) -> Pair;
    fn syslet_rs_resume(cookie: u64, a: i64, b: i64) -> !;
}

/// The current stack pointer.
fn stack_pointer() -> u64 {
    let sp: u64;
    // SAFETY: Reads a register; touches no memory.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    sp
}

const PAGE: usize = 4096;

/// An anonymous mapping used as a stack, with a guard page below it.
///
/// # Invariants
///
/// `base` is a private mapping of `len` bytes, its lowest page inaccessible; unmapped in `drop`.
pub(crate) struct Stack {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: Plain memory; which thread runs on it is governed by `Fiber` and `Worker`.
unsafe impl Send for Stack {}
// SAFETY: `&Stack` gives out addresses only.
unsafe impl Sync for Stack {}

impl Stack {
    /// A stack of at least `size` usable bytes (touched lazily).
    pub(crate) fn new(size: usize) -> io::Result<Self> {
        let len = size.max(PAGE).next_multiple_of(PAGE) + PAGE;
        // SAFETY: A new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK | MapFlags::NORESERVE,
            )
        }?;
        let base = NonNull::new(base.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        // INVARIANT: Unmapped by `drop` from here on, also if the guard fails.
        let stack = Self { base, len };
        // SAFETY: The lowest page of the mapping just made, which nothing uses: the guard, so
        // that an overflow faults instead of corrupting what lies below.
        unsafe { rustix::mm::mprotect(base.as_ptr().cast(), PAGE, MprotectFlags::empty()) }?;
        Ok(stack)
    }

    /// One past the highest byte: where a stack starts (page-aligned, so 16-byte aligned).
    fn top(&self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(self.len)
    }

    /// Whether `addr` is in the usable part.
    pub(crate) fn contains(&self, addr: u64) -> bool {
        let lo = self.base.as_ptr() as u64 + PAGE as u64;
        addr >= lo && addr < self.top() as u64
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: The mapping made in `new`; its owner drops it only when no thread runs on it
        // (see `Fiber`'s drop; a worker's threadlet stack is used only during its calls).
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// `Fiber::state`.
const FIBER_NEW: u8 = 0;
const FIBER_RUNNING: u8 = 1;
const FIBER_DONE: u8 = 2;

/// A stack a program runs on, from thread to thread.
///
/// # Invariants
///
/// - While `state` is `FIBER_RUNNING`, a program started by [`Worker::run`] lives on `stack`:
///   either exactly one thread runs it, and then `cur` points to that thread's [`Worker`],
///   borrowed by its `run` or `take_over` call for as long as it runs the program; or no
///   thread does, between a threadlet's handoff and a spare's `take_over`.
/// - `state` becomes `FIBER_DONE` only after the program ended and its last thread left the
///   stack; the stack is unmapped only when `NEW` or `DONE` (otherwise it is leaked).
pub(crate) struct Fiber {
    stack: ManuallyDrop<Stack>,
    cur: AtomicPtr<Worker>,
    state: AtomicU8,
}

impl Fiber {
    /// A fiber with a stack of `size` bytes.
    pub(crate) fn new(size: usize) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            stack: ManuallyDrop::new(Stack::new(size)?),
            cur: AtomicPtr::new(std::ptr::null_mut()),
            state: AtomicU8::new(FIBER_NEW),
        }))
    }

    /// Whether `cookie` (a continuation's address) is on this fiber's stack.
    pub(crate) fn contains(&self, cookie: u64) -> bool {
        self.stack.contains(cookie)
    }

    /// Whether the program started on it has ended and left it.
    #[cfg(test)]
    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIBER_DONE
    }

    /// The worker of the thread running this fiber's program, if the caller runs on this
    /// fiber's stack (otherwise `None`).
    fn current_worker(&self) -> Option<&Worker> {
        let running = self.state.load(Ordering::Acquire) == FIBER_RUNNING;
        if !running || !self.stack.contains(stack_pointer()) {
            return None;
        }
        let worker = self.cur.load(Ordering::Acquire);
        // SAFETY: The caller runs on this fiber's stack, so this thread runs its program, and
        // `cur` is this thread's worker, borrowed by the `run` or `take_over` call that
        // switched here until this thread leaves the fiber (type invariant); the reference
        // does not outlive the caller's use on this thread (see `threadlet`, `fiber_main`).
        unsafe { worker.as_ref() }
    }

    /// Runs `job` as a threadlet: on this thread's threadlet stack, watched by the kernel.
    /// `Inline(status)` if it did not block (or could not be watched: then it just ran);
    /// `Async` if it blocked and a spare took the program over: this call returns on the
    /// spare's thread, while the current thread finishes `job` and posts its status.
    ///
    /// # Safety
    ///
    /// As [`threadlet_run`]: the caller, if it runs on this fiber, holds nothing across the
    /// call that must stay on the current OS thread.
    pub(crate) unsafe fn threadlet<J>(&self, user_data: u64, job: J) -> Entered
    where
        J: FnOnce() -> i64 + Send + 'static,
    {
        // Unwatched, the job just runs: off this fiber (nested in a threadlet, another stack),
        // unwinding (the panic count is per thread), or on a thread without a slot.
        if std::thread::panicking() {
            return Entered::Inline(job());
        }
        let Some(worker) = self.current_worker() else {
            return Entered::Inline(job());
        };
        let Some(slot) = worker.slot().filter(|s| s.state.load(Ordering::Relaxed) == 0) else {
            return Entered::Inline(job());
        };
        slot.user_data.store(user_data, Ordering::Relaxed);
        let arg = Box::into_raw(Box::new(job)).cast::<c_void>();
        // SAFETY:
        // - The threadlet stack is this thread's and unused (no threadlet runs here: its state
        //   is 0), aligned; the slot's state word and the home word are this thread's and live
        //   while it runs this program (`Worker` is borrowed by the call that switched here).
        // - `trampoline::<J>` takes `arg`, a leaked `Box<J>`, exactly once.
        // - This fiber's program continuation is saved on this fiber; if a spare takes it,
        //   this thread never returns to it (it resumes its home, which is live: the `run` or
        //   `take_over` that brought it here waits in it), and the program goes on with the
        //   spare as the only thread on the fiber.
        // - What the program holds across the call may be used on another thread afterwards:
        //   the caller promised that nothing of it is bound to this thread.
        // `worker` and `slot` are not used after the call: they may be another thread's then.
        let pair = unsafe {
            syslet_rs_threadlet_enter(
                worker.stack.top(),
                trampoline::<J>,
                arg,
                slot.state.as_ptr(),
                worker.home.as_ptr(),
            )
        };
        if pair.b == 0 { Entered::Inline(pair.a) } else { Entered::Async }
    }
}

impl Drop for Fiber {
    fn drop(&mut self) {
        if *self.state.get_mut() != FIBER_RUNNING {
            // SAFETY: Dropped once, here; no program lives on the stack (type invariant).
            unsafe { ManuallyDrop::drop(&mut self.stack) };
        }
        // A running fiber's stack is leaked: a thread may still be on it.
    }
}

/// How a threadlet call came back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entered {
    /// It did not block (or was not watched), with the job's status.
    Inline(i64),
    /// It blocked: the caller goes on on another thread; the job's status is posted later.
    Async,
}

/// Runs the job a threadlet call boxed, on the threadlet stack.
extern "C" fn trampoline<J: FnOnce() -> i64>(arg: *mut c_void) -> i64 {
    // SAFETY: `arg` is the `Box<J>` leaked by `Fiber::threadlet` for this call, used once.
    let job = unsafe { Box::from_raw(arg.cast::<J>()) };
    job()
}

/// What `Worker::run` hands to the fiber.
struct Start<F> {
    body: F,
    fiber: Arc<Fiber>,
}

/// The first frame of a fiber: runs the program, then goes home on whichever thread ended it.
extern "C" fn fiber_main<F: FnOnce() + Send>(arg: *mut c_void) -> ! {
    let home = {
        // SAFETY: `arg` is the `Box<Start<F>>` leaked by `Worker::run` for this fiber, used
        // once.
        let start = unsafe { Box::from_raw(arg.cast::<Start<F>>()) };
        let Start { body, fiber } = *start;
        body();
        let worker = fiber.current_worker().unwrap_or_else(|| std::process::abort());
        worker.home.load(Ordering::Relaxed)
        // `fiber` goes here; never the last reference (`run`/`take_over` hold one).
    };
    // SAFETY: `home` is the continuation of the thread running this, saved by its `run` or
    // `take_over` (live: it waits there). Nothing on this stack is needed any more: the body
    // ended and every local is gone; that call marks the fiber done once off it.
    unsafe { syslet_rs_resume(home, BACK_FINISHED, 0) }
}

/// How a worker came home from a program.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Back {
    /// The program ended on this thread.
    Finished,
    /// A threadlet of this thread blocked and a spare took the program over; this is the
    /// threadlet's status, already posted as its completion (with a slot in the ring).
    Orphaned(i64),
}

/// A continuation a spare was handed by `SYSLET_IOC_PARK`.
#[derive(Debug)]
pub(crate) struct Handed {
    cookie: u64,
}

impl Handed {
    pub(crate) fn cookie(&self) -> u64 {
        self.cookie
    }
}

/// Where a worker's slot word is.
enum SlotRef {
    /// Slot `index` of the region: the thread is registered.
    Ring(u32),
    /// A word of the tests' own, which the tests play the kernel on.
    #[cfg(test)]
    Test(Arc<ThreadletSlot>),
}

/// What one OS thread needs to run programs: its home continuation, its threadlet stack, its
/// registration. It belongs to that thread (neither `Send` nor `Sync`); programs reach it
/// through [`Fiber`]'s `cur` only on that thread.
pub(crate) struct Worker {
    home: AtomicU64,
    stack: Stack,
    region: Option<Arc<Region>>,
    slot: Option<SlotRef>,
    _thread: PhantomData<*const ()>,
}

impl Worker {
    /// A worker for the calling thread, registered on `region` for threadlets if the kernel
    /// lets it; otherwise its threadlets run unwatched, and the error says why.
    pub(crate) fn new(
        region: &Arc<Region>,
        stack_size: usize,
    ) -> io::Result<(Self, Option<io::Error>)> {
        let stack = Stack::new(stack_size)?;
        let (slot, why) = match region.register() {
            Ok(index) => (Some(SlotRef::Ring(index)), None),
            Err(e) => (None, Some(e)),
        };
        let worker = Self {
            home: AtomicU64::new(0),
            stack,
            region: Some(region.clone()),
            slot,
            _thread: PhantomData,
        };
        Ok((worker, why))
    }

    fn slot(&self) -> Option<&ThreadletSlot> {
        match self.slot.as_ref()? {
            SlotRef::Ring(index) => self.region.as_ref()?.threadlet_slot(*index),
            #[cfg(test)]
            SlotRef::Test(slot) => Some(slot),
        }
    }

    /// Runs `body` on `fiber` (new), on this thread, until it ends here
    /// ([`Back::Finished`]) or a threadlet of this thread hands it to a spare
    /// ([`Back::Orphaned`]: it goes on there, and the thread that ends it comes home
    /// `Finished`).
    /// `body` must not unwind (the process aborts if it does).
    pub(crate) fn run<F>(&self, fiber: &Arc<Fiber>, body: F) -> io::Result<Back>
    where
        F: FnOnce() + Send + 'static,
    {
        let fresh = fiber.state.compare_exchange(
            FIBER_NEW,
            FIBER_RUNNING,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        if fresh.is_err() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "syslet: fiber used already"));
        }
        // INVARIANT: This thread is about to run the fiber, and `self` is borrowed until it
        // leaves it.
        fiber.cur.store(std::ptr::from_ref(self).cast_mut(), Ordering::Release);
        let start = Box::into_raw(Box::new(Start { body, fiber: fiber.clone() })).cast::<c_void>();
        // SAFETY: The fiber's stack is new and unused, aligned; `fiber_main::<F>` takes `start`
        // once; the home word is this thread's, saved before anything can resume it; the
        // program comes back here only through `syslet_rs_resume` of this home, as a `Pair`.
        let pair = unsafe {
            syslet_rs_switch(self.home.as_ptr(), fiber.stack.top(), fiber_main::<F>, start)
        };
        Ok(self.came_home(fiber, pair))
    }

    /// Parks this thread as a spare for at most `timeout_ns` (0: no limit).
    pub(crate) fn park(&self, timeout_ns: i64) -> io::Result<Handed> {
        let region = self.region.as_ref().ok_or(io::ErrorKind::Unsupported)?;
        Ok(Handed { cookie: region.park(timeout_ns)? })
    }

    /// Takes over the program continuation `handed`, which lives on `fiber`, and runs it until
    /// it ends here or hands off again. Aborts if `handed` is not on `fiber`: the program it
    /// belongs to cannot be resumed elsewhere, and would be lost.
    pub(crate) fn take_over(&self, fiber: &Arc<Fiber>, handed: Handed) -> Back {
        if !fiber.contains(handed.cookie) || fiber.state.load(Ordering::Acquire) != FIBER_RUNNING {
            std::process::abort();
        }
        // INVARIANT: The program's previous thread gave it up (the kernel marked its slot
        // HANDED, so it never resumes it); this thread is its only one from here on.
        fiber.cur.store(std::ptr::from_ref(self).cast_mut(), Ordering::Release);
        // SAFETY: `handed.cookie` is a continuation saved by `syslet_rs_threadlet_enter` on
        // `fiber`'s live stack (checked above) and handed to this thread alone by the kernel;
        // its thread will not touch it again. The home word is this thread's.
        let pair = unsafe { syslet_rs_take_over(self.home.as_ptr(), handed.cookie) };
        self.came_home(fiber, pair)
    }

    fn came_home(&self, fiber: &Fiber, pair: Pair) -> Back {
        match pair.a {
            BACK_FINISHED => {
                // INVARIANT: Off the fiber's stack for good.
                fiber.state.store(FIBER_DONE, Ordering::Release);
                Back::Finished
            }
            BACK_ORPHANED => {
                // The kernel reserved a completion for it when it handed the program over: a
                // failure here is a broken protocol, and the program would wait forever.
                if let (Some(SlotRef::Ring(_)), Some(region)) = (&self.slot, &self.region) {
                    if region.threadlet_done(pair.b).is_err() {
                        std::process::abort();
                    }
                }
                Back::Orphaned(pair.b)
            }
            _ => std::process::abort(),
        }
    }

    /// A worker on no ring, whose slot word is `slot`, for tests that play the kernel.
    #[cfg(test)]
    fn for_test(slot: Option<Arc<ThreadletSlot>>) -> Self {
        Self {
            home: AtomicU64::new(0),
            stack: Stack::new(256 * 1024).unwrap(),
            region: None,
            slot: slot.map(SlotRef::Test),
            _thread: PhantomData,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let (Some(SlotRef::Ring(_)), Some(region)) = (&self.slot, &self.region) {
            // On the thread that registered (a worker is not `Send`); any result was posted.
            let _ = region.unregister();
        }
    }
}

/// Runs `f` as a threadlet of `program`: inline, on this thread, with no system call and no
/// thread switch, and [`Outcome::Done`] with its result if it does not block; if it blocks,
/// [`Outcome::Async`] at once, **on another OS thread**, while this thread finishes `f` and
/// posts its result, which the [`Pending`](crate::threadlet::Pending) delivers (exactly once).
///
/// A block is any sleep of the thread inside `f`: a system call that waits, a page fault that
/// reads a file (also the first run of code not paged in yet). `f` runs on a stack of this
/// thread's own, start to finish on this thread; it is `Send + 'static` because its caller may
/// be elsewhere by the time it ends. A panic in `f` is caught on that stack and resumed where
/// the result is taken (here, for `Done`).
///
/// `f` just runs, unwatched (a block blocks the caller; the result is `Done`), when the program
/// is not on a runtime stack ([`Runtime::direct`](crate::Runtime::direct), no threadlets in the
/// kernel, every slot taken), when called off the program's own stack (from inside another
/// threadlet, say) or while panicking. With no spare parked (a pool of zero, all busy, or the
/// completion ring full) the kernel lets a block just block: `Done` too, only slower.
///
/// # Safety
///
/// If `f` blocks, the program — the closure given to [`Runtime::program`](crate::Runtime::program)
/// and every function it called down to this one, all on the runtime's stack — goes on on another
/// OS thread, and the current thread goes on with other work. The compiler checks what the program
/// and `f` *capture* (`Send + 'static`); it cannot check what the program holds on its stack
/// across this call. The caller must ensure that across this call no frame of the program holds:
///
/// - a reference or pointer into thread-local storage, such as one lent by
///   [`LocalKey::with`](std::thread::LocalKey::with) or a scoped-TLS `set`, or anything derived
///   from the current thread's TLS address; after the call, read thread-locals anew (and
///   beware that the compiler may reuse a thread-local's address computed before the call in
///   the same function: read it in a separate `#[inline(never)]` function);
/// - a value that is not `Send` (an `Rc` or `Cell`-based value shared with other code, a
///   `MutexGuard`, a `StdoutLock`, a `RefCell` borrow of thread-local data), or a value whose
///   meaning is tied to the current OS thread (the owner of a lock that records one, a signal
///   mask or CPU affinity set up for what follows, a thread id it will compare).
///
/// Violating this is undefined behaviour: a data race with the thread the program left, or a
/// use of thread-local storage after that thread exits (spares leave when idle).
///
/// Guaranteed without conditions: the program's stack belongs to the runtime and is run by one
/// thread at a time; the threadlet and home stacks never move; `f` runs on one thread; each
/// blocked threadlet's result is delivered exactly once; the thread that called
/// `Runtime::program` gets its own stack back when the program has ended (and any threadlet of
/// it that blocked on that thread has finished). Not carried to the new
/// thread: thread-locals, `std::thread::current()`, the signal mask, CPU affinity, the
/// protection-key register and everything else the kernel keeps per thread (the program's
/// callee-saved registers, SSE and x87 control words do move with it).
pub unsafe fn threadlet_run<F, R>(program: &Program, f: F) -> Outcome<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let Some(fiber) = program.fiber() else {
        return Outcome::Done(f());
    };
    let (call, job) = Call::new(program, f);
    // SAFETY: The caller's promise is this function's contract, which is `threadlet`'s.
    let entered = unsafe { fiber.threadlet(call.ticket(), job) };
    // From here on this may be another thread: only the program's own state is used.
    call.finish(program, entered)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A program on a fiber, with a threadlet that does not block: all on one thread.
    #[test]
    fn fiber_runs_and_threadlet_stays_inline() {
        let slot = Arc::new(ThreadletSlot::default());
        let worker = Worker::for_test(Some(slot.clone()));
        let fiber = Fiber::new(256 * 1024).unwrap();
        let (tx, rx) = mpsc::channel();
        let f2 = fiber.clone();
        let back = worker
            .run(&fiber, move || {
                let tid = rustix::thread::gettid();
                // SAFETY: Nothing thread-bound is held across the call.
                let entered = unsafe { f2.threadlet(7, || 40 + 2) };
                tx.send((entered, tid == rustix::thread::gettid())).unwrap();
            })
            .unwrap();
        assert_eq!(back, Back::Finished);
        assert!(fiber.is_done());
        assert_eq!(rx.recv().unwrap(), (Entered::Inline(42), true));
        assert_eq!(slot.state.load(Ordering::Relaxed), 0);
        assert_eq!(slot.user_data.load(Ordering::Relaxed), 7);
    }

    /// The handoff without a kernel: the threadlet marks its own slot HANDED (as a spare's
    /// PARK would) and gives the cookie to another thread, which takes the program over; the
    /// program ends there with its state intact, and the first thread comes home orphaned.
    #[test]
    fn handoff_moves_the_program_to_another_thread() {
        let slot = Arc::new(ThreadletSlot::default());
        let worker = Worker::for_test(Some(slot.clone()));
        let fiber = Fiber::new(256 * 1024).unwrap();
        let (cookie_tx, cookie_rx) = mpsc::channel::<u64>();
        let (done_tx, done_rx) = mpsc::channel();
        let spare = {
            let fiber = fiber.clone();
            std::thread::spawn(move || {
                let worker = Worker::for_test(None);
                let cookie = cookie_rx.recv().unwrap();
                (worker.take_over(&fiber, Handed { cookie }), rustix::thread::gettid())
            })
        };
        let f2 = fiber.clone();
        let word = slot.clone();
        let back = worker
            .run(&fiber, move || {
                let locals = [0x1111u64, 0x2222, 0x3333];
                let x = std::hint::black_box(1.25f64);
                let tid = rustix::thread::gettid();
                let job = move || {
                    let state = word.state.load(Ordering::Relaxed);
                    word.state.store(state | 2, Ordering::Relaxed);
                    cookie_tx.send(state).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    5
                };
                // SAFETY: Nothing thread-bound is held across the call.
                let entered = unsafe { f2.threadlet(9, job) };
                let now = rustix::thread::gettid();
                done_tx.send((entered, tid, now, locals, x * 2.0)).unwrap();
            })
            .unwrap();
        assert_eq!(back, Back::Orphaned(5));
        let (spare_back, spare_tid) = spare.join().unwrap();
        assert_eq!(spare_back, Back::Finished);
        assert!(fiber.is_done());
        let (entered, before, after, locals, x) = done_rx.recv().unwrap();
        assert_eq!(entered, Entered::Async);
        assert_eq!(before, rustix::thread::gettid());
        assert_eq!(after, spare_tid);
        assert_ne!(before, after);
        assert_eq!(locals, [0x1111, 0x2222, 0x3333]);
        assert_eq!(x, 2.5);
        assert_eq!(slot.state.load(Ordering::Relaxed), 0);
    }

    /// A backtrace taken on a fiber (and in a threadlet on it) stops at the fiber's first
    /// frame: the switching functions have no unwind information, so no unwinder walks into
    /// another stack.
    #[test]
    fn backtraces_stop_at_the_fiber() {
        let worker = Worker::for_test(Some(Arc::new(ThreadletSlot::default())));
        let fiber = Fiber::new(256 * 1024).unwrap();
        let (tx, rx) = mpsc::channel();
        let f2 = fiber.clone();
        let back = worker.run(&fiber, move || {
            let outer = std::backtrace::Backtrace::force_capture().to_string();
            let job = || {
                let inner = std::backtrace::Backtrace::force_capture().to_string();
                i64::try_from(inner.len()).unwrap()
            };
            // SAFETY: Nothing thread-bound is held across the call.
            let inner = unsafe { f2.threadlet(1, job) };
            tx.send((outer, inner)).unwrap();
        });
        assert_eq!(back.unwrap(), Back::Finished);
        let (outer, inner) = rx.recv().unwrap();
        assert!(outer.contains("fiber_main"), "{outer}");
        assert!(!outer.contains("backtraces_stop_at_the_fiber"), "walked off the fiber: {outer}");
        assert!(matches!(inner, Entered::Inline(n) if n > 0));
    }

    /// Without threadlets (here: the explicit fallback) a threadlet just runs: `Done`, on the
    /// same thread, and a panic in it reaches the caller as a plain call's would.
    #[test]
    fn threadlet_falls_back_to_a_plain_call() {
        let rt = crate::Runtime::direct();
        assert!(!rt.is_syslet() && !rt.threadlets());
        let (same_thread, value) = rt
            .program(|p| {
                assert!(!p.can_go_async());
                let tid = rustix::thread::gettid();
                // SAFETY: Nothing thread-bound is held across the call.
                let outcome = unsafe { crate::threadlet::run(p, || 6 * 7) };
                (tid == rustix::thread::gettid(), outcome)
            })
            .unwrap();
        assert!(same_thread);
        assert!(matches!(value, crate::threadlet::Outcome::Done(42)));
        let panicked = std::panic::catch_unwind(|| {
            rt.program(|p| {
                // SAFETY: Nothing thread-bound is held across the call.
                unsafe { crate::threadlet::run(p, || -> u8 { panic!("boom") }) }
            })
        });
        assert!(panicked.is_err());
        assert_eq!(rt.stats(), crate::Stats::default());
        assert_eq!(rt.completions(std::time::Duration::ZERO).count(), 0);
    }

    /// Off its fiber (here: on the test's own stack) a threadlet just runs.
    #[test]
    fn threadlet_off_the_fiber_runs_inline() {
        let fiber = Fiber::new(64 * 1024).unwrap();
        // SAFETY: Not on the fiber: nothing can move.
        assert_eq!(unsafe { fiber.threadlet(1, || 3) }, Entered::Inline(3));
    }
}
