//! What a dropped owner removes: its data segments and management object, unless abandoned.

use super::{Memory, OwnerSegment};
use crate::name;
use crate::slot::SlotCell;

impl Drop for Memory {
    fn drop(&mut self) {
        self.drop_plan();
        let segments: Vec<OwnerSegment> =
            self.slots.iter_mut().filter_map(SlotCell::take).collect();
        // The mappings go away with `segments`, abandoned or not: give their bytes back, or a
        // budget shared by many memories (a guest's) shrinks with every memory dropped.
        for segment in &segments {
            self.release_budget(segment.mapping.len());
        }
        if self.abandoned {
            return;
        }
        for segment in &segments {
            self.unlink_if_ours(segment);
        }
        // After `remove` handed the name to a new memory, its management object is not ours.
        if self.owns_name() {
            let _ = self
                .config
                .get_backend()
                .remove(&name::mgmt_name(&self.name, &self.config));
        }
    }
}
