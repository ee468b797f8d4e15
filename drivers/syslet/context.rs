// SPDX-License-Identifier: GPL-2.0

//! Per-open-file state: one context, its rings, spares, execs in flight and counters.
//!
//! # Invariants
//!
//! Only the process that opened the device uses a context: every ioctl and mmap from another
//! process fails with `EPERM` before touching it.
//!
//! A context outlives every ioctl running on it: the ioctl holds a reference to the file for its
//! whole duration (`syslet_main.rs`), so an atom that closes the device's last descriptor only drops
//! a reference, and the file is released (and the context freed) after the ioctl returns.

use kernel::{
    bindings,
    current,
    fs::File,
    mm::virt::VmaNew,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{
        aref::ARef,
        poll::PollTable,
        Arc,
        SetOnce, //
    },
    syscall::{
        self,
        AtomMark,
        SysletPolicy, //
    },
    task::Task, //
};

use crate::{
    cancel::Inflight,
    defs::{
        Params,
        WaitArgs,
        RING_NEED_SPARE, //
    },
    exec,
    poll::Polled,
    ring::{
        RingLayout,
        Rings,
        WaitError, //
    },
    spares::{
        Leave,
        Spares, //
    },
    stats::Stats,
    threadlet::{
        self,
        SlotMap,
        Threadlets, //
    },
};

/// A syslet context: what one open of `/dev/syslet` owns.
#[pin_data]
pub(crate) struct Context {
    /// The thread-group leader of the process that opened the device.
    owner: ARef<Task>,
    /// The rings, once `SYSLET_IOC_SETUP` has run.
    rings: SetOnce<Arc<Rings>>,
    /// Parked spares.
    #[pin]
    pub(crate) spares: Spares,
    /// Execs with a continuation running now.
    #[pin]
    pub(crate) inflight: Inflight,
    pub(crate) stats: Stats,
    /// Threads registered for threadlets; created at the first registration (it hooks the
    /// kernel's task exit).
    threadlets: SetOnce<Pin<KBox<Threadlets>>>,
    /// Threadlet slot indices in use.
    slots: Arc<SlotMap>,
    /// The pollable path; created when the first atom would wait for a file, with room for
    /// every completion slot.
    polled: SetOnce<Pin<KBox<Polled>>>,
}

