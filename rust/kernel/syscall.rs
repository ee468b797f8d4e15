// SPDX-License-Identifier: GPL-2.0

//! System calls run by the kernel on behalf of the current task.
//!
//! An interface such as syslet runs system calls that user space submitted through shared
//! memory, in the submitter's own context, without going through the system call entry path.
//! This module checks such a call against the task's seccomp filters and runs it, and marks the
//! task while it does, so that such calls do not nest.
//!
//! A call goes through three types, so that no path runs it without seccomp:
//! [`Syscall`] -> [`Syscall::check_seccomp`] (the filters see every call, as they would a direct
//! one) -> [`Verdict::Run`] with a [`CheckedSyscall`], the only type that can run it, tied to the
//! task whose filters allowed it, and never one that needs the entry frame.
//!
//! C headers: [`arch/x86/include/asm/syscall.h`](srctree/arch/x86/include/asm/syscall.h),
//! [`include/linux/seccomp.h`](srctree/include/linux/seccomp.h).

use crate::{
    bindings,
    cred::Credential,
    error::code::EDEADLK,
    prelude::*,
    sync::aref::ARef,
    task::Task,
    types::NotThreadSafe, //
};

/// Returns `true` if system call `nr` acts on the calling thread's user entry frame.
///
/// These calls read or rewrite the registers that user space entered the kernel with
/// (`current_pt_regs()`), create or end threads from them, or never return. Run from inside
/// another system call, they would act on that call's frame instead, so [`Syscall::new`] refuses
/// them.
///
/// Checked against the x86-64 table for every use of `current_pt_regs()`, `task_pt_regs(current)`
/// and `signal_pt_regs()` reachable from a system call: clone, clone3, fork, vfork (copy the
/// frame into the child), execve, execveat (rewrite it), exit, exit_group (never return),
/// rt_sigreturn, restart_syscall (restore it), sigaltstack (reads the user stack pointer),
/// arch_prctl, iopl, ioperm, modify_ldt (segment and I/O state of the frame), uretprobe and
/// uprobe (trampolines that rewrite it).
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
            | bindings::__NR_uprobe
    )
}

/// A system call, by number and arguments, to be run on behalf of the current task once seccomp
/// allows it.
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    nr: u32,
    args: [u64; 6],
}

/// What the current task's seccomp filters decided for a [`Syscall`].
pub enum Verdict {
    /// The call may run, on this task.
    Run(CheckedSyscall),
    /// The call must not run; it completes with this result (`0` for `SECCOMP_RET_ERRNO` with
    /// errno 0, "pretend success").
    Skip(i64),
    /// Seccomp allowed the call, but it acts on the caller's entry frame ([`needs_entry_frame`])
    /// and cannot run on behalf of another call.
    NeedsEntryFrame,
}

impl Syscall {
    /// Creates a system call of number `nr` with arguments `args`, in the order of the
    /// system call ABI.
    ///
    /// An unknown `nr` is not an error: running it returns `-ENOSYS`, as a direct call would.
    pub fn new(nr: u32, args: [u64; 6]) -> Self {
        Self { nr, args }
    }

    /// Returns the system call number.
    pub fn nr(&self) -> u32 {
        self.nr
    }

    /// Returns the arguments.
    pub fn args(&self) -> &[u64; 6] {
        &self.args
    }

    /// Applies the current task's seccomp filters to this call, as an x86-64 call.
    ///
    /// The filters see every call, also those that [`needs_entry_frame`] then refuses, so that a
    /// filter that logs or kills on them acts as it would on a direct call. A filter that kills has
    /// queued a fatal `SIGSYS` and left the task in seccomp's dead mode when this returns; see
    /// `seccomp_filter_syslet()` for each filter action.
    pub fn check_seccomp(self) -> Verdict {
        // `seccomp_data.nr` is an `int`, as it is for a direct call.
        let nr = self.nr as i32;
        let args = self.args.map(|a| a as usize);
        let mut skipped_ret: isize = 0;
        // SAFETY: `args` points to six `unsigned long`s and `skipped_ret` to a `long`, both valid
        // for the duration of the call.
        let run = unsafe { bindings::seccomp_filter_syslet(nr, args.as_ptr(), &mut skipped_ret) };
        if !run {
            Verdict::Skip(skipped_ret as i64)
        } else if needs_entry_frame(self.nr) {
            Verdict::NeedsEntryFrame
        } else {
            // INVARIANT: The filters allowed it, and it does not need the entry frame.
            Verdict::Run(CheckedSyscall {
                call: self,
                restart_block: false,
                _not_send: NotThreadSafe,
            })
        }
    }
}

