//! The service's shared control object: a versioned, validated header followed by one slot per
//! subscriber. A slot holds the subscriber's submission queue (entries the publisher sends)
//! and completion queue (entries the subscriber returns), each index on its own cache line.
//!
//! ```text
//!  ServiceHeader   immutable facts (line 0), membership counter and publisher waiters (line 1)
//!  slot 0          control line | sub write | sub read | comp write | comp read | entries...
//!  slot 1 ...
//! ```
//!
//! Every field is an atomic, so any bytes a hostile peer writes are valid values; readers
//! take only the immutable facts, once, and check every index and entry they use.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::ChannelError;
use super::notify::Bell;
use super::queue::{Entry, QueueRef};
use crate::header::prefix_hash;

/// "RESMEMCH".
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"RESMEMCH");
/// Layout version of the control object; a subscriber refuses any other.
pub const VERSION: u32 = 2;
/// Cache line (with the adjacent-line prefetcher in mind).
const LINE: usize = 128;
/// Upper bounds of the builder values, so every size below fits comfortably.
pub(crate) const MAX_SUBSCRIBERS: usize = 4096;
pub(crate) const MAX_QUEUE: usize = 1 << 16;

/// Slot states (low byte; the upper bits carry the occupant's generation).
pub(crate) const SLOT_FREE: u64 = 0;
pub(crate) const SLOT_ACTIVE: u64 = 2;
pub(crate) const SLOT_LEFT: u64 = 3;

/// Header of the control object.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ServiceHeader {
    magic: AtomicU64,
    version: AtomicU32,
    overflow: AtomicU32,
    max_subscribers: AtomicU32,
    buffer_size: AtomicU32,
    completion_size: AtomicU32,
    max_borrowed: AtomicU32,
    slot_stride: AtomicU64,
    total_size: AtomicU64,
    prefix_hash: AtomicU64,
    /// The data memory's id: binds this control object to the memory of the same name.
    memory_id: AtomicU64,
    /// Random per publisher: names its wake-up socket and its subscribers' lock objects.
    epoch: AtomicU64,
    publisher_pid: AtomicU32,
    ready: AtomicU32,
    /// Set by a publisher that dropped normally (a crashed one leaves it 0).
    pub(crate) closed: AtomicU32,
    /// What changes while the service runs, on its own cache line.
    pub(crate) live: HeaderLive,
}

/// The mutable line of the header.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct HeaderLive {
    /// Bumped by every subscriber that joins or leaves (or asks for a dead one's slot).
    pub(crate) joins: AtomicU64,
    /// Publisher threads waiting on the socket (`wait_for_subscribers`; a `send` blocked
    /// under `Overflow::Block` waits on `publisher_bell`).
    pub(crate) publisher_waiters: AtomicU32,
    /// Publisher threads waiting on `publisher_bell` (the futex of `notify::Bell`).
    pub(crate) publisher_bell_waiters: AtomicU32,
    /// Returned offsets the publisher refused (statistics, written by the publisher).
    pub(crate) violations: AtomicU64,
    /// Samples sent (statistics, written by the publisher).
    pub(crate) sent: AtomicU64,
    /// The futex word subscribers ring for a blocked publisher.
    pub(crate) publisher_bell: AtomicU32,
}

/// The subscriber-written control line of a slot.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct SlotControl {
    /// `SLOT_*` in the low byte, occupant generation above.
    pub(crate) state: AtomicU64,
    /// Names the occupant's wake-up socket.
    pub(crate) nonce: AtomicU64,
    pub(crate) pid: AtomicU32,
    /// Occupant threads waiting for data (the publisher wakes only when this is non-zero).
    pub(crate) waiters: AtomicU32,
    /// Occupant threads waiting for data on `bell` (the futex of `notify::Bell`).
    pub(crate) bell_waiters: AtomicU32,
    /// The futex word the publisher rings for this slot's occupant.
    pub(crate) bell: AtomicU32,
}

#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Index(pub(crate) AtomicU64);

/// The submission queue's consumer index, with the statistics the consumer updates as often
/// (kept off the control line, which the publisher reads on every send).
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ConsumerLine {
    pub(crate) read: AtomicU64,
    /// Samples the occupant holds (statistics).
    pub(crate) borrowed: AtomicU32,
}

/// Fixed part of a slot; the entries follow.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlotFixed {
    pub(crate) control: SlotControl,
    pub(crate) sub_write: Index,
    pub(crate) sub_read: ConsumerLine,
    pub(crate) comp_write: Index,
    pub(crate) comp_read: Index,
}

