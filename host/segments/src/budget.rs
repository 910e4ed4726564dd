//! Caps on the shared memory a memory may map: a host gives every guest one budget shared by
//! all its memories, so a guest cannot exhaust `/dev/shm` through large hints or growth.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

/// Consulted before every segment is created and told when it is gone. Sizes are whole
/// segment objects (payload, trailer and page rounding).
pub trait SegmentBudget: Send + Sync + Debug {
    /// Reserves `bytes`; `false` refuses, and the allocation fails with `QuotaExceeded`.
    fn reserve(&self, bytes: u64) -> bool;
    /// Returns bytes reserved earlier.
    fn release(&self, bytes: u64);
}

/// A budget of at most `limit` bytes at once.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

impl ByteBudget {
    /// A budget of `limit` bytes, none of them reserved yet.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// The most bytes that may be reserved at once.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

impl SegmentBudget for ByteBudget {
    fn reserve(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: u64) {
        // Saturating: a release never underflows even if a caller returns too much.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_up_to_the_limit() {
        let budget = ByteBudget::new(100);
        assert!(budget.reserve(60));
        assert!(!budget.reserve(41));
        assert!(budget.reserve(40));
        assert!(!budget.reserve(1));
        assert!(!budget.reserve(u64::MAX));
        budget.release(60);
        assert_eq!(budget.used(), 40);
        budget.release(1000);
        assert_eq!(budget.used(), 0);
    }
}
