//! Growth: new segments by count, size and alignment under every strategy, `grow()`, release
//! of old segments (owner and view side), the 256-live-segment limit and id reuse, limits and
//! hint errors, and the bump allocator.

mod common;

use std::collections::BTreeMap;

use common::{Env, backend_tests, layout, page, sid};
use resmem::allocator::{MAX_CHUNKS, MAX_SEGMENT_SIZE};
use resmem::{
    AccessMode, AllocError, AllocationStrategy, AllocatorKind, ContentPlacement, CreateError,
    DeallocError, GrowError, Memory, PointerOffset, ShmPointer, View,
};

use AllocationStrategy::{BestFit, PowerOfTwo, Static};
use ContentPlacement::{Back, Front};

backend_tests!(all: [
    growth_by_count_power_of_two,
    growth_by_count_best_fit,
    growth_by_size,
    growth_by_size_and_count_at_once,
    growth_by_alignment,
    static_never_grows,
    grow_in_place_front_and_back,
    grow_into_new_segment_front_and_back,
    grow_would_shrink_leaves_the_chunk_alone,
    grow_of_a_chunk_in_an_older_segment,
    grow_of_invalid_offsets_is_refused,
    owner_releases_old_segments_in_forward_order,
    owner_releases_old_segments_in_reverse_order,
    view_releases_old_segments_in_forward_order,
    view_releases_old_segments_in_reverse_order,
    live_segment_limit_and_round_robin_id_reuse,
    bucket_size_of_dead_segments_is_zero,
    alignment_and_size_limits_are_typed_errors,
    create_rejects_unrepresentable_hints,
    try_deallocate_checks_its_offset,
    translate_covers_exactly_live_payloads,
    bump_growth_by_size_and_alignment,
    bump_resets_when_empty,
    bump_grows_the_last_chunk_in_place,
]);

const U64: std::alloc::Layout = std::alloc::Layout::new::<u64>();

fn seg(p: &ShmPointer) -> u8 {
    p.offset.segment_id().value()
}

fn alloc(memory: &Memory, size: usize, align: usize) -> ShmPointer {
    memory
        .allocate(layout(size, align))
        .unwrap_or_else(|e| panic!("allocate({size}, {align}): {e}"))
}

fn free(memory: &Memory, p: ShmPointer) {
    memory
        .try_deallocate(p.offset)
        .expect("freeing a live chunk");
}

/// Allocates `n` 8-byte chunks; returns them and how many landed in each segment.
fn allocate_many(memory: &Memory, n: usize) -> (Vec<ShmPointer>, BTreeMap<u8, usize>) {
    let chunks: Vec<ShmPointer> = (0..n).map(|_| alloc(memory, 8, 8)).collect();
    let mut per_segment = BTreeMap::new();
    for p in &chunks {
        *per_segment.entry(seg(p)).or_default() += 1;
    }
    (chunks, per_segment)
}

fn growth_by_count_power_of_two(env: &Env) {
    let memory = env.memory("count", 8, 2, PowerOfTwo);
    assert_eq!(memory.bucket_size(sid(0)), 8);
    assert_eq!(memory.number_of_active_segments(), 1);
    let (chunks, per_segment) = allocate_many(&memory, 2 + 4 + 8 + 1);
    // Full segments double their bucket count: 2, 4, 8, 16.
    assert_eq!(
        per_segment,
        BTreeMap::from([(0, 2), (1, 4), (2, 8), (3, 1)])
    );
    assert_eq!(memory.number_of_active_segments(), 4);
    assert_eq!(memory.current_segment(), sid(3));
    for id in 0..4 {
        assert_eq!(memory.bucket_size(sid(id)), 8, "segment {id}");
    }
    // Segment 3 has 16 buckets: 15 more fit before segment 4 appears.
    let (more, per_segment) = allocate_many(&memory, 15);
    assert_eq!(per_segment, BTreeMap::from([(3, 15)]));
    assert_eq!(memory.number_of_active_segments(), 4);
    for p in chunks.into_iter().chain(more) {
        free(&memory, p);
    }
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(memory.current_segment(), sid(3));
}

