//! Segment 0 is made by the first allocation, not by `create` (issue 16: owner creation pays
//! for one object, the management segment). Hints and the budget are still checked at create,
//! views see "no segment yet" until the first allocation, and `eager_first_segment` /
//! `Config::prefault` bring the old behaviour back.

mod common;

use std::sync::{Arc, Barrier};

use common::{Env, backend_tests, layout, sid};
use resmem::{
    AccessMode, AllocError, AllocationStrategy, ByteBudget, CreateError, DeallocError, Memory,
    OpenError, PointerOffset, SegmentBudget, View,
};

use AllocationStrategy::BestFit;

backend_tests!(
    all: [
        first_allocation_makes_segment_zero,
        eager_first_segment_makes_it_at_create,
        prefault_makes_it_at_create,
        budget_is_reserved_at_create,
        racing_first_allocations_make_one_segment,
        dropping_an_unused_memory_leaves_nothing,
    ],
    os: [
        failed_first_segment_is_retried_by_the_next_allocation,
    ],
);

fn open_view(env: &Env, name: &str) -> View {
    View::builder(name)
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("opening a view")
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

fn first_allocation_makes_segment_zero(env: &Env) {
    let memory = env.memory("lazy", 8, 16, BestFit);
    assert_eq!(env.objects(), vec![env.mgmt_name("lazy")]);
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(memory.current_segment(), sid(0));
    assert_eq!(memory.bucket_size(sid(0)), 8);
    assert!(memory.segment_region(sid(0)).is_none());
    // Nothing is allocated yet: a bucket offset is a double free, a misaligned one invalid.
    assert_eq!(
        memory.try_deallocate(PointerOffset::new(sid(0), 0)),
        Err(DeallocError::NotAllocated)
    );
    assert_eq!(
        memory.try_deallocate(PointerOffset::new(sid(0), 3)),
        Err(DeallocError::InvalidOffset)
    );

    let view = open_view(env, "lazy");
    // SAFETY: fails, so nothing is registered.
    let early = unsafe { view.register_and_translate_offset(PointerOffset::new(sid(0), 0)) };
    assert_eq!(early.err(), Some(OpenError::DoesNotExist));

    let chunk = memory.allocate(layout(8, 8)).expect("first allocation");
    assert_eq!(chunk.offset.segment_id(), sid(0));
    assert_eq!(
        env.objects(),
        sorted(vec![env.mgmt_name("lazy"), env.segment_name("lazy", 0)])
    );
    assert!(memory.segment_region(sid(0)).is_some());
    // SAFETY: the chunk is 8 bytes, 8-aligned and allocated.
    unsafe { common::write_u64(chunk.data_ptr, 0x5eed_0ff1_a5a5) };
    // SAFETY: registered, read, unregistered; the chunk stays allocated meanwhile.
    let seen = unsafe {
        let ptr = view
            .register_and_translate_offset(chunk.offset)
            .expect("segment 0 exists now");
        let value = common::read_u64(ptr);
        view.unregister_offset(chunk.offset);
        value
    };
    assert_eq!(seen, 0x5eed_0ff1_a5a5);
    memory.try_deallocate(chunk.offset).expect("deallocate");
    assert_eq!(
        memory.try_deallocate(chunk.offset),
        Err(DeallocError::NotAllocated)
    );
}

fn eager_first_segment_makes_it_at_create(env: &Env) {
    let memory = env
        .builder("eager")
        .max_chunk_layout_hint(layout(64, 8))
        .max_number_of_chunks_hint(4)
        .eager_first_segment(true)
        .create()
        .expect("create");
    assert_eq!(
        env.objects(),
        sorted(vec![env.mgmt_name("eager"), env.segment_name("eager", 0)])
    );
    assert!(memory.segment_region(sid(0)).is_some());
    let view = open_view(env, "eager");
    // A view sees a never-allocated bucket of an existing segment as mappable.
    // SAFETY: unregistered right after.
    let ptr = unsafe { view.register_and_translate_offset(PointerOffset::new(sid(0), 0)) };
    assert!(ptr.is_ok(), "{ptr:?}");
    // SAFETY: registered just above.
    unsafe { view.unregister_offset(PointerOffset::new(sid(0), 0)) };
}

fn prefault_makes_it_at_create(env: &Env) {
    let config = env.config.clone().prefault(true);
    let memory = Memory::builder("pre")
        .config(&config)
        .max_chunk_layout_hint(layout(64, 8))
        .max_number_of_chunks_hint(4)
        .create()
        .expect("create");
    assert_eq!(
        env.objects(),
        sorted(vec![env.mgmt_name("pre"), env.segment_name("pre", 0)])
    );
    assert!(memory.segment_region(sid(0)).is_some());
}

fn budget_is_reserved_at_create(env: &Env) {
    // Too small for segment 0: refused by create, as before, with nothing left behind.
    let tiny = Arc::new(ByteBudget::new(1024));
    let refused = env
        .builder("quota")
        .max_chunk_layout_hint(layout(4096, 8))
        .max_number_of_chunks_hint(4)
        .budget(Arc::clone(&tiny) as Arc<dyn SegmentBudget>)
        .create();
    assert_eq!(refused.err(), Some(CreateError::QuotaExceeded));
    assert_eq!(tiny.used(), 0);
    assert!(env.objects().is_empty(), "{:?}", env.objects());

    let budget = Arc::new(ByteBudget::new(1 << 20));
    let memory = env
        .builder("quota")
        .max_chunk_layout_hint(layout(4096, 8))
        .max_number_of_chunks_hint(4)
        .budget(Arc::clone(&budget) as Arc<dyn SegmentBudget>)
        .create()
        .expect("create within the budget");
    let reserved = budget.used();
    assert!(reserved >= 4 * 4096, "segment 0 not reserved: {reserved}");
    memory.allocate(layout(4096, 8)).expect("allocate");
    assert_eq!(
        budget.used(),
        reserved,
        "the first allocation reserved twice"
    );
    drop(memory);
    assert_eq!(budget.used(), 0);

    let unused = env
        .builder("quota")
        .max_chunk_layout_hint(layout(4096, 8))
        .budget(Arc::clone(&budget) as Arc<dyn SegmentBudget>)
        .create()
        .expect("create again");
    assert!(budget.used() > 0);
    drop(unused);
    assert_eq!(budget.used(), 0, "an unmade segment 0 kept its reservation");
}

fn racing_first_allocations_make_one_segment(env: &Env) {
    const THREADS: usize = 4;
    let memory = env.memory("race", 16, 64, BestFit);
    let barrier = Barrier::new(THREADS);
    let offsets: Vec<PointerOffset> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    memory.allocate(layout(16, 8)).expect("allocate").offset
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique: Vec<u64> = offsets.iter().map(|o| o.offset()).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        THREADS,
        "two threads got one chunk: {offsets:?}"
    );
    assert!(offsets.iter().all(|o| o.segment_id() == sid(0)));
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(
        env.objects(),
        sorted(vec![env.mgmt_name("race"), env.segment_name("race", 0)])
    );
    for offset in offsets {
        memory.try_deallocate(offset).expect("deallocate");
    }
}

