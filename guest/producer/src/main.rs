//! Owner guest: `producer [name] [count] [first-size] [--no-wait] [--strategy S]`.
//!
//! Creates the memory `name` (default `producer`; growth strategy `S` from a 64-byte hint,
//! `S` one of `power-of-two` (the default), `best-fit` or `static`), allocates `count` chunks
//! (default 6) of `first-size` bytes (default 4096) doubling each time, so every chunk after
//! the first needs a new segment, and fills chunk `i` with `resmem_guest::pattern` seed
//! `i + 1`. Prints per chunk
//! `chunk seed=<s> offset=<u64 packed> len=<n> segment=<id> active=<segments>`, then `ready`,
//! and keeps everything alive until a line (or EOF) arrives on stdin, so a peer can verify
//! while the owner lives; `--no-wait` exits right after `ready`.
//!
//! When the host refuses a step (e.g. `static` cannot grow: `out-of-memory`; a quota:
//! `quota-exceeded`), it prints `failed step=<create|allocate|write> seed=<s> len=<n>
//! error=<wit error name>` instead (`seed` and `len` only for chunk steps), the host's
//! explanation on stderr, releases everything and exits with code 1 without waiting.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use resmem_guest::{AllocationStrategy, Chunk, Error, Layout, Memory, MemoryConfig, pattern};

/// Bytes written per host call: bounds the guest's buffer and each transfer.
const PIECE: usize = 1 << 20;

const USAGE: &str = "usage: producer [name] [count] [first-size] [--no-wait] \
                     [--strategy power-of-two|best-fit|static]";

fn main() -> ExitCode {
    let mut wait = true;
    let mut strategy = AllocationStrategy::PowerOfTwo;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-wait" => wait = false,
            "--strategy" => {
                strategy = match args.next().as_deref() {
                    Some("power-of-two") => AllocationStrategy::PowerOfTwo,
                    Some("best-fit") => AllocationStrategy::BestFit,
                    Some("static") => AllocationStrategy::Static,
                    _ => panic!("{USAGE}"),
                }
            }
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let name = positional.next().unwrap_or_else(|| "producer".to_owned());
    let count: u32 = positional
        .next()
        .map_or(6, |s| s.parse().expect("count: a number"));
    let first: u64 = positional
        .next()
        .map_or(4096, |s| s.parse().expect("first-size: a number of bytes"));
    assert!(positional.next().is_none(), "{USAGE}");

    let config = MemoryConfig::new(Layout::new(64, 8), 4, strategy);
    let memory = match Memory::create(&name, config) {
        Ok(memory) => memory,
        Err(e) => return failed("step=create", &e),
    };
    let mut out = std::io::stdout().lock();
    let mut chunks: Vec<Chunk<'_>> = Vec::new();
    for i in 0..count {
        let len = first
            .checked_shl(i)
            .filter(|len| len >> i == first)
            .expect("chunk size overflows u64");
        let seed = u64::from(i) + 1;
        let mut chunk = match memory.allocate(Layout::new(len, 8)) {
            Ok(chunk) => chunk,
            Err(e) => return failed(&format!("step=allocate seed={seed} len={len}"), &e),
        };
        if let Err(e) = fill(&mut chunk, seed) {
            return failed(&format!("step=write seed={seed} len={len}"), &e);
        }
        writeln!(
            out,
            "chunk seed={seed} offset={} len={len} segment={} active={}",
            chunk.offset().to_u64(),
            chunk.offset().segment(),
            memory.number_of_active_segments()
        )
        .expect("write stdout");
        chunks.push(chunk);
    }
    writeln!(out, "ready").expect("write stdout");
    out.flush().expect("flush stdout");
    drop(out);

    if wait {
        let mut line = String::new();
        // EOF counts as the signal too: a closed stdin must not keep the owner alive forever.
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .expect("read stdin");
    }
    ExitCode::SUCCESS
}

/// Reports a refused step (see the module docs) and gives the exit code.
fn failed(what: &str, error: &Error) -> ExitCode {
    println!("failed {what} error={}", error.name());
    eprintln!("producer: {what}: {error}");
    ExitCode::FAILURE
}

fn fill(chunk: &mut Chunk<'_>, seed: u64) -> Result<(), Error> {
    let mut buf = vec![0; PIECE];
    let mut at = 0;
    while at < chunk.len() {
        let n = PIECE.min(usize::try_from(chunk.len() - at).unwrap_or(PIECE));
        pattern::fill(seed, at, &mut buf[..n]);
        chunk.write_at(at, &buf[..n])?;
        at += n as u64;
    }
    Ok(())
}
