//! Garbage in shared memory: whatever a peer with write access scribbles into the management
//! segment or a data segment's trailer, views get typed errors, never a panic and never a
//! translation into the wrong memory.

mod common;

use common::{
    Env, Rng, backend_tests, layout, mgmt, peek_u32, peek_u64, poke_u32, poke_u64, sid, trailer,
};
use resmem::backend::Mapping;
use resmem::header::{LAYOUT_VERSION, MAGIC, MAX_SEGMENTS, MGMT_SIZE, SEGMENT_MAGIC};
use std::time::Duration;

use resmem::{
    AccessMode, AllocationStrategy, AllocatorKind, Memory, OpenError, PointerOffset, ShmPointer,
    View,
};

backend_tests!(
    all: [
        header_field_offsets_match_the_documented_layout,
        random_management_bytes_are_corrupted,
        wrong_magic_is_corrupted,
        other_version_is_incompatible,
        checksum_mismatch_is_corrupted,
        state_word_other_than_ready_is_rejected,
        current_segment_out_of_range_or_dead_is_corrupted,
        truncated_management_object_is_corrupted,
        hostile_slot_records_are_rejected,
        hostile_current_slot_record_is_corrupted,
        trailer_garbage_is_corrupted,
        replaced_data_segment_object_is_corrupted,
        fuzzed_header_gives_typed_errors_only,
        scribbled_ids_do_not_mislead_the_owner,
    ],
    os: [
        truncated_data_segment_is_corrupted,
        planted_fifo_is_refused_promptly,
        planted_symlink_is_refused,
    ],
);

/// A memory with chunks in segment 0 (retired) and segment 1 (current), and a read-write
/// mapping of its management object for scribbling.
struct Victim {
    memory: Memory,
    header: Mapping,
    a: ShmPointer,
    b: ShmPointer,
}

impl Victim {
    fn new(env: &Env, name: &str) -> Self {
        let memory = env.memory(name, 8, 1, AllocationStrategy::BestFit);
        let a = memory.allocate(layout(8, 8)).expect("allocate");
        let b = memory.allocate(layout(8, 8)).expect("allocate");
        assert_eq!(
            (a.offset.segment_id(), b.offset.segment_id()),
            (sid(0), sid(1))
        );
        // SAFETY: both chunks are ours, 8 bytes, aligned.
        unsafe {
            common::write_u64(a.data_ptr, 0xA);
            common::write_u64(b.data_ptr, 0xB);
        }
        let header = env.open_object(&env.mgmt_name(name));
        Self {
            memory,
            header,
            a,
            b,
        }
    }

    fn open(&self, env: &Env) -> Result<View, OpenError> {
        View::builder(self.memory.name())
            .config(&env.config)
            .open(AccessMode::Read)
    }

    fn open_err(&self, env: &Env) -> Result<(), OpenError> {
        self.open(env).map(|_| ())
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        for p in [self.a, self.b] {
            let _ = self.memory.try_deallocate(p.offset);
        }
    }
}

fn read_through(view: &View, offset: PointerOffset) -> Result<u64, OpenError> {
    // SAFETY: unregistered right after the read.
    let ptr = unsafe { view.register_and_translate_offset(offset) }?;
    // SAFETY: chunks here are 8 bytes and 8-aligned.
    let value = unsafe { common::read_u64(ptr) };
    // SAFETY: registered above, not used afterwards.
    unsafe { view.unregister_offset(offset) };
    Ok(value)
}

