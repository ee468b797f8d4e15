// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The crate against the module, in the guest: TAP lines for the test command. Skips (as TAP
//! `# SKIP`) where `/dev/syslet` is missing.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use syslet::threadlet::{self, Outcome};
use syslet::{PoolParams, Runtime};

/// A guest test: `Err` says what was wrong.
type Test = fn() -> Result<(), String>;

fn main() {
    let tests: &[(&str, Test)] = &[
        ("rust.probe_finds_atoms_and_park_timeout", probe_finds_features),
        ("rust.read_hands_the_buffer_back", read_hands_the_buffer_back),
        ("rust.openat_read_close", openat_read_close),
        ("rust.chain_stops_at_first_error", chain_stops),
        ("rust.batch_runs_inline", batch_runs_inline),
        ("rust.raw_request_runs_any_call", raw_request),
        ("rust.probe_reports_threadlets", probe_reports_threadlets),
        ("rust.threadlet_inline_same_thread", threadlet_inline_same_thread),
        ("rust.blocking_threadlet_goes_async_on_another_thread", blocking_threadlet_goes_async),
        ("rust.two_hundred_threadlets_half_block", two_hundred_threadlets_half_block),
        ("rust.pool_of_zero_is_synchronous", pool_of_zero_is_synchronous),
        ("rust.panic_in_blocked_threadlet_reaches_the_waiter", panic_reaches_the_waiter),
    ];
    let present = std::path::Path::new(syslet::DEVICE).exists();
    // An argument runs only the tests whose name contains it (the others are skipped).
    let filter = std::env::args().nth(1).unwrap_or_default();
    println!("TAP version 13");
    println!("1..{}", tests.len());
    let mut failed = 0;
    for (i, (name, test)) in tests.iter().enumerate() {
        if !present {
            println!("ok {} {} # SKIP {} missing", i + 1, name, syslet::DEVICE);
            continue;
        }
        if !name.contains(filter.as_str()) {
            println!("ok {} {} # SKIP not selected", i + 1, name);
            continue;
        }
        match test() {
            Ok(()) => println!("ok {} {}", i + 1, name),
            Err(why) => {
                failed += 1;
                println!("# {name}: {why}");
                println!("not ok {} {}", i + 1, name);
            }
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.to_string()) }
}

fn probe_finds_features() -> Result<(), String> {
    let f = syslet::probe().map_err(|e| e.to_string())?;
    check(f.atoms, "atoms do not run")?;
    check(f.pollable, "no pollable path (SYSLET_SETUP_POLL refused)")?;
    check(f.park_timeout, "PARK has no time limit")
}

fn read_hands_the_buffer_back() -> Result<(), String> {
    let (r, w) = std::io::pipe().map_err(|e| e.to_string())?;
    let mut ring = syslet::Ring::new(4).map_err(|e| e.to_string())?;
    let done = ring
        .run(vec![
            syslet::op::write(w.as_fd(), b"syslet".to_vec()),
            syslet::op::read(r.as_fd(), vec![0; 6]),
        ])
        .map_err(|e| e.to_string())?;
    check(done.len() == 2, "two completions")?;
    check(done[0].result().ok() == Some(6), "write result")?;
    check(done[1].result().ok() == Some(6), "read result")?;
    check(done[1].is_inline(), "inline flag")?;
    let bytes = done.into_iter().nth(1).and_then(|c| c.into_bytes()).ok_or("no buffer back")?;
    check(bytes == b"syslet", "the data")
}

fn openat_read_close() -> Result<(), String> {
    let path = std::ffi::CString::new("/proc/self/comm").map_err(|e| e.to_string())?;
    let mut ring = syslet::Ring::new(4).map_err(|e| e.to_string())?;
    let done = ring
        .run(vec![syslet::op::openat(None, &path, 0, 0)])
        .map_err(|e| e.to_string())?;
    let fd = done.into_iter().next().ok_or("no completion")?.into_fd().map_err(|e| e.to_string())?;
    // A borrowed descriptor cannot be closed in the same batch: the borrow outlives the run.
    let read = ring
        .run(vec![syslet::op::read(fd.as_fd(), vec![0; 64])])
        .map_err(|e| e.to_string())?;
    check(read[0].result().is_ok_and(|n| n > 0), "read from the opened file")?;
    let closed = ring.run(vec![syslet::op::close(fd)]).map_err(|e| e.to_string())?;
    check(closed[0].result().ok() == Some(0), "close")
}

