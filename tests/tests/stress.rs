//! Stress: 8 threads × 100 000 operations (allocate, grow, deallocate, mixed) on one `Memory`
//! at a time, over every strategy and both allocators, while 2 peer *processes* keep opening
//! offsets of that memory through their views: holding some registered while the owner grows
//! into new segments, verifying fresh ones, re-checking the held ones, releasing them.
//!
//! Checked: no chunk is ever handed out twice (each thread stamps every chunk it owns with
//! `(thread, sequence)` at both ends and verifies the stamp before it grows or frees it, and
//! re-verifies all its chunks every 64 operations), no segment is unmapped while a
//! peer has offsets registered in it (the held chunks are re-read after the owner and the
//! peer have moved on to newer segments), and no deadlock (every reply and the whole run are
//! bounded by timeouts). Prints operations per second.

mod support;

use std::alloc::Layout;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resmem::{AllocationStrategy, AllocatorKind, ContentPlacement, Memory, PointerOffset};
use resmem_e2e::ChunkSpec;
use support::*;

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 100_000;
/// The whole run, all phases, must end within this (no deadlock, no crawl).
const DEADLINE: Duration = Duration::from_secs(240);

/// One phase per strategy/allocator pair; the phases share the 100 000 operations per thread.
const PHASES: [(AllocationStrategy, AllocatorKind, usize); 4] = [
    (AllocationStrategy::PowerOfTwo, AllocatorKind::Pool, 30_000),
    (AllocationStrategy::BestFit, AllocatorKind::Pool, 30_000),
    (AllocationStrategy::Static, AllocatorKind::Pool, 10_000),
    (AllocationStrategy::PowerOfTwo, AllocatorKind::Bump, 30_000),
];

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// A chunk a worker owns: where, how large, and the stamp it carries.
struct Held {
    offset: PointerOffset,
    ptr: *mut u8,
    size: usize,
    stamp: u64,
}

/// Writes `stamp` into the first and the last 8 bytes of the chunk.
///
/// # Safety
/// `ptr` must be a chunk of at least `size >= 16` bytes, 8-aligned, owned by the caller.
unsafe fn stamp(ptr: *mut u8, size: usize, stamp: u64) {
    // SAFETY: the caller's promise; both words lie inside the chunk and are 8-aligned
    // (sizes are multiples of 8).
    unsafe {
        (ptr as *mut u64).write(stamp);
        (ptr.add(size - 8) as *mut u64).write(!stamp);
    }
}

/// Whether the chunk still carries `stamp` at both ends.
///
/// # Safety
/// As for [`stamp`].
unsafe fn stamped(ptr: *const u8, size: usize, stamp: u64) -> bool {
    // SAFETY: the caller's promise.
    unsafe {
        (ptr as *const u64).read() == stamp && (ptr.add(size - 8) as *const u64).read() == !stamp
    }
}

#[derive(Default)]
struct Counts {
    allocs: u64,
    grows: u64,
    frees: u64,
    failed: u64,
}