fn fnv1a(words: &[u64]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for word in words {
        for byte in word.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Recomputes the checksum over the immutable fields, as a careful attacker would.
fn reseal(m: &Mapping) {
    let w = |hi: usize, lo: usize| (u64::from(peek_u32(m, hi)) << 32) | u64::from(peek_u32(m, lo));
    let words = [
        peek_u64(m, mgmt::MAGIC),
        peek_u64(m, mgmt::MEMORY_ID),
        peek_u64(m, mgmt::PREFIX_HASH),
        w(mgmt::VERSION, mgmt::HEADER_SIZE),
        w(mgmt::OWNER_PID, mgmt::MAX_SEGMENTS),
        w(mgmt::ALLOCATOR, mgmt::STRATEGY),
    ];
    poke_u64(m, mgmt::CHECKSUM, fnv1a(&words));
}

fn header_field_offsets_match_the_documented_layout(env: &Env) {
    let v = Victim::new(env, "layout");
    let h = &v.header;
    assert_eq!(h.len(), MGMT_SIZE.next_multiple_of(common::page()));
    assert_eq!(peek_u64(h, mgmt::MAGIC), MAGIC);
    assert_eq!(peek_u32(h, mgmt::VERSION), LAYOUT_VERSION);
    assert_eq!(peek_u32(h, mgmt::HEADER_SIZE) as usize, MGMT_SIZE);
    assert_ne!(peek_u32(h, mgmt::STATE), 0, "ready");
    assert_eq!(peek_u32(h, mgmt::OWNER_PID), std::process::id());
    assert_eq!(peek_u32(h, mgmt::ALLOCATOR), 0, "pool");
    assert_eq!(peek_u32(h, mgmt::STRATEGY), 1, "best fit");
    assert_eq!(peek_u32(h, mgmt::MAX_SEGMENTS) as usize, MAX_SEGMENTS);
    assert_eq!(peek_u32(h, mgmt::CURRENT), 1);
    let before = peek_u64(h, mgmt::CHECKSUM);
    reseal(h);
    assert_eq!(
        peek_u64(h, mgmt::CHECKSUM),
        before,
        "the checksum replica matches"
    );
    for (id, sequence, payload, chunk) in [(0u8, 0u64, 8u64, 8u64), (1, 1, 16, 8)] {
        assert_eq!(
            peek_u32(h, mgmt::slot(id, mgmt::SLOT_STATE)),
            1,
            "slot {id} live"
        );
        assert_eq!(peek_u64(h, mgmt::slot(id, mgmt::SLOT_SEQUENCE)), sequence);
        assert_eq!(peek_u64(h, mgmt::slot(id, mgmt::SLOT_PAYLOAD)), payload);
        assert_eq!(peek_u64(h, mgmt::slot(id, mgmt::SLOT_CHUNK_SIZE)), chunk);
        assert_eq!(peek_u64(h, mgmt::slot(id, mgmt::SLOT_CHUNK_ALIGN)), 8);
        let segment = env.open_object(&env.segment_name("layout", id));
        let at = common::trailer_at(payload as usize);
        assert_eq!(peek_u64(&segment, at + trailer::MAGIC), SEGMENT_MAGIC);
        assert_eq!(peek_u64(&segment, at + trailer::SEQUENCE), sequence);
        assert_eq!(peek_u64(&segment, at + trailer::PAYLOAD), payload);
        assert_eq!(peek_u32(&segment, at + trailer::SEGMENT_ID), u32::from(id));
    }
    assert_eq!(
        peek_u32(h, mgmt::slot(2, mgmt::SLOT_STATE)),
        0,
        "slot 2 free"
    );
    assert_eq!(v.open_err(env), Ok(()));
}

fn random_management_bytes_are_corrupted(env: &Env) {
    let ready = peek_u32(&Victim::new(env, "ready").header, mgmt::STATE);
    let size = MGMT_SIZE.next_multiple_of(common::page());
    // Held by a (fake) live owner: garbage of a dead one would be `OwnerDead` first.
    let fake = env.create_locked_object(&env.mgmt_name("noise"), size);
    let view = || {
        View::builder("noise")
            .config(&env.config)
            .open(AccessMode::Read)
            .map(|_| ())
    };
    for seed in 1..=64u64 {
        let mut rng = Rng::new(seed);
        for at in (0..size).step_by(8) {
            poke_u64(&fake, at, rng.next_u64());
        }
        assert_eq!(view(), Err(OpenError::Corrupted), "seed {seed}");
        // Even with the state word saying "ready", random magic is caught.
        poke_u32(&fake, mgmt::STATE, ready);
        assert_eq!(view(), Err(OpenError::Corrupted), "seed {seed}, ready");
    }
    drop(fake);
    assert!(
        env.backend()
            .remove(&env.mgmt_name("noise"))
            .expect("remove")
    );
}

fn wrong_magic_is_corrupted(env: &Env) {
    let v = Victim::new(env, "magic");
    for magic in [0, MAGIC ^ 1, SEGMENT_MAGIC, u64::MAX] {
        poke_u64(&v.header, mgmt::MAGIC, magic);
        assert_eq!(v.open_err(env), Err(OpenError::Corrupted), "{magic:#x}");
        // Not even a resealed checksum helps.
        reseal(&v.header);
        assert_eq!(
            v.open_err(env),
            Err(OpenError::Corrupted),
            "{magic:#x} resealed"
        );
    }
    poke_u64(&v.header, mgmt::MAGIC, MAGIC);
    reseal(&v.header);
    assert_eq!(v.open_err(env), Ok(()));
}

fn other_version_is_incompatible(env: &Env) {
    let v = Victim::new(env, "version");
    for version in [0, LAYOUT_VERSION + 1, u32::MAX] {
        poke_u32(&v.header, mgmt::VERSION, version);
        // The version is checked before the checksum: a future layout is reported as such.
        assert_eq!(
            v.open_err(env),
            Err(OpenError::IncompatibleVersion),
            "{version}"
        );
        reseal(&v.header);
        assert_eq!(
            v.open_err(env),
            Err(OpenError::IncompatibleVersion),
            "{version} resealed"
        );
    }
    poke_u32(&v.header, mgmt::VERSION, LAYOUT_VERSION);
    reseal(&v.header);
    assert_eq!(v.open_err(env), Ok(()));
}

fn checksum_mismatch_is_corrupted(env: &Env) {
    let v = Victim::new(env, "checksum");
    let h = &v.header;
    let sum = peek_u64(h, mgmt::CHECKSUM);
    poke_u64(h, mgmt::CHECKSUM, sum ^ 1);
    assert_eq!(v.open_err(env), Err(OpenError::Corrupted));
    poke_u64(h, mgmt::CHECKSUM, sum);
    // Each immutable field is covered by the checksum.
    for field in [
        mgmt::HEADER_SIZE,
        mgmt::OWNER_PID,
        mgmt::ALLOCATOR,
        mgmt::STRATEGY,
        mgmt::MAX_SEGMENTS,
    ] {
        let old = peek_u32(h, field);
        poke_u32(h, field, old ^ 1);
        assert_eq!(
            v.open_err(env),
            Err(OpenError::Corrupted),
            "field at {field}"
        );
        poke_u32(h, field, old);
        assert_eq!(v.open_err(env), Ok(()), "field at {field} restored");
    }
    // Resealed, impossible values are still caught ...
    for (field, value) in [
        (mgmt::HEADER_SIZE, MGMT_SIZE as u32 - 64),
        (mgmt::MAX_SEGMENTS, 255),
        (mgmt::ALLOCATOR, 7),
        (mgmt::STRATEGY, 9),
    ] {
        let old = peek_u32(h, field);
        poke_u32(h, field, value);
        reseal(h);
        assert_eq!(
            v.open_err(env),
            Err(OpenError::Corrupted),
            "field at {field} = {value}"
        );
        poke_u32(h, field, old);
        reseal(h);
    }
    // ... and possible ones are believed (the header is informational for views).
    poke_u32(h, mgmt::OWNER_PID, 1);
    poke_u32(h, mgmt::ALLOCATOR, 1);
    reseal(h);
    let info = v.open(env).expect("a consistent header").header_info();
    assert_eq!((info.owner_pid, info.allocator), (1, AllocatorKind::Bump));
    // The memory id is covered too; resealed, the segments no longer belong to the header.
    let id = peek_u64(h, mgmt::MEMORY_ID);
    assert_ne!(id, 0);
    poke_u64(h, mgmt::MEMORY_ID, id ^ 1);
    assert_eq!(v.open_err(env), Err(OpenError::Corrupted));
    reseal(h);
    let view = v.open(env).expect("a consistent header");
    assert_eq!(view.header_info().memory_id, id ^ 1);
    assert_eq!(
        read_through(&view, v.b.offset),
        Err(OpenError::DoesNotExist)
    );
    // The owner is not misled: dropping it still removes every object (checked by `Env`).
}

fn state_word_other_than_ready_is_rejected(env: &Env) {
    let v = Victim::new(env, "state");
    let ready = peek_u32(&v.header, mgmt::STATE);
    poke_u32(&v.header, mgmt::STATE, 0);
    assert_eq!(
        v.open_err(env),
        Err(OpenError::InitializationNotYetFinalized)
    );
    for garbage in [1, ready ^ 1, u32::MAX] {
        poke_u32(&v.header, mgmt::STATE, garbage);
        assert_eq!(v.open_err(env), Err(OpenError::Corrupted), "{garbage:#x}");
    }
    poke_u32(&v.header, mgmt::STATE, ready);
    assert_eq!(v.open_err(env), Ok(()));
}

fn current_segment_out_of_range_or_dead_is_corrupted(env: &Env) {
    let v = Victim::new(env, "current");
    let view = v.open(env).expect("open");
    assert_eq!(view.owner_current_segment(), Some(sid(1)));
    for current in [256, 1000, u32::MAX, 7, 255] {
        poke_u32(&v.header, mgmt::CURRENT, current);
        assert_eq!(
            v.open_err(env),
            Err(OpenError::Corrupted),
            "current {current}"
        );
        assert_eq!(view.owner_current_segment(), None, "current {current}");
    }
    // A live but older segment is a consistent (if false) claim.
    poke_u32(&v.header, mgmt::CURRENT, 0);
    assert_eq!(
        v.open(env).expect("open").header_info().current_segment,
        sid(0)
    );
    // The owner never reads the header: it still allocates from its real current segment.
    let c = v.memory.allocate(layout(8, 8)).expect("allocate");
    assert_eq!(c.offset.segment_id(), sid(1));
    v.memory.try_deallocate(c.offset).expect("free");
    assert_eq!(read_through(&view, v.b.offset), Ok(0xB));
}

fn truncated_management_object_is_corrupted(env: &Env) {
    let v = Victim::new(env, "source");
    // SAFETY: the management mapping is at least MGMT_SIZE bytes; nobody writes it now.
    let image = unsafe { common::bytes(v.header.as_ptr(), MGMT_SIZE) };
    for (i, size) in [8, 64, 4096, MGMT_SIZE - 64, MGMT_SIZE - 1, MGMT_SIZE]
        .into_iter()
        .enumerate()
    {
        let name = format!("short{i}");
        let fake = env.create_locked_object(&env.mgmt_name(&name), size);
        // SAFETY: `size` bytes of the fresh mapping, from the image (at least as long).
        unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), fake.as_ptr(), size) };
        let r = View::builder(&name)
            .config(&env.config)
            .open(AccessMode::Read)
            .map(|_| ());
        let expected = if size >= MGMT_SIZE {
            Ok(())
        } else {
            Err(OpenError::Corrupted)
        };
        assert_eq!(r, expected, "size {size}");
        drop(fake);
        assert!(env.backend().remove(&env.mgmt_name(&name)).expect("remove"));
    }
}

