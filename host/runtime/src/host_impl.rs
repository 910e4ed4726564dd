//! The host side of `resmem:memory/resizable-memory`: every guest call lands here.
//!
//! Order of business in every function: look the handle up, validate every argument against
//! the guest's own records and quotas, and only then touch shared memory. A guest-caused
//! failure is an `Err(Error)` returned to the guest; the outer `wasmtime::Result` only carries
//! host bugs (a handle missing from the table), which trap.

use std::sync::Arc;
use std::time::Duration;

use resmem::{AccessMode, Memory, SegmentId, SegmentRegion, View};
use wasmtime::component::Resource;

use crate::bindings::api::{Host, HostMemory, HostView, MemoryConfig};
use crate::bindings::types::{
    self as wit, AccessMode as WitAccess, AllocationStrategy as WitStrategy, ContentPlacement,
    Error, Layout as WitLayout, PointerOffset as WitOffset,
};
use crate::convert::{self, range};
use crate::sigbus;
use crate::state::{GuestMemory, GuestSegments, GuestState, GuestView, Registration};

pub(crate) type Outcome<T> = wasmtime::Result<Result<T, Error>>;

impl wit::Host for GuestState {}

impl GuestState {
    pub(crate) fn check_name(&self, name: &str) -> Result<(), Error> {
        resmem::validate_name(name, self.policy.config())
            .map_err(|e| Error::InvalidName(e.to_string()))
    }

    pub(crate) fn check_io(&self, len: u64) -> Result<(), Error> {
        let max = self.policy.quotas().io_bytes;
        if len > max {
            return Err(Error::QuotaExceeded(format!(
                "{len} bytes in one call, at most {max}"
            )));
        }
        Ok(())
    }

    pub(crate) fn check_chunk_layout(
        &self,
        layout: WitLayout,
    ) -> Result<std::alloc::Layout, Error> {
        let layout = convert::layout(layout)?;
        let max = self.policy.quotas().chunk_bytes;
        if layout.size() as u64 > max {
            return Err(Error::QuotaExceeded(format!(
                "chunk of {} bytes, at most {max}",
                layout.size()
            )));
        }
        Ok(layout)
    }

    /// `read` of a memory or a view: the size quota, then `locate` (which checks the range
    /// against the guest's own records and returns it with its segment), then one copy out of
    /// shared memory, guarded against a peer that truncated the segment.
    pub(crate) fn read_from<T: Segmented>(
        &mut self,
        this: &Resource<T>,
        len: u64,
        locate: impl FnOnce(&T) -> Result<(*const u8, SegmentId), Error>,
    ) -> Outcome<Vec<u8>> {
        if let Err(e) = self.check_io(len) {
            return Ok(Err(e));
        }
        let guest = self.table.get_mut(this)?;
        let (source, id) = match locate(guest) {
            Ok(located) => located,
            Err(e) => return Ok(Err(e)),
        };
        // SAFETY: `locate` returned the start of `len` bytes inside mapped shared memory that
        // the guest owns (a chunk) or registered (a view's segment payload).
        let copied = sigbus::guarded(source as usize, len as usize, || unsafe {
            copy_out(source, len)
        });
        Ok(copied.unwrap_or_else(|_| Err(guest.mark_broken(id))))
    }

