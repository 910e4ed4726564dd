//! The management segment's header and the trailer at the end of every data segment.
//!
//! Only the layout constants, [`segment_geometry`] and the validated facts ([`HeaderInfo`],
//! [`SlotInfo`]) are public: the types that write the header and trailers are the crate's own.
//!
//! Everything here lives in shared memory that any process with write access can scribble
//! over, so every field is an atomic (no torn reads are UB) and every value read from it is
//! validated before use. The owner only ever *writes* the header: its own decisions come from
//! private state, so a hostile peer can mislead views and tools, never the owner.

use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::allocator::{AllocatorKind, MAX_SEGMENT_SIZE, SegmentLayout};
use crate::{AllocationStrategy, OpenError, SegmentId};

/// `RESMEM` + "MG".
pub const MAGIC: u64 = u64::from_le_bytes(*b"RESMEMMG");
/// `RESMEM` + "SG".
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"RESMEMSG");
/// Bumped on every incompatible change of these structures.
pub const LAYOUT_VERSION: u32 = 1;
/// Number of segment ids.
pub const MAX_SEGMENTS: usize = 256;

/// Written last by the owner: an arbitrary, unlikely pattern so that garbage does not look
/// ready. `0` means "still initialising".
const READY: u32 = 0x5EAD_1E55;

const SLOT_FREE: u32 = 0;
const SLOT_LIVE: u32 = 1;

/// One data segment as the owner last published it.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(crate) struct SlotRecord {
    state: AtomicU32,
    _reserved: AtomicU32,
    /// Creation number of the segment occupying the slot; unique over the memory's life.
    sequence: AtomicU64,
    payload_size: AtomicU64,
    chunk_size: AtomicU64,
    chunk_align: AtomicU64,
    chunks: AtomicU64,
    chunks_in_use: AtomicU64,
}

/// The management segment: the memory's immutable facts plus one [`SlotRecord`] per segment
/// id. Only the owner writes it; readers validate everything they take from it.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct MgmtHeader {
    magic: AtomicU64,
    version: AtomicU32,
    header_size: AtomicU32,
    state: AtomicU32,
    owner_pid: AtomicU32,
    allocator: AtomicU32,
    strategy: AtomicU32,
    max_segments: AtomicU32,
    current_segment: AtomicU32,
    /// Random per memory: tells this memory's segments from those of a later memory that was
    /// created under the same name after this one was removed.
    memory_id: AtomicU64,
    /// FNV-1a over the immutable fields.
    checksum: AtomicU64,
    /// FNV-1a of the prefix (namespace) the memory was created under: with nested prefixes
    /// (`P` and `Pinner_`) one OS name can be spelled two ways, and a view opened through the
    /// other spelling must not reach the memory.
    prefix_hash: AtomicU64,
    slots: [SlotRecord; MAX_SEGMENTS],
}

/// Bytes of the management segment.
pub const MGMT_SIZE: usize = size_of::<MgmtHeader>();

/// Immutable facts about a memory, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Random per memory; segment trailers must carry the same id.
    pub memory_id: u64,
    /// [`prefix_hash`] of the prefix the memory was created under.
    pub prefix_hash: u64,
    /// Pid of the owner at creation; informational (liveness is the owner's lock).
    pub owner_pid: u32,
    /// The allocator every data segment uses.
    pub allocator: AllocatorKind,
    /// How the owner sizes new segments.
    pub strategy: AllocationStrategy,
    /// The segment new chunks are allocated from; live when read.
    pub current_segment: SegmentId,
}

/// A data segment as published in the header, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// Creation number of the segment; with the id it names one object over the memory's life.
    pub sequence: u64,
    /// Chunk and payload sizes of the segment, checked for plausibility.
    pub layout: SegmentLayout,
    /// Chunks allocated when the owner last updated the count; informational only.
    pub chunks_in_use: u64,
}