fn hostile_slot_records_are_rejected(env: &Env) {
    let v = Victim::new(env, "slots");
    let view = v.open(env).expect("open");
    let field = |f| mgmt::slot(0, f);
    // Values that no segment can have: the slot reads as dead.
    let dead: [(usize, u64, &str); 6] = [
        (mgmt::SLOT_STATE, 0, "free"),
        (mgmt::SLOT_STATE, 2, "unknown state"),
        (mgmt::SLOT_PAYLOAD, 0, "empty payload"),
        (
            mgmt::SLOT_PAYLOAD,
            (1 << 44) + 1,
            "payload above the maximum",
        ),
        (mgmt::SLOT_CHUNK_SIZE, 9, "chunk larger than the payload"),
        (mgmt::SLOT_CHUNK_ALIGN, 3, "alignment not a power of two"),
    ];
    for (f, value, what) in dead {
        let old = peek_u64(&v.header, field(f));
        if f == mgmt::SLOT_STATE {
            poke_u32(&v.header, field(f), value as u32);
        } else {
            poke_u64(&v.header, field(f), value);
        }
        assert_eq!(
            read_through(&view, v.a.offset),
            Err(OpenError::InvalidOffset),
            "{what}"
        );
        poke_u64(&v.header, field(f), old);
    }
    // Plausible values that disagree with the segment's trailer or size: corrupted.
    let lies: [(usize, u64, &str); 4] = [
        (mgmt::SLOT_SEQUENCE, 5, "another creation"),
        (
            mgmt::SLOT_PAYLOAD,
            16,
            "other payload, same trailer position",
        ),
        (mgmt::SLOT_PAYLOAD, 3 * 4096, "payload beyond the object"),
        (mgmt::SLOT_PAYLOAD, 1 << 40, "payload far beyond the object"),
    ];
    for (f, value, what) in lies {
        let old = peek_u64(&v.header, field(f));
        poke_u64(&v.header, field(f), value);
        assert_eq!(
            read_through(&view, v.a.offset),
            Err(OpenError::Corrupted),
            "{what}"
        );
        poke_u64(&v.header, field(f), old);
    }
    assert_eq!(
        view.number_of_active_segments(),
        0,
        "nothing was mapped on the way"
    );
    assert_eq!(read_through(&view, v.a.offset), Ok(0xA));
    // Once mapped, a changed sequence marks the mapping stale, never reused.
    poke_u64(&v.header, field(mgmt::SLOT_SEQUENCE), 5);
    assert_eq!(read_through(&view, v.a.offset), Err(OpenError::Corrupted));
    poke_u64(&v.header, field(mgmt::SLOT_SEQUENCE), 0);
    assert_eq!(read_through(&view, v.a.offset), Ok(0xA));
}

