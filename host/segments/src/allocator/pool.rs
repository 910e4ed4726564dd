//! Fixed-size buckets handed out from a lock-free free list.
//!
//! Buckets are taken first from the free list (a Treiber stack whose head carries an ABA tag)
//! and then from a "fresh" counter, so creating a segment with millions of buckets costs no
//! initialisation. Each bucket's `next` word doubles as its state: `FREE | next index` while in
//! the free list, `0` while allocated or never used; a double free fails its compare-exchange.
//!
//! The head word packs a 31-bit bucket index (`NIL` for an empty list) under a 33-bit tag that
//! every successful push and pop increments, so a pop that read an old head fails its
//! compare-exchange even when the same bucket is back on top (ABA); the tag wraps only after
//! 2^33 list operations, all between one thread's load and its compare-exchange.

use std::alloc::Layout;
use std::ops::Deref;

use super::{ChunkAllocator, Exhausted, SegmentLayout, bucket_layout, checked_pow2};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{AllocError, AllocationStrategy, DeallocError};

/// Bits of the head word holding a bucket index (`MAX_CHUNKS` needs 30, `NIL` 31).
const INDEX_BITS: u32 = 31;
/// Bits of the head word holding the ABA tag: all the others.
const TAG_BITS: u32 = u64::BITS - INDEX_BITS;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// State bit of a bucket's `next` word: set while the bucket is in the free list.
const FREE: u32 = 1 << INDEX_BITS;
/// The index of "no bucket": ends the free list.
const NIL: u32 = INDEX_MASK as u32;

// Every pool the layouts allow has its indices, and `NIL`, in `INDEX_BITS`.
const _: () = assert!(super::MAX_CHUNKS < NIL as usize);

/// A head word from its tag (taken modulo 2^TAG_BITS) and bucket index (`< 2^INDEX_BITS`).
const fn pack(tag: u64, index: u32) -> u64 {
    ((tag & TAG_MASK) << INDEX_BITS) | (index as u64 & INDEX_MASK)
}

/// The bucket index of a head word.
const fn head_index(head: u64) -> u32 {
    (head & INDEX_MASK) as u32
}

/// The ABA tag of a head word.
const fn head_tag(head: u64) -> u64 {
    head >> INDEX_BITS
}

/// The head word that replaces `head` with `index` on top: the tag advances, wrapping.
const fn successor(head: u64, index: u32) -> u64 {
    pack(head_tag(head).wrapping_add(1), index)
}

/// Keeps a hot atomic on cache lines of its own. 128 bytes: two 64-byte lines, because x86's
/// adjacent-line prefetcher fetches lines in pairs (and some ARM cores have 128-byte lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A segment's allocator of equal buckets: see the module documentation.
#[derive(Debug)]
pub struct PoolAllocator {
    layout: SegmentLayout,
    buckets: u32,
    /// `pack(tag, index)` of the first free bucket, index `NIL` when the list is empty.
    head: CachePadded<AtomicU64>,
    /// Buckets `fresh..buckets` have never been handed out.
    fresh: CachePadded<AtomicU32>,
    next: Box<[AtomicU32]>,
    /// `log2(bucket size)` when it is a power of two: offsets then map to buckets by a shift.
    shift: Option<u32>,
}

/// `n` zeroed atomic words, failing instead of aborting when memory is short.
#[cfg(not(loom))]
fn zeroed_words(n: usize) -> Result<Box<[AtomicU32]>, AllocError> {
    let mut words: Vec<u32> = Vec::new();
    words
        .try_reserve_exact(n)
        .map_err(|_| AllocError::OutOfMemory)?;
    words.resize(n, 0);
    let words = words.into_boxed_slice();
    // SAFETY: AtomicU32 has the same size, alignment and bit validity as u32, so a boxed
    // slice of u32 is a valid boxed slice of AtomicU32 with the same allocation layout.
    Ok(unsafe { Box::from_raw(Box::into_raw(words) as *mut [AtomicU32]) })
}

/// `n` zeroed atomic words (loom's atomics are not plain words: built one by one).
#[cfg(loom)]
fn zeroed_words(n: usize) -> Result<Box<[AtomicU32]>, AllocError> {
    Ok((0..n).map(|_| AtomicU32::new(0)).collect())
}

