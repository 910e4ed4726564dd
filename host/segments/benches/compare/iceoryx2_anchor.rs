//! Anchor workloads run on `iceoryx2-cal` 0.10's resizable shared memory, so that
//! `resmem`'s figures can be set beside a well-known implementation.
//!
//! Everything here drives `iceoryx2_cal::resizable_shared_memory::dynamic::DynamicMemory`
//! over the POSIX shared-memory backend (`iceoryx2_cal::shared_memory::posix::Memory`) with
//! the `PoolAllocator`. These are the measurements:
//!
//! * `pair_64`: allocate + deallocate of one 64 B chunk (ns per pair);
//! * `burst_1000`: 1000 allocations followed by 1000 frees (ns per single operation);
//! * `view_register_unregister`: a view registers and unregisters an offset whose segment
//!   stays mapped (ns per pair);
//! * `growth`: an allocation that must create a new segment (ns per allocation);
//! * `first_mapping`: a view's first translation of an offset in a segment it has not
//!   mapped yet (ns per mapping);
//! * `owner_create`: creating a memory, optionally with its first 64 B allocation, so that
//!   an owner that makes segment 0 lazily is also compared on the whole cost (ns per create);
//! * `view_open`: opening a view with zero timeout (ns per open);
//! * `first_write_64mib`: the first write pass and then a warm write pass over a freshly
//!   allocated 64 MiB chunk (ns per byte each).
//!
//! Each function returns one value per sample. Setup and teardown stay outside the timed
//! region. Each memory gets a unique name (process id plus a counter), and dropping the owner
//! removes every segment it created.

use core::alloc::Layout;
use core::time::Duration;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use iceoryx2_bb_elementary::allocation_strategy::AllocationStrategy;
use iceoryx2_bb_elementary_traits::allocator::{Allocate, Deallocate};
use iceoryx2_bb_posix::access_mode::AccessMode;
use iceoryx2_cal::named_concept::{FileName, NamedConceptBuilder};
use iceoryx2_cal::resizable_shared_memory::dynamic::DynamicMemory;
use iceoryx2_cal::resizable_shared_memory::{
    ResizableSharedMemory, ResizableSharedMemoryBuilder, ResizableSharedMemoryView,
    ResizableSharedMemoryViewBuilder,
};
use iceoryx2_cal::shared_memory::{PointerOffset, ShmPointer, posix};
use iceoryx2_cal::shm_allocator::pool_allocator::PoolAllocator;
// iceoryx2-log 0.10 calls an `extern "Rust" fn __internal_default_logger` that only a logger
// crate defines, so the bench must link `iceoryx2-bb-loggers`. Its default is a null logger,
// which keeps logging out of the timings.
use iceoryx2_bb_loggers as _;

/// POSIX shared-memory segment managed by a pool allocator.
type Shm = posix::Memory<PoolAllocator>;
/// The resizable (multi-segment) memory that owns the segments.
type Memory = DynamicMemory<PoolAllocator, Shm>;
/// A read-only view onto [`Memory`].
type View = <Memory as ResizableSharedMemory<PoolAllocator, Shm>>::View;
type MemoryBuilder = <Memory as ResizableSharedMemory<PoolAllocator, Shm>>::MemoryBuilder;
type ViewBuilder = <Memory as ResizableSharedMemory<PoolAllocator, Shm>>::ViewBuilder;

const CHUNK_64: Layout = match Layout::from_size_align(64, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("64/8 is a valid layout"),
};
const BURST: usize = 1000;
const MIB_64: usize = 64 * 1024 * 1024;

static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Returns a name that no other memory in this process or any other process uses.
fn unique_name() -> FileName {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("ice{}_{}", std::process::id(), n);
    FileName::try_from(name.as_str()).expect("generated iceoryx2 name is a valid FileName")
}

