//! What the cross-process tests and the peer binary (`resmem-test-peer`) must agree on:
//!
//! - the deterministic byte pattern a chunk is filled with, derived from a seed and the byte's
//!   index inside the chunk ([`pattern_byte`], [`fill_pattern`], [`check_pattern`]);
//! - how a chunk is named on a command line or a protocol line ([`ChunkSpec`]:
//!   `<packed offset>:<len>:<seed>`), and the line the owner mode prints for it
//!   (`offset=<u64> len=<n> seed=<s>`);
//! - the summary line a verification prints ([`VerifySummary`]) and the peer's exit codes
//!   ([`exit`]);
//! - for the channel tests and `resmem-channel-peer`: the content of a sample ([`sample`]) and
//!   the raw layout of a service's control object that hostile peers scribble ([`control`]).
//!
//! The pattern is a hash of `(seed, index / 8)`: two seeds, or the same seed at a shifted
//! position, give different bytes, so reading through a stale mapping, the wrong segment or the
//! wrong offset is caught, not just reading zeroes.

use std::fmt;
use std::str::FromStr;

/// The README's Rust code blocks, compiled and run as this crate's doctests by
/// `cargo test --workspace` (guest-SDK blocks are `ignore`: they run only inside a wasm
/// component; the guests in `guest/` hold the same code).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

use resmem::PointerOffset;

pub mod control;
pub mod sample;

/// Exit codes of the peer binary.
pub mod exit {
    /// Everything asked for succeeded.
    pub const OK: i32 = 0;
    /// Anything not covered below (I/O, bad protocol line, ...).
    pub const FAILURE: i32 = 1;
    /// The command line could not be parsed.
    pub const USAGE: i32 = 2;
    /// A chunk's bytes differ from the expected pattern.
    pub const MISMATCH: i32 = 3;
    /// Opening the view, or registering an offset, failed.
    pub const OPEN: i32 = 4;
    /// A channel call failed; `resmem-channel-peer` names the error on stdout first
    /// (`error <ChannelError variant>`).
    pub const CHANNEL: i32 = 5;
}

/// The line the owner mode prints once every chunk has been written.
pub const READY_LINE: &str = "ready";

/// splitmix64's finaliser over `seed` and a word index: cheap and well mixed.
#[inline]
const fn mix(seed: u64, word: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(word.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The expected byte at `index` of a chunk filled with `seed`.
#[inline]
pub const fn pattern_byte(seed: u64, index: u64) -> u8 {
    mix(seed, index / 8).to_le_bytes()[(index % 8) as usize]
}

/// Fills `buf` (a whole chunk, or its prefix) with the pattern of `seed`.
pub fn fill_pattern(buf: &mut [u8], seed: u64) {
    let mut words = buf.chunks_exact_mut(8);
    let mut word = 0;
    for out in &mut words {
        out.copy_from_slice(&mix(seed, word).to_le_bytes());
        word += 1;
    }
    let tail = words.into_remainder();
    let last = mix(seed, word).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
}

/// The byte pattern the WebAssembly guests write and check (`resmem_guest::pattern`): the
/// SDK's own file, included here, so a native peer checks exactly what a guest wrote.
#[path = "../../guest/sdk/src/pattern.rs"]
pub mod guest_pattern;

/// The frames the channel guests send and check (`resmem_guest::frame`): the SDK's own file.
#[path = "../../guest/sdk/src/frame.rs"]
pub mod guest_frame;

/// Which byte pattern a chunk holds: this crate's ([`pattern_byte`], the default) or the
/// guests' ([`guest_pattern`]). Written `e2e` or `guest` on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pattern {
    #[default]
    E2e,
    Guest,
}

impl Pattern {
    /// The expected byte at `index` of a chunk filled with `seed`.
    pub fn byte(self, seed: u64, index: u64) -> u8 {
        match self {
            Self::E2e => pattern_byte(seed, index),
            Self::Guest => guest_pattern::byte(seed, index),
        }
    }

    /// Fills `buf` (a whole chunk, or its prefix) with the pattern of `seed`.
    pub fn fill(self, buf: &mut [u8], seed: u64) {
        match self {
            Self::E2e => fill_pattern(buf, seed),
            Self::Guest => guest_pattern::fill(seed, 0, buf),
        }
    }

    /// Checks every byte of `buf` against the pattern of `seed`.
    pub fn check(self, buf: &[u8], seed: u64) -> Result<(), Mismatch> {
        match self {
            Self::E2e => check_pattern(buf, seed),
            Self::Guest => {
                let Some(index) = guest_pattern::first_mismatch(seed, 0, buf) else {
                    return Ok(());
                };
                let count = buf
                    .iter()
                    .enumerate()
                    .filter(|&(i, &b)| b != guest_pattern::byte(seed, i as u64))
                    .count() as u64;
                Err(Mismatch {
                    index,
                    expected: guest_pattern::byte(seed, index),
                    found: buf[index as usize],
                    count,
                })
            }
        }
    }
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "e2e" => Ok(Self::E2e),
            "guest" => Ok(Self::Guest),
            other => Err(format!("unknown pattern {other:?}: expected e2e or guest")),
        }
    }
}