impl PoolAllocator {
    /// A pool of `layout.chunks` buckets of `layout.chunk_size` bytes, none handed out.
    /// Fails with `SizeTooLarge` when the count does not fit the head's index bits.
    pub fn new(layout: SegmentLayout) -> Result<Self, AllocError> {
        let buckets = u32::try_from(layout.chunks)
            .ok()
            .filter(|&b| b < NIL)
            .ok_or(AllocError::SizeTooLarge)?;
        let next = zeroed_words(layout.chunks)?;
        Ok(Self {
            layout,
            buckets,
            head: CachePadded(AtomicU64::new(pack(0, NIL))),
            fresh: CachePadded(AtomicU32::new(0)),
            next,
            shift: layout
                .chunk_size
                .is_power_of_two()
                .then(|| layout.chunk_size.trailing_zeros()),
        })
    }

    /// Bytes of every bucket.
    pub fn bucket_size(&self) -> usize {
        self.layout.chunk_size
    }

    /// Buckets of the segment, handed out or not.
    pub fn number_of_buckets(&self) -> usize {
        self.layout.chunks
    }

    fn pop(&self) -> Option<u32> {
        loop {
            let mut head = self.head.load(Ordering::Acquire);
            while head_index(head) != NIL {
                let index = head_index(head);
                // A stale read is harmless: the tag makes the exchange below fail.
                let next = self.next[index as usize].load(Ordering::Acquire) & !FREE;
                let new = successor(head, next);
                match self.head.compare_exchange_weak(
                    head,
                    new,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        self.next[index as usize].store(0, Ordering::Release);
                        return Some(index);
                    }
                    Err(current) => head = current,
                }
            }
            let mut fresh = self.fresh.load(Ordering::Relaxed);
            while fresh < self.buckets {
                match self.fresh.compare_exchange_weak(
                    fresh,
                    fresh + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(fresh),
                    Err(current) => fresh = current,
                }
            }
            // Buckets may have been freed while we looked at the fresh counter.
            if head_index(self.head.load(Ordering::Acquire)) == NIL {
                return None;
            }
        }
    }

    fn push(&self, index: u32) -> Result<(), DeallocError> {
        let mut head = self.head.load(Ordering::Acquire);
        let slot = &self.next[index as usize];
        // Claim the bucket: only an allocated bucket (state 0) may enter the free list.
        slot.compare_exchange(
            0,
            FREE | head_index(head),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map_err(|_| DeallocError::NotAllocated)?;
        loop {
            let new = successor(head, index);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(current) => {
                    head = current;
                    slot.store(FREE | head_index(head), Ordering::Release);
                }
            }
        }
    }

    fn index_of(&self, offset: u64) -> Result<u32, DeallocError> {
        let size = self.layout.chunk_size as u64;
        let index = match self.shift {
            Some(shift) => offset >> shift,
            None => offset / size,
        };
        if index * size != offset || index >= u64::from(self.buckets) {
            return Err(DeallocError::InvalidOffset);
        }
        let index = index as u32;
        if index >= self.fresh.load(Ordering::Acquire) {
            return Err(DeallocError::NotAllocated);
        }
        Ok(index)
    }
}

impl ChunkAllocator for PoolAllocator {
    fn layout(&self) -> SegmentLayout {
        self.layout
    }

    fn allocate(&self, layout: Layout) -> Result<u64, Exhausted> {
        if layout.size() > self.layout.chunk_size {
            return Err(Exhausted::TooLarge);
        }
        if layout.align() > self.layout.chunk_align {
            return Err(Exhausted::TooAligned);
        }
        let index = self.pop().ok_or(Exhausted::NoChunkLeft)?;
        Ok(u64::from(index) * self.layout.chunk_size as u64)
    }

    fn deallocate(&self, offset: u64) -> Result<(), DeallocError> {
        let index = self.index_of(offset)?;
        self.push(index)
    }

    fn grow_in_place(&self, offset: u64, _old: Layout, new: Layout) -> bool {
        new.size() <= self.layout.chunk_size
            && new.align() <= self.layout.chunk_align
            && offset.is_multiple_of(new.align() as u64)
    }

    fn chunks_in_use(&self) -> usize {
        // Buckets ever handed out minus those back in the free list; the walk is bounded so
        // that a list changing under our feet cannot make it loop.
        let mut free = 0usize;
        let mut index = head_index(self.head.load(Ordering::Acquire));
        while index != NIL && free < self.layout.chunks {
            free += 1;
            index = self.next[index as usize].load(Ordering::Acquire) & !FREE;
        }
        (self.fresh.load(Ordering::Acquire) as usize).saturating_sub(free)
    }

