//! Sequential allocation: chunks are carved one after another; the segment starts over once
//! every chunk is returned. No reuse of single chunks.
//!
//! The allocator remembers every chunk since the last reset (start and end, in owner-private
//! memory under its mutex; returned ones are marked and compacted away once they outnumber the
//! live ones), so that a double free or a free of an offset that is not a live chunk's start is
//! refused instead of miscounting the live chunks: a miscount would reset the cursor under a
//! live chunk, and the owner would drop the segment's reference once per bogus free. (A stale
//! offset from before the last reset that equals a live chunk's start frees that chunk, as
//! with any allocator keyed by offsets; the counts stay exact.)

use std::alloc::Layout;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{ChunkAllocator, Exhausted, MAX_SEGMENT_SIZE, SegmentLayout, checked_pow2};
use crate::{AllocError, AllocationStrategy, DeallocError};

/// Returned chunks are compacted away once there are more of them than this and than live
/// ones, so that compaction costs O(1) per free amortised and the list stays O(live).
const COMPACT_AFTER: usize = 32;

/// A chunk handed out since the last reset.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    start: u64,
    /// One past the chunk's last byte (a zero-sized chunk takes one byte); `RETURNED` once
    /// the chunk is freed.
    end: u64,
}

/// `Chunk::end` of a freed chunk: no live chunk ends at offset 0.
const RETURNED: u64 = 0;

#[derive(Debug, Default)]
struct State {
    /// First byte not yet handed out.
    cursor: u64,
    /// Chunks since the last reset, sorted by start (they are carved in increasing order),
    /// live or `RETURNED`. Cleared, keeping its capacity, when the segment starts over.
    chunks: Vec<Chunk>,
    /// Live entries of `chunks`.
    live: usize,
    /// Start of the most recent chunk while it is live, the only one `grow_in_place` can
    /// extend.
    last: Option<u64>,
}

impl State {
    /// Forgets every chunk: the segment starts over.
    fn reset(&mut self) {
        self.cursor = 0;
        self.chunks.clear();
        self.live = 0;
        self.last = None;
    }

    /// Index in `chunks` of the entry starting at `offset`, or of the entry before it.
    fn search(&self, offset: u64) -> Result<usize, Option<usize>> {
        match self.chunks.binary_search_by_key(&offset, |c| c.start) {
            Ok(i) => Ok(i),
            Err(0) => Err(None),
            Err(i) => Err(Some(i - 1)),
        }
    }
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
        // Starts only grow until the next reset: the list stays sorted.
        state.chunks.push(Chunk { start, end });
        state.live += 1;
        state.last = Some(start);
        Ok(start)
    }

    fn deallocate(&self, offset: u64) -> Result<(), DeallocError> {
        let mut state = self.state();
        if offset >= state.cursor {
            return Err(DeallocError::InvalidOffset);
        }
        let index = match state.search(offset) {
            Ok(i) if state.chunks[i].end != RETURNED => i,
            // A chunk already returned.
            Ok(_) => return Err(DeallocError::NotAllocated),
            // Chunks do not overlap, so only the chunk starting right before can contain it:
            // inside a live chunk it is no chunk start at all; anywhere else below the cursor
            // it lies in a returned chunk or in padding between chunks.
            Err(before) => {
                let inside_live = before.is_some_and(|i| offset < state.chunks[i].end);
                return Err(if inside_live {
                    DeallocError::InvalidOffset
                } else {
                    DeallocError::NotAllocated
                });
            }
        };
        state.chunks[index].end = RETURNED;
        state.live -= 1;
        if state.last == Some(offset) {
            state.last = None;
        }
        if state.live == 0 {
            state.reset();
            return Ok(());
        }
        let returned = state.chunks.len() - state.live;
        if returned > COMPACT_AFTER && returned > state.live {
            state.chunks.retain(|c| c.end != RETURNED);
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
        // `last` is live, hence listed, and the newest entry.
        if let Some(chunk) = state.chunks.last_mut()
            && chunk.start == offset
        {
            chunk.end = chunk.end.max(end);
        }
        true
    }

    fn chunks_in_use(&self) -> usize {
        self.state().live
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
    fn returned_chunks_are_compacted_and_still_refused() {
        let b = BumpAllocator::new(bucket_layout(8, 8, 1000).unwrap());
        let l = Layout::from_size_align(8, 8).unwrap();
        let offsets: Vec<u64> = (0..1000).map(|_| b.allocate(l).unwrap()).collect();
        assert_eq!(offsets[999], 7992);
        // Free all but the last; compaction runs along the way.
        for &o in &offsets[..999] {
            b.deallocate(o).unwrap();
        }
        assert!(b.state().chunks.len() <= 2 * COMPACT_AFTER + 1);
        assert_eq!(b.chunks_in_use(), 1);
        for &o in &offsets[..999] {
            assert_eq!(
                b.deallocate(o),
                Err(DeallocError::NotAllocated),
                "offset {o}"
            );
        }
        assert_eq!(b.deallocate(7993), Err(DeallocError::InvalidOffset));
        assert_eq!(b.chunks_in_use(), 1);
        b.deallocate(7992).unwrap();
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
