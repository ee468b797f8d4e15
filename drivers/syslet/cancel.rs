// SPDX-License-Identifier: GPL-2.0

//! Execs in flight, for cancellation and for closing the context.
//!
//! `SYSLET_IOC_CANCEL` interrupts a handed-off atom the way io_uring cancels io-wq work:
//! `TIF_NOTIFY_SIGNAL` and a wakeup, no real signal. An interruptible sleep returns, and the atom
//! completes with `-ECANCELED`; an uninterruptible sleep is not cut short. Whether the request
//! reaches the atom it names, and only that atom, is decided under the continuation's lock (see
//! `handoff.rs`).
//!
//! Lock order: [`Inflight::execs`], then the continuation's locks.

use kernel::{
    new_spinlock,
    prelude::*,
    sync::{
        Arc,
        SpinLock, //
    },
};

use crate::handoff::Continuation;

/// The continuations of the execs running now.
#[pin_data]
pub(crate) struct Inflight {
    #[pin]
    execs: SpinLock<KVec<Arc<Continuation>>>,
}

/// An exec's entry in [`Inflight`]; removes it when dropped.
pub(crate) struct InflightEntry<'a> {
    inflight: &'a Inflight,
    cont: Arc<Continuation>,
}

impl Inflight {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            execs <- new_spinlock!(KVec::new(), "Inflight::execs"),
        })
    }

    /// Registers the continuation of an exec that starts now.
    pub(crate) fn register(&self, cont: &Arc<Continuation>) -> Result<InflightEntry<'_>> {
        // Fails (with `ENOMEM`) before the exec consumes any submission.
        let mut execs = self.execs.lock();
        execs.push(cont.clone(), GFP_ATOMIC)?;
        Ok(InflightEntry {
            inflight: self,
            cont: cont.clone(),
        })
    }

    /// Interrupts the handed-off atom with `user_data`; fails with `ENOENT` if none is running.
    pub(crate) fn cancel(&self, user_data: u64) -> Result {
        let execs = self.execs.lock();
        if execs.iter().any(|c| c.request_cancel(user_data)) {
            Ok(())
        } else {
            Err(ENOENT)
        }
    }

    /// Wakes the spares lent to running execs, so that they see the context closing.
    pub(crate) fn wake_lent_spares(&self) {
        for cont in self.execs.lock().iter() {
            cont.wake_lent();
        }
    }
}

impl Drop for InflightEntry<'_> {
    fn drop(&mut self) {
        let mut execs = self.inflight.execs.lock();
        let own = execs
            .iter()
            .position(|c| Arc::ptr_eq(c, &self.cont))
            .and_then(|i| execs.remove(i).ok());
        drop(execs);
        // Outside the lock: this may be the last reference.
        drop(own);
    }
}
