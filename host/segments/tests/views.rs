//! Views: translation across resizes, access modes, reused segment ids, invalid offsets,
//! opening during the owner's initialisation, and name validation.

mod common;

use std::time::{Duration, Instant};

use common::{Env, backend_tests, layout, sid};
use resmem::header::MGMT_SIZE;
use resmem::{
    AccessMode, AllocationStrategy, AllocatorKind, Config, CreateError, ManageError, Memory,
    NameError, OpenError, PointerOffset, ShmPointer, View,
};

use AllocationStrategy::{BestFit, PowerOfTwo};

backend_tests!(
    all: [
        view_translates_across_several_resizes,
        read_write_view_writes_reach_the_owner,
        read_only_view_reads_but_reports_read_access,
        stale_mapping_of_a_reused_id_is_never_used,
        reused_id_with_registered_offsets_is_segment_replaced,
        released_segment_with_registered_offsets_is_invalid_offset,
        offsets_beyond_the_payload_are_invalid,
        offsets_into_dead_segments_are_invalid,
        missing_memory_and_missing_segments_do_not_exist,
        open_during_initialisation_times_out,
        invalid_names_are_rejected_everywhere,
        longest_valid_name_works,
        unbounded_timeout_means_wait_as_long_as_needed,
    ],
    os: [
        read_only_view_maps_segments_without_write_permission,
        open_of_sizeless_management_object_is_not_finalized,
    ],
);

fn seg(p: &ShmPointer) -> u8 {
    p.offset.segment_id().value()
}

fn open(env: &Env, name: &str, access: AccessMode) -> View {
    View::builder(name)
        .config(&env.config)
        .open(access)
        .expect("opening a view")
}

/// Registers `offset`, reads the u64 there and unregisters it again.
fn read_through(view: &View, offset: PointerOffset) -> Result<u64, OpenError> {
    // SAFETY: unregistered right after the read.
    let ptr = unsafe { view.register_and_translate_offset(offset) }?;
    // SAFETY: every chunk in these tests is at least 8 bytes and 8-aligned.
    let value = unsafe { common::read_u64(ptr) };
    // SAFETY: registered above, not used afterwards.
    unsafe { view.unregister_offset(offset) };
    Ok(value)
}

/// Grows through fresh segments, freeing the previous chunk each time, until a chunk lands
/// in segment `target` again (its id reused after a full round of 256).
fn cycle_until(memory: &Memory, mut held: ShmPointer, target: u8) -> ShmPointer {
    let mut size = memory.bucket_size(held.offset.segment_id());
    loop {
        size += 8;
        let next = memory
            .allocate(layout(size, 8))
            .expect("allocate a larger chunk");
        assert_ne!(
            next.offset.segment_id(),
            held.offset.segment_id(),
            "a new segment each step"
        );
        memory
            .try_deallocate(held.offset)
            .expect("free the previous chunk");
        held = next;
        if seg(&held) == target {
            return held;
        }
    }
}

fn view_translates_across_several_resizes(env: &Env) {
    let memory = env.memory("resizes", 8, 2, PowerOfTwo);
    let view = open(env, "resizes", AccessMode::Read);
    let info = view.header_info();
    assert_eq!(info.owner_pid, std::process::id());
    assert_eq!(info.allocator, AllocatorKind::Pool);
    assert_eq!(info.strategy, PowerOfTwo);
    assert_eq!(info.current_segment, sid(0));
    assert_eq!(view.name(), "resizes");
    // 2 + 4 + 8 + 16 chunks of growing sizes: segments 0..=3 and then a larger bucket.
    let mut chunks = Vec::new();
    for i in 0..40u64 {
        let size = if i < 30 { 8 } else { 64 };
        let p = memory.allocate(layout(size, 8)).expect("allocate");
        // SAFETY: ours, at least 8 bytes, 8-aligned.
        unsafe { common::write_u64(p.data_ptr, 0x1000 + i) };
        chunks.push(p);
        // The view sees each segment as soon as the owner publishes it.
        assert_eq!(view.owner_current_segment(), Some(memory.current_segment()));
    }
    let segments: std::collections::BTreeSet<u8> = chunks.iter().map(seg).collect();
    assert_eq!(segments.len(), 5, "{segments:?}");
    for (i, p) in chunks.iter().enumerate() {
        assert_eq!(
            read_through(&view, p.offset),
            Ok(0x1000 + i as u64),
            "chunk {i}"
        );
    }
    // A view opened later sees the current segment in its header info.
    let late = open(env, "resizes", AccessMode::Read);
    assert_eq!(late.header_info().current_segment, memory.current_segment());
    for (i, p) in chunks.iter().enumerate().rev() {
        assert_eq!(
            read_through(&late, p.offset),
            Ok(0x1000 + i as u64),
            "chunk {i}"
        );
    }
    for p in chunks {
        memory.try_deallocate(p.offset).expect("free");
    }
}

