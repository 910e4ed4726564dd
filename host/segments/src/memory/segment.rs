//! Segment lifecycle: creating a data segment, and unpublishing, unlinking and unmapping it
//! with its last chunk.

use crate::allocator::{ChunkAllocator, SegmentLayout};
use crate::backend::{Mapping, page_size};
use crate::error::OsError;
use crate::header::{SegmentTrailer, segment_geometry};
use crate::{AllocError, SegmentId, name};

use super::Memory;
use super::builder::create_options;

/// One data segment as the owner sees it.
#[derive(Debug)]
pub(super) struct OwnerSegment {
    pub(super) id: SegmentId,
    pub(super) mapping: Mapping,
    pub(super) allocator: Box<dyn ChunkAllocator>,
    pub(super) os_name: String,
    pub(super) sequence: u64,
}

/// A segment checked and paid for (budget reserved) whose OS object does not exist yet:
/// segment 0 until the first allocation needs it.
#[derive(Debug)]
pub(super) struct Planned {
    pub(super) layout: SegmentLayout,
    pub(super) allocator: Box<dyn ChunkAllocator>,
    trailer_at: usize,
    pub(super) total: usize,
}

impl Planned {
    /// The owner's segment of this plan, mapped as `mapping`.
    pub(super) fn into_segment(
        self,
        id: SegmentId,
        sequence: u64,
        mapping: Mapping,
        os_name: String,
    ) -> OwnerSegment {
        OwnerSegment {
            id,
            mapping,
            allocator: self.allocator,
            os_name,
            sequence,
        }
    }
}

/// Why a segment could not be created: the allocation's reason, or what the OS said (which
/// an allocation reports as `OutOfMemory`, `create` keeps as its `InternalError`).
#[derive(Debug)]
pub(super) enum SegmentError {
    Alloc(AllocError),
    Os(OsError),
}

impl From<AllocError> for SegmentError {
    fn from(e: AllocError) -> Self {
        Self::Alloc(e)
    }
}

impl From<SegmentError> for AllocError {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Alloc(e) => e,
            SegmentError::Os(_) => AllocError::OutOfMemory,
        }
    }
}

impl Memory {
    /// Creates, sizes and maps data segment `id` of creation number `sequence`, with its
    /// trailer written; the header does not know it yet.
    pub(super) fn create_segment(
        &self,
        id: SegmentId,
        sequence: u64,
        layout: SegmentLayout,
    ) -> Result<OwnerSegment, SegmentError> {
        let planned = self.plan_segment(layout)?;
        match self.map_planned(id, sequence, &planned) {
            Ok((mapping, os_name)) => Ok(planned.into_segment(id, sequence, mapping, os_name)),
            Err(e) => {
                self.release_budget(planned.total);
                Err(e)
            }
        }
    }

    /// Everything of a segment but its OS object: the geometry and allocator checked and the
    /// bytes reserved from the budget (the caller gives them back if it drops the plan).
    pub(super) fn plan_segment(&self, layout: SegmentLayout) -> Result<Planned, SegmentError> {
        let (trailer_at, total) =
            segment_geometry(layout.payload_size, page_size()).ok_or(AllocError::SizeTooLarge)?;
        let allocator = self.allocator.build(layout)?;
        if let Some(budget) = &self.budget
            && !budget.reserve(total as u64)
        {
            return Err(AllocError::QuotaExceeded.into());
        }
        Ok(Planned {
            layout,
            allocator,
            trailer_at,
            total,
        })
    }

    /// Creates, sizes and maps the OS object of a planned segment `id` of creation number
    /// `sequence`, its trailer written; with the object's name. The plan (and its budget)
    /// stays the caller's.
    pub(super) fn map_planned(
        &self,
        id: SegmentId,
        sequence: u64,
        planned: &Planned,
    ) -> Result<(Mapping, String), SegmentError> {
        let os_name = name::segment_name(&self.name, id, &self.config);
        let backend = self.config.get_backend();
        let options = create_options(&self.config);
        let mut mapping = match backend.create(&os_name, planned.total, &options) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A leftover of an earlier owner of this name: ours to replace, but only while
                // the name is still ours (`remove` may have handed it to a new memory).
                if !self.owns_name() {
                    return Err(AllocError::OutOfMemory.into());
                }
                let _ = backend.remove(&os_name);
                backend.create(&os_name, planned.total, &options)
            }
            other => other,
        }
        .map_err(|e| SegmentError::Os(OsError::from_io("creating a data segment", &e)))?;
        mapping.close_handle();
        // SAFETY: trailer_at is a multiple of 64 and trailer_at + TRAILER_SIZE <= total, the
        // mapping's length.
        let trailer = unsafe { SegmentTrailer::from_ptr(mapping.as_ptr().add(planned.trailer_at)) };
        trailer.write(self.memory_id, id, sequence, planned.layout.payload_size);
        Ok((mapping, os_name))
    }

    /// Whether the management object under our name is still ours (and not a successor's).
    /// Decided by object identity, not by the header's bytes, which any peer may overwrite.
    pub(super) fn owns_name(&self) -> bool {
        self.config
            .get_backend()
            .is_same_object(&name::mgmt_name(&self.name, &self.config), &self.mgmt)
            .unwrap_or(false)
    }

    /// Unlinks a segment's name unless it now names another object (after `remove` handed
    /// the name on to a successor memory). Decided by object identity, not by the trailer's
    /// bytes, which any peer may overwrite.
    pub(super) fn unlink_if_ours(&self, segment: &OwnerSegment) {
        let backend = self.config.get_backend();
        let ours = backend
            .is_same_object(&segment.os_name, &segment.mapping)
            .unwrap_or(false);
        if ours {
            let _ = backend.remove(&segment.os_name);
        }
    }

    pub(super) fn release_budget(&self, bytes: usize) {
        if let Some(budget) = &self.budget {
            budget.release(bytes as u64);
        }
    }

    /// Unpublishes, unlinks and unmaps a segment whose last chunk is gone.
    pub(super) fn release_segment(&self, segment: OwnerSegment) {
        self.record(segment.id).clear();
        if !self.abandoned {
            self.unlink_if_ours(&segment);
        }
        self.release_budget(segment.mapping.len());
        drop(segment);
    }
}