/// `ops` operations of thread `t`; panics on the first chunk whose stamp changed.
fn worker(memory: &Memory, t: u64, ops: usize, seed: u64) -> Counts {
    let mut held: Vec<Held> = Vec::new();
    let mut counts = Counts::default();
    let mut x = seed.max(1);
    let mut seq = 0_u64;
    let mut next_stamp = || {
        seq += 1;
        (t << 48) | seq
    };
    for op in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Mostly small chunks, sometimes large ones (new, larger segments).
        let size = if x.is_multiple_of(64) {
            16 << ((x >> 8) % 12)
        } else {
            16 << ((x >> 8) % 5)
        };
        match x % 8 {
            0..=3 if held.len() < 48 => match memory.allocate(layout(size)) {
                Ok(chunk) => {
                    let s = next_stamp();
                    // SAFETY: a fresh chunk of `size` bytes, ours.
                    unsafe { stamp(chunk.data_ptr, size, s) };
                    held.push(Held {
                        offset: chunk.offset,
                        ptr: chunk.data_ptr,
                        size,
                        stamp: s,
                    });
                    counts.allocs += 1;
                }
                Err(_) => counts.failed += 1,
            },
            4 if !held.is_empty() => {
                let i = (x >> 20) as usize % held.len();
                let h = &held[i];
                assert!(
                    // SAFETY: our chunk.
                    unsafe { stamped(h.ptr, h.size, h.stamp) },
                    "thread {t} op {op}: chunk {:?} overwritten before grow",
                    h.offset
                );
                let new_size = h.size * 2;
                let placement = if x & (1 << 30) == 0 {
                    ContentPlacement::Front
                } else {
                    ContentPlacement::Back
                };
                // SAFETY: our chunk, allocated with `layout(h.size)`.
                match unsafe { memory.grow(h.offset, layout(h.size), layout(new_size), placement) }
                {
                    Ok(chunk) => {
                        // The old bytes moved: the front stamp sits where the placement put it.
                        let at = if placement == ContentPlacement::Front {
                            0
                        } else {
                            new_size - h.size
                        };
                        // SAFETY: the grown chunk is ours and `new_size` bytes long.
                        let moved = unsafe { (chunk.data_ptr.add(at) as *const u64).read() };
                        assert_eq!(moved, h.stamp, "thread {t} op {op}: grow lost the contents");
                        let s = next_stamp();
                        // SAFETY: as above.
                        unsafe { stamp(chunk.data_ptr, new_size, s) };
                        held[i] = Held {
                            offset: chunk.offset,
                            ptr: chunk.data_ptr,
                            size: new_size,
                            stamp: s,
                        };
                        counts.grows += 1;
                    }
                    Err(_) => counts.failed += 1,
                }
            }
            _ if !held.is_empty() => {
                let h = held.swap_remove((x >> 20) as usize % held.len());
                assert!(
                    // SAFETY: our chunk.
                    unsafe { stamped(h.ptr, h.size, h.stamp) },
                    "thread {t} op {op}: chunk {:?} overwritten before free",
                    h.offset
                );
                // SAFETY: ours, allocated with this layout, not used afterwards.
                unsafe { memory.deallocate(h.offset, layout(h.size)) };
                counts.frees += 1;
            }
            _ => {}
        }
        if op.is_multiple_of(64) {
            for h in &held {
                assert!(
                    // SAFETY: our chunks.
                    unsafe { stamped(h.ptr, h.size, h.stamp) },
                    "thread {t} op {op}: chunk {:?} overwritten",
                    h.offset
                );
            }
        }
    }
    for h in held {
        assert!(
            // SAFETY: our chunk.
            unsafe { stamped(h.ptr, h.size, h.stamp) },
            "thread {t}: chunk {:?} overwritten",
            h.offset
        );
        // SAFETY: ours, not used afterwards.
        unsafe { memory.deallocate(h.offset, layout(h.size)) };
        counts.frees += 1;
    }
    counts
}

/// Drives one serve peer until `stop`: lends it chunks to hold while the workers churn, makes
/// it map fresh (newer) segments, re-checks the held ones, releases them. Returns the number
/// of requests answered.
fn lender(memory: &Memory, peer: &mut Peer, p: u64, stop: &AtomicBool, start: &Barrier) -> u64 {
    let mut requests = 0;
    start.wait();
    let mut seed = 1_000_000 * (p + 1);
    let mut round = 0_usize;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        let mut lent: Vec<Owned> = Vec::new();
        for size in [64, 4096, 1 << (12 + round % 6)] {
            seed += 1;
            if let Some(owned) = try_alloc_filled(memory, size, seed) {
                lent.push(owned);
            }
        }
        if lent.is_empty() {
            continue;
        }
        let specs: Vec<ChunkSpec> = lent.iter().map(|o| o.spec).collect();
        let reply = peer.ok(&format!("hold {}", join(&specs)));
        assert_eq!(reply, format!("held {}", specs.len()));
        // Meanwhile the owner moves on: fresh chunks, perhaps in newer segments, which the
        // peer maps (retiring its older mappings unless something is registered in them).
        for _ in 0..2 {
            seed += 1;
            if let Some(fresh) = try_alloc_filled(memory, 1 << (6 + round % 10), seed) {
                let summary = peer.verify(&[fresh.spec]);
                assert_eq!(summary.offsets, 1);
                fresh.free(memory);
                requests += 1;
            }
        }
        peer.ok("check-held");
        peer.ok("release");
        requests += 3;
        for owned in lent {
            owned
                .check(owned.spec.seed)
                .expect("the owner's copy of a lent chunk");
            owned.free(memory);
        }
    }
    requests
}

