// SPDX-License-Identifier: GPL-2.0

//! Per-open-file state: one context, its rings, spares and counters.

use kernel::{
    bindings,
    current,
    fs::File,
    mm::virt::VmaNew,
    new_spinlock,
    preempt_notifier::PreemptNotifier,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{
        aref::ARef,
        atomic::Relaxed,
        poll::PollTable,
        Arc,
        SetOnce,
        SpinLock, //
    },
    task::Task, //
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
        WaitArgs,
        CQE_F_ASYNC,
        CQE_F_INLINE,
        EXEC_HANDED_OFF,
        RING_NEED_SPARE,
        SQE_LINK, //
    },
    handoff::{
        BlockHook,
        Continuation,
        Spare,
        HANDED, //
    },
    ring::{
        ClaimError,
        RingLayout,
        Rings,
        WaitError, //
    },
    stats::{
        BatchCounts,
        Stats, //
    },
    EXECUTING, //
};

/// Batches up to this many atoms use buffers on the stack instead of allocating.
const SMALL_BATCH: usize = 4;

/// Spares and in-flight continuations of a context.
///
/// Protected by [`Context::handoff`]; taken before a spare's `lent_to`.
struct HandoffState {
    /// Parked spares not lent to any exec, most recently parked last.
    parked: KVec<Arc<Spare>>,
    /// Continuations of execs running now, for cancellation.
    inflight: KVec<Arc<Continuation>>,
    /// The owner closed a descriptor or is exiting: spares leave, none may park.
    closing: bool,
}

/// A syslet context: what one open of `/dev/syslet` owns.
///
/// Only the process that opened the device may use it: another process that inherits or receives
/// the file gets `EPERM` from every ioctl and from mmap.
#[pin_data]
pub(crate) struct Context {
    /// The thread-group leader of the process that opened the device.
    owner: ARef<Task>,
    /// The rings, once `SYSLET_IOC_SETUP` has run.
    rings: SetOnce<Arc<Rings>>,
    #[pin]
    handoff: SpinLock<HandoffState>,
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

impl Context {
    /// Creates the context of a file opened by the current process.
    pub(crate) fn new() -> Result<Pin<KBox<Self>>> {
        let owner = ARef::from(current!().group_leader());
        KBox::try_pin_init(
            try_pin_init!(Self {
                owner,
                rings: SetOnce::new(),
                handoff <- new_spinlock!(
                    HandoffState {
                        parked: KVec::new(),
                        inflight: KVec::new(),
                        closing: false,
                    },
                    "Context::handoff"
                ),
                stats: Stats::new(),
            }),
            GFP_KERNEL,
        )
    }

    /// Returns whether the current task belongs to the process that opened the device.
    fn current_is_owner(&self) -> bool {
        core::ptr::eq(current!().group_leader().as_ptr(), self.owner.as_ptr())
    }

    /// Fails with `EPERM` unless the current task belongs to the process that opened the device.
    fn check_owner(&self) -> Result {
        if self.current_is_owner() {
            Ok(())
        } else {
            Err(EPERM)
        }
    }

    fn rings(&self) -> Result<&Arc<Rings>> {
        self.rings.as_ref().ok_or(ENXIO)
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
        let rings = self.rings()?;
        // A private mapping would copy the pages on write, and the kernel would never see user
        // space's indices.
        if vma.flags() & bindings::VM_SHARED == 0 {
            return Err(EINVAL);
        }
        // The rings are data: never executable, and not inherited across fork, where they would
        // belong to a process that may not use them.
        vma.try_clear_mayexec()?;
        vma.set_dontcopy();
        rings.map(vma)
    }

