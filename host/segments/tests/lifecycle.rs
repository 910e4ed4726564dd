//! Lifecycle of a memory's OS objects: list / exists / remove, drop, abandon, leftovers,
//! exclusive creation and owner liveness.

mod common;

use common::{Env, backend_tests, layout, sid};
use resmem::{AccessMode, AllocationStrategy, CreateError, Memory, View};

use AllocationStrategy::BestFit;

backend_tests!(all: [
    drop_removes_every_os_object,
    drop_with_open_views_removes_everything_and_views_keep_their_mappings,
    list_exists_remove_with_segment_zero,
    list_exists_remove_without_segment_zero,
    remove_takes_orphaned_data_segments_and_nothing_else,
    abandon_leaves_everything_and_remove_cleans_up,
    create_on_an_existing_name_is_already_exists,
    create_replaces_leftover_data_segments,
    is_owner_alive_follows_the_owner,
    views_never_remove_anything,
    accessors_report_the_configuration,
    an_old_owner_never_touches_its_successors_objects,
    suffix_and_prefix_separate_namespaces,
]);

fn open(env: &Env, name: &str) -> View {
    View::builder(name)
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open a view")
}

fn read_through(view: &View, offset: resmem::PointerOffset) -> Result<u64, resmem::OpenError> {
    // SAFETY: unregistered right after the read.
    let ptr = unsafe { view.register_and_translate_offset(offset) }?;
    // SAFETY: chunks here are 8 bytes and 8-aligned.
    let value = unsafe { common::read_u64(ptr) };
    // SAFETY: registered above, not used afterwards.
    unsafe { view.unregister_offset(offset) };
    Ok(value)
}

/// A memory with live chunks in segments 0, 1 and 2.
fn grown(env: &Env, name: &str) -> (Memory, Vec<resmem::ShmPointer>) {
    let memory = env.memory(name, 8, 1, BestFit);
    let chunks: Vec<_> = (0..4)
        .map(|_| memory.allocate(layout(8, 8)).expect("allocate"))
        .collect();
    assert_eq!(memory.number_of_active_segments(), 3);
    (memory, chunks)
}

fn names(env: &Env, name: &str, ids: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|&id| env.segment_name(name, id)).collect();
    v.push(env.mgmt_name(name));
    v.sort();
    v
}

fn drop_removes_every_os_object(env: &Env) {
    let (memory, _chunks) = grown(env, "dropped");
    assert_eq!(env.objects(), names(env, "dropped", &[0, 1, 2]));
    drop(memory);
    assert_eq!(env.objects(), Vec::<String>::new());
    assert_eq!(resmem::list(&env.config), Ok(vec![]));
    assert_eq!(resmem::exists("dropped", &env.config), Ok(false));
}

fn drop_with_open_views_removes_everything_and_views_keep_their_mappings(env: &Env) {
    let (memory, chunks) = grown(env, "viewed");
    // SAFETY: ours, 8 bytes, aligned.
    unsafe { common::write_u64(chunks[3].data_ptr, 0x77) };
    let view = open(env, "viewed");
    // SAFETY: unregistered below.
    let ptr = unsafe { view.register_and_translate_offset(chunks[3].offset) }.expect("register");
    assert!(view.is_owner_alive());
    drop(memory);
    assert_eq!(env.objects(), Vec::<String>::new());
    assert!(!view.is_owner_alive());
    // The registered mapping outlives the unlinked object.
    // SAFETY: still registered.
    assert_eq!(unsafe { common::read_u64(ptr) }, 0x77);
    // SAFETY: registered above.
    unsafe { view.unregister_offset(chunks[3].offset) };
    // Segments never mapped by the view are gone for good.
    assert_eq!(
        read_through(&view, chunks[0].offset),
        Err(resmem::OpenError::DoesNotExist)
    );
}

/// A memory whose segment 0 exists: made by its first allocation, whose chunk is returned.
fn with_segment_zero(env: &Env, name: &str) -> Memory {
    let memory = env.memory(name, 8, 1, BestFit);
    let chunk = memory.allocate(layout(8, 8)).expect("allocate");
    memory.try_deallocate(chunk.offset).expect("free");
    memory
}