    /// `write` of a memory or a view, like `read_from`.
    pub(crate) fn write_to<T: Segmented>(
        &mut self,
        this: &Resource<T>,
        data: &[u8],
        locate: impl FnOnce(&T) -> Result<(*mut u8, SegmentId), Error>,
    ) -> Outcome<()> {
        if let Err(e) = self.check_io(data.len() as u64) {
            return Ok(Err(e));
        }
        let guest = self.table.get_mut(this)?;
        let (target, id) = match locate(guest) {
            Ok(located) => located,
            Err(e) => return Ok(Err(e)),
        };
        // SAFETY: `locate` returned the start of `data.len()` writable bytes inside shared
        // memory the guest owns or registered read-write; `data` is host memory.
        let copied = sigbus::guarded(target as usize, data.len(), || unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), target, data.len())
        });
        Ok(copied.map_err(|_| guest.mark_broken(id)))
    }

    fn create_memory(&mut self, name: &str, config: MemoryConfig) -> Result<GuestMemory, Error> {
        self.check_name(name)?;
        let quotas = self.policy.quotas();
        if self.usage.memories >= quotas.memories {
            return Err(Error::QuotaExceeded(format!(
                "{} memories at once",
                quotas.memories
            )));
        }
        let hint = self.check_chunk_layout(config.max_chunk_layout_hint)?;
        let chunks = usize::try_from(config.max_number_of_chunks_hint)
            .ok()
            .filter(|&n| n as u64 <= quotas.live_chunks)
            .ok_or_else(|| {
                Error::QuotaExceeded(format!(
                    "{} chunks hinted, at most {} live chunks",
                    config.max_number_of_chunks_hint, quotas.live_chunks
                ))
            })?;
        let memory = shield(|| {
            Memory::builder(name)
                .config(self.policy.config())
                .max_chunk_layout_hint(hint)
                .max_number_of_chunks_hint(chunks)
                .allocation_strategy(convert::strategy(config.allocation_strategy))
                .budget(Arc::clone(&self.budget) as Arc<dyn resmem::SegmentBudget>)
                .create()
                .map_err(convert::create_error)
        })?;
        Ok(GuestMemory {
            segments: GuestSegments::new(Arc::clone(&self.window)),
            memory,
            chunks: Default::default(),
        })
    }

    fn open_view(
        &mut self,
        name: &str,
        mode: WitAccess,
        timeout_ms: u32,
    ) -> Result<GuestView, Error> {
        self.check_name(name)?;
        let quotas = self.policy.quotas();
        if self.usage.views >= quotas.views {
            return Err(Error::QuotaExceeded(format!(
                "{} views at once",
                quotas.views
            )));
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(quotas.open_timeout);
        let view = shield(|| {
            View::builder(name)
                .config(self.policy.config())
                .timeout(timeout)
                .open(convert::access(mode))
                .map_err(convert::open_error)
        })?;
        Ok(GuestView {
            segments: GuestSegments::new(Arc::clone(&self.window)),
            view,
            registered: Default::default(),
            per_segment: Box::new([0; 256]),
        })
    }
}

impl HostMemory for GuestState {
    fn create(&mut self, name: String, config: MemoryConfig) -> Outcome<Resource<GuestMemory>> {
        let memory = match self.create_memory(&name, config) {
            Ok(memory) => memory,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(memory)?;
        self.usage.memories += 1;
        Ok(Ok(handle))
    }

    fn name(&mut self, this: Resource<GuestMemory>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.memory.name().to_owned())
    }

    fn allocate(&mut self, this: Resource<GuestMemory>, layout: WitLayout) -> Outcome<WitOffset> {
        let layout = match self.check_chunk_layout(layout) {
            Ok(layout) => layout,
            Err(e) => return Ok(Err(e)),
        };
        let max = self.policy.quotas().live_chunks;
        if self.usage.chunks >= max {
            return Ok(Err(Error::QuotaExceeded(format!("{max} live chunks"))));
        }
        let guest = self.table.get_mut(&this)?;
        let (allocated, faulted) = sigbus::shielded(|| guest.memory.allocate(layout));
        let chunk = match allocated {
            Ok(chunk) => chunk,
            Err(e) => return Ok(Err(convert::alloc_error(e))),
        };
        // Recorded even after a fault, so the memory frees it like any other chunk.
        guest.chunks.insert(chunk.offset.as_u64(), layout);
        guest.sweep_window();
        self.usage.chunks += 1;
        if faulted {
            return Ok(Err(truncated()));
        }
        Ok(Ok(convert::to_wit_offset(chunk.offset)))
    }

