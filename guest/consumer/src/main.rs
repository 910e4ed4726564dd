//! Peer guest: `consumer <name> <offset>:<len>:<seed>...`.
//!
//! Opens a read-only view of the memory `name` (waiting up to 5 s for its owner), registers
//! each packed offset, reads `len` bytes in pieces of at most 1 MiB and checks them against
//! `resmem_guest::pattern` with `seed`. Prints `verified <bytes> bytes` and exits 0, or prints
//! what went wrong to stderr and exits 1.

use std::process::ExitCode;
use std::time::Duration;

use resmem_guest::{AccessMode, Offset, View, pattern};

/// Bytes read per host call.
const PIECE: u64 = 1 << 20;

struct Expected {
    offset: Offset,
    len: u64,
    seed: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(bytes) => {
            println!("verified {bytes} bytes");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("consumer: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: consumer <name> <offset>:<len>:<seed>...";
    let name = args.next().ok_or(usage)?;
    let expected = args.map(|a| parse(&a)).collect::<Result<Vec<_>, _>>()?;
    if expected.is_empty() {
        return Err(usage.to_owned());
    }

    let view = View::open(&name, AccessMode::Read, Duration::from_millis(5000))
        .map_err(|e| format!("open {name:?}: {e}"))?;
    let mut verified = 0;
    for chunk in &expected {
        let registered = view
            .register(chunk.offset)
            .map_err(|e| format!("register {}: {e}", chunk.offset))?;
        let mut at = 0;
        while at < chunk.len {
            let n = PIECE.min(chunk.len - at);
            let bytes = registered
                .read_at(at, n)
                .map_err(|e| format!("read {n} bytes at {} + {at}: {e}", chunk.offset))?;
            if bytes.len() as u64 != n {
                return Err(format!("asked for {n} bytes, got {}", bytes.len()));
            }
            if let Some(index) = pattern::first_mismatch(chunk.seed, at, &bytes) {
                return Err(format!(
                    "mismatch at byte {index} of the chunk at {} (seed {}): {:#04x}, expected {:#04x}",
                    chunk.offset,
                    chunk.seed,
                    bytes[(index - at) as usize],
                    pattern::byte(chunk.seed, index)
                ));
            }
            at += n;
        }
        verified += chunk.len;
    }
    Ok(verified)
}

fn parse(arg: &str) -> Result<Expected, String> {
    let bad = || format!("{arg:?} is not <offset>:<len>:<seed> (three unsigned integers)");
    let mut parts = arg.split(':').map(|p| p.parse::<u64>().map_err(|_| bad()));
    let mut next = || parts.next().unwrap_or_else(|| Err(bad()));
    let expected = Expected {
        offset: Offset::from_u64(next()?),
        len: next()?,
        seed: next()?,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(expected)
}
