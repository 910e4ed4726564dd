//! Timing helpers shared by both sides of the comparison, so both are measured identically.

use std::time::{Duration, Instant};

pub fn ns_per(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// `samples` timings of `iters` back-to-back calls of `op`, after an untimed warm-up; ns per call.
pub fn per_call(samples: usize, iters: u64, mut op: impl FnMut()) -> Vec<f64> {
    assert!(iters > 0, "need at least one iteration per sample");
    for _ in 0..iters.min(1000) {
        op();
    }
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            ns_per(start.elapsed(), iters)
        })
        .collect()
}

/// Times one call of `timed` on a fresh state from `setup`; `check` runs untimed afterwards.
pub fn per_setup<S, R>(
    samples: usize,
    mut setup: impl FnMut(usize) -> S,
    mut timed: impl FnMut(&mut S) -> R,
    mut check: impl FnMut(S, R),
) -> Vec<f64> {
    (0..samples)
        .map(|sample| {
            let mut state = setup(sample);
            let start = Instant::now();
            let result = std::hint::black_box(timed(&mut state));
            let elapsed = start.elapsed();
            check(state, result);
            ns_per(elapsed, 1)
        })
        .collect()
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