fn dropping_an_unused_memory_leaves_nothing(env: &Env) {
    let memory = env.memory("unused", 64, 8, BestFit);
    assert_eq!(env.objects(), vec![env.mgmt_name("unused")]);
    drop(memory);
    assert!(env.objects().is_empty(), "{:?}", env.objects());
    // The name is free again, and the next owner starts lazily too.
    let again = env.memory("unused", 64, 8, BestFit);
    assert_eq!(env.objects(), vec![env.mgmt_name("unused")]);
    again.allocate(layout(64, 8)).expect("allocate");
}

fn failed_first_segment_is_retried_by_the_next_allocation(env: &Env) {
    let memory = env.memory("retry", 64, 8, BestFit);
    // A directory where segment 0's object goes: the backend cannot make it.
    let blocker = env
        .object_path(&env.segment_name("retry", 0))
        .expect("os backends have paths");
    std::fs::create_dir_all(&blocker).expect("blocking directory");
    let failed = memory.allocate(layout(64, 8));
    std::fs::remove_dir(&blocker).expect("unblock");
    assert_eq!(failed.err(), Some(AllocError::OutOfMemory));
    let chunk = memory
        .allocate(layout(64, 8))
        .expect("retried after the failure");
    assert_eq!(chunk.offset.segment_id(), sid(0));
    assert_eq!(
        env.objects(),
        sorted(vec![env.mgmt_name("retry"), env.segment_name("retry", 0)])
    );
    memory.try_deallocate(chunk.offset).expect("deallocate");
}