/// How a run of a [`CheckedSyscall`] ended.
pub enum Return {
    /// The call returned this result.
    Done(i64),
    /// The call was interrupted before it could complete (`-ERESTART*`): a signal or a
    /// notification (`TIF_NOTIFY_SIGNAL`) is pending. A direct call would deliver it, or run the
    /// task work, and then restart; [`CheckedSyscall::run`] again restarts it the same way.
    Interrupted,
}

/// A system call the current task's seccomp filters allowed.
///
/// Not [`Send`]: it may only run on the task whose filters allowed it.
///
/// # Invariants
///
/// `call` was allowed by the seccomp filters of the task that created this object, and does not
/// act on the caller's entry frame (`needs_entry_frame(call.nr)` is `false`). If
/// `restart_block` is set, the last run of `call` on that task returned `-ERESTART_RESTARTBLOCK`
/// and set up the task's restart block.
pub struct CheckedSyscall {
    call: Syscall,
    restart_block: bool,
    _not_send: NotThreadSafe,
}

impl CheckedSyscall {
    /// Returns the system call number.
    pub fn nr(&self) -> u32 {
        self.call.nr
    }

    /// Runs the call in the current task's context.
    ///
    /// After [`Return::Interrupted`], running it again restarts it as the exit to user mode would
    /// (`restart_syscall()` where the call asked for it), once the caller has handled what
    /// interrupted it.
    ///
    /// Must be called from process context, on behalf of a user task, without locks held: the
    /// call may sleep, fault in user memory and take any lock.
    pub fn run(&mut self) -> Return {
        let nr = if self.restart_block {
            bindings::__NR_restart_syscall
        } else {
            self.call.nr
        };
        let args = &self.call.args;
        // SAFETY: `pt_regs` is plain data; all zeroes is a valid value.
        let mut regs: bindings::pt_regs = unsafe { core::mem::zeroed() };
        regs.di = args[0] as _;
        regs.si = args[1] as _;
        regs.dx = args[2] as _;
        regs.r10 = args[3] as _;
        regs.r8 = args[4] as _;
        regs.r9 = args[5] as _;
        regs.orig_ax = nr as _;
        // SAFETY: `regs` is valid for the duration of the call. By the type invariant,
        // `call.nr` does not use the entry frame, so the only registers it reads are
        // the arguments in `regs`; `restart_syscall` only reads the task's restart block, which
        // the interrupted run of the same call set up (type invariant). `_not_send` keeps this on
        // the task that seccomp checked.
        let ret = unsafe { bindings::syslet_sys_call(&regs, nr as _) } as i64;
        // INVARIANT: `restart_block` records whether this run set up the restart block.
        self.restart_block = ret == -i64::from(bindings::ERESTART_RESTARTBLOCK);
        let restart = [
            bindings::ERESTARTSYS,
            bindings::ERESTARTNOINTR,
            bindings::ERESTARTNOHAND,
            bindings::ERESTART_RESTARTBLOCK,
        ];
        if restart.iter().any(|&e| ret == -i64::from(e)) {
            Return::Interrupted
        } else {
            Return::Done(ret)
        }
    }
}

