// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The handoff runtime: a syslet context, the bounded pool of spare threads that take a
//! program over when one of its threadlets blocks, and the stacks programs run on.
//!
//! Threads and stacks, as in the C runtime (tools/lib/syslet/runtime.c), with one difference:
//! a program runs on a stack the runtime owns (a fiber), never on a thread's own stack, so any
//! thread may start one and get its own stack back. Every thread that runs programs (the one
//! calling [`Runtime::program`], pool threads) has a threadlet stack and a slot registered with
//! the kernel. When a threadlet blocks, a parked spare resumes the program's fiber; the blocked
//! thread finishes the threadlet, posts its result and goes home: a pool thread parks again,
//! the caller of `Runtime::program` waits for its program to end.
//!
//! The pool: `min_spares` threads are started at once and kept parked; a thread parked longer
//! than `idle_ms` with `min_spares` others parked leaves. After each threadlet, if the kernel
//! set `SYSLET_RING_NEED_SPARE` (something blocked with no spare parked) and none is parked, or
//! fewer than `min_spares` are, one more thread starts, up to `max_spares`: the pool grows off
//! the hot path, one thread at a time.

use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::sys::{self, Back, Fiber, Region, Worker};
use crate::threadlet::{Arrive, Finished, Tickets};

/// The default bound of the pool: one thread is needed per threadlet blocked at the same time
/// (it finishes the threadlet while a spare goes on with the program); beyond the bound a
/// block just blocks its caller (a synchronous fallback: correct, only slower). Sixteen such
/// threads cost little (each has a 256 KiB stack of its own and a threadlet stack, touched
/// lazily) and the kernel has 64 threadlet slots per context.
pub const DEFAULT_MAX_SPARES: u32 = 16;

/// Usable size of a program's stack (touched lazily).
const PROGRAM_STACK: usize = 2 << 20;
/// Usable size of each thread's threadlet stack, where threadlet closures run.
const THREADLET_STACK: usize = 1 << 20;
/// A pool thread's own stack: it only parks and switches.
const SPARE_STACK: usize = 256 << 10;
/// Completion ring size: each threadlet that blocked holds an entry until its result is
/// reaped; with the ring full, blocks just block.
const CQ_ENTRIES: u32 = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sizes of the pool of spare threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Parked from the start and kept parked when idle.
    pub min_spares: u32,
    /// At most this many pool threads (see [`DEFAULT_MAX_SPARES`]); 0 is allowed: then every
    /// block is a synchronous fallback and threadlets always come back `Done`.
    pub max_spares: u32,
    /// A spare parked this long, with `min_spares` others parked, leaves (0: 1 ms).
    pub idle_ms: u32,
}

impl Default for PoolParams {
    fn default() -> Self {
        Self {
            min_spares: 1,
            max_spares: DEFAULT_MAX_SPARES,
            idle_ms: 1000,
        }
    }
}

/// What the pool did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pool threads now.
    pub threads: u32,
    /// Of them, parked now.
    pub parked: u32,
    /// Most pool threads at once.
    pub peak_threads: u32,
    /// Programs a spare took over.
    pub handoffs: u64,
    /// Threadlet calls that came back `Async`, on another thread.
    pub went_async: u64,
}

/// A program that may be running (for a spare to find by its continuation), and its end.
struct Running {
    fiber: Arc<Fiber>,
    done: Mutex<bool>,
    ended: Condvar,
}

impl Running {
    fn finish(&self) {
        *lock(&self.done) = true;
        self.ended.notify_all();
    }

