//! The WASM bridge: what a guest pays per operation through `resizable-memory`, against the
//! same operations done natively through resmem and against a no-op host call, in one process
//! and one run.
//!
//! `cargo bench -p resmem-host --features bench-support --bench wasm_bridge` (set `RESMEM_BENCH_SCALE=0.2` for a quick
//! pass, `RESMEM_BENCH_ROUNDS` for more or fewer rounds than 3). The guest (`guest/bench`)
//! times itself with the WASI monotonic clock and prints `bench <name> <median ns>`; this
//! harness then times the native counterparts with the same loop counts, in rounds (guest,
//! native, host fn, guest, ...) so that a slow phase of a busy machine hits every side alike.
//! Every figure is the median over the rounds of each round's median of 15 samples:
//!
//! - `pair-64`: `resmem::Memory` allocate + deallocate of 64 B (segment 0 sized for 1024 such
//!   chunks, as in the guest);
//! - `write-<n>` / `read-<n>`: `memcpy` of `n` bytes from a private buffer into a shm chunk /
//!   from the chunk into a private buffer: the copy the host itself does for a guest's call,
//!   and the anchor of the guest's window rows `win-write-<n>` / `win-read-<n>`;
//! - `fill-<n>`: `memset` of `n` bytes of the chunk, the anchor of `win-fill-<n>`;
//! - `first-map`: a `resmem::View` registering an offset in a segment it has not mapped yet
//!   (open, fstat, mmap, trailer check), the anchor of the guest's first `map` of a segment.
//!
//! To show where a guest's time goes, the column `host fn` calls the host's implementation of
//! the same call directly, without wasm (`HostMemory::allocate` etc. on a `ResmemCtxView`): for
//! `write` with a fresh `Vec` of the data, as the canonical ABI hands it over; for `read`
//! dropping the returned `Vec`, which the canonical ABI would copy into the guest. The guest's
//! `method` row (`memory.allocation-strategy`) is the floor of every call on a `memory`.
//!
//! Goals: a guest pair costs at most 2 no-op host calls + 1.5x the native pair; a guest write
//! or read of 1 MiB reaches at least 0.4x the native memcpy bandwidth; through the window,
//! 1 MiB and 64 MiB reach at least 0.8x native and 1 MiB is at least 2x faster than `write`;
//! a first `map` costs at most 2x a native view's first mapping.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use resmem::{AllocationStrategy, Config, Memory};
use resmem_host::bindings::api::{HostMemory, MemoryConfig};
use resmem_host::bindings::types::{AllocationStrategy as WitStrategy, Layout as WitLayout};
use resmem_host::{
    EngineOptions, GuestHost, GuestMemory, GuestState, Policy, ResmemView, RunOutcome,
};
use wasmtime::component::{Component, Resource};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::OutputFile;

const SAMPLES: usize = 15;
const SMALL: Layout = match Layout::from_size_align(64, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("64/8 is a valid layout"),
};
const SIZES: [usize; 4] = [64, 4096, 1 << 20, 64 << 20];
const WINDOW_SIZES: [usize; 3] = [4096, 1 << 20, 64 << 20];
const MIB: usize = 1 << 20;
/// Chunks per `allocate-many` in `pair-64-batch` (as the bench guest's).
const BATCH: u64 = 64;
const LARGEST: usize = 64 << 20;

