//! End-to-end tests of resmem across real, separate processes.
//!
//! The other process is `resmem-test-peer` (tests/src/bin/peer.rs): a one-shot verifier or
//! writer, a long-lived `serve` peer that keeps one view across the owner's resizes, or an
//! owner. Every byte is checked against the seeded pattern of `resmem_e2e`, so a peer reading
//! a stale mapping, the wrong segment or the wrong offset fails, not only one reading zeroes.
//! Each test works in its own namespace (a [`Scope`] prefix) and fails if it leaves objects in
//! `/dev/shm`; every child is reaped, and killed if a step takes longer than [`STEP`].

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use resmem::{
    AccessMode, AllocError, AllocationStrategy, CreateError, Memory, OpenError, PointerOffset,
    SegmentId, View,
};
use resmem_e2e::{ChunkSpec, VerifySummary, exit};
use support::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn summary(bytes: u64, offsets: usize, active: usize, after: usize) -> VerifySummary {
    VerifySummary {
        bytes,
        offsets,
        active_segments: active,
        after_unregister: after,
    }
}

fn total(specs: &[ChunkSpec]) -> u64 {
    specs.iter().map(|s| s.len as u64).sum()
}

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

/// A peer writes through a read-write view into chunks of three segments; the owner sees
/// the writes exactly where they belong, and the chunk in between is untouched. A read-write
/// view maps its objects writable, a read-only one read-only.
#[test]
fn peer_writes_through_read_write_view_owner_verifies() {
    let scope = Scope::new("wri");
    let name = "write";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .create()
        .unwrap();
    let a = alloc_filled(&memory, 4 * KIB, 1);
    let b = alloc_filled(&memory, 4 * KIB, 2);
    let c = alloc_filled(&memory, 50_000, 3);
    assert_eq!(segments_of(&[a.spec, b.spec, c.spec]).len(), 3);

    let targets = [
        ChunkSpec {
            seed: 101,
            ..a.spec
        },
        ChunkSpec {
            seed: 103,
            ..c.spec
        },
    ];
    let out = run_peer(&write_args(&scope, name, &targets), STEP);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("wrote 54096 bytes in 2 offsets"),
        "{}",
        out.stdout
    );
    a.check(101).unwrap();
    b.check(2).unwrap();
    c.check(103).unwrap();

    // A long-lived read-write peer: writes again, and its mappings are writable.
    let mut rw = serve(&scope, name, "read-write");
    assert!(rw.ok("info").ends_with("access=read-write"));
    let reply = rw.ok(&format!(
        "write {}",
        ChunkSpec {
            seed: 202,
            ..b.spec
        }
    ));
    assert_eq!(reply, "wrote 4096 bytes in 1 offsets");
    b.check(202).unwrap();
    a.check(101).unwrap();
    rw.ok(&format!("hold {} {}", targets[0], targets[1]));
    let maps = rw.ok("maps");
    let perms: Vec<&str> = maps.split_whitespace().skip(1).collect();
    assert!(perms.len() >= 3, "{maps}");
    assert!(perms.iter().all(|p| p.starts_with("rw-s=")), "{maps}");

    // A read-only peer: access mode Read, read-only mappings, and it refuses to write.
    let mut ro = serve(&scope, name, "read");
    assert!(ro.ok("info").ends_with("access=read"));
    ro.ok(&format!("hold {} {}", targets[0], targets[1]));
    let maps = ro.ok("maps");
    let perms: Vec<&str> = maps.split_whitespace().skip(1).collect();
    assert!(perms.len() >= 3, "{maps}");
    assert!(perms.iter().all(|p| p.starts_with("r--s=")), "{maps}");
    let reply = ro.request(&format!("write {}", ChunkSpec { seed: 9, ..a.spec }));
    assert!(
        reply.starts_with("err ") && reply.contains("Read view"),
        "{reply}"
    );
    a.check(101).unwrap();

    for mut peer in [rw, ro] {
        peer.ok("quit");
        assert!(peer.wait(STEP).success());
    }
    drop(memory);
    scope.assert_clean();
}

