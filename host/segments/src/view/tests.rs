//! Unit tests of the view: translation, seqlock re-checks, eviction races.

use super::*;
use crate::header::{SegmentTrailer, SlotRecord, hooks};
use crate::{AllocationStrategy, Memory, ProcessLocal};
use std::alloc::Layout;
use std::sync::Barrier;

mod late_owner;

fn config(tag: &str) -> Config {
    Config::default()
        .prefix(&format!("u{}_{tag}_", std::process::id()))
        .backend(ProcessLocal)
}

fn memory(config: &Config) -> Memory {
    Memory::builder("m")
        .config(config)
        .max_chunk_layout_hint(Layout::from_size_align(64, 8).unwrap())
        .max_number_of_chunks_hint(4)
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .expect("create")
}

/// A memory, a read-only view of it and one 8-byte chunk.
fn fixture(tag: &str) -> (Memory, View, crate::ShmPointer) {
    let config = config(tag);
    let memory = memory(&config);
    let view = View::builder("m")
        .config(&config)
        .open(AccessMode::Read)
        .expect("open");
    let chunk = memory
        .allocate(Layout::from_size_align(8, 8).unwrap())
        .unwrap();
    (memory, view, chunk)
}

/// Acts as an owner that released segment `id` and created a new one under the same id
/// and name with creation number `sequence` (same object, new trailer and record), so the
/// view's mapping of it is stale.
fn republish(memory: &Memory, view: &View, id: SegmentId, sequence: u64) {
    let record = view.header().slot(id);
    let info = record.read().expect("a live record");
    let trailer = trailer_of(memory, id, info.layout.payload_size);
    record.clear();
    trailer.write(view.info.memory_id, id, sequence, info.layout.payload_size);
    record.publish(sequence, &info.layout);
}

fn trailer_of(memory: &Memory, id: SegmentId, payload_size: usize) -> &SegmentTrailer {
    let base = memory
        .translate(PointerOffset::new(id, 0))
        .expect("a live segment");
    let (trailer_at, _) = segment_geometry(payload_size, page_size()).expect("geometry");
    // SAFETY: the owner's mapping of a live segment holds the trailer at trailer_at
    // (64-aligned, 64 bytes) and lives as long as `memory`.
    unsafe { SegmentTrailer::from_ptr(base.add(trailer_at)) }
}

/// The creation number of the segment the view has mapped under `id`.
fn mapped_sequence(view: &View, id: SegmentId) -> Option<u64> {
    let slot = &view.slots[id.index()];
    if !slot.pin() {
        return None;
    }
    // SAFETY: pinned above.
    let sequence = unsafe { slot.get() }.sequence;
    let _ = slot.unpin(1, drop);
    Some(sequence)
}

/// The owner clears and republishes the id (same object, new creation number) exactly
/// between the fast path's first sequence load and its state load: the view must not take
/// its old mapping for the new segment, but map the new one.
#[test]
fn fast_path_rejects_an_id_republished_between_its_loads() {
    let (memory, view, chunk) = fixture("seqlock");
    let id = chunk.offset.segment_id();
    // SAFETY: unregistered right below, the address is not used.
    unsafe { view.register_and_translate_offset(chunk.offset) }.expect("register");
    // SAFETY: registered above.
    unsafe { view.unregister_offset(chunk.offset) };
    assert_eq!(mapped_sequence(&view, id), Some(0));

    let record_addr = view.header().slot(id) as *const SlotRecord as usize;
    let trailer_addr = trailer_of(
        &memory,
        id,
        view.header().slot(id).read().unwrap().layout.payload_size,
    ) as *const SegmentTrailer as usize;
    let memory_id = view.info.memory_id;
    hooks::set_between_sequence_and_state(move |record| {
        assert_eq!(record as *const SlotRecord as usize, record_addr);
        let info = record.read().expect("live");
        record.clear();
        // SAFETY: the trailer of the owner's live segment, which outlives this call.
        let trailer = unsafe { SegmentTrailer::from_ptr(trailer_addr as *const u8) };
        trailer.write(memory_id, id, 100, info.layout.payload_size);
        record.publish(100, &info.layout);
    });
    // SAFETY: unregistered right below, the address is not used.
    let registered = unsafe { view.register_and_translate_offset(chunk.offset) };
    assert!(registered.is_ok(), "{registered:?}");
    assert_eq!(
        mapped_sequence(&view, id),
        Some(100),
        "the view kept its mapping of the old segment"
    );
    // SAFETY: registered above.
    unsafe { view.unregister_offset(chunk.offset) };
}

