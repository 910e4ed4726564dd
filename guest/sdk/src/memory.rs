//! The owner side: a named memory and the chunks allocated from it.

use std::fmt;

use crate::bindings::resmem::memory::resizable_memory as wit;
use crate::{
    AllocationStrategy, ContentPlacement, Layout, MemoryConfig, Offset, Result, WindowMut,
};

/// The owner of a named resizable memory. Dropping it removes the memory and every chunk in
/// it (peers' views keep what they mapped, but can map nothing new).
pub struct Memory {
    raw: wit::Memory,
}

impl Memory {
    /// Creates the memory `name`: fails with
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name is taken,
    /// [`Error::InvalidName`](crate::Error::InvalidName) if it is malformed.
    pub fn create(name: &str, config: MemoryConfig) -> Result<Self> {
        let raw = wit::Memory::create(name, config)?;
        Ok(Self { raw })
    }

    /// The name this memory was created with.
    pub fn name(&self) -> String {
        self.raw.name()
    }

    /// Allocates a chunk, growing into a new segment when the current one cannot serve it and
    /// the strategy allows. The chunk is returned to the memory when dropped.
    pub fn allocate(&self, layout: Layout) -> Result<Chunk<'_>> {
        let offset = self.raw.allocate(layout)?.into();
        Ok(Chunk {
            memory: self,
            offset,
            layout,
        })
    }

    /// Returns a chunk handed off with [`Chunk::into_offset`]. The host checks the offset: a
    /// foreign or already freed one fails with
    /// [`Error::InvalidOffset`](crate::Error::InvalidOffset).
    pub fn deallocate(&self, offset: Offset) -> Result<()> {
        Ok(self.raw.deallocate(offset.into())?)
    }

    /// Segments this memory currently has mapped.
    pub fn number_of_active_segments(&self) -> u32 {
        self.raw.number_of_active_segments()
    }

    pub fn allocation_strategy(&self) -> AllocationStrategy {
        self.raw.allocation_strategy()
    }

    /// The WIT resource, for calls the safe API does not offer (e.g. on raw offsets).
    pub fn as_raw(&self) -> &wit::Memory {
        &self.raw
    }
}

impl fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("name", &self.name())
            .finish()
    }
}

/// A chunk of a [`Memory`]: returned to the memory when dropped, unless handed off with
/// [`Chunk::into_offset`]. Reads and writes copy between guest memory and the chunk and must
/// stay inside it.
pub struct Chunk<'m> {
    memory: &'m Memory,
    offset: Offset,
    layout: Layout,
}

impl<'m> Chunk<'m> {
    /// Where the chunk is; send [`Offset::to_u64`] to peers.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// The layout it was allocated (or last grown) with.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.layout.size
    }

    pub fn is_empty(&self) -> bool {
        self.layout.size == 0
    }

    /// The memory it belongs to.
    pub fn memory(&self) -> &'m Memory {
        self.memory
    }

    /// Copies `data` into the chunk starting at byte `at`.
    pub fn write_at(&mut self, at: u64, data: &[u8]) -> Result<()> {
        Ok(self.memory.raw.write(self.offset.into(), at, data)?)
    }

    /// Copies `len` bytes out of the chunk starting at byte `at`.
    pub fn read_at(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self.memory.raw.read(self.offset.into(), at, len)?)
    }

    /// Maps the chunk into the guest's zero-copy window: its bytes, read and written in place
    /// (see [`crate::window`]). The first map of a segment costs a host call that maps it;
    /// later ones are cheap. The chunk stays borrowed (so allocated) while the window lives.
    pub fn map(&mut self) -> Result<WindowMut<'_>> {
        let addr = self.memory.raw.map(self.offset.into())?;
        // SAFETY: the host mapped the chunk's segment read-write at `addr`; the chunk is
        // borrowed for the window's lifetime, so it stays allocated and its segment alive.
        unsafe { WindowMut::new(addr, self.layout.size) }
    }

    /// Resizes the chunk to `new_layout` (not smaller), in place or into a new chunk with the
    /// old bytes at the front or back; its offset may change. On error nothing changed.
    pub fn grow(&mut self, new_layout: Layout, placement: ContentPlacement) -> Result<()> {
        let offset = self
            .memory
            .raw
            .grow(self.offset.into(), new_layout, placement)?;
        self.offset = offset.into();
        self.layout = new_layout;
        Ok(())
    }

    /// Hands the chunk off without returning it: it stays allocated until
    /// [`Memory::deallocate`] or until the memory is dropped.
    pub fn into_offset(self) -> Offset {
        let offset = self.offset;
        std::mem::forget(self);
        offset
    }
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        // Nothing to report to: the host only refuses offsets it does not know, and ours came
        // from it. A refusal leaves the chunk to be freed with the memory.
        let _ = self.memory.raw.deallocate(self.offset.into());
    }
}

impl fmt::Debug for Chunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.offset)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Whether a memory called `name` exists (in the guest's namespace).
pub fn exists(name: &str) -> Result<bool> {
    Ok(wit::exists(name)?)
}

/// Names of all memories in the guest's namespace.
pub fn list() -> Result<Vec<String>> {
    Ok(wit::list()?)
}

/// Removes what is left of the memory `name` (e.g. after its owner crashed); returns whether
/// anything was removed.
pub fn remove(name: &str) -> Result<bool> {
    Ok(wit::remove(name)?)
}
