//! Chunks taken and returned in batches: one host call for many chunks.
//!
//! A host call on a `memory` costs a few hundred nanoseconds before the host does any work
//! (the component model's resource borrow and result lowering); [`Memory::allocate_many`]
//! and [`Chunks`]' drop pay it once per batch instead of once per chunk.

use std::fmt;

use crate::{Error, Layout, Memory, Offset, Result, WindowMut};

impl Memory {
    /// Allocates `count` chunks of `layout` in one host call: all of them, or on error none.
    /// They are returned to the memory together, in one call, when the batch is dropped.
    pub fn allocate_many(&self, layout: Layout, count: u32) -> Result<Chunks<'_>> {
        let offsets = self
            .as_raw()
            .allocate_many(layout, count)?
            .into_iter()
            .map(Offset::from)
            .collect();
        Ok(Chunks {
            memory: self,
            offsets,
            layout,
        })
    }

    /// Returns chunks handed off with [`Chunks::into_offsets`] or [`Chunk::into_offset`] in one
    /// host call: all of them, or on error (an offset that is no chunk of this memory, or one
    /// listed twice) none.
    ///
    /// [`Chunk::into_offset`]: crate::Chunk::into_offset
    pub fn deallocate_many(&self, offsets: &[Offset]) -> Result<()> {
        let raw: Vec<_> = offsets.iter().map(|&o| o.into()).collect();
        Ok(self.as_raw().deallocate_many(&raw)?)
    }
}

/// Chunks of one layout from [`Memory::allocate_many`], returned together (one host call)
/// when dropped, unless handed off with [`Chunks::into_offsets`].
pub struct Chunks<'m> {
    memory: &'m Memory,
    offsets: Vec<Offset>,
    layout: Layout,
}

impl<'m> Chunks<'m> {
    /// Their offsets, in the order the host handed them out.
    pub fn offsets(&self) -> &[Offset] {
        &self.offsets
    }

    /// The layout of every chunk.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// How many chunks the batch holds.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The memory they belong to.
    pub fn memory(&self) -> &'m Memory {
        self.memory
    }

    /// Chunk `index`'s offset; `InvalidOffset` past the end of the batch.
    fn offset(&self, index: usize) -> Result<Offset> {
        self.offsets.get(index).copied().ok_or_else(|| {
            Error::InvalidOffset(format!(
                "no chunk {index} in a batch of {}",
                self.offsets.len()
            ))
        })
    }

    /// Copies `data` into chunk `index` starting at byte `at`.
    pub fn write_at(&mut self, index: usize, at: u64, data: &[u8]) -> Result<()> {
        let offset = self.offset(index)?;
        Ok(self.memory.as_raw().write(offset.into(), at, data)?)
    }

    /// Copies `len` bytes out of chunk `index` starting at byte `at`.
    pub fn read_at(&self, index: usize, at: u64, len: u64) -> Result<Vec<u8>> {
        let offset = self.offset(index)?;
        Ok(self.memory.as_raw().read(offset.into(), at, len)?)
    }

    /// Maps chunk `index` into the zero-copy window (as [`Chunk::map`](crate::Chunk::map)).
    pub fn map(&mut self, index: usize) -> Result<WindowMut<'_>> {
        let offset = self.offset(index)?;
        let addr = self.memory.as_raw().map(offset.into())?;
        // SAFETY: the host mapped the chunk's segment read-write at `addr`; the batch is
        // borrowed mutably for the window's lifetime, so the chunk stays allocated and its
        // segment alive, and no other window of this batch exists meanwhile.
        unsafe { WindowMut::new(addr, self.layout.size) }
    }

    /// Hands the chunks off without returning them: they stay allocated until
    /// [`Memory::deallocate_many`] (or [`Memory::deallocate`]) or until the memory is dropped.
    pub fn into_offsets(mut self) -> Vec<Offset> {
        std::mem::take(&mut self.offsets)
    }
}

impl Drop for Chunks<'_> {
    fn drop(&mut self) {
        if self.offsets.is_empty() {
            return;
        }
        // As for `Chunk`: ours came from the host, which only refuses offsets it does not
        // know; a refusal leaves the chunks to be freed with the memory.
        let _ = self.memory.deallocate_many(&self.offsets);
    }
}

impl fmt::Debug for Chunks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("offsets", &self.offsets)
            .field("layout", &self.layout)
            .finish()
    }
}
