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
