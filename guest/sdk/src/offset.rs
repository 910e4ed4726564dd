//! Chunk addresses that mean the same in every guest and native process.

use std::fmt;

use crate::bindings::resmem::memory::types::PointerOffset;

/// A chunk address: the segment id in the low 8 bits of a `u64`, the byte offset into that
/// segment's payload in the upper 56 bits (`offset << 8 | segment`), exactly like the native
/// `resmem::PointerOffset`. [`Offset::to_u64`] is what a guest prints or sends; a native peer
/// reads it with `PointerOffset::from_u64` unchanged, and the other way round.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(u64);

impl Offset {
    /// The largest offset that can be packed (56 bits).
    pub const MAX_OFFSET: u64 = (1 << 56) - 1;

    const SEGMENT_BITS: u32 = u8::BITS;

    /// Packs `segment` and `offset`; an offset above [`Self::MAX_OFFSET`] is truncated to
    /// 56 bits (as natively). [`Self::try_new`] rejects it instead.
    pub const fn new(segment: u8, offset: u64) -> Self {
        Self(((offset & Self::MAX_OFFSET) << Self::SEGMENT_BITS) | segment as u64)
    }

    /// Packs `segment` and `offset`, or `None` when the offset does not fit in 56 bits.
    pub const fn try_new(segment: u8, offset: u64) -> Option<Self> {
        if offset > Self::MAX_OFFSET {
            None
        } else {
            Some(Self::new(segment, offset))
        }
    }

    /// The data segment the chunk lives in.
    pub const fn segment(self) -> u8 {
        self.0 as u8
    }

    /// The byte offset of the chunk in its segment's payload.
    pub const fn offset(self) -> u64 {
        self.0 >> Self::SEGMENT_BITS
    }

    /// The packed value, to send to another guest or process.
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Unpacks a value produced by [`Self::to_u64`] (or natively by `PointerOffset::as_u64`);
    /// every `u64` is a valid packing.
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offset")
            .field("segment", &self.segment())
            .field("offset", &self.offset())
            .finish()
    }
}

/// `segment:offset`, like the native `PointerOffset`.
impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment(), self.offset())
    }
}

impl From<Offset> for u64 {
    fn from(value: Offset) -> Self {
        value.to_u64()
    }
}

impl From<u64> for Offset {
    fn from(value: u64) -> Self {
        Self::from_u64(value)
    }
}

impl From<Offset> for PointerOffset {
    fn from(value: Offset) -> Self {
        Self {
            segment: value.segment(),
            offset: value.offset(),
        }
    }
}

/// The host only hands out offsets below 2^56; a larger one would be truncated.
impl From<PointerOffset> for Offset {
    fn from(value: PointerOffset) -> Self {
        Self::new(value.segment, value.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_matches_native() {
        // The same numbers as the native `packing_matches_iceoryx2_layout` test.
        let p = Offset::new(3, 0x1234);
        assert_eq!(p.to_u64(), (0x1234 << 8) | 3);
        assert_eq!(p.to_string(), "3:4660");
        assert_eq!((p.segment(), p.offset()), (3, 0x1234));
    }

    #[test]
    fn try_new_rejects_offsets_beyond_56_bits() {
        assert_eq!(Offset::try_new(255, 1 << 56), None);
        let max = Offset::try_new(255, Offset::MAX_OFFSET).expect("fits");
        assert_eq!(max.to_u64(), u64::MAX);
        assert_eq!(
            Offset::new(1, 1 << 56).offset(),
            0,
            "truncated like natively"
        );
    }

    #[test]
    fn every_u64_roundtrips() {
        let mut raw = 0x0123_4567_89ab_cdefu64;
        for _ in 0..10_000 {
            let p = Offset::from_u64(raw);
            assert_eq!(Offset::new(p.segment(), p.offset()).to_u64(), raw);
            assert_eq!(Offset::from(PointerOffset::from(p)), p);
            assert_eq!(u64::from(Offset::from(raw)), raw);
            // xorshift: cheap, deterministic coverage of all bit positions.
            raw ^= raw << 13;
            raw ^= raw >> 7;
            raw ^= raw << 17;
        }
        for raw in [0, 1, 255, 256, u64::MAX, u64::MAX - 255] {
            assert_eq!(Offset::from_u64(raw).to_u64(), raw);
        }
    }

    #[test]
    fn wit_record_carries_segment_and_offset() {
        let wit = PointerOffset::from(Offset::new(7, 4096));
        assert_eq!((wit.segment, wit.offset), (7, 4096));
    }
}
