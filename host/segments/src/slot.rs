//! A reference-counted cell for one segment, shared by owners and views.
//!
//! The state word packs a phase and a reference count. Readers *pin* a slot (count + 1) before
//! touching its value and unpin afterwards; a chunk (owner) or a registered offset (view) holds
//! one reference for as long as it lives. The value is only written while the slot is `BUSY`,
//! which nobody can pin, so pinned readers never race a writer:
//!
//! ```text
//!   FREE --install--> LIVE --retire--> RETIRED --count hits 0--> BUSY --teardown--> FREE
//!                       \______________ count 0 at retire ______/
//! ```
//!
//! Exactly one thread observes the transition to "retired with count 0" and tears the value
//! down (unmap, unlink) before the slot becomes `FREE`, so a new segment never reuses a name
//! that is still being removed.

use crate::sync::{AtomicU64, Ordering, UnsafeCell};

const PHASE_MASK: u64 = 0b11;
const FREE: u64 = 0;
const LIVE: u64 = 1;
const RETIRED: u64 = 2;
const BUSY: u64 = 3;
const ONE: u64 = 1 << 2;

/// Why a release was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPinned;

/// One segment's slot: a phase, a reference count and the value (see the module docs).
pub struct SlotCell<T> {
    state: AtomicU64,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is only written in phase BUSY, which excludes all readers (pinning requires
// LIVE or RETIRED), and only read by threads holding a pin, so sharing follows T's own Sync.
unsafe impl<T: Send + Sync> Sync for SlotCell<T> {}
// SAFETY: moving the cell moves the value; T: Send suffices.
unsafe impl<T: Send> Send for SlotCell<T> {}

impl<T> std::fmt::Debug for SlotCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.load(Ordering::Relaxed);
        let phase = ["free", "live", "retired", "busy"][(s & PHASE_MASK) as usize];
        write!(f, "SlotCell({phase}, pins: {})", s >> 2)
    }
}

impl<T> Default for SlotCell<T> {
    fn default() -> Self {
        Self {
            state: AtomicU64::new(FREE),
            value: UnsafeCell::new(None),
        }
    }
}