impl CheckedSyscall {
    /// Keeps the call, allowed by the current task's filters, to run later on a task confined as
    /// this one is now ([`DeferredSyscall::resume`]).
    ///
    /// Must be called on the task whose filters allowed the call. A call interrupted by a run
    /// (its restart block set up) is not deferred.
    pub fn defer(self) -> core::result::Result<DeferredSyscall, Self> {
        if self.restart_block {
            return Err(self);
        }
        let task = ARef::from(&**crate::current!());
        let p = task.as_ptr();
        // SAFETY: Only the current task changes its own credentials, so both pointers stay valid
        // while it runs this; the references taken keep them valid after.
        let creds = unsafe {
            (
                ARef::from(Credential::from_ptr((*p).cred)),
                ARef::from(Credential::from_ptr((*p).real_cred)),
            )
        };
        // INVARIANT: The current task's filters allowed the call (`CheckedSyscall` is not
        // `Send`), and `confinement` is the current task's now.
        Ok(DeferredSyscall {
            call: self.call,
            confinement: Confinement::of(&task),
            resources: resources_of(&task),
            _creds: creds,
            task,
        })
    }
}

/// A system call that a task's seccomp filters allowed, kept to run later, for example once the
/// file it waits for is ready.
///
/// The verdict stands only for the confinement it was given under: the call runs on a task
/// confined exactly as the submitter was then ([`DeferredSyscall::resume`]), and not at all once
/// the submitter's own confinement changed (a filter added, credentials changed, traced:
/// [`DeferredSyscall::verdict_stands`]), since its filters never judged the call as it is now.
///
/// # Invariants
///
/// `call` was allowed by the seccomp filters of `task` while `task` was confined as
/// `confinement` says, and does not act on the caller's entry frame.
pub struct DeferredSyscall {
    call: Syscall,
    confinement: Confinement,
    /// The submitter's descriptor table and filesystem context (root, cwd, umask), by identity:
    /// the call names descriptors and paths as they resolve there.
    resources: (usize, usize),
    /// The credentials `confinement` names, held: while they are, no other credentials can be
    /// allocated at their addresses, so an equal address means the same credentials.
    _creds: (ARef<Credential>, ARef<Credential>),
    task: ARef<Task>,
}

impl DeferredSyscall {
    /// Returns the system call number.
    pub fn nr(&self) -> u32 {
        self.call.nr
    }

    /// Returns the arguments.
    pub fn args(&self) -> &[u64; 6] {
        &self.call.args
    }

    /// Returns whether the submitter is still confined as it was when its filters allowed the
    /// call.
    ///
    /// The confinement's pointers stay valid while the submitter holds them, so an equal
    /// snapshot names the same credentials and filter, not a later object at a reused address.
    pub fn verdict_stands(&self) -> bool {
        Confinement::of(&self.task) == self.confinement
    }

    /// Returns whether the current task may run the call: the verdict stands, the current task
    /// is confined as the submitter was, and shares its descriptor table and filesystem context
    /// (a thread that unshared them would find other files under the same numbers and paths).
    pub fn runnable_here(&self) -> bool {
        let current = crate::current!();
        self.verdict_stands()
            && Confinement::of(current) == self.confinement
            && resources_of(current) == self.resources
    }

    /// Takes the call back to run it on the current task, if [`DeferredSyscall::runnable_here`].
    pub fn resume(self) -> core::result::Result<CheckedSyscall, Self> {
        if !self.runnable_here() {
            return Err(self);
        }
        // INVARIANT: The filters of the submitter, confined as the current task is now, allowed
        // the call: they would allow it here. It does not use the entry frame (type invariant),
        // and no run set up a restart block.
        Ok(CheckedSyscall {
            call: self.call,
            restart_block: false,
            _not_send: NotThreadSafe,
        })
    }
}

/// Does for the current task what the exit to user mode does with a pending
/// `TIF_NOTIFY_SIGNAL`: clears it and runs the task's queued work.
///
/// Returns `false` if no notification was pending. Must be called from process context without
/// locks held: task work may sleep.
pub fn run_notified_task_work() -> bool {
    // SAFETY: Only reads the current task's flags.
    if !unsafe { bindings::test_notify_signal() } {
        return false;
    }
    // SAFETY: Clearing the current task's flag and running its task work is what the exit to user
    // mode does; process context without locks held is the caller's promise.
    unsafe {
        bindings::clear_notify_signal();
        bindings::task_work_run();
    }
    true
}