    fn resize_hint(
        &self,
        request: Layout,
        strategy: AllocationStrategy,
        in_use: usize,
    ) -> Result<SegmentLayout, AllocError> {
        let current = self.layout;
        let all_used = in_use >= current.chunks;
        let chunks = match (strategy, all_used) {
            (AllocationStrategy::BestFit, true) => current.chunks + 1,
            (AllocationStrategy::PowerOfTwo, true) => checked_pow2(current.chunks + 1)?,
            _ => current.chunks,
        };
        let (size, align) =
            if current.chunk_size < request.size() || current.chunk_align < request.align() {
                let align = request.align().max(current.chunk_align);
                let size = request.size().max(current.chunk_size);
                match strategy {
                    AllocationStrategy::Static => (current.chunk_size, current.chunk_align),
                    AllocationStrategy::BestFit => (size, align),
                    AllocationStrategy::PowerOfTwo => (checked_pow2(size)?, align),
                }
            } else {
                (current.chunk_size, current.chunk_align)
            };
        bucket_layout(size, align, chunks)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pool(size: usize, align: usize, n: usize) -> PoolAllocator {
        PoolAllocator::new(bucket_layout(size, align, n).unwrap()).unwrap()
    }

    #[test]
    fn hands_out_every_bucket_once_then_reuses() {
        let p = pool(24, 8, 4);
        let mut got: Vec<u64> = (0..4)
            .map(|_| p.allocate(Layout::from_size_align(20, 8).unwrap()).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 24, 48, 72]);
        assert_eq!(p.allocate(Layout::new::<u8>()), Err(Exhausted::NoChunkLeft));
        p.deallocate(48).unwrap();
        assert_eq!(p.allocate(Layout::new::<u8>()), Ok(48));
        assert_eq!(p.chunks_in_use(), 4);
    }

    #[test]
    fn rejects_double_free_and_foreign_offsets() {
        let p = pool(16, 8, 4);
        let a = p.allocate(Layout::new::<u64>()).unwrap();
        assert_eq!(p.deallocate(a + 1), Err(DeallocError::InvalidOffset));
        assert_eq!(p.deallocate(64), Err(DeallocError::InvalidOffset));
        assert_eq!(p.deallocate(16), Err(DeallocError::NotAllocated));
        p.deallocate(a).unwrap();
        assert_eq!(p.deallocate(a), Err(DeallocError::NotAllocated));
        assert_eq!(p.chunks_in_use(), 0);
    }

    #[test]
    fn refuses_too_large_and_too_aligned() {
        let p = pool(16, 8, 1);
        assert_eq!(
            p.allocate(Layout::from_size_align(17, 1).unwrap()),
            Err(Exhausted::TooLarge)
        );
        assert_eq!(
            p.allocate(Layout::from_size_align(8, 16).unwrap()),
            Err(Exhausted::TooAligned)
        );
    }

    #[test]
    fn resize_hint_follows_strategy() {
        let p = pool(16, 8, 3);
        let small = Layout::from_size_align(8, 8).unwrap();
        let big = Layout::from_size_align(100, 32).unwrap();
        // Not all buckets used and the request fits: same shape.
        let same = p
            .resize_hint(small, AllocationStrategy::BestFit, 0)
            .unwrap();
        assert_eq!((same.chunk_size, same.chunks), (16, 3));
        let best = p.resize_hint(big, AllocationStrategy::BestFit, 0).unwrap();
        assert_eq!(
            (best.chunk_size, best.chunk_align, best.chunks),
            (128, 32, 3)
        );
        let pow = p
            .resize_hint(big, AllocationStrategy::PowerOfTwo, 0)
            .unwrap();
        assert_eq!((pow.chunk_size, pow.chunk_align, pow.chunks), (128, 32, 3));
        for _ in 0..3 {
            p.allocate(small).unwrap();
        }
        let best = p
            .resize_hint(small, AllocationStrategy::BestFit, 3)
            .unwrap();
        assert_eq!((best.chunk_size, best.chunks), (16, 4));
        let pow = p
            .resize_hint(small, AllocationStrategy::PowerOfTwo, 3)
            .unwrap();
        assert_eq!((pow.chunk_size, pow.chunks), (16, 4));
        let odd = Layout::from_size_align(33, 1).unwrap();
        let best = p.resize_hint(odd, AllocationStrategy::BestFit, 3).unwrap();
        assert_eq!((best.chunk_size, best.chunks), (40, 4));
        let pow = p
            .resize_hint(odd, AllocationStrategy::PowerOfTwo, 3)
            .unwrap();
        assert_eq!((pow.chunk_size, pow.chunks), (64, 4));
    }

