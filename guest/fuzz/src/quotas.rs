//! The memory hog: one kind of resource until the host refuses, then all of it back.

use super::*;

impl Fuzz {
    /// Takes one kind of resource until the host refuses, then gives it all back.
    pub(super) fn hog(&mut self) {
        match self.rng.below(3) {
            0 => {
                let mut extra = Vec::new();
                let error = loop {
                    let name = self.fresh_name();
                    let config = self.config();
                    match wit::Memory::create(&name, config) {
                        Ok(memory) => extra.push(memory),
                        Err(e) => break e,
                    }
                    if extra.len() > 1000 {
                        self.fail("1000 memories and no quota");
                    }
                };
                self.must_fail::<()>("memories beyond the quota", &["quota-exceeded"], Err(error));
            }
            1 => {
                let Some(m) = self.memory_index() else { return };
                let name = self.memories[m].name.clone();
                let mut extra = Vec::new();
                let error = loop {
                    match wit::View::open(&name, AccessMode::Read, 0) {
                        Ok(view) => extra.push(view),
                        Err(e) => break e,
                    }
                    if extra.len() > 1000 {
                        self.fail("1000 views and no quota");
                    }
                };
                self.must_fail::<()>("views beyond the quota", &["quota-exceeded"], Err(error));
            }
            _ => {
                let Some((v, _, packed)) = self.view_and_chunk() else {
                    return;
                };
                let mut count = 0u64;
                let error = loop {
                    match self.views[v].raw.register(unpack(packed)) {
                        Ok(()) => count += 1,
                        Err(e) => break e,
                    }
                    if count > 100_000 {
                        self.fail("100000 registrations and no quota");
                    }
                };
                self.must_fail::<()>(
                    "registrations beyond the quota",
                    &["quota-exceeded"],
                    Err(error),
                );
                for _ in 0..count {
                    let result = self.views[v].raw.unregister(unpack(packed));
                    self.must("unregister", result);
                }
            }
        }
    }
}