fn growth_by_count_best_fit(env: &Env) {
    let memory = env.memory("count", 8, 2, BestFit);
    let (chunks, per_segment) = allocate_many(&memory, 2 + 3 + 4 + 5 + 1);
    // One more bucket per segment: 2, 3, 4, 5, 6.
    assert_eq!(
        per_segment,
        BTreeMap::from([(0, 2), (1, 3), (2, 4), (3, 5), (4, 1)])
    );
    assert_eq!(memory.number_of_active_segments(), 5);
    for id in 0..5 {
        assert_eq!(memory.bucket_size(sid(id)), 8, "segment {id}");
    }
    for p in chunks {
        free(&memory, p);
    }
    assert_eq!(memory.number_of_active_segments(), 1);
}

fn growth_by_size(env: &Env) {
    for (strategy, sizes) in [(PowerOfTwo, [32, 128, 1024]), (BestFit, [24, 104, 1000])] {
        let name = format!("size{strategy:?}");
        let memory = env.memory(&name, 8, 2, strategy);
        let keep = alloc(&memory, 8, 8);
        assert_eq!(seg(&keep), 0);
        let a = alloc(&memory, 20, 1);
        assert_eq!(seg(&a), 1);
        assert_eq!(memory.bucket_size(sid(1)), sizes[0], "{strategy:?}");
        assert_eq!(memory.number_of_active_segments(), 2);
        let b = alloc(&memory, 100, 4);
        assert_eq!(seg(&b), 2);
        assert_eq!(memory.bucket_size(sid(2)), sizes[1], "{strategy:?}");
        let c = alloc(&memory, 1000, 8);
        assert_eq!(seg(&c), 3);
        assert_eq!(memory.bucket_size(sid(3)), sizes[2], "{strategy:?}");
        // Smaller requests are served by the big buckets of the current segment.
        let d = alloc(&memory, 8, 8);
        assert_eq!(seg(&d), 3);
        assert_eq!(memory.number_of_active_segments(), 4);
        for p in [keep, a, b, c, d] {
            free(&memory, p);
        }
        assert_eq!(memory.number_of_active_segments(), 1);
        assert_eq!(memory.current_segment(), sid(3));
    }
}

fn growth_by_size_and_count_at_once(env: &Env) {
    // A full segment and a larger request: both dimensions grow in one new segment.
    for (strategy, chunks, size) in [(PowerOfTwo, 4, 32), (BestFit, 3, 24)] {
        let memory = env.memory(&format!("both{strategy:?}"), 8, 2, strategy);
        let (held, _) = allocate_many(&memory, 2);
        let big = alloc(&memory, 20, 8);
        assert_eq!(seg(&big), 1);
        assert_eq!(memory.bucket_size(sid(1)), size);
        let (rest, per_segment) = allocate_many(&memory, chunks);
        assert_eq!(
            per_segment,
            BTreeMap::from([(1, chunks - 1), (2, 1)]),
            "{strategy:?}"
        );
        for p in held.into_iter().chain(rest).chain([big]) {
            free(&memory, p);
        }
        assert_eq!(memory.number_of_active_segments(), 1);
    }
}

fn growth_by_alignment(env: &Env) {
    for strategy in [PowerOfTwo, BestFit] {
        let memory = env.memory(&format!("align{strategy:?}"), 8, 2, strategy);
        let keep = alloc(&memory, 8, 8);
        let a = alloc(&memory, 8, 64);
        assert_eq!(seg(&a), 1);
        // The bucket is the size rounded up to the new alignment.
        assert_eq!(memory.bucket_size(sid(1)), 64);
        assert_eq!(a.offset.offset() % 64, 0);
        assert_eq!(a.data_ptr as usize % 64, 0);
        let b = alloc(&memory, 8, 64);
        assert_eq!(seg(&b), 1);
        assert_eq!(b.data_ptr as usize % 64, 0);
        let c = alloc(&memory, 16, page());
        assert_eq!(seg(&c), 2);
        assert_eq!(memory.bucket_size(sid(2)), page());
        assert_eq!(c.data_ptr as usize % page(), 0);
        assert_eq!(memory.number_of_active_segments(), 3);
        for p in [keep, a, b, c] {
            free(&memory, p);
        }
        assert_eq!(memory.number_of_active_segments(), 1);
    }
}

