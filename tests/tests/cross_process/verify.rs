//! The peer's verifier fails when it must, and 64 MiB chunks cross the process boundary both
//! ways.

use std::time::{Duration, Instant};

use resmem::{Memory, PointerOffset, SegmentId};
use resmem_e2e::exit;

use super::*;

/// The verifier itself must be able to fail: a wrong seed, one flipped byte at the very end of
/// a chunk, and an offset into a segment that does not exist are all reported, with distinct
/// exit codes.
#[test]
fn peer_verify_detects_wrong_seed_corruption_and_bad_offsets() {
    let scope = Scope::new("mis");
    let memory = Memory::builder("m")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(10_000))
        .create()
        .unwrap();
    let chunk = alloc_filled(&memory, 10_000, 11);

    let good = run_peer(&verify_args(&scope, "m", &[chunk.spec]), STEP);
    assert_eq!(good.summary(), summary(10_000, 1, 1, 1));
    assert!(good.stdout.contains("owner_alive=true"), "{}", good.stdout);

    let wrong_seed = ChunkSpec {
        seed: 12,
        ..chunk.spec
    };
    let out = run_peer(&verify_args(&scope, "m", &[wrong_seed]), STEP);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");
    assert!(out.stderr.contains("mismatch at byte 0"), "{}", out.stderr);

    // SAFETY: the last byte of a chunk this test owns; no peer runs right now.
    unsafe { *chunk.ptr.add(9_999) ^= 0x5A };
    let out = run_peer(&verify_args(&scope, "m", &[chunk.spec]), STEP);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");
    assert!(
        out.stderr.contains("mismatch at byte 9999") && out.stderr.contains("1 byte(s) differ"),
        "{}",
        out.stderr
    );

    let nowhere = ChunkSpec::new(PointerOffset::new(SegmentId::new(7), 0), 8, 1);
    let out = run_peer(&verify_args(&scope, "m", &[nowhere]), STEP);
    assert_eq!(out.code(), Some(exit::OPEN), "{out:?}");
    assert!(out.stderr.contains("InvalidOffset"), "{}", out.stderr);

    let out = run_peer(&verify_args(&scope, "absent", &[chunk.spec]), STEP);
    assert_eq!(out.code(), Some(exit::OPEN), "{out:?}");
    assert!(out.stderr.contains("DoesNotExist"), "{}", out.stderr);

    drop(memory);
    scope.assert_clean();
}

/// A 64 MiB chunk written by the owner is verified by a peer process, and a peer writes
/// another 64 MiB that the owner verifies. Timings are printed, not asserted.
#[test]
fn large_64_mib_chunks_cross_the_process_boundary() {
    let scope = Scope::new("big");
    let name = "big";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(64 * MIB))
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let started = Instant::now();
    let a = alloc_filled(&memory, 64 * MIB, 64);
    let b = alloc_filled(&memory, 64 * MIB, 65);
    let filled = started.elapsed();
    assert_eq!(a.segment(), b.segment());

    let started = Instant::now();
    let out = run_peer(
        &verify_args(&scope, name, &[a.spec]),
        Duration::from_secs(120),
    );
    let verified = started.elapsed();
    assert_eq!(out.summary(), summary(64 * MIB as u64, 1, 1, 1));

    let started = Instant::now();
    let target = ChunkSpec { seed: 66, ..b.spec };
    let out = run_peer(
        &write_args(&scope, name, &[target]),
        Duration::from_secs(120),
    );
    let written = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    b.check(66).unwrap();
    a.check(64).unwrap();
    eprintln!(
        "64 MiB: owner filled 2 chunks in {filled:?}, peer verified one in {verified:?} and \
         wrote one in {written:?} (process start included)"
    );

    drop(memory);
    scope.assert_clean();
}
