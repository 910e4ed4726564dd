//! The allocate/deallocate core: chunks from the current segment, growing into a new one.

use std::alloc::Layout;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use crate::allocator::check_request;
use crate::header::MAX_SEGMENTS;
use crate::{
    AllocError, AllocationStrategy, ContentPlacement, DeallocError, GrowError, PointerOffset,
    SegmentId, ShmPointer,
};

use super::Memory;
#[cfg(test)]
use super::hooks;

/// How often an allocation may lose the race for freshly created chunks to other threads
/// before it reports `OutOfMemory` instead of growing yet again.
const MAX_GROW_ATTEMPTS: usize = 64;

impl Memory {
    /// Allocates a chunk for `layout`, creating a new segment when the current one cannot serve
    /// it and the strategy allows.
    ///
    /// Under [`AllocationStrategy::Static`] every request that segment 0 cannot serve fails
    /// with `OutOfMemory`, including ones no segment could serve (alignment above the page
    /// size, sizes beyond a segment); the other strategies name those precisely.
    pub fn allocate(&self, layout: Layout) -> Result<ShmPointer, AllocError> {
        if let Err(e) = check_request(layout) {
            return Err(if self.strategy == AllocationStrategy::Static {
                AllocError::OutOfMemory
            } else {
                e
            });
        }
        let mut attempts = 0;
        loop {
            let id = self.current.load(Ordering::Acquire) as usize;
            let slot = &self.slots[id];
            if !slot.pin_live() {
                // Segment 0 is only planned (made here, by the first allocation), or a grower
                // just replaced the current segment; read it again.
                if !self.make_first_segment()? {
                    std::hint::spin_loop();
                }
                continue;
            }
            // SAFETY: pinned above.
            let segment = unsafe { slot.get() };
            match segment.allocator.allocate(layout) {
                Ok(offset) => {
                    // The pin becomes the chunk's reference.
                    self.record(segment.id)
                        .set_chunks_in_use(slot.pins() as usize);
                    return Ok(ShmPointer {
                        offset: PointerOffset::new(segment.id, offset),
                        data_ptr: segment.mapping.as_ptr().wrapping_add(offset as usize),
                    });
                }
                Err(_exhausted) => {
                    slot.unpin_held(|s| self.release_segment(s));
                    attempts += 1;
                    if attempts > MAX_GROW_ATTEMPTS {
                        return Err(AllocError::OutOfMemory);
                    }
                    self.grow_segment(id, layout)?;
                }
            }
        }
    }

    /// Creates the next segment unless another thread already replaced segment `failed`.
    fn grow_segment(&self, failed: usize, request: Layout) -> Result<(), AllocError> {
        let mut grow = self.grow.lock().unwrap_or_else(PoisonError::into_inner);
        if self.current.load(Ordering::Acquire) as usize != failed {
            return Ok(());
        }
        if self.strategy == AllocationStrategy::Static {
            return Err(AllocError::OutOfMemory);
        }
        let old = &self.slots[failed];
        // Only growers retire the current segment and we hold the grow lock: it stays live.
        if !old.pin_live() {
            return Ok(());
        }
        // Our own pin is one of the references; the others are chunks.
        let in_use = old.pins().saturating_sub(1) as usize;
        // SAFETY: pinned above.
        let hint = unsafe { old.get() }
            .allocator
            .resize_hint(request, self.strategy, in_use);
        old.unpin_held(|s| self.release_segment(s));
        let layout = hint?;
        let id = self.next_free_id(grow.newest)?;
        let sequence = grow.next_sequence;
        let segment = self.create_segment(id, sequence, layout)?;
        // The creation number is spent once views may have seen it, whatever happens next: a
        // view that mapped this segment must never take a later one for it.
        grow.next_sequence += 1;
        // Publish before installing: from the install on, the owner resolves (and hands out)
        // offsets in the segment, and a view must find each of them in the header.
        self.record(id).publish(sequence, &layout);
        if let Err(segment) = self.slots[id.index()].install(segment, false, 0) {
            // Unreachable (next_free_id only returns free slots and only growers install,
            // under the grow lock), but never leave a published record, a name or budget
            // behind: release_segment unpublishes, unlinks and gives the bytes back.
            self.release_segment(segment);
            return Err(AllocError::OutOfMemory);
        }
        #[cfg(test)]
        hooks::after_install(self, id);
        grow.newest = id;
        self.header().set_current(id);
        self.current.store(u32::from(id.value()), Ordering::Release);
        old.retire(|s| self.release_segment(s));
        Ok(())
    }

    /// Round robin from the newest id: the next free one, so freed ids are reused late.
    fn next_free_id(&self, newest: SegmentId) -> Result<SegmentId, AllocError> {
        (1..=MAX_SEGMENTS)
            .map(|step| SegmentId::new(newest.value().wrapping_add(step as u8)))
            .find(|id| self.slots[id.index()].is_free())
            .ok_or(AllocError::MaxReallocationsReached)
    }

