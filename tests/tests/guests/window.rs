//! The zero-copy window (`map`): guests read and write shared memory in place.

use super::*;

/// `key=value` fields of a guest output line that starts with `head`.
fn fields(line: &str, head: &str) -> std::collections::HashMap<String, u64> {
    let rest = line
        .strip_prefix(head)
        .unwrap_or_else(|| panic!("expected {head:?}, got {line:?}"));
    rest.split_whitespace()
        .map(|field| {
            let (key, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {field:?} in {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {line:?}"));
            (key.to_owned(), value)
        })
        .collect()
}

/// A real, separate process (coreutils `truncate`) shrinks the scope's `objects` to nothing,
/// as a hostile peer would.
fn truncate_objects(scope: &Scope, objects: &[String]) {
    let status = std::process::Command::new("truncate")
        .args(["-s", "0"])
        .args(objects.iter().map(|o| scope.object_path(o)))
        .status()
        .expect("run truncate");
    assert!(status.success());
}

/// Whether a trap message says the guest touched memory it may not.
fn is_memory_fault(outcome: &RunOutcome) -> bool {
    matches!(outcome, RunOutcome::Trapped(t) if t.message.contains("memory fault") || t.message.contains("out of bounds"))
}

/// The window guest maps a 64 MiB chunk and fills it with its own stores; a native peer
/// process checks every byte (and fails on a wrong seed).
#[test]
fn window_guest_writes_64_mib_in_place_and_a_native_peer_verifies_every_byte() {
    let scope = Scope::new("wbig");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let len = 64 * MIB;
    let mut guest = Running::start(
        &host,
        &window,
        &["window", "produce", "big", &len.to_string(), "9"],
    );
    let lines = guest.until_ready();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let chunk = fields(&lines[0], "chunk ");
    assert_eq!(chunk["len"], len as u64);
    // The window lies above the heap cap (the upper 2 GiB by default).
    assert!(chunk["addr"] >= 2 << 30, "{chunk:?}");
    let spec = ChunkSpec::new(PointerOffset::from_u64(chunk["offset"]), len, 9);

    let out = peer_verify(&scope, "big", &[spec]);
    assert_eq!(out.summary().bytes, len as u64, "{out:?}");
    let mut wrong = spec;
    wrong.seed = 10;
    let out = peer_verify(&scope, "big", &[wrong]);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");

    guest.release();
    assert_eq!(guest.finish().outcome, RunOutcome::Exited(0));
    assert_empty(&scope);
}

/// A native owner's chunks are read in place by a guest through a read-only view, and written
/// in place through a read-write one: the owner sees the guest's bytes without any copy call.
#[test]
fn native_owner_is_read_and_written_in_place_through_the_window() {
    let scope = Scope::new("wnat");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let memory = Memory::builder("native")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let specs: Vec<ChunkSpec> = [4 * KIB, 100_000, 3 * MIB + 5]
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_guest_filled(&memory, len, 40 + i as u64))
        .collect();
    assert!(segments_of(&specs).len() >= 2);
    for spec in &specs {
        let args = [
            "window".to_owned(),
            "verify".to_owned(),
            "native".to_owned(),
            spec.offset.as_u64().to_string(),
            spec.len.to_string(),
            spec.seed.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let end = run(&host, &window, &args);
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(fields(&end.stdout[0], "verified ")["len"], spec.len as u64);
        // A wrong seed is noticed.
        let mut wrong = args.clone();
        let seed = (spec.seed + 1).to_string();
        wrong[5] = &seed;
        let end = run(&host, &window, &wrong);
        assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
        assert!(end.stdout[0].starts_with("mismatch at="), "{end:?}");
    }

    // Written in place by the guest, checked here through the owner's own pointer.
    let target = specs[2];
    let end = run(
        &host,
        &window,
        &[
            "window",
            "fill",
            "native",
            &target.offset.as_u64().to_string(),
            &target.len.to_string(),
            "77",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let view = View::builder("native")
        .config(&scope.config())
        .open(AccessMode::Read)
        .unwrap();
    let bytes = copy_from_view(&view, target.offset, target.len).unwrap();
    Pattern::Guest.check(&bytes, 77).expect("the guest's bytes");
    drop(view);
    drop(memory);
    assert_empty(&scope);
}

/// A store through a read-only mapping traps that guest only: the chunk is unchanged and a
/// second guest of the same host, running meanwhile, finishes its work.
#[test]
fn a_store_through_a_read_only_mapping_traps_and_the_host_serves_other_guests() {
    let scope = Scope::new("wro");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let memory = Memory::builder("ro")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(64 * KIB))
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 64 * KIB, 5);
    let mut other = Running::start(
        &host,
        &window,
        &["window", "produce", "other", "65536", "6"],
    );
    let other_chunk = fields(&other.until_ready()[0], "chunk ");

    let end = run(
        &host,
        &window,
        &[
            "window",
            "write-readonly",
            "ro",
            &spec.offset.as_u64().to_string(),
        ],
    );
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert_eq!(
        end.stdout,
        ["writing"],
        "the store never completed: {end:?}"
    );
    let view = View::builder("ro")
        .config(&scope.config())
        .open(AccessMode::Read)
        .unwrap();
    let bytes = copy_from_view(&view, spec.offset, spec.len).unwrap();
    Pattern::Guest
        .check(&bytes, 5)
        .expect("the chunk is unchanged");

    // The other guest is unaffected: its chunk verifies, and it exits normally.
    let other_spec = ChunkSpec::new(PointerOffset::from_u64(other_chunk["offset"]), 64 * KIB, 6);
    assert_eq!(
        peer_verify(&scope, "other", &[other_spec]).summary().bytes,
        65536
    );
    other.release();
    assert_eq!(other.finish().outcome, RunOutcome::Exited(0));
    drop(view);
    drop(memory);
    assert_empty(&scope);
}

/// A segment the memory released is gone from the window (touching it traps), and window
/// slots are reused.
#[test]
fn released_segments_leave_the_window_and_their_slots_are_reused() {
    let scope = Scope::new("wrel");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let end = run(&host, &window, &["window", "released"]);
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert_eq!(end.stdout.len(), 1, "the load never completed: {end:?}");
    let released = fields(&end.stdout[0], "released ");
    assert_eq!(released["segments"], 1, "{released:?}");
    assert!(released["addr"] >= 2 << 30, "{released:?}");
    assert_empty(&scope);

    let end = run(&host, &window, &["window", "reuse"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let reuse = fields(&end.stdout[0], "reuse ");
    assert_eq!(reuse["first"], reuse["second"], "{reuse:?}");
    assert_empty(&scope);
}

/// Each guest has its own reservation: an address where one guest has a chunk mapped traps in
/// another guest of the same host, whose heap still reads fine.
#[test]
fn two_guests_in_one_host_cannot_see_each_others_windows() {
    let scope = Scope::new("wiso");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let mut owner = Running::start(&host, &window, &["window", "produce", "mine", "65536", "3"]);
    let addr = fields(&owner.until_ready()[0], "chunk ")["addr"];

    let end = run(&host, &window, &["window", "probe", &addr.to_string()]);
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert_eq!(end.stdout, ["probing"], "{end:?}");
    // The same probe of a heap address succeeds, so the trap is about the window.
    let end = run(&host, &window, &["window", "probe", "1024"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");

    owner.release();
    assert_eq!(owner.finish().outcome, RunOutcome::Exited(0));
    assert_empty(&scope);
}

/// A peer process truncates a segment that one guest has in its window and another reads
/// through the host's copies. The SIGBUS that follows traps the first guest and fails the
/// second one's `read` and `map` with `io`; the host process lives on and runs more guests.
#[test]
fn a_peer_truncating_a_segment_traps_or_fails_only_the_guests_using_it() {
    let scope = Scope::new("wbus");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let memory = Memory::builder("shrink")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(256 * KIB))
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 256 * KIB, 8);
    let (offset, len) = (spec.offset.as_u64().to_string(), spec.len.to_string());
    let mut mapped = Running::start(
        &host,
        &window,
        &["window", "hold-map", "shrink", &offset, &len],
    );
    assert!(mapped.line().starts_with("mapped addr="));
    let mut copied = Running::start(
        &host,
        &window,
        &["window", "hold-copy", "shrink", &offset, &len],
    );
    assert_eq!(copied.line(), "registered");
    let (window_faults, copy_faults) = resmem_host::sigbus::contained_faults();

    let object = scope.segment_object("shrink", spec.offset.segment_id());
    truncate_objects(&scope, &[object]);

    mapped.release();
    let end = mapped.finish();
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert!(end.stdout.is_empty(), "the copy never completed: {end:?}");
    copied.release();
    let end = copied.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout, ["error=io", "map error=io"], "{end:?}");
    let (window_after, copy_after) = resmem_host::sigbus::contained_faults();
    assert!(window_after > window_faults, "a window fault was contained");
    assert!(copy_after > copy_faults, "a copy fault was contained");

    // The host is alive and well.
    let end = run(&host, &window, &["window", "reuse"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    drop(memory);
    assert_empty(&scope);
}

/// The window is finite: mapping beyond it is `quota-exceeded`, and its size is the policy's.
#[test]
fn mapping_beyond_the_window_is_quota_exceeded() {
    let scope = Scope::new("wfull");
    let mut quotas = Quotas::default();
    quotas.window_bytes = 4 * MIB as u64;
    let host = host_with(&scope, quotas);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let end = run(&host, &window, &["window", "fill-window", &MIB.to_string()]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    // Each 1 MiB chunk's segment maps 1 MiB plus its trailer page: a 1 MiB + 64 KiB slot.
    assert_eq!(end.stdout, ["full after=3 error=quota-exceeded"], "{end:?}");
    assert_empty(&scope);
}

/// Four guests instantiated at once on four threads of one host: each memory attaches to its
/// own guest's window (the binding is per thread), so every guest maps its chunk at the bottom
/// of its own window and a native peer process finds every guest's bytes.
#[test]
fn guests_instantiated_in_parallel_each_get_their_own_window() {
    let scope = Scope::new("wpar");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let names: Vec<String> = (0..4).map(|i| format!("par{i}")).collect();
    let mut guests: Vec<Running> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Running::start(
                &host,
                &window,
                &["window", "produce", name, "1048576", &(20 + i).to_string()],
            )
        })
        .collect();
    let heap_cap = (4u64 << 30) - Quotas::default().window_bytes;
    for (i, guest) in guests.iter_mut().enumerate() {
        let chunk = fields(&guest.until_ready()[0], "chunk ");
        assert_eq!(chunk["addr"], heap_cap, "guest {i}: {chunk:?}");
        let spec = ChunkSpec::new(PointerOffset::from_u64(chunk["offset"]), MIB, 20 + i as u64);
        assert_eq!(
            peer_verify(&scope, &names[i], &[spec]).summary().bytes,
            MIB as u64
        );
    }
    for mut guest in guests {
        guest.release();
        assert_eq!(guest.finish().outcome, RunOutcome::Exited(0));
    }
    assert_empty(&scope);
}

/// A peer truncates every object of a guest's memory (header and segments) while the guest
/// holds it. Another guest's view of it fails with an error, and dropping the memory (which
/// writes the truncated header) neither kills the host nor leaves the objects behind.
#[test]
fn a_guest_owner_whose_objects_a_peer_truncated_is_released_cleanly() {
    let scope = Scope::new("wtown");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host, &producer, &["producer", "gone", "2", "65536"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_eq!(chunks.len(), 2);
    let objects = scope.objects();
    assert_eq!(objects.len(), 3, "{objects:?}");
    truncate_objects(&scope, &objects);
    // Another guest's view cannot open the broken memory, and gets an error, not a crash.
    let end = run(
        &host,
        &window,
        &[
            "window",
            "verify",
            "gone",
            &chunks[0].offset.to_string(),
            "16",
            "1",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(end.stdout[0].starts_with("error="), "{end:?}");
    guest.release();
    assert_eq!(guest.finish().outcome, RunOutcome::Exited(0));
    assert_empty(&scope);
}