const HEADER_SIZE: usize = size_of::<ServiceHeader>();

/// The page size the layout rounds to: the header and every slot start on a page boundary,
/// so that a host can map one subscriber's queues (and nothing else) into a guest's window.
fn layout_page() -> usize {
    crate::backend::page_size().max(LINE)
}

/// Byte offsets of a slot's indices from the slot's start (for tools and tests that inspect
/// or, as hostile peers, scribble a control object).
pub mod offsets {
    /// The slot's state word (`u64`).
    pub const STATE: usize = 0;
    /// Submission queue producer index (`u64`, written by the publisher).
    pub const SUB_WRITE: usize = 128;
    /// Submission queue consumer index (`u64`, the subscriber and a drop-oldest publisher).
    pub const SUB_READ: usize = 256;
    /// Completion queue producer index (`u64`, written by the subscriber).
    pub const COMP_WRITE: usize = 384;
    /// Completion queue consumer index (`u64`, written by the publisher).
    pub const COMP_READ: usize = 512;
    /// First submission entry (16 bytes each: offset `u64`, length | sample index << 40);
    /// the completion entries (offset `u64`, sample index `u64`) follow the
    /// `submission_slots` submission entries.
    pub const ENTRIES: usize = 640;
}

/// Sizes of a control object, derived from the builder values only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Subscriber slots.
    pub max_subscribers: usize,
    /// Submission queue capacity per subscriber.
    pub buffer_size: usize,
    /// Most samples a subscriber holds after receiving them.
    pub max_borrowed: usize,
    /// Completion queue capacity: everything a subscriber can hold at once.
    pub completion_size: usize,
    /// Entries stored for the submission queue (`buffer_size` rounded up to a power of two).
    pub submission_slots: usize,
    /// Entries stored for the completion queue (`completion_size` rounded up likewise).
    pub completion_slots: usize,
    /// Bytes per slot (a multiple of the page size).
    pub slot_stride: usize,
    /// Bytes of the whole control object.
    pub total_size: usize,
}

impl Geometry {
    /// The sizes of a control object for these builder values (`InvalidConfig` when one is
    /// out of range).
    pub fn new(
        max_subscribers: usize,
        buffer_size: usize,
        max_borrowed: usize,
    ) -> Result<Self, ChannelError> {
        if !(1..=MAX_SUBSCRIBERS).contains(&max_subscribers) {
            return Err(ChannelError::InvalidConfig(
                "max_subscribers must be 1..=4096",
            ));
        }
        if !(1..=MAX_QUEUE).contains(&buffer_size) {
            return Err(ChannelError::InvalidConfig("buffer_size must be 1..=65536"));
        }
        if !(1..=MAX_QUEUE).contains(&max_borrowed) {
            return Err(ChannelError::InvalidConfig(
                "max_borrowed must be 1..=65536",
            ));
        }
        let completion_size = buffer_size + max_borrowed;
        let submission_slots = buffer_size.next_power_of_two();
        let completion_slots = completion_size.next_power_of_two();
        let slot_stride = (size_of::<SlotFixed>()
            + (submission_slots + completion_slots) * size_of::<Entry>())
        .next_multiple_of(layout_page());
        let total_size =
            HEADER_SIZE.next_multiple_of(layout_page()) + max_subscribers * slot_stride;
        Ok(Self {
            max_subscribers,
            buffer_size,
            max_borrowed,
            completion_size,
            submission_slots,
            completion_slots,
            slot_stride,
            total_size,
        })
    }
}

impl Geometry {
    /// Where slot `k` starts in the control object (page aligned).
    pub fn slot_offset(&self, k: usize) -> usize {
        HEADER_SIZE.next_multiple_of(layout_page()) + k * self.slot_stride
    }
}

/// Immutable facts of a service, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Sizes.
    pub geometry: Geometry,
    /// Overflow policy code (0 drop oldest, 1 drop newest, 2 block).
    pub overflow: u32,
    /// Id of the service's memory.
    pub memory_id: u64,
    /// Random per publisher.
    pub epoch: u64,
    /// The publisher's pid at creation (informational).
    pub publisher_pid: u32,
}

/// A mapped control object. Holds no lifetime: the owner of the mapping keeps it alive (and
/// it is not `Clone`, so it cannot outlive that owner by a copy).
#[derive(Debug)]
pub(crate) struct Control {
    base: *mut u8,
    geometry: Geometry,
}

// SAFETY: Control is an address of shared memory made of atomics only; every access is atomic.
unsafe impl Send for Control {}
// SAFETY: as for Send.
unsafe impl Sync for Control {}