fn static_never_grows(env: &Env) {
    let memory = env.memory("static", 8, 2, Static);
    assert_eq!(memory.allocation_strategy(), Static);
    let a = alloc(&memory, 8, 8);
    assert_eq!(
        memory.allocate(layout(9, 1)),
        Err(AllocError::OutOfMemory),
        "too large"
    );
    assert_eq!(
        memory.allocate(layout(8, 16)),
        Err(AllocError::OutOfMemory),
        "too aligned"
    );
    let b = alloc(&memory, 4, 4);
    assert_eq!(
        memory.allocate(U64),
        Err(AllocError::OutOfMemory),
        "no bucket left"
    );
    // SAFETY: `a` is a live 8-byte chunk of this memory.
    let grown = unsafe { memory.grow(a.offset, U64, layout(16, 8), Front) };
    assert_eq!(grown, Err(GrowError::OutOfMemory));
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(memory.current_segment(), sid(0));
    free(&memory, b);
    let c = alloc(&memory, 8, 8);
    assert_eq!(
        (seg(&c), c.offset.offset()),
        (0, b.offset.offset()),
        "the freed bucket is reused"
    );
    free(&memory, a);
    free(&memory, c);
}

fn grow_in_place_front_and_back(env: &Env) {
    let memory = env.memory("inplace", 32, 4, PowerOfTwo);
    let a = alloc(&memory, 8, 8);
    // SAFETY: the chunk is ours and 8 bytes long (its bucket is 32).
    unsafe { common::fill(a.data_ptr, 8, 1) };
    // SAFETY: `a` is a live chunk allocated with (8, 8).
    let front = unsafe { memory.grow(a.offset, layout(8, 8), layout(24, 8), Front) }.expect("grow");
    assert_eq!(front, a, "in place: same offset and address");
    // SAFETY: the chunk is now 24 bytes.
    unsafe {
        assert_eq!(common::bytes(front.data_ptr, 8), common::pattern(8, 1));
        common::fill(front.data_ptr, 24, 50);
    }
    // SAFETY: `front` is a live chunk of layout (24, 8).
    let back =
        unsafe { memory.grow(front.offset, layout(24, 8), layout(32, 8), Back) }.expect("grow");
    assert_eq!(back, a);
    assert_eq!(
        // SAFETY: the chunk is now 32 bytes.
        unsafe { common::bytes(back.data_ptr.add(8), 24) },
        common::pattern(24, 50)
    );
    assert_eq!(memory.number_of_active_segments(), 1);
    free(&memory, back);
}

fn grow_into_new_segment_front_and_back(env: &Env) {
    let memory = env.memory("moving", 16, 2, PowerOfTwo);
    let a = alloc(&memory, 16, 8);
    // SAFETY: ours, 16 bytes.
    unsafe { common::fill(a.data_ptr, 16, 9) };
    // SAFETY: `a` is live with layout (16, 8).
    let moved =
        unsafe { memory.grow(a.offset, layout(16, 8), layout(40, 8), Front) }.expect("grow");
    assert_eq!(seg(&moved), 1);
    assert_eq!(memory.bucket_size(sid(1)), 64);
    assert_eq!(
        // SAFETY: the new chunk is 40 bytes.
        unsafe { common::bytes(moved.data_ptr, 16) },
        common::pattern(16, 9)
    );
    // The old chunk was segment 0's last: segment 0 is gone.
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(memory.bucket_size(sid(0)), 0);
    assert_eq!(
        memory.try_deallocate(a.offset),
        Err(DeallocError::InvalidOffset)
    );

    let b = alloc(&memory, 16, 8);
    assert_eq!(seg(&b), 1);
    // SAFETY: ours, 16 bytes.
    unsafe { common::fill(b.data_ptr, 16, 77) };
    // SAFETY: `b` is live with layout (16, 8).
    let back = unsafe { memory.grow(b.offset, layout(16, 8), layout(100, 8), Back) }.expect("grow");
    assert_eq!(seg(&back), 2);
    assert_eq!(memory.bucket_size(sid(2)), 128);
    // SAFETY: the new chunk is 100 bytes; a fresh segment is zero-filled.
    unsafe {
        assert_eq!(
            common::bytes(back.data_ptr.add(84), 16),
            common::pattern(16, 77)
        );
        assert!(common::bytes(back.data_ptr, 84).iter().all(|&x| x == 0));
    }
    // `b` was returned by the grow: freeing it again is a double free.
    assert_eq!(
        memory.try_deallocate(b.offset),
        Err(DeallocError::NotAllocated)
    );
    assert_eq!(
        memory.number_of_active_segments(),
        2,
        "segment 1 still holds `moved`"
    );
    free(&memory, moved);
    assert_eq!(memory.number_of_active_segments(), 1);
    free(&memory, back);
}