/// Puts back the signal mask a call such as `ppoll()` or `pselect6()` replaced for its duration
/// and left for signal delivery to restore (`TIF_RESTORE_SIGMASK`).
///
/// The exit to user mode does this when no signal is delivered; a caller that restarts or ends
/// an interrupted call without returning to user mode must do it instead, or the temporary mask
/// stays (and a restart would save it as the "original").
pub fn restore_saved_sigmask() {
    // SAFETY: Acts on the current task only.
    unsafe { bindings::restore_saved_sigmask() };
}

/// Returns whether tasks `a` and `b` run under the same confinement: the same credentials (one
/// `struct cred`, shared by threads until one of them changes its own), the same seccomp mode and
/// filter, the same `no_new_privs`, and neither traced.
///
/// A program that moves from one thread to another between two such tasks gains nothing it did
/// not have, and escapes no tracer: a tracer attaches to threads, and one attached to either
/// would stop seeing the program, or start seeing it unasked.
pub fn same_confinement(a: &Task, b: &Task) -> bool {
    Confinement::of(a) == Confinement::of(b)
}

/// The identity of `task`'s descriptor table and filesystem context.
fn resources_of(task: &Task) -> (usize, usize) {
    let p = task.as_ptr();
    // SAFETY: `p` is a valid task; each pointer is read once, racily, and only compared.
    unsafe {
        (
            core::ptr::read_volatile(&raw const (*p).files) as usize,
            core::ptr::read_volatile(&raw const (*p).fs) as usize,
        )
    }
}

/// What decides how a task is confined: its credentials, seccomp mode and filter and
/// `no_new_privs` (by identity), and whether it is traced.
#[derive(Clone, Copy)]
struct Confinement {
    cred: usize,
    real_cred: usize,
    seccomp_mode: i32,
    seccomp_filter: usize,
    no_new_privs: bool,
    /// A traced task matches no other, itself included.
    traced: bool,
}

impl PartialEq for Confinement {
    fn eq(&self, other: &Self) -> bool {
        !self.traced
            && !other.traced
            && (
                self.cred,
                self.real_cred,
                self.seccomp_mode,
                self.seccomp_filter,
            ) == (
                other.cred,
                other.real_cred,
                other.seccomp_mode,
                other.seccomp_filter,
            )
            && self.no_new_privs == other.no_new_privs
    }
}

impl Confinement {
    /// Returns the confinement of `task` now.
    fn of(task: &Task) -> Self {
        let p = task.as_ptr();
        // SAFETY: `p` is a valid task. Each field is read once, racily (as `READ_ONCE()` readers
        // do): only the identity of the pointers is compared, nothing is dereferenced.
        unsafe {
            Self {
                cred: core::ptr::read_volatile(&raw const (*p).cred) as usize,
                real_cred: core::ptr::read_volatile(&raw const (*p).real_cred) as usize,
                seccomp_mode: core::ptr::read_volatile(&raw const (*p).seccomp.mode),
                seccomp_filter: core::ptr::read_volatile(&raw const (*p).seccomp.filter) as usize,
                no_new_privs: core::ptr::read_volatile(&raw const (*p).atomic_flags)
                    & (1 << bindings::PFA_NO_NEW_PRIVS)
                    != 0,
                traced: core::ptr::read_volatile(&raw const (*p).ptrace) != 0,
            }
        }
    }
}

/// Returns whether a real signal (not only a notification) is pending for the current task.
pub fn signal_pending_current() -> bool {
    // SAFETY: `get_current()` is the current task, valid while it runs.
    unsafe { bindings::task_sigpending(bindings::get_current()) != 0 }
}

/// Returns whether the current task entered the kernel through a 32-bit (compat) system call.
pub fn in_compat_syscall() -> bool {
    // SAFETY: Only reads the current task's state.
    unsafe { bindings::in_compat_syscall() }
}