    #[test]
    fn head_packing_round_trips_at_the_extremes() {
        assert_eq!((INDEX_BITS, TAG_BITS), (31, 33));
        assert_eq!(NIL, (1 << 31) - 1);
        let max_tag = (1u64 << 33) - 1;
        for tag in [0, 1, 1 << 32, max_tag - 1, max_tag] {
            for index in [0, 1, (1 << 30) - 1, 1 << 30, NIL - 1, NIL] {
                let head = pack(tag, index);
                assert_eq!(
                    (head_tag(head), head_index(head)),
                    (tag, index),
                    "{tag} {index}"
                );
            }
        }
        assert_eq!(pack(max_tag, NIL), u64::MAX);
        assert_eq!(pack(0, 0), 0);
        // Tags beyond 33 bits are taken modulo 2^33, never spilling into the index.
        assert_eq!(pack(1 << 33, 5), 5);
        assert_eq!(pack(u64::MAX, 0), max_tag << 31);
    }

    #[test]
    fn tag_advances_and_wraps_without_touching_the_index() {
        let max_tag = (1u64 << 33) - 1;
        let head = successor(pack(7, 3), 9);
        assert_eq!((head_tag(head), head_index(head)), (8, 9));
        // Bit 32 of the tag is a real bit now: 2^32 - 1 advances to 2^32, not to 0.
        let head = successor(pack((1 << 32) - 1, 3), NIL);
        assert_eq!((head_tag(head), head_index(head)), (1 << 32, NIL));
        let head = successor(pack(max_tag, NIL), 0);
        assert_eq!((head_tag(head), head_index(head)), (0, 0));
        let head = successor(pack(max_tag, 0), NIL);
        assert_eq!((head_tag(head), head_index(head)), (0, NIL));
    }

    #[test]
    fn push_and_pop_advance_the_tag() {
        let p = pool(8, 8, 2);
        let a = p.allocate(Layout::new::<u8>()).unwrap();
        assert_eq!(head_tag(p.head.load(Ordering::Relaxed)), 0);
        p.deallocate(a).unwrap();
        let head = p.head.load(Ordering::Relaxed);
        assert_eq!((head_tag(head), head_index(head)), (1, 0));
        assert_eq!(p.next[0].load(Ordering::Relaxed), FREE | NIL);
        assert_eq!(p.allocate(Layout::new::<u8>()), Ok(a));
        let head = p.head.load(Ordering::Relaxed);
        assert_eq!((head_tag(head), head_index(head)), (2, NIL));
    }