fn try_alloc_filled(memory: &Memory, len: usize, seed: u64) -> Option<Owned> {
    let chunk = memory.allocate(layout(len)).ok()?;
    // SAFETY: a fresh chunk of at least `len` bytes, ours until freed.
    resmem_e2e::fill_pattern(
        unsafe { std::slice::from_raw_parts_mut(chunk.data_ptr, len) },
        seed,
    );
    Some(Owned {
        spec: ChunkSpec::new(chunk.offset, len, seed),
        ptr: chunk.data_ptr,
    })
}

#[test]
fn eight_threads_and_two_peer_processes_hammer_one_memory() {
    let scope = Scope::new("str");
    let config = scope.config();
    let started = Instant::now();
    let mut total_ops = 0_u64;
    let mut peer_requests = 0_u64;
    for (phase, &(strategy, allocator, ops)) in PHASES.iter().enumerate() {
        let name = format!("stress{phase}");
        let memory = Memory::builder(&name)
            .config(&config)
            .max_chunk_layout_hint(layout(256))
            .max_number_of_chunks_hint(if strategy == AllocationStrategy::Static {
                8 * 256
            } else {
                64
            })
            .allocation_strategy(strategy)
            .allocator(allocator)
            .create()
            .expect("create");
        let mut peers: Vec<Peer> = (0..2).map(|_| serve(&scope, &name, "read")).collect();
        let stop = AtomicBool::new(false);
        let done = AtomicU64::new(0);
        let phase_start = Instant::now();
        // Workers and lenders start together.
        let start = Barrier::new(THREADS + peers.len());
        let (counts, requests) = std::thread::scope(|s| {
            let memory = &memory;
            let start = &start;
            let lenders: Vec<_> = peers
                .iter_mut()
                .enumerate()
                .map(|(p, peer)| {
                    let stop = &stop;
                    s.spawn(move || lender(memory, peer, p as u64, stop, start))
                })
                .collect();
            let workers: Vec<_> = (0..THREADS as u64)
                .map(|t| {
                    let done = &done;
                    s.spawn(move || {
                        start.wait();
                        let c = worker(memory, t, ops, 0x5EED_0000 + t * 7919 + phase as u64);
                        done.fetch_add(1, Ordering::Release);
                        c
                    })
                })
                .collect();
            while done.load(Ordering::Acquire) < THREADS as u64 {
                assert!(
                    started.elapsed() < DEADLINE,
                    "no progress: deadlock or crawl"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let counts: Vec<Counts> = workers
                .into_iter()
                .map(|w| w.join().expect("worker"))
                .collect();
            stop.store(true, Ordering::Release);
            let requests: u64 = lenders.into_iter().map(|l| l.join().expect("lender")).sum();
            (counts, requests)
        });
        let elapsed = phase_start.elapsed();
        // Operations attempted (the loop iterations), whatever their outcome.
        let ops_done = (THREADS * ops) as u64;
        let allocs: u64 = counts.iter().map(|c| c.allocs).sum();
        let grows: u64 = counts.iter().map(|c| c.grows).sum();
        let frees: u64 = counts.iter().map(|c| c.frees).sum();
        let failed: u64 = counts.iter().map(|c| c.failed).sum();
        eprintln!(
            "stress {strategy:?}/{allocator:?}: {ops_done} ops in {elapsed:.2?} = {:.0} ops/s \
             (alloc {allocs}, grow {grows}, free {frees}, failed {failed}); peers answered {requests} requests",
            ops_done as f64 / elapsed.as_secs_f64()
        );
        assert!(
            allocs > ops_done / 10,
            "too few allocations succeeded: {allocs}"
        );
        assert!(requests > 0, "the peers were never exercised");
        if strategy != AllocationStrategy::Static {
            assert!(grows > 0, "no grow succeeded");
        }
        // Every chunk is back: the owner is down to its current segment.
        assert_eq!(memory.number_of_active_segments(), 1);
        for mut peer in peers.drain(..) {
            peer.ok("quit");
            assert!(peer.wait(STEP).success());
        }
        total_ops += ops_done;
        peer_requests += requests;
        drop(memory);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "stress total: {total_ops} ops by {THREADS} threads in {elapsed:.2?} = {:.0} ops/s; \
         {peer_requests} peer requests",
        total_ops as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(total_ops, (THREADS * OPS_PER_THREAD) as u64);
    scope.assert_clean();
}