fn scale() -> f64 {
    std::env::var("RESMEM_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

fn rounds() -> usize {
    std::env::var("RESMEM_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&r: &usize| r > 0)
        .unwrap_or(3)
}

/// Per workload, the median over the rounds of each round's figure.
fn median_of_rounds(rounds: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in rounds {
        for (name, &ns) in round {
            all.entry(name.clone()).or_default().push(ns);
        }
    }
    all.into_iter()
        .map(|(name, mut values)| {
            let m = median(&mut values);
            (name, m)
        })
        .collect()
}

/// The guest's loop counts (see guest/bench), so both sides run the same loops.
fn iters(base: u64, scale: f64) -> u64 {
    ((base as f64 * scale) as u64).max(1)
}

fn io_iters(size: usize, scale: f64) -> u64 {
    iters((64 << 20) / size as u64, scale).min(iters(100_000, scale))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Warm-up, then `SAMPLES` timed loops of `iters` calls; the median ns per call (exactly as
/// the guest measures).
fn per_call(iters: u64, mut op: impl FnMut()) -> f64 {
    for _ in 0..iters.min(1000) {
        op();
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    median(&mut samples)
}

/// Runs the bench guest once; its `bench <name> <ns>` lines as name → ns.
fn run_guest(host: &GuestHost, component: &Component, scale: f64) -> Result<BTreeMap<String, f64>> {
    let (reader, writer) = std::io::pipe()?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(OutputFile::new(File::from(OwnedFd::from(writer))))
        .inherit_stderr()
        .args(&["bench".to_owned(), scale.to_string(), SAMPLES.to_string()]);
    let (outcome, lines) = std::thread::scope(|scope| -> Result<_> {
        // Collects the output while the guest runs; ends at EOF, when the store (and with it
        // the pipe's write end) is dropped.
        let collector = scope.spawn(|| BufReader::new(reader).lines().collect::<Vec<_>>());
        let outcome = host.run_command(component, &mut wasi);
        drop(wasi);
        let lines = collector
            .join()
            .map_err(|_| anyhow::anyhow!("the output reader panicked"))?;
        Ok((outcome?, lines))
    })?;
    ensure!(
        outcome == RunOutcome::Exited(0),
        "the bench guest ended with {outcome:?}"
    );
    let mut results = BTreeMap::new();
    let mut done = false;
    for line in lines {
        let line = line.context("reading the guest's output")?;
        if line == "done" {
            done = true;
            continue;
        }
        let parsed = line
            .strip_prefix("bench ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(name, ns)| Some((name.to_owned(), ns.parse::<f64>().ok()?)));
        match parsed {
            Some((name, ns)) => {
                results.insert(name, ns);
            }
            None => bail!("unexpected guest output: {line}"),
        }
    }
    ensure!(done, "the guest did not finish its workloads");
    let leftovers = resmem::list(host.policy().config())?;
    ensure!(
        leftovers.is_empty(),
        "guest memories left behind: {leftovers:?}"
    );
    Ok(results)
}

/// The native counterparts, same loop counts; name → ns.
fn run_native(scale: f64) -> Result<BTreeMap<String, f64>> {
    let config = Config::default().prefix(&format!("rmwbn{}_", std::process::id()));
    let mut results = BTreeMap::new();

    let pairs = Memory::builder("pairs")
        .config(&config)
        .max_chunk_layout_hint(SMALL)
        .max_number_of_chunks_hint(1024)
        .allocation_strategy(AllocationStrategy::PowerOfTwo)
        .create()?;
    let ns = per_call(iters(100_000, scale), || {
        let chunk = black_box(&pairs).allocate(SMALL).expect("allocate 64 B");
        // SAFETY: allocated from `pairs` with SMALL just above and never used again.
        unsafe { pairs.deallocate(black_box(chunk).offset, SMALL) };
    });
    results.insert("pair-64".to_owned(), ns);
    drop(pairs);

    let big = Layout::from_size_align(LARGEST, 64)?;
    let io = Memory::builder("io")
        .config(&config)
        .max_chunk_layout_hint(big)
        .max_number_of_chunks_hint(2)
        .allocation_strategy(AllocationStrategy::PowerOfTwo)
        .create()?;
    let chunk = io.allocate(big)?;
    let source: Vec<u8> = (0..LARGEST).map(|i| (i * 131 + 7) as u8).collect();
    let mut target = vec![1u8; LARGEST];
    for size in SIZES {
        let count = io_iters(size, scale);
        let ns = per_call(count, || {
            // SAFETY: the chunk is MIB bytes, writable and ours alone; `source` is private
            // memory of at least `size` bytes, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    black_box(source.as_ptr()),
                    black_box(chunk.data_ptr),
                    size,
                )
            };
        });
        results.insert(format!("write-{size}"), ns);
        let ns = per_call(count, || {
            // SAFETY: as above, in the other direction; `target` has MIB bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    black_box(chunk.data_ptr as *const u8),
                    black_box(target.as_mut_ptr()),
                    size,
                )
            };
            black_box(&mut target);
        });
        results.insert(format!("read-{size}"), ns);
        let ns = per_call(count, || {
            // SAFETY: the chunk has LARGEST writable bytes, ours alone.
            unsafe { std::ptr::write_bytes(black_box(chunk.data_ptr), black_box(0x5A), size) };
        });
        results.insert(format!("fill-{size}"), ns);
    }
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), chunk.data_ptr, LARGEST) };
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(chunk.data_ptr, target.as_mut_ptr(), LARGEST) };
    ensure!(target[..] == source[..], "the native copies lost bytes");
    // SAFETY: allocated from `io` with `big`, freed once, not used afterwards.
    unsafe { io.deallocate(chunk.offset, big) };
    drop(io);
    results.insert(
        "first-map".to_owned(),
        native_first_mapping(&config, SAMPLES * 4)?,
    );
    let leftovers = resmem::list(&config)?;
    ensure!(
        leftovers.is_empty(),
        "native memories left behind: {leftovers:?}"
    );
    Ok(results)
}