/// Creates an owning memory with the given hints under a fresh unique name.
fn create_memory(
    max_chunk: Layout,
    max_chunks: usize,
    strategy: AllocationStrategy,
) -> (FileName, Memory) {
    let name = unique_name();
    let memory = MemoryBuilder::new(&name)
        .max_chunk_layout_hint(max_chunk)
        .max_number_of_chunks_hint(max_chunks)
        .allocation_strategy(strategy)
        .create()
        .expect("iceoryx2 DynamicMemory::create failed");
    (name, memory)
}

/// Memory set-up for the hot-path workloads: 64 B / align 8, 1024 chunks, `PowerOfTwo`.
fn create_hot_memory() -> (FileName, Memory) {
    create_memory(CHUNK_64, 1024, AllocationStrategy::PowerOfTwo)
}

/// Opens a view onto the memory called `name` with zero timeout.
fn open_view(name: &FileName) -> View {
    ViewBuilder::new(name)
        .timeout(Duration::ZERO)
        .open(AccessMode::Read)
        .expect("iceoryx2 DynamicView::open failed")
}

fn ns_per(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// allocate + deallocate of one 64 B (align 8) chunk; ns per pair.
pub fn pair_64(samples: usize, iters: u64) -> Vec<f64> {
    assert!(iters > 0, "pair_64 needs iters > 0");
    let (_name, memory) = create_hot_memory();

    let one_pair = |memory: &Memory| {
        let ptr: ShmPointer = memory
            .allocate(CHUNK_64)
            .expect("iceoryx2 allocate of 64 B failed");
        black_box(ptr.data_ptr);
        // SAFETY: `ptr` was just returned by `memory.allocate(CHUNK_64)`, it is freed once,
        // with the same layout, and it is not used afterwards.
        unsafe { memory.deallocate(ptr, CHUNK_64) };
    };

    // Warm-up (untimed): caches and branch predictors.
    for _ in 0..iters.min(1000) {
        one_pair(&memory);
    }

    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..iters {
            one_pair(black_box(&memory));
        }
        out.push(ns_per(start.elapsed(), iters));
    }
    out
}

/// `rounds` rounds of {1000 allocations of 64 B, then free all 1000}; ns per single operation.
pub fn burst_1000(samples: usize, rounds: u64) -> Vec<f64> {
    assert!(rounds > 0, "burst_1000 needs rounds > 0");
    let (_name, memory) = create_hot_memory();
    let mut held: Vec<ShmPointer> = Vec::with_capacity(BURST);

    let one_round = |memory: &Memory, held: &mut Vec<ShmPointer>| {
        for _ in 0..BURST {
            held.push(
                memory
                    .allocate(CHUNK_64)
                    .expect("iceoryx2 allocate of 64 B failed"),
            );
        }
        for ptr in held.drain(..) {
            // SAFETY: every pointer in `held` came from `memory.allocate(CHUNK_64)` in this
            // round, `drain` hands each out once, so each is freed exactly once with its layout.
            unsafe { memory.deallocate(ptr, CHUNK_64) };
        }
    };

    // Warm-up (untimed).
    one_round(&memory, &mut held);

    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..rounds {
            one_round(black_box(&memory), &mut held);
        }
        out.push(ns_per(start.elapsed(), 2 * BURST as u64 * rounds));
    }
    out
}