fn list_exists_remove_with_segment_zero(env: &Env) {
    assert_eq!(resmem::list(&env.config), Ok(vec![]));
    let b = with_segment_zero(env, "b");
    let a = with_segment_zero(env, "a");
    let tricky = with_segment_zero(env, "a__7");
    assert_eq!(
        resmem::list(&env.config),
        Ok(vec!["a".to_owned(), "a__7".to_owned(), "b".to_owned()])
    );
    for name in ["a", "b", "a__7"] {
        assert_eq!(resmem::exists(name, &env.config), Ok(true), "{name}");
    }
    assert_eq!(resmem::exists("c", &env.config), Ok(false));
    a.abandon();
    assert_eq!(env.objects().len(), 6, "abandon leaves a's objects");
    // SAFETY: a's owner is gone.
    assert_eq!(unsafe { resmem::remove("a", &env.config) }, Ok(true));
    // SAFETY: as above; nothing is left to remove.
    assert_eq!(unsafe { resmem::remove("a", &env.config) }, Ok(false));
    assert_eq!(resmem::exists("a", &env.config), Ok(false));
    assert_eq!(
        resmem::list(&env.config),
        Ok(vec!["a__7".to_owned(), "b".to_owned()])
    );
    let mut rest = names(env, "b", &[0]);
    rest.extend(names(env, "a__7", &[0]));
    rest.sort();
    assert_eq!(env.objects(), rest, "removing a leaves a__7 and b alone");
    drop((b, tricky));
}

fn list_exists_remove_without_segment_zero(env: &Env) {
    let (memory, chunks) = grown(env, "late");
    memory.try_deallocate(chunks[0].offset).expect("free");
    assert_eq!(memory.bucket_size(sid(0)), 0);
    assert_eq!(env.objects(), names(env, "late", &[1, 2]));
    assert_eq!(resmem::list(&env.config), Ok(vec!["late".to_owned()]));
    assert_eq!(resmem::exists("late", &env.config), Ok(true));
    memory.abandon();
    assert_eq!(env.objects(), names(env, "late", &[1, 2]));
    // SAFETY: the owner is gone.
    assert_eq!(unsafe { resmem::remove("late", &env.config) }, Ok(true));
    assert_eq!(env.objects(), Vec::<String>::new());
    assert_eq!(resmem::exists("late", &env.config), Ok(false));
    // The name is free again.
    let again = env.memory("late", 8, 1, BestFit);
    assert_eq!(again.current_segment(), sid(0));
}

fn remove_takes_orphaned_data_segments_and_nothing_else(env: &Env) {
    let orphans = [
        env.segment_name("orphan", 3),
        env.segment_name("orphan", 255),
    ];
    for name in &orphans {
        drop(env.create_object(name, 4096));
    }
    // Objects that merely look similar.
    let bystanders = [
        format!("{}orphan__007", env.prefix()),
        format!("{}orphan_1", env.prefix()),
        format!("{}orphanage__1", env.prefix()),
        env.segment_name("orphan__3", 0),
    ];
    for name in &bystanders {
        drop(env.create_object(name, 4096));
    }
    // Without a management segment the memory is not listed and does not exist ...
    assert_eq!(resmem::list(&env.config), Ok(vec![]));
    assert_eq!(resmem::exists("orphan", &env.config), Ok(false));
    // ... but remove still finds its segments.
    // SAFETY: there is no owner.
    assert_eq!(unsafe { resmem::remove("orphan", &env.config) }, Ok(true));
    let mut left = bystanders.to_vec();
    left.sort();
    assert_eq!(env.objects(), left);
    for name in &bystanders {
        assert!(env.backend().remove(name).expect("remove"));
    }
}

fn abandon_leaves_everything_and_remove_cleans_up(env: &Env) {
    let (memory, chunks) = grown(env, "crash");
    // SAFETY: ours, 8 bytes.
    unsafe { common::write_u64(chunks[2].data_ptr, 0x1234) };
    let before = env.objects();
    assert_eq!(before, names(env, "crash", &[0, 1, 2]));
    memory.abandon();
    assert_eq!(env.objects(), before);
    // A crashed owner's memory is refused with a distinct error, and read when asked to.
    assert_eq!(
        View::builder("crash")
            .config(&env.config)
            .open(AccessMode::Read)
            .err(),
        Some(resmem::OpenError::OwnerDead)
    );
    let view = View::builder("crash")
        .config(&env.config)
        .allow_stale(true)
        .open(AccessMode::Read)
        .expect("a forensic open of a stale memory");
    assert!(!view.is_owner_alive());
    assert_eq!(read_through(&view, chunks[2].offset), Ok(0x1234));
    drop(view);
    // SAFETY: the owner is gone.
    assert_eq!(unsafe { resmem::remove("crash", &env.config) }, Ok(true));
    assert_eq!(env.objects(), Vec::<String>::new());
    let fresh = env.memory("crash", 8, 1, BestFit);
    assert_eq!(fresh.number_of_active_segments(), 1);
}

