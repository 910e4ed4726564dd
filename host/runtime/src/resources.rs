//! The resources a guest holds in its store's table: its memories and views, each with the
//! host's own records of what the guest was given (chunks, registered offsets) and which of
//! their segments are in the guest's window.

use std::alloc::Layout;
use std::collections::HashMap;

use resmem::{Memory, View};

use crate::window::GuestSegments;

/// Records keyed by packed offsets, on every call's path: foldhash instead of std's SipHash.
/// Only the host inserts keys (offsets it handed out or registered), so a guest cannot flood
/// one bucket; the seed is random per map all the same.
pub(crate) type OffsetMap<V> = HashMap<u64, V, foldhash::fast::RandomState>;

/// A memory owned by a guest, with every chunk it holds (packed offset → layout): the host
/// bounds `read`/`write` to a chunk and frees chunks without trusting the guest's layout.
#[derive(Debug)]
pub struct GuestMemory {
    pub(crate) segments: GuestSegments,
    pub(crate) memory: Memory,
    pub(crate) chunks: OffsetMap<Layout>,
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // The window goes first, explicitly (not by field order): the guest must not reach a
        // segment after the memory unmaps it (when `memory` drops after this).
        self.segments.unmap_all();
    }
}

/// One registered offset of a view: where it maps and how many bytes follow it in its
/// segment's payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registration {
    pub(crate) address: usize,
    pub(crate) available: u64,
    pub(crate) count: u32,
}

/// A view opened by a guest, with its registered offsets (packed offset → registration).
#[derive(Debug)]
pub struct GuestView {
    pub(crate) segments: GuestSegments,
    pub(crate) view: View,
    pub(crate) registered: OffsetMap<Registration>,
    /// Registrations per segment id: a segment leaves the window with its last one.
    pub(crate) per_segment: Box<[u32; 256]>,
}

impl Drop for GuestView {
    fn drop(&mut self) {
        // The window goes first: the guest must not reach a segment the view stops pinning.
        self.segments.unmap_all();
        for (packed, registration) in self.registered.drain() {
            for _ in 0..registration.count {
                // SAFETY: every registration was made by this view and is dropped once; the
                // guest cannot reach the address any more (its handle is gone).
                unsafe {
                    self.view
                        .unregister_offset(resmem::PointerOffset::from_u64(packed))
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::window::Window;

    /// Dropping a guest's memory takes its segments out of the window and removes the memory.
    /// (The order, window first, is `GuestMemory::drop`'s; field order alone gave it before,
    /// so this guards the outcome, not the order.)
    #[test]
    fn dropping_a_guest_memory_frees_its_window_slots() {
        let window = Window::new(4 << 20);
        let linear = crate::window::linear_memory(&window);
        let config = resmem::Config::default().prefix(&format!("gmdrop{}_", std::process::id()));
        let memory = Memory::builder("drop")
            .config(&config)
            .create()
            .expect("a memory");
        let layout = Layout::new::<u64>();
        let chunk = memory.allocate(layout).expect("a chunk");
        let id = chunk.offset.segment_id();
        let region = memory.segment_region(id).expect("live");
        let mut guest = GuestMemory {
            segments: GuestSegments::new(Arc::clone(&window)),
            memory,
            chunks: OffsetMap::from_iter([(chunk.offset.as_u64(), layout)]),
        };
        let start = guest.segments.map(id.value(), &region).expect("mapped");
        assert_eq!(u64::from(start), window.heap_cap());
        assert!(window.free_bytes() < 4 << 20);
        drop(guest);
        assert_eq!(window.free_bytes(), 4 << 20);
        assert!(!resmem::exists("drop", &config).expect("exists"));
        drop(linear);
    }
}