fn fnv1a_bytes(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn fnv1a(words: &[u64]) -> u64 {
    fnv1a_bytes(words.iter().flat_map(|w| w.to_le_bytes()))
}

/// The hash of a prefix as the header records it.
pub fn prefix_hash(prefix: &str) -> u64 {
    fnv1a_bytes(prefix.bytes())
}

impl MgmtHeader {
    /// Interprets the start of a mapping as the header.
    ///
    /// # Safety
    /// `ptr` must be 64-byte aligned, valid for `MGMT_SIZE` bytes and stay mapped for `'a`.
    pub(crate) unsafe fn from_ptr<'a>(ptr: *const u8) -> &'a Self {
        // SAFETY: alignment and size are the caller's promise; every field is an atomic or an
        // array of atomics, for which any bit pattern is valid, so foreign writes are no UB.
        unsafe { &*(ptr as *const Self) }
    }

    fn immutable_words(&self) -> [u64; 6] {
        [
            self.magic.load(Ordering::Relaxed),
            self.memory_id.load(Ordering::Relaxed),
            self.prefix_hash.load(Ordering::Relaxed),
            (u64::from(self.version.load(Ordering::Relaxed)) << 32)
                | u64::from(self.header_size.load(Ordering::Relaxed)),
            (u64::from(self.owner_pid.load(Ordering::Relaxed)) << 32)
                | u64::from(self.max_segments.load(Ordering::Relaxed)),
            (u64::from(self.allocator.load(Ordering::Relaxed)) << 32)
                | u64::from(self.strategy.load(Ordering::Relaxed)),
        ]
    }

    /// Writes the immutable part; the memory is not yet visible as ready.
    pub(crate) fn init(
        &self,
        memory_id: u64,
        prefix: &str,
        owner_pid: u32,
        allocator: AllocatorKind,
        strategy: AllocationStrategy,
    ) {
        self.state.store(0, Ordering::Relaxed);
        self.magic.store(MAGIC, Ordering::Relaxed);
        self.memory_id.store(memory_id, Ordering::Relaxed);
        self.prefix_hash
            .store(prefix_hash(prefix), Ordering::Relaxed);
        self.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.header_size.store(MGMT_SIZE as u32, Ordering::Relaxed);
        self.owner_pid.store(owner_pid, Ordering::Relaxed);
        self.allocator.store(allocator.to_raw(), Ordering::Relaxed);
        self.strategy.store(strategy.to_raw(), Ordering::Relaxed);
        self.max_segments
            .store(MAX_SEGMENTS as u32, Ordering::Relaxed);
        self.checksum
            .store(fnv1a(&self.immutable_words()), Ordering::Relaxed);
    }

    /// Publishes the header: views may use the memory from now on.
    pub(crate) fn set_ready(&self) {
        self.state.store(READY, Ordering::Release);
    }

    /// Publishes `id` as the segment new chunks come from; it must already be live.
    pub(crate) fn set_current(&self, id: SegmentId) {
        self.current_segment
            .store(u32::from(id.value()), Ordering::Release);
    }

    /// Whether the memory was created under `prefix`, as written, without validation: `None`
    /// when the header does not even carry the magic.
    pub(crate) fn raw_created_under(&self, prefix: &str) -> Option<bool> {
        (self.magic.load(Ordering::Relaxed) == MAGIC)
            .then(|| self.prefix_hash.load(Ordering::Relaxed) == prefix_hash(prefix))
    }

    /// The record of segment `id`.
    pub(crate) fn slot(&self, id: SegmentId) -> &SlotRecord {
        &self.slots[id.index()]
    }

    /// Reads and validates the immutable part and the current segment.
    pub(crate) fn validate(&self, mapped_len: usize) -> Result<HeaderInfo, OpenError> {
        if mapped_len < MGMT_SIZE {
            // The header is written into a mapping of full size; a shorter object was
            // truncated or written by someone else.
            return Err(if mapped_len == 0 {
                OpenError::InitializationNotYetFinalized
            } else {
                OpenError::Corrupted
            });
        }
        match self.state.load(Ordering::Acquire) {
            READY => {}
            0 => return Err(OpenError::InitializationNotYetFinalized),
            _ => return Err(OpenError::Corrupted),
        }
        if self.magic.load(Ordering::Relaxed) != MAGIC {
            return Err(OpenError::Corrupted);
        }
        if self.version.load(Ordering::Relaxed) != LAYOUT_VERSION {
            return Err(OpenError::IncompatibleVersion);
        }
        if self.header_size.load(Ordering::Relaxed) as usize != MGMT_SIZE
            || self.max_segments.load(Ordering::Relaxed) as usize != MAX_SEGMENTS
            || self.checksum.load(Ordering::Relaxed) != fnv1a(&self.immutable_words())
        {
            return Err(OpenError::Corrupted);
        }
        let allocator = AllocatorKind::from_raw(self.allocator.load(Ordering::Relaxed))
            .ok_or(OpenError::Corrupted)?;
        let strategy = AllocationStrategy::from_raw(self.strategy.load(Ordering::Relaxed))
            .ok_or(OpenError::Corrupted)?;
        let current_segment = self.live_current_segment()?;
        Ok(HeaderInfo {
            memory_id: self.memory_id.load(Ordering::Relaxed),
            prefix_hash: self.prefix_hash.load(Ordering::Relaxed),
            owner_pid: self.owner_pid.load(Ordering::Relaxed),
            allocator,
            strategy,
            current_segment,
        })
    }
}

impl MgmtHeader {
    /// The current segment, which must be live. The owner publishes a new current segment
    /// before it releases the old one, so a reader that saw the old id just before its release
    /// finds the new one on a second look; only a persistently dead id is corruption.
    fn live_current_segment(&self) -> Result<SegmentId, OpenError> {
        const ATTEMPTS: usize = 16;
        for attempt in 0..ATTEMPTS {
            let current = u8::try_from(self.current_segment.load(Ordering::Acquire))
                .map_err(|_| OpenError::Corrupted)?;
            let id = SegmentId::new(current);
            if self.slot(id).read().is_some() {
                return Ok(id);
            }
            if attempt > ATTEMPTS / 2 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        Err(OpenError::Corrupted)
    }
}

impl SlotRecord {
    /// Publishes a live segment of creation `sequence` with `layout`; the fields are written
    /// before the state, so a reader that sees it live sees them too.
    pub(crate) fn publish(&self, sequence: u64, layout: &SegmentLayout) {
        self.sequence.store(sequence, Ordering::Relaxed);
        self.payload_size
            .store(layout.payload_size as u64, Ordering::Relaxed);
        self.chunk_size
            .store(layout.chunk_size as u64, Ordering::Relaxed);
        self.chunk_align
            .store(layout.chunk_align as u64, Ordering::Relaxed);
        self.chunks.store(layout.chunks as u64, Ordering::Relaxed);
        self.chunks_in_use.store(0, Ordering::Relaxed);
        self.state.store(SLOT_LIVE, Ordering::Release);
    }

    /// Marks the slot free; readers stop mapping its segment.
    pub(crate) fn clear(&self) {
        self.state.store(SLOT_FREE, Ordering::Release);
    }

    /// Informational; views and tools never rely on it.
    pub(crate) fn set_chunks_in_use(&self, n: usize) {
        self.chunks_in_use.store(n as u64, Ordering::Relaxed);
    }

    /// Creation number of the segment last published here, unvalidated.
    #[cfg(test)]
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    /// The creation number of the segment the record describes, if it is live, read
    /// seqlock-style: sequence, state, sequence again, accepted only when both sequence reads
    /// agree. Reading the sequence only before the state would accept an old sequence when the
    /// owner clears and republishes the id in between (the state then reads live again).
    ///
    /// Why the second read suffices: `publish` stores the sequence before its `Release` store
    /// of the state, and the state is loaded with `Acquire`; a state load that sees a newer
    /// publication therefore makes the second sequence load see that publication's (unique,
    /// never reused) sequence or a later one, which differs from the first read.
    #[inline]
    pub(crate) fn live_sequence(&self) -> Option<u64> {
        let first = self.sequence.load(Ordering::Acquire);
        #[cfg(test)]
        hooks::between_sequence_and_state(self);
        let live = self.state.load(Ordering::Acquire) == SLOT_LIVE;
        // Ordered after the Acquire load above; Relaxed would do, Acquire costs nothing on
        // the targets that matter and keeps the reasoning local.
        let second = self.sequence.load(Ordering::Acquire);
        (live && first == second).then_some(first)
    }

    /// Whether the slot holds a live segment, without validating its values.
    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) == SLOT_LIVE
    }

    /// The published segment, or `None` when the slot is free or holds impossible values.
    pub(crate) fn read(&self) -> Option<SlotInfo> {
        if self.state.load(Ordering::Acquire) != SLOT_LIVE {
            return None;
        }
        let to_usize = |v: &AtomicU64| usize::try_from(v.load(Ordering::Relaxed)).ok();
        let payload_size = to_usize(&self.payload_size)?;
        let chunk_size = to_usize(&self.chunk_size)?;
        let chunk_align = to_usize(&self.chunk_align)?;
        let chunks = to_usize(&self.chunks)?;
        if payload_size == 0
            || payload_size > MAX_SEGMENT_SIZE
            || chunk_size == 0
            || chunk_size > payload_size
            || !chunk_align.is_power_of_two()
        {
            return None;
        }
        Some(SlotInfo {
            sequence: self.sequence.load(Ordering::Relaxed),
            layout: SegmentLayout {
                chunk_size,
                chunk_align,
                chunks,
                payload_size,
            },
            chunks_in_use: self.chunks_in_use.load(Ordering::Relaxed),
        })
    }
}

