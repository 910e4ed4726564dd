//! Where a live segment is mapped in this process.

/// The local mapping of one live data segment: for embedders that map the same pages a second
/// time somewhere else (the wasm host's zero-copy window).
///
/// The addresses are only valid while the segment stays alive: while the owner holds a chunk
/// in it (owners) or while an offset into it is registered (views). `sequence` tells two
/// segments that reused one id apart.
///
/// Only this crate makes one, from a mapping it holds; the fields are private so that nobody
/// can hand an embedder's mapping code an arbitrary address range dressed up as a segment.
///
/// ```compile_fail
/// // Not constructible outside the crate:
/// let region = resmem::SegmentRegion { address: 0x1000, len: 4096, payload_size: 4096, sequence: 1, writable: true };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRegion {
    /// Start of the mapping (page aligned); payload offset 0 is here.
    pub(crate) address: usize,
    /// Length of the mapping: the payload, then the segment trailer, rounded to pages.
    pub(crate) len: usize,
    /// Bytes usable by chunks, from `address`.
    pub(crate) payload_size: usize,
    /// The segment's creation number within its memory.
    pub(crate) sequence: u64,
    /// Whether this process mapped it read-write.
    pub(crate) writable: bool,
}

impl SegmentRegion {
    /// Start of the mapping (page aligned); payload offset 0 is here.
    pub fn address(&self) -> usize {
        self.address
    }

    /// Length of the mapping: the payload, then the segment trailer, rounded to pages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a live segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes usable by chunks, from `address`.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// The segment's creation number within its memory.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Whether this process mapped it read-write.
    pub fn writable(&self) -> bool {
        self.writable
    }
}
