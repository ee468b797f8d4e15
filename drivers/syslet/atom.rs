// SPDX-License-Identifier: GPL-2.0

//! One atom: policy, seccomp, and its outcome.
//!
//! An atom runs only after every check below passed, in this order: valid flags; the caller's
//! seccomp filters allow it (they see every atom with valid flags, as they would a direct call,
//! so a filter that logs or kills acts on refused calls too); not a call that acts on the
//! caller's entry frame (`kernel::syscall::needs_entry_frame`); not a call that acts on the
//! calling thread's own state when the exec names a continuation; not an ioctl on a syslet
//! device. Each refusal completes the atom with `SYSLET_CQE_F_REFUSED` and a clear error.

use kernel::{
    bindings,
    fs::LocalFile,
    prelude::*,
    syscall::{
        CheckedSyscall,
        Syscall,
        Verdict, //
    },
};

use crate::defs::{
    Sqe,
    CQE_F_INLINE,
    CQE_F_REFUSED,
    SQE_FWD_HEAD,
    SQE_FWD_MASK,
    SQE_FWD_SHIFT,
    SQE_VALID_FLAGS, //
};

/// How an atom ended: its result and completion flags.
pub(crate) struct Outcome {
    pub(crate) res: i64,
    pub(crate) flags: u32,
}

impl Outcome {
    /// An atom that did not run, failing with `err`.
    pub(crate) fn refused(err: Error) -> Self {
        Self {
            res: err.to_errno().into(),
            flags: CQE_F_REFUSED,
        }
    }

    /// An entry that is not a call (a timeout entry), completing with `res`.
    pub(crate) fn not_a_call(res: i64) -> Self {
        Self { res, flags: 0 }
    }

    /// An atom that ran inline and returned `res`.
    pub(crate) fn ran(res: i64) -> Self {
        Self {
            res,
            flags: CQE_F_INLINE,
        }
    }
}

/// Returns `true` if system call `nr` acts on the state of the calling thread itself.
///
/// In an exec with a continuation the program may go on on a spare's thread while later atoms
/// still run on the submitter's: such a call would change the wrong thread, so it is refused
/// there. Checked against the x86-64 table for calls whose effect is per thread when given no
/// other target (pid 0, `PRIO_PROCESS` 0, ...): credentials (also LSM and Landlock domains, and
/// the thread keyring, which keyctl, add_key and request_key reach), namespaces, signal mask,
/// seccomp, prctl, personality, robust futexes, rseq, scheduling and I/O priority, memory
/// policy, protection keys (PKRU), ptrace (the tracer is a thread), TLS.
pub(crate) fn acts_on_own_thread(nr: u32) -> bool {
    matches!(
        nr,
        bindings::__NR_setuid
            | bindings::__NR_setgid
            | bindings::__NR_setreuid
            | bindings::__NR_setregid
            | bindings::__NR_setresuid
            | bindings::__NR_setresgid
            | bindings::__NR_setfsuid
            | bindings::__NR_setfsgid
            | bindings::__NR_setgroups
            | bindings::__NR_capset
            | bindings::__NR_unshare
            | bindings::__NR_setns
            | bindings::__NR_rt_sigprocmask
            | bindings::__NR_rt_sigsuspend
            | bindings::__NR_rt_sigtimedwait
            | bindings::__NR_prctl
            | bindings::__NR_seccomp
            | bindings::__NR_personality
            | bindings::__NR_set_tid_address
            | bindings::__NR_set_robust_list
            | bindings::__NR_rseq
            | bindings::__NR_sched_setaffinity
            | bindings::__NR_sched_setparam
            | bindings::__NR_sched_setscheduler
            | bindings::__NR_sched_setattr
            | bindings::__NR_setpriority
            | bindings::__NR_ioprio_set
            | bindings::__NR_set_thread_area
            | bindings::__NR_get_thread_area
            | bindings::__NR_landlock_restrict_self
            | bindings::__NR_lsm_set_self_attr
            | bindings::__NR_keyctl
            | bindings::__NR_add_key
            | bindings::__NR_request_key
            | bindings::__NR_set_mempolicy
            | bindings::__NR_pkey_alloc
            | bindings::__NR_ptrace
    )
}

