// SPDX-License-Identifier: GPL-2.0

//! Trace events: the life of one atom as perf, ftrace and BPF see it.
//!
//! Atoms never pass the system call entry, so the `raw_syscalls` events miss them; these events
//! (`include/trace/events/syslet.h`, defined in `trace_events.c`) show each one with the number
//! and arguments seccomp is shown, its result and its `user_data`: `syslet_submit` when an exec
//! consumes it, `syslet_arm` when it waits for its file on the pollable path, `syslet_start` when
//! it passed policy and runs, `syslet_block` when a watched atom
//! sleeps, `syslet_handoff` when a spare takes the program over, `syslet_complete` when its
//! completion is posted. Each costs a static branch while disabled.

use kernel::{
    bindings,
    ffi::c_void,
    tracepoint::declare_trace, //
};

use crate::defs::Sqe;

declare_trace! {
    /// # Safety
    ///
    /// `args` points to six readable `u64`s for the duration of the call.
    unsafe fn syslet_submit(ctx: *const c_void, user_data: u64, nr: u32, args: *const u64, flags: u32);
    /// # Safety
    ///
    /// Always safe to call (`ctx` is only recorded, never dereferenced).
    unsafe fn syslet_start(ctx: *const c_void, user_data: u64, nr: u32, watched: bool);
    /// # Safety
    ///
    /// Always safe to call (`ctx` is only recorded, never dereferenced).
    unsafe fn syslet_arm(ctx: *const c_void, user_data: u64, nr: u32, events: u32);
    /// # Safety
    ///
    /// Always safe to call (`ctx` is only recorded, never dereferenced).
    unsafe fn syslet_block(ctx: *const c_void, user_data: u64, nr: u32, spare: bool);
    /// # Safety
    ///
    /// Always safe to call (`ctx` is only recorded, never dereferenced).
    unsafe fn syslet_handoff(ctx: *const c_void, user_data: u64, submitter: bindings::pid_t, latency_ns: i64);
    /// # Safety
    ///
    /// Always safe to call (`ctx` is only recorded, never dereferenced).
    unsafe fn syslet_complete(ctx: *const c_void, user_data: u64, nr: u32, res: i64, flags: u32);
}

/// Identifies a context in trace events: its address, recorded (and printed hashed, `%p`) but
/// never dereferenced.
#[derive(Clone, Copy)]
pub(crate) struct CtxId(usize);

impl CtxId {
    /// The identifier of the context at `ctx`.
    pub(crate) fn of<T>(ctx: &T) -> Self {
        Self(core::ptr::from_ref(ctx) as usize)
    }

    fn as_ptr(self) -> *const c_void {
        self.0 as *const c_void
    }
}

/// An exec consumed `sqe`.
pub(crate) fn submit(ctx: CtxId, sqe: &Sqe) {
    // SAFETY: `sqe.args` is six `u64`s, borrowed for the call; the event copies them.
    unsafe {
        syslet_submit(
            ctx.as_ptr(),
            sqe.user_data,
            sqe.nr,
            sqe.args.as_ptr(),
            sqe.flags,
        )
    }
}

/// The atom of `sqe` passed every check and starts; `watched`: a block hands the program off.
pub(crate) fn start(ctx: CtxId, sqe: &Sqe, watched: bool) {
    // SAFETY: Always safe to call.
    unsafe { syslet_start(ctx.as_ptr(), sqe.user_data, sqe.nr, watched) }
}

/// The atom of `sqe` waits for `events` on its file, on the pollable path.
pub(crate) fn arm(ctx: CtxId, sqe: &Sqe, events: u32) {
    // SAFETY: Always safe to call.
    unsafe { syslet_arm(ctx.as_ptr(), sqe.user_data, sqe.nr, events) }
}

/// A watched atom went to sleep; `spare`: a spare was woken to take the program over.
///
/// May be called from the scheduler, with the runqueue lock held.
pub(crate) fn block(ctx: CtxId, user_data: u64, nr: u32, spare: bool) {
    // SAFETY: Always safe to call; tracepoints may fire with the runqueue lock held (as
    // `sched_switch` does).
    unsafe { syslet_block(ctx.as_ptr(), user_data, nr, spare) }
}

/// The current task, a spare, took over the program of `submitter`, blocked in the atom
/// `user_data` for `latency_ns`.
pub(crate) fn handoff(ctx: CtxId, user_data: u64, submitter: bindings::pid_t, latency_ns: i64) {
    // SAFETY: Always safe to call.
    unsafe { syslet_handoff(ctx.as_ptr(), user_data, submitter, latency_ns) }
}

/// The completion of `sqe`'s atom was posted with `res` and `flags`.
pub(crate) fn complete(ctx: CtxId, sqe: &Sqe, res: i64, flags: u32) {
    // SAFETY: Always safe to call.
    unsafe { syslet_complete(ctx.as_ptr(), sqe.user_data, sqe.nr, res, flags) }
}
