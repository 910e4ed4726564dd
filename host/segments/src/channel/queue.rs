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
    /// A power of two of at least `capacity` entries: positions are `index & mask`.
    entries: &'a [EntryOf<W>],
    capacity: u64,
    mask: u64,
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
    /// `entries.len()` must be a power of two of at least `capacity` (and `capacity` >= 1).
    pub(crate) fn new(
        write: &'a W,
        read: &'a W,
        entries: &'a [EntryOf<W>],
        capacity: usize,
    ) -> Self {
        debug_assert!(entries.len().is_power_of_two() && capacity <= entries.len());
        Self {
            write,
            read,
            entries,
            capacity: capacity as u64,
            mask: entries.len() as u64 - 1,
        }
    }

    /// Most entries queued at once.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Where entry `index` lies (also the index into a producer's shadow of the ring).
    pub(crate) fn position(&self, index: u64) -> usize {
        (index & self.mask) as usize
    }

    fn entry(&self, index: u64) -> &EntryOf<W> {
        &self.entries[self.position(index)]
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
        // Wrapping: a producer index near the end only comes from a scribbled start.
        self.write.store(write.wrapping_add(1), Ordering::Release);
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
                // Or `read` is stale: a drop-oldest producer took entries back and pushed
                // new ones since we loaded it. Corrupt only if it did not move.
                if self.read.load(Ordering::Acquire) != read {
                    continue;
                }
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
            // Nothing new: leave the shared line alone, unless somebody scribbled our index
            // (the producer would believe the queue full forever): put it back.
            if self.read.load(Ordering::Relaxed) != read {
                self.read.store(read, Ordering::Release);
                return None;
            }
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

    /// Producer: puts back a consumer index that is impossible against `write` (a scribble),
    /// as if everything queued had been taken.
    pub(crate) fn repair_read(&self, write: u64) {
        self.read.store(write, Ordering::Release);
    }

    /// Resets both indices (the publisher, for a slot nobody occupies).
    pub(crate) fn reset(&self) {
        self.read.store(0, Ordering::Relaxed);
        self.write.store(0, Ordering::Release);
    }
}

