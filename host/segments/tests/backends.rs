//! The `Backend` contract (see `backend/mod.rs`), one conformance body per clause, run
//! against PosixShm, FileBacked and ProcessLocal.

mod common;

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;

use common::{BackendKind, Env, backend_tests, options};
use resmem::{AccessMode, AllocationStrategy, Config};

backend_tests!(
    all: [
        kind_and_name_limit_are_reported,
        create_is_zero_filled_and_exactly_sized,
        create_is_exclusive,
        concurrent_create_has_exactly_one_winner,
        open_of_missing_name_is_not_found,
        create_and_open_share_the_bytes,
        open_reports_access_mode,
        remove_reports_existence_and_keeps_mappings_valid,
        recreate_after_remove_is_a_fresh_object,
        list_and_exists_track_the_namespace,
        zero_sized_create_fails_and_leaves_nothing,
        prefaulted_memories_work_like_any_other,
    ],
    os: [
        permissions_are_applied_exactly,
        memory_objects_get_the_configured_permissions,
        object_size_on_disk_is_exact,
        open_of_sizeless_object_is_unexpected_eof,
        read_only_open_maps_without_write_permission,
    ],
);

fn kind_and_name_limit_are_reported(env: &Env) {
    let expected = match env.kind {
        BackendKind::Posix => "posix",
        BackendKind::File => "file",
        BackendKind::ProcessLocal => "process-local",
    };
    assert_eq!(env.backend().kind(), expected);
    assert_eq!(env.backend().max_name_len(), 255);
}

fn create_is_zero_filled_and_exactly_sized(env: &Env) {
    let page = common::page();
    for (i, size) in [1, 100, page - 1, page, page + 1, 3 * page + 17]
        .into_iter()
        .enumerate()
    {
        let name = format!("{}obj{i}", env.prefix());
        let mapping = env.create_object(&name, size);
        assert_eq!(mapping.len(), size, "size {size}");
        assert!(mapping.is_writable());
        // SAFETY: the mapping is `size` bytes long and only this thread uses it.
        let content = unsafe { common::bytes(mapping.as_ptr(), size) };
        assert!(
            content.iter().all(|&b| b == 0),
            "size {size} not zero-filled"
        );
        assert_eq!(
            mapping.as_ptr() as usize % page,
            0,
            "mappings start page aligned"
        );
        drop(mapping);
        assert!(env.backend().remove(&name).expect("remove"));
    }
}

fn create_is_exclusive(env: &Env) {
    let name = format!("{}excl", env.prefix());
    let first = env.create_object(&name, 4096);
    // SAFETY: 8 bytes inside the 4096-byte mapping, page aligned.
    unsafe { common::write_u64(first.as_ptr(), 0xfeed) };
    let second = env.backend().create(&name, 8192, &options(0o600));
    assert_eq!(
        second.map(|_| ()).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    // The failed create neither resized nor cleared the existing object.
    let again = env.open_object(&name);
    assert_eq!(again.len(), 4096);
    // SAFETY: as above.
    assert_eq!(unsafe { common::read_u64(again.as_ptr()) }, 0xfeed);
    assert!(env.backend().remove(&name).expect("remove"));
}

fn concurrent_create_has_exactly_one_winner(env: &Env) {
    for round in 0..20 {
        let name = format!("{}race{round}", env.prefix());
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| env.backend().create(&name, 4096, &options(0o600))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("creator thread"))
                .collect()
        });
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::AlreadyExists);
            }
        }
        drop(results);
        assert!(env.backend().remove(&name).expect("remove"));
    }
}