impl Control {
    /// # Safety
    /// `base` must be 128-byte aligned (page aligned mappings are), valid for
    /// `geometry.total_size` bytes and stay mapped while the value is used.
    pub(crate) unsafe fn new(base: *mut u8, geometry: Geometry) -> Self {
        Self { base, geometry }
    }

    pub(crate) fn header(&self) -> &ServiceHeader {
        // SAFETY: the mapping starts with the header (Control::new's contract); all fields are
        // atomics, valid for any bytes.
        unsafe { &*(self.base as *const ServiceHeader) }
    }

    fn slot_base(&self, k: usize) -> *mut u8 {
        assert!(k < self.geometry.max_subscribers, "slot index out of range");
        self.base.wrapping_add(self.geometry.slot_offset(k))
    }

    pub(crate) fn slot(&self, k: usize) -> &SlotFixed {
        // SAFETY: slot k lies inside total_size (k < max_subscribers, checked above); a slot
        // starts at a multiple of 128 and is made of atomics.
        unsafe { &*(self.slot_base(k) as *const SlotFixed) }
    }

    /// The bell the publisher rings for slot `k`'s occupant (data, or the service closing).
    pub(crate) fn data_bell(&self, k: usize) -> Bell<'_> {
        let control = &self.slot(k).control;
        Bell {
            waiters: &control.bell_waiters,
            word: &control.bell,
        }
    }

    /// The bell subscribers ring for a publisher blocked on a full queue.
    pub(crate) fn publisher_bell(&self) -> Bell<'_> {
        let live = &self.header().live;
        Bell {
            waiters: &live.publisher_bell_waiters,
            word: &live.publisher_bell,
        }
    }

    fn entries(&self, k: usize, first: usize, count: usize) -> &[Entry] {
        let at = self
            .slot_base(k)
            .wrapping_add(size_of::<SlotFixed>() + first * size_of::<Entry>());
        // SAFETY: first + count <= submission_slots + completion_slots entries follow the fixed
        // part inside the slot's stride; Entry is two atomics, valid for any bytes, 8-aligned.
        unsafe { std::slice::from_raw_parts(at as *const Entry, count) }
    }

    /// Subscriber `k`'s submission queue.
    pub(crate) fn submission(&self, k: usize) -> QueueRef<'_, AtomicU64> {
        let slot = self.slot(k);
        QueueRef::new(
            &slot.sub_write.0,
            &slot.sub_read.read,
            self.entries(k, 0, self.geometry.submission_slots),
            self.geometry.buffer_size,
        )
    }

    /// Subscriber `k`'s completion queue.
    pub(crate) fn completion(&self, k: usize) -> QueueRef<'_, AtomicU64> {
        let slot = self.slot(k);
        QueueRef::new(
            &slot.comp_write.0,
            &slot.comp_read.0,
            self.entries(
                k,
                self.geometry.submission_slots,
                self.geometry.completion_slots,
            ),
            self.geometry.completion_size,
        )
    }

    /// Writes the immutable facts (the object is fresh and zero-filled) and marks it ready.
    pub(crate) fn init(&self, facts: &Facts, prefix: &str) {
        let h = self.header();
        let g = &facts.geometry;
        h.version.store(VERSION, Ordering::Relaxed);
        h.overflow.store(facts.overflow, Ordering::Relaxed);
        h.max_subscribers
            .store(g.max_subscribers as u32, Ordering::Relaxed);
        h.buffer_size.store(g.buffer_size as u32, Ordering::Relaxed);
        h.completion_size
            .store(g.completion_size as u32, Ordering::Relaxed);
        h.max_borrowed
            .store(g.max_borrowed as u32, Ordering::Relaxed);
        h.slot_stride.store(g.slot_stride as u64, Ordering::Relaxed);
        h.total_size.store(g.total_size as u64, Ordering::Relaxed);
        h.prefix_hash.store(prefix_hash(prefix), Ordering::Relaxed);
        h.memory_id.store(facts.memory_id, Ordering::Relaxed);
        h.epoch.store(facts.epoch, Ordering::Relaxed);
        h.publisher_pid
            .store(facts.publisher_pid, Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.ready.store(1, Ordering::Release);
    }
}

/// What a reader of a control object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validated {
    /// The publisher has not finished creating it.
    NotReady,
    /// A complete, consistent header.
    Ready(Facts),
}