    #[test]
    fn head_and_fresh_live_on_separate_cache_line_pairs() {
        let head = std::mem::offset_of!(PoolAllocator, head);
        let fresh = std::mem::offset_of!(PoolAllocator, fresh);
        assert!(
            head.abs_diff(fresh) >= 128,
            "head at {head}, fresh at {fresh}"
        );
        assert_eq!(head % 128, 0);
        assert_eq!(fresh % 128, 0);
        assert_eq!(std::mem::align_of::<PoolAllocator>(), 128);
        // Nothing else shares their 128 bytes: each wrapper is exactly one aligned block.
        assert_eq!(std::mem::size_of::<CachePadded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<CachePadded<AtomicU32>>(), 128);
        let p = pool(8, 8, 2);
        let (h, f) = (
            &*p.head as *const AtomicU64 as usize,
            &*p.fresh as *const AtomicU32 as usize,
        );
        assert!(h.abs_diff(f) >= 128 && h % 128 == 0 && f % 128 == 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a 64 Mi-entry free list is too slow to interpret")]
    fn huge_bucket_counts_cost_nothing_up_front() {
        let p = pool(1, 1, 1 << 26);
        assert_eq!(p.allocate(Layout::new::<u8>()), Ok(0));
        assert_eq!(p.allocate(Layout::new::<u8>()), Ok(1));
    }
}

/// Model checks of the free list (`scripts/loom pool`): every interleaving of concurrent pops
/// and pushes, up to `LOOM_MAX_PREEMPTIONS` preemptions, on pools of two buckets.
#[cfg(loom)]
mod loom_tests {
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    use super::*;

    const BUCKET: usize = 8;

    /// A pool of `buckets` buckets, all handed out once and returned (in index order, so
    /// bucket `buckets - 1` is on top): every allocation below comes from the free list.
    fn recycled_pool(buckets: usize) -> PoolAllocator {
        let pool = PoolAllocator::new(bucket_layout(BUCKET, 8, buckets).unwrap()).unwrap();
        for _ in 0..buckets {
            pool.allocate(Layout::new::<u8>()).unwrap();
        }
        for i in 0..buckets {
            pool.deallocate((i * BUCKET) as u64).unwrap();
        }
        pool
    }

    /// The pool plus one "handed out" flag per bucket, to catch a bucket given out twice.
    struct Shared {
        pool: PoolAllocator,
        taken: Vec<AtomicBool>,
    }

    impl Shared {
        fn new(buckets: usize) -> Arc<Self> {
            Arc::new(Self {
                pool: recycled_pool(buckets),
                taken: (0..buckets).map(|_| AtomicBool::new(false)).collect(),
            })
        }

        /// Allocates a bucket and marks it taken; `None` when the pool is empty.
        fn take(&self) -> Option<u64> {
            let offset = self.pool.allocate(Layout::new::<u8>()).ok()?;
            assert_eq!(offset % BUCKET as u64, 0, "bucket start");
            let index = (offset / BUCKET as u64) as usize;
            assert!(
                !self.taken[index].swap(true, Ordering::AcqRel),
                "bucket {index} handed out twice at once"
            );
            Some(offset)
        }

        /// Unmarks and frees a bucket from `take`.
        fn give(&self, offset: u64) {
            let index = (offset / BUCKET as u64) as usize;
            assert!(self.taken[index].swap(false, Ordering::AcqRel));
            assert_eq!(self.pool.deallocate(offset), Ok(()));
        }

        /// Once every thread is done: nothing is in use, the free list holds every bucket
        /// exactly once, and the pool hands each out once more, then none.
        fn check_all_back(&self, buckets: usize) {
            assert_eq!(self.pool.chunks_in_use(), 0);
            let mut seen = vec![false; buckets];
            let mut index = head_index(self.pool.head.load(Ordering::Acquire));
            let mut free = 0;
            while index != NIL {
                assert!(
                    !seen[index as usize],
                    "bucket {index} twice in the free list"
                );
                seen[index as usize] = true;
                free += 1;
                let word = self.pool.next[index as usize].load(Ordering::Acquire);
                assert_eq!(word & FREE, FREE, "a listed bucket is marked free");
                index = word & !FREE;
            }
            assert_eq!(free, buckets, "free buckets");
            let mut again: Vec<u64> = (0..buckets)
                .map(|_| self.pool.allocate(Layout::new::<u8>()).unwrap())
                .collect();
            again.sort_unstable();
            let all: Vec<u64> = (0..buckets).map(|i| (i * BUCKET) as u64).collect();
            assert_eq!(again, all);
            assert_eq!(
                self.pool.allocate(Layout::new::<u8>()),
                Err(Exhausted::NoChunkLeft)
            );
        }
    }

    /// Two threads each pop a bucket and push it back.
    #[test]
    fn loom_pool_concurrent_pop_push() {
        loom::model(|| {
            let shared = Shared::new(2);
            let other = shared.clone();
            let t = thread::spawn(move || {
                let offset = other.take().expect("two buckets for two threads");
                other.give(offset);
            });
            let offset = shared.take().expect("two buckets for two threads");
            shared.give(offset);
            t.join().unwrap();
            shared.check_all_back(2);
        });
    }

    /// The ABA interleaving: one thread reads the head (bucket 1, next 0) while the other
    /// pops 1, pops 0 and pushes 1 back. Without the tag the first thread's exchange would
    /// succeed and install bucket 0, which the second thread holds, as the new head.
    #[test]
    fn loom_pool_pop_races_pop_pop_push() {
        loom::model(|| {
            let shared = Shared::new(2);
            let other = shared.clone();
            let t = thread::spawn(move || {
                let first = other.take();
                let second = other.take();
                if let Some(first) = first {
                    other.give(first);
                }
                if let Some(second) = second {
                    other.give(second);
                }
            });
            if let Some(offset) = shared.take() {
                shared.give(offset);
            }
            t.join().unwrap();
            shared.check_all_back(2);
        });
    }

    /// A double free racing a pop: exactly one of the two frees of a bucket succeeds, and
    /// the count of free buckets stays exact.
    #[test]
    fn loom_pool_double_free_races_pop() {
        loom::model(|| {
            let pool = Arc::new(recycled_pool(2));
            let offset = pool.allocate(Layout::new::<u8>()).unwrap();
            let other = pool.clone();
            let t = thread::spawn(move || other.deallocate(offset));
            let mine = pool.deallocate(offset);
            let theirs = t.join().unwrap();
            let mut results = [mine, theirs];
            results.sort_by_key(|r| r.is_err());
            assert_eq!(results, [Ok(()), Err(DeallocError::NotAllocated)]);
            assert_eq!(pool.chunks_in_use(), 0);
        });
    }
}