    /// `SYSLET_IOC_EXEC`: consumes up to `args.to_submit` submissions and runs each one in the
    /// current task, in order, posting one completion each.
    ///
    /// With a continuation cookie, an atom that blocks hands the cookie to a parked spare; see
    /// `handoff.rs`. Returns how many submissions were consumed. Everything that can fail
    /// happens before any submission is consumed: a consumed submission always completes. Must
    /// be called from process context without locks held.
    pub(crate) fn exec(&self, args: &mut ExecArgs) -> Result<isize> {
        self.check_owner()?;
        if args.flags != 0 || args.resv != 0 {
            return Err(EINVAL);
        }
        let rings = self.rings()?;
        let max = args.to_submit.min(rings.layout().sq_entries);
        if max == 0 {
            return Ok(0);
        }
        let _guard = ExecGuard::new()?;
        // Small batches, the common case of latency-bound callers, need no allocation.
        let mut small = [Sqe::default(); SMALL_BATCH];
        let mut large: KVVec<Sqe>;
        let batch: &mut [Sqe] = if max as usize <= SMALL_BATCH {
            &mut small[..max as usize]
        } else {
            large = KVVec::from_elem(Sqe::default(), max as usize, GFP_KERNEL)?;
            &mut large
        };
        let cont = match args.continuation {
            0 => None,
            cookie => Some(self.begin_handoff(cookie)?),
        };

        let count = match rings.claim(batch) {
            Ok(count) => count,
            Err(err) => {
                if let Some(cont) = cont {
                    self.end_handoff(cont);
                }
                return Err(match err {
                    ClaimError::Corrupt => EINVAL,
                    ClaimError::CqFull => EBUSY,
                });
            }
        };
        self.stats.submitted.fetch_add(u64::from(count), Relaxed);
        if count > 0 {
            Stats::inc(&self.stats.execs);
        }
        args.submitted = count;
        let batch = &batch[..count as usize];
        match cont {
            // No continuation to hand off: nothing watches the task, zero extra cost.
            None => self.run_batch(rings, batch, None),
            Some(cont) => {
                pin_init::stack_pin_init!(let hook = PreemptNotifier::new(BlockHook {
                    cont: cont.clone(),
                }));
                hook.with_registered(|| self.run_batch(rings, batch, Some(&cont)));
                if cont.state.load(Relaxed) == HANDED {
                    args.status = EXEC_HANDED_OFF;
                }
                self.end_handoff(cont);
            }
        }
        Ok(count as isize)
    }

    /// Prepares an exec's continuation `cookie`, lending it the most recently parked spare.
    fn begin_handoff(&self, cookie: u64) -> Result<Arc<Continuation>> {
        let cont = Continuation::new(cookie)?;
        let mut handoff = self.handoff.lock();
        handoff.inflight.push(cont.clone(), GFP_ATOMIC)?;
        if let Some(spare) = handoff.parked.pop() {
            *spare.lent_to.lock() = Some(cont.clone());
            let _ = cont.wake.data().spare.populate(spare);
        }
        Ok(cont)
    }

    /// Ends an exec's continuation: a spare it borrowed and did not hand the continuation to
    /// goes back on top of the stack.
    ///
    /// The continuation is dropped here, outside any lock: dropping it waits for its irq work.
    fn end_handoff(&self, cont: Arc<Continuation>) {
        let mut handoff = self.handoff.lock();
        let own = handoff
            .inflight
            .iter()
            .position(|c| Arc::ptr_eq(c, &cont))
            .and_then(|i| handoff.inflight.remove(i).ok());
        let mut lent = None;
        if let Some(spare) = cont.spare() {
            // Still lent (not claimed, not gone)? Its slot in `parked` is still allocated, as
            // the stack only shrank since the spare was popped.
            lent = spare.lent_to.lock().take();
            if lent.is_some()
                && (handoff.closing || handoff.parked.push_within_capacity(spare.clone()).is_err())
            {
                spare.parker.unpark();
            }
        }
        drop(handoff);
        drop((own, lent));
    }

