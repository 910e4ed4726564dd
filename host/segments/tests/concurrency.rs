//! Several threads on one `Memory` (and one `View`): no chunk is handed out twice, contents
//! survive growth, double frees race safely, and everything is released at the end.

mod common;

use std::alloc::Layout;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Env, Rng, backend_tests, layout};
use resmem::{
    AccessMode, AllocationStrategy, ContentPlacement, Memory, PointerOffset, ShmPointer, View,
};

backend_tests!(all: [
    threads_allocate_free_and_grow_while_views_translate,
    racing_growth_hands_out_distinct_chunks,
    racing_double_frees_succeed_exactly_once,
    view_threads_map_segments_while_the_owner_grows,
    views_open_while_the_owner_replaces_its_current_segment,
]);

// The crate promises that owners, views and chunk pointers can be shared between threads.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Memory>();
    shareable::<View>();
    shareable::<ShmPointer>();
};

const WORKERS: u64 = 4;
const OPS_PER_WORKER: usize = 30_000;
const MAX_HELD: usize = 40;
const MIN_READS: usize = 1_000;
const SIZES: [usize; 9] = [8, 16, 24, 40, 64, 100, 256, 512, 1000];

#[derive(Clone, Copy)]
struct Held {
    chunk: ShmPointer,
    layout: Layout,
    tag: u64,
}

/// Writes `tag` into every whole 8-byte word of the first `len` bytes.
///
/// # Safety
/// The chunk is ours, at least `len` bytes and 8-aligned.
unsafe fn stamp(ptr: *mut u8, len: usize, tag: u64) {
    for word in 0..len / 8 {
        // SAFETY: the caller's promise.
        unsafe { common::write_u64(ptr.add(word * 8), tag) };
    }
}

/// Whether every whole word of the first `len` bytes still holds `tag`.
///
/// # Safety
/// As for [`stamp`].
unsafe fn stamped(ptr: *const u8, len: usize, tag: u64) -> bool {
    // SAFETY: the caller's promise.
    (0..len / 8).all(|word| unsafe { common::read_u64(ptr.add(word * 8)) } == tag)
}

fn worker(memory: &Memory, live: &Mutex<HashMap<u64, u64>>, reads: &AtomicUsize, id: u64) -> usize {
    let mut rng = Rng::new(0x1234 + id);
    let mut held: Vec<Held> = Vec::new();
    let mut counter = 0u64;
    let mut grows = 0;
    let mut next_tag = || {
        counter += 1;
        (id << 48) | counter
    };
    // Run at least OPS_PER_WORKER operations, and on until the readers got their share of
    // the time (bounded, so a starved reader fails the test instead of hanging it).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut op = 0;
    while op < OPS_PER_WORKER
        || (reads.load(Ordering::Relaxed) < MIN_READS && Instant::now() < deadline)
    {
        op += 1;
        let choice = rng.below(10);
        if held.is_empty() || (choice < 5 && held.len() < MAX_HELD) {
            let l = layout(SIZES[rng.below(SIZES.len() as u64) as usize], 8);
            let chunk = memory
                .allocate(l)
                .unwrap_or_else(|e| panic!("worker {id} op {op}: {e}"));
            let tag = next_tag();
            // SAFETY: a fresh chunk of l.size() bytes, 8-aligned, ours alone.
            unsafe { stamp(chunk.data_ptr, l.size(), tag) };
            let previous = live
                .lock()
                .expect("live map")
                .insert(chunk.offset.as_u64(), tag);
            assert_eq!(
                previous, None,
                "worker {id}: {} handed out twice",
                chunk.offset
            );
            held.push(Held {
                chunk,
                layout: l,
                tag,
            });
        } else if choice < 8 || held.len() >= MAX_HELD {
            let h = held.swap_remove(rng.below(held.len() as u64) as usize);
            assert!(
                // SAFETY: ours until freed below.
                unsafe { stamped(h.chunk.data_ptr, h.layout.size(), h.tag) },
                "worker {id}: {} overwritten",
                h.chunk.offset
            );
            assert_eq!(
                live.lock()
                    .expect("live map")
                    .remove(&h.chunk.offset.as_u64()),
                Some(h.tag)
            );
            if op % 2 == 0 {
                memory
                    .try_deallocate(h.chunk.offset)
                    .expect("freeing a live chunk");
            } else {
                // SAFETY: a live chunk of ours, allocated with h.layout, never used again.
                unsafe { memory.deallocate(h.chunk.offset, h.layout) };
            }
        } else {
            let i = rng.below(held.len() as u64) as usize;
            let h = held[i];
            let bigger = layout(h.layout.size() + 8 * (1 + rng.below(64) as usize), 8);
            assert_eq!(
                live.lock()
                    .expect("live map")
                    .remove(&h.chunk.offset.as_u64()),
                Some(h.tag)
            );
            // SAFETY: a live chunk of ours with layout h.layout; the old offset is dropped
            // from `held` on success.
            let grown =
                unsafe { memory.grow(h.chunk.offset, h.layout, bigger, ContentPlacement::Front) }
                    .unwrap_or_else(|e| panic!("worker {id} op {op}: grow: {e}"));
            // SAFETY: the grown chunk is ours and bigger.size() bytes long.
            unsafe {
                assert!(
                    stamped(grown.data_ptr, h.layout.size(), h.tag),
                    "worker {id}: grow lost content"
                );
                stamp(grown.data_ptr, bigger.size(), h.tag);
            }
            let previous = live
                .lock()
                .expect("live map")
                .insert(grown.offset.as_u64(), h.tag);
            assert_eq!(
                previous, None,
                "worker {id}: grown {} handed out twice",
                grown.offset
            );
            held[i] = Held {
                chunk: grown,
                layout: bigger,
                tag: h.tag,
            };
            grows += 1;
        }
    }
    for h in held {
        // SAFETY: ours.
        assert!(unsafe { stamped(h.chunk.data_ptr, h.layout.size(), h.tag) });
        assert_eq!(
            live.lock()
                .expect("live map")
                .remove(&h.chunk.offset.as_u64()),
            Some(h.tag)
        );
        memory
            .try_deallocate(h.chunk.offset)
            .expect("freeing a live chunk");
    }
    grows
}

