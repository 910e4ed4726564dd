//! The owned chunk: the RAII face of [`Memory::allocate`] and [`Memory::deallocate`].

use std::alloc::Layout;
use std::fmt;

use crate::{AllocError, PointerOffset, ShmPointer};

use super::Memory;

/// A chunk of a [`Memory`], returned to it when dropped unless handed away with
/// [`Chunk::into_raw`]. Borrows the memory, so it cannot outlive it.
///
/// The bytes are shared memory: peers that map the segment read-write may change them at
/// any time, so treat what they contain as untrusted input.
#[must_use = "dropping a chunk frees it at once"]
pub struct Chunk<'m> {
    memory: &'m Memory,
    pointer: ShmPointer,
    layout: Layout,
}

impl Memory {
    /// Allocates a chunk for `layout` as [`Memory::allocate`] does, freed when the returned
    /// [`Chunk`] is dropped.
    pub fn allocate_chunk(&self, layout: Layout) -> Result<Chunk<'_>, AllocError> {
        let pointer = self.allocate(layout)?;
        Ok(Chunk {
            memory: self,
            pointer,
            layout,
        })
    }
}

impl<'m> Chunk<'m> {
    /// Where the chunk is, in every process: send this to peers.
    pub fn offset(&self) -> PointerOffset {
        self.pointer.offset
    }

    /// The layout it was allocated with.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Its size in bytes (the layout's).
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether it was allocated for zero bytes.
    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    /// The memory it belongs to.
    pub fn memory(&self) -> &'m Memory {
        self.memory
    }

    /// The owner's address of the first byte, aligned to the layout.
    pub fn as_ptr(&self) -> *mut u8 {
        self.pointer.data_ptr
    }

    /// The chunk's bytes (the layout's size, not the bucket's).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the chunk is allocated (freed only by our drop) and at least layout.size()
        // bytes long, in a segment its reference keeps mapped for as long as `self` borrows
        // the memory; the pointer is non-null and aligned for u8.
        unsafe { std::slice::from_raw_parts(self.pointer.data_ptr, self.layout.size()) }
    }

    /// The chunk's bytes, writable (the layout's size, not the bucket's).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the chunk is this value's alone in the owner (no other
        // chunk overlaps it) and `&mut self` excludes every other slice of it.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.data_ptr, self.layout.size()) }
    }

    /// Hands the chunk away without freeing it: it stays allocated until
    /// [`Memory::deallocate`] (or [`Memory::try_deallocate`]) or until the memory is dropped.
    #[must_use = "the chunk stays allocated; losing its pointer leaks it until the memory goes"]
    pub fn into_raw(self) -> ShmPointer {
        let pointer = self.pointer;
        std::mem::forget(self);
        pointer
    }
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        // SAFETY: the chunk came from `allocate` of this memory with this layout, and only
        // this drop returns it (`into_raw` skips it); nothing borrows its bytes any more.
        unsafe { self.memory.deallocate(self.pointer.offset, self.layout) };
    }
}

impl fmt::Debug for Chunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.pointer.offset)
            .field("layout", &self.layout)
            .finish()
    }
}