/// Written at the end of each data segment so that a process mapping it can verify that
/// the object it opened is the one the header describes (ids are reused).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SegmentTrailer {
    magic: AtomicU64,
    memory_id: AtomicU64,
    sequence: AtomicU64,
    payload_size: AtomicU64,
    segment_id: AtomicU32,
    _reserved: AtomicU32,
}

/// Bytes of the trailer at the end of every data segment.
pub const TRAILER_SIZE: usize = size_of::<SegmentTrailer>();

/// Where the trailer starts and how large the whole object is, for a payload size.
pub fn segment_geometry(payload_size: usize, page: usize) -> Option<(usize, usize)> {
    let trailer_at = payload_size.checked_next_multiple_of(TRAILER_SIZE)?;
    let total = trailer_at
        .checked_add(TRAILER_SIZE)?
        .checked_next_multiple_of(page)?;
    Some((trailer_at, total))
}

impl SegmentTrailer {
    /// # Safety
    /// `ptr` must be 64-byte aligned, valid for `TRAILER_SIZE` bytes and mapped for `'a`.
    pub(crate) unsafe fn from_ptr<'a>(ptr: *const u8) -> &'a Self {
        // SAFETY: the caller's promise; all fields are atomics, valid for any bit pattern.
        unsafe { &*(ptr as *const Self) }
    }

