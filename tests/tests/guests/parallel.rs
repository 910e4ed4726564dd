//! Guests on several threads of one host.

use super::*;

/// Four producer guests on four threads of one host, each growing its own memory; all are
/// alive at once, verified natively and by a peer process, and all clean up.
#[test]
fn four_producer_guests_run_in_parallel_in_one_host() {
    let scope = Scope::new("gpar");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let setups = [
        ("p0", 6, 4096),
        ("p1", 5, 1000),
        ("p2", 4, 65536),
        ("p3", 7, 64),
    ];
    let mut guests: Vec<Running> = setups
        .iter()
        .map(|(name, count, first)| {
            let (count, first) = (count.to_string(), first.to_string());
            Running::start(&host, &producer, &["producer", name, &count, &first])
        })
        .collect();
    let mut all = Vec::new();
    for (guest, (name, count, first)) in guests.iter_mut().zip(setups) {
        let chunks = parse_chunks(&guest.until_ready());
        assert_doubling(&chunks, count, first);
        all.push((name, chunks));
    }
    // All four are alive at the same time.
    assert_eq!(
        resmem::list(&scope.config()).unwrap(),
        ["p0", "p1", "p2", "p3"]
    );
    for (name, chunks) in &all {
        let view = View::builder(name)
            .config(&scope.config())
            .open(AccessMode::Read)
            .unwrap();
        for c in chunks {
            check_in_place(&view, c.pointer(), c.len as usize, c.seed).unwrap();
        }
    }
    let (name, chunks) = &all[2];
    let specs: Vec<ChunkSpec> = chunks.iter().map(GuestChunk::spec).collect();
    let summary = peer_verify(&scope, name, &specs).summary();
    assert_eq!(summary.bytes, 65536 * 15);

    for guest in &mut guests {
        guest.release();
    }
    for guest in guests {
        let end = guest.finish();
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    }
    assert_empty(&scope);
}