/// Repeatedly translates a random live chunk while holding the map lock (so its owner cannot
/// free it meanwhile) and checks the tag the owner wrote.
fn reader(
    view: &View,
    live: &Mutex<HashMap<u64, u64>>,
    done: &AtomicBool,
    reads: &AtomicUsize,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    while !done.load(Ordering::Acquire) {
        let map = live.lock().expect("live map");
        if map.is_empty() {
            drop(map);
            std::thread::yield_now();
            continue;
        }
        let k = rng.below(map.len() as u64) as usize;
        let (&raw, &tag) = map.iter().nth(k).expect("k < len");
        let offset = PointerOffset::from_u64(raw);
        // SAFETY: unregistered below, after the read.
        let ptr = unsafe { view.register_and_translate_offset(offset) }
            .unwrap_or_else(|e| panic!("translating live chunk {offset}: {e}"));
        assert_eq!(
            // SAFETY: a live chunk of at least 8 bytes, 8-aligned; its tag is not rewritten while
            // it is in the map.
            unsafe { common::read_u64(ptr) },
            tag,
            "view read of {offset}"
        );
        // SAFETY: registered above.
        unsafe { view.unregister_offset(offset) };
        drop(map);
        reads.fetch_add(1, Ordering::Relaxed);
    }
}

fn threads_allocate_free_and_grow_while_views_translate(env: &Env) {
    let memory = env.memory("storm", 8, 4, AllocationStrategy::PowerOfTwo);
    let view = View::builder("storm")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let live = Mutex::new(HashMap::new());
    let done = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let grows = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (view, live, done, reads) = (&view, &live, &done, &reads);
                s.spawn(move || reader(view, live, done, reads, 77 + r))
            })
            .collect();
        let workers: Vec<_> = (0..WORKERS)
            .map(|id| {
                let (memory, live, reads) = (&memory, &live, &reads);
                s.spawn(move || worker(memory, live, reads, id))
            })
            .collect();
        let grows: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().expect("reader");
        }
        grows
    });
    let reads = reads.into_inner();
    assert!(grows > 1000, "only {grows} grows");
    assert!(reads >= MIN_READS, "the readers got only {reads} reads");
    assert!(live.lock().expect("live map").is_empty());
    assert_eq!(
        memory.number_of_active_segments(),
        1,
        "every old segment was released"
    );
    assert_eq!(
        view.number_of_active_segments(),
        1,
        "the view keeps only its newest segment"
    );
    assert!(
        memory.current_segment().value() > 0,
        "the storm made the memory grow"
    );
}

