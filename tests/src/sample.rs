//! The checkable content of a channel sample, shared by the channel tests and
//! `resmem-channel-peer`.
//!
//! A sample of `len >= SAMPLE_HEADER` bytes carries its id (word 0), a tag binding the id, the
//! length and the seed (word 1), and then the pattern of [`sample_seed`]`(seed, id)` (see
//! [`crate::fill_pattern`]). A receiver that knows only the publisher's seed can tell which
//! sample it got and check every byte of it: a wrong seed, a truncated or extended sample, a
//! sample read at the wrong offset or through a stale mapping all fail.
//!
//! Multi-threaded publishers name their samples `thread << 32 | n` ([`sample_id`]).

use std::fmt;

use crate::{Mismatch, check_pattern, fill_pattern, mix};

/// Bytes of a sample's header (id, tag); the pattern follows.
pub const SAMPLE_HEADER: usize = 16;

/// The pattern seed of sample `id` of a publisher seeded with `seed`.
pub const fn sample_seed(seed: u64, id: u64) -> u64 {
    mix(seed ^ 0x5A3C_96E1_0F0F_7B2D, id)
}

/// The id of the `n`-th sample of publisher thread `thread`.
pub const fn sample_id(thread: u32, n: u32) -> u64 {
    ((thread as u64) << 32) | n as u64
}

/// The publisher thread and sequence number of sample `id`.
pub const fn split_id(id: u64) -> (u32, u32) {
    ((id >> 32) as u32, id as u32)
}

fn tag(seed: u64, id: u64, len: usize) -> u64 {
    mix(sample_seed(seed, id), len as u64 ^ 0xC0FF_EE00_D15E_A5E5)
}

/// Fills a whole sample. Panics below [`SAMPLE_HEADER`] bytes (the tests never send less).
pub fn fill_sample(buf: &mut [u8], seed: u64, id: u64) {
    assert!(
        buf.len() >= SAMPLE_HEADER,
        "a sample needs at least {SAMPLE_HEADER} bytes, got {}",
        buf.len()
    );
    let len = buf.len();
    buf[..8].copy_from_slice(&id.to_le_bytes());
    buf[8..16].copy_from_slice(&tag(seed, id, len).to_le_bytes());
    fill_pattern(&mut buf[SAMPLE_HEADER..], sample_seed(seed, id));
}

/// Why a sample is not what [`fill_sample`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleError {
    /// Shorter than the header.
    TooShort(usize),
    /// The header does not match this seed and length (wrong seed, wrong length, or garbage).
    Header {
        /// The id the header claims.
        id: u64,
    },
    /// The header is right but a payload byte is not.
    Payload {
        /// The sample's id.
        id: u64,
        /// Where, relative to the end of the header.
        mismatch: Mismatch,
    },
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(len) => write!(f, "sample of {len} bytes has no header"),
            Self::Header { id } => write!(f, "header of sample {id} does not match seed and len"),
            Self::Payload { id, mismatch } => write!(
                f,
                "sample {id}: payload {mismatch} (offset {} into the sample)",
                mismatch.index + SAMPLE_HEADER as u64
            ),
        }
    }
}

/// Checks every byte of a sample written by [`fill_sample`] with `seed`; returns its id.
pub fn check_sample(buf: &[u8], seed: u64) -> Result<u64, SampleError> {
    if buf.len() < SAMPLE_HEADER {
        return Err(SampleError::TooShort(buf.len()));
    }
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let id = word(0);
    if word(8) != tag(seed, id, buf.len()) {
        return Err(SampleError::Header { id });
    }
    check_pattern(&buf[SAMPLE_HEADER..], sample_seed(seed, id))
        .map(|()| id)
        .map_err(|mismatch| SampleError::Payload { id, mismatch })
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME: the same clock in every process, which a
/// latency sample carries from publisher to subscriber).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_checks_and_fails_on_wrong_seed_length_or_byte() {
        let mut buf = vec![0u8; 1000];
        fill_sample(&mut buf, 7, sample_id(3, 42));
        assert_eq!(check_sample(&buf, 7), Ok(sample_id(3, 42)));
        assert_eq!(split_id(sample_id(3, 42)), (3, 42));
        assert!(matches!(
            check_sample(&buf, 8),
            Err(SampleError::Header { .. })
        ));
        assert!(matches!(
            check_sample(&buf[..999], 7),
            Err(SampleError::Header { .. })
        ));
        assert_eq!(check_sample(&buf[..3], 7), Err(SampleError::TooShort(3)));
        buf[999] ^= 1;
        match check_sample(&buf, 7) {
            Err(SampleError::Payload { id, mismatch }) => {
                assert_eq!(id, sample_id(3, 42));
                assert_eq!(mismatch.index, 999 - SAMPLE_HEADER as u64);
            }
            other => panic!("{other:?}"),
        }
        // Two samples of one publisher differ in their payload, not only their header.
        let mut other = vec![0u8; 1000];
        fill_sample(&mut other, 7, sample_id(3, 43));
        let same = buf[16..]
            .iter()
            .zip(&other[16..])
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 20, "{same} equal bytes");
    }
}
