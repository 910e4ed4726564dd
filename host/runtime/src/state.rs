//! Per-guest state kept in the store: WASI, the resource table of memories and views, and
//! what the guest currently uses of its quotas.

use std::alloc::Layout;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use resmem::{ByteBudget, Memory, SegmentRegion, View};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Policy;
use crate::bindings::types::Error;
use crate::window::{Slot, Window, WindowError};

/// A memory owned by a guest, with every chunk it holds (packed offset → layout): the host
/// bounds `read`/`write` to a chunk and frees chunks without trusting the guest's layout.
#[derive(Debug)]
pub struct GuestMemory {
    pub(crate) segments: GuestSegments,
    pub(crate) memory: Memory,
    pub(crate) chunks: HashMap<u64, Layout>,
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // The window goes first, explicitly (not by field order): the guest must not reach a
        // segment after the memory unmaps it (when `memory` drops after this).
        self.segments.unmap_all();
    }
}

/// What the host knows about the segments of one memory or view beyond the native records:
/// which are mapped into the guest's window, and which a peer broke by truncating them.
/// Segments are keyed by id and told apart across id reuse by their sequence number.
#[derive(Debug)]
pub struct GuestSegments {
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
    pub(crate) fn check(&self, id: u8, sequence: u64) -> Result<(), Error> {
        if self.broken.contains(&(id, sequence)) {
            return Err(broken_error(id));
        }
        Ok(())
    }

    /// A host copy or a probe of the segment faulted: never touch it again, and take it away
    /// from the guest.
    pub(crate) fn mark_broken(&mut self, id: u8, sequence: u64) -> Error {
        self.broken.insert((id, sequence));
        self.unmap(id);
        broken_error(id)
    }

    /// Guest address of the segment's first payload byte, mapping it into the window first
    /// if needed.
    pub(crate) fn map(&mut self, id: u8, region: &SegmentRegion) -> Result<u32, Error> {
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
            Err(WindowError::Full { needed, window }) => Err(Error::QuotaExceeded(format!(
                "the zero-copy window ({window} bytes) has no {needed} bytes free"
            ))),
            Err(WindowError::Truncated(_)) => Err(self.mark_broken(id, region.sequence())),
            Err(e) => Err(Error::Io(e.to_string())),
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

fn broken_error(id: u8) -> Error {
    Error::Io(format!(
        "segment {id} was truncated by a peer (SIGBUS); it is unusable"
    ))
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
    pub(crate) registered: HashMap<u64, Registration>,
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

/// What a guest holds right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Memories the guest owns.
    pub memories: u32,
    /// Views the guest has open.
    pub views: u32,
    /// Chunks the guest holds in its memories.
    pub chunks: u64,
    /// Offsets the guest has registered in its views.
    pub registrations: u64,
    /// Channel publishers the guest holds.
    pub publishers: u32,
    /// Channel subscribers the guest holds.
    pub subscribers: u32,
    /// Unsent loans over all its publishers.
    pub loans: u64,
    /// Received samples it holds over all its subscribers.
    pub borrowed: u64,
}

/// The data of one guest's store.
pub struct GuestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) policy: Arc<Policy>,
    pub(crate) budget: Arc<ByteBudget>,
    pub(crate) usage: Usage,
    pub(crate) window: Arc<Window>,
    /// Bounds the guest's linear memories (installed as the store's limiter).
    pub(crate) limits: StoreLimits,
    /// When the current entry into the guest must end; host calls that wait (a subscriber's
    /// pollable) return by then, so epoch interruption can stop the guest.
    pub(crate) deadline: Deadline,
}

/// The wall-clock end of the current entry into a guest, shared with the resources that wait
/// on its behalf.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadline(Arc<Mutex<Option<Instant>>>);

impl Deadline {
    pub(crate) fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is left of it from now, at most `cap`.
    pub(crate) fn left(&self, cap: Duration) -> Duration {
        self.get().map_or(cap, |at| {
            at.saturating_duration_since(Instant::now()).min(cap)
        })
    }
}

impl GuestState {
    /// The state of a new guest: its WASI context and the policy it runs under.
    pub fn new(wasi: WasiCtx, policy: Arc<Policy>) -> Self {
        let budget = Arc::new(ByteBudget::new(policy.quotas().shm_bytes));
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(policy.quotas().wasm_memory_bytes).unwrap_or(usize::MAX))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            window: Window::new(policy.quotas().window_bytes),
            policy,
            budget,
            usage: Usage::default(),
            limits,
            deadline: Deadline::default(),
        }
    }

    /// What the guest holds now.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Bytes of shared memory the guest's memories map now.
    pub fn shm_bytes(&self) -> u64 {
        self.budget.used()
    }

    /// The policy the guest runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The guest's zero-copy window.
    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            chunks: HashMap::from([(chunk.offset.as_u64(), layout)]),
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