fn read_write_view_writes_reach_the_owner(env: &Env) {
    let memory = env.memory("rw", 64, 2, PowerOfTwo);
    let view = open(env, "rw", AccessMode::ReadWrite);
    assert_eq!(view.access_mode(), AccessMode::ReadWrite);
    let p = memory.allocate(layout(64, 8)).expect("allocate");
    // SAFETY: unregistered below; the chunk is 64 bytes and nobody else writes it.
    let ptr = unsafe { view.register_and_translate_offset(p.offset) }.expect("register");
    // SAFETY: as above; a read-write view may write.
    unsafe {
        common::fill(ptr as *mut u8, 64, 33);
        assert_eq!(common::bytes(p.data_ptr, 64), common::pattern(64, 33));
        common::write_u64(p.data_ptr.add(8), 7);
        assert_eq!(common::read_u64(ptr.add(8)), 7);
        view.unregister_offset(p.offset);
    }
    memory.try_deallocate(p.offset).expect("free");
}

fn read_only_view_reads_but_reports_read_access(env: &Env) {
    let memory = env.memory("ro", 8, 2, PowerOfTwo);
    let view = open(env, "ro", AccessMode::Read);
    assert_eq!(view.access_mode(), AccessMode::Read);
    let p = memory.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: ours.
    unsafe { common::write_u64(p.data_ptr, 0xabc) };
    assert_eq!(read_through(&view, p.offset), Ok(0xabc));
    // SAFETY: ours.
    unsafe { common::write_u64(p.data_ptr, 0xdef) };
    assert_eq!(
        read_through(&view, p.offset),
        Ok(0xdef),
        "the view reads live memory"
    );
    memory.try_deallocate(p.offset).expect("free");
}

fn read_only_view_maps_segments_without_write_permission(env: &Env) {
    let memory = env.memory("prot", 8, 2, PowerOfTwo);
    let p = memory.allocate(layout(8, 8)).expect("allocate");
    for (access, expected) in [(AccessMode::Read, "r--s"), (AccessMode::ReadWrite, "rw-s")] {
        let view = open(env, "prot", access);
        // SAFETY: unregistered below; only inspected, not dereferenced.
        let ptr = unsafe { view.register_and_translate_offset(p.offset) }.expect("register");
        assert_eq!(
            common::mapping_perms(ptr).as_deref(),
            Some(expected),
            "{access:?}"
        );
        // SAFETY: registered above.
        unsafe { view.unregister_offset(p.offset) };
    }
    memory.try_deallocate(p.offset).expect("free");
}

fn stale_mapping_of_a_reused_id_is_never_used(env: &Env) {
    let memory = env.memory("reuse", 8, 1, BestFit);
    let view = open(env, "reuse", AccessMode::Read);
    let old = memory.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: ours.
    unsafe { common::write_u64(old.data_ptr, 0xAAAA) };
    assert_eq!(read_through(&view, old.offset), Ok(0xAAAA));
    // The view keeps segment 0 mapped: it is the newest it has seen.
    assert_eq!(view.number_of_active_segments(), 1);
    let new = cycle_until(&memory, old, 0);
    assert_eq!(
        new.offset, old.offset,
        "same id, same offset, different segment"
    );
    // SAFETY: ours.
    unsafe { common::write_u64(new.data_ptr, 0x5555) };
    assert_eq!(view.owner_current_segment(), Some(sid(0)));
    // Through the old mapping this would read 0xAAAA.
    assert_eq!(read_through(&view, new.offset), Ok(0x5555));
    assert_eq!(
        view.number_of_active_segments(),
        1,
        "the stale mapping was replaced"
    );
    memory.try_deallocate(new.offset).expect("free");
}

