//! An owner growing through segments under each strategy, verified by a long-lived peer view,
//! and a static memory that refuses to grow.

use std::collections::BTreeSet;

use resmem::{AllocError, AllocationStrategy, Memory, SegmentId};
use resmem_e2e::exit;

use super::*;

/// The owner (this process) grows through several segments while one long-lived peer view
/// verifies every byte of every chunk after each allocation, and concurrently with further
/// growth. Then the owner frees every chunk outside the current segment: those segments are
/// released (their objects unlinked), the peer's view refuses their offsets, and the chunks
/// that remain are verified by the same view and by fresh peer processes.
fn growth_across_segments(strategy: AllocationStrategy, tag: &str) {
    let scope = Scope::new(tag);
    let name = "grow";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .max_number_of_chunks_hint(2)
        .allocation_strategy(strategy)
        .create()
        .unwrap();
    assert_eq!(memory.allocation_strategy(), strategy);
    let mut peer = serve(&scope, name, "read");

    // Equal sizes exhaust segment 0's two buckets; larger ones exceed every bucket so far.
    let sizes = [
        4 * KIB,
        4 * KIB,
        4 * KIB,
        8 * KIB,
        6_000,
        20_000,
        64 * KIB,
        300_000,
        MIB,
        100,
    ];
    let mut chunks: Vec<Owned> = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let before = memory.current_segment();
        let chunk = alloc_filled(&memory, size, 1_000 + i as u64);
        let current = memory.current_segment();
        assert_eq!(
            chunk.segment(),
            current,
            "chunks come from the current segment"
        );
        if current != before {
            assert!(
                scope.object_exists(&scope.segment_object(name, current)),
                "new segment {current} has no OS object"
            );
        }
        chunks.push(chunk);
        let specs: Vec<ChunkSpec> = chunks.iter().map(|c| c.spec).collect();
        // Every byte of every chunk so far, through the one view this peer keeps open.
        let got = peer.verify(&specs);
        let segments = segments_of(&specs).len();
        assert_eq!(got, summary(total(&specs), specs.len(), segments, 1));
        // The peer reads the owner's current segment from the shared header.
        let info = peer.ok("info");
        assert!(info.contains(&format!("current={current} ")), "{info}");
        assert!(info.contains("owner_alive=true"), "{info}");
    }
    let specs: Vec<ChunkSpec> = chunks.iter().map(|c| c.spec).collect();
    let used = segments_of(&specs);
    assert!(used.len() >= 5, "only {} segments: {used:?}", used.len());
    assert_eq!(memory.number_of_active_segments(), used.len());
    assert_eq!(
        scope.objects().len(),
        used.len() + 1,
        "{:?}",
        scope.objects()
    );

    // The strategy sized the segment that first served 300 000 bytes.
    let big = chunks.iter().find(|c| c.spec.len == 300_000).unwrap();
    let expected_bucket = match strategy {
        AllocationStrategy::BestFit => 300_000,
        AllocationStrategy::PowerOfTwo => 512 * KIB,
        other => unreachable!("this test does not run under {other:?}"),
    };
    assert_eq!(memory.bucket_size(big.segment()), expected_bucket);

    // The peer re-verifies all chunks 40 times while the owner keeps growing.
    peer.send(&format!("repeat 40 {}", join(&specs)));
    let mut later = Vec::new();
    for (i, size) in [2 * MIB, 3 * MIB, 5 * MIB].into_iter().enumerate() {
        let before = memory.current_segment();
        later.push(alloc_filled(&memory, size, 2_000 + i as u64));
        assert_ne!(
            memory.current_segment(),
            before,
            "{size} bytes must need a new segment"
        );
    }
    let reply = peer.line(STEP);
    let repeated = reply
        .strip_prefix("ok repeated 40 ")
        .unwrap_or_else(|| panic!("repeat during growth: {reply:?}"));
    assert_eq!(
        VerifySummary::find_in(repeated).unwrap().bytes,
        total(&specs)
    );
    chunks.extend(later);

    // Free every chunk outside the current segment: those segments are released.
    let current = memory.current_segment();
    let (old, keep): (Vec<Owned>, Vec<Owned>) =
        chunks.into_iter().partition(|c| c.segment() != current);
    let released: BTreeSet<SegmentId> = old.iter().map(Owned::segment).collect();
    let old_specs: Vec<ChunkSpec> = old.iter().map(|c| c.spec).collect();
    for chunk in old {
        chunk.free(&memory);
    }
    assert_eq!(memory.number_of_active_segments(), 1);
    for &id in &released {
        assert!(
            !scope.object_exists(&scope.segment_object(name, id)),
            "released segment {id} still has its OS object"
        );
        assert_eq!(memory.bucket_size(id), 0);
    }
    assert_eq!(
        scope.objects(),
        vec![scope.segment_object(name, current), scope.mgmt_object(name)]
    );
    // The long-lived view refuses offsets into released segments (it had them mapped before)...
    for spec in &old_specs {
        let reply = peer.request(&format!("verify {spec}"));
        assert!(
            reply.starts_with("err ") && reply.contains("InvalidOffset"),
            "offset {spec} of a released segment: {reply}"
        );
    }
    // ...and still reads what remains.
    let keep_specs: Vec<ChunkSpec> = keep.iter().map(|c| c.spec).collect();
    assert_eq!(
        peer.verify(&keep_specs),
        summary(total(&keep_specs), keep_specs.len(), 1, 1)
    );

    // Fresh peer processes (three at once) verify the remaining chunks too.
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let args = verify_args(&scope, name, &keep_specs);
            std::thread::spawn(move || run_peer(&args, STEP))
        })
        .collect();
    for run in runs {
        let out = run.join().unwrap();
        assert_eq!(
            out.summary(),
            summary(total(&keep_specs), keep_specs.len(), 1, 1)
        );
    }

    // Growing again after the release still works, and the peer follows.
    let before = memory.current_segment();
    let again = alloc_filled(&memory, 9 * MIB, 3_000);
    assert_ne!(again.segment(), before);
    let mut all = keep_specs.clone();
    all.push(again.spec);
    assert_eq!(peer.verify(&all), summary(total(&all), all.len(), 2, 1));

    drop(memory);
    // The view outlives the owner: it sees the owner gone, and nothing is left in /dev/shm.
    let info = peer.ok("info");
    assert!(info.contains("owner_alive=false"), "{info}");
    peer.ok("quit");
    assert!(peer.wait(STEP).success());
    scope.assert_clean();
}

