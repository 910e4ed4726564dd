//! The owner side: creates the memory, allocates chunks, grows into new segments and removes
//! everything when dropped.

use std::alloc::Layout;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::allocator::{AllocatorKind, ChunkAllocator, SegmentLayout, check_request};
use crate::backend::{CreateOptions, Mapping, page_size};
use crate::header::{
    MAX_SEGMENTS, MGMT_SIZE, MgmtHeader, SegmentTrailer, SlotRecord, segment_geometry,
};
use crate::slot::SlotCell;
use crate::{
    AllocError, AllocationStrategy, Config, ContentPlacement, CreateError, DeallocError, GrowError,
    PointerOffset, SegmentBudget, SegmentId, SegmentRegion, ShmPointer, name,
};

/// How often an allocation may lose the race for freshly created chunks to other threads
/// before it reports `OutOfMemory` instead of growing yet again.
const MAX_GROW_ATTEMPTS: usize = 64;

/// Configures and creates a [`Memory`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct MemoryBuilder {
    name: String,
    config: Config,
    chunk_layout: Layout,
    chunks: usize,
    strategy: AllocationStrategy,
    allocator: AllocatorKind,
    budget: Option<Arc<dyn SegmentBudget>>,
    reclaim_stale: bool,
}

/// How often `create` with `reclaim_stale` removes a stale memory and tries again before it
/// gives up (each round means another process recreated the name in between).
const RECLAIM_ATTEMPTS: usize = 4;

impl MemoryBuilder {
    /// Where the objects live and how they are named (prefix, suffix, backend, permissions).
    pub fn config(mut self, config: &Config) -> Self {
        self.config = config.clone();
        self
    }

    /// The largest chunk expected; sizes the buckets of segment 0. Default: 1 byte.
    pub fn max_chunk_layout_hint(mut self, layout: Layout) -> Self {
        self.chunk_layout = layout;
        self
    }

    /// How many chunks are expected at once; sizes segment 0. Default: 1.
    pub fn max_number_of_chunks_hint(mut self, chunks: usize) -> Self {
        self.chunks = chunks;
        self
    }