fn create_on_an_existing_name_is_already_exists(env: &Env) {
    let memory = env.memory("taken", 8, 2, BestFit);
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: ours.
    unsafe { common::write_u64(a.data_ptr, 5) };
    let again = env.builder("taken").create();
    assert_eq!(again.map(|_| ()), Err(CreateError::AlreadyExists));
    // The failed create did not disturb the existing memory.
    assert_eq!(env.objects(), names(env, "taken", &[0]));
    let view = open(env, "taken");
    assert!(view.is_owner_alive());
    assert_eq!(read_through(&view, a.offset), Ok(5));
    drop(view);
    memory.abandon();
    assert_eq!(
        env.builder("taken").create().map(|_| ()),
        Err(CreateError::AlreadyExists)
    );
    // SAFETY: the owner is gone.
    assert_eq!(unsafe { resmem::remove("taken", &env.config) }, Ok(true));
    let fresh = env.builder("taken").create().expect("create after remove");
    // Segment 0 waits for the first allocation.
    assert_eq!(env.objects(), names(env, "taken", &[]));
    drop(fresh);
}

fn create_replaces_leftover_data_segments(env: &Env) {
    // Leftovers of a crashed owner whose management segment is already gone.
    for id in [0, 1] {
        let leftover = env.create_object(&env.segment_name("phoenix", id), 4096);
        common::poke_u64(&leftover, 0, 0xdead_beef);
        common::poke_u64(&leftover, 64, 0xdead_beef);
    }
    let memory = env.memory("phoenix", 8, 1, BestFit);
    let view = open(env, "phoenix");
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let b = memory.allocate(layout(8, 8)).expect("allocate");
    assert_eq!(b.offset.segment_id(), sid(1));
    // Fresh, zero-filled segments with valid trailers, not the leftovers.
    assert_eq!(read_through(&view, a.offset), Ok(0));
    assert_eq!(read_through(&view, b.offset), Ok(0));
    drop(view);
    drop(memory);
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn is_owner_alive_follows_the_owner(env: &Env) {
    let memory = env.memory("alive", 8, 1, BestFit);
    let first = open(env, "alive");
    let second = open(env, "alive");
    // Asking does not take the owner's lock away, however often and from however many views.
    for _ in 0..3 {
        assert!(first.is_owner_alive());
        assert!(second.is_owner_alive());
    }
    memory.abandon();
    assert!(!first.is_owner_alive());
    assert!(!second.is_owner_alive());
    // SAFETY: the owner is gone.
    assert_eq!(unsafe { resmem::remove("alive", &env.config) }, Ok(true));
    // A new owner under the same name: old views see the old (dead) memory, new ones the new.
    let successor = env.memory("alive", 8, 1, BestFit);
    assert!(!first.is_owner_alive());
    assert!(open(env, "alive").is_owner_alive());
    drop(successor);
}

fn views_never_remove_anything(env: &Env) {
    let (memory, chunks) = grown(env, "keep");
    let before = env.objects();
    let view = open(env, "keep");
    for p in &chunks {
        assert_eq!(read_through(&view, p.offset), Ok(0));
    }
    view.abandon();
    assert_eq!(env.objects(), before);
    let view = open(env, "keep");
    assert_eq!(read_through(&view, chunks[3].offset), Ok(0));
    drop(view);
    assert_eq!(env.objects(), before);
    drop(memory);
}

fn accessors_report_the_configuration(env: &Env) {
    let memory = env
        .builder("acc")
        .allocator(resmem::AllocatorKind::Bump)
        .allocation_strategy(AllocationStrategy::Static)
        .create()
        .expect("create");
    assert_eq!(memory.name(), "acc");
    assert_eq!(memory.config().get_prefix(), env.prefix());
    assert_eq!(memory.config().get_backend().kind(), env.backend().kind());
    assert_eq!(memory.allocator_kind(), resmem::AllocatorKind::Bump);
    assert_eq!(memory.allocation_strategy(), AllocationStrategy::Static);
    assert_eq!(memory.current_segment(), sid(0));
    let view = open(env, "acc");
    assert_eq!(view.config().get_prefix(), env.prefix());
    let info = view.header_info();
    assert_eq!(
        (info.allocator, info.strategy),
        (resmem::AllocatorKind::Bump, AllocationStrategy::Static)
    );
}

fn an_old_owner_never_touches_its_successors_objects(env: &Env) {
    let alloc = |m: &Memory| m.allocate(layout(8, 8)).expect("allocate");
    let old = env.memory("heir", 8, 1, BestFit);
    let a0 = alloc(&old);
    let old_view = open(env, "heir");
    // SAFETY: deliberately while the owner lives: it keeps working on its mappings, and its
    // name is handed on to a successor.
    assert_eq!(unsafe { resmem::remove("heir", &env.config) }, Ok(true));
    assert_eq!(env.objects(), Vec::<String>::new());
    let new = env.memory("heir", 8, 1, BestFit);
    let b0 = alloc(&new);
    // The old owner grows first: it creates "heir__1" ...
    let a1 = alloc(&old);
    assert_eq!(a1.offset.segment_id(), sid(1));
    assert_eq!(env.objects(), names(env, "heir", &[0, 1]));
    // ... which the successor, growing to segment 1, replaces with its own.
    let b1 = alloc(&new);
    assert_eq!(b1.offset.segment_id(), sid(1));
    // The old view finds its segment 1's name taken by another memory.
    assert_eq!(
        read_through(&old_view, a1.offset),
        Err(resmem::OpenError::DoesNotExist)
    );
    let b1b = alloc(&new);
    let b2 = alloc(&new);
    assert_eq!(b2.offset.segment_id(), sid(2));
    for (i, p) in [b0, b1, b1b, b2].iter().enumerate() {
        // SAFETY: ours, 8 bytes.
        unsafe { common::write_u64(p.data_ptr, 0xB0 + i as u64) };
    }
    // The old owner may not replace the successor's segment 2 to grow.
    let a1b = alloc(&old);
    assert_eq!(a1b.offset.segment_id(), sid(1));
    assert_eq!(
        old.allocate(layout(8, 8)),
        Err(resmem::AllocError::OutOfMemory)
    );
    // Releasing its segment 0, and dropping, it unlinks nothing of the successor's.
    old.try_deallocate(a0.offset).expect("free");
    assert_eq!(old.number_of_active_segments(), 1);
    drop(old);
    assert!(!old_view.is_owner_alive());
    assert_eq!(env.objects(), names(env, "heir", &[0, 1, 2]));
    let new_view = open(env, "heir");
    assert!(new_view.is_owner_alive());
    for (i, p) in [b0, b1, b1b, b2].iter().enumerate() {
        assert_eq!(read_through(&new_view, p.offset), Ok(0xB0 + i as u64));
    }
    for p in [b0, b1, b1b, b2] {
        new.try_deallocate(p.offset).expect("free");
    }
    drop(new);
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn suffix_and_prefix_separate_namespaces(env: &Env) {
    let dotted = env.config.clone().suffix(".seg");
    let memory = Memory::builder("suf")
        .config(&dotted)
        .max_chunk_layout_hint(layout(8, 8))
        .allocation_strategy(BestFit)
        .create()
        .expect("create with a suffix");
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let b = memory.allocate(layout(8, 8)).expect("allocate");
    let expected: Vec<String> = ["suf__0.seg", "suf__1.seg", "suf__mgmt.seg"]
        .iter()
        .map(|n| format!("{}{n}", env.prefix()))
        .collect();
    assert_eq!(env.objects(), expected);
    assert_eq!(resmem::list(&dotted), Ok(vec!["suf".to_owned()]));
    assert_eq!(resmem::exists("suf", &dotted), Ok(true));
    // Without the suffix it is another namespace: nothing there.
    assert_eq!(resmem::list(&env.config), Ok(vec![]));
    assert_eq!(resmem::exists("suf", &env.config), Ok(false));
    let r = View::builder("suf")
        .config(&env.config)
        .open(AccessMode::Read);
    assert_eq!(r.map(|_| ()), Err(resmem::OpenError::DoesNotExist));
    // SAFETY: nothing of that name exists in the suffix-less namespace.
    assert_eq!(unsafe { resmem::remove("suf", &env.config) }, Ok(false));
    assert_eq!(
        env.objects().len(),
        3,
        "the other namespace's remove took nothing"
    );
    let view = View::builder("suf")
        .config(&dotted)
        .open(AccessMode::Read)
        .expect("open with the suffix");
    assert_eq!(read_through(&view, b.offset), Ok(0));
    drop(view);
    for p in [a, b] {
        memory.try_deallocate(p.offset).expect("free");
    }
    drop(memory);
    assert_eq!(env.objects(), Vec::<String>::new());
}

#[test]
fn file_backend_in_a_missing_directory_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist");
    let config = resmem::Config::default()
        .prefix(&common::unique_prefix())
        .backend(resmem::FileBacked::new(&missing));
    let r = Memory::builder("m").config(&config).create();
    assert!(
        matches!(r, Err(CreateError::InternalError(_))),
        "{:?}",
        r.map(|_| ())
    );
    let listed = resmem::list(&config);
    assert!(
        matches!(listed, Err(resmem::ManageError::InternalError(_))),
        "{listed:?}"
    );
    assert_eq!(resmem::exists("m", &config), Ok(false));
    // SAFETY: nothing exists there.
    assert_eq!(unsafe { resmem::remove("m", &config) }, Ok(false));
    let r = View::builder("m").config(&config).open(AccessMode::Read);
    assert_eq!(r.map(|_| ()), Err(resmem::OpenError::DoesNotExist));
    assert!(!missing.exists(), "nothing created the directory");
}