/// A view's first mapping of a 64 KiB chunk's segment, as the guest's `first-map` measures its
/// `map`: a fresh memory per sample, only the registration timed; median ns.
fn native_first_mapping(config: &Config, samples: usize) -> Result<f64> {
    let layout = Layout::from_size_align(64 << 10, 64)?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("map{i}");
        let memory = Memory::builder(&name)
            .config(config)
            .max_chunk_layout_hint(layout)
            .allocation_strategy(AllocationStrategy::PowerOfTwo)
            .create()?;
        let chunk = memory.allocate(layout)?;
        let view = resmem::View::builder(&name)
            .config(config)
            .open(resmem::AccessMode::Read)?;
        let start = Instant::now();
        // SAFETY: unregistered right below, the address is not used.
        let address = unsafe { view.register_and_translate_offset(chunk.offset)? };
        times.push(start.elapsed().as_nanos() as f64);
        black_box(address);
        // SAFETY: registered just above.
        unsafe { view.unregister_offset(chunk.offset) };
    }
    Ok(median(&mut times))
}

/// The host's implementation of each call, called directly on a `ResmemCtxView` (no wasm, no
/// canonical ABI); name → ns.
fn run_host_fn(scale: f64) -> Result<BTreeMap<String, f64>> {
    fn ok<T>(outcome: wasmtime::Result<Result<T, resmem_host::bindings::types::Error>>) -> T {
        outcome
            .expect("host bug: a handle is missing")
            .expect("the host refused the call")
    }
    let policy = Policy::builder()
        .namespace(&format!("rmwbh{}_", std::process::id()))
        .quotas(bench_quotas())
        .build();
    let config = policy.config().clone();
    let mut guest = GuestState::new(WasiCtxBuilder::new().build(), std::sync::Arc::new(policy));
    let mut state = guest.resmem();
    let borrow = |handle: &Resource<GuestMemory>| Resource::<GuestMemory>::new_borrow(handle.rep());
    let mut results = BTreeMap::new();

    let small = WitLayout { size: 64, align: 8 };
    let pairs = ok(state.create(
        "pairs".to_owned(),
        MemoryConfig {
            max_chunk_layout_hint: small,
            max_number_of_chunks_hint: 1024,
            allocation_strategy: WitStrategy::PowerOfTwo,
        },
    ));
    let ns = per_call(iters(200_000, scale), || {
        black_box(
            state
                .allocation_strategy(borrow(&pairs))
                .expect("host bug: a handle is missing"),
        );
    });
    results.insert("method".to_owned(), ns);
    let ns = per_call(iters(100_000, scale), || {
        let offset = ok(state.allocate(borrow(&pairs), small));
        ok(state.deallocate(borrow(&pairs), black_box(offset)));
    });
    results.insert("pair-64".to_owned(), ns);
    let ns = per_call((iters(100_000, scale) / BATCH).max(1), || {
        let offsets = ok(state.allocate_many(borrow(&pairs), small, BATCH as u32));
        ok(state.deallocate_many(borrow(&pairs), black_box(offsets)));
    }) / BATCH as f64;
    results.insert("pair-64-batch".to_owned(), ns);
    HostMemory::drop(&mut state, pairs)?;

    let big = WitLayout {
        size: LARGEST as u64,
        align: 64,
    };
    let io = ok(state.create(
        "io".to_owned(),
        MemoryConfig {
            max_chunk_layout_hint: big,
            max_number_of_chunks_hint: 2,
            allocation_strategy: WitStrategy::PowerOfTwo,
        },
    ));
    let chunk = ok(state.allocate(borrow(&io), big));
    let source: Vec<u8> = (0..LARGEST).map(|i| (i * 131 + 7) as u8).collect();
    for size in SIZES {
        let count = io_iters(size, scale);
        let ns = per_call(count, || {
            let data = black_box(&source[..size]).to_vec();
            ok(state.write(borrow(&io), chunk, 0, data));
        });
        results.insert(format!("write-{size}"), ns);
        let ns = per_call(count, || {
            let bytes = ok(state.read(borrow(&io), chunk, 0, black_box(size as u64)));
            assert_eq!(bytes.len(), size);
            black_box(bytes);
        });
        results.insert(format!("read-{size}"), ns);
    }
    ok(state.deallocate(borrow(&io), chunk));
    HostMemory::drop(&mut state, io)?;
    drop(guest);
    let leftovers = resmem::list(&config)?;
    ensure!(
        leftovers.is_empty(),
        "host-fn memories left behind: {leftovers:?}"
    );
    Ok(results)
}

