//! The checkable content of a channel sample (a *frame*), shared by the channel guests, the
//! demo and the native tests. Self-contained (no imports) so a native crate may include this
//! file with `#[path]`.
//!
//! A frame of `len >= HEADER` bytes holds its sequence number (word 0), a tag binding the
//! sequence number, the length and the publisher's seed (word 1), the sender's wall-clock
//! stamp in nanoseconds since the Unix epoch (word 2, not covered by the tag: a filter
//! re-stamps), and then the pattern [`byte`]`(seed, seq, i) ^ key` for every later byte `i`.
//! A receiver that knows the seed and key checks every byte and tells which frame it got.

/// Bytes of a frame's header.
pub const HEADER: usize = 24;

/// The payload byte at index `i` (counted from the frame's start) of frame `seq`.
pub fn byte(seed: u64, seq: u64, i: u64) -> u8 {
    let s = seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (i.wrapping_mul(0x9E37_79B9)
        .wrapping_add(s.wrapping_mul(0x51))
        >> 3) as u8
        ^ (s >> 56) as u8
}

fn tag(seed: u64, seq: u64, len: usize) -> u64 {
    let mut z = seed ^ 0x5A3C_96E1_0F0F_7B2D;
    for word in [seq, len as u64] {
        z = (z ^ word).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 31;
    }
    z
}

/// Writes frame `seq` into `buf` (its whole length), payload XORed with `key`. Returns
/// `false` (writing nothing) when `buf` is shorter than [`HEADER`].
pub fn fill(buf: &mut [u8], seed: u64, seq: u64, stamp_ns: u64, key: u8) -> bool {
    if buf.len() < HEADER {
        return false;
    }
    let len = buf.len();
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&tag(seed, seq, len).to_le_bytes());
    buf[16..24].copy_from_slice(&stamp_ns.to_le_bytes());
    for (i, b) in buf.iter_mut().enumerate().skip(HEADER) {
        *b = byte(seed, seq, i as u64) ^ key;
    }
    true
}

/// Replaces the stamp of a frame (a filter stamps its own send time).
pub fn restamp(buf: &mut [u8], stamp_ns: u64) {
    if buf.len() >= HEADER {
        buf[16..24].copy_from_slice(&stamp_ns.to_le_bytes());
    }
}

/// XORs every payload byte with `key` (the demo filter's transform).
pub fn xor_payload(buf: &mut [u8], key: u8) {
    for b in buf.iter_mut().skip(HEADER) {
        *b ^= key;
    }
}

/// A checked frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Its sequence number.
    pub seq: u64,
    /// When its sender stamped it (ns since the Unix epoch).
    pub stamp_ns: u64,
}

/// Why bytes are not a frame of this seed and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the header.
    TooShort(usize),
    /// The tag does not match the seed, the claimed sequence number and the length.
    Header {
        /// The sequence number the header claims.
        seq: u64,
    },
    /// Byte `index` of frame `seq` is `found`, not `expected`.
    Payload {
        /// The frame's sequence number.
        seq: u64,
        /// Which byte, from the frame's start.
        index: u64,
        /// What it holds.
        found: u8,
        /// What it should hold.
        expected: u8,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort(len) => write!(f, "{len} bytes: no frame header"),
            Self::Header { seq } => write!(f, "frame {seq}: header does not match seed and length"),
            Self::Payload {
                seq,
                index,
                found,
                expected,
            } => write!(
                f,
                "frame {seq}: byte {index} is {found:#04x}, expected {expected:#04x}"
            ),
        }
    }
}

/// Checks every byte of a frame written by [`fill`] with `seed` and `key`.
pub fn check(buf: &[u8], seed: u64, key: u8) -> Result<Frame, FrameError> {
    if buf.len() < HEADER {
        return Err(FrameError::TooShort(buf.len()));
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let seq = word(0);
    if word(8) != tag(seed, seq, buf.len()) {
        return Err(FrameError::Header { seq });
    }
    for (i, &found) in buf.iter().enumerate().skip(HEADER) {
        let expected = byte(seed, seq, i as u64) ^ key;
        if found != expected {
            return Err(FrameError::Payload {
                seq,
                index: i as u64,
                found,
                expected,
            });
        }
    }
    Ok(Frame {
        seq,
        stamp_ns: word(16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_checks_and_every_kind_of_damage_fails() {
        let mut buf = vec![0u8; 1000];
        assert!(fill(&mut buf, 7, 42, 123, 0));
        assert_eq!(
            check(&buf, 7, 0),
            Ok(Frame {
                seq: 42,
                stamp_ns: 123
            })
        );
        assert_eq!(check(&buf, 8, 0), Err(FrameError::Header { seq: 42 }));
        assert_eq!(
            check(&buf[..999], 7, 0),
            Err(FrameError::Header { seq: 42 })
        );
        assert_eq!(check(&buf[..3], 7, 0), Err(FrameError::TooShort(3)));
        assert!(matches!(
            check(&buf, 7, 0x5A),
            Err(FrameError::Payload { index: 24, .. })
        ));
        restamp(&mut buf, 999);
        assert_eq!(check(&buf, 7, 0).map(|f| f.stamp_ns), Ok(999));
        xor_payload(&mut buf, 0x5A);
        assert_eq!(check(&buf, 7, 0x5A).map(|f| f.seq), Ok(42));
        buf[500] ^= 1;
        assert!(matches!(
            check(&buf, 7, 0x5A),
            Err(FrameError::Payload {
                seq: 42,
                index: 500,
                ..
            })
        ));
        assert!(!fill(&mut [0u8; 23], 7, 1, 0, 0));
    }

    #[test]
    fn frames_of_one_publisher_differ_in_their_payload() {
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        fill(&mut a, 7, 1, 0, 0);
        fill(&mut b, 7, 2, 0, 0);
        let same = a[HEADER..]
            .iter()
            .zip(&b[HEADER..])
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < 100, "{same} equal bytes");
    }
}