fn hostile_current_slot_record_is_corrupted(env: &Env) {
    let v = Victim::new(env, "curslot");
    let view = v.open(env).expect("open");
    let at = mgmt::slot(1, mgmt::SLOT_PAYLOAD);
    let old = peek_u64(&v.header, at);
    poke_u64(&v.header, at, 0);
    assert_eq!(v.open_err(env), Err(OpenError::Corrupted));
    assert_eq!(view.owner_current_segment(), None);
    assert_eq!(
        read_through(&view, v.b.offset),
        Err(OpenError::InvalidOffset)
    );
    poke_u64(&v.header, at, old);
    assert_eq!(view.owner_current_segment(), Some(sid(1)));
    assert_eq!(read_through(&view, v.b.offset), Ok(0xB));
}

fn trailer_garbage_is_corrupted(env: &Env) {
    let v = Victim::new(env, "trailer");
    let segment = env.open_object(&env.segment_name("trailer", 0));
    let at = common::trailer_at(8);
    let view = v.open(env).expect("open");
    let cases: [(usize, u64, &str); 5] = [
        (trailer::MAGIC, MAGIC, "magic"),
        (trailer::MAGIC, 0, "zero magic"),
        (trailer::SEQUENCE, 1, "sequence"),
        (trailer::PAYLOAD, 16, "payload"),
        (trailer::SEGMENT_ID, 1, "segment id"),
    ];
    for (f, value, what) in cases {
        let old = peek_u64(&segment, at + f);
        if f == trailer::SEGMENT_ID {
            poke_u32(&segment, at + f, value as u32);
        } else {
            poke_u64(&segment, at + f, value);
        }
        assert_eq!(
            read_through(&view, v.a.offset),
            Err(OpenError::Corrupted),
            "{what}"
        );
        poke_u64(&segment, at + f, old);
    }
    // A zero memory id is no valid trailer; another memory's id means the name was handed on
    // to a successor memory (after `remove`): ours no longer exists.
    let old = peek_u64(&segment, at + trailer::MEMORY_ID);
    for (value, expected) in [
        (0, OpenError::Corrupted),
        (old ^ 1, OpenError::DoesNotExist),
    ] {
        poke_u64(&segment, at + trailer::MEMORY_ID, value);
        assert_eq!(
            read_through(&view, v.a.offset),
            Err(expected),
            "memory id {value:#x}"
        );
    }
    poke_u64(&segment, at + trailer::MEMORY_ID, old);
    assert_eq!(read_through(&view, v.a.offset), Ok(0xA));
    // Unmap it again (a newer segment must be mapped for that) before the random rounds.
    assert_eq!(read_through(&view, v.b.offset), Ok(0xB));
    assert_eq!(view.number_of_active_segments(), 1);
    let mut rng = Rng::new(99);
    // SAFETY: 64 trailer bytes inside the one-page mapping.
    let saved = unsafe { common::bytes(segment.as_ptr().add(at), 64) };
    for round in 0..16 {
        for i in (0..64).step_by(8) {
            poke_u64(&segment, at + i, rng.next_u64());
        }
        assert_eq!(
            read_through(&view, v.a.offset),
            Err(OpenError::Corrupted),
            "random {round}"
        );
    }
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(saved.as_ptr(), segment.as_ptr().add(at), 64) };
    assert_eq!(read_through(&view, v.a.offset), Ok(0xA));
}

