//! The queue protocol: single-producer rings of two-word entries over monotonic `u64`
//! indices, shared between two processes that do not trust each other.
//!
//! - Submission (publisher -> subscriber): the publisher writes the entry, then publishes
//!   `write` (release). Consumers (any thread of the subscriber) take entry `r` by a CAS of
//!   `read` from `r` to `r + 1`; the publisher takes back the oldest entry of a full queue
//!   (`Overflow::DropOldest`) with the same CAS, so each entry has exactly one taker. The
//!   publisher overwrites a ring position only after it saw `read` pass it (acquire), which
//!   orders every consumer's read of the old entry before the overwrite.
//! - Completion (subscriber -> publisher): the subscriber (under its own lock) writes and
//!   publishes `write`; the publisher alone reads and publishes `read`.
//!
//! Indices are checked on every use: `write - read` must lie in `0..=capacity`. Generic over
//! the atomic type so that `scripts/loom` checks the same code with loom's atomics.

use std::sync::atomic::Ordering;

/// An atomic 64-bit word: std's in shared memory, loom's in the model.
pub(crate) trait Word {
    fn load(&self, order: Ordering) -> u64;
    fn store(&self, value: u64, order: Ordering);
    fn compare_exchange(&self, current: u64, new: u64, ok: Ordering, err: Ordering) -> bool;
}

impl Word for std::sync::atomic::AtomicU64 {
    #[inline(always)]
    fn load(&self, order: Ordering) -> u64 {
        self.load(order)
    }
    #[inline(always)]
    fn store(&self, value: u64, order: Ordering) {
        self.store(value, order);
    }
    #[inline(always)]
    fn compare_exchange(&self, current: u64, new: u64, ok: Ordering, err: Ordering) -> bool {
        self.compare_exchange(current, new, ok, err).is_ok()
    }
}

#[cfg(loom)]
impl Word for loom::sync::atomic::AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        self.load(order)
    }
    fn store(&self, value: u64, order: Ordering) {
        self.store(value, order);
    }
    fn compare_exchange(&self, current: u64, new: u64, ok: Ordering, err: Ordering) -> bool {
        self.compare_exchange(current, new, ok, err).is_ok()
    }
}

/// One queue entry: two words (submission: offset, length | sample index << 40;
/// completion: offset, sample index).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct EntryOf<W> {
    pub(crate) a: W,
    pub(crate) b: W,
}

/// The entry as it lies in shared memory.
pub(crate) type Entry = EntryOf<std::sync::atomic::AtomicU64>;

/// A queue's indices and entries.
#[derive(Debug)]
pub(crate) struct QueueRef<'a, W> {
    write: &'a W,
    read: &'a W,
    entries: &'a [EntryOf<W>],
}

/// What a consumer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pop {
    Empty,
    /// The indices are impossible (`read > write` or more than `capacity` apart).
    Corrupt,
    Entry(u64, u64),
}

/// Most CAS attempts a consumer makes before it reports the queue empty: only a peer that
/// keeps moving `read` can make it lose this often.
const POP_ATTEMPTS: usize = 1024;

impl<'a, W: Word> QueueRef<'a, W> {
    pub(crate) fn new(write: &'a W, read: &'a W, entries: &'a [EntryOf<W>]) -> Self {
        Self {
            write,
            read,
            entries,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.entries.len() as u64
    }

    fn entry(&self, index: u64) -> &EntryOf<W> {
        &self.entries[(index % self.capacity()) as usize]
    }

    /// Producer: the consumers' index, checked against the producer's own `write`.
    pub(crate) fn observed_read(&self, write: u64) -> Option<u64> {
        let read = self.read.load(Ordering::Acquire);
        (read <= write && write - read <= self.capacity()).then_some(read)
    }

    /// Producer: puts an entry at `write` (which the caller checked is not full) and
    /// publishes `write + 1`.
    pub(crate) fn push(&self, write: u64, a: u64, b: u64) {
        let entry = self.entry(write);
        entry.a.store(a, Ordering::Relaxed);
        entry.b.store(b, Ordering::Relaxed);
        self.write.store(write + 1, Ordering::Release);
    }

    /// Takes entry `read` away from the consumers (producer's `DropOldest`, or a consumer's
    /// pop); `false` when somebody else took it first.
    pub(crate) fn take(&self, read: u64) -> bool {
        self.read
            .compare_exchange(read, read + 1, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Consumer (any number of threads): takes the oldest entry.
    pub(crate) fn pop(&self) -> Pop {
        for _ in 0..POP_ATTEMPTS {
            let read = self.read.load(Ordering::Acquire);
            let write = self.write.load(Ordering::Acquire);
            if write == read {
                return Pop::Empty;
            }
            if write < read || write - read > self.capacity() {
                return Pop::Corrupt;
            }
            let entry = self.entry(read);
            let a = entry.a.load(Ordering::Relaxed);
            let b = entry.b.load(Ordering::Relaxed);
            if self.take(read) {
                return Pop::Entry(a, b);
            }
        }
        Pop::Empty
    }

    /// Both indices as they are now (to notice any change while waiting).
    pub(crate) fn indices(&self) -> (u64, u64) {
        (
            self.write.load(Ordering::Acquire),
            self.read.load(Ordering::Acquire),
        )
    }

    /// Whether an entry is queued (a racy hint).
    pub(crate) fn is_empty(&self) -> bool {
        self.write.load(Ordering::Acquire) == self.read.load(Ordering::Acquire)
    }

    /// Entries queued, clamped to the capacity (for statistics).
    pub(crate) fn len_hint(&self) -> u64 {
        let write = self.write.load(Ordering::Relaxed);
        let read = self.read.load(Ordering::Relaxed);
        write.saturating_sub(read).min(self.capacity())
    }

    /// Single consumer with a private `read` (the publisher on a completion queue): the
    /// entries `read..write` if the producer's `write` is plausible.
    pub(crate) fn drain(&self, read: u64, mut each: impl FnMut(u64, u64)) -> Option<u64> {
        let write = self.write.load(Ordering::Acquire);
        if write == read {
            // Nothing new: leave the shared line alone.
            return Some(write);
        }
        if write < read || write - read > self.capacity() {
            return None;
        }
        for index in read..write {
            let entry = self.entry(index);
            each(
                entry.a.load(Ordering::Relaxed),
                entry.b.load(Ordering::Relaxed),
            );
        }
        self.read.store(write, Ordering::Release);
        Some(write)
    }

    /// Resets both indices (the publisher, for a slot nobody occupies).
    pub(crate) fn reset(&self) {
        self.read.store(0, Ordering::Relaxed);
        self.write.store(0, Ordering::Release);
    }
}
