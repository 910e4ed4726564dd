//! A removed memory and its successor under the same name: neither maps the other's segments.

use resmem::{AccessMode, AllocationStrategy, Memory, SegmentId, View};

use super::*;

/// After the owner process died and its leftovers were removed, a new memory is created under
/// the same name. A view still open on the dead memory must not map the successor's segments:
/// `remove` promises that views of a removed memory "fail to map segments", and the segment
/// trailer exists to tell a reused name from the segment the header describes.
#[test]
fn view_of_removed_memory_does_not_map_segments_of_its_successor() {
    let scope = Scope::new("suc");
    let name = "succ";
    let config = scope.config();
    let (mut owner, specs) = start_owner(&scope, name, &["--sizes", "4096", "--on-exit", "hang"]);
    assert_eq!(specs.len(), 1);
    let old = specs[0];
    owner.kill();

    let old_view = View::builder(name)
        .config(&config)
        .allow_stale(true)
        .open(AccessMode::Read)
        .unwrap();
    assert!(!old_view.is_owner_alive());
    // SAFETY: the owner process is dead and reaped; only this test uses this namespace.
    assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(true));

    // The successor has the same geometry, so its segment 0 is where the old one was.
    let successor = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(4096))
        .create()
        .unwrap();
    let chunk = alloc_filled(&successor, 4096, 777);
    assert_eq!(chunk.spec.offset, old.offset);

    // SAFETY: unregistered right below if it succeeds, after the last read.
    let result = unsafe { old_view.register_and_translate_offset(old.offset) };
    if let Ok(ptr) = result {
        // SAFETY: registered above, a 4096-byte chunk; unregistered right after the read.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, 4096) };
        let what = if resmem_e2e::check_pattern(bytes, 777).is_ok() {
            "the successor's chunk (seed 777)"
        } else if resmem_e2e::check_pattern(bytes, old.seed).is_ok() {
            "the dead memory's chunk"
        } else {
            "other bytes"
        };
        // SAFETY: registered above; `ptr` is not used after this.
        unsafe { old_view.unregister_offset(old.offset) };
        panic!(
            "a view of the removed memory translated {} into the successor's segment 0 and \
             reads {what}",
            old.offset.as_u64()
        );
    }
    drop(old_view);
    drop(successor);
    scope.assert_clean();
}

/// `remove` documents what happens to a live owner whose memory is removed: it "keeps working
/// on its mappings but can no longer be opened by new views, and its later segments collide
/// with nothing". Here the old owner (another process) grows after a successor took the name;
/// the successor's segment 1 must stay the successor's.
#[test]
fn removed_live_owner_growing_later_does_not_take_over_successor_segments() {
    let scope = Scope::new("col");
    let name = "collide";
    let config = scope.config();
    // Same geometry on both sides: BestFit, one 4096-byte bucket in segment 0.
    let (mut old_owner, specs) =
        start_owner(&scope, name, &["--sizes", "4096", "--strategy", "best-fit"]);
    assert_eq!(segments_of(&specs).len(), 1);
    // SAFETY: deliberately outside the "owner is gone" precondition, in the case the doc
    // describes; nothing in this process uses the old memory.
    assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(true));

    let successor = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(4096))
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .unwrap();
    let _first = alloc_filled(&successor, 4096, 700);
    let mine = alloc_filled(&successor, 8192, 800);
    assert_eq!(mine.segment(), SegmentId::new(1));
    let out = run_peer(&verify_args(&scope, name, &[mine.spec]), STEP);
    assert_eq!(out.summary(), summary(8192, 1, 1, 1));

    // The old owner needs a new segment; its next id is 1, like the successor's. (Refusing to
    // grow would keep the promise too.)
    let line = old_owner.request("alloc 8192 900");
    let theirs = ChunkSpec::parse_owner_line(&line);
    assert!(theirs.is_some() || line.starts_with("err "), "{line}");

    // The successor's own mapping is untouched...
    mine.check(800).unwrap();
    // ...and a new peer of the successor must still read the successor's segment 1.
    let out = run_peer(&verify_args(&scope, name, &[mine.spec]), STEP);
    if !out.status.success() {
        let reads_theirs = theirs.is_some_and(|theirs| {
            run_peer(&verify_args(&scope, name, &[theirs]), STEP)
                .status
                .success()
        });
        panic!(
            "after the removed owner grew, a peer of the successor reads its segment 1 wrong \
             ({}); it reads the removed owner's new chunk instead: {reads_theirs}",
            out.stderr.trim()
        );
    }

    old_owner.send("");
    assert!(old_owner.wait(STEP).success());
    drop(successor);
    // Whatever the two owners did to each other's names, both are gone now: nothing may stay.
    scope.assert_clean();
}
