//! Namespace isolation between guests (also nested), and `remove` of a live owner with a
//! corrupted header.

use super::*;

/// A guest's memory under namespace A is invisible to guests (and the host functions) under
/// namespace B; a native view with prefix A reads the guest's printed offsets unchanged.
#[test]
fn namespaces_isolate_guests_and_offsets_mean_the_same_natively() {
    let scope_a = Scope::new("nsa");
    let scope_b = Scope::new("nsb");
    let host_a = host(&scope_a);
    let host_b = host(&scope_b);
    let producer = load(&host_a, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host_a, &producer, &["producer", "shared", "3", "4096"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 3, 4096);
    let mut consumer_args = vec!["consumer".to_owned(), "shared".to_owned()];
    consumer_args.extend(chunks.iter().map(GuestChunk::consumer_arg));
    let consumer_args: Vec<&str> = consumer_args.iter().map(String::as_str).collect();

    // Same namespace: a consumer guest verifies the producer guest's chunks.
    let end = run(
        &host_a,
        &load(&host_a, resmem_guests::CONSUMER_WASM),
        &consumer_args,
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout, [format!("verified {} bytes", 4096 * 7)]);

    // Other namespace: the same consumer does not find the memory.
    let end = run(
        &host_b,
        &load(&host_b, resmem_guests::CONSUMER_WASM),
        &consumer_args,
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr
            .contains("open \"shared\": no memory with this name exists"),
        "{}",
        end.stderr
    );

    // The host functions a guest calls, under each namespace.
    let state = |host: &GuestHost| {
        GuestState::new(
            WasiCtxBuilder::new().build(),
            Arc::new(host.policy().clone()),
        )
    };
    let mut in_a = state(&host_a);
    let mut in_b = state(&host_b);
    assert_eq!(Host::list(&mut in_a.resmem()).unwrap().unwrap(), ["shared"]);
    assert!(
        Host::exists(&mut in_a.resmem(), "shared".into())
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        Host::list(&mut in_b.resmem()).unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert!(
        !Host::exists(&mut in_b.resmem(), "shared".into())
            .unwrap()
            .unwrap()
    );
    let opened = HostView::open(&mut in_b.resmem(), "shared".into(), WitAccess::Read, 0).unwrap();
    assert!(
        matches!(opened, Err(WitError::DoesNotExist)),
        "{}",
        opened.is_ok()
    );
    // B cannot remove A's memory either: for B it does not exist.
    assert!(
        !Host::remove(&mut in_b.resmem(), "shared".into())
            .unwrap()
            .unwrap()
    );
    let removed = Host::remove(&mut in_a.resmem(), "shared".into()).unwrap();
    assert!(
        matches!(removed, Err(WitError::PermissionDenied(_))),
        "a live owner's memory"
    );

    // Natively: prefix A reads the printed offsets unchanged; prefix B finds nothing.
    let view = View::builder("shared")
        .config(&Config::default().prefix(scope_a.prefix()))
        .open(AccessMode::Read)
        .unwrap();
    for c in &chunks {
        check_in_place(
            &view,
            PointerOffset::from_u64(c.offset),
            c.len as usize,
            c.seed,
        )
        .unwrap();
    }
    assert_eq!(view.number_of_active_segments(), 1, "unregistered again");
    assert!(check_in_place(&view, chunks[0].pointer(), chunks[0].len as usize, 99).is_err());
    drop(view);
    let missing = View::builder("shared")
        .config(&Config::default().prefix(scope_b.prefix()))
        .open(AccessMode::Read);
    assert!(
        matches!(missing, Err(OpenError::DoesNotExist)),
        "{missing:?}"
    );
    assert_eq!(
        resmem::list(&scope_b.config()).unwrap(),
        Vec::<String>::new()
    );

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    drop((in_a, in_b));
    assert_empty(&scope_a);
    assert_empty(&scope_b);
}

/// Namespaces are plain prefixes, so when one namespace is a prefix of another (`P` and
/// `Pinner_`) the outer one's guests see the inner one's memory `frames` as `inner_frames`:
/// they list it, open it and read it, and could create `inner_frames` for the inner guests to
/// open as `frames`. Isolation must not depend on the host never nesting namespaces.
#[test]
fn nested_namespaces_are_isolated() {
    let outer = Scope::new("nest");
    let inner = format!("{}inner_", outer.prefix());
    let host_outer = host(&outer);
    let host_inner = Arc::new(
        GuestHost::new(
            Policy::builder().namespace(&inner).build(),
            engine_options(),
        )
        .unwrap(),
    );
    let producer = load(&host_inner, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host_inner, &producer, &["producer", "frames", "2", "64"]);
    let chunks = parse_chunks(&guest.until_ready());
    let mut args = vec!["consumer".to_owned(), "inner_frames".to_owned()];
    args.extend(chunks.iter().map(GuestChunk::consumer_arg));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut in_outer = GuestState::new(
        WasiCtxBuilder::new().build(),
        Arc::new(host_outer.policy().clone()),
    );
    let listed = Host::list(&mut in_outer.resmem()).unwrap().unwrap();
    let exists = Host::exists(&mut in_outer.resmem(), "inner_frames".into())
        .unwrap()
        .unwrap();
    let opened = HostView::open(
        &mut in_outer.resmem(),
        "inner_frames".into(),
        WitAccess::Read,
        0,
    )
    .unwrap()
    .is_ok();
    let end = run(
        &host_outer,
        &load(&host_outer, resmem_guests::CONSUMER_WASM),
        &args,
    );
    drop(in_outer);
    guest.release();
    let finished = guest.finish();
    assert_eq!(finished.outcome, RunOutcome::Exited(0), "{finished:?}");
    assert_empty(&outer);

    assert_eq!(
        listed,
        Vec::<String>::new(),
        "the outer namespace lists the inner memory"
    );
    assert!(!exists, "the inner memory exists in the outer namespace");
    assert!(!opened, "the outer namespace opens the inner memory");
    assert_eq!(
        end.outcome,
        RunOutcome::Exited(1),
        "a guest of the outer namespace read the inner guest's chunks: {end:?}"
    );
}

/// `remove` (from a guest) must refuse a memory whose owner is alive; the owner's lock on the
/// management object says so even when the header's bytes were overwritten (any peer that can
/// write the object can do that, and the owner keeps working on its private state).
#[test]
fn guest_remove_refuses_a_live_owner_with_a_corrupted_header() {
    let scope = Scope::new("grmlive");
    let host = host(&scope);
    let memory = Memory::builder("live")
        .config(&scope.config())
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 4096, 5);
    let mut state = GuestState::new(
        WasiCtxBuilder::new().build(),
        Arc::new(host.policy().clone()),
    );
    let refused = Host::remove(&mut state.resmem(), "live".into()).unwrap();
    assert!(
        matches!(refused, Err(WitError::PermissionDenied(_))),
        "intact header: {refused:?}"
    );

    // A peer scribbles over the header's first bytes.
    let mgmt = scope.object_path(&scope.mgmt_object("live"));
    let mut file = std::fs::OpenOptions::new().write(true).open(&mgmt).unwrap();
    file.write_all(&[0xEE; 16]).unwrap();
    drop(file);
    let corrupted = View::builder("live")
        .config(&scope.config())
        .open(AccessMode::Read);
    assert!(
        matches!(corrupted, Err(OpenError::Corrupted)),
        "{corrupted:?}"
    );

    let refused = Host::remove(&mut state.resmem(), "live".into()).unwrap();
    let still_there = scope.object_exists(&scope.segment_object("live", spec.offset.segment_id()));
    drop(state);
    drop(memory);
    assert_empty(&scope);
    assert!(
        matches!(refused, Err(WitError::PermissionDenied(_))),
        "a guest removed the memory of a live owner: {refused:?}"
    );
    assert!(still_there, "the live owner's segment was unlinked");
}
