//! `resmem peer`: a native view that maps offsets and prints or checks their contents.

use std::time::Duration;

use crate::pattern;
use anyhow::{Context, Result, bail};
use clap::Args;
use resmem::{AccessMode, PointerOffset, SegmentId, View};

use super::NamespaceArgs;

#[derive(Args)]
pub struct PeerArgs {
    /// The memory's name (without the namespace prefix).
    name: String,
    /// Offsets: packed u64 values (as printed by guests) or SEGMENT:OFFSET, each optionally
    /// followed by /LEN (bytes, overrides --len) and @SEED (pattern seed, overrides --pattern).
    #[arg(required = true)]
    offsets: Vec<String>,
    /// Bytes to print or check at each offset.
    #[arg(long, default_value_t = 64)]
    len: u64,
    /// Check the bytes against the demo pattern with this seed (seed i for the i-th offset
    /// when --seed-per-offset) instead of printing them.
    #[arg(long)]
    pattern: Option<u64>,
    /// With --pattern: use seed + i for the i-th offset.
    #[arg(long)]
    seed_per_offset: bool,
    /// How long to wait for an owner that is still initialising.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

/// One `OFFSET[/LEN][@SEED]` argument.
struct Spec {
    offset: PointerOffset,
    len: Option<u64>,
    seed: Option<u64>,
}

fn parse_spec(text: &str) -> Result<Spec> {
    let (rest, seed) = match text.split_once('@') {
        Some((rest, seed)) => (
            rest,
            Some(
                seed.parse()
                    .with_context(|| format!("bad seed in {text:?}"))?,
            ),
        ),
        None => (text, None),
    };
    let (offset, len) = match rest.split_once('/') {
        Some((offset, len)) => (
            offset,
            Some(
                len.parse()
                    .with_context(|| format!("bad length in {text:?}"))?,
            ),
        ),
        None => (rest, None),
    };
    Ok(Spec {
        offset: parse_offset(offset)?,
        len,
        seed,
    })
}

pub fn parse_offset(text: &str) -> Result<PointerOffset> {
    if let Some((segment, offset)) = text.split_once(':') {
        let segment: u8 = segment
            .parse()
            .with_context(|| format!("bad segment in {text:?}"))?;
        let offset: u64 = offset
            .parse()
            .with_context(|| format!("bad offset in {text:?}"))?;
        return PointerOffset::try_new(SegmentId::new(segment), offset)
            .with_context(|| format!("offset too large: {text:?}"));
    }
    Ok(PointerOffset::from_u64(
        text.parse()
            .with_context(|| format!("not an offset: {text:?}"))?,
    ))
}

pub fn peer(args: &PeerArgs) -> Result<i32> {
    let (namespace, config) = args.namespace.resolve();
    let view = View::builder(&args.name)
        .config(&config)
        .timeout(Duration::from_millis(args.timeout_ms))
        .open(AccessMode::Read)
        .with_context(|| format!("opening '{}' in namespace '{namespace}'", args.name))?;
    let specs = args
        .offsets
        .iter()
        .map(|o| parse_spec(o))
        .collect::<Result<Vec<_>>>()?;
    let mut failures = 0;
    let mut verified = 0u64;
    for (i, spec) in specs.iter().enumerate() {
        let (offset, len) = (spec.offset, spec.len.unwrap_or(args.len));
        let bytes =
            read(&view, offset, len).with_context(|| format!("reading {len} bytes at {offset}"))?;
        let seed = spec.seed.or(args.pattern.map(|seed| {
            if args.seed_per_offset {
                seed.wrapping_add(i as u64)
            } else {
                seed
            }
        }));
        match seed {
            Some(seed) => match pattern::first_mismatch(seed, &bytes) {
                None => {
                    verified += bytes.len() as u64;
                    println!(
                        "offset {offset}: verified {} bytes (seed {seed}); segments mapped: {}",
                        bytes.len(),
                        view.number_of_active_segments()
                    );
                }
                Some(at) => {
                    failures += 1;
                    println!(
                        "offset {offset}: MISMATCH at byte {at}: {:#04x}, expected {:#04x}",
                        bytes[at],
                        pattern::byte(seed, at)
                    );
                }
            },
            None => println!("offset {offset}: {}", hex(&bytes)),
        }
    }
    println!(
        "{} offsets, {verified} bytes verified, {failures} mismatches; {} segments still mapped",
        specs.len(),
        view.number_of_active_segments()
    );
    Ok(if failures == 0 { 0 } else { 1 })
}

/// Copies `len` bytes at `offset` out of the view, bounded by the segment's payload.
fn read(view: &View, offset: PointerOffset, len: u64) -> Result<Vec<u8>> {
    with_bytes(view, offset, len, <[u8]>::to_vec)
}

/// Registers `offset`, hands the `len` bytes there to `inspect` and unregisters it again; fails
/// without calling `inspect` when the range runs past the segment's payload.
pub(super) fn with_bytes<R>(
    view: &View,
    offset: PointerOffset,
    len: u64,
    inspect: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    // SAFETY: unregistered below, after the last use of the bytes.
    let ptr = unsafe { view.register_and_translate_offset(offset) }?;
    let payload = view.segment_payload_size(offset.segment_id()).unwrap_or(0) as u64;
    let result = if offset
        .offset()
        .checked_add(len)
        .is_some_and(|end| end <= payload)
    {
        // SAFETY: the range lies inside the mapped payload of the offset's segment, which
        // stays mapped while the offset is registered.
        Ok(inspect(unsafe {
            std::slice::from_raw_parts(ptr, len as usize)
        }))
    } else {
        Err(())
    };
    // SAFETY: registered above; `inspect` has returned, so the bytes are no longer used.
    unsafe { view.unregister_offset(offset) };
    match result {
        Ok(value) => Ok(value),
        Err(()) => bail!("the range ends beyond the segment's {payload} payload bytes"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
