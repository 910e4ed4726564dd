//! The peer side: opens a memory by name and maps its segments lazily, one per offset's
//! segment id, on first use.

use std::io::ErrorKind;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::{Mapping, page_size};
use crate::error::OsError;
use crate::header::{HeaderInfo, MAX_SEGMENTS, MgmtHeader, SegmentTrailer, segment_geometry};
use crate::slot::SlotCell;
use crate::{AccessMode, Config, OpenError, PointerOffset, SegmentId, SegmentRegion, name};

mod registration;

pub use registration::Registration;

/// How often a view re-reads a segment whose trailer disagrees with the header before it
/// calls the memory corrupted (the owner may be replacing the segment right now).
const REMAP_ATTEMPTS: usize = 3;

/// How often `register_slow` yields, and then sleeps for [`CONTENDED_PAUSE`], while a stale
/// mapping it must evict is still referenced by someone else, before it believes that the
/// reference is a registration and not another thread's momentary fast-path pin (which lets
/// go after a few loads, unless that thread was preempted). Bounds the error path to about
/// `CONTENDED_SLEEPS * CONTENDED_PAUSE`.
const CONTENDED_YIELDS: usize = 16;
const CONTENDED_SLEEPS: usize = 64;
const CONTENDED_PAUSE: Duration = Duration::from_micros(100);

/// How a backend's `open` failure reads to a view; `unsized_object` is what an object without
/// a size yet means (the owner is still creating it, or it was truncated).
fn open_error(action: &'static str, e: &std::io::Error, unsized_object: OpenError) -> OpenError {
    match e.kind() {
        ErrorKind::NotFound => OpenError::DoesNotExist,
        ErrorKind::PermissionDenied => OpenError::InsufficientPermissions,
        ErrorKind::UnexpectedEof => unsized_object,
        // Something other than a memory object under the name (FIFO, symbolic link,
        // directory), or an object too large to map: not what the owner made.
        ErrorKind::InvalidData => OpenError::Corrupted,
        _ => OpenError::InternalError(OsError::from_io(action, e)),
    }
}

/// Configures and opens a [`View`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct ViewBuilder {
    name: String,
    config: Config,
    timeout: Duration,
    allow_stale: bool,
}

/// How long an empty, unlocked management object may stay so before a view calls its creator
/// dead: a creator takes the lock right after creating the object (two system calls apart).
const LOCK_GRACE: Duration = Duration::from_millis(5);

impl ViewBuilder {
    /// The configuration (prefix, backend) the memory was created with. Default:
    /// [`Config::default`].
    pub fn config(mut self, config: &Config) -> Self {
        self.config = config.clone();
        self
    }

    /// How long `open` waits for an owner that is still initialising. Default: zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Opens a memory whose owner is gone as well, to read what it left (forensics, `resmem
    /// inspect`). Default: off, such an open fails with [`OpenError::OwnerDead`].
    pub fn allow_stale(mut self, allow: bool) -> Self {
        self.allow_stale = allow;
        self
    }

    /// Whether the management object exists, is empty and stays unlocked past the grace period
    /// a creator needs to lock it: its creator died before sizing it.
    fn creator_died(&self, mgmt_name: &str) -> bool {
        let backend = self.config.get_backend();
        if backend.is_locked(mgmt_name).unwrap_or(true) {
            return false;
        }
        std::thread::sleep(LOCK_GRACE);
        backend.is_locked(mgmt_name).is_ok_and(|locked| !locked)
    }