fn replaced_data_segment_object_is_corrupted(env: &Env) {
    // Segment 0 holds two 4096-byte buckets: payload 8192, trailer at 8192, 3 pages.
    let memory = env.memory("swap", 4096, 2, AllocationStrategy::PowerOfTwo);
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let name = env.segment_name("swap", 0);
    let view = View::builder("swap")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    for size in [1, 4096, 8192, 8192 + 64, 3 * 4096, 16 * 4096] {
        assert!(env.backend().remove(&name).expect("remove"));
        let _fake = env.create_object(&name, size);
        assert_eq!(
            read_through(&view, a.offset),
            Err(OpenError::Corrupted),
            "size {size}"
        );
    }
    memory.try_deallocate(a.offset).expect("free");
    drop(memory);
    // The owner only unlinks its own objects, so that it never removes a successor's
    // segment: the impostor under its name stays and is the test's to remove.
    assert_eq!(env.objects(), vec![name.clone()]);
    assert!(env.backend().remove(&name).expect("remove"));
}

fn truncated_data_segment_is_corrupted(env: &Env) {
    let memory = env.memory("trunc", 4096, 2, AllocationStrategy::PowerOfTwo);
    let a = memory.allocate(layout(8, 8)).expect("allocate");
    let view = View::builder("trunc")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let path = env
        .object_path(&env.segment_name("trunc", 0))
        .expect("os backend");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the segment file");
    // Only the first page stays; the owner never touches the rest of it in this test.
    for len in [0, 8192, 4096] {
        file.set_len(len).expect("truncate");
        assert_eq!(
            read_through(&view, a.offset),
            Err(OpenError::Corrupted),
            "length {len}"
        );
    }
    memory.try_deallocate(a.offset).expect("free");
    drop(memory);
    // Truncated, it is still the owner's object (its identity, not its bytes, say so): gone.
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn fuzzed_header_gives_typed_errors_only(env: &Env) {
    let v = Victim::new(env, "fuzz");
    // The first 64 bytes and the slot records of segments 0..=2.
    let span = mgmt::slot(3, 0);
    // SAFETY: span < MGMT_SIZE bytes of the mapping; nobody writes it concurrently.
    let original = unsafe { common::bytes(v.header.as_ptr(), span) };
    let mut rng = Rng::new(0x5eed);
    let (mut opened, mut refused) = (0, 0);
    for round in 0..400 {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(span as u64) as usize;
            // SAFETY: `at` < span, inside the mapping.
            unsafe { *v.header.as_ptr().add(at) ^= 1 << rng.below(8) };
        }
        if rng.below(2) == 0 {
            reseal(&v.header);
        }
        match v.open(env) {
            Ok(view) => {
                opened += 1;
                for offset in [v.a.offset, v.b.offset, PointerOffset::new(sid(2), 0)] {
                    match read_through(&view, offset) {
                        Ok(value) => assert!(
                            offset == v.a.offset && value == 0xA
                                || offset == v.b.offset && value == 0xB,
                            "round {round}: {offset} translated to {value:#x}"
                        ),
                        Err(e) => assert!(
                            matches!(
                                e,
                                OpenError::InvalidOffset
                                    | OpenError::Corrupted
                                    | OpenError::DoesNotExist
                            ),
                            "round {round}: {e:?}"
                        ),
                    }
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    matches!(
                        e,
                        OpenError::Corrupted
                            | OpenError::IncompatibleVersion
                            | OpenError::InitializationNotYetFinalized
                            // A flipped bit in the recorded prefix: "not this namespace's".
                            | OpenError::DoesNotExist
                    ),
                    "round {round}: {e:?}"
                );
            }
        }
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(original.as_ptr(), v.header.as_ptr(), span) };
    }
    assert!(
        opened > 0 && refused > 0,
        "opened {opened}, refused {refused}"
    );
    assert_eq!(v.open_err(env), Ok(()));
}

