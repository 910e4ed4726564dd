//! The atomics of the owner-private lock-free parts (slot reference counts, the pool's free
//! list): std's, or loom's when the crate is built with `--cfg loom` so that `scripts/loom`
//! can model-check every interleaving of them. Atomics that live in shared memory (headers,
//! trailers) stay std's: loom cannot place its atomics in a mapping.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The cell of the slot values: loom's under `--cfg loom` (it checks every access against the
/// happens-before order of the model), otherwise a zero-cost wrapper of std's with the same
/// closure-based API (`with` to read, `with_mut` to write through a raw pointer).
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// See the `cfg(loom)` item of the same name: std's `UnsafeCell` behind loom's API.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a pointer for reading the value.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a pointer for writing the value.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