/// Where, and how badly, a chunk differs from its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Index of the first differing byte.
    pub index: u64,
    pub expected: u8,
    pub found: u8,
    /// How many bytes differ in total.
    pub count: u64,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mismatch at byte {} (expected {:#04x}, found {:#04x}); {} byte(s) differ",
            self.index, self.expected, self.found, self.count
        )
    }
}

/// Checks every byte of `buf` against the pattern of `seed`.
pub fn check_pattern(buf: &[u8], seed: u64) -> Result<(), Mismatch> {
    let mut first: Option<Mismatch> = None;
    let mut count = 0u64;
    for (word, got) in buf.chunks(8).enumerate() {
        let want = mix(seed, word as u64).to_le_bytes();
        if got == &want[..got.len()] {
            continue;
        }
        for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
            if g != w {
                count += 1;
                first.get_or_insert(Mismatch {
                    index: word as u64 * 8 + i as u64,
                    expected: w,
                    found: g,
                    count: 0,
                });
            }
        }
    }
    match first {
        None => Ok(()),
        Some(m) => Err(Mismatch { count, ..m }),
    }
}

/// A chunk as the tests and the peer name it: where it is (the packed [`PointerOffset`]), how
/// many bytes to look at, and the seed of its pattern. Written `<u64>:<len>:<seed>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSpec {
    pub offset: PointerOffset,
    pub len: usize,
    pub seed: u64,
}

impl ChunkSpec {
    pub fn new(offset: PointerOffset, len: usize, seed: u64) -> Self {
        Self { offset, len, seed }
    }

    /// The line the owner mode prints for this chunk.
    pub fn owner_line(&self) -> String {
        format!(
            "offset={} len={} seed={}",
            self.offset.as_u64(),
            self.len,
            self.seed
        )
    }

    /// Parses a line printed by [`ChunkSpec::owner_line`]; `None` for any other line.
    pub fn parse_owner_line(line: &str) -> Option<Self> {
        let mut offset = None;
        let mut len = None;
        let mut seed = None;
        for field in line.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "offset" => offset = Some(value.parse::<u64>().ok()?),
                "len" => len = Some(value.parse::<usize>().ok()?),
                "seed" => seed = Some(value.parse::<u64>().ok()?),
                _ => return None,
            }
        }
        Some(Self::new(PointerOffset::from_u64(offset?), len?, seed?))
    }
}

impl fmt::Display for ChunkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.offset.as_u64(), self.len, self.seed)
    }
}

impl FromStr for ChunkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad chunk spec {s:?}: expected <u64 offset>:<len>:<seed>");
        let mut parts = s.split(':');
        let (Some(offset), Some(len), Some(seed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Self::new(
            PointerOffset::from_u64(offset.parse().map_err(|_| bad())?),
            len.parse().map_err(|_| bad())?,
            seed.parse().map_err(|_| bad())?,
        ))
    }
}

/// `verified <bytes> bytes in <k> offsets, active segments <n>, after unregister <m>`:
/// `n` is the number of segments the view had mapped while every offset was registered, `m`
/// the number it still had mapped once all were unregistered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifySummary {
    pub bytes: u64,
    pub offsets: usize,
    pub active_segments: usize,
    pub after_unregister: usize,
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "verified {} bytes in {} offsets, active segments {}, after unregister {}",
            self.bytes, self.offsets, self.active_segments, self.after_unregister
        )
    }
}