    /// Stamps the trailer of segment `id`, creation `sequence` of `memory_id`; the magic is
    /// written last, so a reader that sees it sees the other fields.
    pub(crate) fn write(&self, memory_id: u64, id: SegmentId, sequence: u64, payload_size: usize) {
        self.memory_id.store(memory_id, Ordering::Relaxed);
        self.sequence.store(sequence, Ordering::Relaxed);
        self.payload_size
            .store(payload_size as u64, Ordering::Relaxed);
        self.segment_id
            .store(u32::from(id.value()), Ordering::Relaxed);
        self.magic.store(SEGMENT_MAGIC, Ordering::Release);
    }

    /// The memory this segment belongs to, as written (0 when the trailer is not valid).
    pub(crate) fn memory_id(&self) -> u64 {
        if self.magic.load(Ordering::Acquire) == SEGMENT_MAGIC {
            self.memory_id.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether the trailer says this is segment `id` of creation `sequence` of `memory_id`.
    pub(crate) fn matches(
        &self,
        memory_id: u64,
        id: SegmentId,
        sequence: u64,
        payload_size: usize,
    ) -> bool {
        self.magic.load(Ordering::Acquire) == SEGMENT_MAGIC
            && self.memory_id.load(Ordering::Relaxed) == memory_id
            && self.sequence.load(Ordering::Relaxed) == sequence
            && self.payload_size.load(Ordering::Relaxed) == payload_size as u64
            && self.segment_id.load(Ordering::Relaxed) == u32::from(id.value())
    }
}

/// Test-only interleaving hooks: a closure run (once) between two loads of a record, so a
/// unit test can make "the owner" act at exactly that point.
#[cfg(test)]
pub(crate) mod hooks {
    use super::SlotRecord;
    use std::cell::RefCell;

    type Hook = Box<dyn FnOnce(&SlotRecord)>;

    thread_local! {
        static BETWEEN_SEQUENCE_AND_STATE: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Runs `hook` the next time this thread reads a record's sequence in `live_sequence`,
    /// right after the first sequence load and before the state load.
    pub(crate) fn set_between_sequence_and_state(hook: impl FnOnce(&SlotRecord) + 'static) {
        BETWEEN_SEQUENCE_AND_STATE.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
    }

    pub(super) fn between_sequence_and_state(record: &SlotRecord) {
        if let Some(hook) = BETWEEN_SEQUENCE_AND_STATE.with(|h| h.borrow_mut().take()) {
            hook(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> SegmentLayout {
        SegmentLayout {
            chunk_size: 64,
            chunk_align: 8,
            chunks: 4,
            payload_size: 256,
        }
    }

    #[test]
    fn live_sequence_reads_published_records() {
        let record = SlotRecord::default();
        assert_eq!(record.live_sequence(), None);
        record.publish(7, &layout());
        assert_eq!(record.live_sequence(), Some(7));
        record.clear();
        assert_eq!(record.live_sequence(), None);
    }

    /// The owner clears the id and republishes it with a new creation number between the
    /// reader's sequence load and its state load: the old sequence must not be reported live.
    #[test]
    fn live_sequence_rejects_a_republication_between_its_loads() {
        let record = SlotRecord::default();
        record.publish(7, &layout());
        hooks::set_between_sequence_and_state(|record| {
            record.clear();
            record.publish(8, &layout());
        });
        assert_eq!(record.live_sequence(), None);
        assert_eq!(record.sequence(), 8);
        // Without interference the new publication reads as live.
        assert_eq!(record.live_sequence(), Some(8));
    }

    #[test]
    fn layout_is_stable() {
        assert_eq!(size_of::<SlotRecord>(), 64);
        assert_eq!(TRAILER_SIZE, 64);
        assert_eq!(MGMT_SIZE, 64 + 256 * 64);
    }

    #[test]
    fn geometry_leaves_room_for_the_trailer() {
        assert_eq!(segment_geometry(1, 4096), Some((64, 4096)));
        assert_eq!(segment_geometry(4096, 4096), Some((4096, 8192)));
        assert_eq!(segment_geometry(4033, 4096), Some((4096, 8192)));
        assert_eq!(segment_geometry(4032, 4096), Some((4032, 4096)));
        assert_eq!(segment_geometry(usize::MAX, 4096), None);
    }
}
