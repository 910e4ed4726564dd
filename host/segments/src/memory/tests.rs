//! Unit tests of the owner's segment lifecycle that need its private hooks.
use super::*;
use crate::{AccessMode, OpenError, ProcessLocal, View};
use std::alloc::Layout;
use std::cell::RefCell;
use std::rc::Rc;

fn config(tag: &str) -> Config {
    Config::default()
        .prefix(&format!("u{}_{tag}_", std::process::id()))
        .backend(ProcessLocal)
}

/// What a view saw of a fresh segment at the moment the owner could first resolve
/// offsets in it.
#[derive(Debug, PartialEq, Eq)]
struct SeenAtInstall {
    owner_resolves: bool,
    view: Result<(), OpenError>,
}

#[test]
fn a_grown_segment_is_published_before_the_owner_can_hand_out_its_offsets() {
    let config = config("publish_first");
    let memory = Memory::builder("m")
        .config(&config)
        .max_chunk_layout_hint(Layout::from_size_align(8, 8).unwrap())
        .max_number_of_chunks_hint(1)
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .expect("create");
    let view = View::builder("m")
        .config(&config)
        .open(AccessMode::Read)
        .expect("open");
    let first = memory
        .allocate(Layout::from_size_align(8, 8).unwrap())
        .unwrap();
    assert_eq!(first.offset.segment_id(), SegmentId::new(0));
    let seen = Rc::new(RefCell::new(None));
    let out = Rc::clone(&seen);
    hooks::set_after_install(move |memory, id| {
        let offset = PointerOffset::new(id, 0);
        let owner_resolves = memory.translate(offset).is_some();
        // SAFETY: unregistered right below when it succeeded; the address is not used.
        let view_result = unsafe { view.register_and_translate_offset(offset) }.map(|_| ());
        if view_result.is_ok() {
            // SAFETY: registered just above, not unregistered since.
            unsafe { view.unregister_offset(offset) };
        }
        *out.borrow_mut() = Some(SeenAtInstall {
            owner_resolves,
            view: view_result,
        });
    });
    let second = memory
        .allocate(Layout::from_size_align(8, 8).unwrap())
        .unwrap();
    assert_eq!(second.offset.segment_id(), SegmentId::new(1));
    assert_eq!(
        seen.borrow_mut().take(),
        Some(SeenAtInstall {
            owner_resolves: true,
            view: Ok(()),
        })
    );
}