fn reused_id_with_registered_offsets_is_segment_replaced(env: &Env) {
    let memory = env.memory("replaced", 8, 1, BestFit);
    let view = open(env, "replaced", AccessMode::Read);
    let old = memory.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: ours.
    unsafe { common::write_u64(old.data_ptr, 0xAAAA) };
    // SAFETY: unregistered below.
    let old_ptr = unsafe { view.register_and_translate_offset(old.offset) }.expect("register");
    let new = cycle_until(&memory, old, 0);
    // SAFETY: ours.
    unsafe { common::write_u64(new.data_ptr, 0x5555) };
    for _ in 0..3 {
        // SAFETY: a failed registration needs no unregistration.
        let r = unsafe { view.register_and_translate_offset(new.offset) };
        assert_eq!(r, Err(OpenError::SegmentReplaced));
    }
    // The old registration still reads the old segment's memory (unlinked, still mapped).
    // SAFETY: registered above and still registered.
    assert_eq!(unsafe { common::read_u64(old_ptr) }, 0xAAAA);
    // SAFETY: registered above; old_ptr is not used any more.
    unsafe { view.unregister_offset(old.offset) };
    assert_eq!(read_through(&view, new.offset), Ok(0x5555));
    memory.try_deallocate(new.offset).expect("free");
}

fn released_segment_with_registered_offsets_is_invalid_offset(env: &Env) {
    let memory = env.memory("released", 8, 2, BestFit);
    let view = open(env, "released", AccessMode::Read);
    let old = memory.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: unregistered below.
    unsafe { view.register_and_translate_offset(old.offset) }.expect("register");
    // Segment 0 is released (not yet replaced): its id is dead.
    let moved = memory.allocate(layout(16, 8)).expect("allocate");
    assert_eq!(seg(&moved), 1);
    memory.try_deallocate(old.offset).expect("free");
    assert_eq!(memory.bucket_size(sid(0)), 0);
    for offset in [old.offset, PointerOffset::new(sid(0), 8)] {
        // SAFETY: a failed registration needs no unregistration.
        let r = unsafe { view.register_and_translate_offset(offset) };
        assert_eq!(r, Err(OpenError::InvalidOffset), "{offset}");
    }
    // SAFETY: registered above.
    unsafe { view.unregister_offset(old.offset) };
    // SAFETY: as above.
    let r = unsafe { view.register_and_translate_offset(old.offset) };
    assert_eq!(r, Err(OpenError::InvalidOffset));
    memory.try_deallocate(moved.offset).expect("free");
}

fn offsets_beyond_the_payload_are_invalid(env: &Env) {
    // Segment 0: two 8-byte buckets, payload 16.
    let memory = env.memory("bounds", 8, 2, PowerOfTwo);
    let view = open(env, "bounds", AccessMode::Read);
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let beyond = [16, 17, 4096, PointerOffset::MAX_OFFSET].map(|o| PointerOffset::new(sid(0), o));
    // Before the segment is mapped (slow path) ...
    for offset in beyond {
        assert_eq!(
            // SAFETY: a failed registration needs no unregistration.
            unsafe { view.register_and_translate_offset(offset) },
            Err(OpenError::InvalidOffset),
            "{offset}"
        );
    }
    assert_eq!(view.number_of_active_segments(), 0);
    // SAFETY: unregistered below.
    let base = unsafe { view.register_and_translate_offset(a.offset) }.expect("register");
    // ... and after (fast path).
    for offset in beyond {
        assert_eq!(
            // SAFETY: as above.
            unsafe { view.register_and_translate_offset(offset) },
            Err(OpenError::InvalidOffset),
            "{offset}"
        );
    }
    // The last payload byte is fine, allocated or not.
    let last = PointerOffset::new(sid(0), 15);
    // SAFETY: unregistered below.
    let ptr = unsafe { view.register_and_translate_offset(last) }.expect("register");
    assert_eq!(
        ptr as usize - base as usize,
        15 - a.offset.offset() as usize
    );
    // SAFETY: registered above.
    unsafe {
        view.unregister_offset(last);
        view.unregister_offset(a.offset);
    }
    // No failed attempt leaked a registration: once a newer segment is mapped, segment 0 goes
    // away with its last unregistration.
    let b = memory.allocate(layout(8, 8)).expect("allocate");
    let c = memory.allocate(layout(8, 8)).expect("allocate");
    assert_eq!(seg(&c), 1);
    // SAFETY: unregistered below.
    unsafe { view.register_and_translate_offset(b.offset) }.expect("register");
    assert_eq!(read_through(&view, c.offset).map(|_| ()), Ok(()));
    assert_eq!(view.number_of_active_segments(), 2);
    // SAFETY: registered above.
    unsafe { view.unregister_offset(b.offset) };
    assert_eq!(view.number_of_active_segments(), 1);
    for p in [a, b, c] {
        memory.try_deallocate(p.offset).expect("free");
    }
}