fn scribbled_ids_do_not_mislead_the_owner(env: &Env) {
    let v = Victim::new(env, "owner");
    // A peer overwrites the memory id in the header (resealed) and in segment 0's trailer ...
    let id = peek_u64(&v.header, mgmt::MEMORY_ID);
    poke_u64(&v.header, mgmt::MEMORY_ID, id ^ 0xff);
    reseal(&v.header);
    let segment0 = env.open_object(&env.segment_name("owner", 0));
    poke_u64(
        &segment0,
        common::trailer_at(8) + trailer::MEMORY_ID,
        id ^ 0xff,
    );
    drop(segment0);
    // ... and squats the name of the next segment.
    let squatter = env.create_object(&env.segment_name("owner", 2), 4096);
    // SAFETY: 8 bytes of the fresh one-page mapping.
    unsafe { common::write_u64(squatter.as_ptr(), 0xbad) };
    // The owner still replaces the squatter when it grows (its management object is its own,
    // whatever the header says) ...
    let c = v
        .memory
        .allocate(layout(24, 8))
        .expect("grow despite the squatter");
    assert_eq!(c.offset.segment_id(), sid(2));
    // SAFETY: ours, a fresh zero-filled chunk.
    assert_eq!(unsafe { common::read_u64(c.data_ptr) }, 0);
    // ... and unlinks its segment 0 with its last chunk (the object is its own, whatever the
    // trailer says).
    v.memory.try_deallocate(v.a.offset).expect("free");
    assert!(
        !env.backend()
            .exists(&env.segment_name("owner", 0))
            .expect("exists")
    );
    v.memory.try_deallocate(c.offset).expect("free");
    // Dropping it removes everything (checked by `Env`).
}

