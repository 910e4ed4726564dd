//! Views of the guest's own memories: open, drop, register, unregister and their I/O.

use super::*;

impl Fuzz {
    pub(super) fn open_view(&mut self) {
        if self.views.len() >= MAX_VIEWS {
            return self.drop_view();
        }
        let Some(m) = self.memory_index() else { return };
        let name = self.memories[m].name.clone();
        let writable = self.rng.chance(50);
        let mode = if writable {
            AccessMode::ReadWrite
        } else {
            AccessMode::Read
        };
        let raw = self.must("open a view", wit::View::open(&name, mode, 0));
        if raw.number_of_active_segments() > self.memories[m].raw.number_of_active_segments() {
            self.fail("a fresh view maps more segments than its memory has");
        }
        self.views.push(ViewModel {
            raw,
            memory: Some(name),
            writable,
            registered: HashMap::new(),
        });
    }

    pub(super) fn drop_view(&mut self) {
        if !self.views.is_empty() {
            let i = self.rng.below(self.views.len() as u64) as usize;
            self.views.swap_remove(i);
        }
    }

    /// A view of a live memory and one of its memory's chunks.
    pub(super) fn view_and_chunk(&mut self) -> Option<(usize, usize, u64)> {
        if self.views.is_empty() {
            return None;
        }
        let v = self.rng.below(self.views.len() as u64) as usize;
        let name = self.views[v].memory.clone()?;
        let m = self.memories.iter().position(|m| m.name == name)?;
        let packed = self.chunk_of(m)?;
        Some((v, m, packed))
    }

    pub(super) fn register(&mut self) {
        let Some((v, _, packed)) = self.view_and_chunk() else {
            return;
        };
        let result = self.views[v].raw.register(unpack(packed));
        self.must("register a live chunk", result);
        *self.views[v].registered.entry(packed).or_default() += 1;
    }

    pub(super) fn unregister(&mut self) {
        if self.views.is_empty() {
            return;
        }
        let v = self.rng.below(self.views.len() as u64) as usize;
        let Some(&packed) = self.views[v].registered.keys().next() else {
            let result = self.views[v].raw.unregister(unpack(12345 << 8));
            return self.must_fail("unregister an unknown offset", &["invalid-offset"], result);
        };
        let result = self.views[v].raw.unregister(unpack(packed));
        self.must("unregister", result);
        let count = self.views[v]
            .registered
            .get_mut(&packed)
            .expect("registered");
        *count -= 1;
        if *count == 0 {
            self.views[v].registered.remove(&packed);
        }
    }

    /// Reads (and writes, through writable views) a registered live chunk; the owner's read
    /// must see what the view wrote.
    pub(super) fn view_io(&mut self) {
        let Some((v, m, packed)) = self.view_and_chunk() else {
            return;
        };
        let offset = unpack(packed);
        let size = self.memories[m].chunks[&packed].size;
        if !self.views[v].registered.contains_key(&packed) {
            let result = self.views[v].raw.read(offset, 0, size.min(1));
            return self.must_fail("read an unregistered offset", &["invalid-offset"], result);
        }
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let result = self.views[v].raw.read(offset, at, len);
        let bytes = self.must("read a registered chunk", result);
        if bytes[..] != self.memories[m].chunks[&packed].data[at as usize..(at + len) as usize] {
            self.fail("a view read other bytes than the owner wrote");
        }
        let data = self.rng.bytes(len as usize);
        let result = self.views[v].raw.write(offset, at, &data);
        if self.views[v].writable {
            self.must("write through a read-write view", result);
            self.memories[m]
                .chunks
                .get_mut(&packed)
                .expect("in the model")
                .data[at as usize..(at + len) as usize]
                .copy_from_slice(&data);
            let back = self.memories[m].raw.read(offset, at, len);
            if self.must("owner reads the view's write", back) != data {
                self.fail("the owner does not see a view's write");
            }
        } else {
            self.must_fail(
                "write through a read-only view",
                &["permission-denied"],
                result,
            );
        }
        let overflow = self.views[v].raw.read(offset, u64::MAX, 2);
        self.must_fail(
            "view read with at + len overflowing",
            &["invalid-offset"],
            overflow,
        );
    }
}