    fn deallocate(&mut self, this: Resource<GuestMemory>, offset: WitOffset) -> Outcome<()> {
        let offset = match convert::offset(offset) {
            Ok(offset) => offset,
            Err(e) => return Ok(Err(e)),
        };
        let guest = self.table.get_mut(&this)?;
        let Some(layout) = guest.chunks.remove(&offset.as_u64()) else {
            return Ok(Err(not_a_chunk(offset)));
        };
        // SAFETY: the chunk was handed out by this memory with `layout` and is returned once
        // (it was just removed from the guest's records); the host keeps no pointer into it.
        let ((), faulted) = sigbus::shielded(|| unsafe { guest.memory.deallocate(offset, layout) });
        guest.sweep_window();
        self.usage.chunks -= 1;
        Ok(if faulted { Err(truncated()) } else { Ok(()) })
    }

    fn grow(
        &mut self,
        this: Resource<GuestMemory>,
        offset: WitOffset,
        new_layout: WitLayout,
        placement: ContentPlacement,
    ) -> Outcome<WitOffset> {
        let (offset, new_layout) = match convert::offset(offset)
            .and_then(|o| Ok((o, self.check_chunk_layout(new_layout)?)))
        {
            Ok(args) => args,
            Err(e) => return Ok(Err(e)),
        };
        let guest = self.table.get_mut(&this)?;
        let Some(&old_layout) = guest.chunks.get(&offset.as_u64()) else {
            return Ok(Err(not_a_chunk(offset)));
        };
        // SAFETY: `offset` is a live chunk of this memory allocated with `old_layout` (the
        // guest's records say so); on success the records are updated to the new chunk.
        let (grown, faulted) = sigbus::shielded(|| unsafe {
            guest.memory.grow(
                offset,
                old_layout,
                new_layout,
                convert::placement(placement),
            )
        });
        match grown {
            Ok(chunk) => {
                guest.chunks.remove(&offset.as_u64());
                guest.chunks.insert(chunk.offset.as_u64(), new_layout);
                guest.sweep_window();
                if faulted {
                    return Ok(Err(truncated()));
                }
                Ok(Ok(convert::to_wit_offset(chunk.offset)))
            }
            Err(e) => Ok(Err(convert::grow_error(e))),
        }
    }

    fn write(
        &mut self,
        this: Resource<GuestMemory>,
        offset: WitOffset,
        at: u64,
        data: Vec<u8>,
    ) -> Outcome<()> {
        let len = data.len() as u64;
        self.write_to(&this, &data, |guest| chunk_address(guest, offset, at, len))
    }

    fn read(
        &mut self,
        this: Resource<GuestMemory>,
        offset: WitOffset,
        at: u64,
        len: u64,
    ) -> Outcome<Vec<u8>> {
        self.read_from(&this, len, |guest| {
            chunk_address(guest, offset, at, len).map(|(p, id)| (p as *const u8, id))
        })
    }

    fn number_of_active_segments(&mut self, this: Resource<GuestMemory>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.memory.number_of_active_segments() as u32)
    }

    fn allocation_strategy(
        &mut self,
        this: Resource<GuestMemory>,
    ) -> wasmtime::Result<WitStrategy> {
        Ok(convert::to_wit_strategy(
            self.table.get(&this)?.memory.allocation_strategy(),
        ))
    }

    fn map(&mut self, this: Resource<GuestMemory>, offset: WitOffset) -> Outcome<u32> {
        Ok(self.table.get_mut(&this)?.map(offset))
    }

    fn drop(&mut self, this: Resource<GuestMemory>) -> wasmtime::Result<()> {
        let guest = self.table.delete(this)?;
        self.usage.memories -= 1;
        self.usage.chunks -= guest.chunks.len() as u64;
        // Dropping the native owner removes every OS object of the memory (and writes its
        // header, which a peer may have truncated).
        let ((), _) = sigbus::shielded(|| drop(guest));
        Ok(())
    }
}

/// Runs a call into the native core with SIGBUS contained: a fault fails the call with `io`.
pub(crate) fn shield<T>(work: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match sigbus::shielded(work) {
        (result, false) => result,
        (_, true) => Err(truncated()),
    }
}

/// The error of a call during which a shared-memory object turned out truncated.
pub(crate) fn truncated() -> Error {
    Error::Io(sigbus::Truncated.to_string())
}

