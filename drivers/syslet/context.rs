// SPDX-License-Identifier: GPL-2.0

//! Per-open-file state: one context, its rings and counters.

use kernel::{
    bindings,
    current,
    mm::virt::VmaNew,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        aref::ARef,
        Arc,
        SetOnce,
    },
    task::Task,
};

use crate::{
    atom::{
        self,
        errno,
        Outcome, //
    },
    defs::{
        Cqe,
        ExecArgs,
        Params,
        Sqe,
        SQE_LINK, //
    },
    ring::{
        ClaimError,
        RingLayout,
        Rings, //
    },
    EXECUTING,
};

/// Counters shown in fdinfo.
struct Stats {
    /// Submissions consumed.
    submitted: Atomic<u64>,
    /// Atoms that ran to completion in the submitter's context.
    completed_inline: Atomic<u64>,
    /// Completions with a negative result, refused atoms included.
    errors: Atomic<u64>,
    /// Atoms that did not run: policy, seccomp, bad flags, failed chains, signals.
    refused: Atomic<u64>,
    /// `SYSLET_IOC_EXEC` calls that consumed at least one submission.
    execs: Atomic<u64>,
}

/// A syslet context: what one open of `/dev/syslet` owns.
///
/// Only the process that opened the device may use it: another process that inherits or receives
/// the file gets `EPERM` from every ioctl and from mmap.
pub(crate) struct Context {
    /// The thread-group leader of the process that opened the device.
    owner: ARef<Task>,
    /// The rings, once `SYSLET_IOC_SETUP` has run.
    rings: SetOnce<Arc<Rings>>,
    stats: Stats,
}

/// Marks the current task as executing atoms for as long as it lives.
///
/// A task that already executes atoms may not start another exec: the nested exec would run on
/// top of the outer one's stack. `EXECUTING` lists the tasks inside an exec.
struct ExecGuard {
    task: usize,
}

impl ExecGuard {
    /// Marks the current task, or fails with `EDEADLK` if it is already marked.
    fn new() -> Result<Self> {
        let task = current!().as_ptr() as usize;
        let mut executing = EXECUTING.lock();
        if executing.iter().any(|&t| t == task) {
            return Err(errno(bindings::EDEADLK));
        }
        executing.push(task, GFP_ATOMIC)?;
        Ok(Self { task })
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let mut executing = EXECUTING.lock();
        if let Some(i) = executing.iter().position(|&t| t == self.task) {
            let _ = executing.remove(i);
        }
    }
}

impl Stats {
    fn new() -> Self {
        Self {
            submitted: Atomic::new(0),
            completed_inline: Atomic::new(0),
            errors: Atomic::new(0),
            refused: Atomic::new(0),
            execs: Atomic::new(0),
        }
    }
}

impl Context {
    /// Creates the context of a file opened by the current process.
    pub(crate) fn new() -> Result<Pin<KBox<Self>>> {
        let owner = ARef::from(current!().group_leader());
        Ok(KBox::pin(
            Self {
                owner,
                rings: SetOnce::new(),
                stats: Stats::new(),
            },
            GFP_KERNEL,
        )?)
    }

    /// Fails with `EPERM` unless the current task belongs to the process that opened the device.
    fn check_owner(&self) -> Result {
        if core::ptr::eq(current!().group_leader().as_ptr(), self.owner.as_ptr()) {
            Ok(())
        } else {
            Err(EPERM)
        }
    }

    /// `SYSLET_IOC_SETUP`: sizes and allocates the rings; fills in the layout.
    ///
    /// Fails with `EBUSY` if the rings already exist.
    pub(crate) fn setup(&self, params: &mut Params) -> Result {
        self.check_owner()?;
        if self.rings.as_ref().is_some() {
            return Err(EBUSY);
        }
        let layout = RingLayout::new(params)?;
        let rings = Rings::new(layout)?;
        params.cq_entries = layout.cq_entries;
        params.mmap_size = rings.mmap_size() as u64;
        params.sqes_off = layout.sqes_off as u64;
        params.cqes_off = layout.cqes_off as u64;
        if !self.rings.populate(rings) {
            // Another thread's setup won the race.
            return Err(EBUSY);
        }
        Ok(())
    }

