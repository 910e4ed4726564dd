//! Bridge benchmark guest (world `bench`): `bench [scale] [samples] [workload...]`.
//!
//! Times, from inside the guest with `std::time::Instant` (the WASI monotonic clock), what a
//! guest pays per operation across the component boundary:
//!
//! - `noop`: one `bench-support.noop` host call (the floor of every host call);
//! - `method`: `memory.allocation-strategy`, a resource method whose host side is a handle
//!   lookup (the floor of every `memory` call);
//! - `pair-64`: `allocate` + `deallocate` of a 64-byte chunk;
//! - `pair-64-batch`: the same pair in batches of 64 (`allocate-many` of 64 chunks, then one
//!   `deallocate-many` when the SDK's `Chunks` drops); ns per chunk;
//! - `write-<n>` / `read-<n>`: `write` / `read` of `n` = 64, 4096, 1 MiB, 64 MiB bytes at the
//!   start of a 64 MiB chunk (a `read` includes the guest allocating and freeing the returned
//!   list);
//! - `win-write-<n>` / `win-fill-<n>` / `win-read-<n>`: the same chunk mapped into the window
//!   (`map`, once), then `n` = 4096, 1 MiB, 64 MiB bytes copied in from the heap, filled, or
//!   copied out to the heap with the SDK's in-place routines: no host call at all;
//! - `first-map`: `map` of a chunk whose segment is not in the window yet (a fresh memory per
//!   sample; only the `map` call is timed; 64 KiB chunk).
//!
//!
//! Named only (not run by default), the channel costs, one guest being publisher and
//! subscriber of one service `bench-chan`:
//!
//! - `wall-clock`: one `wasi:clocks/wall-clock.now` (what the echo below stamps with);
//! - `chan-receive-empty`: `subscriber.receive` with nothing queued (one turn of a spinning
//!   receiver);
//! - `chan-cycle-64` / `chan-cycle-map-64`: loan 64 B, write, send, receive, read every byte,
//!   release, by copy (`write`/`read`) or in place (`map`): the native channel bench's
//!   single-thread cycle.
//!
//! `bench echo <in> <out> <size> copy|map spin|poll` is the guest peer of the guest-channel
//! bench instead (see `channel.rs`).
//!
//! Each workload runs untimed once as warm-up, then `samples` times (default 15) a loop whose
//! length is the workload's base count times `scale` (default 1.0). Prints one line per
//! workload, `bench <name> <median ns per op>`, then `done`. Naming workloads runs only those
//! (e.g. `bench 1 15 pair-64` under a profiler). The memories are created under the
//! names `bench-pairs` and `bench-io` and dropped before exit.

use std::hint::black_box;
use std::time::Instant;

use resmem_guest::{AllocationStrategy, Layout, Memory, MemoryConfig};

mod channel;

resmem_guest::wit_bindgen::generate!({
    world: "bench",
    path: "../../wit",
    runtime_path: "resmem_guest::wit_bindgen::rt",
    with: {
        "resmem:memory/types@0.1.0": resmem_guest::bindings::resmem::memory::types,
        "resmem:memory/resizable-memory@0.1.0": resmem_guest::bindings::resmem::memory::resizable_memory,
        "resmem:memory/channel@0.1.0": resmem_guest::bindings::resmem::memory::channel,
        "wasi:io/poll@0.2.12": resmem_guest::bindings::wasi::io::poll,
    },
});

use resmem::memory::bench_support::noop;

/// The pair workload's chunk: the same layout as the native comparison bench.
const SMALL: Layout = Layout::new(64, 8);
/// Chunks per `allocate-many` in `pair-64-batch`.
const BATCH: u32 = 64;
/// The write/read sizes.
const SIZES: [u64; 4] = [64, 4096, 1 << 20, 64 << 20];
/// The window sizes.
const WINDOW_SIZES: [u64; 3] = [4096, 1 << 20, 64 << 20];