/// The default quotas, but for single calls of 64 MiB.
fn bench_quotas() -> resmem_host::Quotas {
    let mut quotas = resmem_host::Quotas::default();
    quotas.io_bytes = LARGEST as u64;
    quotas
}

fn get(results: &BTreeMap<String, f64>, name: &str) -> Result<f64> {
    results
        .get(name)
        .copied()
        .with_context(|| format!("no result for {name}"))
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

fn main() -> Result<()> {
    let scale = scale();
    let rounds = rounds();
    let policy = Policy::builder()
        .namespace(&format!("rmwb{}_", std::process::id()))
        .quotas(bench_quotas())
        .build();
    let host = GuestHost::new(policy, EngineOptions::default())?;
    let component = host.load(resmem_guests::BENCH_WASM)?;
    let (mut guest, mut native, mut host_fn) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..rounds {
        guest.push(run_guest(&host, &component, scale)?);
        native.push(run_native(scale)?);
        host_fn.push(run_host_fn(scale)?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (guest, native, host_fn) = (
        median_of_rounds(&guest),
        median_of_rounds(&native),
        median_of_rounds(&host_fn),
    );

    let mut rows = vec![
        "noop".to_owned(),
        "method".to_owned(),
        "pair-64".to_owned(),
        "pair-64-batch".to_owned(),
    ];
    for size in SIZES {
        rows.push(format!("write-{size}"));
    }
    for size in SIZES {
        rows.push(format!("read-{size}"));
    }
    for kind in ["write", "fill", "read"] {
        for size in WINDOW_SIZES {
            rows.push(format!("win-{kind}-{size}"));
        }
    }
    rows.push("first-map".to_owned());
    println!(
        "\nWASM bridge: medians of {rounds} rounds x {SAMPLES} samples, scale {scale}, {seconds:.1} s"
    );
    println!(
        "{:<16} {:>12} {:>13} {:>8} {:>12} {:>11} {:>11}",
        "workload",
        "guest ns/op",
        "native ns/op",
        "ratio",
        "host fn ns",
        "guest GB/s",
        "native GB/s"
    );
    let dash = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    for name in &rows {
        let g = get(&guest, name)?;
        // The batched pair's anchor is the native pair, per chunk.
        let native_name = name.strip_prefix("win-").unwrap_or(name);
        let n = native
            .get(native_name.strip_suffix("-batch").unwrap_or(native_name))
            .copied();
        let ratio = n.map_or_else(|| "-".to_owned(), |n| format!("{:.2}x", g / n));
        let native_ns = dash(n);
        let host_ns = dash(host_fn.get(name).copied());
        let bytes = name
            .rsplit_once('-')
            .and_then(|(_, size)| size.parse::<usize>().ok())
            .filter(|&size| size >= MIB);
        let (gbs, nbs) = match (bytes, n) {
            (Some(b), Some(n)) => (
                format!("{:.2}", b as f64 / g),
                format!("{:.2}", b as f64 / n),
            ),
            _ => ("".to_owned(), "".to_owned()),
        };
        println!(
            "{name:<16} {g:>12.1} {native_ns:>13} {ratio:>8} {host_ns:>12} {gbs:>11} {nbs:>11}"
        );
    }

    let noop = get(&guest, "noop")?;
    let pair = get(&guest, "pair-64")?;
    let native_pair = get(&native, "pair-64")?;
    let limit = 2.0 * noop + 1.5 * native_pair;
    println!("\ngoals:");
    println!(
        "  guest pair <= 2*noop + 1.5*native pair:  {pair:.1} <= 2*{noop:.1} + 1.5*{native_pair:.1} = {limit:.1} ns?  {}",
        yes_no(pair <= limit),
    );
    let batch = get(&guest, "pair-64-batch")?;
    println!(
        "  batched guest pair (allocate-many/deallocate-many of 64) per chunk <= the same:  {batch:.1} <= {limit:.1} ns?  {}",
        yes_no(batch <= limit),
    );
    let method = get(&guest, "method")?;
    println!(
        "    pair - 2*noop = {:.1} ns; but a `memory` call's floor (method) is {method:.1} ns = noop + {:.1} ns (borrowing the handle); pair - 2*method = {:.1} ns (host fn pair: {:.1} ns)",
        pair - 2.0 * noop,
        method - noop,
        pair - 2.0 * method,
        get(&host_fn, "pair-64")?
    );
    for op in ["write", "read"] {
        let name = format!("{op}-{MIB}");
        let g = MIB as f64 / get(&guest, &name)?;
        let n = MIB as f64 / get(&native, &name)?;
        println!(
            "  guest {op:<5} 1 MiB >= 0.4x native memcpy:  {g:.2} GB/s vs {n:.2} GB/s = {:.2}x?  {}",
            g / n,
            yes_no(g >= 0.4 * n)
        );
    }
    for kind in ["write", "fill", "read"] {
        for size in [MIB, LARGEST] {
            let g = get(&guest, &format!("win-{kind}-{size}"))?;
            let n = get(&native, &format!("{kind}-{size}"))?;
            println!(
                "  window {kind:<5} {:>2} MiB >= 0.8x native:  {:.2} GB/s vs {:.2} GB/s = {:.2}x?  {}",
                size / MIB,
                size as f64 / g,
                size as f64 / n,
                n / g,
                yes_no(n / g >= 0.8)
            );
        }
    }
    for op in ["write", "read"] {
        let copy = get(&guest, &format!("{op}-{MIB}"))?;
        let window = get(&guest, &format!("win-{op}-{MIB}"))?;
        println!(
            "  window {op:<5} 1 MiB >= 2x faster than `{op}`:  {window:.0} ns vs {copy:.0} ns = {:.2}x?  {}",
            copy / window,
            yes_no(copy / window >= 2.0)
        );
    }
    let first = get(&guest, "first-map")?;
    let native_first = get(&native, "first-map")?;
    println!(
        "  first map <= 2x a native view's first mapping:  {:.1} us vs {:.1} us = {:.2}x?  {}",
        first / 1000.0,
        native_first / 1000.0,
        first / native_first,
        yes_no(first <= 2.0 * native_first)
    );
    Ok(())
}
