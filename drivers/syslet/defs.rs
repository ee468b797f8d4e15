// SPDX-License-Identifier: GPL-2.0

//! The user-space ABI of `include/uapi/linux/syslet.h`, in Rust.
//!
//! The structures are written out here with Rust types and documentation. The C header, run
//! through bindgen at build time, is used to check that every size, alignment and field offset
//! matches, and to take the constants from.

use kernel::{
    ioctl::{
        _IO,
        _IOR,
        _IOW,
        _IOWR, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
};

/// The bindgen output of `include/uapi/linux/syslet.h`.
#[allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    unreachable_pub
)]
mod c {
    include!("uapi_generated.rs");
}

/// Checks at build time that a Rust structure has the layout of its C counterpart.
macro_rules! assert_same_layout {
    ($rust:ty, $c:ty, $($field:ident),+ $(,)?) => {
        const _: () = {
            assert!(core::mem::size_of::<$rust>() == core::mem::size_of::<$c>());
            assert!(core::mem::align_of::<$rust>() == core::mem::align_of::<$c>());
            $(assert!(
                core::mem::offset_of!($rust, $field) == core::mem::offset_of!($c, $field)
            );)+
        };
    };
}

/// A submission entry: one system call, or "atom" (`struct syslet_sqe`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Sqe {
    pub(crate) nr: u32,
    pub(crate) flags: u32,
    pub(crate) args: [u64; 6],
    pub(crate) user_data: u64,
}
assert_same_layout!(Sqe, c::syslet_sqe, nr, flags, args, user_data);

/// A completion entry (`struct syslet_cqe`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Cqe {
    pub(crate) user_data: u64,
    pub(crate) res: i64,
    pub(crate) flags: u32,
    pub(crate) resv0: u32,
    pub(crate) resv1: u64,
}
assert_same_layout!(Cqe, c::syslet_cqe, user_data, res, flags, resv0, resv1);

/// The header at the start of the shared region (`struct syslet_ring_header`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct RingHeader {
    pub(crate) sq_head: u32,
    pub(crate) sq_tail: u32,
    pub(crate) cq_head: u32,
    pub(crate) cq_tail: u32,
    pub(crate) sq_mask: u32,
    pub(crate) cq_mask: u32,
    pub(crate) sq_entries: u32,
    pub(crate) cq_entries: u32,
    pub(crate) flags: u32,
    pub(crate) resv: [u32; 7],
}
assert_same_layout!(
    RingHeader,
    c::syslet_ring_header,
    sq_head,
    sq_tail,
    cq_head,
    cq_tail,
    sq_mask,
    cq_mask,
    sq_entries,
    cq_entries,
    flags,
    resv,
);

/// The argument of `SYSLET_IOC_SETUP` (`struct syslet_params`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Params {
    pub(crate) sq_entries: u32,
    pub(crate) cq_entries: u32,
    pub(crate) flags: u32,
    pub(crate) resv0: u32,
    pub(crate) mmap_size: u64,
    pub(crate) sqes_off: u64,
    pub(crate) cqes_off: u64,
    pub(crate) threadlets_off: u64,
    pub(crate) resv: [u64; 3],
}
assert_same_layout!(
    Params,
    c::syslet_params,
    sq_entries,
    cq_entries,
    flags,
    resv0,
    mmap_size,
    sqes_off,
    cqes_off,
    threadlets_off,
    resv,
);

/// The argument of `SYSLET_IOC_EXEC` (`struct syslet_exec`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ExecArgs {
    pub(crate) to_submit: u32,
    pub(crate) flags: u32,
    pub(crate) continuation: u64,
    pub(crate) submitted: u32,
    pub(crate) status: u32,
    pub(crate) resv: u64,
}
assert_same_layout!(
    ExecArgs,
    c::syslet_exec,
    to_submit,
    flags,
    continuation,
    submitted,
    status,
    resv,
);

/// The argument of `SYSLET_IOC_PARK` (`struct syslet_park`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ParkArgs {
    pub(crate) continuation: u64,
    pub(crate) timeout_ns: i64,
    pub(crate) resv: u64,
}
assert_same_layout!(ParkArgs, c::syslet_park, continuation, timeout_ns, resv);

/// The argument of `SYSLET_IOC_WAIT` (`struct syslet_wait`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct WaitArgs {
    pub(crate) min_complete: u32,
    pub(crate) flags: u32,
    pub(crate) timeout_ns: i64,
    pub(crate) resv: u64,
}
assert_same_layout!(
    WaitArgs,
    c::syslet_wait,
    min_complete,
    flags,
    timeout_ns,
    resv
);

/// A registered thread's slot in the shared region (`struct syslet_threadlet_slot`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ThreadletSlot {
    /// 0, or the running threadlet's cookie ORed with `THREADLET_*` bits.
    pub(crate) state: u64,
    /// The running threadlet's completion tag, written by user space before `state`.
    pub(crate) user_data: u64,
    /// Blocks inside a threadlet that found no spare (kernel-written).
    pub(crate) sync_blocks: u32,
    pub(crate) resv0: u32,
    pub(crate) resv: [u64; 5],
}
assert_same_layout!(
    ThreadletSlot,
    c::syslet_threadlet_slot,
    state,
    user_data,
    sync_blocks,
    resv0,
    resv
);

