//! Memories and their chunks: create, drop, allocate, deallocate, grow, write and read, each against the model.

use super::*;

impl Fuzz {
    pub(super) fn create(&mut self) {
        if self.memories.len() >= MAX_MEMORIES {
            return self.drop_memory();
        }
        let name = self.fresh_name();
        let config = self.config();
        let raw = self.must("create", wit::Memory::create(&name, config));
        if raw.name() != name {
            self.fail("name() differs from the created name");
        }
        if raw.allocation_strategy() != config.allocation_strategy {
            self.fail("allocation_strategy() differs from the config");
        }
        let again = wit::Memory::create(&name, config);
        self.must_fail("create twice", &["already-exists"], again);
        let exists = wit::exists(&name);
        if !self.must("exists", exists) {
            self.fail("a created memory does not exist");
        }
        self.memories.push(MemoryModel {
            raw,
            name,
            chunks: BTreeMap::new(),
            freed: Vec::new(),
        });
    }

    pub(super) fn drop_memory(&mut self) {
        if self.memories.is_empty() {
            return;
        }
        let i = self.rng.below(self.memories.len() as u64) as usize;
        let memory = self.memories.swap_remove(i);
        let name = memory.name.clone();
        drop(memory);
        for view in &mut self.views {
            if view.memory.as_deref() == Some(&name) {
                view.memory = None;
            }
        }
        let exists = wit::exists(&name);
        if self.must("exists after drop", exists) {
            self.fail("a dropped memory still exists");
        }
        let view = wit::View::open(&name, AccessMode::Read, 0);
        self.must_fail("open a dropped memory", &["does-not-exist"], view);
    }

    pub(super) fn layout(&mut self) -> Layout {
        let size = match self.rng.below(10) {
            0 => 0,
            1..=5 => self.rng.below(512) + 1,
            6..=8 => self.rng.below(8192) + 1,
            _ => self.rng.below(MAX_CHUNK) + 1,
        };
        Layout {
            size,
            align: 1 << self.rng.below(7),
        }
    }

    pub(super) fn memory_index(&mut self) -> Option<usize> {
        (!self.memories.is_empty()).then(|| self.rng.below(self.memories.len() as u64) as usize)
    }

    pub(super) fn chunk_of(&mut self, m: usize) -> Option<u64> {
        let chunks = &self.memories[m].chunks;
        if chunks.is_empty() {
            return None;
        }
        let k = self.rng.below(chunks.len() as u64) as usize;
        chunks.keys().nth(k).copied()
    }

    pub(super) fn allocate(&mut self) {
        let Some(m) = self.memory_index() else {
            return self.create();
        };
        if self.live_chunks() >= MAX_CHUNKS {
            return self.deallocate();
        }
        if self.rng.chance(20) {
            return self.allocate_batch(m);
        }
        let layout = self.layout();
        let result = self.memories[m].raw.allocate(layout);
        let offset = match self.note(result) {
            Ok(offset) => offset,
            // A static memory may be full; the others grow.
            Err(Error::OutOfMemory)
                if self.memories[m].raw.allocation_strategy() == AllocationStrategy::Static =>
            {
                return;
            }
            Err(e) => self.fail(&format!("allocate {layout:?}: {e:?}")),
        };
        self.admit(m, offset, layout);
    }

    /// Checks a chunk just handed out and adds it to the model, filled with fresh bytes.
    pub(super) fn admit(&mut self, m: usize, offset: PointerOffset, layout: Layout) {
        let packed = pack(offset);
        if !offset.offset.is_multiple_of(layout.align) {
            self.fail(&format!("{offset:?} is not aligned to {}", layout.align));
        }
        let end = offset.offset + layout.size.max(1);
        for (&other, chunk) in &self.memories[m].chunks {
            let o = unpack(other);
            if o.segment == offset.segment
                && o.offset < end
                && offset.offset < o.offset + chunk.size.max(1)
            {
                self.fail(&format!("{offset:?} overlaps the live chunk {o:?}"));
            }
        }
        let data = self.rng.bytes(layout.size as usize);
        let write = self.memories[m].raw.write(offset, 0, &data);
        self.must("fill a new chunk", write);
        self.memories[m].chunks.insert(
            packed,
            ChunkModel {
                size: layout.size,
                data,
            },
        );
    }

    pub(super) fn deallocate(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        if self.rng.chance(20) {
            return self.deallocate_batch(m);
        }
        let offset = unpack(packed);
        let result = self.memories[m].raw.deallocate(offset);
        self.must("deallocate", result);
        self.memories[m].chunks.remove(&packed);
        self.memories[m].freed.push(offset);
        let again = self.memories[m].raw.deallocate(offset);
        self.must_fail("double deallocate", &["invalid-offset"], again);
    }

    /// `allocate-many` of up to 16 chunks: each one checked and admitted like a single
    /// allocation; a static memory that cannot serve them all serves none.
    fn allocate_batch(&mut self, m: usize) {
        let room = MAX_CHUNKS.saturating_sub(self.live_chunks()) as u64;
        let count = self.rng.below(room.min(16) + 1) as u32;
        let layout = self.layout();
        let result = self.memories[m].raw.allocate_many(layout, count);
        let offsets = match self.note(result) {
            Ok(offsets) => offsets,
            Err(Error::OutOfMemory)
                if self.memories[m].raw.allocation_strategy() == AllocationStrategy::Static =>
            {
                return;
            }
            Err(e) => self.fail(&format!("allocate-many {count} x {layout:?}: {e:?}")),
        };
        if offsets.len() != count as usize {
            self.fail(&format!("allocate-many {count} gave {}", offsets.len()));
        }
        for offset in offsets {
            self.admit(m, offset, layout);
        }
    }