impl Context {
    /// Creates the context of a file opened by the current process.
    pub(crate) fn new() -> Result<Pin<KBox<Self>>> {
        let owner = ARef::from(current!().group_leader());
        KBox::try_pin_init(
            try_pin_init!(Self {
                owner,
                rings: SetOnce::new(),
                spares <- Spares::new(),
                inflight <- Inflight::new(),
                stats: Stats::new(),
                threadlets: SetOnce::new(),
                slots: Arc::new(SlotMap::new(), GFP_KERNEL_ACCOUNT)?,
                polled: SetOnce::new(),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    /// Returns whether the current task belongs to the process that opened the device.
    fn current_is_owner(&self) -> bool {
        core::ptr::eq(current!().group_leader().as_ptr(), self.owner.as_ptr())
    }

    /// Fails with `EPERM` unless the current task belongs to the process that opened the device.
    pub(crate) fn check_owner(&self) -> Result {
        if self.current_is_owner() {
            Ok(())
        } else {
            Err(EPERM)
        }
    }

    /// Returns the rings, or `ENXIO` before setup.
    pub(crate) fn rings(&self) -> Result<&Arc<Rings>> {
        self.rings.as_ref().ok_or(ENXIO)
    }

    /// Returns the pollable path, if an atom was ever armed.
    pub(crate) fn polled(&self) -> Option<&Polled> {
        self.polled.as_ref().map(|p| &**p)
    }

    /// Returns the pollable path, created if needed; `None` before setup or without memory
    /// (atoms then run as if their files were ready: a block is a block).
    pub(crate) fn polled_or_init(&self) -> Option<&Polled> {
        if self.polled.as_ref().is_none() {
            let rings = self.rings().ok()?;
            let polled = Polled::new(rings, rings.layout().cq_entries).ok()?;
            // Another thread's first arming may win: then `polled` goes.
            self.polled.populate(polled);
        }
        self.polled()
    }

    /// `SYSLET_IOC_SETUP`: sizes and allocates the rings; fills in the layout.
    ///
    /// Fails with `EBUSY` if the rings already exist.
    pub(crate) fn setup(&self, params: &mut Params) -> Result {
        // The administrator's switch (`kernel.syslet_disabled`), checked where rings are made:
        // rings that exist keep working.
        match syscall::syslet_policy() {
            SysletPolicy::Allowed => {}
            SysletPolicy::PrivilegedOnly if syscall::capable_sys_admin() => {}
            _ => return Err(EPERM),
        }
        if self.rings.as_ref().is_some() {
            return Err(EBUSY);
        }
        let layout = RingLayout::new(params)?;
        let rings = Rings::new(layout)?;
        params.cq_entries = layout.cq_entries;
        params.mmap_size = rings.mmap_size() as u64;
        params.sqes_off = layout.sqes_off as u64;
        params.cqes_off = layout.cqes_off as u64;
        params.threadlets_off = layout.threadlets_off as u64;
        if !self.rings.populate(rings) {
            // Another thread's setup won the race.
            return Err(EBUSY);
        }
        Ok(())
    }

    /// Maps the rings; the VMA must cover all of them at offset zero.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        self.check_owner()?;
        let rings = self.rings()?;
        // A private mapping would copy the pages on write, and the kernel would never see user
        // space's indices.
        if vma.flags() & bindings::VM_SHARED == 0 {
            return Err(EINVAL);
        }
        // The rings are data: never executable, and not inherited across fork, where they would
        // belong to a process that may not use them (unless the owner asks with MADV_DOFORK: the
        // kernel never trusts what it reads there anyway).
        vma.try_clear_mayexec()?;
        vma.set_dontcopy();
        rings.map(vma)
    }

    /// `SYSLET_IOC_PARK`: waits as a spare; returns the continuation cookie of the submitter this
    /// thread must take over, after `write_cookie` stored it in user space.
    ///
    /// Fails with `EINTR` on a signal, `ETIMEDOUT` after `timeout_ns` (if not zero),
    /// `ESHUTDOWN` when the context closes and `EFAULT` if the cookie cannot be stored (the
    /// continuation then stays with its submitter).
    pub(crate) fn park(
        &self,
        timeout_ns: i64,
        write_cookie: impl FnMut(u64) -> Result,
    ) -> Result<u64> {
        let rings = self.rings()?;
        if self.in_threadlet() {
            return Err(EBUSY);
        }
        // A parked thread is inside a syslet ioctl: the threadlet hooks of every context ignore
        // its sleep, so that only this park can hand out a continuation on its behalf.
        let _mark = AtomMark::new()?;
        rings.set_flag(RING_NEED_SPARE, false);
        self.spares
            .park(
                &self.stats,
                timeout_ns,
                self.threadlets.as_ref().map(|t| &**t),
                write_cookie,
            )
            .map_err(|leave| match leave {
                Leave::Signal => EINTR,
                Leave::TimedOut => ETIMEDOUT,
                Leave::Shutdown => ESHUTDOWN,
                Leave::Fault => EFAULT,
                Leave::NoMemory => ENOMEM,
            })
    }

    /// Returns whether the current thread is registered and inside a threadlet.
    pub(crate) fn in_threadlet(&self) -> bool {
        self.threadlets
            .as_ref()
            .and_then(|set| set.current())
            .is_some_and(|t| t.data().is_inside())
    }

    /// `SYSLET_IOC_THREADLET_REGISTER`: registers the current thread; returns its slot index.
    pub(crate) fn threadlet_register(&self, file: &File) -> Result<u32> {
        let rings = self.rings()?;
        let set = match self.threadlets.as_ref() {
            Some(set) => set,
            None => {
                let set = KBox::pin_init(threadlet::new_set(), GFP_KERNEL_ACCOUNT)?;
                // Another thread's first registration may win: then `set` goes.
                self.threadlets.populate(set);
                self.threadlets.as_ref().ok_or(EBUSY)?
            }
        };
        threadlet::register(set, &self.slots, rings, &self.spares.signal, file)
    }

    /// `SYSLET_IOC_THREADLET_UNREGISTER` by the current thread.
    ///
    /// `force`: even inside a threadlet (the registration ioctl undoing itself).
    pub(crate) fn threadlet_unregister(&self, force: bool) -> Result {
        threadlet::unregister(self.threadlets.as_ref().ok_or(ENOENT)?, force)
    }

    /// `SYSLET_IOC_THREADLET_DONE`: posts the current thread's handed-off threadlet's result.
    pub(crate) fn threadlet_done(&self, res: i64) -> Result {
        let threadlet = self
            .threadlets
            .as_ref()
            .and_then(|set| set.current())
            .ok_or(EINVAL)?;
        threadlet.data().done(res)?;
        Stats::inc(&self.stats.threadlets_done);
        Ok(())
    }

    /// `SYSLET_IOC_WAIT`: waits for completions; runs the armed atoms whose files become ready
    /// meanwhile, if this thread may run them.
    pub(crate) fn wait(&self, args: &WaitArgs) -> Result<isize> {
        if args.flags != 0 || args.resv != 0 {
            return Err(EINVAL);
        }
        let rings = self.rings()?;
        // A traced or audited thread runs no atom (see `exec`), so it does not wake for them
        // either; asked each time, since tracing may start during the wait.
        let work = || {
            self.polled().is_some_and(Polled::has_ready_here)
                && !syscall::current_syscalls_watched()
        };
        match rings.wait(args.min_complete, args.timeout_ns, work, || {
            exec::run_ready(self, rings)
        }) {
            Ok(unread) => Ok(unread as isize),
            Err(WaitError::Invalid) => Err(EINVAL),
            Err(WaitError::TimedOut) => Err(ETIMEDOUT),
            Err(WaitError::Interrupted) => Err(EINTR),
            Err(WaitError::Shutdown) => Err(ESHUTDOWN),
        }
    }

    /// `SYSLET_IOC_CANCEL`: completes the armed atom with `user_data` with `-ECANCELED` at once,
    /// or interrupts the handed-off atom with `user_data`.
    pub(crate) fn cancel(&self, user_data: u64) -> Result<isize> {
        let armed = self
            .polled()
            .and_then(|p| p.take_user_data(user_data, &self.stats));
        if let Some(armed) = armed {
            exec::complete_unrun(self, self.rings()?, &armed.entries, ECANCELED);
            Stats::inc(&self.stats.cancelled);
            return Ok(0);
        }
        self.inflight.cancel(user_data)?;
        Ok(0)
    }

    /// Readiness for poll/epoll: `POLLIN` while completions are unread.
    pub(crate) fn poll(&self, file: &File, table: PollTable<'_>) -> u32 {
        // Only atoms the polling thread may run: others would make an epoll loop spin.
        let armed_ready = self.polled().is_some_and(Polled::has_ready_here);
        match self.rings.as_ref() {
            // Armed atoms whose files are ready: a call to exec or wait runs them.
            Some(rings) if armed_ready => {
                rings.poll(file, &table) | bindings::POLLIN | bindings::POLLRDNORM
            }
            Some(rings) => rings.poll(file, &table),
            None => bindings::POLLERR,
        }
    }

    /// A descriptor of the file is being closed: if by the owner (also at its exit), the
    /// context's spares leave with `ESHUTDOWN`, no more may park, armed atoms complete with
    /// `-ECANCELED` (no more are armed), and waiters return.
    pub(crate) fn flush(&self) {
        if !self.current_is_owner() {
            return;
        }
        if let (Some(polled), Ok(rings)) = (self.polled(), self.rings()) {
            polled.close(&self.stats, |armed| {
                exec::complete_unrun(self, rings, &armed.entries, ECANCELED)
            });
        }
        self.spares.close();
        self.inflight.wake_lent_spares();
        if let Some(rings) = self.rings.as_ref() {
            rings.shutdown();
        }
    }

    /// Prints the ring state and counters to fdinfo.
    pub(crate) fn show_fdinfo(&self, m: &SeqFile) {
        match self.rings.as_ref() {
            Some(rings) => {
                let layout = rings.layout();
                let snap = rings.snapshot();
                let fields = [
                    ("sq_entries", layout.sq_entries),
                    ("cq_entries", layout.cq_entries),
                    ("sq_head", snap.sq_head),
                    ("sq_tail", snap.sq_tail),
                    ("cq_head", snap.cq_head),
                    ("cq_tail", snap.cq_tail),
                    ("cq_reserved", snap.cq_reserved),
                ];
                for (name, value) in fields {
                    seq_print!(m, "{}:\t{}\n", name, value);
                }
            }
            None => seq_print!(m, "rings:\tnone\n"),
        }
        self.stats.show(m);
    }
}
