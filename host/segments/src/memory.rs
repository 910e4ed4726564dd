//! The owner side: creates the memory, allocates chunks, grows into new segments and removes
//! everything when dropped.
//!
//! `builder` creates it, `alloc` is the allocate/deallocate core, `segment` the lifecycle of
//! one data segment, `first` segment 0 (planned at creation, made by the first allocation),
//! `chunk` the RAII chunk and `teardown` what a dropped owner removes.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::allocator::AllocatorKind;
use crate::backend::Mapping;
use crate::header::{MAX_SEGMENTS, MgmtHeader, SlotRecord};
use crate::slot::SlotCell;
use crate::{AllocationStrategy, Config, PointerOffset, SegmentBudget, SegmentId, SegmentRegion};

mod alloc;
mod builder;
mod chunk;
mod first;
mod segment;
mod teardown;

pub use builder::MemoryBuilder;
pub use chunk::Chunk;
use segment::{OwnerSegment, Planned};

/// What only growers touch, under the grow lock.
#[derive(Debug)]
struct GrowState {
    next_sequence: u64,
    newest: SegmentId,
    /// Segment 0 while it is only planned: checked and paid for, its OS object not made.
    first: Option<Planned>,
}

/// The owner of a resizable shared memory.
///
/// Allocation is lock-free on the current segment; creating a new segment takes a mutex.
/// Chunks in older segments stay valid; an older segment is unmapped and unlinked as soon as
/// its last chunk is returned. Dropping the owner removes every OS object of the memory.
#[derive(Debug)]
pub struct Memory {
    memory_id: u64,
    name: String,
    config: Config,
    mgmt: Mapping,
    slots: Box<[SlotCell<OwnerSegment>]>,
    /// Id of the segment new chunks come from; a live slot, or 0 while `first_planned`.
    current: AtomicU32,
    grow: Mutex<GrowState>,
    /// Whether segment 0 is still only planned (`GrowState::first`).
    first_planned: AtomicBool,
    strategy: AllocationStrategy,
    allocator: AllocatorKind,
    budget: Option<Arc<dyn SegmentBudget>>,
    abandoned: bool,
    /// Set by a channel publisher: `try_deallocate` refuses, only the publisher frees.
    channel_owned: bool,
}

impl Memory {
    /// A builder for a memory called `name` (validated by `create`).
    pub fn builder(name: &str) -> MemoryBuilder {
        MemoryBuilder::new(name)
    }

    /// How many segments can be alive at once (ids `0..=255`).
    pub const fn max_number_of_reallocations() -> usize {
        MAX_SEGMENTS
    }

    /// Random per memory (as recorded in its header and segment trailers): tells this memory
    /// from a later one created under the same name.
    pub fn memory_id(&self) -> u64 {
        self.memory_id
    }

    /// The memory's name, without prefix or suffix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How new segments are sized.
    pub fn allocation_strategy(&self) -> AllocationStrategy {
        self.strategy
    }

    /// How each segment's payload is carved into chunks.
    pub fn allocator_kind(&self) -> AllocatorKind {
        self.allocator
    }

    /// Number of segments alive: mapped by the owner, or segment 0 before the first
    /// allocation makes its OS object.
    pub fn number_of_active_segments(&self) -> usize {
        let planned = usize::from(self.first_planned.load(Ordering::Acquire));
        planned + self.slots.iter().filter(|s| s.is_occupied()).count()
    }

    /// The segment new chunks are taken from.
    pub fn current_segment(&self) -> SegmentId {
        SegmentId::new(self.current.load(Ordering::Acquire) as u8)
    }

    fn header(&self) -> &MgmtHeader {
        // SAFETY: the mapping is page aligned, at least MGMT_SIZE long (created so) and lives
        // as long as self.
        unsafe { MgmtHeader::from_ptr(self.mgmt.as_ptr()) }
    }

    fn record(&self, id: SegmentId) -> &SlotRecord {
        self.header().slot(id)
    }

    /// Largest chunk segment `id` serves; 0 when that segment is not alive.
    pub fn bucket_size(&self, id: SegmentId) -> usize {
        let slot = &self.slots[id.index()];
        if !slot.pin() {
            return self
                .with_planned(id, |planned| planned.allocator.max_chunk_size())
                .unwrap_or(0);
        }
        // SAFETY: pinned above.
        let size = unsafe { slot.get() }.allocator.max_chunk_size();
        let _ = slot.unpin(1, |s| self.release_segment(s));
        size
    }

    /// The owner's address of a live chunk, or `None` if `offset` is outside every live
    /// segment's payload. Says nothing about whether the chunk is allocated.
    pub fn translate(&self, offset: PointerOffset) -> Option<*mut u8> {
        let slot = &self.slots[offset.segment_id().index()];
        if !slot.pin() {
            return None;
        }
        // SAFETY: pinned above.
        let segment = unsafe { slot.get() };
        let ptr = (offset.offset() < segment.allocator.layout().payload_size as u64).then(|| {
            segment
                .mapping
                .as_ptr()
                .wrapping_add(offset.offset() as usize)
        });
        let _ = slot.unpin(1, |s| self.release_segment(s));
        ptr
    }

    /// Where live segment `id` is mapped in this process, or `None` when it is not alive.
    pub fn segment_region(&self, id: SegmentId) -> Option<SegmentRegion> {
        let slot = &self.slots[id.index()];
        if !slot.pin() {
            return None;
        }
        // SAFETY: pinned above.
        let segment = unsafe { slot.get() };
        let region = SegmentRegion {
            address: segment.mapping.as_ptr() as usize,
            len: segment.mapping.len(),
            payload_size: segment.allocator.layout().payload_size,
            sequence: segment.sequence,
            writable: segment.mapping.is_writable(),
        };
        let _ = slot.unpin(1, |s| self.release_segment(s));
        Some(region)
    }

    /// Leaves every OS object in place, as a crash would; the process's mappings and the
    /// owner lock are released.
    pub fn abandon(mut self) {
        self.abandoned = true;
    }
}

/// Test-only interleaving hooks of the owner.
#[cfg(test)]
pub(crate) mod hooks;

#[cfg(all(test, not(loom)))]
mod tests;
