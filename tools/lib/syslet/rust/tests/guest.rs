// SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause

//! The crate against the module, in the guest: TAP lines for the test command. Skips (as TAP
//! `# SKIP`) where `/dev/syslet` is missing.

use std::os::fd::AsFd;

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
    ];
    let present = std::path::Path::new(syslet::DEVICE).exists();
    println!("TAP version 13");
    println!("1..{}", tests.len());
    let mut failed = 0;
    for (i, (name, test)) in tests.iter().enumerate() {
        if !present {
            println!("ok {} {} # SKIP {} missing", i + 1, name, syslet::DEVICE);
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
