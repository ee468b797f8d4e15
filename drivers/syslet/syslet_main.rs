// SPDX-License-Identifier: GPL-2.0

//! syslet: asynchronous system calls.
//!
//! A process opens `/dev/syslet`, sizes a submission and a completion ring with
//! `SYSLET_IOC_SETUP`, maps them, writes system calls ("atoms") to the submission ring and
//! runs them with `SYSLET_IOC_EXEC`: in order, in its own context, as real system calls, each
//! posting its result to the completion ring. See `include/uapi/linux/syslet.h`.
//!
//! When an atom blocks and the exec named a continuation, a spare thread parked in the module
//! returns to user space in the submitter's place (`handoff.rs`).
//!
//! Files, one concern each: `defs.rs` (user-space ABI), `ring.rs` (shared rings, waiting),
//! `context.rs` (per-open state: setup, mmap, park, wait, poll, flush, fdinfo), `exec.rs`
//! (running a batch), `atom.rs` (policy and seccomp for one atom), `handoff.rs` (the
//! continuation's state machine and the scheduler hook), `spares.rs` (parked threads), `cancel.rs`
//! (execs in flight, cancellation), `threadlet.rs` (registered threads, their scheduler hook),
//! `stats.rs` (fdinfo counters), `trace.rs` (trace events).
//!
//! Entry checks, in this file, for every ioctl: not through the 32-bit entry (`ENOTTY`: atoms are
//! x86-64 system calls), not from inside an atom (`EDEADLK`), by the owner (`EPERM`); and a
//! reference to the file held until the ioctl returns, so that an atom closing the device
//! cannot free the context under it.
//!
//! Lock order: `Spares::inner` before `Continuation::lent`; `Inflight::execs` before the
//! continuation's locks; `Rings::state` is a leaf. No lock is held while an atom runs, and none is
//! taken in the scheduler hook.

use kernel::{
    fs::File,
    ioctl::_IOC_SIZE,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration,
        OwnedFileOperations,
        ScmRefusal, //
    },
    mm::virt::VmaNew,
    preempt_notifier,
    prelude::*,
    seq_file::SeqFile,
    sync::aref::ARef,
    sync::poll::PollTable,
    syscall::{
        self,
        AtomMark, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

mod atom;
mod cancel;
mod context;
mod defs;
mod exec;
mod handoff;
mod poll;
mod ring;
mod spares;
mod stats;
mod threadlet;
mod timeout;
mod trace;

use context::Context;

module! {
    type: SysletModule,
    name: "syslet",
    authors: ["The syslet developers"],
    description: "Asynchronous system calls",
    license: "GPL",
}

/// The device's file operations; open files pin the module.
static FOPS: OwnedFileOperations<Context> = OwnedFileOperations::new(this_module());

/// This module's `THIS_MODULE`: a static `module!` defines before Linux 7.3, a constant of the
/// module's metadata since (`syslet_module_metadata`, set by Kbuild from the kernel version).
#[cfg(not(syslet_module_metadata))]
const fn this_module() -> &'static ThisModule {
    &THIS_MODULE
}

/// This module's `THIS_MODULE`: a constant of the module's metadata since Linux 7.3.
#[cfg(syslet_module_metadata)]
const fn this_module() -> &'static ThisModule {
    kernel::module::this_module::<SysletModule>()
}

#[pin_data]
struct SysletModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<Context>,
    /// Preempt notifiers stay enabled while the module is loaded. `CONFIG_SYSLET_HOOKS` starts
    /// them enabled at boot, so this only counts a user: no kernel text is patched at load.
    _notifiers: preempt_notifier::Enabled,
    /// The scheduler tells an exec's notifiers that its atom is about to block, where the spare
    /// can be woken at once.
    #[pin]
    _sleep_hook: preempt_notifier::SleepHook<handoff::BlockHook>,
    /// A context pins the files its armed atoms wait for: sent over one of those sockets in
    /// `SCM_RIGHTS` it would make a reference loop nothing frees, so it may not be sent.
    _scm: ScmRefusal,
}

impl kernel::InPlaceModule for SysletModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions { name: c"syslet" };
        try_pin_init!(Self {
            _notifiers: preempt_notifier::Enabled::new(),
            _sleep_hook <- preempt_notifier::SleepHook::new(&handoff::BLOCK_HOOK_OPS),
            _scm: FOPS.refuse_scm_rights(),
            _miscdev <- MiscDeviceRegistration::register_owned(options, &FOPS),
        })
    }
}

impl Context {
    fn ioctl_setup(&self, arg: usize, size: usize) -> Result<isize> {
        let (mut reader, mut writer) =
            UserSlice::new(UserPtr::from_addr(arg), size).reader_writer();
        let mut params = reader.read()?;
        self.setup(&mut params)?;
        writer.write(&params)?;
        Ok(0)
    }