fn chain_stops() -> Result<(), String> {
    let path = std::ffi::CString::new("/nonexistent/syslet").map_err(|e| e.to_string())?;
    let mut ring = syslet::Ring::new(4).map_err(|e| e.to_string())?;
    let done = ring
        .run(vec![
            syslet::op::openat(None, &path, 0, 0).link(),
            syslet::op::getppid(),
            syslet::op::getppid(),
        ])
        .map_err(|e| e.to_string())?;
    check(done[0].raw_result() == -2, "ENOENT")?;
    check(done[1].raw_result() == -125 && done[1].is_refused(), "ECANCELED, refused")?;
    check(done[2].result().is_ok(), "the next chain runs")
}

fn batch_runs_inline() -> Result<(), String> {
    let mut ring = syslet::Ring::new(64).map_err(|e| e.to_string())?;
    let done = ring
        .run((0..64).map(|_| syslet::op::getppid()).collect())
        .map_err(|e| e.to_string())?;
    let ppid = u64::from(std::os::unix::process::parent_id());
    check(done.len() == 64, "64 completions")?;
    check(done.iter().all(|c| c.result().ok() == Some(ppid) && c.is_inline()), "getppid inline")
}

fn raw_request() -> Result<(), String> {
    let mut ring = syslet::Ring::new(2).map_err(|e| e.to_string())?;
    // SAFETY: getpid (39) takes no pointer.
    let request = unsafe { syslet::Request::raw(39, [0; 6]) };
    let done = ring.run(vec![request]).map_err(|e| e.to_string())?;
    check(done[0].result().ok() == Some(u64::from(std::process::id())), "getpid")
}

fn probe_reports_threadlets() -> Result<(), String> {
    let f = syslet::probe().map_err(|e| e.to_string())?;
    check(f.threadlets, "no threadlets")
}