    /// Runs a claimed batch in order, posting one completion per entry.
    ///
    /// Without a continuation nobody can look at the completions before the exec returns, so
    /// they are posted together at the end (one lock, one wakeup). With one, the program may go
    /// on elsewhere at any block, so each is posted as soon as its atom ends.
    fn run_batch(&self, rings: &Rings, batch: &[Sqe], cont: Option<&Continuation>) {
        let mut small = [Cqe::default(); SMALL_BATCH];
        let mut large: KVVec<Cqe>;
        let mut deferred: Option<&mut [Cqe]> = match cont {
            None if batch.len() <= SMALL_BATCH => Some(&mut small[..batch.len()]),
            None => match KVVec::from_elem(Cqe::default(), batch.len(), GFP_KERNEL) {
                Ok(vec) => {
                    large = vec;
                    Some(&mut large)
                }
                // Without room to gather them, post them one by one.
                Err(_) => None,
            },
            Some(_) => None,
        };
        let mut gathered = 0;
        let mut counts = BatchCounts::default();
        let mut chain_failed = false;
        let mut interrupted = false;
        let mut handed = false;
        for sqe in batch {
            let mut outcome = if interrupted {
                // A signal arrived: let it be handled (or kill) before anything else runs.
                Outcome::refused(EINTR)
            } else if chain_failed {
                Outcome::refused(errno(bindings::ECANCELED))
            } else if let Some(cont) = cont {
                let outcome = self.run_watched(rings, sqe, cont);
                handed = handed || !cont.reclaim();
                outcome
            } else {
                atom::run(sqe)
            };
            chain_failed = sqe.flags & SQE_LINK != 0 && outcome.res < 0;
            if handed {
                outcome.flags = (outcome.flags & !CQE_F_INLINE) | CQE_F_ASYNC;
            }
            counts.add(&outcome);
            let cqe = Cqe {
                user_data: sqe.user_data,
                res: outcome.res,
                flags: outcome.flags,
                ..Default::default()
            };
            match deferred.as_deref_mut().and_then(|d| d.get_mut(gathered)) {
                Some(slot) => {
                    *slot = cqe;
                    gathered += 1;
                }
                None => rings.complete(&[cqe]),
            }
            if !interrupted && current!().signal_pending() {
                interrupted = true;
            }
        }
        if let Some(deferred) = deferred {
            rings.complete(&deferred[..gathered]);
        }
        counts.flush(&self.stats);
    }

    /// Runs one atom of an exec with a continuation, reporting blocks without a spare and
    /// cancellation.
    fn run_watched(&self, rings: &Rings, sqe: &Sqe, cont: &Continuation) -> Outcome {
        // A cancel that lost the race with the end of the previous atom must not hit this one.
        if cont.cancel_requested.xchg(false, Relaxed) {
            Task::clear_notify_signal_current();
        }
        cont.running_user_data.store(sqe.user_data, Relaxed);
        cont.atom_running.store(true, Relaxed);
        let mut outcome = atom::run(sqe);
        cont.atom_running.store(false, Relaxed);
        if cont.cancel_requested.xchg(false, Relaxed) {
            // The cancel interrupted the call; don't let it interrupt the next one too.
            Task::clear_notify_signal_current();
            Stats::inc(&self.stats.cancelled);
            if outcome.res == -i64::from(bindings::EINTR) {
                outcome.res = -i64::from(bindings::ECANCELED);
            }
        }
        if cont.blocked_without_spare.xchg(false, Relaxed) {
            Stats::inc(&self.stats.sync_fallbacks);
            rings.set_flag(RING_NEED_SPARE, true);
        }
        outcome
    }