    /// How a new segment is sized when a chunk does not fit. Default: power of two.
    pub fn allocation_strategy(mut self, strategy: AllocationStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The allocator of every segment. Default: [`AllocatorKind::Pool`].
    pub fn allocator(mut self, allocator: AllocatorKind) -> Self {
        self.allocator = allocator;
        self
    }

    /// Caps the bytes of all data segments (shared with other memories if the same budget is
    /// given to them). Default: unlimited.
    pub fn budget(mut self, budget: Arc<dyn SegmentBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// When the name is taken by a *stale* memory (its owner died without removing it),
    /// remove that memory and create this one in its place. A live owner's name is never
    /// taken: the owner lock decides (see [`remove_stale`](crate::remove_stale)), so of two
    /// processes reclaiming the same name at once exactly one succeeds. Default: off (a stale
    /// name fails with `AlreadyExists`).
    pub fn reclaim_stale(mut self, reclaim: bool) -> Self {
        self.reclaim_stale = reclaim;
        self
    }

    /// Creates the management segment and segment 0. Fails with `AlreadyExists` if the name is
    /// taken, also by a crashed owner's leftovers unless [`MemoryBuilder::reclaim_stale`] is
    /// set.
    pub fn create(self) -> Result<Memory, CreateError> {
        if !self.reclaim_stale {
            return self.create_once();
        }
        for _ in 0..RECLAIM_ATTEMPTS {
            match self.clone().create_once() {
                Err(CreateError::AlreadyExists) => {}
                other => return other,
            }
            match crate::remove_stale(&self.name, &self.config) {
                // Gone (by us or by another remover): try again.
                Ok(crate::StaleRemoval::Removed | crate::StaleRemoval::NotFound) => {}
                Ok(crate::StaleRemoval::OwnerAlive) => return Err(CreateError::AlreadyExists),
                Err(crate::ManageError::InvalidName) => return Err(CreateError::InvalidName),
                Err(crate::ManageError::InsufficientPermissions) => {
                    return Err(CreateError::InsufficientPermissions);
                }
                Err(crate::ManageError::InternalError) => return Err(CreateError::InternalError),
            }
        }
        Err(CreateError::AlreadyExists)
    }

    fn create_once(self) -> Result<Memory, CreateError> {
        name::validate(&self.name, &self.config)?;
        let layout = self
            .allocator
            .initial_layout(self.chunk_layout, self.chunks)
            .map_err(|_| CreateError::InvalidHint)?;
        let page = page_size();
        let mgmt_size = MGMT_SIZE.next_multiple_of(page);
        let backend = self.config.get_backend();
        let mgmt = backend
            .create(
                &name::mgmt_name(&self.name, &self.config),
                mgmt_size,
                &CreateOptions {
                    lock_exclusive: true,
                    ..create_options(&self.config)
                },
            )
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => CreateError::AlreadyExists,
                std::io::ErrorKind::PermissionDenied => CreateError::InsufficientPermissions,
                _ => CreateError::InternalError,
            })?;
        let memory = Memory {
            memory_id: fresh_memory_id(),
            name: self.name,
            config: self.config,
            mgmt,
            slots: (0..MAX_SEGMENTS).map(|_| SlotCell::default()).collect(),
            current: AtomicU32::new(0),
            grow: Mutex::new(GrowState {
                next_sequence: 1,
                newest: SegmentId::new(0),
            }),
            strategy: self.strategy,
            allocator: self.allocator,
            budget: self.budget,
            abandoned: false,
            channel_owned: false,
        };
        // From here on, dropping `memory` removes whatever was created. The management
        // object was locked at creation: the lock says "owner alive" to every process.
        let header = memory.header();
        header.init(
            memory.memory_id,
            memory.config.get_prefix(),
            std::process::id(),
            memory.allocator,
            memory.strategy,
        );
        let id = SegmentId::new(0);
        let segment = memory.create_segment(id, 0, layout).map_err(|e| match e {
            AllocError::SizeTooLarge | AllocError::ExceedsMaxSupportedAlignment => {
                CreateError::InvalidHint
            }
            AllocError::QuotaExceeded => CreateError::QuotaExceeded,
            _ => CreateError::InternalError,
        })?;
        if memory.slots[0].install(segment, false, 0).is_err() {
            return Err(CreateError::InternalError);
        }
        header.slot(id).publish(0, &layout);
        header.set_current(id);
        header.set_ready();
        Ok(memory)
    }
}

/// A random, non-zero id for a new memory. std's `RandomState` is seeded from the OS's
/// randomness once per process; mixing in the time and pid separates processes that fork.
fn fresh_memory_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish().max(1)
}

fn create_options(config: &Config) -> CreateOptions {
    CreateOptions {
        permissions: config.get_permissions(),
        prefault: config.get_prefault(),
        lock_exclusive: false,
    }
}

/// One data segment as the owner sees it.
#[derive(Debug)]
struct OwnerSegment {
    id: SegmentId,
    mapping: Mapping,
    allocator: Box<dyn ChunkAllocator>,
    os_name: String,
    sequence: u64,
}

#[derive(Debug)]
struct GrowState {
    next_sequence: u64,
    newest: SegmentId,
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
    /// Id of the segment new chunks come from; always a live slot.
    current: AtomicU32,
    grow: Mutex<GrowState>,
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
        MemoryBuilder {
            name: name.to_owned(),
            config: Config::default(),
            chunk_layout: Layout::new::<u8>(),
            chunks: 1,
            strategy: AllocationStrategy::default(),
            allocator: AllocatorKind::default(),
            budget: None,
            reclaim_stale: false,
        }
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

