// SPDX-License-Identifier: GPL-2.0

//! Kernel memory that user space maps with `mmap` and both sides access concurrently.
//!
//! Ring buffers shared with user space (io_uring's, syslet's) live in such memory. User space
//! may change any byte at any time, so the kernel never forms a reference into it: every access
//! goes through [`UserSharedBuffer`], as a single volatile copy or an atomic access at a
//! bounds-checked offset.
//!
//! C header: [`include/linux/vmalloc.h`](srctree/include/linux/vmalloc.h).

use crate::{
    bindings,
    error::{
        code::*,
        to_result, //
    },
    mm::virt::VmaNew,
    page::PAGE_SIZE,
    prelude::*,
    sync::atomic::{
        Acquire,
        Atomic,
        Full,
        Relaxed,
        Release, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
};
use core::{
    mem::{
        align_of,
        size_of, //
    },
    ptr::NonNull, //
};

/// A zeroed, page-aligned kernel buffer to be mapped into user space.
///
/// # Invariants
///
/// `ptr` points to `size` bytes allocated by `vmalloc_user()` and owned by this object; `size`
/// is a nonzero multiple of `PAGE_SIZE`.
pub struct UserSharedBuffer {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: The buffer is plain memory owned by this object; it can be used and freed from any
// thread.
unsafe impl Send for UserSharedBuffer {}
// SAFETY: All `&self` methods access the buffer with volatile or atomic operations only, which
// is sound with concurrent access from other threads and from user space.
unsafe impl Sync for UserSharedBuffer {}

impl UserSharedBuffer {
    /// Allocates a zeroed buffer of at least `size` bytes, rounded up to whole pages.
    ///
    /// Must not be called from atomic context.
    pub fn new(size: usize) -> Result<Self> {
        if size == 0 {
            return Err(EINVAL);
        }
        let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(ENOMEM)?;
        // SAFETY: `vmalloc_user_account_noprof` may be called with any size.
        let ptr = unsafe { bindings::vmalloc_user_account_noprof(size as _) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: `ptr` was just allocated with `size` bytes, a nonzero multiple of
        // `PAGE_SIZE`.
        Ok(Self { ptr, size })
    }

    /// Returns the size of the buffer in bytes, a multiple of `PAGE_SIZE`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Maps the whole buffer into `vma`, which must cover exactly the buffer at file offset zero.
    ///
    /// Fails with `EINVAL` for any other length or offset.
    pub fn map(&self, vma: &VmaNew) -> Result {
        let vma_ptr = vma.as_ptr();
        if vma.end() - vma.start() != self.size {
            return Err(EINVAL);
        }
        // SAFETY: `vma_ptr` is the VMA being set up by this mmap call; reading its offset is
        // fine while the caller holds the mmap lock, as it does for `VmaNew`.
        if unsafe { (*vma_ptr).vm_pgoff } != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `vma_ptr` is valid for this call; `self.ptr` was allocated by
        // `vmalloc_user()`, which `remap_vmalloc_range()` requires, and is at least as large as
        // the VMA. The pages stay allocated until `drop`, and the mapping holds references to
        // them, so user space never sees freed memory.
        to_result(unsafe { bindings::remap_vmalloc_range(vma_ptr, self.ptr.as_ptr().cast(), 0) })
    }

    /// Returns a pointer to `len` bytes at `offset` aligned to `align`, or `EINVAL` if they do
    /// not lie within the buffer or are misaligned.
    fn at(&self, offset: usize, len: usize, align: usize) -> Result<*mut u8> {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > self.size || offset % align != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `offset + len <= size`, so the result stays within the allocation.
        Ok(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Loads the `u32` at `offset` with acquire ordering (`smp_load_acquire()`).
    pub fn load_acquire(&self, offset: usize) -> Result<u32> {
        let ptr = self.at(offset, size_of::<u32>(), align_of::<u32>())?;
        // SAFETY: `ptr` is valid and aligned for a `u32` for the lifetime of `self`. Kernel
        // accesses to it are atomic; user space accesses it from outside the kernel, like a
        // device.
        Ok(unsafe { Atomic::<u32>::from_ptr(ptr.cast()) }.load(Acquire))
    }

    /// Stores `value` as the `u32` at `offset` with release ordering (`smp_store_release()`).
    pub fn store_release(&self, offset: usize, value: u32) -> Result {
        let ptr = self.at(offset, size_of::<u32>(), align_of::<u32>())?;
        // SAFETY: As in `load_acquire`.
        unsafe { Atomic::<u32>::from_ptr(ptr.cast()) }.store(value, Release);
        Ok(())
    }

    /// Returns the `u32` at `offset` as an atomic, valid for the lifetime of `self`.
    fn atomic_u32(&self, offset: usize) -> Result<&Atomic<u32>> {
        let ptr = self.at(offset, size_of::<u32>(), align_of::<u32>())?;
        // SAFETY: As in `load_acquire`.
        Ok(unsafe { Atomic::<u32>::from_ptr(ptr.cast()) })
    }

    /// Returns the `u64` at `offset` as an atomic, valid for the lifetime of `self`.
    fn atomic_u64(&self, offset: usize) -> Result<&Atomic<u64>> {
        let ptr = self.at(offset, size_of::<u64>(), align_of::<u64>())?;
        // SAFETY: As in `load_acquire`, for a `u64`.
        Ok(unsafe { Atomic::<u64>::from_ptr(ptr.cast()) })
    }

    /// Sets `bits` in the `u32` at `offset` (an atomic OR, fully ordered).
    ///
    /// Returns `false` if user space kept changing the word and the update was given up: the
    /// loop is bounded, since it may run under the runqueue lock and user space can store to
    /// the word as often as it likes. Only for words that are hints to user space.
    pub fn fetch_or(&self, offset: usize, bits: u32) -> Result<bool> {
        self.update(offset, |old| old | bits)
    }

    /// Clears `bits` in the `u32` at `offset`; as [`UserSharedBuffer::fetch_or`].
    pub fn fetch_andnot(&self, offset: usize, bits: u32) -> Result<bool> {
        self.update(offset, |old| old & !bits)
    }

    /// Replaces the `u32` at `offset` with `f(old)` by compare-and-exchange, a bounded number of
    /// times; returns whether it did.
    fn update(&self, offset: usize, f: impl Fn(u32) -> u32) -> Result<bool> {
        const TRIES: usize = 8;
        let word = self.atomic_u32(offset)?;
        let mut old = word.load(Relaxed);
        for _ in 0..TRIES {
            match word.cmpxchg(old, f(old), Full) {
                Ok(_) => return Ok(true),
                Err(now) => old = now,
            }
        }
        Ok(false)
    }

    /// Adds `value` to the `u32` at `offset`, wrapping (fully ordered).
    pub fn fetch_add(&self, offset: usize, value: u32) -> Result {
        self.atomic_u32(offset)?.fetch_add(value, Full);
        Ok(())
    }

    /// Loads the `u64` at `offset` with acquire ordering.
    pub fn load_acquire_u64(&self, offset: usize) -> Result<u64> {
        Ok(self.atomic_u64(offset)?.load(Acquire))
    }

    /// Stores `value` as the `u64` at `offset` with release ordering.
    pub fn store_release_u64(&self, offset: usize, value: u64) -> Result {
        self.atomic_u64(offset)?.store(value, Release);
        Ok(())
    }

    /// Replaces the `u64` at `offset` with `new` if it is `old` (fully ordered).
    ///
    /// Returns `Ok(Ok(old))` if it was replaced and `Ok(Err(current))` if not. User space may
    /// store to the word at any time: a success says only that the word held `old` at that
    /// instant.
    pub fn cmpxchg_u64(&self, offset: usize, old: u64, new: u64) -> Result<Result<u64, u64>> {
        Ok(self.atomic_u64(offset)?.cmpxchg(old, new, Full))
    }

    /// Copies the `T` at `offset` out of the buffer, reading it exactly once.
    ///
    /// User space may be writing to it at the same time: the copy may mix old and new bytes,
    /// which any `T: FromBytes` tolerates, and callers validate the copy, never the buffer.
    pub fn read<T: FromBytes>(&self, offset: usize) -> Result<T> {
        let ptr = self.at(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: `ptr` is valid and aligned for a `T` for the lifetime of `self`, and any bytes
        // form a valid `T`. The volatile read does not assume the memory is unchanging.
        Ok(unsafe { ptr.cast::<T>().read_volatile() })
    }

    /// Copies `value` into the buffer at `offset`.
    pub fn write<T: AsBytes + Copy>(&self, offset: usize, value: &T) -> Result {
        let ptr = self.at(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: `ptr` is valid and aligned for a `T` for the lifetime of `self`; the bytes of
        // a `T: AsBytes` are all initialized, and user space may read them at any time.
        unsafe { ptr.cast::<T>().write_volatile(*value) };
        Ok(())
    }
}

impl Drop for UserSharedBuffer {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `ptr` came from `vmalloc_user()` and is freed once,
        // here. Pages still mapped into user space hold their own references.
        unsafe { bindings::vfree(self.ptr.as_ptr().cast()) };
    }
}