fn grow_would_shrink_leaves_the_chunk_alone(env: &Env) {
    let memory = env.memory("shrink", 32, 2, PowerOfTwo);
    let a = alloc(&memory, 32, 8);
    // SAFETY: ours, 32 bytes.
    unsafe { common::fill(a.data_ptr, 32, 3) };
    for placement in [Front, Back] {
        // SAFETY: `a` is live with layout (32, 8).
        let r = unsafe { memory.grow(a.offset, layout(32, 8), layout(31, 8), placement) };
        assert_eq!(r, Err(GrowError::GrowWouldShrink));
    }
    assert_eq!(
        // SAFETY: still ours, 32 bytes.
        unsafe { common::bytes(a.data_ptr, 32) },
        common::pattern(32, 3)
    );
    free(&memory, a);
}

fn grow_of_a_chunk_in_an_older_segment(env: &Env) {
    let memory = env.memory("older", 16, 1, BestFit);
    let a = alloc(&memory, 8, 8);
    let b = alloc(&memory, 8, 8);
    assert_eq!((seg(&a), seg(&b)), (0, 1));
    // SAFETY: ours, 8 bytes.
    unsafe { common::fill(a.data_ptr, 8, 21) };
    // Fits a's bucket: grows in place inside the retired segment 0.
    // SAFETY: `a` is live with layout (8, 8).
    let same = unsafe { memory.grow(a.offset, layout(8, 8), layout(16, 8), Back) }.expect("grow");
    assert_eq!(same, a);
    assert_eq!(
        // SAFETY: now 16 bytes.
        unsafe { common::bytes(same.data_ptr.add(8), 8) },
        common::pattern(8, 21)
    );
    assert_eq!(memory.current_segment(), sid(1));
    // Does not fit: moves into a new segment 2; segment 0 goes with its last chunk.
    // SAFETY: `same` is live with layout (16, 8).
    let moved =
        unsafe { memory.grow(same.offset, layout(16, 8), layout(48, 8), Front) }.expect("grow");
    assert_eq!(seg(&moved), 2);
    assert_eq!(memory.bucket_size(sid(2)), 48);
    assert_eq!(
        // SAFETY: 48 bytes now.
        unsafe { common::bytes(moved.data_ptr.add(8), 8) },
        common::pattern(8, 21)
    );
    assert_eq!(memory.bucket_size(sid(0)), 0);
    assert_eq!(memory.number_of_active_segments(), 2);
    free(&memory, b);
    assert_eq!(memory.number_of_active_segments(), 1);
    free(&memory, moved);
}

fn grow_of_invalid_offsets_is_refused(env: &Env) {
    let memory = env.memory("badgrow", 16, 2, PowerOfTwo);
    let a = alloc(&memory, 16, 8);
    for bogus in [
        PointerOffset::new(sid(9), 0),  // never created
        PointerOffset::new(sid(0), 32), // beyond the payload
        PointerOffset::new(sid(0), 24), // chunk would end beyond the payload
    ] {
        // SAFETY: grow checks segment liveness and bounds before touching anything.
        let r = unsafe { memory.grow(bogus, layout(16, 8), layout(32, 8), Front) };
        assert_eq!(r, Err(GrowError::InvalidOffset), "{bogus}");
    }
    assert_eq!(memory.number_of_active_segments(), 1);
    free(&memory, a);
}

/// Segments 0, 1, 2 holding [a0], [a1, a1b], [a2]; 2 is current.
fn three_segments(env: &Env) -> (Memory, [ShmPointer; 4]) {
    let memory = env.memory("three", 8, 1, BestFit);
    let chunks = [0; 4].map(|_| alloc(&memory, 8, 8));
    assert_eq!(chunks.map(|p| seg(&p)), [0, 1, 1, 2]);
    assert_eq!(memory.number_of_active_segments(), 3);
    (memory, chunks)
}

fn owner_releases_old_segments_in_forward_order(env: &Env) {
    let (memory, [a0, a1, a1b, a2]) = three_segments(env);
    free(&memory, a0);
    assert_eq!(memory.number_of_active_segments(), 2);
    assert_eq!(memory.bucket_size(sid(0)), 0);
    assert!(
        !env.backend()
            .exists(&env.segment_name("three", 0))
            .expect("exists")
    );
    free(&memory, a1);
    assert_eq!(
        memory.number_of_active_segments(),
        2,
        "segment 1 still holds a1b"
    );
    free(&memory, a1b);
    assert_eq!(memory.number_of_active_segments(), 1);
    free(&memory, a2);
    assert_eq!(
        memory.number_of_active_segments(),
        1,
        "the current segment stays"
    );
    assert_eq!(memory.current_segment(), sid(2));
    assert_eq!(
        env.objects(),
        vec![env.segment_name("three", 2), env.mgmt_name("three")]
    );
}

