//! Cross-checks of the model against the host, and the teardown that must leave nothing.

use super::*;

impl Fuzz {
    /// Cross-checks the model against what the host reports.
    pub(super) fn check_model(&mut self) {
        self.part = Part::Channel;
        self.check_channels();
        self.part = Part::Memory;
        for m in 0..self.memories.len() {
            let segments = self.memories[m].raw.number_of_active_segments();
            if segments == 0 || segments > 256 {
                self.fail(&format!("{segments} active segments"));
            }
        }
        if self.step.is_multiple_of(64) {
            // Every byte of every chunk, through the owner.
            for m in 0..self.memories.len() {
                let keys: Vec<u64> = self.memories[m].chunks.keys().copied().collect();
                for packed in keys {
                    let size = self.memories[m].chunks[&packed].size;
                    let result = self.memories[m].raw.read(unpack(packed), 0, size);
                    let bytes = self.must("read a whole chunk", result);
                    if bytes != self.memories[m].chunks[&packed].data {
                        self.fail(&format!(
                            "chunk {:?} changed behind our back",
                            unpack(packed)
                        ));
                    }
                }
            }
        }
    }

    /// Tears the channels down (see `channel_teardown`), unregisters, drops views and
    /// memories, and checks nothing of ours is left.
    pub(super) fn teardown(&mut self) {
        self.part = Part::Channel;
        self.channel_teardown();
        self.part = Part::Memory;
        for view in &mut self.views {
            for (&packed, &count) in &view.registered {
                for _ in 0..count {
                    if view.raw.unregister(unpack(packed)).is_err() {
                        eprintln!("seed {}: unregister failed at teardown", self.seed);
                        exit(1);
                    }
                }
            }
        }
        self.views.clear();
        let names: Vec<String> = self.memories.iter().map(|m| m.name.clone()).collect();
        self.memories.clear();
        for name in names {
            if self.must("exists at teardown", wit::exists(&name)) {
                self.fail(&format!("{name} exists after its owner dropped it"));
            }
        }
    }
}