    /// `SYSLET_IOC_PARK`: waits as a spare; returns the continuation cookie of the submitter this
    /// thread must take over.
    ///
    /// Fails with `EINTR` on a signal and `ESHUTDOWN` when the context closes.
    pub(crate) fn park(&self) -> Result<u64> {
        self.check_owner()?;
        let rings = self.rings()?;
        let spare = Spare::new()?;
        {
            let mut handoff = self.handoff.lock();
            if handoff.closing {
                return Err(errno(bindings::ESHUTDOWN));
            }
            handoff.parked.push(spare.clone(), GFP_ATOMIC)?;
        }
        Stats::inc(&self.stats.spares_parked);
        rings.set_flag(RING_NEED_SPARE, false);

        let ret = loop {
            let woken = spare.parker.park_interruptible();
            let mut handoff = self.handoff.lock();
            let lent_to = spare.lent_to.lock().clone();
            if let Some(cont) = &lent_to {
                if cont.claim() {
                    // The continuation is ours; the exec will not take this spare back.
                    let cleared = spare.lent_to.lock().take();
                    drop(handoff);
                    drop(cleared);
                    self.stats.record_latency(cont.handoff_latency_us());
                    Stats::inc(&self.stats.handoffs);
                    break Ok(cont.cookie);
                }
            }
            if handoff.closing || woken.is_err() {
                // Leave: out of the stack, or away from the exec that borrowed us (it then
                // simply has no spare).
                let own = handoff
                    .parked
                    .iter()
                    .position(|s| Arc::ptr_eq(s, &spare))
                    .and_then(|i| handoff.parked.remove(i).ok());
                let cleared = spare.lent_to.lock().take();
                let closing = handoff.closing;
                drop(handoff);
                drop((own, cleared));
                break Err(if closing {
                    errno(bindings::ESHUTDOWN)
                } else {
                    EINTR
                });
            }
            // Woken for a continuation the submitter took back first: park again.
            drop(handoff);
            drop(lent_to);
        };
        self.stats.spares_parked.fetch_sub(1, Relaxed);
        ret
    }

    /// `SYSLET_IOC_WAIT`: waits for completions.
    pub(crate) fn wait(&self, args: &WaitArgs) -> Result<isize> {
        self.check_owner()?;
        if args.flags != 0 || args.resv != 0 {
            return Err(EINVAL);
        }
        match self.rings()?.wait(args.min_complete, args.timeout_ns) {
            Ok(unread) => Ok(unread as isize),
            Err(WaitError::Invalid) => Err(EINVAL),
            Err(WaitError::TimedOut) => Err(ETIMEDOUT),
            Err(WaitError::Interrupted) => Err(EINTR),
        }
    }

    /// `SYSLET_IOC_CANCEL`: interrupts the handed-off atom with `user_data`.
    pub(crate) fn cancel(&self, user_data: u64) -> Result<isize> {
        self.check_owner()?;
        let handoff = self.handoff.lock();
        let cont = handoff.inflight.iter().find(|c| {
            c.state.load(Relaxed) == HANDED
                && c.atom_running.load(Relaxed)
                && c.running_user_data.load(Relaxed) == user_data
        });
        match cont {
            Some(cont) => {
                cont.cancel_requested.store(true, Relaxed);
                cont.submitter.notify_signal();
                Ok(0)
            }
            None => Err(ENOENT),
        }
    }

    /// Readiness for poll/epoll: `POLLIN` while completions are unread.
    pub(crate) fn poll(&self, file: &File, table: PollTable<'_>) -> u32 {
        match self.rings.as_ref() {
            Some(rings) => rings.poll(file, &table),
            None => bindings::POLLERR,
        }
    }

    /// A descriptor of the file is being closed: if by the owner (also at its exit), the
    /// context's spares leave with `ESHUTDOWN` and no more may park.
    pub(crate) fn flush(&self) {
        if !self.current_is_owner() {
            return;
        }
        let mut handoff = self.handoff.lock();
        handoff.closing = true;
        for spare in handoff.parked.iter() {
            spare.parker.unpark();
        }
        for cont in handoff.inflight.iter() {
            if let Some(spare) = cont.spare() {
                spare.parker.unpark();
            }
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
