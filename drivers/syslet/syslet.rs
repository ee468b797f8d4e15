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
//! Files: `defs.rs` (user-space ABI), `ring.rs` (shared rings, waiting), `context.rs` (per-open
//! state, setup, exec, park, wait, cancel, fdinfo), `handoff.rs` (continuations and spares),
//! `atom.rs` (policy and running one atom), `stats.rs` (fdinfo counters).
//!
//! Lock order: `Context::handoff` before `Spare::lent_to`; `EXECUTING` and `Rings::state` are
//! leaves. No lock is held while an atom runs, and none is taken in the scheduler hook.

use kernel::{
    fs::File,
    ioctl::_IOC_SIZE,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration,
        OwnedFileOperations, //
    },
    mm::virt::VmaNew,
    preempt_notifier,
    prelude::*,
    seq_file::SeqFile,
    sync::poll::PollTable,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

mod atom;
mod context;
mod defs;
mod handoff;
mod ring;
mod stats;

use context::Context;

module! {
    type: SysletModule,
    name: "syslet",
    authors: ["The syslet developers"],
    description: "Asynchronous system calls",
    license: "GPL",
}

/// The device's file operations; open files pin the module.
static FOPS: OwnedFileOperations<Context> = OwnedFileOperations::new(&THIS_MODULE);

kernel::sync::global_lock! {
    // SAFETY: Initialized in the module initializer before the device is registered.
    unsafe(uninit) static EXECUTING: SpinLock<KVec<usize>> = KVec::new();
}

#[pin_data]
struct SysletModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<Context>,
    /// Preempt notifiers stay enabled while the module is loaded: enabling them patches kernel
    /// text, far too costly to do per exec.
    _notifiers: preempt_notifier::Enabled,
}

impl kernel::InPlaceModule for SysletModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: Called exactly once, before the device exists.
        unsafe { EXECUTING.init() };
        let options = MiscDeviceOptions { name: c"syslet" };
        try_pin_init!(Self {
            _notifiers: preempt_notifier::Enabled::new(),
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
        let ret = self.exec(&mut args)?;
        writer.write(&args)?;
        Ok(ret)
    }

    fn ioctl_park(&self, arg: usize, size: usize) -> Result<isize> {
        let (mut reader, mut writer) =
            UserSlice::new(UserPtr::from_addr(arg), size).reader_writer();
        let mut args: defs::ParkArgs = reader.read()?;
        if args.resv.iter().any(|&r| r != 0) {
            return Err(EINVAL);
        }
        args.continuation = self.park()?;
        writer.write(&args)?;
        Ok(0)
    }

    fn ioctl_wait(&self, arg: usize, size: usize) -> Result<isize> {
        let args = UserSlice::new(UserPtr::from_addr(arg), size)
            .reader()
            .read()?;
        self.wait(&args)
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

    fn ioctl(me: Pin<&Context>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let size = _IOC_SIZE(cmd);
        match cmd {
            defs::IOC_SETUP => me.ioctl_setup(arg, size),
            defs::IOC_EXEC => me.ioctl_exec(arg, size),
            defs::IOC_PARK => me.ioctl_park(arg, size),
            defs::IOC_WAIT => me.ioctl_wait(arg, size),
            defs::IOC_CANCEL => me.ioctl_cancel(arg, size),
            _ => Err(ENOTTY),
        }
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
