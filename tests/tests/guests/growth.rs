//! Guest growth under each allocation strategy, and a static guest memory that cannot grow.

use super::*;

/// The producer guest grows through five segments with `--strategy` (or the default); a native
/// view of the live memory sees the strategy in the header, the bucket size each segment got
/// and every byte of every chunk.
fn guest_grows(strategy: Option<&str>, expected: AllocationStrategy, buckets: [usize; 5]) {
    let scope = Scope::new("ggrow");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut args = vec!["producer", "g", "5", "3000"];
    if let Some(strategy) = strategy {
        args.extend(["--strategy", strategy]);
    }
    let mut guest = Running::start(&host, &producer, &args);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 5, 3000);

    let view = View::builder("g")
        .config(&scope.config())
        .open(AccessMode::Read)
        .unwrap();
    assert_eq!(view.header_info().strategy, expected);
    let records = view.segment_records();
    let by_segment: Vec<(u8, usize)> = records
        .iter()
        .map(|(id, r)| (id.value(), r.layout.chunk_size))
        .collect();
    let want: Vec<(u8, usize)> = chunks
        .iter()
        .zip(buckets)
        .map(|(c, bucket)| (c.segment, bucket))
        .collect();
    assert_eq!(
        by_segment, want,
        "segment id and bucket size per live segment"
    );
    for (_, record) in &records {
        assert_eq!(record.chunks_in_use, 1, "{record:?}");
    }
    for c in &chunks {
        check_in_place(&view, c.pointer(), c.len as usize, c.seed).unwrap();
    }
    drop(view);

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_empty(&scope);
}

#[test]
fn guest_grows_by_powers_of_two_by_default() {
    guest_grows(
        None,
        AllocationStrategy::PowerOfTwo,
        [4096, 8192, 16384, 32768, 65536],
    );
}

#[test]
fn guest_grows_by_powers_of_two() {
    guest_grows(
        Some("power-of-two"),
        AllocationStrategy::PowerOfTwo,
        [4096, 8192, 16384, 32768, 65536],
    );
}

#[test]
fn guest_grows_best_fit() {
    guest_grows(
        Some("best-fit"),
        AllocationStrategy::BestFit,
        [3000, 6000, 12000, 24000, 48000],
    );
}

/// A static memory never grows: the chunk that fits segment 0's 64-byte buckets succeeds, the
/// next is refused with `out-of-memory`, and the guest reports it and exits 1 (no trap).
#[test]
fn static_guest_memory_cannot_grow() {
    let scope = Scope::new("gstatic");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let end = run(
        &host,
        &producer,
        &[
            "producer",
            "s",
            "3",
            "64",
            "--no-wait",
            "--strategy",
            "static",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    let [first, failed] = end.stdout.as_slice() else {
        panic!("two lines expected: {end:?}");
    };
    let first = GuestChunk::parse(first);
    assert_eq!(
        (first.seed, first.len, first.segment, first.active),
        (1, 64, 0, 1)
    );
    assert_eq!(
        failed,
        "failed step=allocate seed=2 len=128 error=out-of-memory"
    );
    assert!(end.stderr.contains("out of memory"), "{}", end.stderr);
    assert_empty(&scope);
}
