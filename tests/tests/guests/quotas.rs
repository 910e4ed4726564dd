//! Quotas: each one refuses what exceeds it, and count quotas are exact and freed on drop.

use super::*;

/// Runs the producer under `quotas` and expects it to report `failed_line` and exit 1 (a
/// refusal, not a trap); then a small producer runs fine on the same host.
fn producer_refused(
    tag: &str,
    quotas: Quotas,
    args: &[&str],
    failed_line: &str,
    chunks_before: usize,
) {
    let scope = Scope::new(tag);
    let host = host_with(&scope, quotas);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut full = vec!["producer", "big"];
    full.extend(args);
    full.push("--no-wait");
    let end = run(&host, &producer, &full);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    let (last, before) = end.stdout.split_last().expect("output");
    assert_eq!(last, failed_line, "{end:?}");
    assert_eq!(before.len(), chunks_before, "{end:?}");
    parse_chunks(before);
    assert!(end.stderr.contains("quota exceeded"), "{}", end.stderr);
    assert_empty(&scope);

    let end = run(
        &host,
        &producer,
        &["producer", "small", "1", "64", "--no-wait"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.len(), 2, "{end:?}");
    assert_empty(&scope);
}

#[test]
fn quota_shm_bytes_refuses_a_segment() {
    // Segments keep the hint's four buckets: 64, 128 and 256 KiB of payload (plus a trailer
    // page each) fit 512 KiB; 512 KiB more do not.
    producer_refused(
        "qshm",
        {
            let mut quotas = Quotas::default();
            quotas.shm_bytes = 512 * KIB as u64;
            quotas
        },
        &["4", "16384"],
        "failed step=allocate seed=4 len=131072 error=quota-exceeded",
        3,
    );
}

#[test]
fn quota_io_bytes_refuses_a_large_write() {
    producer_refused(
        "qio",
        {
            let mut quotas = Quotas::default();
            quotas.io_bytes = 64 * KIB as u64;
            quotas
        },
        &["3", "65536"],
        "failed step=write seed=2 len=131072 error=quota-exceeded",
        1,
    );
}

#[test]
fn quota_live_chunks_refuses_an_allocation() {
    // The producer hints four chunks, which the quota allows; the fifth live chunk is refused.
    producer_refused(
        "qlive",
        {
            let mut quotas = Quotas::default();
            quotas.live_chunks = 4;
            quotas
        },
        &["6", "1024"],
        "failed step=allocate seed=5 len=16384 error=quota-exceeded",
        4,
    );
}

#[test]
fn quota_chunk_bytes_refuses_a_large_chunk() {
    producer_refused(
        "qchunk",
        {
            let mut quotas = Quotas::default();
            quotas.chunk_bytes = 8 * KIB as u64;
            quotas
        },
        &["4", "4096"],
        "failed step=allocate seed=3 len=16384 error=quota-exceeded",
        2,
    );
}

#[test]
fn quota_memories_refuses_a_memory() {
    let scope = Scope::new("qmem");
    let host = host_with(&scope, {
        let mut quotas = Quotas::default();
        quotas.memories = 0;
        quotas
    });
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let end = run(&host, &producer, &["producer", "m", "1", "64", "--no-wait"]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert_eq!(end.stdout, ["failed step=create error=quota-exceeded"]);
    assert!(end.stderr.contains("0 memories at once"), "{}", end.stderr);
    assert_empty(&scope);
}

#[test]
fn quota_views_refuses_a_guest_view() {
    let scope = Scope::new("qview");
    let host = host_with(&scope, {
        let mut quotas = Quotas::default();
        quotas.views = 0;
        quotas
    });
    let consumer = load(&host, resmem_guests::CONSUMER_WASM);
    let memory = Memory::builder("v")
        .config(&scope.config())
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 64, 3);
    let arg = format!("{}:64:3", spec.offset.as_u64());
    let end = run(&host, &consumer, &["consumer", "v", &arg]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("quota exceeded: 0 views at once"),
        "{}",
        end.stderr
    );
    // The same consumer under default quotas succeeds: the quota, not the memory, refused.
    let unlimited = GuestHost::new(
        Policy::builder().namespace(scope.prefix()).build(),
        engine_options(),
    )
    .unwrap();
    let unlimited = Arc::new(unlimited);
    let end = run(
        &unlimited,
        &load(&unlimited, resmem_guests::CONSUMER_WASM),
        &["consumer", "v", &arg],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    drop(memory);
    assert_empty(&scope);
}

/// The count quotas exactly, through the host implementation itself (`GuestState` and the
/// bindgen traits, as the linker calls them): the limit is reached, refused with
/// `quota-exceeded`, and freed again when a resource is dropped.
#[test]
fn count_quotas_are_exact_and_freed_on_drop() {
    let scope = Scope::new("qcount");
    let policy = policy(&scope, {
        let mut quotas = Quotas::default();
        quotas.memories = 2;
        quotas.views = 1;
        quotas.registrations = 1;
        quotas.live_chunks = 2;
        quotas
    });
    let mut state = GuestState::new(WasiCtxBuilder::new().build(), Arc::new(policy));
    let st = &mut state;
    let config = || MemoryConfig {
        max_chunk_layout_hint: WitLayout { size: 64, align: 8 },
        // The chunk-count hint is checked against the live-chunks quota too.
        max_number_of_chunks_hint: 2,
        allocation_strategy: WitStrategy::PowerOfTwo,
    };
    let borrow = |r: &Resource<resmem_host::GuestMemory>| Resource::new_borrow(r.rep());
    let small = WitLayout { size: 64, align: 8 };

    let a = HostMemory::create(&mut st.resmem(), "a".into(), config())
        .unwrap()
        .unwrap();
    let b = HostMemory::create(&mut st.resmem(), "b".into(), config())
        .unwrap()
        .unwrap();
    let refused = HostMemory::create(&mut st.resmem(), "c".into(), config()).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert_eq!(st.usage().memories, 2);
    assert_eq!(Host::list(&mut st.resmem()).unwrap().unwrap(), ["a", "b"]);
    HostMemory::drop(&mut st.resmem(), b).unwrap();
    assert_eq!(st.usage().memories, 1);
    let c = HostMemory::create(&mut st.resmem(), "c".into(), config())
        .unwrap()
        .unwrap();
    assert_eq!(Host::list(&mut st.resmem()).unwrap().unwrap(), ["a", "c"]);

    let first = HostMemory::allocate(&mut st.resmem(), borrow(&a), small)
        .unwrap()
        .unwrap();
    let second = HostMemory::allocate(&mut st.resmem(), borrow(&c), small)
        .unwrap()
        .unwrap();
    let refused = HostMemory::allocate(&mut st.resmem(), borrow(&a), small).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert_eq!(st.usage().chunks, 2);
    HostMemory::deallocate(&mut st.resmem(), borrow(&c), second)
        .unwrap()
        .unwrap();
    let third = HostMemory::allocate(&mut st.resmem(), borrow(&a), small)
        .unwrap()
        .unwrap();
    assert_eq!(st.usage().chunks, 2);

    let view = HostView::open(&mut st.resmem(), "a".into(), WitAccess::Read, 0)
        .unwrap()
        .unwrap();
    let refused = HostView::open(&mut st.resmem(), "c".into(), WitAccess::Read, 0).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{}",
        refused.is_ok()
    );
    let vb = || Resource::<resmem_host::GuestView>::new_borrow(view.rep());
    HostView::register(&mut st.resmem(), vb(), first)
        .unwrap()
        .unwrap();
    let refused = HostView::register(&mut st.resmem(), vb(), third).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    HostView::unregister(&mut st.resmem(), vb(), first)
        .unwrap()
        .unwrap();
    HostView::register(&mut st.resmem(), vb(), third)
        .unwrap()
        .unwrap();
    assert_eq!(st.usage().registrations, 1);
    HostView::drop(&mut st.resmem(), view).unwrap();
    assert_eq!((st.usage().views, st.usage().registrations), (0, 0));

    // Dropping a memory returns its chunks to the quota; dropping the state removes the rest.
    HostMemory::drop(&mut st.resmem(), a).unwrap();
    assert_eq!((st.usage().memories, st.usage().chunks), (1, 0));
    assert_eq!(Host::list(&mut st.resmem()).unwrap().unwrap(), ["c"]);
    drop(state);
    assert_empty(&scope);
}
