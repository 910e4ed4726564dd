//! Which segments of one memory, view or channel end are mapped into the guest's window, and
//! which a peer broke by truncating them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use resmem::{SegmentId, SegmentRegion};

use super::{Slot, Window, WindowError};

/// Why a segment is not (or no longer) reachable through the window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SegmentsError {
    /// A peer truncated the segment (a copy or a probe faulted): it stays unusable.
    #[error("segment {0} was truncated by a peer (SIGBUS); it is unusable")]
    Broken(u8),
    /// No free slot is large enough.
    #[error("the zero-copy window ({window} bytes) has no {needed} bytes free")]
    Full {
        /// Bytes the segment needs, rounded to slots.
        needed: u64,
        /// The window's size.
        window: u64,
    },
    /// No linear memory of the guest is attached to the window.
    #[error(
        "the zero-copy window is not attached to the guest's linear memory: the engine needs \
         resmem_host::configure, and the instance must be created inside Window::bind"
    )]
    NotAttached,
    /// The OS refused the mapping.
    #[error("mapping into the window failed: {0}")]
    Map(String),
}

/// What the host knows about the segments of one memory or view beyond the native records:
/// which are mapped into the guest's window, and which a peer broke by truncating them.
/// Segments are keyed by id and told apart across id reuse by their sequence number.
#[derive(Debug)]
pub(crate) struct GuestSegments {
    window: Arc<Window>,
    mapped: HashMap<u8, (Slot, u64)>,
    broken: HashSet<(u8, u64)>,
}

impl GuestSegments {
    pub(crate) fn new(window: Arc<Window>) -> Self {
        Self {
            window,
            mapped: HashMap::new(),
            broken: HashSet::new(),
        }
    }

    /// Fails when a peer broke the segment.
    pub(crate) fn check(&self, id: u8, sequence: u64) -> Result<(), SegmentsError> {
        if self.broken.contains(&(id, sequence)) {
            return Err(SegmentsError::Broken(id));
        }
        Ok(())
    }

    /// A host copy or a probe of the segment faulted: never touch it again, and take it away
    /// from the guest.
    pub(crate) fn mark_broken(&mut self, id: u8, sequence: u64) -> SegmentsError {
        self.broken.insert((id, sequence));
        self.unmap(id);
        SegmentsError::Broken(id)
    }

    /// Guest address of the segment's first payload byte, mapping it into the window first
    /// if needed.
    pub(crate) fn map(&mut self, id: u8, region: &SegmentRegion) -> Result<u32, SegmentsError> {
        self.check(id, region.sequence())?;
        match self.mapped.get(&id) {
            Some(&(slot, sequence)) if sequence == region.sequence() => return Ok(slot.start()),
            Some(_) => self.unmap(id),
            None => {}
        }
        match self.window.map(region) {
            Ok(slot) => {
                self.mapped.insert(id, (slot, region.sequence()));
                Ok(slot.start())
            }
            Err(WindowError::Full { needed, window }) => {
                Err(SegmentsError::Full { needed, window })
            }
            Err(WindowError::Truncated(_)) => Err(self.mark_broken(id, region.sequence())),
            Err(WindowError::NoLinearMemory) => Err(SegmentsError::NotAttached),
            Err(WindowError::Map(e)) => Err(SegmentsError::Map(e)),
        }
    }

    /// Takes segment `id` out of the window, if it is there.
    pub(crate) fn unmap(&mut self, id: u8) {
        if let Some((slot, _)) = self.mapped.remove(&id) {
            self.window.unmap(slot);
        }
    }

    /// Unmaps every window slot whose segment is no longer the live one of its id;
    /// `live(id)` is the sequence of the segment alive under `id` now.
    pub(crate) fn sweep(&mut self, live: impl Fn(u8) -> Option<u64>) {
        if self.mapped.is_empty() {
            return;
        }
        let stale: Vec<u8> = self
            .mapped
            .iter()
            .filter(|&(&id, &(_, sequence))| live(id) != Some(sequence))
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            self.unmap(id);
        }
    }

    /// Takes every segment out of the window.
    pub(crate) fn unmap_all(&mut self) {
        for (_, (slot, _)) in self.mapped.drain() {
            self.window.unmap(slot);
        }
    }

    pub(crate) fn has_broken(&self) -> bool {
        !self.broken.is_empty()
    }
}

impl Drop for GuestSegments {
    fn drop(&mut self) {
        self.unmap_all();
    }
}

/// A memory, a view or a channel end: where its segments are and what the host knows of them.
pub(crate) trait Segmented: 'static {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion>;
    fn segments_mut(&mut self) -> &mut GuestSegments;

    /// A guarded copy into segment `id` faulted: record it and return why.
    fn mark_broken(&mut self, id: SegmentId) -> SegmentsError {
        let sequence = self.region(id).map_or(0, |r| r.sequence());
        self.segments_mut().mark_broken(id.value(), sequence)
    }
}