fn tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// A runtime with threadlets, and (for `min` > 0) `min` spares parked.
fn runtime(params: PoolParams) -> Result<Runtime, String> {
    let rt = Runtime::start(params).map_err(|e| e.to_string())?;
    check(rt.threadlets(), "the runtime has no threadlets")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.stats().parked < params.min_spares {
        if Instant::now() > deadline {
            return Err(format!("spares not parked: {:?}", rt.stats()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(rt)
}

/// Writes `data` to `w` after `ms` milliseconds, from a thread of its own.
fn late_write(
    mut w: std::io::PipeWriter,
    ms: u64,
    data: &'static [u8],
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = w.write_all(data);
    })
}

fn threadlet_inline_same_thread() -> Result<(), String> {
    let rt = runtime(PoolParams::default())?;
    let result = rt
        .program(|p| {
            check(p.can_go_async(), "the program is not watched")?;
            for i in 0..50u64 {
                let before = tid();
                // SAFETY: Nothing thread-bound is held across the call.
                let outcome = unsafe { threadlet::run(p, move || (tid(), i + 1)) };
                let after = tid();
                // The first run of the closure's code may fault it in from the file system (in
                // the guest, 9p): that is a block, and may go async.
                if i == 0 {
                    continue;
                }
                let Outcome::Done((inside, value)) = outcome else {
                    return Err(format!("call {i} went async without blocking"));
                };
                check(value == i + 1, "the value")?;
                check(before == after && inside == before, "changed threads")?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    result?;
    let stats = rt.stats();
    check(stats.went_async <= 1, &format!("went async: {stats:?}"))
}

fn blocking_threadlet_goes_async() -> Result<(), String> {
    let rt = runtime(PoolParams { min_spares: 1, max_spares: 4, idle_ms: 1000 })?;
    let (r, w) = std::io::pipe().map_err(|e| e.to_string())?;
    let writer = late_write(w, 200, b"hello");
    let result = rt
        .program(move |p| {
            let locals = std::hint::black_box([0x1111u64, 0x2222, 0x3333, 0x4444, 0x5555]);
            let (a, b) = std::hint::black_box((1.25f64, 3.5f64));
            let before = tid();
            let f = move || {
                let me = tid();
                let mut buf = [0u8; 5];
                let n = (&r).read(&mut buf).map_err(|e| e.to_string());
                (me, n, buf)
            };
            // SAFETY: Nothing thread-bound is held across the call.
            let outcome = unsafe { threadlet::run(p, f) };
            let after = tid();
            let Outcome::Async(pending) = outcome else {
                return Err("did not go async".into());
            };
            check(after != before, "came back on the same thread")?;
            let locals = std::hint::black_box(locals);
            check(locals == [0x1111, 0x2222, 0x3333, 0x4444, 0x5555], "locals")?;
            check(a * b == 4.375, "floating-point locals")?;
            let (ran_on, n, buf) = pending.wait().map_err(|e| e.to_string())?;
            check(ran_on == before, "the closure ran on another thread than its caller's")?;
            check(n == Ok(5) && &buf == b"hello", "the data")
        })
        .map_err(|e| e.to_string())?;
    let _ = writer.join();
    result?;
    check(rt.completions(Duration::ZERO).count() == 0, "a second completion")?;
    let stats = rt.stats();
    check(stats.went_async == 1 && stats.handoffs == 1, &format!("stats: {stats:?}"))
}

fn two_hundred_threadlets_half_block() -> Result<(), String> {
    const N: u64 = 200;
    let rt = runtime(PoolParams::default())?;
    let result = rt
        .program(|p| {
            let mut seen = vec![0u32; N as usize];
            let mut pending = Vec::new();
            for i in 0..N {
                let f = move || {
                    if i % 2 == 1 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    i * 3
                };
                // SAFETY: Nothing thread-bound is held across the call.
                match unsafe { threadlet::run(p, f) } {
                    Outcome::Done(v) => {
                        check(v == i * 3, "inline value")?;
                        seen[i as usize] += 1;
                    }
                    Outcome::Async(pd) => pending.push((i, pd)),
                }
            }
            let went_async = pending.len();
            for (i, pd) in pending {
                let v = pd.wait().map_err(|e| e.to_string())?;
                check(v == i * 3, "async value")?;
                seen[i as usize] += 1;
            }
            let bad: Vec<usize> = (0..N as usize).filter(|&i| seen[i] != 1).collect();
            check(bad.is_empty(), &format!("not delivered exactly once: {bad:?}"))?;
            Ok::<usize, String>(went_async)
        })
        .map_err(|e| e.to_string())?;
    let went_async = result?;
    check(rt.completions(Duration::ZERO).count() == 0, "extra completions")?;
    let stats = rt.stats();
    println!("# {went_async} of {N} went async; {stats:?}");
    check(went_async > 0, "none went async")?;
    check(stats.went_async == went_async as u64, "went_async count")?;
    check(stats.peak_threads <= syslet::DEFAULT_MAX_SPARES, "pool bound")
}

fn pool_of_zero_is_synchronous() -> Result<(), String> {
    let rt = runtime(PoolParams { min_spares: 0, max_spares: 0, idle_ms: 1000 })?;
    let (r, w) = std::io::pipe().map_err(|e| e.to_string())?;
    let writer = late_write(w, 100, b"hey");
    let result = rt
        .program(move |p| {
            let before = tid();
            let f = move || {
                let mut buf = [0u8; 3];
                (&r).read(&mut buf).map(|n| (n, buf)).map_err(|e| e.to_string())
            };
            // SAFETY: Nothing thread-bound is held across the call.
            let outcome = unsafe { threadlet::run(p, f) };
            check(tid() == before, "changed threads")?;
            match outcome {
                Outcome::Done(Ok((3, buf))) => check(&buf == b"hey", "the data"),
                Outcome::Done(other) => Err(format!("read: {other:?}")),
                Outcome::Async(_) => Err("went async with no pool".into()),
            }
        })
        .map_err(|e| e.to_string())?;
    let _ = writer.join();
    result?;
    let stats = rt.stats();
    check(stats == syslet::Stats::default(), &format!("stats: {stats:?}"))?;
    check(rt.completions(Duration::ZERO).count() == 0, "a completion")
}

fn panic_reaches_the_waiter() -> Result<(), String> {
    let rt = runtime(PoolParams { min_spares: 1, max_spares: 2, idle_ms: 1000 })?;
    let (r, w) = std::io::pipe().map_err(|e| e.to_string())?;
    let writer = late_write(w, 100, b"x");
    let result = rt
        .program(move |p| {
            let f = move || -> u8 {
                let mut buf = [0u8; 1];
                let _ = (&r).read(&mut buf);
                panic!("threadlet panic after a block");
            };
            // SAFETY: Nothing thread-bound is held across the call.
            let Outcome::Async(pending) = (unsafe { threadlet::run(p, f) }) else {
                return Err("did not go async".into());
            };
            let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pending.wait()));
            let payload = waited.err().ok_or("no panic")?;
            let text = payload.downcast_ref::<&str>().copied().unwrap_or_default();
            check(text == "threadlet panic after a block", "the panic's payload")
        })
        .map_err(|e| e.to_string())?;
    let _ = writer.join();
    result
}