/// A memory created with permissions 0400: its objects have exactly that mode, a read-only view
/// opens it and reads it, a read-write view is refused with `InsufficientPermissions`.
///
/// We run as root in CI, and root bypasses permission checks: there the in-process read-write
/// open succeeds (asserted as such), and the refusal is checked with peer processes that drop
/// to `nobody` after the test hands the objects to `nobody` (mode 0400 for their owner).
#[test]
fn read_only_permissions_allow_read_views_and_refuse_read_write() {
    let scope = Scope::new("prm");
    let name = "perm";
    let config = scope.config().permissions(0o400);
    let memory = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(4 * KIB))
        .create()
        .unwrap();
    let chunk = alloc_filled(&memory, 4 * KIB, 40);
    let objects = scope.objects();
    assert_eq!(objects.len(), 2, "{objects:?}");
    for object in &objects {
        let mode = std::fs::metadata(scope.object_path(object))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "{object}");
    }

    let view = View::builder(name)
        .config(&config)
        .open(AccessMode::Read)
        .unwrap();
    assert_eq!(view.access_mode(), AccessMode::Read);
    view_check(&view, chunk.spec).unwrap();
    drop(view);

    let rw = View::builder(name)
        .config(&config)
        .open(AccessMode::ReadWrite);
    let root = euid() == 0;
    if root {
        // Root bypasses the mode bits (CAP_DAC_OVERRIDE), so this succeeds; the refusal is
        // checked below with peers running as `nobody`.
        assert_eq!(rw.unwrap().access_mode(), AccessMode::ReadWrite);
    } else {
        assert_eq!(rw.err(), Some(OpenError::InsufficientPermissions));
    }

    // The peer runs as `nobody` when we are root: hand it the objects (still mode 0400) and a
    // copy of the peer binary it can execute wherever the build directory lives.
    const NOBODY: u32 = 65534;
    let bin_dir = TempDir::new("bin");
    let peer_path = bin_dir.0.join("resmem-test-peer");
    if root {
        std::fs::set_permissions(&bin_dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(PEER, &peer_path).unwrap();
        std::fs::set_permissions(&peer_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for object in &objects {
            std::os::unix::fs::chown(scope.object_path(object), Some(NOBODY), Some(NOBODY))
                .unwrap();
        }
    }
    let peer_command = |args: Vec<String>| {
        let mut command = Command::new(if root {
            peer_path.as_path()
        } else {
            Path::new(PEER)
        });
        command.args(args);
        if root {
            command.uid(NOBODY).gid(NOBODY);
        }
        command
    };

    let out = run(
        peer_command(verify_args(&scope, name, &[chunk.spec])),
        "read-only peer",
        STEP,
    );
    assert_eq!(out.summary(), summary(4 * KIB as u64, 1, 1, 1));

    let out = run(
        peer_command(write_args(
            &scope,
            name,
            &[ChunkSpec {
                seed: 41,
                ..chunk.spec
            }],
        )),
        "read-write peer",
        STEP,
    );
    assert_eq!(out.code(), Some(exit::OPEN), "{out:?}");
    assert!(
        out.stderr.contains("InsufficientPermissions"),
        "{}",
        out.stderr
    );
    chunk.check(40).unwrap();

    drop(memory);
    scope.assert_clean();
}

/// Starts `resmem-test-peer owner` and reads its chunks up to `ready`.
fn start_owner(scope: &Scope, name: &str, extra: &[&str]) -> (Peer, Vec<ChunkSpec>) {
    let mut args = scope.peer_args("owner", name);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut owner = Peer::spawn_peer(&args, "owner peer");
    let lines = owner.until_ready();
    let specs: Vec<ChunkSpec> = lines
        .iter()
        .filter_map(|l| ChunkSpec::parse_owner_line(l))
        .collect();
    assert!(!specs.is_empty(), "owner printed no chunks: {lines:?}");
    let info = lines.iter().find(|l| l.starts_with("info ")).unwrap();
    assert!(
        info.contains(&format!("owner_pid={} ", owner.pid())),
        "{info}"
    );
    (owner, specs)
}

/// The owner is another process. This process opens a view, reads every byte, tells the owner
/// to exit, and then nothing of the memory is left, while the address it still had registered
/// keeps reading the same bytes.
#[test]
fn owner_in_other_process_drop_removes_everything() {
    let scope = Scope::new("own");
    let name = "remote";
    let config = scope.config();
    let (mut owner, specs) = start_owner(&scope, name, &["--strategy", "power-of-two"]);
    assert!(segments_of(&specs).len() >= 3, "{specs:?}");
    assert_eq!(scope.objects().len(), segments_of(&specs).len() + 1);
    assert_eq!(resmem::list(&config).unwrap(), vec![name.to_owned()]);
    assert!(resmem::exists(name, &config).unwrap());

    let view = View::builder(name)
        .config(&config)
        .timeout(Duration::from_secs(5))
        .open(AccessMode::Read)
        .unwrap();
    assert!(view.is_owner_alive());
    assert_eq!(view.header_info().owner_pid, owner.pid());
    assert_eq!(view.header_info().strategy, AllocationStrategy::PowerOfTwo);
    for &spec in &specs {
        view_check(&view, spec).unwrap();
    }
    let last = *specs.last().unwrap();
    // SAFETY: unregistered below, after the last read through `kept`.
    let kept = unsafe { view.register_and_translate_offset(last.offset) }.unwrap();

    owner.send("");
    let status = owner.wait(STEP);
    assert!(status.success(), "{status:?}: {}", owner.stderr());
    assert_eq!(owner.rest(), vec!["dropped".to_owned()]);

    assert!(!view.is_owner_alive());
    assert!(!resmem::exists(name, &config).unwrap());
    assert!(resmem::list(&config).unwrap().is_empty());
    scope.assert_clean();
    // SAFETY: still registered; the mapping outlives the unlinked object.
    let bytes = unsafe { std::slice::from_raw_parts(kept, last.len) };
    resmem_e2e::check_pattern(bytes, last.seed).unwrap();
    // SAFETY: registered above; `kept` is not used after this.
    unsafe { view.unregister_offset(last.offset) };
    assert_eq!(
        View::builder(name)
            .config(&config)
            .open(AccessMode::Read)
            .err(),
        Some(OpenError::DoesNotExist)
    );
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    Sigkill,
    Abort,
    Abandon,
}

/// The owner process dies without dropping its memory (SIGKILL, `abort()`) or abandons it.
/// Its objects remain and are listed; a view opened afterwards reads every byte and knows the
/// owner is dead; the name cannot be created again until `remove` cleans everything, after
/// which a new owner creates it. A view of the dead memory keeps reading its old bytes and
/// does not mistake the new owner for the old one.
fn owner_dies(crash: Crash, tag: &str) {
    let scope = Scope::new(tag);
    let name = "crash";
    let config = scope.config();
    let on_exit = match crash {
        Crash::Sigkill => "hang",
        Crash::Abort => "abort",
        Crash::Abandon => "abandon",
    };
    let mut args = scope.peer_args("owner", name);
    args.extend(["--on-exit".to_owned(), on_exit.to_owned()]);
    args.extend(["--strategy".to_owned(), "best-fit".to_owned()]);
    let mut command = if matches!(crash, Crash::Abort) {
        // No core file for the deliberate abort, whatever the limits are.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("ulimit -c 0; exec \"$0\" \"$@\"")
            .arg(PEER);
        command
    } else {
        Command::new(PEER)
    };
    command.args(&args);
    let mut owner = Peer::spawn(command, "owner peer");
    let lines = owner.until_ready();
    let specs: Vec<ChunkSpec> = lines
        .iter()
        .filter_map(|l| ChunkSpec::parse_owner_line(l))
        .collect();
    let pid = owner.pid();
    assert!(segments_of(&specs).len() >= 3, "{lines:?}");

    let status = match crash {
        Crash::Sigkill => {
            let status = owner.kill();
            assert_eq!(status.signal(), Some(9), "{status:?}");
            status
        }
        Crash::Abort => {
            owner.send("");
            let status = owner.wait(STEP);
            assert_eq!(status.signal(), Some(6), "{status:?}");
            status
        }
        Crash::Abandon => {
            owner.send("");
            let status = owner.wait(STEP);
            assert!(status.success(), "{status:?}");
            assert_eq!(owner.rest(), vec!["abandoned".to_owned()]);
            status
        }
    };
    drop(owner);

    // Everything is still there.
    assert_eq!(
        resmem::list(&config).unwrap(),
        vec![name.to_owned()],
        "{status:?}"
    );
    assert!(resmem::exists(name, &config).unwrap());
    assert_eq!(scope.objects().len(), segments_of(&specs).len() + 1);

    // A plain open tells a dead owner apart from every other failure; a forensic one reads.
    assert_eq!(
        View::builder(name)
            .config(&config)
            .open(AccessMode::Read)
            .err(),
        Some(OpenError::OwnerDead)
    );
    let old_view = View::builder(name)
        .config(&config)
        .timeout(Duration::from_secs(5))
        .allow_stale(true)
        .open(AccessMode::Read)
        .unwrap();
    assert!(!old_view.is_owner_alive());
    assert_eq!(old_view.header_info().owner_pid, pid);
    for &spec in &specs {
        view_check(&old_view, spec).unwrap();
    }
    let last = *specs.last().unwrap();
    // SAFETY: unregistered at the end of the test, after the last read through `kept`.
    let kept = unsafe { old_view.register_and_translate_offset(last.offset) }.unwrap();

    // A peer process is refused with the same distinct error, or reads it when it asks to.
    let out = run_peer(&verify_args(&scope, name, &specs), STEP);
    assert!(out.stderr.contains("OwnerDead"), "{out:?}");
    let mut args = verify_args(&scope, name, &specs);
    args.push("--allow-stale".to_owned());
    let out = run_peer(&args, STEP);
    let got = out.summary();
    assert_eq!((got.bytes, got.offsets), (total(&specs), specs.len()));
    assert!(out.stdout.contains("owner_alive=false"), "{}", out.stdout);

    // The name is taken until the leftovers are removed.
    assert_eq!(
        Memory::builder(name).config(&config).create().err(),
        Some(CreateError::AlreadyExists)
    );
    // SAFETY: the owner process is dead and reaped; only this test uses this namespace.
    assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(true));
    scope.assert_clean();
    assert!(!resmem::exists(name, &config).unwrap());
    assert!(resmem::list(&config).unwrap().is_empty());
    // SAFETY: as above; nothing is left to remove.
    assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(false));

    // A new owner under the same name, read by a new view and a peer process.
    let fresh = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(last.len))
        .create()
        .unwrap();
    let chunk = alloc_filled(&fresh, last.len, 9_999);
    let new_view = View::builder(name)
        .config(&config)
        .open(AccessMode::Read)
        .unwrap();
    assert!(new_view.is_owner_alive());
    assert_eq!(new_view.header_info().owner_pid, std::process::id());
    view_check(&new_view, chunk.spec).unwrap();
    let out = run_peer(&verify_args(&scope, name, &[chunk.spec]), STEP);
    assert_eq!(out.summary(), summary(last.len as u64, 1, 1, 1));

    // The old view still reads the dead memory and still finds its owner dead.
    assert!(!old_view.is_owner_alive());
    // SAFETY: still registered with `old_view`; its mapping outlives the removed object.
    let bytes = unsafe { std::slice::from_raw_parts(kept, last.len) };
    resmem_e2e::check_pattern(bytes, last.seed).unwrap();
    // SAFETY: registered above; `kept` is not used after this.
    unsafe { old_view.unregister_offset(last.offset) };

    drop((old_view, new_view, fresh));
    scope.assert_clean();
}

