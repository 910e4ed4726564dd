//! Segment churn: ids reused after 256 segments, and views opened while the owner grows and
//! releases.

use std::time::Duration;

use resmem::{AllocationStrategy, Memory, SegmentId};

use super::*;

/// Creates 256 segments one after the other: each step allocates a chunk that needs a larger
/// bucket (so a new segment), then frees the previous chunk, which releases the previous
/// segment at once. Calls `each` with every new chunk; returns the last.
fn churn(
    scope: &Scope,
    name: &str,
    memory: &Memory,
    first: Owned,
    size: &mut usize,
    seed: &mut u64,
    mut each: impl FnMut(&Owned),
) -> Owned {
    let mut prev = first;
    for step in 1..=256 {
        *size += 64;
        *seed += 1;
        let next = alloc_filled(memory, *size, *seed);
        assert_ne!(next.segment(), prev.segment(), "step {step} did not grow");
        let old_id = prev.segment();
        prev.free(memory);
        assert_eq!(memory.number_of_active_segments(), 1, "step {step}");
        assert!(
            !scope.object_exists(&scope.segment_object(name, old_id)),
            "step {step}: segment {old_id} was not unlinked"
        );
        each(&next);
        prev = next;
    }
    prev
}

/// Segment ids are reused: after 256 segments the owner's next segment is id 0 again, with the
/// same `PointerOffset` values as the first one. A peer view that still holds an offset of the
/// old segment 0 gets `SegmentReplaced` (and keeps reading the old bytes through its
/// registration); once released, the view must remap and translate through the new segment,
/// not the stale mapping it still caches. A second round of 256 segments, verified one by one
/// by the peer, checks that its mappings stay bounded.
#[test]
fn segment_id_reuse_peer_translates_through_new_segment_not_stale_one() {
    let scope = Scope::new("reu");
    let name = "reuse";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(256))
        .max_number_of_chunks_hint(1)
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .unwrap();
    let mut peer = serve(&scope, name, "read");

    let first = alloc_filled(&memory, 256, 500);
    assert_eq!(first.segment(), SegmentId::new(0));
    assert_eq!(peer.ok(&format!("hold {}", first.spec)), "held 1");

    let mut size = 256;
    let mut seed = 501;

    let reused = churn(&scope, name, &memory, first, &mut size, &mut seed, |_| {});
    assert_eq!(
        reused.segment(),
        SegmentId::new(0),
        "ids wrap after 256 segments"
    );
    assert_eq!(
        reused.spec.offset, first.spec.offset,
        "same packed offset, different segment"
    );
    assert_eq!(scope.objects().len(), 2, "{:?}", scope.objects());

    // The peer still holds the old segment 0: it must not translate id 0 through it.
    let reply = peer.request(&format!("verify {}", reused.spec));
    assert!(
        reply.starts_with("err ") && reply.contains("SegmentReplaced"),
        "registering the new segment 0 while the old one is held: {reply}"
    );
    // The held registration still reads the old bytes: the unlinked object stays mapped.
    let held = peer.ok("check-held");
    assert_eq!(VerifySummary::find_in(&held).unwrap().bytes, 256, "{held}");
    assert!(peer.ok("release").starts_with("released 1 "));
    // The old mapping is now unreferenced but still cached; the view must notice the new
    // sequence number and remap (reading through the stale mapping would find seed 500).
    assert_eq!(
        peer.verify(&[reused.spec]),
        summary(reused.spec.len as u64, 1, 1, 1)
    );
    let info = peer.ok("info");
    assert!(info.contains("current=0 "), "{info}");

    // Second round: the peer verifies every new segment as it appears.
    let mut last_checked = None;
    let end = churn(
        &scope,
        name,
        &memory,
        reused,
        &mut size,
        &mut seed,
        |chunk| {
            assert_eq!(
                peer.verify(&[chunk.spec]),
                summary(chunk.spec.len as u64, 1, 1, 1)
            );
            last_checked = Some(chunk.spec);
        },
    );
    assert_eq!(end.segment(), SegmentId::new(0));
    assert_eq!(last_checked, Some(end.spec));
    assert!(peer.ok("info").starts_with("segments=1 "));

    peer.ok("quit");
    assert!(peer.wait(STEP).success());
    drop(memory);
    scope.assert_clean();
}

/// Views opened by another process while the owner keeps growing (each new segment retires an
/// empty one, which is released at once) must always open and always read a current segment:
/// the owner is healthy, so any error is spurious.
#[test]
fn views_opened_while_owner_grows_and_releases_never_fail() {
    let scope = Scope::new("chu");
    let name = "churn";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(64))
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .unwrap();
    // Open for 3 s (about 200 000 opens here), or until the first failure.
    let mut args = scope.peer_args("open-loop", name);
    args.extend(
        [
            "--count",
            "10000000",
            "--duration-ms",
            "3000",
            "--stop-on-error",
        ]
        .map(str::to_owned),
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (out, grown) = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            let mut size = 64;
            let mut grown = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                size += 8;
                let before = memory.current_segment();
                let chunk = memory.allocate(layout(size)).unwrap();
                assert_ne!(chunk.offset.segment_id(), before);
                // SAFETY: just allocated with this layout, freed once, never used.
                unsafe { memory.deallocate(chunk.offset, layout(size)) };
                grown += 1;
            }
            grown
        });
        let out = run_peer(&args, Duration::from_secs(120));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, churn.join().unwrap())
    });
    eprintln!("{} while the owner created {grown} segments", out.stdout);
    assert!(
        grown > 100,
        "the owner barely grew ({grown}); the test proves nothing"
    );
    let opened: usize = out
        .stdout
        .strip_prefix("opened ")
        .and_then(|rest| rest.split(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        out.status.success() && out.stdout.contains(&format!("ok={opened} current_none=0 ")),
        "{out:?}"
    );
    assert!(
        opened > 1_000,
        "only {opened} opens; the test proves nothing"
    );
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(scope.objects().len(), 2, "{:?}", scope.objects());
    drop(memory);
    scope.assert_clean();
}
