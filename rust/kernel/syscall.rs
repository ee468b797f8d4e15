// SPDX-License-Identifier: GPL-2.0

//! System calls run by the kernel on behalf of the current task.
//!
//! An interface such as syslet runs system calls that user space submitted through shared
//! memory, in the submitter's own context, without going through the system call entry path.
//! This module checks such a call against the task's seccomp filters and runs it.
//!
//! C headers: [`arch/x86/include/asm/syscall.h`](srctree/arch/x86/include/asm/syscall.h),
//! [`include/linux/seccomp.h`](srctree/include/linux/seccomp.h).

use crate::{
    bindings,
    error::{
        code::{
            EINTR,
            EPERM, //
        },
        Error, //
    },
    prelude::*,
};

/// Returns `true` if system call `nr` acts on the calling thread's user entry frame.
///
/// These calls read or rewrite the registers that user space entered the kernel with
/// (`current_pt_regs()`), create or end threads from them, or never return. Run from inside
/// another system call, they would act on that call's frame instead, so they cannot run through
/// [`Syscall::run`].
pub fn needs_entry_frame(nr: u32) -> bool {
    matches!(
        nr,
        bindings::__NR_clone
            | bindings::__NR_clone3
            | bindings::__NR_fork
            | bindings::__NR_vfork
            | bindings::__NR_execve
            | bindings::__NR_execveat
            | bindings::__NR_exit
            | bindings::__NR_exit_group
            | bindings::__NR_rt_sigreturn
            | bindings::__NR_restart_syscall
            | bindings::__NR_sigaltstack
            | bindings::__NR_arch_prctl
            | bindings::__NR_iopl
            | bindings::__NR_ioperm
            | bindings::__NR_modify_ldt
            | bindings::__NR_uretprobe
    )
}

/// A system call, by number and arguments, that may run on behalf of the current task.
///
/// # Invariants
///
/// `nr` does not act on the caller's entry frame: `needs_entry_frame(nr)` is `false`.
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    nr: u32,
    args: [u64; 6],
}

impl Syscall {
    /// Creates a system call of number `nr` with arguments `args`, in the order of the
    /// system call ABI.
    ///
    /// Fails with `EPERM` for the calls that [`needs_entry_frame`] names. An unknown `nr` is not
    /// an error here: running it returns `-ENOSYS`, as a direct call would.
    pub fn new(nr: u32, args: [u64; 6]) -> Result<Self> {
        if needs_entry_frame(nr) {
            return Err(EPERM);
        }
        // INVARIANT: Checked just above.
        Ok(Self { nr, args })
    }

    /// Returns the system call number.
    pub fn nr(&self) -> u32 {
        self.nr
    }

    /// Returns the arguments.
    pub fn args(&self) -> &[u64; 6] {
        &self.args
    }

    /// Applies the current task's seccomp filters to this call.
    ///
    /// Returns `Ok(())` if the call may run, or the error a direct call would have failed with.
    /// A filter that traps or kills has queued `SIGSYS` to the task when this returns; see
    /// `seccomp_filter_syslet()` for each filter action.
    pub fn check_seccomp(&self) -> Result {
        // `seccomp_data.nr` is an `int`, as it is for a direct call.
        let nr = self.nr as i32;
        let args = self.args.map(|a| a as usize);
        // SAFETY: `args` points to six `unsigned long`s, valid for the duration of the call.
        let ret = unsafe { bindings::seccomp_filter_syslet(nr, args.as_ptr()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(Error::from_errno(ret as i32))
        }
    }

    /// Runs the call in the current task's context and returns its result.
    ///
    /// The result is what user space would see from a direct call, except that a request to
    /// restart the call (`-ERESTARTSYS` and friends, which only the entry path may act on) is
    /// reported as `-EINTR`. Seccomp is not applied here: see [`Syscall::check_seccomp`].
    ///
    /// Must be called from process context, on behalf of a user task, without locks held: the
    /// call may sleep, fault in user memory and take any lock.
    pub fn run(&self) -> i64 {
        // SAFETY: `pt_regs` is plain data; all zeroes is a valid value.
        let mut regs: bindings::pt_regs = unsafe { core::mem::zeroed() };
        regs.di = self.args[0] as _;
        regs.si = self.args[1] as _;
        regs.dx = self.args[2] as _;
        regs.r10 = self.args[3] as _;
        regs.r8 = self.args[4] as _;
        regs.r9 = self.args[5] as _;
        regs.orig_ax = self.nr as _;
        // SAFETY: `regs` is valid for the duration of the call. By the type invariant, `nr` does
        // not use the entry frame, so the only registers it reads are the arguments in `regs`.
        let ret = unsafe { bindings::syslet_sys_call(&regs, self.nr as _) } as i64;
        const RESTART: [u32; 4] = [
            bindings::ERESTARTSYS,
            bindings::ERESTARTNOINTR,
            bindings::ERESTARTNOHAND,
            bindings::ERESTART_RESTARTBLOCK,
        ];
        if RESTART.iter().any(|&e| ret == -i64::from(e)) {
            return EINTR.to_errno().into();
        }
        ret
    }
}
