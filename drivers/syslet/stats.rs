// SPDX-License-Identifier: GPL-2.0

//! Counters of a context, shown in fdinfo.

use kernel::{
    seq_file::SeqFile,
    seq_print,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

use crate::{
    atom::Outcome,
    defs::{
        CQE_F_ASYNC,
        CQE_F_INLINE,
        CQE_F_REFUSED, //
    },
};

/// Upper bounds, in microseconds, of the handoff latency histogram buckets; the last bucket has
/// no bound.
const LATENCY_BOUNDS_US: [i64; 7] = [10, 20, 50, 100, 200, 500, 1000];

/// Counters shown in fdinfo.
pub(crate) struct Stats {
    /// Submissions consumed.
    pub(crate) submitted: Atomic<u64>,
    /// Atoms completed while the submitter owned its continuation.
    pub(crate) completed_inline: Atomic<u64>,
    /// Atoms completed after the submitter's continuation was handed off.
    pub(crate) completed_async: Atomic<u64>,
    /// Completions with a negative result, refused atoms included.
    pub(crate) errors: Atomic<u64>,
    /// Atoms that did not run: policy, seccomp, bad flags, failed chains, signals.
    pub(crate) refused: Atomic<u64>,
    /// `SYSLET_IOC_EXEC` calls that consumed at least one submission.
    pub(crate) execs: Atomic<u64>,
    /// Continuations a spare took over.
    pub(crate) handoffs: Atomic<u64>,
    /// Atoms that blocked, with a continuation cookie, while no spare was parked.
    pub(crate) sync_fallbacks: Atomic<u64>,
    /// Spares parked now.
    pub(crate) spares_parked: Atomic<u64>,
    /// Atoms cancelled with `SYSLET_IOC_CANCEL`.
    pub(crate) cancelled: Atomic<u64>,
    /// Threadlets whose caller a spare took over.
    pub(crate) threadlet_handoffs: Atomic<u64>,
    /// Threadlet results posted by the thread that ran them, after a handoff.
    pub(crate) threadlets_done: Atomic<u64>,
    /// Atoms waiting on the pollable path now (no thread).
    pub(crate) armed: Atomic<u64>,
    /// Atoms that ran after waiting on the pollable path.
    pub(crate) completed_after_poll: Atomic<u64>,
    /// Atoms whose file was ready when woken but not when they were to run: armed again.
    pub(crate) poll_rearmed: Atomic<u64>,
    /// Atoms that blocked after waiting on the pollable path (the file was ready when asked, the
    /// call blocked all the same), in an exec with a continuation: handed off to a spare, or a
    /// synchronous fallback with none parked.
    pub(crate) poll_fallbacks: Atomic<u64>,
    /// Spares an exec's block woke from the scheduler's sleep hook, before the switch.
    pub(crate) wakes_before_switch: Atomic<u64>,
    /// Spares an exec's block woke from `sched_out`, through irq work, after the switch.
    pub(crate) wakes_after_switch: Atomic<u64>,
    /// Handoff latency, from the block to the spare running: see `LATENCY_BOUNDS_US`.
    latency_us: [Atomic<u64>; 8],
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            submitted: Atomic::new(0),
            completed_inline: Atomic::new(0),
            completed_async: Atomic::new(0),
            errors: Atomic::new(0),
            refused: Atomic::new(0),
            execs: Atomic::new(0),
            handoffs: Atomic::new(0),
            sync_fallbacks: Atomic::new(0),
            spares_parked: Atomic::new(0),
            cancelled: Atomic::new(0),
            threadlet_handoffs: Atomic::new(0),
            threadlets_done: Atomic::new(0),
            armed: Atomic::new(0),
            completed_after_poll: Atomic::new(0),
            poll_rearmed: Atomic::new(0),
            poll_fallbacks: Atomic::new(0),
            wakes_before_switch: Atomic::new(0),
            wakes_after_switch: Atomic::new(0),
            latency_us: [const { Atomic::new(0) }; 8],
        }
    }

    pub(crate) fn inc(counter: &Atomic<u64>) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_latency(&self, us: i64) {
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| us < bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        if let Some(counter) = self.latency_us.get(bucket) {
            Self::inc(counter);
        }
    }

    /// Prints the counters and the latency histogram to fdinfo.
    pub(crate) fn show(&self, m: &SeqFile) {
        let counters = [
            ("submitted", &self.submitted),
            ("completed_inline", &self.completed_inline),
            ("completed_async", &self.completed_async),
            ("errors", &self.errors),
            ("refused", &self.refused),
            ("execs", &self.execs),
            ("handoffs", &self.handoffs),
            ("sync_fallbacks", &self.sync_fallbacks),
            ("spares_parked", &self.spares_parked),
            ("cancelled", &self.cancelled),
            ("threadlet_handoffs", &self.threadlet_handoffs),
            ("threadlets_done", &self.threadlets_done),
            ("armed", &self.armed),
            ("completed_after_poll", &self.completed_after_poll),
            ("poll_rearmed", &self.poll_rearmed),
            ("poll_fallbacks", &self.poll_fallbacks),
            ("spare_wakes_before_switch", &self.wakes_before_switch),
            ("spare_wakes_after_switch", &self.wakes_after_switch),
        ];
        for (name, counter) in counters {
            seq_print!(m, "{}:\t{}\n", name, counter.load(Relaxed));
        }
        seq_print!(m, "handoff_latency_us:");
        let mut low = 0;
        for (bound, counter) in LATENCY_BOUNDS_US.iter().zip(self.latency_us.iter()) {
            seq_print!(m, " {}-{}:{}", low, bound, counter.load(Relaxed));
            low = *bound;
        }
        seq_print!(m, " {}+:{}\n", low, self.latency_us[7].load(Relaxed));
    }
}

/// Counters of one batch, added to [`Stats`] once at its end.
#[derive(Default)]
pub(crate) struct BatchCounts {
    inline: u64,
    async_: u64,
    errors: u64,
    refused: u64,
}

impl BatchCounts {
    pub(crate) fn add(&mut self, outcome: &Outcome) {
        if outcome.res < 0 {
            self.errors += 1;
        }
        if outcome.flags & CQE_F_REFUSED != 0 {
            self.refused += 1;
        }
        if outcome.flags & CQE_F_ASYNC != 0 {
            self.async_ += 1;
        } else if outcome.flags & CQE_F_INLINE != 0 {
            self.inline += 1;
        }
    }

    pub(crate) fn flush(&self, stats: &Stats) {
        let counters = [
            (&stats.completed_inline, self.inline),
            (&stats.completed_async, self.async_),
            (&stats.errors, self.errors),
            (&stats.refused, self.refused),
        ];
        for (counter, n) in counters {
            if n != 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }
}
