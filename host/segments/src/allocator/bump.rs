//! Sequential allocation: chunks are carved one after another; the segment starts over once
//! every chunk is returned. No reuse of single chunks.
//!
//! The allocator remembers every live chunk (start and end, in owner-private memory under its
//! mutex), so that a double free, a free of an offset that is not a live chunk's start, or a
//! free of a chunk from before the last reset is refused instead of miscounting the live
//! chunks: a miscount would reset the cursor under a live chunk, and the owner would drop the
//! segment's reference once per bogus free.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{ChunkAllocator, Exhausted, MAX_SEGMENT_SIZE, SegmentLayout, checked_pow2};
use crate::{AllocError, AllocationStrategy, DeallocError};

#[derive(Debug, Default)]
struct State {
    /// First byte not yet handed out.
    cursor: u64,
    /// Live chunks: start -> end (exclusive; a zero-sized chunk takes one byte).
    live: BTreeMap<u64, u64>,
    /// Start of the most recent chunk, the only one `grow_in_place` can extend.
    last: Option<u64>,
}

/// A segment's sequential allocator: see the module documentation.
#[derive(Debug)]
pub struct BumpAllocator {
    layout: SegmentLayout,
    state: Mutex<State>,
}

impl BumpAllocator {
    /// An allocator for a payload of `layout.payload_size` bytes, with nothing handed out.
    pub fn new(layout: SegmentLayout) -> Self {
        Self {
            layout,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn capacity(&self) -> u64 {
        self.layout.payload_size as u64
    }
}

impl ChunkAllocator for BumpAllocator {
    fn layout(&self) -> SegmentLayout {
        self.layout
    }

    fn max_chunk_size(&self) -> usize {
        self.layout.payload_size
    }

    fn allocate(&self, layout: Layout) -> Result<u64, Exhausted> {
        if layout.size() as u64 > self.capacity() {
            return Err(Exhausted::TooLarge);
        }
        let mut state = self.state();
        let start = state.cursor.next_multiple_of(layout.align() as u64);
        // A zero-sized chunk still takes one byte so that every chunk has a distinct offset.
        let end = start + (layout.size() as u64).max(1);
        if end > self.capacity() {
            return Err(Exhausted::NoChunkLeft);
        }
        state.cursor = end;
        // Starts only grow until the next reset, so this appends at the map's right edge.
        state.live.insert(start, end);
        state.last = Some(start);
        Ok(start)
    }

    fn deallocate(&self, offset: u64) -> Result<(), DeallocError> {
        let mut state = self.state();
        if offset >= state.cursor {
            return Err(DeallocError::InvalidOffset);
        }
        if state.live.remove(&offset).is_none() {
            // Inside a live chunk: not a chunk start at all. Anywhere else below the cursor:
            // a chunk already returned (or padding between chunks).
            let inside_live = state
                .live
                .range(..offset)
                .next_back()
                .is_some_and(|(_, &end)| offset < end);
            return Err(if inside_live {
                DeallocError::InvalidOffset
            } else {
                DeallocError::NotAllocated
            });
        }
        if state.last == Some(offset) {
            state.last = None;
        }
        if state.live.is_empty() {
            *state = State::default();
        }
        Ok(())
    }

    fn grow_in_place(&self, offset: u64, _old: Layout, new: Layout) -> bool {
        let mut state = self.state();
        let end = offset.saturating_add((new.size() as u64).max(1));
        if state.last != Some(offset)
            || !offset.is_multiple_of(new.align() as u64)
            || end > self.capacity()
        {
            return false;
        }
        state.cursor = state.cursor.max(end);
        if let Some(chunk_end) = state.live.get_mut(&offset) {
            *chunk_end = (*chunk_end).max(end);
        }
        true
    }

    fn chunks_in_use(&self) -> usize {
        self.state().live.len()
    }

    fn resize_hint(
        &self,
        request: Layout,
        strategy: AllocationStrategy,
        _in_use: usize,
    ) -> Result<SegmentLayout, AllocError> {
        // Worst-case padding in front of the request is align - 1.
        let need = request
            .size()
            .max(1)
            .checked_add(request.align() - 1)
            .ok_or(AllocError::SizeTooLarge)?;
        let grown = self
            .layout
            .payload_size
            .checked_add(need)
            .ok_or(AllocError::SizeTooLarge)?;
        let payload_size = match strategy {
            AllocationStrategy::Static => self.layout.payload_size,
            AllocationStrategy::BestFit => grown,
            AllocationStrategy::PowerOfTwo => checked_pow2(grown)?,
        };
        if payload_size > MAX_SEGMENT_SIZE {
            return Err(AllocError::SizeTooLarge);
        }
        Ok(SegmentLayout {
            chunk_size: payload_size,
            chunk_align: self.layout.chunk_align.max(request.align()),
            chunks: self.layout.chunks,
            payload_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::bucket_layout;

    #[test]
    fn carves_sequentially_and_resets_when_empty() {
        let b = BumpAllocator::new(bucket_layout(32, 8, 2).unwrap());
        assert_eq!(b.allocate(Layout::from_size_align(10, 2).unwrap()), Ok(0));
        assert_eq!(b.allocate(Layout::from_size_align(8, 8).unwrap()), Ok(16));
        assert_eq!(
            b.allocate(Layout::from_size_align(48, 1).unwrap()),
            Err(Exhausted::NoChunkLeft)
        );
        assert_eq!(
            b.allocate(Layout::from_size_align(65, 1).unwrap()),
            Err(Exhausted::TooLarge)
        );
        assert_eq!(b.deallocate(40), Err(DeallocError::InvalidOffset));
        b.deallocate(0).unwrap();
        assert_eq!(b.chunks_in_use(), 1);
        b.deallocate(16).unwrap();
        assert_eq!(b.chunks_in_use(), 0);
        assert_eq!(b.deallocate(0), Err(DeallocError::InvalidOffset));
        assert_eq!(b.allocate(Layout::from_size_align(64, 1).unwrap()), Ok(0));
    }

    #[test]
    fn refuses_double_and_bogus_frees_while_other_chunks_live() {
        let b = BumpAllocator::new(bucket_layout(64, 8, 2).unwrap());
        let l = Layout::from_size_align(16, 8).unwrap();
        let a = b.allocate(l).unwrap();
        let c = b.allocate(l).unwrap();
        assert_eq!((a, c), (0, 16));
        b.deallocate(a).unwrap();
        // The double free is refused and changes nothing: `c` keeps the segment in use.
        assert_eq!(b.deallocate(a), Err(DeallocError::NotAllocated));
        assert_eq!(b.chunks_in_use(), 1);
        // Inside the live chunk: not a chunk start.
        assert_eq!(b.deallocate(c + 8), Err(DeallocError::InvalidOffset));
        // Past the cursor.
        assert_eq!(b.deallocate(32), Err(DeallocError::InvalidOffset));
        assert_eq!(b.chunks_in_use(), 1);
        // No reset happened: the next chunk follows `c` instead of overlapping it.
        assert_eq!(b.allocate(l), Ok(32));
        b.deallocate(c).unwrap();
        b.deallocate(32).unwrap();
        assert_eq!(b.chunks_in_use(), 0);
        assert_eq!(b.allocate(l), Ok(0));
    }

    #[test]
    fn a_freed_last_chunk_cannot_grow() {
        let b = BumpAllocator::new(bucket_layout(64, 8, 1).unwrap());
        let small = Layout::from_size_align(8, 8).unwrap();
        let a = b.allocate(small).unwrap();
        let c = b.allocate(small).unwrap();
        b.deallocate(c).unwrap();
        assert!(!b.grow_in_place(c, small, Layout::from_size_align(16, 8).unwrap()));
        assert_eq!(b.chunks_in_use(), 1);
        b.deallocate(a).unwrap();
    }

    #[test]
    fn grows_only_the_last_chunk() {
        let b = BumpAllocator::new(bucket_layout(64, 8, 1).unwrap());
        let small = Layout::from_size_align(8, 8).unwrap();
        let a = b.allocate(small).unwrap();
        let c = b.allocate(small).unwrap();
        assert!(!b.grow_in_place(a, small, Layout::from_size_align(16, 8).unwrap()));
        assert!(b.grow_in_place(c, small, Layout::from_size_align(56, 8).unwrap()));
        assert!(!b.grow_in_place(c, small, Layout::from_size_align(57, 8).unwrap()));
        assert_eq!(b.allocate(Layout::new::<u8>()), Err(Exhausted::NoChunkLeft));
    }
}