/// The error for an offset that is not one of the guest's chunks in this memory.
fn not_a_chunk(offset: resmem::PointerOffset) -> Error {
    Error::InvalidOffset(format!("{offset} is not a chunk of this memory"))
}

/// Address of byte `at` of a chunk the guest owns, after checking `[at, at + len)` is inside it.
fn chunk_address(
    guest: &GuestMemory,
    offset: WitOffset,
    at: u64,
    len: u64,
) -> Result<(*mut u8, SegmentId), Error> {
    let (offset, region) = guest.chunk_region(offset)?;
    let size = guest.chunks.get(&offset.as_u64()).map_or(0, |l| l.size());
    range(at, len, size as u64, "chunk")?;
    let base = region.address() + offset.offset() as usize;
    Ok((
        (base as *mut u8).wrapping_add(at as usize),
        offset.segment_id(),
    ))
}

/// A memory or a view: where its segments are and what the host knows of them.
pub(crate) trait Segmented: 'static {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion>;
    fn segments_mut(&mut self) -> &mut GuestSegments;

    /// A guarded copy into segment `id` faulted: record it and return the guest's error.
    fn mark_broken(&mut self, id: SegmentId) -> Error {
        let sequence = self.region(id).map_or(0, |r| r.sequence());
        self.segments_mut().mark_broken(id.value(), sequence)
    }
}

impl Segmented for GuestMemory {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion> {
        self.memory.segment_region(id)
    }

    fn segments_mut(&mut self) -> &mut GuestSegments {
        &mut self.segments
    }
}

impl Segmented for GuestView {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion> {
        self.view.segment_region(id)
    }

    fn segments_mut(&mut self) -> &mut GuestSegments {
        &mut self.segments
    }
}

impl GuestMemory {
    /// A chunk of this memory and its live segment, unless a peer broke that segment.
    fn chunk_region(
        &self,
        offset: WitOffset,
    ) -> Result<(resmem::PointerOffset, SegmentRegion), Error> {
        let offset = convert::offset(offset)?;
        if !self.chunks.contains_key(&offset.as_u64()) {
            return Err(not_a_chunk(offset));
        }
        let region = self
            .memory
            .segment_region(offset.segment_id())
            .filter(|r| offset.offset() < r.payload_size() as u64)
            .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not in a live segment")))?;
        self.segments
            .check(offset.segment_id().value(), region.sequence())?;
        Ok((offset, region))
    }

    /// `memory.map`: the chunk's guest address in the window.
    fn map(&mut self, offset: WitOffset) -> Result<u32, Error> {
        let (offset, region) = self.chunk_region(offset)?;
        let start = self.segments.map(offset.segment_id().value(), &region)?;
        window_address(start, offset.offset())
    }

    /// Takes released segments out of the window: the guest must not reach pages its memory
    /// no longer holds.
    fn sweep_window(&mut self) {
        let Self {
            segments, memory, ..
        } = self;
        segments.sweep(|id| {
            memory
                .segment_region(SegmentId::new(id))
                .map(|r| r.sequence())
        });
    }
}

impl GuestView {
    /// `view.map`: the registered offset's guest address in the window.
    fn map(&mut self, offset: WitOffset) -> Result<u32, Error> {
        let offset = convert::offset(offset)?;
        if !self.registered.contains_key(&offset.as_u64()) {
            return Err(Error::InvalidOffset(format!("{offset} is not registered")));
        }
        let region = self
            .view
            .segment_region(offset.segment_id())
            .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not in a mapped segment")))?;
        let start = self.segments.map(offset.segment_id().value(), &region)?;
        window_address(start, offset.offset())
    }
}

/// The guest address `offset` bytes into the window slot at `start`.
pub(crate) fn window_address(start: u32, offset: u64) -> Result<u32, Error> {
    u64::from(start)
        .checked_add(offset)
        .and_then(|a| u32::try_from(a).ok())
        .ok_or_else(|| Error::InvalidOffset(format!("offset {offset} is outside the window")))
}