#[test]
fn growth_best_fit_verified_by_peer_across_resizes_and_release() {
    growth_across_segments(AllocationStrategy::BestFit, "gbf");
}

#[test]
fn growth_power_of_two_verified_by_peer_across_resizes_and_release() {
    growth_across_segments(AllocationStrategy::PowerOfTwo, "gp2");
}

/// Static never grows: the allocation that would need a new segment fails, nothing new appears
/// in /dev/shm, and the chunks that fit are readable by a peer; a freed bucket is reused in
/// place and the peer sees its new content.
#[test]
fn static_strategy_refuses_to_grow_and_peer_reads_what_fit() {
    let scope = Scope::new("sta");
    let name = "static";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .max_number_of_chunks_hint(2)
        .allocation_strategy(AllocationStrategy::Static)
        .create()
        .unwrap();
    let a = alloc_filled(&memory, 4 * KIB, 1);
    let b = alloc_filled(&memory, 4 * KIB, 2);
    assert_eq!(
        memory.allocate(layout(4 * KIB)),
        Err(AllocError::OutOfMemory)
    );
    assert_eq!(
        memory.allocate(layout(8 * KIB)),
        Err(AllocError::OutOfMemory)
    );
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(memory.current_segment(), SegmentId::new(0));
    assert_eq!(scope.objects().len(), 2, "{:?}", scope.objects());

    let out = run_peer(&verify_args(&scope, name, &[a.spec, b.spec]), STEP);
    assert_eq!(out.summary(), summary(8 * KIB as u64, 2, 1, 1));

    let offset = a.spec.offset;
    a.free(&memory);
    let c = alloc_filled(&memory, 4 * KIB, 3);
    assert_eq!(c.spec.offset, offset, "the freed bucket is reused");
    let out = run_peer(&verify_args(&scope, name, &[c.spec, b.spec]), STEP);
    assert_eq!(out.summary(), summary(8 * KIB as u64, 2, 1, 1));
    // The old content (seed 1) is gone from the peer's point of view too.
    let stale = ChunkSpec { seed: 1, ..c.spec };
    let out = run_peer(&verify_args(&scope, name, &[stale]), STEP);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");

    drop(memory);
    scope.assert_clean();
}
