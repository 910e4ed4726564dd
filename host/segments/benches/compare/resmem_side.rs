//! The same workloads as `iceoryx2_anchor`, on resmem (POSIX shm backend, pool allocator).

use std::alloc::Layout;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use resmem::{AccessMode, AllocationStrategy, Config, Memory, ShmPointer, View};

use crate::harness::{per_call, per_setup};

const CHUNK_64: Layout = match Layout::from_size_align(64, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("64/8 is a valid layout"),
};
const BURST: usize = 1000;
const MIB_64: usize = 64 * 1024 * 1024;

fn config() -> Config {
    Config::default().prefix(&format!("rmbench{}_", std::process::id()))
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("m{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn create_memory(
    config: &Config,
    chunk: Layout,
    chunks: usize,
    strategy: AllocationStrategy,
) -> Memory {
    Memory::builder(&unique_name())
        .config(config)
        .max_chunk_layout_hint(chunk)
        .max_number_of_chunks_hint(chunks)
        .allocation_strategy(strategy)
        .create()
        .expect("resmem create failed")
}

fn hot_memory() -> Memory {
    create_memory(&config(), CHUNK_64, 1024, AllocationStrategy::PowerOfTwo)
}

fn open_view(memory: &Memory) -> View {
    View::builder(memory.name())
        .config(memory.config())
        .open(AccessMode::Read)
        .expect("resmem view open failed")
}

fn free(memory: &Memory, chunk: ShmPointer) {
    // SAFETY: every caller passes a chunk it allocated from `memory` and never uses again.
    unsafe { memory.deallocate(chunk.offset, CHUNK_64) };
}

pub fn pair_64(samples: usize, iters: u64) -> Vec<f64> {
    let memory = hot_memory();
    per_call(samples, iters, || {
        let chunk = black_box(&memory)
            .allocate(CHUNK_64)
            .expect("allocate 64 B");
        free(&memory, black_box(chunk));
    })
}

/// The same pair, run by `threads` threads at once on one memory; ns per pair per thread.
pub fn pair_64_threads(samples: usize, iters: u64, threads: usize) -> Vec<f64> {
    let memory = hot_memory();
    let per_thread: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    per_call(samples, iters, || {
                        let chunk = black_box(&memory).allocate(CHUNK_64).expect("allocate");
                        free(&memory, black_box(chunk));
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    (0..samples)
        .map(|i| per_thread.iter().map(|t| t[i]).sum::<f64>() / threads as f64)
        .collect()
}

pub fn burst_1000(samples: usize, rounds: u64) -> Vec<f64> {
    let memory = hot_memory();
    let mut held = Vec::with_capacity(BURST);
    per_call(samples, rounds, || {
        for _ in 0..BURST {
            held.push(memory.allocate(CHUNK_64).expect("allocate 64 B"));
        }
        for chunk in held.drain(..) {
            free(&memory, chunk);
        }
    })
    .into_iter()
    .map(|per_round| per_round / (2 * BURST) as f64)
    .collect()
}

pub fn view_register_unregister(samples: usize, iters: u64) -> Vec<f64> {
    let memory = hot_memory();
    let chunk = memory.allocate(CHUNK_64).expect("allocate 64 B");
    let view = open_view(&memory);
    // SAFETY: the chunk outlives the view; this registration is undone below, after the loop.
    unsafe { view.register_and_translate_offset(chunk.offset) }.expect("map segment 0");
    let result = per_call(samples, iters, || {
        // SAFETY: registered and unregistered right away; the chunk stays allocated.
        let ptr = unsafe { black_box(&view).register_and_translate_offset(chunk.offset) };
        black_box(ptr.expect("register"));
        // SAFETY: matches the registration above.
        unsafe { view.unregister_offset(chunk.offset) };
    });
    // SAFETY: matches the registration before the loop.
    unsafe { view.unregister_offset(chunk.offset) };
    drop(view);
    free(&memory, chunk);
    result
}

pub fn growth(samples: usize) -> Vec<f64> {
    let config = config();
    per_setup(
        samples,
        |_| {
            let memory = create_memory(&config, CHUNK_64, 1, AllocationStrategy::BestFit);
            let first = memory.allocate(CHUNK_64).expect("allocate 64 B");
            (memory, first)
        },
        |(memory, _)| memory.allocate(CHUNK_64).expect("growing allocate"),
        |(memory, first), second| {
            assert_eq!(memory.number_of_active_segments(), 2);
            free(&memory, second);
            free(&memory, first);
        },
    )
}

pub fn first_mapping(samples: usize) -> Vec<f64> {
    let memory = create_memory(&config(), CHUNK_64, 1, AllocationStrategy::BestFit);
    let first = memory.allocate(CHUNK_64).expect("allocate 64 B");
    let second = memory.allocate(CHUNK_64).expect("growing allocate");
    assert_eq!(second.offset.segment_id().value(), 1);
    let result = per_setup(
        samples,
        |_| open_view(&memory),
        // SAFETY: the chunk stays allocated; the registration is undone in the check below.
        |view| unsafe { view.register_and_translate_offset(second.offset) },
        |view, ptr| {
            black_box(ptr.expect("map segment 1"));
            assert_eq!(view.number_of_active_segments(), 1);
            // SAFETY: matches the registration of the timed call.
            unsafe { view.unregister_offset(second.offset) };
        },
    );
    free(&memory, second);
    free(&memory, first);
    result
}

pub fn owner_create(samples: usize, allocate: bool) -> Vec<f64> {
    let config = config();
    per_setup(
        samples,
        |_| Memory::builder(&unique_name()).config(&config),
        |builder| {
            let memory = builder
                .clone()
                .max_chunk_layout_hint(CHUNK_64)
                .max_number_of_chunks_hint(1024)
                .allocation_strategy(AllocationStrategy::PowerOfTwo)
                .create()
                .expect("create");
            let chunk = allocate.then(|| {
                black_box(&memory)
                    .allocate(CHUNK_64)
                    .expect("allocate 64 B")
            });
            (memory, chunk)
        },
        |_, (memory, chunk)| {
            if let Some(chunk) = chunk {
                free(&memory, chunk);
            }
        },
    )
}

pub fn view_open(samples: usize) -> Vec<f64> {
    let memory = hot_memory();
    per_setup(
        samples,
        |_| {
            View::builder(memory.name())
                .config(memory.config())
                .timeout(Duration::ZERO)
        },
        |builder| builder.clone().open(AccessMode::Read),
        |_, view| drop(view.expect("open")),
    )
}

/// First and warm write pass over a fresh 64 MiB segment; with `prefault` the segment is
/// created with MAP_POPULATE. Returns (first ns/byte, warm ns/byte).
pub fn first_write_64mib(samples: usize, prefault: bool) -> (Vec<f64>, Vec<f64>) {
    let big = Layout::from_size_align(MIB_64, 8).expect("layout");
    let hint = Layout::from_size_align(4096, 8).expect("layout");
    let config = config().prefault(prefault);
    let mut warm = Vec::with_capacity(samples);
    let first = per_setup(
        samples,
        |sample| {
            let memory = create_memory(&config, hint, 1, AllocationStrategy::BestFit);
            let chunk = memory.allocate(big).expect("allocate 64 MiB");
            assert_eq!(chunk.offset.segment_id().value(), 1);
            (memory, chunk, (sample as u8) | 1)
        },
        // SAFETY: the chunk is 64 MiB, writable and ours alone.
        |(_, chunk, value)| unsafe { std::ptr::write_bytes(chunk.data_ptr, *value, MIB_64) },
        |(memory, chunk, value), ()| {
            let warm_pass = per_setup(
                1,
                |_| (),
                // SAFETY: as above, the same chunk.
                |()| unsafe {
                    std::ptr::write_bytes(chunk.data_ptr, value.wrapping_add(2), MIB_64)
                },
                |(), ()| {},
            );
            warm.push(warm_pass[0] / MIB_64 as f64);
            // SAFETY: last byte of the chunk, written just above.
            let last = unsafe { chunk.data_ptr.add(MIB_64 - 1).read_volatile() };
            assert_eq!(last, value.wrapping_add(2));
            // SAFETY: allocated from `memory` with `big`, freed once.
            unsafe { memory.deallocate(chunk.offset, big) };
        },
    );
    (
        first.into_iter().map(|ns| ns / MIB_64 as f64).collect(),
        warm,
    )
}