fn owner_releases_old_segments_in_reverse_order(env: &Env) {
    let (memory, [a0, a1, a1b, a2]) = three_segments(env);
    free(&memory, a2);
    assert_eq!(memory.number_of_active_segments(), 3);
    free(&memory, a1b);
    assert_eq!(memory.number_of_active_segments(), 3);
    free(&memory, a1);
    assert_eq!(memory.number_of_active_segments(), 2);
    free(&memory, a0);
    assert_eq!(memory.number_of_active_segments(), 1);
    // The current segment still serves allocations.
    let again = alloc(&memory, 8, 8);
    assert_eq!(seg(&again), 2);
    free(&memory, again);
}

fn view_releases_old_segments_in_forward_order(env: &Env) {
    let (memory, chunks) = three_segments(env);
    let view = View::builder("three")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    assert_eq!(view.number_of_active_segments(), 0);
    let order = [chunks[0], chunks[1], chunks[3]];
    for p in order {
        // SAFETY: unregistered below.
        unsafe { view.register_and_translate_offset(p.offset) }.expect("register");
    }
    assert_eq!(view.number_of_active_segments(), 3);
    for (p, expected) in order.iter().zip([2, 1, 1]) {
        // SAFETY: registered above; the address is not used.
        unsafe { view.unregister_offset(p.offset) };
        assert_eq!(view.number_of_active_segments(), expected);
    }
    drop(view);
    for p in chunks {
        free(&memory, p);
    }
}

fn view_releases_old_segments_in_reverse_order(env: &Env) {
    let (memory, chunks) = three_segments(env);
    let view = View::builder("three")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let order = [chunks[3], chunks[1], chunks[0]];
    for p in order {
        // SAFETY: unregistered below.
        unsafe { view.register_and_translate_offset(p.offset) }.expect("register");
    }
    assert_eq!(view.number_of_active_segments(), 3);
    // The newest segment stays mapped after its last offset; older ones go.
    for (p, expected) in order.iter().zip([3, 2, 1]) {
        // SAFETY: registered above; the address is not used.
        unsafe { view.unregister_offset(p.offset) };
        assert_eq!(view.number_of_active_segments(), expected);
    }
    for p in chunks {
        free(&memory, p);
    }
}

fn live_segment_limit_and_round_robin_id_reuse(env: &Env) {
    assert_eq!(Memory::max_number_of_reallocations(), 256);
    let memory = env.memory("limit", 8, 1, BestFit);
    // One chunk of a new, larger size per step: segment i holds exactly one chunk.
    let mut chunks: Vec<Option<ShmPointer>> = Vec::new();
    for i in 0..256usize {
        let p = alloc(&memory, 8 * (i + 1), 8);
        assert_eq!(
            seg(&p),
            i as u8,
            "the first 256 segments get ids 0, 1, 2, ..."
        );
        assert_eq!(memory.bucket_size(sid(i as u8)), 8 * (i + 1));
        chunks.push(Some(p));
    }
    assert_eq!(memory.number_of_active_segments(), 256);
    assert_eq!(memory.current_segment(), sid(255));
    assert_eq!(
        memory.allocate(layout(8 * 257, 8)),
        Err(AllocError::MaxReallocationsReached)
    );
    // The limit only concerns new segments: segment 255 has a second bucket.
    let fits = alloc(&memory, 8, 8);
    assert_eq!(seg(&fits), 255);
    assert_eq!(
        memory.allocate(U64),
        Err(AllocError::MaxReallocationsReached)
    );
    let victim = chunks[7].expect("live");
    // SAFETY: ours, 64 bytes.
    unsafe { common::fill(victim.data_ptr, 64, 13) };
    // SAFETY: `victim` is live with layout (64, 8).
    let r = unsafe { memory.grow(victim.offset, layout(64, 8), layout(8 * 300, 8), Front) };
    assert_eq!(r, Err(GrowError::MaxReallocationsReached));
    assert_eq!(
        // SAFETY: untouched and still ours.
        unsafe { common::bytes(victim.data_ptr, 64) },
        common::pattern(64, 13)
    );

    let mut release = |id: usize| free(&memory, chunks[id].take().expect("live"));
    release(5);
    release(10);
    assert_eq!(memory.number_of_active_segments(), 254);
    assert_eq!(memory.bucket_size(sid(5)), 0);
    // New ids continue after the newest (255), wrap, and skip live ones: 5, then 10.
    let mut next_size = 8 * 300;
    let mut grow_once = |expected: u8| {
        next_size += 8;
        let p = alloc(&memory, next_size, 8);
        assert_eq!(seg(&p), expected);
        assert_eq!(memory.bucket_size(sid(expected)), next_size);
        p
    };
    let n5 = grow_once(5);
    let n10 = grow_once(10);
    assert_eq!(
        memory.allocate(layout(8 * 400, 8)),
        Err(AllocError::MaxReallocationsReached)
    );
    free(&memory, chunks[3].take().expect("live"));
    free(&memory, chunks[200].take().expect("live"));
    // After the newest (10): 200 comes before the wrap to 3.
    let n200 = grow_once(200);
    let n3 = grow_once(3);
    assert_eq!(memory.number_of_active_segments(), 256);
    assert_eq!(memory.current_segment(), sid(3));

    for p in chunks
        .into_iter()
        .flatten()
        .chain([fits, n5, n10, n200, n3])
    {
        free(&memory, p);
    }
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(
        env.objects(),
        vec![env.segment_name("limit", 3), env.mgmt_name("limit")]
    );
}