fn open_of_missing_name_is_not_found(env: &Env) {
    let name = format!("{}missing", env.prefix());
    for access in [AccessMode::Read, AccessMode::ReadWrite] {
        let err = env.backend().open(&name, access).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
    assert!(!env.backend().exists(&name).expect("exists"));
    assert!(!env.backend().remove(&name).expect("remove"));
}

fn create_and_open_share_the_bytes(env: &Env) {
    let name = format!("{}shared", env.prefix());
    let size = 3 * common::page();
    let created = env.create_object(&name, size);
    // SAFETY: the mapping is `size` bytes long; only this thread touches it.
    unsafe { common::fill(created.as_ptr(), size, 7) };
    let opened = env.open_object(&name);
    assert_eq!(opened.len(), size);
    if env.kind == BackendKind::ProcessLocal {
        assert_eq!(
            opened.as_ptr(),
            created.as_ptr(),
            "process-local objects are one heap block"
        );
    } else {
        assert_ne!(
            opened.as_ptr(),
            created.as_ptr(),
            "a second, independent mapping"
        );
    }
    assert_eq!(
        // SAFETY: as above.
        unsafe { common::bytes(opened.as_ptr(), size) },
        common::pattern(size, 7)
    );
    // And back: a write through the opened mapping shows in the creator's.
    // SAFETY: offset size - 8 is inside both mappings and 8-aligned.
    unsafe { common::write_u64(opened.as_ptr().add(size - 8), 0x0123_4567_89ab_cdef) };
    assert_eq!(
        // SAFETY: as above.
        unsafe { common::read_u64(created.as_ptr().add(size - 8)) },
        0x0123_4567_89ab_cdef
    );
    let reader = env
        .backend()
        .open(&name, AccessMode::Read)
        .expect("open read-only");
    assert_eq!(
        // SAFETY: as above.
        unsafe { common::read_u64(reader.as_ptr().add(size - 8)) },
        0x0123_4567_89ab_cdef
    );
    assert!(env.backend().remove(&name).expect("remove"));
}

fn open_reports_access_mode(env: &Env) {
    let name = format!("{}access", env.prefix());
    let _created = env.create_object(&name, 4096);
    let ro = env
        .backend()
        .open(&name, AccessMode::Read)
        .expect("open read-only");
    let rw = env
        .backend()
        .open(&name, AccessMode::ReadWrite)
        .expect("open read-write");
    assert!(!ro.is_writable());
    assert!(rw.is_writable());
    assert_eq!((ro.len(), rw.len()), (4096, 4096));
    assert!(env.backend().remove(&name).expect("remove"));
}

fn remove_reports_existence_and_keeps_mappings_valid(env: &Env) {
    let name = format!("{}unlinked", env.prefix());
    let size = 2 * common::page();
    let mapping = env.create_object(&name, size);
    let opened = env.open_object(&name);
    // SAFETY: inside the mapping, 8-aligned, single thread.
    unsafe { common::write_u64(mapping.as_ptr().add(4096), 41) };
    assert!(env.backend().remove(&name).expect("remove"));
    assert!(!env.backend().remove(&name).expect("second remove"));
    assert!(!env.backend().exists(&name).expect("exists"));
    let err = env
        .backend()
        .open(&name, AccessMode::Read)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Both mappings still work and still share their bytes.
    // SAFETY: as above.
    unsafe {
        assert_eq!(common::read_u64(opened.as_ptr().add(4096)), 41);
        common::write_u64(opened.as_ptr().add(size - 8), 42);
        assert_eq!(common::read_u64(mapping.as_ptr().add(size - 8)), 42);
    }
}

fn recreate_after_remove_is_a_fresh_object(env: &Env) {
    let name = format!("{}again", env.prefix());
    let old = env.create_object(&name, 4096);
    // SAFETY: inside the mapping, aligned.
    unsafe { common::write_u64(old.as_ptr(), 99) };
    assert!(env.backend().remove(&name).expect("remove"));
    let new = env.create_object(&name, 8192);
    assert_eq!(new.len(), 8192);
    // SAFETY: inside both mappings, aligned.
    unsafe {
        assert_eq!(
            common::read_u64(new.as_ptr()),
            0,
            "the new object is zero-filled"
        );
        common::write_u64(new.as_ptr(), 5);
        assert_eq!(
            common::read_u64(old.as_ptr()),
            99,
            "the old object is a different one"
        );
    }
    assert!(env.backend().remove(&name).expect("remove"));
}

fn list_and_exists_track_the_namespace(env: &Env) {
    assert_eq!(env.objects(), Vec::<String>::new());
    let names: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("{}{n}", env.prefix()))
        .collect();
    let _maps: Vec<_> = names.iter().map(|n| env.create_object(n, 4096)).collect();
    assert_eq!(env.objects(), names);
    for n in &names {
        assert!(env.backend().exists(n).expect("exists"));
    }
    assert!(env.backend().remove(&names[1]).expect("remove"));
    assert_eq!(env.objects(), vec![names[0].clone(), names[2].clone()]);
    assert!(!env.backend().exists(&names[1]).expect("exists"));
    for n in [&names[0], &names[2]] {
        assert!(env.backend().remove(n).expect("remove"));
    }
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn zero_sized_create_fails_and_leaves_nothing(env: &Env) {
    let name = format!("{}empty", env.prefix());
    assert!(env.backend().create(&name, 0, &options(0o600)).is_err());
    assert!(!env.backend().exists(&name).expect("exists"));
}

fn permissions_are_applied_exactly(env: &Env) {
    // 0o666 and 0o777 would be cut to 0o644 / 0o755 by a typical umask of 022.
    for (i, mode) in [0o600, 0o640, 0o604, 0o666, 0o660, 0o777, 0o400]
        .into_iter()
        .enumerate()
    {
        let name = format!("{}perm{i}", env.prefix());
        let _mapping = env
            .backend()
            .create(&name, 4096, &options(mode))
            .expect("create with permissions");
        let path = env.object_path(&name).expect("os backend");
        let meta = std::fs::metadata(&path).expect("metadata of the object");
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{path:?}");
        assert!(env.backend().remove(&name).expect("remove"));
    }
}

fn memory_objects_get_the_configured_permissions(env: &Env) {
    let config: Config = env.config.clone().permissions(0o664);
    assert_eq!(config.get_permissions(), 0o664);
    let memory = resmem::Memory::builder("perm")
        .config(&config)
        .max_chunk_layout_hint(common::layout(8, 8))
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .expect("create");
    // Force segment 1 so that segments created later are checked too.
    let _a = memory.allocate(common::layout(8, 8)).expect("allocate");
    let _b = memory.allocate(common::layout(8, 8)).expect("allocate");
    assert_eq!(memory.number_of_active_segments(), 2);
    for os_name in [
        env.mgmt_name("perm"),
        env.segment_name("perm", 0),
        env.segment_name("perm", 1),
    ] {
        let path = env.object_path(&os_name).expect("os backend");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o664, "{path:?}");
    }
}

