//! Process-independent chunk addresses: a segment id and an offset packed into one `u64`.

use std::fmt;

/// Identifies one data segment of a memory; `0..=255`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(u8);

impl SegmentId {
    /// The largest segment id.
    pub const MAX: SegmentId = SegmentId(u8::MAX);

    /// The segment with id `value`.
    pub const fn new(value: u8) -> Self {
        Self(value)
    }

    /// The id as a number.
    pub const fn value(self) -> u8 {
        self.0
    }

    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({})", self.0)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A chunk address that means the same thing in every process: the segment id in the low
/// 8 bits, the byte offset into that segment's payload in the upper 56 bits. This is the
/// same packing as iceoryx2's `PointerOffset` and as the WIT `pointer-offset` record.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PointerOffset(u64);

impl PointerOffset {
    /// The largest offset that can be packed (56 bits).
    pub const MAX_OFFSET: u64 = (1 << 56) - 1;

    const SEGMENT_BITS: u32 = u8::BITS;

    /// Packs `segment` and `offset`. Offsets above [`Self::MAX_OFFSET`] cannot be represented
    /// and are truncated to 56 bits; use [`Self::try_new`] to reject them instead.
    pub const fn new(segment: SegmentId, offset: u64) -> Self {
        Self(((offset & Self::MAX_OFFSET) << Self::SEGMENT_BITS) | segment.0 as u64)
    }

    /// Packs `segment` and `offset`, or `None` when the offset does not fit in 56 bits.
    pub const fn try_new(segment: SegmentId, offset: u64) -> Option<Self> {
        if offset > Self::MAX_OFFSET {
            None
        } else {
            Some(Self::new(segment, offset))
        }
    }

    /// The segment the chunk lies in.
    pub const fn segment_id(self) -> SegmentId {
        SegmentId(self.0 as u8)
    }

    /// The chunk's byte offset from the start of its segment's payload.
    pub const fn offset(self) -> u64 {
        self.0 >> Self::SEGMENT_BITS
    }

    /// The packed value, to send to another process.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Unpacks a value produced by [`Self::as_u64`]; every `u64` is a valid packing.
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }
}

impl fmt::Debug for PointerOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PointerOffset")
            .field("segment", &self.segment_id().0)
            .field("offset", &self.offset())
            .finish()
    }
}

impl fmt::Display for PointerOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment_id().0, self.offset())
    }
}

impl From<PointerOffset> for u64 {
    fn from(value: PointerOffset) -> Self {
        value.as_u64()
    }
}

impl From<u64> for PointerOffset {
    fn from(value: u64) -> Self {
        Self::from_u64(value)
    }
}

/// A freshly allocated chunk: its shareable offset and its address in the owner's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmPointer {
    /// The chunk's address in every process; send this to peers.
    pub offset: PointerOffset,
    /// The chunk's first byte in this process; valid only here and only while the chunk is
    /// allocated.
    pub data_ptr: *mut u8,
}

// SAFETY: a ShmPointer is an address plus a number; the memory it points to is shared memory
// whose lifetime is governed by the Memory that produced it, not by this value.
unsafe impl Send for ShmPointer {}
// SAFETY: as above, the value itself has no interior state.
unsafe impl Sync for ShmPointer {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packing_matches_iceoryx2_layout() {
        let p = PointerOffset::new(SegmentId::new(3), 0x1234);
        assert_eq!(p.as_u64(), (0x1234 << 8) | 3);
        assert_eq!(p.to_string(), "3:4660");
    }

    #[test]
    fn try_new_rejects_offsets_beyond_56_bits() {
        assert_eq!(PointerOffset::try_new(SegmentId::MAX, 1 << 56), None);
        let max = PointerOffset::try_new(SegmentId::MAX, PointerOffset::MAX_OFFSET).unwrap();
        assert_eq!(max.as_u64(), u64::MAX);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 16 } else { 256 },
            ..ProptestConfig::default()
        })]

        #[test]
        fn pack_unpack_roundtrip(seg in any::<u8>(), off in 0..=PointerOffset::MAX_OFFSET) {
            let p = PointerOffset::new(SegmentId::new(seg), off);
            prop_assert_eq!(p.segment_id().value(), seg);
            prop_assert_eq!(p.offset(), off);
            prop_assert_eq!(PointerOffset::from_u64(p.as_u64()), p);
        }

        #[test]
        fn every_u64_is_a_packing(raw in any::<u64>()) {
            let p = PointerOffset::from_u64(raw);
            prop_assert_eq!(PointerOffset::new(p.segment_id(), p.offset()).as_u64(), raw);
        }
    }
}