// SAFETY: These structures are made of integers with no padding (checked against C above, where
// every field is explicit), so any bytes are a valid value and every byte is initialized.
unsafe impl FromBytes for Sqe {}
// SAFETY: As above.
unsafe impl AsBytes for Sqe {}
// SAFETY: As above.
unsafe impl FromBytes for Cqe {}
// SAFETY: As above.
unsafe impl AsBytes for Cqe {}
// SAFETY: As above.
unsafe impl FromBytes for RingHeader {}
// SAFETY: As above.
unsafe impl AsBytes for RingHeader {}
// SAFETY: As above.
unsafe impl FromBytes for Params {}
// SAFETY: As above.
unsafe impl AsBytes for Params {}
// SAFETY: As above.
unsafe impl FromBytes for ExecArgs {}
// SAFETY: As above.
unsafe impl AsBytes for ExecArgs {}
// SAFETY: As above.
unsafe impl FromBytes for ParkArgs {}
// SAFETY: As above.
unsafe impl AsBytes for ParkArgs {}
// SAFETY: As above.
unsafe impl FromBytes for WaitArgs {}
// SAFETY: As above.
unsafe impl AsBytes for WaitArgs {}
// SAFETY: As above.
unsafe impl FromBytes for ThreadletSlot {}
// SAFETY: As above.
unsafe impl AsBytes for ThreadletSlot {}

pub(crate) const MAX_SQ_ENTRIES: u32 = c::SYSLET_MAX_SQ_ENTRIES;
pub(crate) const MAX_CQ_ENTRIES: u32 = c::SYSLET_MAX_CQ_ENTRIES;

pub(crate) const SETUP_POLL: u32 = c::SYSLET_SETUP_POLL;
pub(crate) const SETUP_VALID_FLAGS: u32 = c::SYSLET_SETUP_VALID_FLAGS;
pub(crate) const SQE_LINK: u32 = c::SYSLET_SQE_LINK;
pub(crate) const SQE_FWD_SHIFT: u32 = c::SYSLET_SQE_FWD_SHIFT;
pub(crate) const SQE_FWD_MASK: u32 = c::SYSLET_SQE_FWD_MASK;
pub(crate) const SQE_FWD_HEAD: u32 = c::SYSLET_SQE_FWD_HEAD;
pub(crate) const SQE_LINK_TIMEOUT: u32 = c::SYSLET_SQE_LINK_TIMEOUT;
pub(crate) const SQE_VALID_FLAGS: u32 = c::SYSLET_SQE_VALID_FLAGS;

pub(crate) const CQE_F_INLINE: u32 = c::SYSLET_CQE_F_INLINE;
pub(crate) const CQE_F_ASYNC: u32 = c::SYSLET_CQE_F_ASYNC;
pub(crate) const CQE_F_REFUSED: u32 = c::SYSLET_CQE_F_REFUSED;
pub(crate) const CQE_F_THREADLET: u32 = c::SYSLET_CQE_F_THREADLET;
pub(crate) const CQE_F_POLLED: u32 = c::SYSLET_CQE_F_POLLED;

pub(crate) const MAX_THREADLET_SLOTS: u32 = c::SYSLET_MAX_THREADLET_SLOTS;
pub(crate) const THREADLET_BLOCKED: u64 = c::SYSLET_THREADLET_BLOCKED as u64;
pub(crate) const THREADLET_HANDED: u64 = c::SYSLET_THREADLET_HANDED as u64;
pub(crate) const THREADLET_STATE_MASK: u64 = c::SYSLET_THREADLET_STATE_MASK as u64;

pub(crate) const RING_NEED_SPARE: u32 = c::SYSLET_RING_NEED_SPARE;

pub(crate) const EXEC_HANDED_OFF: u32 = c::SYSLET_EXEC_HANDED_OFF;
#[allow(clippy::unnecessary_cast)]
pub(crate) const EXEC_RET_HANDED_OFF: u32 = c::SYSLET_EXEC_RET_HANDED_OFF as u32;

pub(crate) const IOC_SETUP: u32 = _IOWR::<Params>(c::SYSLET_IOC_MAGIC, 1);
pub(crate) const IOC_EXEC: u32 = _IOWR::<ExecArgs>(c::SYSLET_IOC_MAGIC, 2);
pub(crate) const IOC_PARK: u32 = _IOWR::<ParkArgs>(c::SYSLET_IOC_MAGIC, 3);
pub(crate) const IOC_WAIT: u32 = _IOW::<WaitArgs>(c::SYSLET_IOC_MAGIC, 4);
pub(crate) const IOC_CANCEL: u32 = _IOW::<u64>(c::SYSLET_IOC_MAGIC, 5);
pub(crate) const IOC_THREADLET_REGISTER: u32 = _IOR::<u32>(c::SYSLET_IOC_MAGIC, 6);
pub(crate) const IOC_THREADLET_UNREGISTER: u32 = _IO(c::SYSLET_IOC_MAGIC, 7);
pub(crate) const IOC_THREADLET_DONE: u32 = _IOW::<i64>(c::SYSLET_IOC_MAGIC, 8);
