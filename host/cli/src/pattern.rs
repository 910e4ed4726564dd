//! The checkable byte pattern the demo, the example guests and `resmem peer --pattern` share
//! (the guest SDK has the same function): position and seed dependent, cheap to compute.

/// Byte `index` of a chunk filled with `seed`.
pub fn byte(seed: u64, index: usize) -> u8 {
    ((index as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(seed.wrapping_mul(0x51))
        >> 3) as u8
}

/// The first index whose byte differs from the pattern, if any.
pub fn first_mismatch(seed: u64, bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b != byte(seed, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_depends_on_seed_and_position() {
        let a: Vec<u8> = (0..64).map(|i| byte(1, i)).collect();
        let b: Vec<u8> = (0..64).map(|i| byte(2, i)).collect();
        assert_ne!(a, b);
        assert_eq!(first_mismatch(1, &a), None);
        assert_eq!(first_mismatch(2, &a), Some(0));
        let mut c = a.clone();
        c[40] ^= 1;
        assert_eq!(first_mismatch(1, &c), Some(40));
    }
}
