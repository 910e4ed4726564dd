//! Segment 0, planned when the memory is created and made by its first allocation.
//!
//! Creating an owner checks segment 0's layout and reserves its budget, so every error of the
//! hints and the quota still surfaces at `create`; the OS object (open, size, map, and the
//! unmap and unlink when the owner goes) is paid for only by a memory that allocates. The
//! header publishes segment 0 at creation, as before; its object exists before its first
//! chunk is handed out, so a view that maps it for an offset it received always finds it (an
//! offset guessed earlier gets `DoesNotExist`, or `Corrupted` while the object is half made).

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use crate::{AllocError, SegmentId};

use super::segment::Planned;
use super::{Memory, OwnerSegment};

const FIRST: SegmentId = SegmentId::new(0);

impl Memory {
    /// Makes segment 0 if it is still only planned; whether this call made it. An OS failure
    /// keeps the plan (and its budget) for the next allocation to try again.
    pub(super) fn make_first_segment(&self) -> Result<bool, AllocError> {
        if !self.first_planned.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut grow = self.grow.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(planned) = grow.first.take() else {
            // Another thread made it while we waited for the lock.
            return Ok(false);
        };
        let (mapping, os_name) = match self.map_planned(FIRST, 0, &planned) {
            Ok(made) => made,
            Err(e) => {
                grow.first = Some(planned);
                return Err(e.into());
            }
        };
        let segment = planned.into_segment(FIRST, 0, mapping, os_name);
        self.install_first(segment)?;
        Ok(true)
    }

    /// Installs a made segment 0 (published at creation) as the current segment.
    pub(super) fn install_first(&self, segment: OwnerSegment) -> Result<(), AllocError> {
        if let Err(segment) = self.slots[FIRST.index()].install(segment, false, 0) {
            // Unreachable (slot 0 stays free while segment 0 is planned, and only the holder
            // of the grow lock installs), but never leave a record, a name or budget behind.
            self.first_planned.store(false, Ordering::Release);
            self.release_segment(segment);
            return Err(AllocError::OutOfMemory);
        }
        self.first_planned.store(false, Ordering::Release);
        Ok(())
    }

    /// `f` of segment `id`'s plan, when `id` is a segment 0 that is still only planned.
    pub(super) fn with_planned<R>(
        &self,
        id: SegmentId,
        f: impl FnOnce(&Planned) -> R,
    ) -> Option<R> {
        if id != FIRST || !self.first_planned.load(Ordering::Acquire) {
            return None;
        }
        let grow = self.grow.lock().unwrap_or_else(PoisonError::into_inner);
        grow.first.as_ref().map(f)
    }

    /// Gives a still planned segment 0's budget back (the memory is going).
    pub(super) fn drop_plan(&mut self) {
        let grow = self.grow.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(planned) = grow.first.take() {
            *self.first_planned.get_mut() = false;
            self.release_budget(planned.total);
        }
    }
}