/// Copies `len` bytes from shared memory into a new vector, failing politely if the host
/// cannot allocate it.
///
/// # Safety
/// `source..source + len` must be mapped and readable.
unsafe fn copy_out(source: *const u8, len: u64) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(len).map_err(|_| Error::QuotaExceeded("read too large".into()))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| Error::QuotaExceeded(format!("the host cannot allocate {len} bytes")))?;
    // SAFETY: the caller guarantees the source range; `out` has capacity for len bytes and
    // does not overlap shared memory; set_len follows the initialising copy.
    unsafe {
        std::ptr::copy_nonoverlapping(source, out.as_mut_ptr(), len);
        out.set_len(len);
    }
    Ok(out)
}

impl HostView for GuestState {
    fn open(
        &mut self,
        name: String,
        mode: WitAccess,
        timeout_ms: u32,
    ) -> Outcome<Resource<GuestView>> {
        let view = match self.open_view(&name, mode, timeout_ms) {
            Ok(view) => view,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(view)?;
        self.usage.views += 1;
        Ok(Ok(handle))
    }

    fn register(&mut self, this: Resource<GuestView>, offset: WitOffset) -> Outcome<()> {
        let offset = match convert::offset(offset) {
            Ok(offset) => offset,
            Err(e) => return Ok(Err(e)),
        };
        let max = self.policy.quotas().registrations;
        if self.usage.registrations >= max {
            return Ok(Err(Error::QuotaExceeded(format!(
                "{max} registered offsets"
            ))));
        }
        let guest = self.table.get_mut(&this)?;
        // SAFETY: every successful registration is recorded below and unregistered exactly
        // once, by `unregister` or when the view is dropped.
        let (registered, faulted) =
            sigbus::shielded(|| unsafe { guest.view.register_and_translate_offset(offset) });
        let address = match registered {
            Ok(address) => address,
            Err(e) => return Ok(Err(convert::open_error(e))),
        };
        if faulted {
            // SAFETY: registered just above; the address was never handed out.
            unsafe { guest.view.unregister_offset(offset) };
            return Ok(Err(truncated()));
        }
        let payload = guest
            .view
            .segment_payload_size(offset.segment_id())
            .unwrap_or(0) as u64;
        let entry = guest
            .registered
            .entry(offset.as_u64())
            .or_insert(Registration {
                address: address as usize,
                available: payload.saturating_sub(offset.offset()),
                count: 0,
            });
        entry.count += 1;
        guest.per_segment[usize::from(offset.segment_id().value())] += 1;
        self.usage.registrations += 1;
        Ok(Ok(()))
    }

    fn unregister(&mut self, this: Resource<GuestView>, offset: WitOffset) -> Outcome<()> {
        let offset = match convert::offset(offset) {
            Ok(offset) => offset,
            Err(e) => return Ok(Err(e)),
        };
        let guest = self.table.get_mut(&this)?;
        let key = offset.as_u64();
        let Some(entry) = guest.registered.get_mut(&key) else {
            return Ok(Err(Error::InvalidOffset(format!(
                "{offset} is not registered"
            ))));
        };
        entry.count -= 1;
        if entry.count == 0 {
            guest.registered.remove(&key);
        }
        let id = offset.segment_id();
        let count = &mut guest.per_segment[usize::from(id.value())];
        *count = count.saturating_sub(1);
        if *count == 0 {
            // Its last registration goes: the segment leaves the window before the view may
            // unmap it.
            guest.segments.unmap(id.value());
        }
        // SAFETY: this offset was registered by this view (the records say so) and the guest
        // has no way to use the address after this.
        let ((), _) = sigbus::shielded(|| unsafe { guest.view.unregister_offset(offset) });
        self.usage.registrations -= 1;
        Ok(Ok(()))
    }

    fn read(
        &mut self,
        this: Resource<GuestView>,
        offset: WitOffset,
        at: u64,
        len: u64,
    ) -> Outcome<Vec<u8>> {
        self.read_from(&this, len, |guest| {
            registered_address(guest, offset, at, len)
        })
    }

    fn write(
        &mut self,
        this: Resource<GuestView>,
        offset: WitOffset,
        at: u64,
        data: Vec<u8>,
    ) -> Outcome<()> {
        let len = data.len() as u64;
        self.write_to(&this, &data, |guest| {
            if guest.view.access_mode() != AccessMode::ReadWrite {
                return Err(Error::PermissionDenied("the view is read-only".into()));
            }
            // The view maps its segments read-write (its access mode), so writing is allowed.
            registered_address(guest, offset, at, len).map(|(p, id)| (p as *mut u8, id))
        })
    }

    fn number_of_active_segments(&mut self, this: Resource<GuestView>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.view.number_of_active_segments() as u32)
    }