fn bucket_size_of_dead_segments_is_zero(env: &Env) {
    let memory = env.memory("dead", 8, 1, PowerOfTwo);
    for id in [1, 2, 100, 255] {
        assert_eq!(memory.bucket_size(sid(id)), 0, "never created: {id}");
    }
    let a = alloc(&memory, 8, 8);
    let b = alloc(&memory, 8, 8);
    assert_eq!(memory.bucket_size(sid(1)), 8);
    free(&memory, a);
    assert_eq!(memory.bucket_size(sid(0)), 0, "released");
    free(&memory, b);
    assert_eq!(
        memory.bucket_size(sid(1)),
        8,
        "current segments stay alive when empty"
    );
}

fn alignment_and_size_limits_are_typed_errors(env: &Env) {
    for strategy in [Static, BestFit, PowerOfTwo] {
        let memory = env.memory(&format!("limits{strategy:?}"), 8, 2, strategy);
        // Static answers every request segment 0 cannot serve with OutOfMemory (the issue's
        // rule); the growing strategies say precisely why no segment could serve it.
        let (alignment_error, size_error) = if strategy == Static {
            (AllocError::OutOfMemory, AllocError::OutOfMemory)
        } else {
            (
                AllocError::ExceedsMaxSupportedAlignment,
                AllocError::SizeTooLarge,
            )
        };
        let too_aligned = layout(8, page() * 2);
        assert_eq!(memory.allocate(too_aligned), Err(alignment_error));
        for size in [MAX_SEGMENT_SIZE + 1, 1 << 45, isize::MAX as usize - 7] {
            assert_eq!(memory.allocate(layout(size, 8)), Err(size_error), "{size}");
        }
        let a = alloc(&memory, 8, 8);
        // SAFETY: `a` is live with layout U64; grow checks the request before anything else.
        unsafe {
            assert_eq!(
                memory.grow(a.offset, U64, too_aligned, Front),
                Err(GrowError::ExceedsMaxSupportedAlignment)
            );
            assert_eq!(
                memory.grow(a.offset, U64, layout(1 << 45, 8), Back),
                Err(GrowError::SizeTooLarge)
            );
        }
        assert_eq!(memory.number_of_active_segments(), 1);
        free(&memory, a);
    }
    // Within the per-request limit, but the next segment would exceed the maximum: two
    // buckets of 2^43 + 8 (best fit) or of 2^44 (power of two) bytes.
    for strategy in [BestFit, PowerOfTwo] {
        let memory = env.memory(&format!("huge{strategy:?}"), 8, 2, strategy);
        assert_eq!(
            memory.allocate(layout((1 << 43) + 1, 8)),
            Err(AllocError::SizeTooLarge)
        );
        assert_eq!(memory.number_of_active_segments(), 1);
        assert_eq!(
            env.objects(),
            vec![
                env.segment_name(&format!("huge{strategy:?}"), 0),
                env.mgmt_name(&format!("huge{strategy:?}"))
            ]
        );
    }
    // A page-aligned request is fine.
    let memory = env.memory("pagealigned", 8, 2, PowerOfTwo);
    let p = alloc(&memory, 8, page());
    assert_eq!(p.data_ptr as usize % page(), 0);
    free(&memory, p);
}