/// A bump memory of 128 payload bytes holding chunk A (0..64) and chunk B (64..128), B filled
/// with a pattern.
fn bump_pair(env: &Env, name: &str) -> (Memory, ShmPointer, ShmPointer) {
    let memory = env
        .builder(name)
        .allocator(AllocatorKind::Bump)
        .max_chunk_layout_hint(layout(64, 8))
        .max_number_of_chunks_hint(2)
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .expect("create");
    let a = memory.allocate(layout(64, 8)).expect("allocate A");
    let b = memory.allocate(layout(64, 8)).expect("allocate B");
    assert_eq!(
        (a.offset, b.offset),
        (
            PointerOffset::new(sid(0), 0),
            PointerOffset::new(sid(0), 64)
        )
    );
    // SAFETY: B is ours, 64 bytes.
    unsafe { common::fill(b.data_ptr, 64, 0xB0) };
    (memory, a, b)
}

/// B's 64 bytes as a fresh view reads them.
fn bytes_through_view(
    env: &Env,
    memory: &Memory,
    offset: PointerOffset,
) -> Result<Vec<u8>, OpenError> {
    let view = View::builder(memory.name())
        .config(&env.config)
        .open(AccessMode::Read)?;
    // SAFETY: unregistered right after the read.
    let ptr = unsafe { view.register_and_translate_offset(offset) }?;
    // SAFETY: the chunk is 64 bytes, mapped while registered.
    let read = unsafe { common::bytes(ptr, 64) };
    // SAFETY: registered above, not used afterwards.
    unsafe { view.unregister_offset(offset) };
    Ok(read)
}

/// Issue 10: freeing bump chunk A twice while B is live must be refused; before, the second
/// free reset the cursor (the next allocation overlapped B) and dropped a second reference.
#[test]
fn bump_double_free_while_another_chunk_lives_is_refused() {
    let env = Env::posix();
    let (memory, a, b) = bump_pair(&env, "bumpdf");
    assert_eq!(memory.try_deallocate(a.offset), Ok(()));
    assert_eq!(
        memory.try_deallocate(a.offset),
        Err(resmem::DeallocError::NotAllocated)
    );
    // An offset inside B is no chunk start.
    assert_eq!(
        memory.try_deallocate(PointerOffset::new(sid(0), 72)),
        Err(resmem::DeallocError::InvalidOffset)
    );
    // The segment is full (its cursor did not reset): a 128 B chunk needs a new segment.
    let c = memory.allocate(layout(128, 8)).expect("allocate C");
    assert_eq!(c.offset, PointerOffset::new(sid(1), 0));
    // SAFETY: C is ours, 128 bytes.
    unsafe { common::fill(c.data_ptr, 128, 0xCC) };
    assert_eq!(memory.number_of_active_segments(), 2);
    assert_eq!(
        bytes_through_view(&env, &memory, b.offset),
        Ok(common::pattern(64, 0xB0))
    );
    for p in [b, c] {
        assert_eq!(memory.try_deallocate(p.offset), Ok(()));
    }
    assert_eq!(memory.number_of_active_segments(), 1);
}

/// Issue 10: the same on a retired segment: the second free of A used to drop B's reference,
/// unmapping and unlinking segment 0 under live chunk B.
#[test]
fn bump_double_free_does_not_unmap_a_retired_segment_under_a_live_chunk() {
    let env = Env::posix();
    let (memory, a, b) = bump_pair(&env, "bumpretired");
    // Segment 0 is full: this retires it and makes segment 1 current.
    let c = memory.allocate(layout(64, 8)).expect("allocate C");
    assert_eq!(c.offset.segment_id(), sid(1));
    assert_eq!(memory.try_deallocate(a.offset), Ok(()));
    assert_eq!(
        memory.try_deallocate(a.offset),
        Err(resmem::DeallocError::NotAllocated)
    );
    assert_eq!(
        memory.number_of_active_segments(),
        2,
        "segment 0 still holds B"
    );
    assert!(memory.segment_region(sid(0)).is_some());
    assert_eq!(
        bytes_through_view(&env, &memory, b.offset),
        Ok(common::pattern(64, 0xB0))
    );
    // SAFETY: B is still ours and mapped, 64 bytes.
    let owner_side = unsafe { common::bytes(b.data_ptr, 64) };
    assert_eq!(owner_side, common::pattern(64, 0xB0));
    assert_eq!(memory.try_deallocate(b.offset), Ok(()));
    assert_eq!(memory.number_of_active_segments(), 1);
    assert_eq!(memory.try_deallocate(c.offset), Ok(()));
}