/// Workloads that run only when named.
const NAMED_ONLY: [&str; 4] = [
    "wall-clock",
    "chan-receive-empty",
    "chan-cycle-64",
    "chan-cycle-map-64",
];

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("echo", rest)) = all.split_first().map(|(a, rest)| (a.as_str(), rest)) {
        channel::echo(rest);
        return;
    }
    let mut args = all.into_iter();
    let scale: f64 = args
        .next()
        .map_or(1.0, |s| s.parse().expect("scale: a number"));
    let samples: usize = args
        .next()
        .map_or(15, |s| s.parse().expect("samples: a number"));
    assert!(
        scale > 0.0 && samples > 0,
        "usage: bench [scale > 0] [samples > 0] [workload...]"
    );
    let only: Vec<String> = args.collect();
    let iters = |base: u64| ((base as f64 * scale) as u64).max(1);
    let named = |name: &str| only.iter().any(|o| o == name);
    let selected = |name: &str| (only.is_empty() && !NAMED_ONLY.contains(&name)) || named(name);
    let report_per = |name: &str, iters: u64, per: u64, op: &mut dyn FnMut()| {
        if selected(name) {
            measure(name, samples, iters, per, op);
        }
    };
    let report = |name: &str, iters: u64, op: &mut dyn FnMut()| report_per(name, iters, 1, op);

    report("noop", iters(200_000), &mut noop);
    report("wall-clock", iters(200_000), &mut || {
        black_box(channel::now_ns());
    });
    if NAMED_ONLY[1..].iter().any(|name| named(name)) {
        let mut local = channel::Local::new("bench-chan");
        report("chan-receive-empty", iters(200_000), &mut || {
            local.receive_nothing()
        });
        report("chan-cycle-64", iters(20_000), &mut || local.cycle(false));
        report("chan-cycle-map-64", iters(20_000), &mut || {
            local.cycle(true)
        });
    }

    // Segment 0 holds 1024 chunks of 64 B, like the native bench's memory.
    let pairs = Memory::create(
        "bench-pairs",
        MemoryConfig::new(SMALL, 1024, AllocationStrategy::PowerOfTwo),
    )
    .expect("create bench-pairs");
    // A resource method that does nothing in the host but look the handle up: the floor of
    // every `memory` call (borrow of the handle, table lookup), to split `pair-64` up.
    report("method", iters(200_000), &mut || {
        black_box(pairs.allocation_strategy());
    });
    report("pair-64", iters(100_000), &mut || {
        let chunk = pairs.allocate(SMALL).expect("allocate 64 B");
        pairs
            .deallocate(black_box(chunk.into_offset()))
            .expect("deallocate 64 B");
    });
    report_per(
        "pair-64-batch",
        (iters(100_000) / u64::from(BATCH)).max(1),
        u64::from(BATCH),
        &mut || {
            let chunks = pairs
                .allocate_many(SMALL, BATCH)
                .expect("allocate 64 x 64 B");
            drop(black_box(chunks));
        },
    );

    let largest = SIZES[SIZES.len() - 1];
    let io = Memory::create(
        "bench-io",
        MemoryConfig::new(Layout::new(largest, 64), 2, AllocationStrategy::PowerOfTwo),
    )
    .expect("create bench-io");
    let mut chunk = io
        .allocate(Layout::new(largest, 64))
        .expect("allocate the I/O chunk");
    // Non-zero bytes: untouched (zero) pages would make the copies unrealistically cheap.
    let data: Vec<u8> = (0..largest).map(|i| (i * 131 + 7) as u8).collect();
    for size in SIZES {
        let n = size as usize;
        // ~64 MiB per sample for the large sizes, call-bound counts for the small ones.
        let count = iters((64 << 20) / size).min(iters(100_000));
        report(&format!("write-{size}"), count, &mut || {
            chunk.write_at(0, black_box(&data[..n])).expect("write");
        });
        if !selected(&format!("read-{size}")) {
            continue;
        }
        chunk.write_at(0, &data[..n]).expect("write");
        let back = chunk.read_at(0, size).expect("read");
        assert!(back == data[..n], "read-{size} returned other bytes");
        report(&format!("read-{size}"), count, &mut || {
            let bytes = chunk.read_at(0, black_box(size)).expect("read");
            assert_eq!(bytes.len(), n);
            black_box(bytes);
        });
    }
    // The window: the same chunk, mapped once, then read and written in place.
    let mut window = chunk.map().expect("map the I/O chunk");
    let mut back = vec![0u8; largest as usize];
    for size in WINDOW_SIZES {
        let n = size as usize;
        let count = iters((64 << 20) / size).min(iters(100_000));
        report(&format!("win-write-{size}"), count, &mut || {
            window.copy_from(0, black_box(&data[..n]));
        });
        report(&format!("win-fill-{size}"), count, &mut || {
            window.fill_range(0, n, black_box(0x5A));
        });
        if !selected(&format!("win-read-{size}")) {
            continue;
        }
        window.copy_from(0, &data[..n]);
        report(&format!("win-read-{size}"), count, &mut || {
            window.copy_to(0, black_box(&mut back[..n]));
        });
        assert!(
            back[..n] == data[..n],
            "win-read-{size} returned other bytes"
        );
    }
    drop(chunk);
    drop(io);

    if selected("first-map") {
        first_map(samples.max(15) * 4);
    }
    drop(pairs);
    println!("done");
}

/// Times `map` of a chunk whose segment is new to the window: each sample creates a memory and
/// a chunk (not timed), maps it (timed) and drops everything.
fn first_map(samples: usize) {
    let size = 64 << 10;
    let mut times: Vec<f64> = (0..samples)
        .map(|i| {
            let memory = Memory::create(
                &format!("bench-map-{i}"),
                MemoryConfig::new(Layout::new(size, 64), 1, AllocationStrategy::PowerOfTwo),
            )
            .expect("create bench-map");
            let mut chunk = memory.allocate(Layout::new(size, 64)).expect("allocate");
            let start = Instant::now();
            let window = chunk.map().expect("map");
            let ns = start.elapsed().as_nanos() as f64;
            black_box(window.addr());
            ns
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("bench first-map {:.3}", times[times.len() / 2]);
}

/// Warm-up, then `samples` timed loops of `iters` calls; prints the median ns per call.
/// (`op` is called through a vtable: one indirect call, ~1 ns, on every workload alike.)
/// Prints the median over `samples` loops of `iters` calls of `op`, in ns per call divided by
/// `per` (the operations one call does).
fn measure(name: &str, samples: usize, iters: u64, per: u64, op: &mut dyn FnMut()) {
    for _ in 0..iters.min(1000) {
        op();
    }
    let mut per_op: Vec<f64> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            start.elapsed().as_nanos() as f64 / (iters * per) as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    let mid = per_op.len() / 2;
    let median = if per_op.len() % 2 == 1 {
        per_op[mid]
    } else {
        (per_op[mid - 1] + per_op[mid]) / 2.0
    };
    println!("bench {name} {median:.3}");
}
