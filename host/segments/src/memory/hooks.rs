//! Test-only interleaving hooks of the owner.

use super::Memory;
use crate::SegmentId;
use std::cell::RefCell;

type Hook = Box<dyn FnOnce(&Memory, SegmentId)>;

thread_local! {
    static AFTER_INSTALL: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Runs `hook` (once) right after this thread's next `grow_segment` has installed a new
/// segment in the owner's slot, before it becomes the current segment.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn set_after_install(hook: impl FnOnce(&Memory, SegmentId) + 'static) {
    AFTER_INSTALL.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

pub(super) fn after_install(memory: &Memory, id: SegmentId) {
    if let Some(hook) = AFTER_INSTALL.with(|h| h.borrow_mut().take()) {
        hook(memory, id);
    }
}