impl VerifySummary {
    /// Finds and parses the summary inside `text` (a line, possibly with a prefix such as
    /// `ok `, or a whole stdout).
    pub fn find_in(text: &str) -> Option<Self> {
        text.lines().find_map(|line| {
            let rest = &line[line.find("verified ")? + "verified ".len()..];
            let words: Vec<&str> = rest
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .collect();
            // <b> bytes in <k> offsets active segments <n> after unregister <m>
            match words.as_slice() {
                [
                    b,
                    "bytes",
                    "in",
                    k,
                    "offsets",
                    "active",
                    "segments",
                    n,
                    "after",
                    "unregister",
                    m,
                ] => Some(Self {
                    bytes: b.parse().ok()?,
                    offsets: k.parse().ok()?,
                    active_segments: n.parse().ok()?,
                    after_unregister: m.parse().ok()?,
                }),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resmem::SegmentId;

    #[test]
    fn pattern_matches_bytewise_definition_and_depends_on_seed_and_position() {
        let mut buf = vec![0u8; 1003];
        fill_pattern(&mut buf, 7);
        for (i, &b) in buf.iter().enumerate() {
            assert_eq!(b, pattern_byte(7, i as u64), "byte {i}");
        }
        assert_eq!(check_pattern(&buf, 7), Ok(()));
        let mut other = vec![0u8; 1003];
        fill_pattern(&mut other, 8);
        let same = buf.iter().zip(&other).filter(|(a, b)| a == b).count();
        assert!(same < 20, "seeds 7 and 8 agree on {same} of 1003 bytes");
        // Shifted by one word (as a wrong offset would read): no longer the pattern.
        assert!(check_pattern(&buf[8..], 7).is_err());
        // All zeroes (an untouched chunk) is not the pattern of any seed we use.
        assert!(check_pattern(&[0u8; 64], 7).is_err());
    }

    #[test]
    fn check_reports_first_mismatch_and_count() {
        let mut buf = vec![0u8; 4099];
        fill_pattern(&mut buf, 3);
        buf[4098] ^= 0xFF;
        buf[17] ^= 0x01;
        let m = check_pattern(&buf, 3).unwrap_err();
        assert_eq!(m.index, 17);
        assert_eq!(m.expected, pattern_byte(3, 17));
        assert_eq!(m.found, pattern_byte(3, 17) ^ 0x01);
        assert_eq!(m.count, 2);
    }

    #[test]
    fn guest_pattern_is_the_guests_formula_and_checks_like_ours() {
        // The formula of guest/README.md, written out independently.
        let reference = |seed: u64, i: u64| {
            (i.wrapping_mul(0x9E37_79B9)
                .wrapping_add(seed.wrapping_mul(0x51))
                >> 3) as u8
        };
        let mut buf = vec![0u8; 5000];
        Pattern::Guest.fill(&mut buf, 9);
        for (i, &b) in buf.iter().enumerate() {
            assert_eq!(b, reference(9, i as u64), "byte {i}");
            assert_eq!(b, Pattern::Guest.byte(9, i as u64));
        }
        assert_eq!(Pattern::Guest.check(&buf, 9), Ok(()));
        assert!(Pattern::Guest.check(&buf, 10).is_err());
        assert!(Pattern::E2e.check(&buf, 9).is_err());
        buf[4999] ^= 0x5A;
        buf[3] ^= 1;
        let m = Pattern::Guest.check(&buf, 9).unwrap_err();
        assert_eq!((m.index, m.count), (3, 2));
        assert_eq!(m.found, reference(9, 3) ^ 1);
        assert_eq!("guest".parse(), Ok(Pattern::Guest));
        assert_eq!("e2e".parse(), Ok(Pattern::E2e));
        assert!("nope".parse::<Pattern>().is_err());
    }

    #[test]
    fn spec_and_summary_roundtrip() {
        let spec = ChunkSpec::new(PointerOffset::new(SegmentId::new(9), 4096), 77, 5);
        assert_eq!(spec.to_string().parse::<ChunkSpec>(), Ok(spec));
        assert_eq!(ChunkSpec::parse_owner_line(&spec.owner_line()), Some(spec));
        assert_eq!(ChunkSpec::parse_owner_line("ready"), None);
        assert!("1:2".parse::<ChunkSpec>().is_err());
        assert!("1:2:3:4".parse::<ChunkSpec>().is_err());
        let summary = VerifySummary {
            bytes: 10,
            offsets: 2,
            active_segments: 3,
            after_unregister: 1,
        };
        assert_eq!(
            VerifySummary::find_in(&format!("noise\nok {summary}\n")),
            Some(summary)
        );
        assert_eq!(VerifySummary::find_in("verified nothing"), None);
    }
}