/// A view registers and unregisters the offset of a chunk whose segment stays mapped;
/// ns per register+unregister pair.
pub fn view_register_unregister(samples: usize, iters: u64) -> Vec<f64> {
    assert!(iters > 0, "view_register_unregister needs iters > 0");
    let (name, memory) = create_hot_memory();
    let chunk = memory
        .allocate(CHUNK_64)
        .expect("iceoryx2 allocate of 64 B failed");
    let offset: PointerOffset = chunk.offset;
    let view = open_view(&name);

    // SAFETY: `offset` comes from an allocation that stays alive until after the view is
    // dropped. It is unregistered once at the end, so the segment stays mapped meanwhile.
    let base = unsafe { view.register_and_translate_offset(offset) }
        .expect("iceoryx2 view could not map segment 0");
    black_box(base);

    let one_pair = |view: &View| {
        // SAFETY: the view counts registrations per segment. Each register here is matched by
        // the unregister just below, and the outer registration keeps the segment mapped.
        let ptr = unsafe { view.register_and_translate_offset(offset) }
            .expect("iceoryx2 register_and_translate_offset failed");
        black_box(ptr);
        // SAFETY: `offset` was registered on the line above and is unregistered once.
        unsafe { view.unregister_offset(offset) };
    };

    // Warm-up (untimed).
    for _ in 0..iters.min(1000) {
        one_pair(&view);
    }

    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..iters {
            one_pair(black_box(&view));
        }
        out.push(ns_per(start.elapsed(), iters));
    }

    // SAFETY: this matches the initial registration made before the timed loop.
    unsafe { view.unregister_offset(offset) };
    drop(view);
    // SAFETY: `chunk` was allocated from `memory` with CHUNK_64, and the view that used it is
    // gone. It is freed once.
    unsafe { memory.deallocate(chunk, CHUNK_64) };
    out
}

/// A 64 B allocation that has to create a second segment; ns per growing allocation.
pub fn growth(samples: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (_name, memory) = create_memory(CHUNK_64, 1, AllocationStrategy::BestFit);
        let first = memory
            .allocate(CHUNK_64)
            .expect("iceoryx2 allocate of 64 B failed");
        assert_eq!(
            memory.number_of_active_segments(),
            1,
            "segment 0 should be the only one"
        );

        let start = Instant::now();
        let second = memory
            .allocate(black_box(CHUNK_64))
            .expect("iceoryx2 growing allocate failed");
        let elapsed = start.elapsed();
        black_box(second.data_ptr);

        assert_eq!(
            memory.number_of_active_segments(),
            2,
            "the second allocation should have created segment 1"
        );
        out.push(ns_per(elapsed, 1));
        // SAFETY: `second` came from `memory.allocate(CHUNK_64)` and is freed once.
        unsafe { memory.deallocate(second, CHUNK_64) };
        // SAFETY: `first` came from `memory.allocate(CHUNK_64)` and is freed once.
        unsafe { memory.deallocate(first, CHUNK_64) };
        drop(memory);
    }
    out
}

/// A fresh view's first translation of an offset in segment 1, which maps that segment;
/// ns per first mapping.
pub fn first_mapping(samples: usize) -> Vec<f64> {
    let (name, memory) = create_memory(CHUNK_64, 1, AllocationStrategy::BestFit);
    let first = memory
        .allocate(CHUNK_64)
        .expect("iceoryx2 allocate of 64 B failed");
    let second = memory
        .allocate(CHUNK_64)
        .expect("iceoryx2 growing allocate failed");
    assert_eq!(
        second.offset.segment_id().value(),
        1,
        "second chunk should live in segment 1"
    );
    assert_eq!(
        memory.number_of_active_segments(),
        2,
        "owner should hold two segments"
    );
    let offset = second.offset;

    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let view = open_view(&name);
        assert_eq!(
            view.number_of_active_segments(),
            0,
            "a fresh view maps no data segment"
        );

        let start = Instant::now();
        // SAFETY: `offset` belongs to a live allocation of the owner. This view registers it
        // once and unregisters it once below.
        let ptr = unsafe { view.register_and_translate_offset(black_box(offset)) };
        let elapsed = start.elapsed();
        let ptr = ptr.expect("iceoryx2 view could not map segment 1");
        black_box(ptr);

        out.push(ns_per(elapsed, 1));
        // SAFETY: matches the single registration above.
        unsafe { view.unregister_offset(offset) };
        drop(view);
    }

    // SAFETY: `second` came from `memory.allocate(CHUNK_64)`, every view that mapped it is
    // gone, and it is freed once.
    unsafe { memory.deallocate(second, CHUNK_64) };
    // SAFETY: `first` came from `memory.allocate(CHUNK_64)` and is freed once.
    unsafe { memory.deallocate(first, CHUNK_64) };
    out
}