    /// Maps the rings; the VMA must cover all of them at offset zero.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        self.check_owner()?;
        let rings = self.rings.as_ref().ok_or(ENXIO)?;
        // The rings are data: never executable, and not inherited across fork, where they would
        // belong to a process that may not use them.
        vma.try_clear_mayexec()?;
        vma.set_dontcopy();
        rings.map(vma)
    }

    /// `SYSLET_IOC_EXEC`: consumes up to `args.to_submit` submissions and runs each one in the
    /// current task, in order, posting one completion each.
    ///
    /// Returns how many submissions were consumed. Must be called from process context without
    /// locks held.
    pub(crate) fn exec(&self, args: &mut ExecArgs) -> Result<isize> {
        self.check_owner()?;
        if args.flags != 0 || args.resv != 0 {
            return Err(EINVAL);
        }
        let rings = self.rings.as_ref().ok_or(ENXIO)?;
        let max = args.to_submit.min(rings.layout().sq_entries);
        if max == 0 {
            return Ok(0);
        }
        let _guard = ExecGuard::new()?;

        let mut batch = KVVec::with_capacity(max as usize, GFP_KERNEL)?;
        let count = match rings.claim(max, &mut batch) {
            Ok(count) => count,
            Err(ClaimError::Corrupt) => return Err(EINVAL),
            Err(ClaimError::CqFull) => return Err(EBUSY),
        };
        if count == 0 {
            return Ok(0);
        }
        self.stats.submitted.fetch_add(u64::from(count), Relaxed);
        self.stats.execs.fetch_add(1, Relaxed);
        self.run_batch(rings, &batch);
        args.submitted = count;
        Ok(count as isize)
    }

    /// Runs a claimed batch in order, posting one completion per entry.
    fn run_batch(&self, rings: &Rings, batch: &[Sqe]) {
        let mut chain_failed = false;
        let mut interrupted = false;
        for sqe in batch {
            let outcome = if interrupted {
                // A signal arrived: let it be handled (or kill) before anything else runs.
                Outcome::refused(EINTR)
            } else if chain_failed {
                Outcome::refused(errno(bindings::ECANCELED))
            } else {
                atom::run(sqe)
            };
            chain_failed = sqe.flags & SQE_LINK != 0 && outcome.res < 0;
            if outcome.res < 0 {
                self.stats.errors.fetch_add(1, Relaxed);
            }
            if outcome.flags & crate::defs::CQE_F_REFUSED != 0 {
                self.stats.refused.fetch_add(1, Relaxed);
            } else {
                self.stats.completed_inline.fetch_add(1, Relaxed);
            }
            rings.complete(&Cqe {
                user_data: sqe.user_data,
                res: outcome.res,
                flags: outcome.flags,
                ..Default::default()
            });
            if !interrupted && current!().signal_pending() {
                interrupted = true;
            }
        }
    }

    /// Prints the ring state and counters to fdinfo.
    pub(crate) fn show_fdinfo(&self, m: &SeqFile) {
        match self.rings.as_ref() {
            Some(rings) => {
                let layout = rings.layout();
                let snap = rings.snapshot();
                seq_print!(m, "sq_entries:\t{}\n", layout.sq_entries);
                seq_print!(m, "cq_entries:\t{}\n", layout.cq_entries);
                seq_print!(m, "sq_head:\t{}\nsq_tail:\t{}\n", snap.sq_head, snap.sq_tail);
                seq_print!(m, "cq_head:\t{}\ncq_tail:\t{}\n", snap.cq_head, snap.cq_tail);
                seq_print!(m, "cq_reserved:\t{}\n", snap.cq_reserved);
            }
            None => seq_print!(m, "rings:\tnone\n"),
        }
        let s = &self.stats;
        seq_print!(m, "submitted:\t{}\n", s.submitted.load(Relaxed));
        seq_print!(m, "completed_inline:\t{}\n", s.completed_inline.load(Relaxed));
        seq_print!(m, "errors:\t{}\n", s.errors.load(Relaxed));
        seq_print!(m, "refused:\t{}\n", s.refused.load(Relaxed));
        seq_print!(m, "execs:\t{}\n", s.execs.load(Relaxed));
    }
}