fn create_rejects_unrepresentable_hints(env: &Env) {
    let cases: [(std::alloc::Layout, usize); 5] = [
        (layout(8, page() * 2), 1),
        (layout(8, 8), usize::MAX),
        (layout(1, 1), MAX_CHUNKS + 1),
        (layout(1 << 40, 8), 1 << 10),
        (layout(isize::MAX as usize - 7, 8), 1),
    ];
    for kind in [AllocatorKind::Pool, AllocatorKind::Bump] {
        for (i, (chunk, chunks)) in cases.into_iter().enumerate() {
            let r = env
                .builder("hint")
                .allocator(kind)
                .max_chunk_layout_hint(chunk)
                .max_number_of_chunks_hint(chunks)
                .create();
            assert_eq!(
                r.map(|_| ()),
                Err(CreateError::InvalidHint),
                "{kind:?} case {i}"
            );
            assert_eq!(
                env.objects(),
                Vec::<String>::new(),
                "nothing is left behind"
            );
        }
    }
    // Zero chunks means one; a zero-sized layout means one byte.
    let memory = env
        .builder("zero")
        .max_chunk_layout_hint(layout(0, 1))
        .max_number_of_chunks_hint(0)
        .allocation_strategy(Static)
        .create()
        .expect("create");
    assert_eq!(memory.bucket_size(sid(0)), 1);
    let a = alloc(&memory, 1, 1);
    assert_eq!(memory.allocate(layout(1, 1)), Err(AllocError::OutOfMemory));
    free(&memory, a);
}

fn try_deallocate_checks_its_offset(env: &Env) {
    let memory = env.memory("checked", 16, 4, PowerOfTwo);
    let a = alloc(&memory, 16, 8);
    let b = alloc(&memory, 16, 8);
    for bogus in [
        PointerOffset::new(sid(0), a.offset.offset() + 1), // inside a chunk
        PointerOffset::new(sid(0), 64),                    // beyond the last bucket
        PointerOffset::new(sid(0), PointerOffset::MAX_OFFSET),
        PointerOffset::new(sid(1), 0), // dead segment
    ] {
        assert_eq!(
            memory.try_deallocate(bogus),
            Err(DeallocError::InvalidOffset),
            "{bogus}"
        );
    }
    // Buckets never handed out, or already returned, are not allocated.
    assert_eq!(
        memory.try_deallocate(PointerOffset::new(sid(0), 48)),
        Err(DeallocError::NotAllocated)
    );
    free(&memory, a);
    assert_eq!(
        memory.try_deallocate(a.offset),
        Err(DeallocError::NotAllocated)
    );
    // Nothing else changed: b is still allocated and freeable once.
    free(&memory, b);
    assert_eq!(
        memory.try_deallocate(b.offset),
        Err(DeallocError::NotAllocated)
    );
    assert_eq!(memory.number_of_active_segments(), 1);
}

fn translate_covers_exactly_live_payloads(env: &Env) {
    let memory = env.memory("translate", 16, 2, PowerOfTwo);
    let a = alloc(&memory, 16, 8);
    assert_eq!(memory.translate(a.offset), Some(a.data_ptr));
    // Inside the payload (32 bytes), even where nothing is allocated.
    let inside = memory
        .translate(PointerOffset::new(sid(0), 31))
        .expect("in the payload");
    assert_eq!(
        inside as usize - a.data_ptr as usize,
        31 - a.offset.offset() as usize
    );
    assert_eq!(memory.translate(PointerOffset::new(sid(0), 32)), None);
    assert_eq!(memory.translate(PointerOffset::new(sid(1), 0)), None);
    free(&memory, a);
}

fn bump_memory(env: &Env, name: &str, strategy: AllocationStrategy) -> Memory {
    env.builder(name)
        .allocator(AllocatorKind::Bump)
        .max_chunk_layout_hint(layout(64, 8))
        .max_number_of_chunks_hint(2)
        .allocation_strategy(strategy)
        .create()
        .expect("create a bump memory")
}