/// Creating a memory, and with `allocate` also its first 64 B allocation; ns per create.
pub fn owner_create(samples: usize, allocate: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let name = unique_name();
        let start = Instant::now();
        let memory = MemoryBuilder::new(&name)
            .max_chunk_layout_hint(CHUNK_64)
            .max_number_of_chunks_hint(1024)
            .allocation_strategy(AllocationStrategy::PowerOfTwo)
            .create()
            .expect("iceoryx2 DynamicMemory::create failed");
        let ptr = allocate.then(|| {
            black_box(&memory)
                .allocate(CHUNK_64)
                .expect("iceoryx2 allocate of 64 B failed")
        });
        let elapsed = start.elapsed();
        out.push(ns_per(elapsed, 1));
        if let Some(ptr) = ptr {
            // SAFETY: `ptr` was just returned by `memory.allocate(CHUNK_64)`, freed once.
            unsafe { memory.deallocate(ptr, CHUNK_64) };
        }
        drop(memory);
    }
    out
}

/// Opening a view (zero timeout) onto one owner; ns per open.
pub fn view_open(samples: usize) -> Vec<f64> {
    let (name, memory) = create_hot_memory();
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let view = ViewBuilder::new(&name)
            .timeout(Duration::ZERO)
            .open(AccessMode::Read);
        let elapsed = start.elapsed();
        let view = view.expect("iceoryx2 DynamicView::open failed");
        out.push(ns_per(elapsed, 1));
        drop(view);
    }
    drop(memory);
    out
}

/// First write pass and then a warm pass over a freshly allocated 64 MiB chunk (which lives in
/// a newly created segment). Returns (first-pass ns/byte, warm-pass ns/byte).
pub fn first_write_64mib(samples: usize) -> (Vec<f64>, Vec<f64>) {
    let big = Layout::from_size_align(MIB_64, 8).expect("64 MiB / align 8 is a valid layout");
    let hint = Layout::from_size_align(4096, 8).expect("4096 / align 8 is a valid layout");
    let mut first = Vec::with_capacity(samples);
    let mut warm = Vec::with_capacity(samples);

    for sample in 0..samples {
        let (_name, memory) = create_memory(hint, 1, AllocationStrategy::BestFit);
        let chunk = memory
            .allocate(big)
            .expect("iceoryx2 allocate of 64 MiB failed");
        assert_eq!(
            chunk.offset.segment_id().value(),
            1,
            "64 MiB chunk should need a new segment"
        );
        let ptr = chunk.data_ptr;
        let value = (sample as u8) | 1;
        let warm_value = value.wrapping_add(2);

        let start = Instant::now();
        // SAFETY: `ptr` points to the start of a live, writable 64 MiB chunk of owner memory
        // that nothing else accesses.
        unsafe { core::ptr::write_bytes(ptr, value, MIB_64) };
        black_box(ptr);
        let first_elapsed = start.elapsed();

        let start = Instant::now();
        // SAFETY: same chunk as above, still allocated and accessed by nothing else.
        unsafe { core::ptr::write_bytes(ptr, warm_value, MIB_64) };
        black_box(ptr);
        let warm_elapsed = start.elapsed();

        let last_byte = ptr.wrapping_add(MIB_64 - 1);
        // SAFETY: `last_byte` is the last byte of the live chunk, initialised just above.
        let last = unsafe { core::ptr::read_volatile(last_byte) };
        assert_eq!(
            last, warm_value,
            "warm pass should have reached the last byte"
        );

        first.push(ns_per(first_elapsed, MIB_64 as u64));
        warm.push(ns_per(warm_elapsed, MIB_64 as u64));

        // SAFETY: `chunk` came from `memory.allocate(big)` and is freed once.
        unsafe { memory.deallocate(chunk, big) };
        drop(memory);
    }
    (first, warm)
}