/// Validates the header at the start of `bytes` (a whole mapped control object): magic,
/// version, every size recomputed from the builder values, the prefix it was created under.
/// Reads each field once; never reads past `bytes`.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes while this runs (others may write them).
pub(crate) unsafe fn validate_raw(
    ptr: *const u8,
    len: usize,
    prefix: &str,
) -> Result<Validated, ChannelError> {
    if len < HEADER_SIZE || !(ptr as usize).is_multiple_of(LINE) {
        return Err(ChannelError::Corrupted);
    }
    // SAFETY: aligned and long enough for the header (checked above, the rest is the caller's
    // promise); atomics accept any bytes.
    let h = unsafe { &*(ptr as *const ServiceHeader) };
    if h.ready.load(Ordering::Acquire) != 1 {
        return Ok(Validated::NotReady);
    }
    if h.magic.load(Ordering::Relaxed) != MAGIC {
        return Err(ChannelError::Corrupted);
    }
    if h.version.load(Ordering::Relaxed) != VERSION {
        return Err(ChannelError::IncompatibleVersion);
    }
    let geometry = Geometry::new(
        h.max_subscribers.load(Ordering::Relaxed) as usize,
        h.buffer_size.load(Ordering::Relaxed) as usize,
        h.max_borrowed.load(Ordering::Relaxed) as usize,
    )
    .map_err(|_| ChannelError::Corrupted)?;
    let consistent = h.completion_size.load(Ordering::Relaxed) as usize == geometry.completion_size
        && h.slot_stride.load(Ordering::Relaxed) == geometry.slot_stride as u64
        && h.total_size.load(Ordering::Relaxed) == geometry.total_size as u64
        && geometry.total_size <= len;
    if !consistent {
        return Err(ChannelError::Corrupted);
    }
    if h.prefix_hash.load(Ordering::Relaxed) != prefix_hash(prefix) {
        // Another namespace's service seen through a nested prefix.
        return Err(ChannelError::DoesNotExist);
    }
    let overflow = h.overflow.load(Ordering::Relaxed);
    if overflow > 2 {
        return Err(ChannelError::Corrupted);
    }
    Ok(Validated::Ready(Facts {
        geometry,
        overflow,
        memory_id: h.memory_id.load(Ordering::Relaxed),
        epoch: h.epoch.load(Ordering::Relaxed),
        publisher_pid: h.publisher_pid.load(Ordering::Relaxed),
    }))
}

/// `validate_raw` on bytes the caller owns (the fuzz target's entry point): the header is
/// read from a 128-byte aligned copy.
pub fn validate(bytes: &[u8], prefix: &str) -> Result<Validated, ChannelError> {
    let mut aligned = vec![Line([0; LINE]); bytes.len().div_ceil(LINE)];
    let len = bytes.len();
    let base = aligned.as_mut_ptr() as *mut u8;
    // SAFETY: `aligned` has at least `len` bytes and does not overlap `bytes`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base, len) };
    // SAFETY: `aligned` lives until the end of this function and holds `len` bytes.
    unsafe { validate_raw(base, len, prefix) }
}

#[derive(Clone, Copy)]
#[repr(C, align(128))]
struct Line([u8; LINE]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_cache_line_multiples() {
        assert_eq!(HEADER_SIZE, 2 * LINE);
        assert_eq!(size_of::<SlotFixed>(), 5 * LINE);
        let g = Geometry::new(8, 16, 8).unwrap();
        assert_eq!(g.completion_size, 24);
        assert_eq!((g.submission_slots, g.completion_slots), (16, 32));
        let page = layout_page();
        assert_eq!(g.slot_stride, (5 * LINE + 48 * 16).next_multiple_of(page));
        assert_eq!(g.slot_offset(0), page);
        assert_eq!(g.total_size, page + 8 * g.slot_stride);
        assert_eq!(size_of::<SlotFixed>(), offsets::ENTRIES);
        assert_eq!(
            std::mem::offset_of!(SlotFixed, sub_write),
            offsets::SUB_WRITE
        );
        assert_eq!(std::mem::offset_of!(SlotFixed, sub_read), offsets::SUB_READ);
        assert_eq!(
            std::mem::offset_of!(SlotFixed, comp_write),
            offsets::COMP_WRITE
        );
        assert_eq!(
            std::mem::offset_of!(SlotFixed, comp_read),
            offsets::COMP_READ
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Geometry::new(0, 16, 8).is_err());
        assert!(Geometry::new(8, 0, 8).is_err());
        assert!(Geometry::new(8, 16, 0).is_err());
        assert!(Geometry::new(MAX_SUBSCRIBERS + 1, 16, 8).is_err());
        assert!(Geometry::new(8, MAX_QUEUE + 1, 8).is_err());
    }
}
