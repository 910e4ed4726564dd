//! The guards next to the raw API: a `Chunk` frees itself on drop unless handed away with
//! `into_raw`, a `Registration` unregisters itself on drop and bounds-checks its slices.

mod common;

use common::{Env, layout, sid};
use resmem::{AccessMode, AllocError, AllocationStrategy, DeallocError, OpenError, View};

use AllocationStrategy::{BestFit, Static};

/// The chunks in use of segment `id`, as the owner's header publishes them.
fn chunks_in_use(view: &View, id: u8) -> Option<u64> {
    view.segment_records()
        .into_iter()
        .find(|(record, _)| *record == sid(id))
        .map(|(_, info)| info.chunks_in_use)
}

#[test]
fn a_dropped_chunk_is_freed_and_its_bucket_served_again() {
    let env = Env::posix();
    // One bucket, no growth: a second live chunk is impossible.
    let memory = env.memory("drop", 64, 1, Static);
    let view = View::builder("drop")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let mut chunk = memory.allocate_chunk(layout(10, 8)).expect("allocate");
    let offset = chunk.offset();
    assert_eq!(offset.segment_id(), sid(0));
    assert_eq!(chunk.len(), 10);
    assert_eq!(
        chunk.as_mut_slice().len(),
        10,
        "the layout's size, not the bucket's"
    );
    chunk.as_mut_slice().copy_from_slice(b"0123456789");
    assert_eq!(chunk.as_slice(), b"0123456789");
    assert_eq!(chunks_in_use(&view, 0), Some(1));
    assert_eq!(
        memory.allocate_chunk(layout(10, 8)).map(|_| ()),
        Err(AllocError::OutOfMemory)
    );
    drop(chunk);
    assert_eq!(chunks_in_use(&view, 0), Some(0));
    assert_eq!(
        memory.try_deallocate(offset),
        Err(DeallocError::NotAllocated),
        "the drop freed it"
    );
    let again = memory
        .allocate_chunk(layout(10, 8))
        .expect("the freed bucket");
    assert_eq!(again.offset(), offset);
    drop(again);
    drop(view);
    drop(memory);
    assert_eq!(env.objects(), Vec::<String>::new());
}

#[test]
fn into_raw_hands_the_chunk_away_without_freeing_it() {
    let env = Env::posix();
    let memory = env.memory("raw", 64, 1, Static);
    let mut chunk = memory.allocate_chunk(layout(8, 8)).expect("allocate");
    chunk.as_mut_slice().copy_from_slice(&7u64.to_ne_bytes());
    let offset = chunk.offset();
    let raw = chunk.into_raw();
    assert_eq!(raw.offset, offset);
    assert_eq!(memory.translate(offset), Some(raw.data_ptr));
    assert_eq!(
        memory.allocate_chunk(layout(8, 8)).map(|_| ()),
        Err(AllocError::OutOfMemory),
        "still allocated"
    );
    // SAFETY: the chunk is still allocated, 8 bytes, 8-aligned.
    assert_eq!(unsafe { common::read_u64(raw.data_ptr) }, 7);
    assert_eq!(memory.try_deallocate(offset), Ok(()));
    assert_eq!(
        memory.try_deallocate(offset),
        Err(DeallocError::NotAllocated)
    );
}

#[test]
fn a_dropped_registration_is_unregistered() {
    let env = Env::posix();
    let memory = env.memory("reg", 8, 1, BestFit);
    let mut first = memory.allocate_chunk(layout(8, 8)).expect("segment 0");
    first
        .as_mut_slice()
        .copy_from_slice(&0xAB_u64.to_ne_bytes());
    let second = memory.allocate_chunk(layout(8, 8)).expect("segment 1");
    assert_eq!(
        (first.offset().segment_id(), second.offset().segment_id()),
        (sid(0), sid(1))
    );
    let view = View::builder("reg")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let old = view.register(first.offset()).expect("register segment 0");
    assert_eq!(old.offset(), first.offset());
    assert_eq!(old.as_slice(8), Ok(&0xAB_u64.to_ne_bytes()[..]));
    let new = view.register(second.offset()).expect("register segment 1");
    // Segment 0 is superseded by segment 1, but its registration keeps it mapped.
    assert_eq!(view.number_of_active_segments(), 2);
    assert!(view.segment_payload_size(sid(0)).is_some());
    drop(old);
    assert_eq!(
        view.number_of_active_segments(),
        1,
        "the last registration of the superseded segment went: unmapped"
    );
    assert_eq!(view.segment_payload_size(sid(0)), None);
    drop(new);
    // The newest segment stays mapped without registrations.
    assert_eq!(view.number_of_active_segments(), 1);
    assert!(view.register(second.offset()).is_ok());
}

#[test]
fn a_slice_past_the_segment_payload_is_an_invalid_offset() {
    let env = Env::posix();
    let memory = env.memory("slice", 64, 4, Static);
    let chunk = memory.allocate_chunk(layout(64, 8)).expect("allocate");
    let view = View::builder("slice")
        .config(&env.config)
        .open(AccessMode::Read)
        .expect("open");
    let payload = view
        .register(chunk.offset())
        .map(|r| view.segment_payload_size(r.offset().segment_id()))
        .expect("register")
        .expect("mapped");
    let registration = view.register(chunk.offset()).expect("register");
    let available = payload - chunk.offset().offset() as usize;
    assert_eq!(registration.available(), available);
    assert_eq!(
        registration.as_ptr(),
        registration.as_slice(0).unwrap().as_ptr()
    );
    assert_eq!(
        registration.as_slice(available).map(<[u8]>::len),
        Ok(available)
    );
    assert_eq!(
        registration.as_slice(available + 1),
        Err(OpenError::InvalidOffset)
    );
    assert_eq!(
        registration.as_slice(usize::MAX),
        Err(OpenError::InvalidOffset)
    );
    drop(registration);
    let beyond = resmem::PointerOffset::new(sid(0), payload as u64);
    assert_eq!(
        view.register(beyond).map(|_| ()),
        Err(OpenError::InvalidOffset)
    );
}
