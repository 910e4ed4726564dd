//! The deterministic byte pattern the example guests write and check, so native tests can
//! produce or verify the same bytes. Self-contained (no imports) so a native crate may also
//! include this file with `#[path]`.

/// Byte `index` of the pattern with `seed`:
/// `((index * 0x9E37_79B9 + seed * 0x51) >> 3) as u8` in wrapping `u64` arithmetic.
pub fn byte(seed: u64, index: u64) -> u8 {
    (index
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(seed.wrapping_mul(0x51))
        >> 3) as u8
}

/// Fills `buf` with the pattern bytes `start..start + buf.len()`.
pub fn fill(seed: u64, start: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte(seed, start.wrapping_add(i as u64));
    }
}

/// The pattern index of the first byte of `buf` (holding bytes `start..`) that differs from
/// the pattern, or `None` when all match.
pub fn first_mismatch(seed: u64, start: u64, buf: &[u8]) -> Option<u64> {
    buf.iter()
        .enumerate()
        .map(|(i, &b)| (start.wrapping_add(i as u64), b))
        .find(|&(index, b)| b != byte(seed, index))
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formula exactly as specified, for integer types a native test might use.
    fn reference(seed: u64, index: usize) -> u8 {
        ((index as u64)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(seed * 0x51)
            >> 3) as u8
    }

    #[test]
    fn matches_the_reference_formula() {
        for seed in [0, 1, 2, 7, 255, 1 << 20, (1 << 50) + 3] {
            for index in (0..5000).chain([1 << 20, (1 << 32) + 17, usize::MAX]) {
                assert_eq!(
                    byte(seed, index as u64),
                    reference(seed, index),
                    "{seed} {index}"
                );
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(byte(0, 0), 0);
        assert_eq!(byte(1, 0), (0x51 >> 3) as u8);
        assert_eq!(byte(0, 1), (0x9E37_79B9u64 >> 3) as u8);
    }

    #[test]
    fn fill_then_check() {
        let mut buf = vec![0; 1000];
        fill(5, 123, &mut buf);
        assert_eq!(first_mismatch(5, 123, &buf), None);
        assert_eq!(buf[10], byte(5, 133));
        buf[10] ^= 1;
        assert_eq!(first_mismatch(5, 123, &buf), Some(133));
        assert!(first_mismatch(6, 123, &buf).is_some());
    }
}