fn offsets_into_dead_segments_are_invalid(env: &Env) {
    let memory = env.memory("deadseg", 8, 1, BestFit);
    let view = open(env, "deadseg", AccessMode::Read);
    for id in [1, 5, 255] {
        // SAFETY: a failed registration needs no unregistration.
        let r = unsafe { view.register_and_translate_offset(PointerOffset::new(sid(id), 0)) };
        assert_eq!(r, Err(OpenError::InvalidOffset), "never created: {id}");
    }
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    assert_eq!(read_through(&view, a.offset), Ok(0));
    let b = memory.allocate(layout(8, 8)).expect("allocate");
    memory.try_deallocate(a.offset).expect("free");
    // Segment 0 is released; the view still has it mapped (it was the newest it saw) but must
    // not translate into it.
    assert_eq!(read_through(&view, a.offset), Err(OpenError::InvalidOffset));
    assert_eq!(read_through(&view, b.offset), Ok(0));
    assert_eq!(read_through(&view, a.offset), Err(OpenError::InvalidOffset));
    memory.try_deallocate(b.offset).expect("free");
}

fn missing_memory_and_missing_segments_do_not_exist(env: &Env) {
    for timeout in [Duration::ZERO, Duration::from_secs(5)] {
        let start = Instant::now();
        let r = View::builder("nothing")
            .config(&env.config)
            .timeout(timeout)
            .open(AccessMode::Read);
        assert_eq!(r.map(|_| ()), Err(OpenError::DoesNotExist));
        // A missing memory is not waited for.
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
    }
    // A data segment that vanished behind the owner's back.
    let memory = env.memory("vanish", 8, 2, PowerOfTwo);
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let view = open(env, "vanish", AccessMode::Read);
    assert!(
        env.backend()
            .remove(&env.segment_name("vanish", 0))
            .expect("remove")
    );
    assert_eq!(read_through(&view, a.offset), Err(OpenError::DoesNotExist));
    memory.try_deallocate(a.offset).expect("free");
}

/// Creates a management object full of zeros, as a view sees it while the owner has created
/// (and locked) but not yet initialised it.
fn fake_uninitialised_mgmt(env: &Env, name: &str) -> resmem::backend::Mapping {
    env.create_locked_object(
        &env.mgmt_name(name),
        MGMT_SIZE.next_multiple_of(common::page()),
    )
}

fn open_during_initialisation_times_out(env: &Env) {
    let mgmt = fake_uninitialised_mgmt(env, "init");
    let start = Instant::now();
    let r = View::builder("init")
        .config(&env.config)
        .open(AccessMode::Read);
    assert_eq!(r.map(|_| ()), Err(OpenError::InitializationNotYetFinalized));
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "no timeout, no waiting"
    );
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let r = View::builder("init")
        .config(&env.config)
        .timeout(timeout)
        .open(AccessMode::ReadWrite);
    let waited = start.elapsed();
    assert_eq!(r.map(|_| ()), Err(OpenError::InitializationNotYetFinalized));
    assert!(waited >= timeout, "gave up after {waited:?}");
    assert!(
        waited < timeout + Duration::from_secs(3),
        "overslept: {waited:?}"
    );
    drop(mgmt);
    assert!(
        env.backend()
            .remove(&env.mgmt_name("init"))
            .expect("remove")
    );
}