    /// `deallocate-many` of some of a memory's chunks; now and then with a freed, forged or
    /// repeated offset among them, which must fail it whole (every chunk stays, bytes intact).
    fn deallocate_batch(&mut self, m: usize) {
        let live: Vec<u64> = self.memories[m].chunks.keys().copied().collect();
        let mut batch: Vec<u64> = live
            .iter()
            .copied()
            .filter(|_| self.rng.chance(50))
            .collect();
        let spoiled = !batch.is_empty() && self.rng.chance(25);
        if spoiled {
            let bad = match self.rng.below(3) {
                0 => batch[0],
                1 => match self.memories[m].freed.last() {
                    Some(&freed) if !self.memories[m].chunks.contains_key(&pack(freed)) => {
                        pack(freed)
                    }
                    _ => batch[0],
                },
                _ => pack(PointerOffset {
                    segment: 255,
                    offset: self.rng.below(1 << 20),
                }),
            };
            let at = self.rng.below(batch.len() as u64 + 1) as usize;
            batch.insert(at, bad);
        }
        let offsets: Vec<PointerOffset> = batch.iter().map(|&p| unpack(p)).collect();
        let result = self.memories[m].raw.deallocate_many(&offsets);
        if spoiled {
            self.must_fail(
                "deallocate-many with a bad offset",
                &["invalid-offset"],
                result,
            );
            if let Some(&packed) = live.first() {
                let size = self.memories[m].chunks[&packed].size;
                let read = self.memories[m].raw.read(unpack(packed), 0, size);
                let bytes = self.must("read after a refused deallocate-many", read);
                if bytes != self.memories[m].chunks[&packed].data {
                    self.fail("a refused deallocate-many changed a chunk");
                }
            }
            return;
        }
        self.must("deallocate-many", result);
        for packed in batch {
            self.memories[m].chunks.remove(&packed);
            self.memories[m].freed.push(unpack(packed));
        }
    }

    pub(super) fn grow(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let old = unpack(packed);
        let old_size = self.memories[m].chunks[&packed].size;
        let placement = self
            .rng
            .pick(&[ContentPlacement::Front, ContentPlacement::Back]);
        if old_size > 0 && self.rng.chance(20) {
            let smaller = Layout {
                size: old_size - 1,
                align: 1,
            };
            let result = self.memories[m].raw.grow(old, smaller, placement);
            return self.must_fail("grow smaller", &["invalid-layout"], result);
        }
        let new_size = (old_size + self.rng.below(4096)).min(MAX_CHUNK.max(old_size));
        let new = Layout {
            size: new_size,
            align: 1 << self.rng.below(4),
        };
        let result = self.memories[m].raw.grow(old, new, placement);
        let grown = match self.note(result) {
            Ok(grown) => grown,
            Err(Error::OutOfMemory)
                if self.memories[m].raw.allocation_strategy() == AllocationStrategy::Static =>
            {
                return;
            }
            Err(e) => self.fail(&format!("grow {old:?} to {new:?}: {e:?}")),
        };
        let chunk = self.memories[m]
            .chunks
            .remove(&packed)
            .expect("in the model");
        let at = match placement {
            ContentPlacement::Front => 0,
            ContentPlacement::Back => (new_size - old_size) as usize,
        };
        let read = self.memories[m].raw.read(grown, 0, new_size);
        let bytes = self.must("read a grown chunk", read);
        if bytes[at..at + chunk.data.len()] != chunk.data[..] {
            self.fail(&format!("grow {placement:?} did not keep the content"));
        }
        if pack(grown) != packed {
            self.memories[m].freed.push(old);
            let stale = self.memories[m].raw.read(old, 0, 1.min(old_size));
            if !self.memories[m].chunks.contains_key(&packed) {
                self.must_fail("read the old offset after grow", &["invalid-offset"], stale);
            }
        }
        self.memories[m].chunks.insert(
            pack(grown),
            ChunkModel {
                size: new_size,
                data: bytes,
            },
        );
    }

    pub(super) fn write_chunk(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let size = self.memories[m].chunks[&packed].size;
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let data = self.rng.bytes(len as usize);
        let result = self.memories[m].raw.write(unpack(packed), at, &data);
        self.must("write inside a chunk", result);
        self.memories[m]
            .chunks
            .get_mut(&packed)
            .expect("in the model")
            .data[at as usize..(at + len) as usize]
            .copy_from_slice(&data);
        // One byte past the end.
        let past = self.memories[m].raw.write(unpack(packed), size, &[1]);
        self.must_fail("write past a chunk", &["invalid-offset"], past);
    }

    pub(super) fn read_chunk(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let size = self.memories[m].chunks[&packed].size;
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let result = self.memories[m].raw.read(unpack(packed), at, len);
        let bytes = self.must("read inside a chunk", result);
        let model = &self.memories[m].chunks[&packed].data[at as usize..(at + len) as usize];
        if bytes != model {
            self.fail(&format!("read {len} bytes at {at}: not what was written"));
        }
        let past = self.memories[m].raw.read(unpack(packed), at, size - at + 1);
        self.must_fail("read past a chunk", &["invalid-offset"], past);
    }
}