/// Runs `f` on its own thread and returns its result, failing the test (instead of hanging
/// it) when `f` takes longer than `limit`, e.g. because an `open` blocks on a FIFO.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?} (blocked?)"))
}

const PROMPTLY: Duration = Duration::from_secs(10);

fn mkfifo(path: &std::path::Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// A FIFO planted under a memory's management name or a data segment's name: opening it the
/// ordinary way would wait for a writer forever; every entry point refuses it at once.
fn planted_fifo_is_refused_promptly(env: &Env) {
    let mgmt_name = env.mgmt_name("fifo");
    let path = env.object_path(&mgmt_name).expect("an OS path");
    mkfifo(&path);
    let config = env.config.clone();
    let opened = within(PROMPTLY, "View::open of a FIFO", move || {
        View::builder("fifo")
            .config(&config)
            .open(AccessMode::Read)
            .map(|_| ())
    });
    assert_eq!(opened, Err(OpenError::Corrupted));
    let config = env.config.clone();
    let raw = within(PROMPTLY, "Backend::open of a FIFO", move || {
        config
            .get_backend()
            .open(&mgmt_name, AccessMode::ReadWrite)
            .map(|_| ())
            .map_err(|e| e.kind())
    });
    assert_eq!(raw, Err(std::io::ErrorKind::InvalidData));
    let config = env.config.clone();
    let removal = within(PROMPTLY, "remove_stale of a FIFO", move || {
        resmem::remove_stale("fifo", &config)
    });
    assert!(
        matches!(removal, Err(resmem::ManageError::InternalError(_))),
        "{removal:?}"
    );
    let config = env.config.clone();
    let alive = within(PROMPTLY, "is_owner_alive of a FIFO", move || {
        resmem::is_owner_alive("fifo", &config)
    });
    assert!(
        matches!(alive, Err(resmem::ManageError::InternalError(_))),
        "{alive:?}"
    );
    std::fs::remove_file(&path).expect("remove the FIFO");

    // A data segment's name: the owner's mapping stays, the name now holds a FIFO.
    let memory = env.memory("seg", 8, 1, AllocationStrategy::BestFit);
    let chunk = memory.allocate(layout(8, 8)).expect("allocate");
    let segment = env
        .object_path(&env.segment_name("seg", 0))
        .expect("an OS path");
    std::fs::remove_file(&segment).expect("unlink segment 0");
    mkfifo(&segment);
    let config = env.config.clone();
    let offset = chunk.offset;
    let registered = within(
        PROMPTLY,
        "registering an offset of a FIFO segment",
        move || {
            let view = View::builder("seg")
                .config(&config)
                .open(AccessMode::Read)
                .expect("open the view");
            // SAFETY: fails (asserted below), nothing to unregister.
            unsafe { view.register_and_translate_offset(offset) }.map(|_| ())
        },
    );
    assert_eq!(registered, Err(OpenError::Corrupted));
    std::fs::remove_file(&segment).expect("remove the FIFO");
}

/// A symbolic link under a memory's name is not that memory, even when it points to a real
/// one's management object.
fn planted_symlink_is_refused(env: &Env) {
    let _real = env.memory("real", 8, 1, AllocationStrategy::BestFit);
    let target = env.object_path(&env.mgmt_name("real")).expect("an OS path");
    let link = env
        .object_path(&env.mgmt_name("alias"))
        .expect("an OS path");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let config = env.config.clone();
    let opened = within(PROMPTLY, "View::open of a symlink", move || {
        View::builder("alias")
            .config(&config)
            .open(AccessMode::Read)
            .map(|_| ())
    });
    assert_eq!(opened, Err(OpenError::Corrupted));
    assert_eq!(
        env.backend()
            .open(&env.mgmt_name("alias"), AccessMode::Read)
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidData)
    );
    // The name is taken all the same: creating a memory there fails instead of following
    // the link.
    assert!(
        env.backend()
            .exists(&env.mgmt_name("alias"))
            .expect("exists")
    );
    assert_eq!(
        env.builder("alias").create().map(|_| ()),
        Err(resmem::CreateError::AlreadyExists)
    );
    std::fs::remove_file(&link).expect("remove the symlink");
}
