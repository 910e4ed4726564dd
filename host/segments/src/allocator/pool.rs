//! Fixed-size buckets handed out from a lock-free free list.
//!
//! Buckets are taken first from the free list (a Treiber stack whose head carries an ABA tag)
//! and then from a "fresh" counter, so creating a segment with millions of buckets costs no
//! initialisation. Each bucket's `next` word doubles as its state: `FREE | next index` while in
//! the free list, `0` while allocated or never used; a double free fails its compare-exchange.

use std::alloc::Layout;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{ChunkAllocator, Exhausted, SegmentLayout, bucket_layout, checked_pow2};
use crate::{AllocError, AllocationStrategy, DeallocError};

const FREE: u32 = 1 << 31;
const NIL: u32 = FREE - 1;

#[derive(Debug)]
pub struct PoolAllocator {
    layout: SegmentLayout,
    buckets: u32,
    /// `tag << 32 | index` of the first free bucket, `NIL` when the list is empty.
    head: AtomicU64,
    /// Buckets `fresh..buckets` have never been handed out.
    fresh: AtomicU32,
    next: Box<[AtomicU32]>,
    /// `log2(bucket size)` when it is a power of two: offsets then map to buckets by a shift.
    shift: Option<u32>,
}

impl PoolAllocator {
    pub fn new(layout: SegmentLayout) -> Result<Self, AllocError> {
        let buckets = u32::try_from(layout.chunks)
            .ok()
            .filter(|&b| b < NIL)
            .ok_or(AllocError::SizeTooLarge)?;
        let mut words: Vec<u32> = Vec::new();
        words
            .try_reserve_exact(layout.chunks)
            .map_err(|_| AllocError::OutOfMemory)?;
        words.resize(layout.chunks, 0);
        let words = words.into_boxed_slice();
        // SAFETY: AtomicU32 has the same size, alignment and bit validity as u32, so a boxed
        // slice of u32 is a valid boxed slice of AtomicU32 with the same allocation layout.
        let next = unsafe { Box::from_raw(Box::into_raw(words) as *mut [AtomicU32]) };
        Ok(Self {
            layout,
            buckets,
            head: AtomicU64::new(u64::from(NIL)),
            fresh: AtomicU32::new(0),
            next,
            shift: layout
                .chunk_size
                .is_power_of_two()
                .then(|| layout.chunk_size.trailing_zeros()),
        })
    }

    pub fn bucket_size(&self) -> usize {
        self.layout.chunk_size
    }

    pub fn number_of_buckets(&self) -> usize {
        self.layout.chunks
    }

    fn pop(&self) -> Option<u32> {
        loop {
            let mut head = self.head.load(Ordering::Acquire);
            while head as u32 != NIL {
                let index = head as u32;
                // A stale read is harmless: the tag makes the exchange below fail.
                let next = self.next[index as usize].load(Ordering::Acquire) & !FREE;
                let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(next);
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
            if self.head.load(Ordering::Acquire) as u32 == NIL {
                return None;
            }
        }
    }

    fn push(&self, index: u32) -> Result<(), DeallocError> {
        let mut head = self.head.load(Ordering::Acquire);
        let slot = &self.next[index as usize];
        // Claim the bucket: only an allocated bucket (state 0) may enter the free list.
        slot.compare_exchange(0, FREE | (head as u32), Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| DeallocError::NotAllocated)?;
        loop {
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(index);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(current) => {
                    head = current;
                    slot.store(FREE | (head as u32), Ordering::Release);
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
        let mut index = self.head.load(Ordering::Acquire) as u32;
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

#[cfg(test)]
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
    #[cfg_attr(miri, ignore = "a 64 Mi-entry free list is too slow to interpret")]
    fn huge_bucket_counts_cost_nothing_up_front() {
        let p = pool(1, 1, 1 << 26);
        assert_eq!(p.allocate(Layout::new::<u8>()), Ok(0));
        assert_eq!(p.allocate(Layout::new::<u8>()), Ok(1));
    }
}