fn racing_growth_hands_out_distinct_chunks(env: &Env) {
    for strategy in [AllocationStrategy::PowerOfTwo, AllocationStrategy::BestFit] {
        let name = format!("race{strategy:?}");
        let memory = env.memory(&name, 8, 1, strategy);
        let per_thread = 2_000;
        let all: Vec<ShmPointer> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..WORKERS)
                .map(|id| {
                    let memory = &memory;
                    s.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let p = memory.allocate(layout(8, 8)).expect("allocate");
                                // SAFETY: ours, 8 bytes.
                                unsafe { common::write_u64(p.data_ptr, (id << 32) | i) };
                                p
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("allocator thread"))
                .collect()
        });
        let distinct: HashSet<u64> = all.iter().map(|p| p.offset.as_u64()).collect();
        assert_eq!(
            distinct.len(),
            all.len(),
            "{strategy:?}: a chunk was handed out twice"
        );
        let addresses: HashSet<usize> = all.iter().map(|p| p.data_ptr as usize).collect();
        assert_eq!(
            addresses.len(),
            all.len(),
            "{strategy:?}: two chunks share an address"
        );
        for (n, p) in all.iter().enumerate() {
            let (id, i) = (n / per_thread as usize, n % per_thread as usize);
            assert_eq!(
                // SAFETY: ours.
                unsafe { common::read_u64(p.data_ptr) },
                ((id as u64) << 32) | i as u64
            );
        }
        assert!(memory.number_of_active_segments() > 1);
        let freed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for part in all.chunks(all.len() / WORKERS as usize) {
                let (memory, freed) = (&memory, &freed);
                s.spawn(move || {
                    for p in part {
                        memory.try_deallocate(p.offset).expect("free");
                        freed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(freed.load(Ordering::Relaxed), all.len());
        assert_eq!(memory.number_of_active_segments(), 1, "{strategy:?}");
    }
}

fn racing_double_frees_succeed_exactly_once(env: &Env) {
    let memory = env.memory("double", 8, 64, AllocationStrategy::Static);
    for round in 0..200 {
        let chunks: Vec<ShmPointer> = (0..64)
            .map(|_| memory.allocate(layout(8, 8)).expect("allocate"))
            .collect();
        let successes = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                let (memory, chunks, successes) = (&memory, &chunks, &successes);
                s.spawn(move || {
                    for p in chunks {
                        match memory.try_deallocate(p.offset) {
                            Ok(()) => {
                                successes.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => assert_eq!(e, resmem::DeallocError::NotAllocated),
                        }
                    }
                });
            }
        });
        assert_eq!(successes.load(Ordering::Relaxed), 64, "round {round}");
        // The free list is intact: all 64 buckets come back, each once.
        let again: HashSet<u64> = (0..64)
            .map(|_| {
                memory
                    .allocate(layout(8, 8))
                    .expect("allocate")
                    .offset
                    .as_u64()
            })
            .collect();
        assert_eq!(again.len(), 64);
        assert_eq!(
            memory.allocate(layout(8, 8)),
            Err(resmem::AllocError::OutOfMemory)
        );
        for raw in again {
            memory
                .try_deallocate(PointerOffset::from_u64(raw))
                .expect("free");
        }
    }
    assert_eq!(memory.number_of_active_segments(), 1);
}