    fn ioctl_exec(&self, arg: usize, size: usize) -> Result<isize> {
        let (mut reader, mut writer) =
            UserSlice::new(UserPtr::from_addr(arg), size).reader_writer();
        let mut args: defs::ExecArgs = reader.read()?;
        args.submitted = 0;
        args.status = 0;
        let ret = exec::exec(self, &mut args)?;
        // The return value carries both the count and the handoff: a fault here must not make
        // the caller believe its continuation is still its own, so it is not an error.
        let _ = writer.write(&args);
        Ok(ret)
    }

    fn ioctl_park(&self, arg: usize, size: usize) -> Result<isize> {
        let slice = UserSlice::new(UserPtr::from_addr(arg), size);
        let args: defs::ParkArgs = slice.reader().read()?;
        if args.resv != 0 || args.timeout_ns < 0 {
            return Err(EINVAL);
        }
        self.park(args.timeout_ns, |cookie| {
            let out = defs::ParkArgs {
                continuation: cookie,
                ..args
            };
            UserSlice::new(UserPtr::from_addr(arg), size)
                .writer()
                .write(&out)
        })?;
        Ok(0)
    }

    fn ioctl_wait(&self, arg: usize, size: usize) -> Result<isize> {
        let args = UserSlice::new(UserPtr::from_addr(arg), size)
            .reader()
            .read()?;
        self.wait(&args)
    }

    fn ioctl_threadlet_register(&self, file: &File, arg: usize, size: usize) -> Result<isize> {
        let mut writer = UserSlice::new(UserPtr::from_addr(arg), size).writer();
        let index = self.threadlet_register(file)?;
        if let Err(err) = writer.write(&index) {
            // The thread could not learn its slot: it is not registered.
            let _ = self.threadlet_unregister(true);
            return Err(err);
        }
        Ok(0)
    }

    fn ioctl_threadlet_done(&self, arg: usize, size: usize) -> Result<isize> {
        let res: i64 = UserSlice::new(UserPtr::from_addr(arg), size)
            .reader()
            .read()?;
        self.threadlet_done(res)?;
        Ok(0)
    }

    fn ioctl_cancel(&self, arg: usize, size: usize) -> Result<isize> {
        let user_data = UserSlice::new(UserPtr::from_addr(arg), size)
            .reader()
            .read()?;
        self.cancel(user_data)
    }
}

#[vtable]
impl MiscDevice for Context {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        Context::new()
    }

    fn mmap(me: Pin<&Context>, _file: &File, vma: &VmaNew) -> Result {
        me.mmap(vma)
    }

    fn ioctl(me: Pin<&Context>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // Atoms are x86-64 system calls, judged by seccomp as such: a 32-bit caller (or a 64-bit
        // one using the 32-bit entry) would have them judged by the wrong ABI's rules.
        if syscall::in_compat_syscall() {
            return Err(ENOTTY);
        }
        // No syslet ioctl runs inside an atom, whatever descriptor it came through.
        if AtomMark::is_set() {
            return Err(EDEADLK);
        }
        me.check_owner()?;
        // Held until the ioctl returns: an atom may close the last descriptor, and the release
        // (which frees `me`) must wait until nothing here uses it.
        let _file = ARef::from(file);
        let size = _IOC_SIZE(cmd);
        match cmd {
            defs::IOC_SETUP => me.ioctl_setup(arg, size),
            defs::IOC_EXEC => me.ioctl_exec(arg, size),
            defs::IOC_PARK => me.ioctl_park(arg, size),
            defs::IOC_WAIT => me.ioctl_wait(arg, size),
            defs::IOC_CANCEL => me.ioctl_cancel(arg, size),
            defs::IOC_THREADLET_REGISTER => me.ioctl_threadlet_register(file, arg, size),
            defs::IOC_THREADLET_UNREGISTER => me.threadlet_unregister(false).map(|()| 0),
            defs::IOC_THREADLET_DONE => me.ioctl_threadlet_done(arg, size),
            _ => Err(ENOTTY),
        }
    }

    fn compat_ioctl(_me: Pin<&Context>, _file: &File, _cmd: u32, _arg: usize) -> Result<isize> {
        // See `ioctl`: no 32-bit entry.
        Err(ENOTTY)
    }

    fn flush(me: Pin<&Context>, _file: &File) -> Result {
        me.flush();
        Ok(())
    }

    fn poll(me: Pin<&Context>, file: &File, table: PollTable<'_>) -> Result<u32> {
        Ok(me.poll(file, table))
    }

    fn show_fdinfo(me: Pin<&Context>, m: &SeqFile, _file: &File) {
        me.show_fdinfo(m);
    }
}