    /// Opens the memory's management segment and validates its header. Data segments are
    /// mapped later, by `register_and_translate_offset`. A memory whose owner is gone fails
    /// with [`OpenError::OwnerDead`] (decided by the owner lock, before the header is read)
    /// unless [`ViewBuilder::allow_stale`] is set.
    pub fn open(self, access: AccessMode) -> Result<View, OpenError> {
        name::validate(&self.name, &self.config)?;
        // A timeout too large to add to "now" (e.g. Duration::MAX) means no deadline.
        let deadline = Instant::now().checked_add(self.timeout);
        let mgmt_name = name::mgmt_name(&self.name, &self.config);
        let mut pause = Duration::from_micros(50);
        loop {
            let attempt = self
                .config
                .get_backend()
                .open(&mgmt_name, access)
                .map_err(|e| {
                    open_error(
                        "opening the management object",
                        &e,
                        OpenError::InitializationNotYetFinalized,
                    )
                })
                .and_then(|mgmt| {
                    // A sized object is locked by its creator, so a free lock means a dead
                    // owner, whatever the (possibly half-written or foreign) header says.
                    let stale = !self.allow_stale && !mgmt.is_locked_by_other().unwrap_or(true);
                    if mgmt.len() < crate::header::MGMT_SIZE {
                        // The owner sizes the object before anyone can map it: a shorter one
                        // was truncated or written by someone else.
                        return Err(if stale {
                            OpenError::OwnerDead
                        } else {
                            OpenError::Corrupted
                        });
                    }
                    // SAFETY: a mapping starts page aligned and this one holds MGMT_SIZE bytes
                    // (checked above); it lives until the end of the closure or in the View.
                    let header = unsafe { MgmtHeader::from_ptr(mgmt.as_ptr()) };
                    if stale {
                        return Err(match header.raw_created_under(self.config.get_prefix()) {
                            Some(false) => OpenError::DoesNotExist,
                            _ => OpenError::OwnerDead,
                        });
                    }
                    let info = header.validate(mgmt.len())?;
                    if info.prefix_hash != crate::header::prefix_hash(self.config.get_prefix()) {
                        // Another namespace's memory, reached through a nested prefix.
                        return Err(OpenError::DoesNotExist);
                    }
                    Ok((mgmt, info))
                });
            match attempt {
                Ok((mgmt, info)) => {
                    return Ok(View {
                        name: self.name,
                        config: self.config,
                        access,
                        mgmt,
                        info,
                        slots: (0..MAX_SEGMENTS).map(|_| SlotCell::default()).collect(),
                        newest: Mutex::new(None),
                    });
                }
                Err(OpenError::InitializationNotYetFinalized)
                    if deadline.is_none_or(|deadline| Instant::now() < deadline) =>
                {
                    if self.creator_died(&mgmt_name) {
                        return Err(OpenError::OwnerDead);
                    }
                    std::thread::sleep(deadline.map_or(pause, |deadline| {
                        pause.min(deadline.saturating_duration_since(Instant::now()))
                    }));
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(OpenError::InitializationNotYetFinalized) if self.creator_died(&mgmt_name) => {
                    return Err(OpenError::OwnerDead);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One mapped data segment.
#[derive(Debug)]
struct ViewSegment {
    mapping: Mapping,
    sequence: u64,
    payload_size: u64,
}

/// A peer's window onto a memory. Never removes anything.
///
/// Registering an offset pins its segment's mapping; a segment is unmapped when its last
/// registered offset is unregistered and a newer segment has been mapped since.
#[derive(Debug)]
pub struct View {
    name: String,
    config: Config,
    access: AccessMode,
    mgmt: Mapping,
    info: HeaderInfo,
    slots: Box<[SlotCell<ViewSegment>]>,
    /// The most recently created segment this view has mapped: `(id, sequence)`. Also
    /// serialises mapping.
    newest: Mutex<Option<(SegmentId, u64)>>,
}

impl View {
    /// A builder for a view onto the memory called `name`.
    pub fn builder(name: &str) -> ViewBuilder {
        ViewBuilder {
            name: name.to_owned(),
            config: Config::default(),
            timeout: Duration::ZERO,
            allow_stale: false,
        }
    }

    /// The memory's name, as given to [`View::builder`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration the view was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the view maps segments read-only or read-write.
    pub fn access_mode(&self) -> AccessMode {
        self.access
    }

    /// Facts about the memory read (and validated) when the view was opened.
    pub fn header_info(&self) -> HeaderInfo {
        self.info
    }

    /// Whether the owner process still holds the memory (its lock), even across pid reuse.
    pub fn is_owner_alive(&self) -> bool {
        self.mgmt.is_locked_by_other().unwrap_or(true)
    }

    fn header(&self) -> &MgmtHeader {
        // SAFETY: `open` checked that the mapping is at least MGMT_SIZE long; it is page
        // aligned and lives as long as self.
        unsafe { MgmtHeader::from_ptr(self.mgmt.as_ptr()) }
    }

    /// Number of segments this view has mapped.
    pub fn number_of_active_segments(&self) -> usize {
        self.slots.iter().filter(|s| s.is_occupied()).count()
    }

    /// Maps the segment of `offset` if needed, registers the offset and returns its local
    /// address.
    ///
    /// # Safety
    /// Every successful call must be matched by exactly one [`View::unregister_offset`] with
    /// the same offset, after the last use of the returned address.
    pub unsafe fn register_and_translate_offset(
        &self,
        offset: PointerOffset,
    ) -> Result<*const u8, OpenError> {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.register_and_translate_range(offset, 1) }
    }

    /// Like [`View::register_and_translate_offset`], but also checks that `len` bytes from
    /// `offset` lie inside the segment's payload (`InvalidOffset` otherwise); `len` 0 checks
    /// only that the offset is at most the payload's end.
    ///
    /// # Safety
    /// As for [`View::register_and_translate_offset`].
    pub unsafe fn register_and_translate_range(
        &self,
        offset: PointerOffset,
        len: u64,
    ) -> Result<*const u8, OpenError> {
        let id = offset.segment_id();
        let offset = RangeRequest {
            start: offset.offset(),
            len,
        };
        let slot = &self.slots[id.index()];
        if slot.pin() {
            // SAFETY: pinned above.
            let segment = unsafe { slot.get() };
            // Seqlock-style: a clear and republication of the id between the loads must not
            // make the old mapping pass for the new segment.
            if self.header().slot(id).live_sequence() == Some(segment.sequence) {
                return self.translate_pinned(id, segment, offset);
            }
            #[cfg(test)]
            hooks::dwell_while_pinned();
            let _ = slot.unpin(1, drop);
        }
        self.register_slow(id, offset)
    }

    fn translate_pinned(
        &self,
        id: SegmentId,
        segment: &ViewSegment,
        range: RangeRequest,
    ) -> Result<*const u8, OpenError> {
        if range.fits(segment.payload_size) {
            Ok(segment.mapping.as_ptr().wrapping_add(range.start as usize) as *const u8)
        } else {
            let _ = self.slots[id.index()].unpin(1, drop);
            Err(OpenError::InvalidOffset)
        }
    }

    fn register_slow(&self, id: SegmentId, offset: RangeRequest) -> Result<*const u8, OpenError> {
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &self.slots[id.index()];
        let record = self.header().slot(id);
        let mut attempts = 0;
        let mut contended = 0;
        loop {
            if slot.pin() {
                // SAFETY: pinned above.
                let segment = unsafe { slot.get() };
                if record.live_sequence() == Some(segment.sequence) {
                    return self.translate_pinned(id, segment, offset);
                }
                // The owner released (and maybe replaced) the segment under this id: our
                // mapping is stale and must go before the id can be mapped again.
                let only_us = slot.pins() == 1;
                let _ = slot.unpin(1, drop);
                if only_us && slot.evict_unreferenced(drop) {
                    continue;
                }
                // Someone else references the stale mapping: a registration of the old
                // segment, or another thread's fast path that pinned it for a moment to
                // compare sequences and is about to let go. Only a lasting reference is a
                // registration; wait a bounded while for a momentary one to go.
                contended += 1;
                if contended <= CONTENDED_YIELDS {
                    std::thread::yield_now();
                    continue;
                }
                if contended <= CONTENDED_YIELDS + CONTENDED_SLEEPS {
                    // Not under the mapping lock: other ids of this view map meanwhile.
                    drop(newest);
                    std::thread::sleep(CONTENDED_PAUSE);
                    newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                // Replaced (or released) while offsets of the old segment are registered.
                return Err(if record.is_live() {
                    OpenError::SegmentReplaced
                } else {
                    OpenError::InvalidOffset
                });
            }
            if slot.is_busy() {
                // Another thread is unmapping it after its last unregister.
                std::thread::yield_now();
                continue;
            }
            if slot.is_occupied() {
                std::thread::yield_now();
                continue;
            }
            let info = record.read().ok_or(OpenError::InvalidOffset)?;
            if !offset.fits(info.layout.payload_size as u64) {
                return Err(OpenError::InvalidOffset);
            }
            let (trailer_at, total) = segment_geometry(info.layout.payload_size, page_size())
                .ok_or(OpenError::Corrupted)?;
            let mut mapping = self
                .config
                .get_backend()
                .open(
                    &name::segment_name(&self.name, id, &self.config),
                    self.access,
                )
                .map_err(|e| open_error("opening a data segment", &e, OpenError::Corrupted))?;
            mapping.close_handle();
            let verified = mapping.len() >= total && {
                // SAFETY: trailer_at is 64-aligned and trailer_at + 64 <= total <= len.
                let trailer = unsafe { SegmentTrailer::from_ptr(mapping.as_ptr().add(trailer_at)) };
                let memory_id = trailer.memory_id();
                if memory_id != 0 && memory_id != self.info.memory_id {
                    // The name now belongs to another memory: ours was removed.
                    return Err(OpenError::DoesNotExist);
                }
                trailer.matches(
                    self.info.memory_id,
                    id,
                    info.sequence,
                    info.layout.payload_size,
                )
            };
            if !verified {
                // Either the owner swapped the segment between our header read and the open,
                // or somebody scribbled over it.
                attempts += 1;
                if attempts >= REMAP_ATTEMPTS {
                    return Err(OpenError::Corrupted);
                }
                continue;
            }
            let is_newest = newest.is_none_or(|(_, seq)| info.sequence > seq);
            let segment = ViewSegment {
                mapping,
                sequence: info.sequence,
                payload_size: info.layout.payload_size as u64,
            };
            let base = segment.mapping.as_ptr();
            if slot.install(segment, !is_newest, 1).is_err() {
                // Only this function installs, under the lock, after seeing the slot free.
                return Err(OpenError::InternalError(OsError::unexplained(
                    "installing a mapped segment in a slot that was just free",
                )));
            }
            if is_newest
                && let Some((previous, _)) = newest.replace((id, info.sequence))
                && previous != id
            {
                self.slots[previous.index()].retire(drop);
            }
            return Ok(base.wrapping_add(offset.start as usize) as *const u8);
        }
    }

    /// Unregisters an offset registered before; unmaps its segment if that was the last
    /// registration and a newer segment is mapped.
    ///
    /// Registrations are counted per segment, not per offset (tracking each one would cost
    /// the hot path): unregistering an offset that is not registered drops *another*
    /// registration's reference to its segment, which may then be unmapped while that
    /// registration still uses it. Prefer a guard that unregisters exactly once (the host's
    /// checked table does so for guests).
    ///
    /// # Safety
    /// - `offset` must have been registered through this view (a successful
    ///   [`View::register_and_translate_offset`]) and not unregistered since; each successful
    ///   registration is unregistered at most once.
    /// - The address returned for `offset` must not be used afterwards (unless it is still
    ///   registered by another, not yet unregistered, registration).
    ///
    /// ```
    /// # use resmem::{AccessMode, Config, Memory, ProcessLocal, View};
    /// # let config = Config::default().prefix("doc_unregister_").backend(ProcessLocal);
    /// # let memory = Memory::builder("m").config(&config).create().unwrap();
    /// # let chunk = memory.allocate(std::alloc::Layout::new::<u8>()).unwrap();
    /// let view = View::builder("m").config(&config).open(AccessMode::Read)?;
    /// // SAFETY: unregistered exactly once below, after the last use of `ptr`.
    /// let ptr = unsafe { view.register_and_translate_offset(chunk.offset) }?;
    /// // SAFETY: a registered chunk of at least one byte.
    /// let _byte = unsafe { ptr.read_volatile() };
    /// // SAFETY: registered above and not unregistered since; `ptr` is not used any more.
    /// unsafe { view.unregister_offset(chunk.offset) };
    /// # Ok::<(), resmem::OpenError>(())
    /// ```
    pub unsafe fn unregister_offset(&self, offset: PointerOffset) {
        // The caller holds the registration (the contract), so one atomic subtraction
        // instead of the checked compare-exchange loop of `unpin`.
        self.slots[offset.segment_id().index()].unpin_held(drop);
    }

    /// Leaves everything in place (a view never removes anything) and releases its mappings.
    pub fn abandon(self) {}
}

impl View {
    /// Payload bytes of segment `id` if this view has it mapped: a registered offset `o` may be
    /// accessed up to `payload_size - o.offset()` bytes.
    pub fn segment_payload_size(&self, id: SegmentId) -> Option<usize> {
        let slot = &self.slots[id.index()];
        if !slot.pin() {
            return None;
        }
        // SAFETY: pinned above.
        let size = unsafe { slot.get() }.payload_size as usize;
        let _ = slot.unpin(1, drop);
        Some(size)
    }

    /// Where segment `id` is mapped in this process, if this view has it mapped.
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
            payload_size: segment.payload_size as usize,
            sequence: segment.sequence,
            writable: segment.mapping.is_writable(),
        };
        let _ = slot.unpin(1, drop);
        Some(region)
    }

    /// The live segments as the owner's header describes them now (validated records only).
    pub fn segment_records(&self) -> Vec<(SegmentId, crate::header::SlotInfo)> {
        (0..=u8::MAX)
            .map(SegmentId::new)
            .filter_map(|id| self.header().slot(id).read().map(|info| (id, info)))
            .collect()
    }

    /// The id of the segment the owner currently allocates from, as its header says now.
    pub fn owner_current_segment(&self) -> Option<SegmentId> {
        self.header()
            .validate(self.mgmt.len())
            .ok()
            .map(|info| info.current_segment)
    }
}

/// Test-only timing hooks of the view.
#[cfg(test)]
pub(crate) mod hooks {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    thread_local! {
        static DWELL: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// Makes this thread's fast path keep a stale mapping pinned for `dwell` (busy) before it
    /// lets go: widens the window in which another thread's slow path sees that pin.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn set_dwell_while_pinned(dwell: Duration) {
        DWELL.with(|d| d.set(dwell));
    }

    pub(super) fn dwell_while_pinned() {
        let dwell = DWELL.with(Cell::get);
        if !dwell.is_zero() {
            let until = Instant::now() + dwell;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}

/// Bytes a registration asks for: `start..start + len` must lie in the payload.
#[derive(Debug, Clone, Copy)]
struct RangeRequest {
    start: u64,
    len: u64,
}

impl RangeRequest {
    fn fits(self, payload_size: u64) -> bool {
        self.start < payload_size
            && self
                .start
                .checked_add(self.len)
                .is_some_and(|end| end <= payload_size)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