    fn map(&mut self, this: Resource<GuestView>, offset: WitOffset) -> Outcome<u32> {
        Ok(self.table.get_mut(&this)?.map(offset))
    }

    fn drop(&mut self, this: Resource<GuestView>) -> wasmtime::Result<()> {
        let guest = self.table.delete(this)?;
        self.usage.views -= 1;
        self.usage.registrations -= guest
            .registered
            .values()
            .map(|r| u64::from(r.count))
            .sum::<u64>();
        let ((), _) = sigbus::shielded(|| drop(guest));
        Ok(())
    }
}

/// Address of byte `at` after a registered offset, after checking `[at, at + len)` stays in
/// its segment's payload.
fn registered_address(
    guest: &GuestView,
    offset: WitOffset,
    at: u64,
    len: u64,
) -> Result<(*const u8, SegmentId), Error> {
    let offset = convert::offset(offset)?;
    let registration = guest
        .registered
        .get(&offset.as_u64())
        .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not registered")))?;
    range(
        at,
        len,
        registration.available,
        "segment payload after the offset",
    )?;
    let id = offset.segment_id();
    if guest.segments.has_broken()
        && let Some(region) = guest.view.segment_region(id)
    {
        guest.segments.check(id.value(), region.sequence())?;
    }
    Ok((
        (registration.address as *const u8).wrapping_add(at as usize),
        id,
    ))
}

impl Host for GuestState {
    fn exists(&mut self, name: String) -> Outcome<bool> {
        if let Err(e) = self.check_name(&name) {
            return Ok(Err(e));
        }
        Ok(shield(|| {
            resmem::exists(&name, self.policy.config()).map_err(|e| Error::Io(e.to_string()))
        }))
    }

    fn list(&mut self) -> Outcome<Vec<String>> {
        Ok(shield(|| {
            resmem::list(self.policy.config()).map_err(|e| Error::Io(e.to_string()))
        }))
    }

    fn remove(&mut self, name: String) -> Outcome<bool> {
        if let Err(e) = self.check_name(&name) {
            return Ok(Err(e));
        }
        let config = self.policy.config();
        // Only leftovers: a memory whose owner (a guest, or a native process) is alive, or is
        // being created, belongs to that owner, which removes it by dropping it. Decided by
        // the owner's lock (not the header, which a peer may have scribbled over), held while
        // the objects are removed, so an owner cannot appear halfway.
        let removed =
            shield(|| resmem::remove_stale(&name, config).map_err(|e| Error::Io(e.to_string())));
        Ok(match removed {
            Ok(resmem::StaleRemoval::Removed) => Ok(true),
            Ok(resmem::StaleRemoval::NotFound) => Ok(false),
            Ok(resmem::StaleRemoval::OwnerAlive) => Err(Error::PermissionDenied(
                "the memory has a live owner; it is removed when its owner drops it".into(),
            )),
            Ok(other) => Err(Error::Io(format!("removing a stale memory: {other:?}"))),
            Err(e) => Err(e),
        })
    }
}

/// `bench-support.noop`: does nothing, so a guest can measure the bare cost of a host call.
impl crate::bindings::bench::resmem::memory::bench_support::Host for crate::GuestState {
    fn noop(&mut self) -> wasmtime::Result<()> {
        Ok(())
    }
}