fn view_threads_map_segments_while_the_owner_grows(env: &Env) {
    // Best fit from one bucket: segment n holds n + 1 buckets, so 1_500 chunks need ~55
    // segments, each created while the view threads are mapping the earlier ones.
    const CHUNKS: u64 = 1_500;
    let memory = env.memory("mapper", 8, 1, AllocationStrategy::BestFit);
    let view = View::builder("mapper")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let published: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let translations = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..WORKERS {
            let (view, published, done, translations) = (&view, &published, &done, &translations);
            s.spawn(move || {
                let mut rng = Rng::new(0xbeef + t);
                let mut registered: Vec<(PointerOffset, *const u8, u64)> = Vec::new();
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let snapshot_len = published.lock().expect("published").len();
                    if finished && translations.load(Ordering::Relaxed) >= 10_000 {
                        break;
                    }
                    if snapshot_len == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    // Mostly the newest chunks, which sit in the newest segments.
                    let i = if rng.below(2) == 0 {
                        snapshot_len - 1 - rng.below(snapshot_len.min(16) as u64) as usize
                    } else {
                        rng.below(snapshot_len as u64) as usize
                    };
                    let offset = PointerOffset::from_u64(published.lock().expect("published")[i]);
                    // SAFETY: unregistered below; the owner frees nothing while this runs.
                    let ptr = unsafe { view.register_and_translate_offset(offset) }
                        .unwrap_or_else(|e| panic!("view thread {t}: {offset}: {e}"));
                    // SAFETY: a live 8-byte chunk whose value was written before publication.
                    assert_eq!(unsafe { common::read_u64(ptr) }, i as u64, "{offset}");
                    translations.fetch_add(1, Ordering::Relaxed);
                    registered.push((offset, ptr, i as u64));
                    // Hold a few registrations across later mappings, then drop a random one.
                    if registered.len() > 8 || (finished && !registered.is_empty()) {
                        let (offset, ptr, value) =
                            registered.swap_remove(rng.below(registered.len() as u64) as usize);
                        assert_eq!(
                            // SAFETY: still registered, so still mapped.
                            unsafe { common::read_u64(ptr) },
                            value,
                            "{offset} after later mappings"
                        );
                        // SAFETY: registered above; ptr is not used afterwards.
                        unsafe { view.unregister_offset(offset) };
                    }
                }
                for (offset, _, _) in registered {
                    // SAFETY: registered above and unused from here on.
                    unsafe { view.unregister_offset(offset) };
                }
            });
        }
        let mut chunks = Vec::new();
        for i in 0..CHUNKS {
            let p = memory.allocate(layout(8, 8)).expect("allocate");
            // SAFETY: ours, 8 bytes.
            unsafe { common::write_u64(p.data_ptr, i) };
            published.lock().expect("published").push(p.offset.as_u64());
            chunks.push(p);
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
        done.store(true, Ordering::Release);
        chunks
    });
    let segments = memory.number_of_active_segments();
    assert!(segments > 40, "only {segments} segments");
    // Every registration is gone: only the newest mapping is kept.
    assert_eq!(view.number_of_active_segments(), 1);
    let newest = published
        .lock()
        .expect("published")
        .last()
        .copied()
        .expect("published");
    assert_eq!(
        PointerOffset::from_u64(newest).segment_id(),
        memory.current_segment(),
        "the last chunk is in the current segment"
    );
    for raw in published.into_inner().expect("published") {
        memory
            .try_deallocate(PointerOffset::from_u64(raw))
            .expect("free");
    }
    assert_eq!(memory.number_of_active_segments(), 1);
}

fn views_open_while_the_owner_replaces_its_current_segment(env: &Env) {
    // Every step creates a new current segment and releases the previous one, so a view's
    // header check may see a current id whose segment is just being released.
    const STEPS: usize = 1_500;
    const MIN_OPENS: usize = 200;
    let memory = env.memory("churn", 8, 1, AllocationStrategy::BestFit);
    let done = AtomicBool::new(false);
    let opened = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (done, opened) = (&done, &opened);
            s.spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let view = View::builder("churn")
                        .config(&env.config)
                        .open(AccessMode::Read)
                        .unwrap_or_else(|e| panic!("open during churn: {e}"));
                    assert!(view.is_owner_alive());
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let mut held = memory.allocate(layout(8, 8)).expect("allocate");
        // At least STEPS replacements, and on until the views opened often enough (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut step = 0;
        while step < STEPS
            || (opened.load(Ordering::Relaxed) < MIN_OPENS && Instant::now() < deadline)
        {
            step += 1;
            let next = memory
                .allocate(layout(8 * (step + 1), 8))
                .expect("allocate a larger chunk");
            assert_ne!(next.offset.segment_id(), held.offset.segment_id());
            memory.try_deallocate(held.offset).expect("free");
            held = next;
            assert_eq!(memory.number_of_active_segments(), 1);
        }
        done.store(true, Ordering::Release);
        memory.try_deallocate(held.offset).expect("free");
    });
    let opened = opened.into_inner();
    assert!(
        opened >= MIN_OPENS,
        "only {opened} views opened during the churn"
    );
    assert_eq!(
        env.objects(),
        vec![
            env.segment_name("churn", memory.current_segment().value()),
            env.mgmt_name("churn")
        ]
    );
}
