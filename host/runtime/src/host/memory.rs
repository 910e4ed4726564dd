//! `resizable-memory.memory`: a guest's own memories and the chunks it holds in them.

use std::sync::Arc;

use resmem::{Memory, SegmentId, SegmentRegion};
use wasmtime::component::Resource;

use super::{Outcome, shield, truncated, window_address};
use crate::bindings::api::{HostMemory, MemoryConfig};
use crate::bindings::types::{
    AllocationStrategy as WitStrategy, ContentPlacement, Error, Layout as WitLayout,
    PointerOffset as WitOffset,
};
use crate::convert::{self, range};
use crate::ctx::ResmemCtxView;
use crate::resources::GuestMemory;
use crate::sigbus;
use crate::window::{GuestSegments, Segmented};

impl ResmemCtxView<'_> {
    fn create_memory(&mut self, name: &str, config: MemoryConfig) -> Result<GuestMemory, Error> {
        self.check_name(name)?;
        let quotas = self.ctx.policy.quotas();
        if self.ctx.usage.memories >= quotas.memories {
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
                .config(self.ctx.policy.config())
                .max_chunk_layout_hint(hint)
                .max_number_of_chunks_hint(chunks)
                .allocation_strategy(convert::strategy(config.allocation_strategy))
                .budget(Arc::clone(&self.ctx.budget) as Arc<dyn resmem::SegmentBudget>)
                .create()
                .map_err(convert::create_error)
        })?;
        Ok(GuestMemory {
            segments: GuestSegments::new(Arc::clone(&self.ctx.window)),
            memory,
            chunks: Default::default(),
        })
    }
}

impl ResmemCtxView<'_> {
    /// Refuses `count` more chunks when they would take the guest past its live-chunk quota.
    fn check_live_chunks(&self, count: u64) -> Result<(), Error> {
        let max = self.ctx.policy.quotas().live_chunks;
        let live = self.ctx.usage.chunks;
        if live.saturating_add(count) > max {
            return Err(Error::QuotaExceeded(format!(
                "{max} live chunks ({live} live, {count} asked for)"
            )));
        }
        Ok(())
    }
}

impl HostMemory for ResmemCtxView<'_> {
    fn create(&mut self, name: String, config: MemoryConfig) -> Outcome<Resource<GuestMemory>> {
        let memory = match self.create_memory(&name, config) {
            Ok(memory) => memory,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(memory)?;
        self.ctx.usage.memories += 1;
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
        if let Err(e) = self.check_live_chunks(1) {
            return Ok(Err(e));
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
        self.ctx.usage.chunks += 1;
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
        let faulted = guest.free_taken(&[(offset, layout)]);
        self.ctx.usage.chunks -= 1;
        Ok(if faulted { Err(truncated()) } else { Ok(()) })
    }

    fn allocate_many(
        &mut self,
        this: Resource<GuestMemory>,
        layout: WitLayout,
        count: u32,
    ) -> Outcome<Vec<WitOffset>> {
        let layout = match self.check_chunk_layout(layout) {
            Ok(layout) => layout,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.check_live_chunks(u64::from(count)) {
            return Ok(Err(e));
        }
        let count = count as usize;
        let guest = self.table.get_mut(&this)?;
        // Room first, so that recording the chunks below cannot fail half-way; the quota
        // bounds `count`.
        let mut offsets = Vec::new();
        if offsets.try_reserve_exact(count).is_err() || guest.chunks.try_reserve(count).is_err() {
            return Ok(Err(Error::OutOfMemory));
        }
        let memory = &guest.memory;
        let (allocated, faulted) = sigbus::shielded(|| {
            for _ in 0..count {
                match memory.allocate(layout) {
                    Ok(chunk) => offsets.push(chunk.offset),
                    Err(e) => {
                        for &offset in &offsets {
                            // SAFETY: allocated just above with `layout`, returned once, and
                            // never handed to the guest or used by the host.
                            unsafe { memory.deallocate(offset, layout) };
                        }
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = allocated {
            guest.sweep_window();
            return Ok(Err(convert::alloc_error(e)));
        }
        // Recorded even after a fault, so the memory frees them like any other chunk.
        for offset in &offsets {
            guest.chunks.insert(offset.as_u64(), layout);
        }
        guest.sweep_window();
        self.ctx.usage.chunks += count as u64;
        if faulted {
            return Ok(Err(truncated()));
        }
        Ok(Ok(offsets
            .into_iter()
            .map(convert::to_wit_offset)
            .collect()))
    }

    fn deallocate_many(
        &mut self,
        this: Resource<GuestMemory>,
        offsets: Vec<WitOffset>,
    ) -> Outcome<()> {
        let guest = self.table.get_mut(&this)?;
        // More offsets than chunks held: one is foreign or repeated. Refused before any work
        // or allocation, so a long list costs the host nothing beyond its lifting.
        if offsets.len() > guest.chunks.len() {
            return Ok(Err(Error::InvalidOffset(format!(
                "{} offsets, but the guest holds {} chunks of this memory",
                offsets.len(),
                guest.chunks.len()
            ))));
        }
        let mut taken = Vec::new();
        if taken.try_reserve_exact(offsets.len()).is_err() {
            return Ok(Err(Error::OutOfMemory));
        }
        // Out of the records one by one, so an offset listed twice is not found the second
        // time; on any refusal the records get back what was taken and nothing is freed.
        for &offset in &offsets {
            let found = convert::offset(offset).and_then(|offset| {
                guest
                    .chunks
                    .remove(&offset.as_u64())
                    .map(|layout| (offset, layout))
                    .ok_or_else(|| not_a_chunk(offset))
            });
            match found {
                Ok(chunk) => taken.push(chunk),
                Err(e) => {
                    for (offset, layout) in taken {
                        guest.chunks.insert(offset.as_u64(), layout);
                    }
                    return Ok(Err(e));
                }
            }
        }
        let faulted = guest.free_taken(&taken);
        self.ctx.usage.chunks -= taken.len() as u64;
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
        self.ctx.usage.memories -= 1;
        self.ctx.usage.chunks -= guest.chunks.len() as u64;
        // Dropping the native owner removes every OS object of the memory (and writes its
        // header, which a peer may have truncated).
        let ((), _) = sigbus::shielded(|| drop(guest));
        Ok(())
    }
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

impl Segmented for GuestMemory {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion> {
        self.memory.segment_region(id)
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

    /// Frees chunks just taken out of the guest's records and takes released segments out of
    /// the window; whether a truncated page faulted meanwhile.
    fn free_taken(&mut self, taken: &[(resmem::PointerOffset, std::alloc::Layout)]) -> bool {
        let memory = &self.memory;
        let ((), faulted) = sigbus::shielded(|| {
            for &(offset, layout) in taken {
                // SAFETY: each chunk was handed out by this memory with `layout` and is
                // returned once (the caller just removed it from the guest's records, which
                // held it once); the host keeps no pointer into it.
                unsafe { memory.deallocate(offset, layout) };
            }
        });
        self.sweep_window();
        faulted
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
