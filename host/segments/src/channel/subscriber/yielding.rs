//! Yielding before a sleep, for a publisher that may share the subscriber's CPU.
//!
//! A wake-up costs tens of µs on a VM. Where the publisher shares this CPU (a bridge importer
//! on zenoh's receive thread, a pinned pipeline), a hot subscriber that found its queue empty
//! and slept at once would be woken, and would preempt the publisher, for every sample;
//! yielding a few times lets the publisher go on and fill a batch. Where nothing else wants
//! the CPU, a yield returns at once.
//!
//! A yield can also hand the CPU to somebody else, who may keep it for a whole time slice
//! (ms), where a woken sleeper would have preempted them; and a publisher that takes long per
//! sample (large copies) gains nothing from it. So the time yields take is weighed against the
//! samples they brought, over windows of `WINDOW` spent yielding: when a window cost more
//! than `PER_SAMPLE` a sample, yields stop for `OFF_MS`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::channel::coarse_now_ms;

/// Yields per round, at most.
const YIELDS: u32 = 4;
/// A round this short with nothing brought found nobody else to run: it is not weighed.
const NOBODY_RAN: Duration = Duration::from_micros(20);
const WINDOW: Duration = Duration::from_millis(2);
const PER_SAMPLE: Duration = Duration::from_micros(20);
const OFF_MS: u64 = 1000;
/// Samples above this take their publisher long enough to fill (a copy of 64 KiB is several
/// µs) that a wake-up per sample costs little: after one, the subscriber sleeps at once.
const LARGE: usize = 64 << 10;

/// A subscriber's yield budget; relaxed atomics, as threads sharing one subscriber only
/// blur a heuristic.
#[derive(Debug, Default)]
pub(super) struct Yielding {
    off_until_ms: AtomicU64,
    spent_ns: AtomicU64,
    brought: AtomicU64,
    last_len: AtomicU64,
}

impl Yielding {
    /// The subscriber took a sample of `len` bytes.
    pub(super) fn taken(&self, len: usize) {
        self.last_len.store(len as u64, Ordering::Relaxed);
    }

    /// Yields until `arrived()` or `YIELDS` times, unless yields are off; whether samples
    /// came. `queued()` counts them.
    pub(super) fn round(&self, arrived: impl Fn() -> bool, queued: impl Fn() -> u64) -> bool {
        if self.last_len.load(Ordering::Relaxed) > LARGE as u64
            || coarse_now_ms() < self.off_until_ms.load(Ordering::Relaxed)
        {
            return false;
        }
        let started = Instant::now();
        let mut yielded = 0;
        while yielded < YIELDS && !arrived() {
            // SAFETY: takes no arguments and touches no memory.
            unsafe { libc::sched_yield() };
            yielded += 1;
        }
        let spent = started.elapsed();
        let brought = queued();
        if brought == 0 && spent < NOBODY_RAN {
            return false;
        }
        self.weigh(spent, brought);
        brought > 0
    }

    fn weigh(&self, spent: Duration, brought: u64) {
        let spent_ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        let total = self
            .spent_ns
            .fetch_add(spent_ns, Ordering::Relaxed)
            .saturating_add(spent_ns);
        let samples = self
            .brought
            .fetch_add(brought, Ordering::Relaxed)
            .saturating_add(brought);
        if total < WINDOW.as_nanos() as u64 {
            return;
        }
        self.spent_ns.store(0, Ordering::Relaxed);
        self.brought.store(0, Ordering::Relaxed);
        if total > samples.saturating_mul(PER_SAMPLE.as_nanos() as u64) {
            self.off_until_ms
                .store(coarse_now_ms() + OFF_MS, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// An `arrived` that counts its calls in `asked` and says yes from call `yes_at` on.
    fn counting(asked: &Cell<usize>, yes_at: usize) -> impl Fn() -> bool + '_ {
        move || {
            asked.set(asked.get() + 1);
            asked.get() >= yes_at
        }
    }

    #[test]
    fn a_window_that_brought_too_little_turns_yields_off() {
        let yielding = Yielding::default();
        // Cheap enough: 2 ms for 200 samples.
        yielding.weigh(Duration::from_millis(2), 200);
        assert_eq!(yielding.off_until_ms.load(Ordering::Relaxed), 0);
        assert_eq!(yielding.spent_ns.load(Ordering::Relaxed), 0, "a new window");
        // Below a window: not judged yet.
        yielding.weigh(Duration::from_millis(1), 1);
        assert_eq!(yielding.off_until_ms.load(Ordering::Relaxed), 0);
        // 2.5 ms for 2 samples: off, and the next round does not yield.
        yielding.weigh(Duration::from_micros(1500), 1);
        assert!(yielding.off_until_ms.load(Ordering::Relaxed) > coarse_now_ms());
        let asked = Cell::new(0);
        assert!(!yielding.round(counting(&asked, usize::MAX), || 0));
        assert_eq!(asked.get(), 0, "no yield while off");
    }

    #[test]
    fn no_yield_after_a_large_sample() {
        let yielding = Yielding::default();
        yielding.taken(LARGE + 1);
        let asked = Cell::new(0);
        assert!(!yielding.round(counting(&asked, usize::MAX), || 1));
        assert_eq!(asked.get(), 0);
        yielding.taken(LARGE);
        assert!(yielding.round(|| false, || 1));
    }

    #[test]
    fn a_round_yields_until_samples_arrive() {
        let yielding = Yielding::default();
        let asked = Cell::new(0);
        assert!(yielding.round(counting(&asked, 3), || 5));
        assert_eq!(asked.get(), 3);
        let asked = Cell::new(0);
        assert!(!yielding.round(counting(&asked, usize::MAX), || 0));
        assert_eq!(asked.get(), YIELDS as usize);
    }
}