fn bump_growth_by_size_and_alignment(env: &Env) {
    for (strategy, grown) in [(PowerOfTwo, 256), (BestFit, 228)] {
        let memory = bump_memory(env, &format!("bump{strategy:?}"), strategy);
        assert_eq!(memory.allocator_kind(), AllocatorKind::Bump);
        // A bump segment serves any chunk up to its whole payload.
        assert_eq!(memory.bucket_size(sid(0)), 128);
        let a = alloc(&memory, 100, 1);
        let b = alloc(&memory, 20, 4);
        assert_eq!((seg(&a), a.offset.offset()), (0, 0));
        assert_eq!((seg(&b), b.offset.offset()), (0, 100));
        // 100 more bytes do not fit: payload 128 + 100.
        let c = alloc(&memory, 100, 1);
        assert_eq!((seg(&c), c.offset.offset()), (1, 0));
        assert_eq!(memory.bucket_size(sid(1)), grown, "{strategy:?}");
        // A page-aligned chunk cannot follow c: 8 bytes plus a page of padding.
        let d = alloc(&memory, 8, page());
        assert_eq!(seg(&d), 2);
        assert_eq!(d.data_ptr as usize % page(), 0);
        let expected = match strategy {
            PowerOfTwo => (grown + 8 + page() - 1).next_power_of_two(),
            _ => grown + 8 + page() - 1,
        };
        assert_eq!(memory.bucket_size(sid(2)), expected);
        assert_eq!(memory.number_of_active_segments(), 3);
        for p in [a, b, c, d] {
            free(&memory, p);
        }
        assert_eq!(memory.number_of_active_segments(), 1);
    }
    let memory = bump_memory(env, "bumpstatic", Static);
    let a = alloc(&memory, 128, 1);
    assert_eq!(memory.allocate(layout(1, 1)), Err(AllocError::OutOfMemory));
    free(&memory, a);
}

fn bump_resets_when_empty(env: &Env) {
    let memory = bump_memory(env, "reset", Static);
    let a = alloc(&memory, 40, 8);
    let b = alloc(&memory, 40, 8);
    assert_eq!((a.offset.offset(), b.offset.offset()), (0, 40));
    free(&memory, a);
    // Single chunks are not reused while others live.
    let c = alloc(&memory, 40, 8);
    assert_eq!(c.offset.offset(), 80);
    assert_eq!(memory.allocate(layout(40, 8)), Err(AllocError::OutOfMemory));
    free(&memory, b);
    free(&memory, c);
    // All returned: the segment starts over.
    let d = alloc(&memory, 128, 8);
    assert_eq!(d.offset.offset(), 0);
    free(&memory, d);
    assert_eq!(
        memory.try_deallocate(d.offset),
        Err(DeallocError::InvalidOffset)
    );
}

fn bump_grows_the_last_chunk_in_place(env: &Env) {
    let memory = bump_memory(env, "bumpgrow", PowerOfTwo);
    let a = alloc(&memory, 8, 8);
    let b = alloc(&memory, 8, 8);
    // SAFETY: ours, 8 bytes each.
    unsafe {
        common::fill(a.data_ptr, 8, 1);
        common::fill(b.data_ptr, 8, 2);
    }
    // The last chunk extends in place, up to the end of the payload.
    // SAFETY: `b` is live with layout (8, 8).
    let b2 = unsafe { memory.grow(b.offset, layout(8, 8), layout(64, 8), Back) }.expect("grow");
    assert_eq!(b2, b);
    assert_eq!(
        // SAFETY: b is 64 bytes now.
        unsafe { common::bytes(b2.data_ptr.add(56), 8) },
        common::pattern(8, 2)
    );
    let c = alloc(&memory, 8, 8);
    assert_eq!(
        (seg(&c), c.offset.offset()),
        (0, 72),
        "the cursor moved past the grown chunk"
    );
    // An earlier chunk moves; here into a new segment.
    // SAFETY: `a` is live with layout (8, 8).
    let a2 = unsafe { memory.grow(a.offset, layout(8, 8), layout(64, 8), Front) }.expect("grow");
    assert_ne!(a2.offset, a.offset);
    assert_eq!(
        // SAFETY: a2 is 64 bytes.
        unsafe { common::bytes(a2.data_ptr, 8) },
        common::pattern(8, 1)
    );
    for p in [a2, b2, c] {
        free(&memory, p);
    }
    assert_eq!(memory.number_of_active_segments(), 1);
}