/// Who may set up syslet rings, by the administrator's `kernel.syslet_disabled` sysctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysletPolicy {
    /// 0: anyone who can open the device.
    Allowed,
    /// 1: only tasks with `CAP_SYS_ADMIN`.
    PrivilegedOnly,
    /// 2: nobody.
    Disabled,
}

/// Returns the administrator's current `kernel.syslet_disabled` setting.
pub fn syslet_policy() -> SysletPolicy {
    // SAFETY: Reads an `int` the sysctl handler keeps within 0..=2.
    match unsafe { bindings::syslet_disabled() } {
        0 => SysletPolicy::Allowed,
        1 => SysletPolicy::PrivilegedOnly,
        _ => SysletPolicy::Disabled,
    }
}

/// Returns whether the current task has `CAP_SYS_ADMIN` (and records its use, as `capable()`
/// does).
pub fn capable_sys_admin() -> bool {
    // SAFETY: Checks the current task's credentials; always valid in process context.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

/// Returns whether the current task's system calls are watched on their way in and out:
/// ptrace syscall tracing or emulation (`PTRACE_SYSCALL`, `PTRACE_SYSEMU`), syscall auditing,
/// or the `raw_syscalls` tracepoints.
///
/// These hooks run in the system call entry and exit paths, which a call run from inside
/// another one does not take: an interface that runs submitted calls refuses to while they are
/// on, rather than run calls that a tracer, the audit log or a tracing tool would never see.
pub fn current_syscalls_watched() -> bool {
    // SAFETY: Only reads the current task's syscall work flags.
    unsafe { bindings::current_syscalls_watched() }
}

/// Returns whether the current task is exiting (`PF_EXITING`).
pub fn current_is_exiting() -> bool {
    // SAFETY: `get_current()` is the current task, valid while it runs; only it changes its own
    // `flags`.
    unsafe { (*bindings::get_current()).flags & bindings::PF_EXITING != 0 }
}

/// Returns an identifier of the current task's address space, or 0 for none (a kernel thread,
/// or a task past `exit_mm()`). Only for comparison: it stays unique while the address space
/// is in use by the task, and a task's identifier changes when it execs.
pub fn current_mm_id() -> usize {
    // SAFETY: As above; only the task itself changes its `mm`.
    unsafe { (*bindings::get_current()).mm as usize }
}

/// Marks the current task as running system calls on behalf of a submitter for as long as it
/// lives.
///
/// An interface that runs submitted calls uses it to refuse being driven from inside one of
/// them: a nested run would sit on top of the outer one's stack, and its state (continuations,
/// spares) would be reachable from a call it is running. Not [`Send`]: it unmarks the task that
/// created it.
///
/// # Invariants
///
/// The current task's `in_syslet` bit is set from creation to drop, by this object alone.
pub struct AtomMark {
    _not_send: NotThreadSafe,
}

impl AtomMark {
    /// Marks the current task, or fails with `EDEADLK` if it is already marked.
    pub fn new() -> Result<Self> {
        if Self::is_set() {
            return Err(EDEADLK);
        }
        // SAFETY: `in_syslet` is written only by the task itself, like the bits it shares a word
        // with; `get_current()` is valid while it runs.
        unsafe { bindings::task_struct::set_in_syslet_raw(bindings::get_current(), 1) };
        // INVARIANT: Set just above; only `drop` clears it.
        Ok(Self {
            _not_send: NotThreadSafe,
        })
    }

    /// Returns whether the current task is marked.
    pub fn is_set() -> bool {
        // SAFETY: As in `new`; reading the task's own bit.
        unsafe { bindings::task_struct::in_syslet_raw(bindings::get_current()) != 0 }
    }
}

impl Drop for AtomMark {
    fn drop(&mut self) {
        // SAFETY: As in `new`. `_not_send` makes this the task that set the bit.
        unsafe { bindings::task_struct::set_in_syslet_raw(bindings::get_current(), 0) };
    }
}