    /// Number of segments currently mapped by the owner.
    pub fn number_of_active_segments(&self) -> usize {
        self.slots.iter().filter(|s| s.is_occupied()).count()
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
                // A grower just replaced the current segment; read it again.
                std::hint::spin_loop();
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

    fn create_segment(
        &self,
        id: SegmentId,
        sequence: u64,
        layout: SegmentLayout,
    ) -> Result<OwnerSegment, AllocError> {
        let (trailer_at, total) =
            segment_geometry(layout.payload_size, page_size()).ok_or(AllocError::SizeTooLarge)?;
        let allocator = self.allocator.build(layout)?;
        let os_name = name::segment_name(&self.name, id, &self.config);
        let backend = self.config.get_backend();
        let options = create_options(&self.config);
        if let Some(budget) = &self.budget
            && !budget.reserve(total as u64)
        {
            return Err(AllocError::QuotaExceeded);
        }
        let mut mapping = match backend.create(&os_name, total, &options) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A leftover of an earlier owner of this name: ours to replace, but only while
                // the name is still ours (`remove` may have handed it to a new memory).
                if !self.owns_name() {
                    self.release_budget(total);
                    return Err(AllocError::OutOfMemory);
                }
                let _ = backend.remove(&os_name);
                backend.create(&os_name, total, &options)
            }
            other => other,
        }
        .map_err(|_| {
            self.release_budget(total);
            AllocError::OutOfMemory
        })?;
        mapping.close_handle();
        // SAFETY: trailer_at is a multiple of 64 and trailer_at + TRAILER_SIZE <= total, the
        // mapping's length; the mapping lives in the returned segment.
        let trailer = unsafe { SegmentTrailer::from_ptr(mapping.as_ptr().add(trailer_at)) };
        trailer.write(self.memory_id, id, sequence, layout.payload_size);
        Ok(OwnerSegment {
            id,
            mapping,
            allocator,
            os_name,
            sequence,
        })
    }

    /// Whether the management object under our name is still ours (and not a successor's).
    /// Decided by object identity, not by the header's bytes, which any peer may overwrite.
    fn owns_name(&self) -> bool {
        self.config
            .get_backend()
            .is_same_object(&name::mgmt_name(&self.name, &self.config), &self.mgmt)
            .unwrap_or(false)
    }

    /// Unlinks a segment's name unless it now names another object (after `remove` handed
    /// the name on to a successor memory). Decided by object identity, not by the trailer's
    /// bytes, which any peer may overwrite.
    fn unlink_if_ours(&self, segment: &OwnerSegment) {
        let backend = self.config.get_backend();
        let ours = backend
            .is_same_object(&segment.os_name, &segment.mapping)
            .unwrap_or(false);
        if ours {
            let _ = backend.remove(&segment.os_name);
        }
    }

    fn release_budget(&self, bytes: usize) {
        if let Some(budget) = &self.budget {
            budget.release(bytes as u64);
        }
    }

    /// Unpublishes, unlinks and unmaps a segment whose last chunk is gone.
    fn release_segment(&self, segment: OwnerSegment) {
        self.record(segment.id).clear();
        if !self.abandoned {
            self.unlink_if_ours(&segment);
        }
        self.release_budget(segment.mapping.len());
        drop(segment);
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
            return Err(DeallocError::InvalidOffset);
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

    /// Largest chunk segment `id` serves; 0 when that segment is not alive.
    pub fn bucket_size(&self, id: SegmentId) -> usize {
        let slot = &self.slots[id.index()];
        if !slot.pin() {
            return 0;
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

    /// Leaves every OS object in place, as a crash would; the process's mappings and the
    /// owner lock are released.
    pub fn abandon(mut self) {
        self.abandoned = true;
    }
}

mod teardown;

/// Test-only interleaving hooks of the owner.
#[cfg(test)]
pub(crate) mod hooks;

#[cfg(all(test, not(loom)))]
mod tests;