#[test]
fn owner_sigkilled_leaves_objects_remove_cleans_and_name_is_reusable() {
    owner_dies(Crash::Sigkill, "kil");
}

#[test]
fn owner_aborted_leaves_objects_remove_cleans_and_name_is_reusable() {
    owner_dies(Crash::Abort, "abo");
}

#[test]
fn owner_abandoned_leaves_objects_remove_cleans_and_name_is_reusable() {
    owner_dies(Crash::Abandon, "aba");
}

/// A view starts opening before the owner process exists. While the owner has not created the
/// memory, `open` reports `DoesNotExist` (the view's timeout only covers an owner that has
/// started initialising, so the caller retries); once the management object exists but is
/// not ready, a zero-timeout open reports `InitializationNotYetFinalized` and an open with a
/// timeout waits and succeeds. No other error may ever be seen. The owner pre-faults a large
/// first segment, which keeps it initialising for a while; the whole scenario is retried a few
/// times in case the opening thread never got to run inside that window.
#[test]
fn view_opened_while_owner_process_is_still_initialising() {
    let scope = Scope::new("ini");
    let mut observed_window = false;
    for attempt in 0..4 {
        let name = format!("init{attempt}");
        let config = scope.config();
        let (started_tx, started) = channel();
        let opener = {
            let name = name.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + STEP;
                let mut does_not_exist = 0;
                loop {
                    match View::builder(&name).config(&config).open(AccessMode::Read) {
                        Ok(view) => return (view, false, does_not_exist),
                        Err(OpenError::InitializationNotYetFinalized) => {
                            let view = View::builder(&name)
                                .config(&config)
                                .timeout(Duration::from_secs(20))
                                .open(AccessMode::Read)
                                .expect("an open with a timeout waits for the owner to finish");
                            return (view, true, does_not_exist);
                        }
                        Err(OpenError::DoesNotExist) => {
                            does_not_exist += 1;
                            if does_not_exist == 1 {
                                started_tx.send(()).unwrap();
                            }
                            assert!(Instant::now() < deadline, "the owner never appeared");
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err(e) => panic!("opening while the owner initialises: {e:?}"),
                    }
                }
            })
        };
        started.recv_timeout(STEP).expect("the opener started");
        let (mut owner, specs) = start_owner(
            &scope,
            &name,
            &["--prefault", "--sizes", &(128 * MIB).to_string()],
        );
        let (view, waited, does_not_exist) = opener.join().expect("opener thread");
        assert!(does_not_exist >= 1);
        assert_eq!(view.header_info().owner_pid, owner.pid());
        assert!(view.is_owner_alive());
        // The owner fills its chunk after `create`; it has printed `ready`, so it is done.
        for &spec in &specs {
            view_check(&view, spec).unwrap();
        }
        drop(view);
        owner.send("");
        assert!(owner.wait(STEP).success(), "{}", owner.stderr());
        eprintln!(
            "attempt {attempt}: {does_not_exist} DoesNotExist before the owner appeared, \
             waited for initialisation: {waited}"
        );
        if waited {
            observed_window = true;
            break;
        }
    }
    assert!(
        observed_window,
        "no attempt saw the owner initialising; the timeout path was not exercised"
    );
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