/// Returns whether `call` is an `ioctl()` on a syslet device.
///
/// Atoms may not drive syslet itself: a nested exec would run on the stack of the outer one, and
/// a nested park could claim its continuation. This catches the plain case with a clear error;
/// the per-task mark (`kernel::syscall::AtomMark`) catches a descriptor swapped in after this
/// check. The descriptor is compared as `ioctl()` sees it: truncated to `unsigned int`.
fn reenters_syslet(sqe: &Sqe) -> bool {
    if sqe.nr != bindings::__NR_ioctl {
        return false;
    }
    let fd = sqe.args[0] as u32;
    match LocalFile::fget(fd) {
        Ok(file) => crate::FOPS.is_file_of(&file),
        Err(_) => false,
    }
}

/// The results an entry of a chain may forward: of the entry before it, and of the chain's
/// first entry; `None` where there is no such entry (the entry starts a chain).
#[derive(Clone, Copy, Default)]
pub(crate) struct ChainResults {
    pub(crate) prev: Option<i64>,
    pub(crate) head: Option<i64>,
}

impl ChainResults {
    /// The results after an entry that returned `res`: `linked`, it continues its chain.
    pub(crate) fn after(self, res: i64, linked: bool) -> Self {
        if !linked {
            return Self::default();
        }
        Self {
            prev: Some(res),
            head: self.head.or(Some(res)),
        }
    }
}

/// Result forwarding (`SYSLET_SQE_FWD_ARG`): replaces the argument `sqe` names with the result of
/// the previous entry of its chain, or of the chain's first entry with `SYSLET_SQE_FWD_HEAD`.
///
/// Runs before [`check`], so that seccomp and policy judge the call as it will run. Fails, for
/// the entry to be refused with `-EINVAL`, if there is no such entry or no such argument.
pub(crate) fn forward(sqe: &mut Sqe, results: ChainResults) -> Result<(), Outcome> {
    let arg = (sqe.flags & SQE_FWD_MASK) >> SQE_FWD_SHIFT;
    if arg == 0 {
        return if sqe.flags & SQE_FWD_HEAD != 0 {
            Err(Outcome::refused(EINVAL))
        } else {
            Ok(())
        };
    }
    let from = if sqe.flags & SQE_FWD_HEAD != 0 {
        results.head
    } else {
        results.prev
    };
    let slot = sqe.args.get_mut(arg as usize - 1);
    match (slot, from) {
        (Some(slot), Some(res)) => {
            // Two's complement, as the system call ABI passes a negative value; a chain goes on
            // only while results are not negative anyway.
            *slot = res as u64;
            Ok(())
        }
        _ => Err(Outcome::refused(EINVAL)),
    }
}

/// Applies policy and seccomp to `sqe`: returns the call to run, or the outcome of a refused
/// atom.
///
/// `with_continuation`: the exec names a continuation, so calls acting on the calling thread
/// are refused. Must be called by the submitting task.
pub(crate) fn check(sqe: &Sqe, with_continuation: bool) -> Result<CheckedSyscall, Outcome> {
    if sqe.flags & !SQE_VALID_FLAGS != 0 {
        return Err(Outcome::refused(EINVAL));
    }
    let call = match Syscall::new(sqe.nr, sqe.args).check_seccomp() {
        Verdict::Run(call) => call,
        Verdict::Skip(res) => {
            return Err(Outcome {
                res,
                flags: CQE_F_REFUSED,
            })
        }
        // Calls that act on the caller's own entry frame (clone, execve, exit, rt_sigreturn...).
        Verdict::NeedsEntryFrame => return Err(Outcome::refused(EINVAL)),
    };
    if with_continuation && acts_on_own_thread(sqe.nr) {
        return Err(Outcome::refused(EINVAL));
    }
    if reenters_syslet(sqe) {
        return Err(Outcome::refused(EDEADLK));
    }
    Ok(call)
}