fn object_size_on_disk_is_exact(env: &Env) {
    for (i, size) in [1usize, 4095, 4096, 10_000].into_iter().enumerate() {
        let name = format!("{}len{i}", env.prefix());
        let _mapping = env.create_object(&name, size);
        let path = env.object_path(&name).expect("os backend");
        assert_eq!(
            std::fs::metadata(&path).expect("metadata").len(),
            size as u64
        );
        assert!(env.backend().remove(&name).expect("remove"));
    }
}

fn open_of_sizeless_object_is_unexpected_eof(env: &Env) {
    // What a view sees between the owner's shm_open and its ftruncate.
    let name = format!("{}sizeless", env.prefix());
    let path = env.object_path(&name).expect("os backend");
    std::fs::File::create_new(&path).expect("create an empty object");
    assert!(env.backend().exists(&name).expect("exists"));
    for access in [AccessMode::Read, AccessMode::ReadWrite] {
        let err = env.backend().open(&name, access).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
    }
    assert!(env.backend().remove(&name).expect("remove"));
}

fn read_only_open_maps_without_write_permission(env: &Env) {
    let name = format!("{}prot", env.prefix());
    let created = env.create_object(&name, 4096);
    let ro = env
        .backend()
        .open(&name, AccessMode::Read)
        .expect("open read-only");
    let perms = common::mapping_perms(ro.as_ptr()).expect("the mapping is in /proc/self/maps");
    assert!(
        perms.starts_with("r-"),
        "read-only mapping has perms {perms}"
    );
    assert!(perms.ends_with('s'), "mappings are shared: {perms}");
    let perms = common::mapping_perms(created.as_ptr()).expect("in /proc/self/maps");
    assert!(perms.starts_with("rw"), "created mapping has perms {perms}");
    assert!(env.backend().remove(&name).expect("remove"));
}

fn prefaulted_memories_work_like_any_other(env: &Env) {
    let name = format!("{}prefault", env.prefix());
    let options = resmem::backend::CreateOptions {
        permissions: 0o600,
        prefault: true,
        lock_exclusive: false,
    };
    let size = 64 * common::page();
    let mapping = env
        .backend()
        .create(&name, size, &options)
        .expect("create prefaulted");
    assert_eq!(mapping.len(), size);
    assert!(
        // SAFETY: the mapping is `size` bytes long; only this thread touches it.
        unsafe { common::bytes(mapping.as_ptr(), size) }
            .iter()
            .all(|&b| b == 0)
    );
    drop(mapping);
    assert!(env.backend().remove(&name).expect("remove"));
    // And through a memory.
    let config = env.config.clone().prefault(true);
    assert!(config.get_prefault());
    let memory = resmem::Memory::builder("pre")
        .config(&config)
        .max_chunk_layout_hint(common::layout(4096, 8))
        .max_number_of_chunks_hint(4)
        .create()
        .expect("create");
    let p = memory.allocate(common::layout(4096, 8)).expect("allocate");
    // SAFETY: ours, 4096 bytes.
    unsafe { common::fill(p.data_ptr, 4096, 5) };
    let view = resmem::View::builder("pre")
        .config(&config)
        .open(AccessMode::Read)
        .expect("open");
    // SAFETY: unregistered below; 4096 bytes of a live chunk.
    let ptr = unsafe { view.register_and_translate_offset(p.offset) }.expect("register");
    assert_eq!(
        // SAFETY: as above.
        unsafe { common::bytes(ptr, 4096) },
        common::pattern(4096, 5)
    );
    // SAFETY: registered above.
    unsafe { view.unregister_offset(p.offset) };
    memory.try_deallocate(p.offset).expect("free");
}