/// The same owner/peer life cycle on the `FileBacked` backend (files in a directory): an owner
/// process that is SIGKILLed leaves its files, which a view still reads and `remove` deletes;
/// an owner process that exits normally deletes them itself.
#[test]
fn file_backed_owner_process_crash_and_clean_exit() {
    let scope = Scope::new("fil");
    let dir = TempDir::new("files");
    let config = scope.config().backend(resmem::FileBacked::new(&dir.0));
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    let backend_dir = dir.0.to_str().unwrap().to_owned();
    for (name, crash) in [("crashed", true), ("clean", false)] {
        let on_exit = if crash { "hang" } else { "drop" };
        let (mut owner, specs) = start_owner(
            &scope,
            name,
            &["--backend-dir", &backend_dir, "--on-exit", on_exit],
        );
        let segments = segments_of(&specs).len();
        assert!(segments >= 3);
        assert_eq!(files().len(), segments + 1, "{:?}", files());
        let mut args = verify_args(&scope, name, &specs);
        args.extend(["--backend-dir".to_owned(), backend_dir.clone()]);
        let out = run_peer(&args, STEP);
        assert_eq!(out.summary().bytes, total(&specs));

        if crash {
            assert_eq!(owner.kill().signal(), Some(9));
            assert_eq!(files().len(), segments + 1, "{:?}", files());
            assert_eq!(resmem::list(&config).unwrap(), vec![name.to_owned()]);
            let view = View::builder(name)
                .config(&config)
                .allow_stale(true)
                .open(AccessMode::Read)
                .unwrap();
            assert!(!view.is_owner_alive());
            for &spec in &specs {
                view_check(&view, spec).unwrap();
            }
            // SAFETY: the owner process is dead and reaped.
            assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(true));
        } else {
            owner.send("");
            assert!(owner.wait(STEP).success());
            assert_eq!(owner.rest(), vec!["dropped".to_owned()]);
        }
        assert!(files().is_empty(), "{:?}", files());
        assert!(!resmem::exists(name, &config).unwrap());
    }
    // Nothing of this test went to /dev/shm.
    scope.assert_clean();
}