fn open_of_sizeless_management_object_is_not_finalized(env: &Env) {
    // Between the owner's shm_open and its ftruncate the object has no size; the owner takes
    // its lock in between.
    let path = env
        .object_path(&env.mgmt_name("sizeless"))
        .expect("os backend");
    let creator = std::fs::File::create_new(&path).expect("create an empty object");
    creator.try_lock().expect("the creator's lock");
    let start = Instant::now();
    let r = View::builder("sizeless")
        .config(&env.config)
        .timeout(Duration::from_millis(100))
        .open(AccessMode::Read);
    assert_eq!(r.map(|_| ()), Err(OpenError::InitializationNotYetFinalized));
    assert!(start.elapsed() >= Duration::from_millis(100));
    // A creator that died there (its lock gone) left a stale object, not one to wait for.
    drop(creator);
    let start = Instant::now();
    let r = View::builder("sizeless")
        .config(&env.config)
        .timeout(Duration::from_secs(10))
        .open(AccessMode::Read);
    assert_eq!(r.map(|_| ()), Err(OpenError::OwnerDead));
    assert!(start.elapsed() < Duration::from_secs(5));
    // SAFETY: there is no owner.
    assert_eq!(unsafe { resmem::remove("sizeless", &env.config) }, Ok(true));
}

fn invalid_names_are_rejected_everywhere(env: &Env) {
    let long = "n".repeat(10 * 1024);
    let cases: [(&str, NameError); 6] = [
        ("", NameError::Empty),
        ("a/b", NameError::ContainsSlash),
        ("/", NameError::ContainsSlash),
        ("a\0b", NameError::ContainsNul),
        ("..", NameError::ContainsDotDot),
        (
            &long,
            NameError::TooLong {
                len: env.mgmt_name(&long).len(),
                max: 255,
            },
        ),
    ];
    for (name, expected) in cases {
        let shown = &name[..name.len().min(8)];
        assert_eq!(
            resmem::validate_name(name, &env.config),
            Err(expected),
            "{shown:?}"
        );
        let created = Memory::builder(name).config(&env.config).create();
        assert_eq!(
            created.map(|_| ()),
            Err(CreateError::InvalidName),
            "{shown:?}"
        );
        let opened = View::builder(name)
            .config(&env.config)
            .open(AccessMode::Read);
        assert_eq!(opened.map(|_| ()), Err(OpenError::InvalidName), "{shown:?}");
        assert_eq!(
            resmem::exists(name, &env.config),
            Err(ManageError::InvalidName),
            "{shown:?}"
        );
        assert_eq!(
            // SAFETY: nothing by that name can exist.
            unsafe { resmem::remove(name, &env.config) },
            Err(ManageError::InvalidName)
        );
    }
    // A bad prefix or suffix invalidates every name.
    let bad = Config::default().prefix("x/").backend(resmem::ProcessLocal);
    assert_eq!(
        resmem::validate_name("ok", &bad),
        Err(NameError::ContainsSlash)
    );
    let bad = env.config.clone().suffix("a\0");
    assert_eq!(
        resmem::validate_name("ok", &bad),
        Err(NameError::ContainsNul)
    );
    assert_eq!(
        Memory::builder("ok").config(&bad).create().map(|_| ()),
        Err(CreateError::InvalidName)
    );
    assert_eq!(env.objects(), Vec::<String>::new(), "nothing was created");
}

fn longest_valid_name_works(env: &Env) {
    let max = 255 - env.mgmt_name("").len();
    let name = "x".repeat(max);
    assert_eq!(resmem::validate_name(&name, &env.config), Ok(()));
    let memory = env.memory(&name, 8, 1, BestFit);
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let b = memory
        .allocate(layout(8, 8))
        .expect("allocate in segment 1");
    assert_eq!(seg(&b), 1);
    let view = open(env, &name, AccessMode::Read);
    assert_eq!(read_through(&view, b.offset), Ok(0));
    assert_eq!(resmem::exists(&name, &env.config), Ok(true));
    let longer = "x".repeat(max + 1);
    assert_eq!(
        resmem::validate_name(&longer, &env.config),
        Err(NameError::TooLong { len: 256, max: 255 })
    );
    for p in [a, b] {
        memory.try_deallocate(p.offset).expect("free");
    }
}

fn unbounded_timeout_means_wait_as_long_as_needed(env: &Env) {
    // Duration::MAX cannot be added to an Instant: it must mean "no deadline", not a panic.
    let missing = View::builder("forever")
        .config(&env.config)
        .timeout(Duration::MAX)
        .open(AccessMode::Read);
    assert_eq!(missing.map(|_| ()), Err(OpenError::DoesNotExist));
    let memory = env.memory("forever", 8, 1, BestFit);
    let view = View::builder("forever")
        .config(&env.config)
        .timeout(Duration::MAX)
        .open(AccessMode::Read)
        .expect("an initialised memory opens at once");
    assert_eq!(view.header_info().current_segment, memory.current_segment());
}
