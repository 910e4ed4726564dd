//! Memories, views, the name-based functions, statuses and the last-error message, through
//! the C entry points.

mod common;

use std::ffi::{CStr, c_char};
use std::ptr;

use common::*;
use resmem_c::*;
use resmem_status as S;

#[test]
fn a_chunk_written_by_the_owner_is_read_through_a_view_and_everything_goes_at_close() {
    let ns = Ns::new("rt");
    let memory = create_memory("frames", &ns);
    assert!(exists("frames", &ns));
    assert_eq!(list(&ns), ["frames"]);
    let (offset, ptr) = allocate(memory, 64, 8).expect("allocate");
    assert_eq!(ptr as usize % 8, 0, "aligned");
    // SAFETY: a fresh chunk of 64 bytes, ours.
    unsafe { std::slice::from_raw_parts_mut(ptr, 64) }.copy_from_slice(&[0xA5; 64]);

    let view = open_view("frames", &ns, 0).expect("open a view");
    let seen = register(view, offset, 64).expect("register");
    // SAFETY: registered for 64 bytes until the unregister below.
    assert_eq!(unsafe { std::slice::from_raw_parts(seen, 64) }, &[0xA5; 64]);
    assert_eq!(unregister(view, offset), S::RESMEM_OK);
    close_view(view);

    assert_eq!(deallocate(memory, offset, 64, 8), S::RESMEM_OK);
    close_memory(memory);
    assert!(!exists("frames", &ns));
    assert_eq!(list(&ns), Vec::<String>::new());
    ns.assert_empty();
}