/// Every interleaving of the queue protocol (`scripts/loom queue`).
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
    use loom::thread;

    struct Shared {
        write: AtomicU64,
        read: AtomicU64,
        entries: Vec<EntryOf<AtomicU64>>,
    }

    impl Shared {
        fn new(capacity: usize) -> Arc<Self> {
            Arc::new(Self {
                write: AtomicU64::new(0),
                read: AtomicU64::new(0),
                entries: (0..capacity)
                    .map(|_| EntryOf {
                        a: AtomicU64::new(0),
                        b: AtomicU64::new(0),
                    })
                    .collect(),
            })
        }

        fn queue(&self) -> QueueRef<'_, AtomicU64> {
            QueueRef::new(&self.write, &self.read, &self.entries, self.entries.len())
        }
    }

    /// The publisher's push with `Overflow::DropOldest`, as `links.rs` does it: take the
    /// oldest back when full. Returns the values it took back.
    fn push_drop_oldest(queue: &QueueRef<'_, AtomicU64>, write: &mut u64, value: u64) -> Vec<u64> {
        let mut taken = Vec::new();
        loop {
            let read = queue.observed_read(*write).expect("honest indices");
            if *write - read == queue.capacity() {
                if queue.take(read) {
                    // The publisher's shadow says what lies there: the value it wrote.
                    taken.push(read + 1);
                }
                continue;
            }
            queue.push(*write, value, !value);
            *write += 1;
            return taken;
        }
    }

    /// A full ring of capacity 1, a publisher that pushes three times (taking the oldest
    /// back) and a consumer that pops: every entry has exactly one taker, and a popped entry
    /// is never torn or overwritten (its two words agree with each other).
    #[test]
    fn loom_queue_drop_oldest_against_pop_has_one_taker_per_entry() {
        loom::model(|| {
            let shared = Shared::new(1);
            let consumer = {
                let shared = shared.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        match shared.queue().pop() {
                            Pop::Entry(a, b) => {
                                assert_eq!(b, !a, "torn entry");
                                got.push(a);
                            }
                            Pop::Empty => {}
                            Pop::Corrupt => panic!("honest indices reported corrupt"),
                        }
                    }
                    got
                })
            };
            let queue = shared.queue();
            let mut write = 0;
            let mut taken = Vec::new();
            for value in 1..=3 {
                taken.extend(push_drop_oldest(&queue, &mut write, value));
            }
            let popped = consumer.join().unwrap();
            let mut rest = Vec::new();
            while let Pop::Entry(a, _) = queue.pop() {
                rest.push(a);
            }
            let mut all: Vec<u64> = taken.iter().chain(&popped).chain(&rest).copied().collect();
            all.sort_unstable();
            assert_eq!(
                all,
                vec![1, 2, 3],
                "taken {taken:?} popped {popped:?} rest {rest:?}"
            );
            // The consumer sees entries in order.
            assert!(popped.windows(2).all(|w| w[0] < w[1]));
        });
    }

    /// Two consumer threads (a subscriber's threads) against a producer: no entry is taken
    /// twice and none is lost.
    #[test]
    fn loom_queue_two_consumers_take_each_entry_once() {
        loom::model(|| {
            let shared = Shared::new(2);
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let shared = shared.clone();
                    thread::spawn(move || match shared.queue().pop() {
                        Pop::Entry(a, b) => {
                            assert_eq!(b, !a);
                            Some(a)
                        }
                        Pop::Empty => None,
                        Pop::Corrupt => panic!("honest indices"),
                    })
                })
                .collect();
            let queue = shared.queue();
            queue.push(0, 1, !1);
            queue.push(1, 2, !2);
            let mut got: Vec<u64> = consumers
                .into_iter()
                .filter_map(|c| c.join().unwrap())
                .collect();
            while let Pop::Entry(a, _) = queue.pop() {
                got.push(a);
            }
            got.sort_unstable();
            assert_eq!(got, vec![1, 2]);
        });
    }

    /// The completion queue: the subscriber pushes while the publisher drains; every return
    /// arrives exactly once, whole.
    #[test]
    fn loom_queue_completion_returns_arrive_once() {
        loom::model(|| {
            let shared = Shared::new(2);
            let producer = {
                let shared = shared.clone();
                thread::spawn(move || {
                    let queue = shared.queue();
                    let mut write = 0;
                    for value in 1..=2u64 {
                        let read = queue.observed_read(write).expect("honest indices");
                        assert!(write - read < queue.capacity(), "room for all it holds");
                        queue.push(write, value, !value);
                        write += 1;
                    }
                })
            };
            let queue = shared.queue();
            let mut got = Vec::new();
            let mut check = |a: u64, b: u64| {
                assert_eq!(b, !a);
                got.push(a);
            };
            let read = queue.drain(0, &mut check).unwrap();
            producer.join().unwrap();
            queue.drain(read, &mut check).unwrap();
            assert_eq!(got, vec![1, 2]);
        });
    }

    /// The wake-up handshake of `notify.rs` (waiter: count in, SeqCst fence, re-check;
    /// waker: publish, SeqCst fence, look at the count): a waiter that goes to sleep on an
    /// empty queue is always woken.
    #[test]
    fn loom_queue_wakeup_is_never_lost() {
        loom::model(|| {
            let shared = Shared::new(1);
            let waiters = Arc::new(AtomicU32::new(0));
            let waiter = {
                let (shared, waiters) = (shared.clone(), waiters.clone());
                thread::spawn(move || {
                    waiters.fetch_add(1, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    // true: it sleeps (nothing queued when it looked).
                    shared.queue().is_empty()
                })
            };
            let queue = shared.queue();
            queue.push(0, 7, !7);
            fence(Ordering::SeqCst);
            let wakes = waiters.load(Ordering::Relaxed) != 0;
            let sleeps = waiter.join().unwrap();
            assert!(!sleeps || wakes, "the waiter sleeps and nobody wakes it");
        });
    }

    /// The bell of `notify.rs` (waiter: count in, SeqCst fence, read the word, re-check, then
    /// `FUTEX_WAIT` on the word read; waker: publish, SeqCst fence, look at the count, bump
    /// the word, `FUTEX_WAKE`): a waiter that sleeps read the word before the waker bumped it,
    /// so its wait returns at once or is woken.
    #[test]
    fn loom_bell_ring_is_never_lost() {
        loom::model(|| {
            let shared = Shared::new(1);
            let waiters = Arc::new(AtomicU32::new(0));
            let word = Arc::new(AtomicU32::new(0));
            let waiter = {
                let (shared, waiters, word) = (shared.clone(), waiters.clone(), word.clone());
                thread::spawn(move || {
                    waiters.fetch_add(1, Ordering::SeqCst);
                    fence(Ordering::SeqCst);
                    let seen = word.load(Ordering::SeqCst);
                    (shared.queue().is_empty(), seen)
                })
            };
            let queue = shared.queue();
            queue.push(0, 7, !7);
            fence(Ordering::SeqCst);
            let rings = waiters.load(Ordering::Relaxed) != 0;
            if rings {
                word.fetch_add(1, Ordering::SeqCst);
            }
            let (sleeps, seen) = waiter.join().unwrap();
            assert!(
                !sleeps || (rings && word.load(Ordering::SeqCst) != seen),
                "the waiter sleeps on a word nobody changes after it looked"
            );
        });
    }
}