    /// Returns a chunk.
    ///
    /// # Safety
    /// `offset` must come from [`Memory::allocate`] or [`Memory::grow`] of this memory and not
    /// have been returned yet; nobody may use the chunk afterwards.
    pub unsafe fn deallocate(&self, offset: PointerOffset, _layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.deallocate_bucket(offset) }
    }

    /// Returns a chunk without its layout (the pool knows its bucket size).
    ///
    /// # Safety
    /// As for [`Memory::deallocate`].
    pub unsafe fn deallocate_bucket(&self, offset: PointerOffset) {
        let slot = &self.slots[offset.segment_id().index()];
        // The chunk's own reference keeps a correctly used slot alive; this check only turns
        // misuse of a freed segment into a no-op instead of a crash.
        if !slot.is_occupied() {
            return;
        }
        // SAFETY: the caller owns a chunk of this slot, which holds a reference.
        let segment = unsafe { slot.get() };
        if segment.allocator.deallocate(offset.offset()).is_ok() {
            slot.unpin_held(|s| self.release_segment(s));
            self.record(offset.segment_id())
                .set_chunks_in_use(slot.pins() as usize);
        }
    }

    /// Returns a chunk after checking that it is one: safe to call with any offset, e.g. one
    /// received from an untrusted party. Nothing changes when it fails. Both allocators check
    /// exactly: the offset must be the start of a chunk that is allocated now (a bucket
    /// boundary for the pool, a live chunk's start for the bump allocator); a double free
    /// gives [`DeallocError::NotAllocated`], an offset that is no chunk start
    /// [`DeallocError::InvalidOffset`] (or `NotAllocated` where it may be a returned chunk's
    /// start). The segment's reference is dropped only for a real free. (An offset that was
    /// freed and handed out again names the new chunk: the check is about what is allocated
    /// now, not about who holds it.)
    ///
    /// The memory of a channel [`Publisher`](crate::Publisher) refuses with
    /// [`DeallocError::OwnedByChannel`]: its chunks are freed by the publisher alone.
    pub fn try_deallocate(&self, offset: PointerOffset) -> Result<(), DeallocError> {
        if self.channel_owned {
            return Err(DeallocError::OwnedByChannel);
        }
        self.try_deallocate_owned(offset)
    }

    /// Hands the memory to a channel publisher: from now on only it frees chunks.
    pub(crate) fn set_channel_owned(&mut self) {
        self.channel_owned = true;
    }

    /// [`Memory::try_deallocate`] for the memory's owner, also a channel's.
    pub(crate) fn try_deallocate_owned(&self, offset: PointerOffset) -> Result<(), DeallocError> {
        let slot = &self.slots[offset.segment_id().index()];
        if !slot.pin() {
            // A planned segment 0 holds no chunk: its allocator names the error exactly.
            return Err(self
                .with_planned(offset.segment_id(), |planned| {
                    planned.allocator.deallocate(offset.offset()).err()
                })
                .flatten()
                .unwrap_or(DeallocError::InvalidOffset));
        }
        // SAFETY: pinned above.
        let segment = unsafe { slot.get() };
        let result = segment.allocator.deallocate(offset.offset());
        let references = if result.is_ok() { 2 } else { 1 };
        let _ = slot.unpin(references, |s| self.release_segment(s));
        self.record(offset.segment_id())
            .set_chunks_in_use(slot.pins() as usize);
        result
    }

    /// Resizes a chunk to `new`: in place when its bucket allows, otherwise into a new chunk
    /// (possibly in a new segment) with the old bytes copied to the front or the back. On error
    /// the old chunk is untouched and still allocated.
    ///
    /// # Safety
    /// `offset` must be a chunk of this memory allocated with layout `old` and not returned;
    /// on success the old offset must no longer be used unless it is returned again.
    pub unsafe fn grow(
        &self,
        offset: PointerOffset,
        old: Layout,
        new: Layout,
        placement: ContentPlacement,
    ) -> Result<ShmPointer, GrowError> {
        if new.size() < old.size() {
            return Err(GrowError::GrowWouldShrink);
        }
        check_request(new)?;
        let slot = &self.slots[offset.segment_id().index()];
        if !slot.pin() {
            return Err(GrowError::InvalidOffset);
        }
        // SAFETY: pinned above.
        let segment = unsafe { slot.get() };
        let payload = segment.allocator.layout().payload_size as u64;
        let in_bounds = offset
            .offset()
            .checked_add(old.size() as u64)
            .is_some_and(|end| end <= payload);
        if !in_bounds {
            let _ = slot.unpin(1, |s| self.release_segment(s));
            return Err(GrowError::InvalidOffset);
        }
        let old_ptr = segment
            .mapping
            .as_ptr()
            .wrapping_add(offset.offset() as usize);
        let in_place = segment.allocator.grow_in_place(offset.offset(), old, new);
        // The chunk's own reference keeps the segment (and old_ptr) alive from here on.
        let _ = slot.unpin(1, |s| self.release_segment(s));
        if in_place {
            if placement == ContentPlacement::Back && new.size() > old.size() {
                // SAFETY: both ranges lie inside the grown chunk, which the caller owns;
                // `copy` handles the overlap.
                unsafe {
                    std::ptr::copy(old_ptr, old_ptr.add(new.size() - old.size()), old.size())
                };
            }
            return Ok(ShmPointer {
                offset,
                data_ptr: old_ptr,
            });
        }
        let fresh = self.allocate(new)?;
        let at = match placement {
            ContentPlacement::Front => 0,
            ContentPlacement::Back => new.size() - old.size(),
        };
        // SAFETY: the old chunk (old.size() bytes) and the new one (new.size() bytes) are both
        // owned by the caller and distinct chunks, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(old_ptr, fresh.data_ptr.add(at), old.size()) };
        // SAFETY: the caller's chunk, now replaced.
        unsafe { self.deallocate_bucket(offset) };
        Ok(fresh)
    }
}