#[test]
fn chunks_larger_than_the_first_segment_grow_the_memory_and_map_in_a_view() {
    let ns = Ns::new("grow");
    let opts = resmem_memory_options {
        namespace_: ns.ptr(),
        chunk_size: 1024,
        ..Default::default()
    };
    let memory = create_memory_with("grow", &opts).expect("create");
    let view = open_view("grow", &ns, 0).expect("open");
    let mut chunks = Vec::new();
    for i in 0..6u8 {
        let len = 1024usize << i;
        let (offset, ptr) = allocate(memory, len, 8).expect("allocate");
        // SAFETY: a fresh chunk of `len` bytes, ours.
        unsafe { std::ptr::write_bytes(ptr, i + 1, len) };
        chunks.push((offset, len, i + 1));
    }
    let segments: std::collections::BTreeSet<u64> = chunks.iter().map(|c| c.0 & 0xFF).collect();
    assert!(segments.len() >= 3, "the memory grew: {segments:?}");
    for &(offset, len, byte) in &chunks {
        let seen = register(view, offset, len).expect("register");
        // SAFETY: registered for `len` bytes until the unregister below.
        let bytes = unsafe { std::slice::from_raw_parts(seen, len) };
        assert!(bytes.iter().all(|&b| b == byte), "chunk at {offset}");
        assert_eq!(unregister(view, offset), S::RESMEM_OK);
    }
    for (offset, len, _) in chunks {
        assert_eq!(deallocate(memory, offset, len, 8), S::RESMEM_OK);
    }
    close_view(view);
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn bad_names_are_invalid_name_and_non_utf8_is_invalid_argument() {
    let ns = Ns::new("names");
    let opts = resmem_memory_options {
        namespace_: ns.ptr(),
        ..Default::default()
    };
    for bad in ["", "a/b", "..", "x..y"] {
        assert_eq!(
            create_memory_with(bad, &opts).err(),
            Some(S::RESMEM_INVALID_NAME),
            "{bad:?}"
        );
        assert!(
            last_error().starts_with("resmem_memory_create: invalid name"),
            "{}",
            last_error()
        );
        assert_eq!(
            open_view(bad, &ns, 0).err(),
            Some(S::RESMEM_INVALID_NAME),
            "{bad:?}"
        );
        let name = c(bad);
        let mut found = true;
        // SAFETY: valid strings and out-pointer.
        let status = unsafe { resmem_exists(name.as_ptr(), ns.ptr(), &mut found) };
        assert_eq!(status, S::RESMEM_INVALID_NAME);
        assert!(found, "not written on failure");
        let mut removed = true;
        // SAFETY: as above.
        let status = unsafe { resmem_remove(name.as_ptr(), ns.ptr(), &mut removed) };
        assert_eq!(status, S::RESMEM_INVALID_NAME);
    }
    let latin1 = b"caf\xe9\0";
    let mut memory = ptr::null_mut();
    // SAFETY: a NUL-terminated (non-UTF-8) string and a valid out-pointer.
    let status =
        unsafe { resmem_memory_create(latin1.as_ptr().cast::<c_char>(), &opts, &mut memory) };
    assert_eq!(status, S::RESMEM_INVALID_ARGUMENT);
    assert_eq!(
        last_error(),
        "resmem_memory_create: `name` is not valid UTF-8"
    );
    assert!(memory.is_null());
    ns.assert_empty();
}

/// `resmem_memory_options` as C may fill it: any integer in the strategy field.
#[repr(C)]
struct CMemoryOptions {
    namespace_: *const c_char,
    chunk_size: usize,
    chunk_align: usize,
    chunks: usize,
    strategy: i32,
}

#[test]
fn an_unknown_strategy_is_invalid_argument_and_zeroed_options_are_the_defaults() {
    let ns = Ns::new("strat");
    let name = c("m");
    let raw = CMemoryOptions {
        namespace_: ns.ptr(),
        chunk_size: 0,
        chunk_align: 0,
        chunks: 0,
        strategy: 7,
    };
    let mut memory = ptr::null_mut();
    // SAFETY: the struct has resmem_memory_options' layout (integers where C has an enum).
    let status =
        unsafe { resmem_memory_create(name.as_ptr(), ptr::from_ref(&raw).cast(), &mut memory) };
    assert_eq!(status, S::RESMEM_INVALID_ARGUMENT);
    assert!(last_error().contains("strategy 7"), "{}", last_error());
    let zeroed = CMemoryOptions { strategy: 2, ..raw };
    // SAFETY: as above; strategy 2 is static.
    let status =
        unsafe { resmem_memory_create(name.as_ptr(), ptr::from_ref(&zeroed).cast(), &mut memory) };
    assert_eq!(status, S::RESMEM_OK, "{}", last_error());
    // Static, one chunk of 4096 bytes: the first fits, a larger one does not grow the memory.
    let (offset, _) = allocate(memory, 4096, 8).expect("the default chunk fits");
    assert_eq!(
        allocate(memory, 1 << 20, 8).err(),
        Some(S::RESMEM_OUT_OF_MEMORY)
    );
    assert_eq!(deallocate(memory, offset, 4096, 8), S::RESMEM_OK);
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn layouts_that_cannot_be_served_are_invalid_layout() {
    let ns = Ns::new("layout");
    let memory = create_memory("m", &ns);
    for (size, align) in [
        (usize::MAX, 8),
        (64, 3),
        (64, 1 << 20),
        (isize::MAX as usize, 8),
    ] {
        assert_eq!(
            allocate(memory, size, align).err(),
            Some(S::RESMEM_INVALID_LAYOUT),
            "{size} {align}"
        );
    }
    assert!(
        last_error().starts_with("resmem_memory_allocate: "),
        "{}",
        last_error()
    );
    let opts = resmem_memory_options {
        namespace_: ns.ptr(),
        chunk_size: usize::MAX,
        ..Default::default()
    };
    assert_eq!(
        create_memory_with("big", &opts).err(),
        Some(S::RESMEM_INVALID_LAYOUT)
    );
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn deallocating_a_wrong_offset_or_layout_is_invalid_offset_and_changes_nothing() {
    let ns = Ns::new("dealloc");
    let memory = create_memory("m", &ns);
    let (offset, _) = allocate(memory, 100, 8).expect("allocate");
    for (bad, size, align) in [
        (offset + 8, 100, 8),
        (u64::MAX, 100, 8),
        (offset | 0x7F, 100, 8),
        (offset, 99, 8),
        (offset, 100, 16),
    ] {
        assert_eq!(
            deallocate(memory, bad, size, align),
            S::RESMEM_INVALID_OFFSET,
            "{bad}"
        );
    }
    assert!(
        last_error().starts_with("resmem_memory_deallocate: "),
        "{}",
        last_error()
    );
    // The chunk is still allocated: it frees once, and a second free is refused.
    assert_eq!(deallocate(memory, offset, 100, 8), S::RESMEM_OK);
    assert_eq!(deallocate(memory, offset, 100, 8), S::RESMEM_INVALID_OFFSET);
    assert!(last_error().contains("freed already"), "{}", last_error());
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn registering_past_the_payload_or_unregistering_what_is_not_registered_is_invalid_offset() {
    let ns = Ns::new("reg");
    let memory = create_memory("m", &ns);
    let (offset, _) = allocate(memory, 64, 8).expect("allocate");
    let view = open_view("m", &ns, 1).expect("open read-write");
    assert_eq!(
        register(view, offset, usize::MAX).err(),
        Some(S::RESMEM_INVALID_OFFSET)
    );
    assert_eq!(
        register(view, offset, 1 << 40).err(),
        Some(S::RESMEM_INVALID_OFFSET)
    );
    // Segment 200 does not exist.
    assert_eq!(
        register(view, (64 << 8) | 200, 8).err(),
        Some(S::RESMEM_INVALID_OFFSET)
    );
    assert_eq!(unregister(view, offset), S::RESMEM_INVALID_OFFSET);
    assert_eq!(
        last_error(),
        format!("resmem_view_unregister: offset {offset} is not registered with this view")
    );
    // Two registrations, two unregisters, then none is left.
    let a = register(view, offset, 64).expect("register");
    let b = register(view, offset, 64).expect("register again");
    assert_eq!(a, b);
    assert_eq!(unregister(view, offset), S::RESMEM_OK);
    assert_eq!(unregister(view, offset), S::RESMEM_OK);
    assert_eq!(unregister(view, offset), S::RESMEM_INVALID_OFFSET);
    close_view(view);
    assert_eq!(deallocate(memory, offset, 64, 8), S::RESMEM_OK);
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn opening_what_does_not_exist_or_with_a_bad_mode_fails_without_writing_out() {
    let ns = Ns::new("open");
    assert_eq!(
        open_view("nothing", &ns, 0).err(),
        Some(S::RESMEM_DOES_NOT_EXIST)
    );
    assert!(
        last_error().starts_with("resmem_view_open: no memory"),
        "{}",
        last_error()
    );
    let memory = create_memory("m", &ns);
    let name = c("m");
    let mut view = ptr::dangling_mut();
    // SAFETY: valid strings and out-pointer.
    let status = unsafe { resmem_view_open(name.as_ptr(), ns.ptr(), 2, 0, &mut view) };
    assert_eq!(status, S::RESMEM_INVALID_ARGUMENT);
    assert_eq!(view, ptr::dangling_mut(), "not written on failure");
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn creating_a_memory_twice_is_already_exists() {
    let ns = Ns::new("twice");
    let memory = create_memory("m", &ns);
    let opts = resmem_memory_options {
        namespace_: ns.ptr(),
        ..Default::default()
    };
    assert_eq!(
        create_memory_with("m", &opts).err(),
        Some(S::RESMEM_ALREADY_EXISTS)
    );
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn list_exists_and_remove_by_name() {
    let ns = Ns::new("manage");
    let (a, b) = (create_memory("beta", &ns), create_memory("alpha", &ns));
    assert_eq!(list(&ns), ["alpha", "beta"]);
    assert!(exists("alpha", &ns));
    assert!(!exists("gamma", &ns));

    let remove = |name: &str| -> (resmem_status, bool) {
        let name = c(name);
        let mut removed = false;
        // SAFETY: valid strings and out-pointer.
        let status = unsafe { resmem_remove(name.as_ptr(), ns.ptr(), &mut removed) };
        (status, removed)
    };
    // A live owner's memory is refused; one that does not exist is not removed.
    assert_eq!(remove("alpha").0, S::RESMEM_PERMISSION_DENIED);
    assert!(
        last_error().contains("its owner is alive"),
        "{}",
        last_error()
    );
    assert_eq!(remove("gamma"), (S::RESMEM_OK, false));
    // A stale memory (its owner left everything behind, as a crash would) is removed.
    let config = resmem::Config::default().prefix(ns.prefix());
    resmem::Memory::builder("stale")
        .config(&config)
        .create()
        .expect("create")
        .abandon();
    assert!(exists("stale", &ns));
    assert_eq!(remove("stale"), (S::RESMEM_OK, true));
    assert!(!exists("stale", &ns));

    close_memory(a);
    close_memory(b);
    assert_eq!(list(&ns), Vec::<String>::new());
    ns.assert_empty();
}

#[test]
fn every_status_has_its_name_and_codes_are_distinct() {
    let name = |code: i32| {
        // SAFETY: a static NUL-terminated string.
        unsafe { CStr::from_ptr(resmem_status_name(code)) }
            .to_str()
            .expect("UTF-8")
            .to_owned()
    };
    assert_eq!(S::RESMEM_OK as i32, 0);
    let mut codes = std::collections::BTreeSet::new();
    for status in resmem_status::ALL {
        assert!(
            codes.insert(status as i32),
            "{status:?} has a code of its own"
        );
        assert_eq!(name(status as i32), format!("{status:?}"));
        if status != S::RESMEM_OK {
            assert!((status as i32) < 0, "{status:?} is negative");
        }
    }
    assert_eq!(name(S::RESMEM_TIMEOUT as i32), "RESMEM_TIMEOUT");
    assert_eq!(name(1), "RESMEM_UNKNOWN_STATUS");
    assert_eq!(name(i32::MIN), "RESMEM_UNKNOWN_STATUS");
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(resmem_version()) };
    assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_last_error_is_per_thread_and_kept_across_successful_calls() {
    let ns = Ns::new("lasterr");
    let fail_here = || {
        let opts = resmem_memory_options {
            namespace_: ns.ptr(),
            ..Default::default()
        };
        assert_eq!(
            create_memory_with("a/b", &opts).err(),
            Some(S::RESMEM_INVALID_NAME)
        );
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(last_error(), "", "nothing failed on this thread yet");
            fail_here();
            let message = last_error();
            assert!(
                message.starts_with("resmem_memory_create: invalid name"),
                "{message}"
            );
            // Another thread's failure does not touch this thread's message.
            s.spawn(|| {
                assert_eq!(last_error(), "");
                assert_eq!(
                    open_view("missing", &ns, 0).err(),
                    Some(S::RESMEM_DOES_NOT_EXIST)
                );
                assert!(
                    last_error().starts_with("resmem_view_open: "),
                    "{}",
                    last_error()
                );
            })
            .join()
            .expect("the other thread");
            assert_eq!(last_error(), message);
            // A successful call leaves it as it was.
            let memory = create_memory("ok", &ns);
            assert_eq!(last_error(), message);
            close_memory(memory);
        });
    });
    ns.assert_empty();
}
