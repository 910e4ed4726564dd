//! Where a live segment is mapped in this process.

/// The local mapping of one live data segment: for embedders that map the same pages a second
/// time somewhere else (the wasm host's zero-copy window).
///
/// The addresses are only valid while the segment stays alive: while the owner holds a chunk
/// in it (owners) or while an offset into it is registered (views). `sequence` tells two
/// segments that reused one id apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRegion {
    /// Start of the mapping (page aligned); payload offset 0 is here.
    pub address: usize,
    /// Length of the mapping: the payload, then the segment trailer, rounded to pages.
    pub len: usize,
    /// Bytes usable by chunks, from `address`.
    pub payload_size: usize,
    /// The segment's creation number within its memory.
    pub sequence: u64,
    /// Whether this process mapped it read-write.
    pub writable: bool,
}
