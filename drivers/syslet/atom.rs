// SPDX-License-Identifier: GPL-2.0

//! Running one atom: policy, seccomp, then the system call itself.

use kernel::{
    bindings,
    fs::LocalFile,
    prelude::*,
    syscall::Syscall, //
};

use crate::defs::{
    Sqe,
    CQE_F_INLINE,
    CQE_F_REFUSED,
    SQE_VALID_FLAGS, //
};

/// How an atom ended: its result and completion flags.
pub(crate) struct Outcome {
    pub(crate) res: i64,
    pub(crate) flags: u32,
}

/// Returns the error of an errno the kernel crate has no constant for.
pub(crate) fn errno(errno: u32) -> Error {
    Error::from_errno(-(errno as i32))
}

impl Outcome {
    /// An atom that did not run, failing with `err`.
    pub(crate) fn refused(err: Error) -> Self {
        Self {
            res: err.to_errno().into(),
            flags: CQE_F_REFUSED,
        }
    }
}

/// Returns whether `call` is an `ioctl()` on a syslet device.
///
/// Atoms may not drive syslet itself: a nested exec would run on the stack of the outer one, and
/// a chain of them could exhaust the kernel stack. This catches the plain case with a clear error
/// (`EDEADLK`); `crate::context::ExecGuard` catches a descriptor swapped in after this check.
fn reenters_syslet(call: &Syscall) -> bool {
    if call.nr() != bindings::__NR_ioctl {
        return false;
    }
    let Ok(fd) = u32::try_from(call.args()[0]) else {
        return false;
    };
    match LocalFile::fget(fd) {
        Ok(file) => crate::FOPS.is_file_of(&file),
        Err(_) => false,
    }
}

/// Runs `sqe` in the current task's context, unless policy or seccomp refuses it.
///
/// Must be called from process context, on behalf of the submitting process, without locks
/// held: the call may sleep.
pub(crate) fn run(sqe: &Sqe) -> Outcome {
    if sqe.flags & !SQE_VALID_FLAGS != 0 {
        return Outcome::refused(EINVAL);
    }
    // Calls that act on the caller's own entry frame (clone, execve, exit, rt_sigreturn...).
    let call = match Syscall::new(sqe.nr, sqe.args) {
        Ok(call) => call,
        Err(_) => return Outcome::refused(EINVAL),
    };
    if reenters_syslet(&call) {
        return Outcome::refused(errno(bindings::EDEADLK));
    }
    // The caller's seccomp filters see every atom, with the verdict a direct call would get.
    if let Err(err) = call.check_seccomp() {
        return Outcome::refused(err);
    }
    Outcome {
        res: call.run(),
        flags: CQE_F_INLINE,
    }
}
