//! Chunk allocators: how one segment's payload is carved into chunks, and how big the next
//! segment must be when a request does not fit.
//!
//! An allocator's bookkeeping lives in the owner's private memory, never in the segment:
//! a peer with write access to the shared memory cannot corrupt it, and views do not need it
//! (they only translate offsets). Both implementations are lock-free or lock-light and
//! `Send + Sync`; the property tests in `tests/allocators.rs` run them against a model.

mod bump;
mod pool;

use std::alloc::Layout;
use std::fmt::Debug;

pub use bump::BumpAllocator;
pub use pool::PoolAllocator;

use crate::backend::page_size;
use crate::{AllocError, AllocationStrategy, DeallocError};

/// Largest payload a single segment may have (16 TiB): far beyond any tmpfs, yet small enough
/// that every offset and size computation stays far from `u64` overflow.
pub const MAX_SEGMENT_SIZE: usize = 1 << 44;

/// Most chunks one pool segment can hold (the pool indexes buckets with 31 bits).
pub const MAX_CHUNKS: usize = 1 << 30;

/// Shape of a segment's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLayout {
    /// Largest chunk (the bucket size for the pool).
    pub chunk_size: usize,
    /// Largest alignment a chunk gets.
    pub chunk_align: usize,
    /// Number of chunks the segment is sized for.
    pub chunks: usize,
    /// Payload bytes.
    pub payload_size: usize,
}

/// Why an allocator could not serve a request; each reason triggers a new segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exhausted {
    /// Every chunk (bucket, or the bump cursor's room) is taken.
    NoChunkLeft,
    /// The layout's size does not fit this segment's chunks.
    TooLarge,
    /// The layout's alignment exceeds what this segment's chunks give.
    TooAligned,
}

/// One segment's allocator. Offsets are relative to the payload start, which is page aligned
/// in every process.
pub trait ChunkAllocator: Send + Sync + Debug {
    /// The geometry the segment was created with.
    fn layout(&self) -> SegmentLayout;

    /// Hands out a chunk for `layout`, or says why it cannot.
    fn allocate(&self, layout: Layout) -> Result<u64, Exhausted>;

    /// Returns a chunk. Refuses, changing nothing, every offset that is not the start of a
    /// currently allocated chunk: `NotAllocated` for a double free, `InvalidOffset` for an
    /// offset that cannot be a chunk start.
    fn deallocate(&self, offset: u64) -> Result<(), DeallocError>;

    /// Extends an allocated chunk from `old` to `new` without moving it, if possible.
    fn grow_in_place(&self, offset: u64, old: Layout, new: Layout) -> bool;

    /// Number of chunks currently handed out. Exact when no other thread allocates or frees
    /// concurrently (the owner tracks live chunks itself, in its segment reference counts).
    fn chunks_in_use(&self) -> usize;

    /// Largest chunk this segment can serve.
    fn max_chunk_size(&self) -> usize {
        self.layout().chunk_size
    }

    /// The layout of the next segment so that `request` fits, following `strategy`, given
    /// that `in_use` chunks of this segment are handed out.
    fn resize_hint(
        &self,
        request: Layout,
        strategy: AllocationStrategy,
        in_use: usize,
    ) -> Result<SegmentLayout, AllocError>;
}

/// Which allocator a memory uses for all its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AllocatorKind {
    /// Fixed-size buckets; chunks are freed individually. The default.
    #[default]
    Pool,
    /// Sequential allocation; the segment is reused once all its chunks are freed.
    Bump,
}

impl AllocatorKind {
    pub(crate) const fn to_raw(self) -> u32 {
        match self {
            Self::Pool => 0,
            Self::Bump => 1,
        }
    }

    pub(crate) const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Pool),
            1 => Some(Self::Bump),
            _ => None,
        }
    }

    /// The layout of segment 0 from the builder's hints.
    pub fn initial_layout(self, chunk: Layout, chunks: usize) -> Result<SegmentLayout, AllocError> {
        if chunk.align() > page_size() {
            return Err(AllocError::ExceedsMaxSupportedAlignment);
        }
        bucket_layout(chunk.size(), chunk.align(), chunks.max(1))
    }

    /// Builds an allocator for a payload of `layout.payload_size` bytes.
    pub fn build(self, layout: SegmentLayout) -> Result<Box<dyn ChunkAllocator>, AllocError> {
        Ok(match self {
            Self::Pool => Box::new(PoolAllocator::new(layout)?),
            Self::Bump => Box::new(BumpAllocator::new(layout)),
        })
    }
}

/// `chunks` buckets of `size` bytes rounded up to `align`, with every bound checked.
pub(crate) fn bucket_layout(
    size: usize,
    align: usize,
    chunks: usize,
) -> Result<SegmentLayout, AllocError> {
    if !align.is_power_of_two() || align > page_size() {
        return Err(AllocError::ExceedsMaxSupportedAlignment);
    }
    let chunk_size = size
        .max(1)
        .checked_next_multiple_of(align)
        .ok_or(AllocError::SizeTooLarge)?;
    if chunks > MAX_CHUNKS {
        return Err(AllocError::SizeTooLarge);
    }
    let payload_size = chunk_size
        .checked_mul(chunks)
        .filter(|&p| p <= MAX_SEGMENT_SIZE)
        .ok_or(AllocError::SizeTooLarge)?;
    Ok(SegmentLayout {
        chunk_size,
        chunk_align: align,
        chunks,
        payload_size,
    })
}

/// Checks a request against the absolute limits, before any allocator sees it.
pub(crate) fn check_request(layout: Layout) -> Result<(), AllocError> {
    if layout.align() > page_size() {
        return Err(AllocError::ExceedsMaxSupportedAlignment);
    }
    if layout.size() > MAX_SEGMENT_SIZE {
        return Err(AllocError::SizeTooLarge);
    }
    Ok(())
}

/// Rounds up to a power of two, failing instead of overflowing.
pub(crate) fn checked_pow2(v: usize) -> Result<usize, AllocError> {
    v.checked_next_power_of_two()
        .ok_or(AllocError::SizeTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_layout_rounds_and_checks() {
        let l = bucket_layout(10, 8, 3).unwrap();
        assert_eq!(
            (l.chunk_size, l.chunk_align, l.chunks, l.payload_size),
            (16, 8, 3, 48)
        );
        assert_eq!(bucket_layout(0, 1, 1).unwrap().chunk_size, 1);
        assert_eq!(
            bucket_layout(usize::MAX, 8, 1),
            Err(AllocError::SizeTooLarge)
        );
        assert_eq!(
            bucket_layout(1 << 40, 8, 1 << 10),
            Err(AllocError::SizeTooLarge)
        );
        assert_eq!(
            bucket_layout(8, 3, 1),
            Err(AllocError::ExceedsMaxSupportedAlignment)
        );
        assert_eq!(
            bucket_layout(8, page_size() * 2, 1),
            Err(AllocError::ExceedsMaxSupportedAlignment)
        );
        assert_eq!(
            bucket_layout(1, 1, MAX_CHUNKS + 1),
            Err(AllocError::SizeTooLarge)
        );
    }
}