impl<T> SlotCell<T> {
    /// Pins a live slot, or a retired one that still has references (so cannot vanish).
    #[inline]
    pub fn pin(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let pinnable = match s & PHASE_MASK {
                LIVE => true,
                RETIRED => s >= ONE,
                _ => false,
            };
            if !pinnable {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s + ONE, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(current) => s = current,
            }
        }
    }

    /// Pins only while the slot is the live one (allocation must not enter retired slots).
    #[inline]
    pub fn pin_live(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        while s & PHASE_MASK == LIVE {
            match self
                .state
                .compare_exchange_weak(s, s + ONE, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(current) => s = current,
            }
        }
        false
    }

    /// The value of a pinned slot.
    ///
    /// # Safety
    /// The caller must hold a pin (from `pin`, `pin_live` or `install`) until it stops using
    /// the returned reference.
    #[inline]
    pub unsafe fn get(&self) -> &T {
        // The discriminant is read inside `with`, so that loom checks this read against the
        // writes of install and teardown.
        let value = self.value.with(|value| {
            // SAFETY: a pinned slot is LIVE or RETIRED, where the value is Some and not
            // written (writes happen only in BUSY, which cannot be entered while the count is
            // non-zero); the caller keeps the pin while it uses the reference.
            unsafe { (*value).as_ref() }
        });
        match value {
            Some(v) => v,
            None => unreachable!("a pinned slot always holds a value"),
        }
    }

    /// Drops `n` references. When that leaves a retired slot without references, `teardown`
    /// gets the value and the slot becomes free afterwards. Refuses (changing nothing) to drop
    /// more references than there are.
    #[inline]
    pub fn unpin(&self, n: u64, teardown: impl FnOnce(T)) -> Result<(), NotPinned> {
        let by = n * ONE;
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let phase = s & PHASE_MASK;
            if !(phase == LIVE || phase == RETIRED) || s - phase < by {
                return Err(NotPinned);
            }
            let mut next = s - by;
            let last = next == RETIRED;
            if last {
                next = BUSY;
            }
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if last {
                        self.teardown(teardown);
                    }
                    return Ok(());
                }
                Err(current) => s = current,
            }
        }
    }

    /// Drops one reference the caller is known to hold (a chunk's or its own pin): one atomic
    /// add instead of a compare-exchange loop, for the hot paths.
    #[inline]
    pub fn unpin_held(&self, teardown: impl FnOnce(T)) {
        let previous = self.state.fetch_sub(ONE, Ordering::AcqRel);
        debug_assert!(previous >= ONE, "unpin_held without a held reference");
        // Retired with no references left: nobody can pin it any more; whoever wins the
        // exchange (us, or an eviction) tears it down.
        if previous == ONE | RETIRED
            && self
                .state
                .compare_exchange(RETIRED, BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.teardown(teardown);
        }
    }

    /// Puts `value` into a free slot as LIVE (or RETIRED) with `pins` references held by the
    /// caller. Returns the value back if the slot is not free.
    pub fn install(&self, value: T, retired: bool, pins: u64) -> Result<(), T> {
        if self
            .state
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(value);
        }
        self.value.with_mut(|slot| {
            // SAFETY: phase BUSY excludes every reader and writer but us.
            unsafe { *slot = Some(value) }
        });
        let phase = if retired { RETIRED } else { LIVE };
        self.state.store(phase + pins * ONE, Ordering::Release);
        Ok(())
    }

    /// Marks a live slot retired; tears it down at once if nothing references it. Returns
    /// `false` if the slot was not live.
    pub fn retire(&self, teardown: impl FnOnce(T)) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & PHASE_MASK != LIVE {
                return false;
            }
            let unreferenced = s < ONE;
            let next = if unreferenced {
                BUSY
            } else {
                (s - LIVE) | RETIRED
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if unreferenced {
                        self.teardown(teardown);
                    }
                    return true;
                }
                Err(current) => s = current,
            }
        }
    }

    /// Tears down a live or retired slot that has no references. Returns `false` (changing
    /// nothing) if it has references or is not occupied.
    pub fn evict_unreferenced(&self, teardown: impl FnOnce(T)) -> bool {
        for phase in [LIVE, RETIRED] {
            if self
                .state
                .compare_exchange(phase, BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.teardown(teardown);
                return true;
            }
        }
        false
    }

    /// Takes the value regardless of references; for `Drop` of the container, which has
    /// exclusive access.
    pub fn take(&mut self) -> Option<T> {
        // A store rather than `get_mut`, which loom's atomics lack; `&mut self` excludes
        // every other access either way.
        self.state.store(FREE, Ordering::Relaxed);
        self.value.with_mut(|value| {
            // SAFETY: `&mut self` is exclusive access to the cell.
            unsafe { (*value).take() }
        })
    }

    fn teardown(&self, teardown: impl FnOnce(T)) {
        let value = self.value.with_mut(|value| {
            // SAFETY: we moved the state to BUSY ourselves, which excludes every other access.
            unsafe { (*value).take() }
        });
        if let Some(value) = value {
            teardown(value);
        }
        self.state.store(FREE, Ordering::Release);
    }

    /// Whether the slot holds a value (live or retired).
    pub fn is_occupied(&self) -> bool {
        matches!(
            self.state.load(Ordering::Acquire) & PHASE_MASK,
            LIVE | RETIRED
        )
    }

    /// Whether the slot is empty and may be installed into.
    pub fn is_free(&self) -> bool {
        self.state.load(Ordering::Acquire) == FREE
    }

    /// Whether a value is being installed or torn down right now.
    pub fn is_busy(&self) -> bool {
        self.state.load(Ordering::Acquire) & PHASE_MASK == BUSY
    }

    /// References currently held.
    pub fn pins(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> 2
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn lifecycle() {
        let slot = SlotCell::<u32>::default();
        assert!(!slot.pin());
        slot.install(7, false, 0).unwrap();
        assert_eq!(slot.install(8, false, 0), Err(8));
        assert!(slot.pin());
        // SAFETY: pinned above.
        assert_eq!(unsafe { *slot.get() }, 7);
        let torn = AtomicUsize::new(0);
        assert!(slot.retire(|_| unreachable!("still pinned")));
        assert!(!slot.pin_live());
        assert!(slot.pin());
        slot.unpin(1, |_| unreachable!()).unwrap();
        slot.unpin(1, |v| {
            torn.store(v as usize, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(torn.load(Ordering::Relaxed), 7);
        assert!(slot.is_free());
        assert_eq!(slot.unpin(1, |_| {}), Err(NotPinned));
    }

    #[test]
    fn retire_without_references_tears_down_at_once() {
        let slot = SlotCell::<u32>::default();
        slot.install(1, false, 0).unwrap();
        let mut torn = None;
        assert!(slot.retire(|v| torn = Some(v)));
        assert_eq!(torn, Some(1));
        assert!(slot.is_free());
        assert!(!slot.retire(|_| {}));
    }

    #[test]
    fn unpin_never_underflows() {
        let slot = SlotCell::<u32>::default();
        slot.install(1, false, 2).unwrap();
        assert_eq!(slot.unpin(3, |_| {}), Err(NotPinned));
        assert_eq!(slot.pins(), 2);
        slot.unpin(2, |_| unreachable!("live slots are not torn down"))
            .unwrap();
        assert!(slot.is_occupied() && slot.pin_live());
    }

    #[test]
    fn exactly_one_teardown_under_contention() {
        // Miri explores interleavings itself (and slowly): fewer rounds there.
        for _ in 0..if cfg!(miri) { 8 } else { 200 } {
            let slot = Arc::new(SlotCell::<u32>::default());
            let pins = 64;
            slot.install(5, false, pins).unwrap();
            let torn = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (slot, torn) = (Arc::clone(&slot), Arc::clone(&torn));
                    std::thread::spawn(move || {
                        if t == 0 {
                            slot.retire(|_| {
                                torn.fetch_add(1, Ordering::Relaxed);
                            });
                        }
                        for _ in 0..pins / 4 {
                            slot.unpin(1, |_| {
                                torn.fetch_add(1, Ordering::Relaxed);
                            })
                            .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(torn.load(Ordering::Relaxed), 1);
            assert!(slot.is_free());
        }
    }
}

/// Model checks of the reference count (`scripts/loom slot`): every interleaving of the
/// operations below, up to `LOOM_MAX_PREEMPTIONS` preemptions. Loom's `UnsafeCell` fails a
/// model whose value is read (by `get`) without a happens-before edge to its install, or
/// written (by teardown) without one from every earlier read.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// Counts teardowns and checks the value each one receives.
    #[derive(Clone)]
    struct Teardowns {
        count: Arc<AtomicUsize>,
    }

    impl Teardowns {
        fn new() -> Self {
            Self {
                count: Arc::new(AtomicUsize::new(0)),
            }
        }

        fn expecting(&self, expected: u32) -> impl FnOnce(u32) + use<> {
            let count = Arc::clone(&self.count);
            move |value| {
                assert_eq!(value, expected, "teardown got another value");
                count.fetch_add(1, Ordering::Relaxed);
            }
        }

        fn count(&self) -> usize {
            self.count.load(Ordering::Relaxed)
        }
    }

    /// Pins, reads the value (asserting it is `expected`) and unpins, when the slot can be
    /// pinned at all. Returns whether it could.
    fn pin_read_unpin(slot: &SlotCell<u32>, expected: &[u32], torn: &Teardowns) -> bool {
        if !slot.pin() {
            return false;
        }
        // SAFETY: pinned above, unpinned below after the last use.
        let value = unsafe { *slot.get() };
        assert!(expected.contains(&value), "pinner read {value}");
        slot.unpin(1, torn.expecting(value)).expect("our own pin");
        true
    }

    /// Two chunk references dropped concurrently with the retire of the live slot: exactly
    /// one teardown, of the installed value, and the slot ends free.
    #[test]
    fn loom_slot_retire_races_unpins_exactly_one_teardown() {
        loom::model(|| {
            let slot = Arc::new(SlotCell::<u32>::default());
            slot.install(7, false, 2).expect("a free slot");
            let torn = Teardowns::new();
            let retirer = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || assert!(slot.retire(torn.expecting(7))))
            };
            let unpinner = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || slot.unpin_held(torn.expecting(7)))
            };
            slot.unpin(1, torn.expecting(7)).expect("a held reference");
            retirer.join().unwrap();
            unpinner.join().unwrap();
            assert_eq!(torn.count(), 1);
            assert!(slot.is_free());
            assert!(!slot.pin());
        });
    }

    /// A pinner against the retire and the last chunk's unpin: whenever it gets a pin it
    /// reads the installed value (never a torn-down one: loom checks the cell), and the one
    /// teardown happens after its unpin, by whichever thread drops the last reference.
    #[test]
    fn loom_slot_pinner_never_reads_after_teardown() {
        loom::model(|| {
            let slot = Arc::new(SlotCell::<u32>::default());
            slot.install(7, false, 1).expect("a free slot");
            let torn = Teardowns::new();
            let pinner = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || pin_read_unpin(&slot, &[7], &torn))
            };
            let retirer = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || assert!(slot.retire(torn.expecting(7))))
            };
            slot.unpin_held(torn.expecting(7));
            pinner.join().unwrap();
            retirer.join().unwrap();
            assert_eq!(torn.count(), 1);
            assert!(slot.is_free());
        });
    }

    /// A view's register against another thread's fast path: the registering thread evicts
    /// the stale value (once nobody pins it) and installs the new one with its own pin; the
    /// fast path, when it pins, reads either value, whole. The stale value is torn down
    /// exactly once, the new one never, and the slot ends live holding it.
    #[test]
    fn loom_slot_register_against_fast_path_pin() {
        loom::model(|| {
            let slot = Arc::new(SlotCell::<u32>::default());
            slot.install(1, false, 0).expect("a free slot");
            let torn = Teardowns::new();
            let fast_path = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || {
                    pin_read_unpin(&slot, &[1, 2], &torn);
                })
            };
            while !slot.evict_unreferenced(torn.expecting(1)) {
                // Pinned by the fast path right now.
                thread::yield_now();
            }
            slot.install(2, false, 1).expect("evicted, so free");
            // SAFETY: install left our pin.
            assert_eq!(unsafe { *slot.get() }, 2);
            slot.unpin(1, torn.expecting(2)).expect("our pin");
            fast_path.join().unwrap();
            assert_eq!(torn.count(), 1);
            assert!(slot.is_occupied() && slot.pin_live());
            // SAFETY: pinned just above.
            assert_eq!(unsafe { *slot.get() }, 2);
            slot.unpin(1, torn.expecting(2)).expect("our pin");
            assert_eq!(slot.pins(), 0);
        });
    }

    /// A value installed by one thread is fully visible to any thread that pins the slot.
    #[test]
    fn loom_slot_install_publishes_the_value_to_pinners() {
        loom::model(|| {
            let slot = Arc::new(SlotCell::<u32>::default());
            let torn = Teardowns::new();
            let pinner = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || pin_read_unpin(&slot, &[5], &torn))
            };
            slot.install(5, false, 0).expect("a free slot");
            pinner.join().unwrap();
            assert_eq!(torn.count(), 0);
            assert_eq!(slot.pins(), 0);
            assert!(slot.is_occupied());
        });
    }

    /// Concurrent pins and unpins are counted exactly: afterwards no reference is left, an
    /// over-release is refused without changing anything, and retire tears down at once.
    #[test]
    fn loom_slot_pins_are_counted_exactly() {
        loom::model(|| {
            let slot = Arc::new(SlotCell::<u32>::default());
            slot.install(3, false, 1).expect("a free slot");
            let torn = Teardowns::new();
            let a = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || {
                    assert!(slot.pin());
                    assert!(slot.pin_live());
                    slot.unpin(2, torn.expecting(3)).expect("two pins of ours");
                })
            };
            let b = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || slot.unpin_held(torn.expecting(3)))
            };
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(slot.pins(), 0);
            assert_eq!(slot.unpin(1, torn.expecting(3)), Err(NotPinned));
            assert!(slot.is_occupied());
            assert_eq!(torn.count(), 0);
            assert!(slot.retire(torn.expecting(3)));
            assert_eq!(torn.count(), 1);
            assert!(slot.is_free());
        });
    }

    /// The last reference of a retired slot dropped while an eviction tries the same slot:
    /// whoever wins the exchange to BUSY tears down, exactly once.
    #[test]
    fn loom_slot_last_unpin_against_eviction() {
        loom::model(|| {
            let slot = Arc::new(SlotCell::<u32>::default());
            slot.install(9, true, 1).expect("a free slot");
            let torn = Teardowns::new();
            let evictor = {
                let (slot, torn) = (Arc::clone(&slot), torn.clone());
                thread::spawn(move || slot.evict_unreferenced(torn.expecting(9)))
            };
            slot.unpin_held(torn.expecting(9));
            let _evicted = evictor.join().unwrap();
            assert_eq!(torn.count(), 1);
            assert!(slot.is_free());
        });
    }
}
