//! Hostile memory calls and names, each with the error the contract names.

use super::*;

impl Fuzz {
    pub(super) fn names(&mut self) {
        let listed = self.must("list", wit::list());
        for memory in &self.memories {
            if !listed.contains(&memory.name) {
                self.fail(&format!("list misses {}", memory.name));
            }
        }
        let prefix = format!("fz{}-", self.seed);
        let ours = listed.iter().filter(|n| n.starts_with(&prefix)).count();
        if ours != self.memories.len() {
            self.fail(&format!(
                "list has {ours} of our memories, the model {}",
                self.memories.len()
            ));
        }
        if let Some(m) = self.memory_index() {
            let name = self.memories[m].name.clone();
            let result = wit::remove(&name);
            self.must_fail(
                "remove a memory with a live owner",
                &["permission-denied"],
                result,
            );
        }
        let missing = self.fresh_name();
        if self.must("exists of a fresh name", wit::exists(&missing)) {
            self.fail("a fresh name exists");
        }
        let removed = wit::remove(&missing);
        if self.must("remove of a fresh name", removed) {
            self.fail("remove of a fresh name removed something");
        }
    }

    /// One hostile call with the error it must produce.
    pub(super) fn hostile(&mut self) {
        let config = self.config();
        match self.rng.below(16) {
            0 => {
                let name =
                    self.rng
                        .pick(&["", "a/b", "..", "a\0b", "/x", "../etc/passwd", "x/../y"]);
                let result = wit::Memory::create(name, config);
                self.must_fail("create with a bad name", &["invalid-name"], result);
                let result = wit::View::open(name, AccessMode::Read, 0);
                self.must_fail("open with a bad name", &["invalid-name"], result);
                self.must_fail(
                    "exists with a bad name",
                    &["invalid-name"],
                    wit::exists(name),
                );
                self.must_fail(
                    "remove with a bad name",
                    &["invalid-name"],
                    wit::remove(name),
                );
            }
            1 => {
                let name = "n".repeat(10 * 1024);
                let result = wit::Memory::create(&name, config);
                self.must_fail("create with a 10 KiB name", &["invalid-name"], result);
            }
            2 => {
                let mut config = config;
                config.max_chunk_layout_hint.align = self.rng.pick(&[0, 3, 1 << 63, 6]);
                let name = self.fresh_name();
                let result = wit::Memory::create(&name, config);
                self.must_fail("create with a bad hint", &["invalid-layout"], result);
            }
            3 => {
                let mut config = config;
                config.max_chunk_layout_hint.size = self.rng.pick(&[1 << 40, u64::MAX >> 1]);
                config.max_number_of_chunks_hint = self.rng.pick(&[1, 1 << 20, u64::MAX]);
                let name = self.fresh_name();
                let result = wit::Memory::create(&name, config);
                self.must_fail(
                    "create with a huge hint",
                    &["quota-exceeded", "invalid-layout"],
                    result,
                );
            }
            4..=5 => {
                let Some(m) = self.memory_index() else { return };
                let align = self.rng.pick(&[0, 3, 1 << 63, 12, u64::MAX]);
                let result = self.memories[m].raw.allocate(Layout { size: 8, align });
                self.must_fail("allocate with a bad alignment", &["invalid-layout"], result);
                let size = self.rng.pick(&[u64::MAX, u64::MAX - 7, 1 << 63]);
                let result = self.memories[m].raw.allocate(Layout { size, align: 8 });
                self.must_fail(
                    "allocate a size that overflows",
                    &["invalid-layout"],
                    result,
                );
                let result = self.memories[m].raw.allocate(Layout {
                    size: 1 << 40,
                    align: 8,
                });
                self.must_fail("allocate 1 TiB", &["quota-exceeded"], result);
            }
            6..=7 => {
                let Some(m) = self.memory_index() else { return };
                let forged = PointerOffset {
                    segment: self.rng.next() as u8,
                    offset: self
                        .rng
                        .pick(&[0, 8, 4096, 1 << 55, (1 << 56) - 1, 1 << 56, u64::MAX]),
                };
                if self.memories[m].chunks.contains_key(&pack(forged)) {
                    return;
                }
                let memory = &self.memories[m].raw;
                let (d, r, w, g) = (
                    memory.deallocate(forged),
                    memory.read(forged, 0, 1),
                    memory.write(forged, 0, &[1]),
                    memory.grow(
                        forged,
                        Layout { size: 16, align: 8 },
                        ContentPlacement::Front,
                    ),
                );
                self.must_fail("deallocate a forged offset", &["invalid-offset"], d);
                self.must_fail("read a forged offset", &["invalid-offset"], r);
                self.must_fail("write a forged offset", &["invalid-offset"], w);
                self.must_fail("grow a forged offset", &["invalid-offset"], g);
            }
            8 => {
                let Some(m) = self.memory_index() else { return };
                let Some(&freed) = self.memories[m].freed.last() else {
                    return;
                };
                if self.memories[m].chunks.contains_key(&pack(freed)) {
                    return;
                }
                let memory = &self.memories[m].raw;
                let (d, r, w) = (
                    memory.deallocate(freed),
                    memory.read(freed, 0, 1),
                    memory.write(freed, 0, &[1]),
                );
                self.must_fail("deallocate a freed offset", &["invalid-offset"], d);
                self.must_fail("read a freed offset", &["invalid-offset"], r);
                self.must_fail("write a freed offset", &["invalid-offset"], w);
            }
            9..=10 => {
                let Some(m) = self.memory_index() else { return };
                let Some(packed) = self.chunk_of(m) else {
                    return;
                };
                let offset = unpack(packed);
                let at = self.rng.pick(&[u64::MAX, u64::MAX - 1, 1 << 63, 1 << 32]);
                let memory = &self.memories[m].raw;
                let (r, w) = (
                    memory.read(offset, at, 2),
                    memory.write(offset, at, &[1, 2]),
                );
                let (huge, max) = (
                    memory.read(offset, 0, 1 << 32),
                    memory.read(offset, 1, u64::MAX),
                );
                self.must_fail("read with at + len overflowing", &["invalid-offset"], r);
                self.must_fail("write with at + len overflowing", &["invalid-offset"], w);
                self.must_fail("read 4 GiB", &["quota-exceeded"], huge);
                self.must_fail("read u64::MAX bytes", &["quota-exceeded"], max);
            }
            11 => {
                let Some(m) = self.memory_index() else { return };
                let Some(packed) = self.chunk_of(m) else {
                    return;
                };
                let align = self.rng.pick(&[0, 3, 1 << 63]);
                let result = self.memories[m].raw.grow(
                    unpack(packed),
                    Layout {
                        size: 1 << 20,
                        align,
                    },
                    ContentPlacement::Back,
                );
                self.must_fail("grow with a bad alignment", &["invalid-layout"], result);
            }
            12 => {
                if self.views.is_empty() {
                    return;
                }
                let v = self.rng.below(self.views.len() as u64) as usize;
                let forged = PointerOffset {
                    segment: self.rng.pick(&[0, 1, 17, 255]),
                    offset: self.rng.pick(&[1 << 40, (1 << 56) - 1, 1 << 56, u64::MAX]),
                };
                let result = self.views[v].raw.register(forged);
                self.must_fail("register a forged offset", &["invalid-offset"], result);
                let result = self.views[v].raw.read(forged, 0, 1);
                self.must_fail("view read of a forged offset", &["invalid-offset"], result);
            }
            13 => {
                let missing = self.fresh_name();
                let result = wit::View::open(&missing, AccessMode::ReadWrite, 0);
                self.must_fail("open a missing memory", &["does-not-exist"], result);
            }
            14 => {
                // Another namespace: names cannot leave the guest's prefix.
                let name = self.rng.pick(&["..resmem_x", "resmem_frames", "fz-other"]);
                let result = wit::View::open(name, AccessMode::Read, 0);
                self.must_fail(
                    "open a name that is not ours",
                    &["does-not-exist", "invalid-name"],
                    result,
                );
            }
            _ => {
                let Some(m) = self.memory_index() else { return };
                let Some(packed) = self.chunk_of(m) else {
                    return;
                };
                let size = self.memories[m].chunks[&packed].size;
                let memory = &self.memories[m].raw;
                let (past, end) = (
                    memory.read(unpack(packed), size + 1, 0),
                    memory.read(unpack(packed), size, 0),
                );
                self.must_fail(
                    "read an empty range past the end",
                    &["invalid-offset"],
                    past,
                );
                if !self.must("read an empty range at the end", end).is_empty() {
                    self.fail("an empty read returned bytes");
                }
            }
        }
    }
}
