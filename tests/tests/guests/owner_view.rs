//! Guest owners verified by a native peer process, and native owners read in place by a
//! guest view.

use super::*;

// ---------------------------------------------------------------------------------------------
// 1. A guest owner, verified by a native peer process
// ---------------------------------------------------------------------------------------------

/// The producer guest grows memory `frames` through eight segments and waits; a native peer
/// process maps every segment from the printed offsets and checks every byte (and fails on a
/// wrong seed). When the guest exits, its memory is gone.
#[test]
fn guest_owner_is_verified_byte_by_byte_by_a_native_peer_process() {
    let scope = Scope::new("gown");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host, &producer, &["producer", "frames", "8", "4096"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 8, 4096);

    // While the guest waits, its memory is a normal native memory of the namespace.
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["frames"]);
    assert_eq!(
        scope.objects().len(),
        1 + chunks.len(),
        "the management object and one segment per chunk: {:?}",
        scope.objects()
    );
    let specs: Vec<ChunkSpec> = chunks.iter().map(GuestChunk::spec).collect();
    let out = peer_verify(&scope, "frames", &specs);
    let summary = out.summary();
    assert_eq!(
        (summary.bytes, summary.offsets, summary.active_segments),
        (4096 * 255, 8, 8),
        "{summary:?}"
    );
    assert!(out.stdout.contains("owner_alive=true"), "{}", out.stdout);

    // The same peer fails on a wrong seed, so the check above means something.
    let mut wrong = specs.clone();
    wrong[5].seed += 1;
    let out = peer_verify(&scope, "frames", &wrong);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");
    assert!(out.stderr.contains("mismatch at byte 0"), "{}", out.stderr);

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert!(end.stdout.is_empty(), "{end:?}");
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 2. A native owner, read in place by a guest view
// ---------------------------------------------------------------------------------------------

/// This process owns a memory with pattern-filled chunks in several segments; the consumer
/// guest opens a view, maps each segment from the offsets and checks every byte. A wrong seed
/// and a corrupted last byte make it exit 1.
#[test]
fn native_owner_is_verified_in_place_by_a_guest_view() {
    let scope = Scope::new("gview");
    let host = host(&scope);
    let consumer = load(&host, resmem_guests::CONSUMER_WASM);
    let memory = Memory::builder("native")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let sizes = [
        4 * KIB,
        4 * KIB,
        10_000,
        64 * KIB,
        300_000,
        MIB + MIB / 2 + 3,
    ];
    let specs: Vec<ChunkSpec> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_guest_filled(&memory, len, 100 + i as u64))
        .collect();
    let segments = segments_of(&specs);
    assert!(segments.len() >= 4, "{segments:?}");
    let arg = |s: &ChunkSpec| format!("{}:{}:{}", s.offset.as_u64(), s.len, s.seed);

    let mut args = vec!["consumer".to_owned(), "native".to_owned()];
    args.extend(specs.iter().map(arg));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let end = run(&host, &consumer, &args_ref);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let total: usize = sizes.iter().sum();
    assert_eq!(end.stdout, [format!("verified {total} bytes")], "{end:?}");
    assert_eq!(end.stderr, "");

    // A wrong seed for the last chunk.
    let mut wrong = specs.clone();
    wrong[5].seed = 7;
    let args: Vec<String> = ["consumer".to_owned(), "native".to_owned()]
        .into_iter()
        .chain(wrong.iter().map(arg))
        .collect();
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let end = run(&host, &consumer, &args_ref);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(end.stdout.is_empty(), "{end:?}");
    assert!(
        end.stderr.contains("mismatch at byte 0 of the chunk") && end.stderr.contains("seed 7"),
        "{}",
        end.stderr
    );

    // The owner flips the very last byte of the 300 000-byte chunk: the guest reads the
    // owner's bytes in place, not a copy.
    let victim = specs[4];
    let ptr = memory.translate(victim.offset).expect("a live chunk");
    // SAFETY: the last byte of a chunk this test owns; no guest runs right now.
    unsafe { *ptr.add(victim.len - 1) ^= 0xFF };
    let end = run(&host, &consumer, &["consumer", "native", &arg(&victim)]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("mismatch at byte 299999 "),
        "{}",
        end.stderr
    );

    // A view leaves no object behind; the memory is the owner's until it is dropped.
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["native"]);
    drop(memory);
    assert_empty(&scope);
}