    fn wait(&self) {
        let mut done = lock(&self.done);
        while !*done {
            done = self
                .ended
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What the runtime's handle, its programs, pending results and pool threads share.
pub(crate) struct Shared {
    region: Arc<Region>,
    /// The kernel has threadlets: programs run on fibers, watched.
    threadlets: bool,
    min_spares: u32,
    max_spares: u32,
    idle_ns: i64,
    threads: AtomicU32,
    parked: AtomicU32,
    starting: AtomicU32,
    peak_threads: AtomicU32,
    handoffs: AtomicU64,
    went_async: AtomicU64,
    stopping: AtomicBool,
    next_ticket: AtomicU64,
    running: Mutex<Vec<Arc<Running>>>,
    tickets: Mutex<Tickets>,
    /// One thread reaps (and waits for) completions at a time.
    reaper: Mutex<()>,
}

impl Shared {
    pub(crate) fn next_ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn note_async(&self) {
        self.went_async.fetch_add(1, Ordering::Relaxed);
    }

    /// The result of `ticket` goes to `slot` when its completion is reaped.
    pub(crate) fn expect(&self, ticket: u64, slot: Arc<dyn Arrive>) {
        lock(&self.tickets).expect(ticket, slot);
    }

    /// Takes the completions there, delivering each; if none and `wait` is not zero, waits up
    /// to `wait` for one first. `enough` is checked once this thread is the reaper: if it
    /// holds (another reaper delivered what the caller waits for) nothing is waited for.
    ///
    /// Without a wait, this does not wait for another reaper either (that one delivers).
    pub(crate) fn reap(&self, wait: Duration, enough: impl Fn() -> bool) -> Vec<Finished> {
        let _reaper = if wait.is_zero() {
            match self.reaper.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Vec::new(),
            }
        } else {
            lock(&self.reaper)
        };
        if enough() {
            return Vec::new();
        }
        let mut out = self.drain();
        if out.is_empty() && !wait.is_zero() {
            let ns = i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX);
            if let Err(e) = self.region.wait(ns) {
                // ESHUTDOWN: the runtime is gone and nothing is unread; a result still to come
                // is posted anyway, so look again a little later.
                if e.raw_os_error() == Some(rustix::io::Errno::SHUTDOWN.raw_os_error()) {
                    std::thread::sleep(wait.min(Duration::from_millis(1)));
                }
            }
            out = self.drain();
        }
        out
    }

    fn drain(&self) -> Vec<Finished> {
        let mut out = Vec::new();
        while let Some(cqe) = self.region.take_cqe() {
            if cqe.flags & sys::CQE_F_THREADLET == 0 {
                continue;
            }
            lock(&self.tickets).arrive(cqe.user_data, cqe.res);
            out.push(Finished {
                ticket: cqe.user_data,
                res: cqe.res,
            });
        }
        out
    }

    /// The running program whose stack holds `cookie`.
    fn running_at(&self, cookie: u64) -> Option<Arc<Running>> {
        lock(&self.running)
            .iter()
            .find(|r| r.fiber.contains(cookie))
            .cloned()
    }

    /// Starts one more pool thread if a block found no spare (none is parked), or fewer than
    /// `min_spares` are parked; one at a time, within `max_spares`.
    pub(crate) fn grow_if_asked(self: &Arc<Self>) {
        if self.starting.load(Ordering::Acquire) > 0 {
            return;
        }
        let parked = self.parked.load(Ordering::Acquire);
        let asked = self.region.flags() & sys::RING_NEED_SPARE != 0;
        if (asked && parked == 0) || parked < self.min_spares {
            let _ = self.spawn();
        }
    }

    /// Starts a pool thread, counted in before it runs.
    fn spawn(self: &Arc<Self>) -> io::Result<()> {
        let mut n = self.threads.load(Ordering::Relaxed);
        loop {
            if n >= self.max_spares || self.stopping.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match self
                .threads
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        self.starting.fetch_add(1, Ordering::AcqRel);
        self.peak_threads.fetch_max(n + 1, Ordering::Relaxed);
        let shared = self.clone();
        let spawned = std::thread::Builder::new()
            .name("syslet-spare".into())
            .stack_size(SPARE_STACK)
            .spawn(move || spare_main(&shared));
        if let Err(e) = spawned {
            self.starting.fetch_sub(1, Ordering::AcqRel);
            self.threads.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }
}

/// A pool thread: parks until it takes a program over, runs it until it ends here or hands it
/// on, and parks again; leaves when idle above the reserve or when the runtime goes.
fn spare_main(shared: &Arc<Shared>) {
    let worker = Worker::new(&shared.region, THREADLET_STACK);
    let Ok((worker, _unwatched)) = worker else {
        shared.starting.fetch_sub(1, Ordering::AcqRel);
        shared.threads.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    let mut starting = true;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        shared.parked.fetch_add(1, Ordering::AcqRel);
        if std::mem::take(&mut starting) {
            shared.starting.fetch_sub(1, Ordering::AcqRel);
        }
        let parked = worker.park(shared.idle_ns);
        shared.parked.fetch_sub(1, Ordering::AcqRel);
        match parked {
            Ok(handed) => {
                shared.handoffs.fetch_add(1, Ordering::Relaxed);
                // Every cookie this runtime publishes is on the fiber of a running program.
                let Some(running) = shared.running_at(handed.cookie()) else {
                    std::process::abort();
                };
                if worker.take_over(&running.fiber, handed) == Back::Finished {
                    running.finish();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::TIMEDOUT.raw_os_error()) => {
                // Each idle period decides anew: above the reserve depends on who else parks.
                if shared.parked.load(Ordering::Acquire) >= shared.min_spares {
                    shared.threads.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
            }
            // ESHUTDOWN: the runtime is going away; anything else: give up.
            Err(_) => break,
        }
    }
    shared.threads.fetch_sub(1, Ordering::AcqRel);
}

/// A syslet context with a pool of spare threads: runs [programs](Runtime::program) whose
/// [threadlets](crate::threadlet) hand the program to a spare when they block.
///
/// [`Runtime::direct`] is the explicit fallback where `/dev/syslet` is missing: programs and
/// threadlets run as plain code on the caller's thread. A runtime on a kernel without
/// threadlets ([`Runtime::threadlets`] false) does the same.
///
/// Dropping it stops the pool: parked spares leave at once, threads still finishing a
/// threadlet leave after it (its result is still posted).
pub struct Runtime {
    shared: Option<Arc<Shared>>,
    /// A descriptor of the context of its own: closing it tells parked spares to leave.
    owner: Option<OwnedFd>,
}

impl Runtime {
    /// Opens `/dev/syslet` and starts the pool. Fails with `NotFound` where the device is
    /// missing (see [`Runtime::direct`]), `InvalidInput` if `min_spares > max_spares`.
    pub fn start(params: PoolParams) -> io::Result<Self> {
        if params.min_spares > params.max_spares {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "min_spares > max_spares",
            ));
        }
        let region = Region::open(8, CQ_ENTRIES)?;
        let threadlets = region.threadlets_work();
        let owner = region.fd().try_clone_to_owned()?;
        let shared = Arc::new(Shared {
            region: Arc::new(region),
            threadlets,
            min_spares: params.min_spares,
            // Without threadlets no spare is ever handed anything.
            max_spares: if threadlets { params.max_spares } else { 0 },
            idle_ns: i64::from(params.idle_ms.max(1)) * 1_000_000,
            threads: AtomicU32::new(0),
            parked: AtomicU32::new(0),
            starting: AtomicU32::new(0),
            peak_threads: AtomicU32::new(0),
            handoffs: AtomicU64::new(0),
            went_async: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            next_ticket: AtomicU64::new(1),
            running: Mutex::new(Vec::new()),
            tickets: Mutex::new(Tickets::default()),
            reaper: Mutex::new(()),
        });
        let rt = Self {
            shared: Some(shared.clone()),
            owner: Some(owner),
        };
        if threadlets {
            for _ in 0..params.min_spares {
                // On failure, dropping `rt` lets the threads started go.
                shared.spawn()?;
            }
        }
        Ok(rt)
    }

    /// The explicit fallback: no device, no pool; programs run on the caller's stack and every
    /// threadlet runs inline (`Done`).
    pub fn direct() -> Self {
        Self {
            shared: None,
            owner: None,
        }
    }

    /// Whether this runtime uses `/dev/syslet` (not [`Runtime::direct`]).
    pub fn is_syslet(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether the kernel has threadlets: programs then run on a runtime stack, watched (with
    /// `max_spares` 0 they never go async, though).
    pub fn threadlets(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.threadlets)
    }

    /// What the pool did so far.
    pub fn stats(&self) -> Stats {
        let Some(s) = &self.shared else {
            return Stats::default();
        };
        Stats {
            threads: s.threads.load(Ordering::Relaxed),
            parked: s.parked.load(Ordering::Relaxed),
            peak_threads: s.peak_threads.load(Ordering::Relaxed),
            handoffs: s.handoffs.load(Ordering::Relaxed),
            went_async: s.went_async.load(Ordering::Relaxed),
        }
    }

    /// Runs `program` to its end and returns what it returned (resuming its panic, if it
    /// panicked).
    ///
    /// With threadlets, it runs on a stack of the runtime's own, first on this thread; from a
    /// threadlet that blocks on, on a spare thread (see [`crate::threadlet`]). This call
    /// returns on this thread, once the program has ended (wherever) and this thread has
    /// finished any threadlet of it that blocked here. Without threadlets (a
    /// [`direct`](Runtime::direct) runtime, an old kernel, a thread already registered with
    /// this runtime, as inside another program, or no slot left) it is a plain call.
    ///
    /// Fails only if the stacks cannot be mapped.
    pub fn program<T, F>(&self, program: F) -> io::Result<T>
    where
        F: FnOnce(&Program) -> T + Send + 'static,
        T: Send + 'static,
    {
        let Some(shared) = self.shared.as_ref().filter(|s| s.threadlets) else {
            return Ok(program(&Program::direct()));
        };
        let (worker, unwatched) = Worker::new(&shared.region, THREADLET_STACK)?;
        if unwatched.is_some() {
            drop(worker);
            return Ok(program(&Program::direct()));
        }
        let fiber = Fiber::new(PROGRAM_STACK)?;
        let running = Arc::new(Running {
            fiber: fiber.clone(),
            done: Mutex::new(false),
            ended: Condvar::new(),
        });
        lock(&shared.running).push(running.clone());
        let out = Arc::new(Mutex::new(None));
        let body = {
            let (out, shared, fiber) = (out.clone(), shared.clone(), fiber.clone());
            move || {
                let p = Program {
                    inner: Some((shared, fiber)),
                    _stack: PhantomData,
                };
                let r = panic::catch_unwind(AssertUnwindSafe(|| program(&p)));
                drop(p);
                *lock(&out) = Some(r);
            }
        };
        shared.grow_if_asked();
        let back = worker.run(&fiber, body);
        if let Ok(Back::Orphaned(_)) = back {
            running.wait();
        }
        lock(&shared.running).retain(|r| !Arc::ptr_eq(r, &running));
        // Its result, if a threadlet blocked here, was posted: the registration can go.
        drop(worker);
        back?;
        let result = lock(&out).take();
        match result {
            Some(Ok(v)) => Ok(v),
            Some(Err(panic)) => panic::resume_unwind(panic),
            None => Err(io::Error::other("syslet: the program left no result")),
        }
    }

    /// The threadlet completions there now, waiting up to `wait` for the first if there is
    /// none (`Duration::ZERO`: no wait). Each marks its [`Pending`](crate::threadlet::Pending)
    /// ready; each is yielded once, here or to a `Pending` that reaped it itself.
    pub fn completions(&self, wait: Duration) -> std::vec::IntoIter<Finished> {
        match &self.shared {
            Some(s) => s.reap(wait, || false).into_iter(),
            None => Vec::new().into_iter(),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.stopping.store(true, Ordering::Release);
        }
        // Closing a descriptor of the context makes parked spares leave (ESHUTDOWN).
        drop(self.owner.take());
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("syslet", &self.is_syslet())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The handle of a running program, for [`threadlet::run`](crate::threadlet::run).
///
/// It lives on the program's stack and goes wherever the program goes; it is neither `Send`
/// nor `Sync`, so it cannot reach a threadlet's closure or another thread.
pub struct Program {
    inner: Option<(Arc<Shared>, Arc<Fiber>)>,
    _stack: PhantomData<*const ()>,
}

impl Program {
    fn direct() -> Self {
        Self {
            inner: None,
            _stack: PhantomData,
        }
    }

    /// Whether this program's threadlets can go async (it runs on a runtime stack, watched).
    pub fn can_go_async(&self) -> bool {
        self.inner.as_ref().is_some_and(|(s, _)| s.max_spares > 0)
    }

    pub(crate) fn fiber(&self) -> Option<&Arc<Fiber>> {
        self.inner.as_ref().map(|(_, f)| f)
    }

    pub(crate) fn shared(&self) -> Option<&Arc<Shared>> {
        self.inner.as_ref().map(|(s, _)| s)
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("can_go_async", &self.can_go_async())
            .finish()
    }
}
