//! resmem against iceoryx2-cal 0.10's `DynamicMemory` on the same workloads, in one process and
//! one run. Prints each median, the ratio resmem / iceoryx2 (lower is better) and the target.
//!
//! `cargo bench -p resmem --bench compare` (set `RESMEM_BENCH_SCALE=0.2` for a quick pass).

mod harness;
mod iceoryx2_anchor;
mod resmem_side;

use std::hint::black_box;

use harness::{median, per_call};

struct Row {
    name: &'static str,
    unit: &'static str,
    anchor: f64,
    ours: f64,
    /// Largest acceptable ratio ours / anchor.
    target: f64,
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("RESMEM_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(3)
}

fn row(name: &'static str, unit: &'static str, target: f64, anchor: &[f64], ours: &[f64]) -> Row {
    Row {
        name,
        unit,
        anchor: median(anchor),
        ours: median(ours),
        target,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` passes nothing else we use.
    let hot = scaled(31);
    let slow = scaled(51);
    let mut rows = vec![
        row(
            "allocate+deallocate 64 B",
            "ns/pair",
            0.5,
            &iceoryx2_anchor::pair_64(hot, 20_000),
            &resmem_side::pair_64(hot, 20_000),
        ),
        row(
            "burst 1000 alloc, 1000 free",
            "ns/op",
            0.5,
            &iceoryx2_anchor::burst_1000(hot, 20),
            &resmem_side::burst_1000(hot, 20),
        ),
        row(
            "view register+unregister",
            "ns/pair",
            1.0,
            &iceoryx2_anchor::view_register_unregister(hot, 20_000),
            &resmem_side::view_register_unregister(hot, 20_000),
        ),
        row(
            "allocation forcing a new segment",
            "ns",
            1.0,
            &iceoryx2_anchor::growth(slow),
            &resmem_side::growth(slow),
        ),
        row(
            "view's first mapping of a segment",
            "ns",
            1.0,
            &iceoryx2_anchor::first_mapping(slow),
            &resmem_side::first_mapping(slow),
        ),
        row(
            "create an owner",
            "ns",
            0.3,
            &iceoryx2_anchor::owner_create(slow, false),
            &resmem_side::owner_create(slow, false),
        ),
        row(
            "create an owner + first allocation",
            "ns",
            1.0,
            &iceoryx2_anchor::owner_create(slow, true),
            &resmem_side::owner_create(slow, true),
        ),
        row(
            "open a view",
            "ns",
            0.3,
            &iceoryx2_anchor::view_open(slow),
            &resmem_side::view_open(slow),
        ),
    ];
    let writes = scaled(7);
    let (anchor_first, anchor_warm) = iceoryx2_anchor::first_write_64mib(writes);
    let (ours_first, ours_warm) = resmem_side::first_write_64mib(writes, false);
    let (pre_first, pre_warm) = resmem_side::first_write_64mib(writes, true);
    rows.push(row(
        "first write pass, fresh 64 MiB",
        "ns/B",
        1.0,
        &anchor_first,
        &ours_first,
    ));
    rows.push(row(
        "first write pass, prefault(true)",
        "ns/B",
        1.0,
        &anchor_first,
        &pre_first,
    ));
    rows.push(row(
        "warm write pass, 64 MiB",
        "ns/B",
        1.0,
        &anchor_warm,
        &ours_warm,
    ));

    println!(
        "\n{:<36} {:>8} {:>14} {:>14} {:>8} {:>7}  met",
        "workload (medians)", "unit", "iceoryx2-cal", "resmem", "ratio", "target"
    );
    for r in &rows {
        let ratio = r.ours / r.anchor;
        println!(
            "{:<36} {:>8} {:>14.3} {:>14.3} {:>7.2}x {:>6.2}x  {}",
            r.name,
            r.unit,
            r.anchor,
            r.ours,
            ratio,
            r.target,
            if ratio <= r.target { "yes" } else { "no" }
        );
    }

    let glibc = per_call(hot, 20_000, || {
        let b = black_box(Box::new([0u8; 64]));
        drop(b);
    });
    let threaded = resmem_side::pair_64_threads(hot, 20_000, 2);
    println!("\nreferences (no iceoryx2 equivalent):");
    println!(
        "  glibc malloc+free 64 B            {:>8.1} ns/pair",
        median(&glibc)
    );
    println!(
        "  resmem pair, 2 threads, one Memory {:>7.1} ns/pair/thread",
        median(&threaded)
    );
    println!(
        "  first/warm write ratio: iceoryx2 {:.1}x, resmem {:.1}x, resmem prefault {:.1}x",
        median(&anchor_first) / median(&anchor_warm),
        median(&ours_first) / median(&ours_warm),
        median(&pre_first) / median(&pre_warm),
    );
}