/// The bounded wait still gives up when the stale mapping is held by a registration:
/// `SegmentReplaced` while the id is live again, `InvalidOffset` once it is released.
#[test]
fn a_registration_of_the_replaced_segment_still_fails_the_new_one() {
    let (memory, view, chunk) = fixture("held");
    let id = chunk.offset.segment_id();
    // SAFETY: unregistered at the end; the address is not used.
    unsafe { view.register_and_translate_offset(chunk.offset) }.expect("register");
    republish(&memory, &view, id, 50);
    let started = Instant::now();
    // SAFETY: fails (asserted), so nothing to unregister.
    let replaced = unsafe { view.register_and_translate_offset(chunk.offset) };
    assert_eq!(replaced, Err(OpenError::SegmentReplaced));
    assert!(started.elapsed() < Duration::from_secs(1));
    view.header().slot(id).clear();
    // SAFETY: fails (asserted), so nothing to unregister.
    let released = unsafe { view.register_and_translate_offset(chunk.offset) };
    assert_eq!(released, Err(OpenError::InvalidOffset));
    assert_eq!(mapped_sequence(&view, id), Some(0));
    // SAFETY: the registration made above.
    unsafe { view.unregister_offset(chunk.offset) };
}

/// Rounds of: the owner replaces segment 0 (nothing registered), then several threads
/// register an offset of it at once. Whoever takes the slow path finds the stale mapping
/// pinned for a moment by the others' fast paths (kept pinned a little longer by the
/// dwell hook, so the race shows in every run); that must not fail the registration.
#[test]
fn concurrent_registrations_after_a_replacement_do_not_fail_spuriously() {
    const THREADS: usize = 3;
    const ROUNDS: u64 = 2_000;
    let (memory, view, chunk) = fixture("contended");
    let id = chunk.offset.segment_id();
    // SAFETY: the chunk is ours, 8 bytes, 8-aligned; views only read it.
    unsafe { (chunk.data_ptr as *mut u64).write_volatile(0x5EED) };
    let start = Barrier::new(THREADS + 1);
    let end = Barrier::new(THREADS + 1);
    let errors = std::sync::Mutex::new(Vec::new());
    let reads = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                super::hooks::set_dwell_while_pinned(Duration::from_micros(20));
                for _ in 0..ROUNDS {
                    start.wait();
                    // SAFETY: unregistered below, after the read.
                    match unsafe { view.register_and_translate_offset(chunk.offset) } {
                        Ok(ptr) => {
                            // SAFETY: a registered, 8-aligned chunk of 8 bytes.
                            let value = unsafe { (ptr as *const u64).read_volatile() };
                            assert_eq!(value, 0x5EED);
                            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            // SAFETY: registered above, not used afterwards.
                            unsafe { view.unregister_offset(chunk.offset) };
                        }
                        Err(e) => errors.lock().unwrap().push(e),
                    }
                    end.wait();
                }
            });
        }
        for round in 0..ROUNDS {
            republish(&memory, &view, id, 1_000 + round);
            start.wait();
            end.wait();
        }
    });
    let errors = errors.into_inner().unwrap();
    assert_eq!(errors, Vec::<OpenError>::new());
    assert_eq!(
        reads.load(std::sync::atomic::Ordering::Relaxed),
        THREADS as u64 * ROUNDS
    );
    assert_eq!(mapped_sequence(&view, id), Some(1_000 + ROUNDS - 1));
}
