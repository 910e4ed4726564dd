//! Owner guest: `producer [name] [count] [first-size] [--no-wait]`.
//!
//! Creates the memory `name` (default `producer`; power-of-two growth from a 64-byte hint),
//! allocates `count` chunks (default 6) of `first-size` bytes (default 4096) doubling each
//! time, so every chunk after the first needs a new segment, and fills chunk `i` with
//! `resmem_guest::pattern` seed `i + 1`. Prints per chunk
//! `chunk seed=<s> offset=<u64 packed> len=<n> segment=<id> active=<segments>`, then `ready`,
//! and keeps everything alive until a line (or EOF) arrives on stdin, so a peer can verify
//! while the owner lives; `--no-wait` exits right after `ready`.

use std::io::{BufRead, Write};

use resmem_guest::{AllocationStrategy, Chunk, Layout, Memory, MemoryConfig, pattern};

/// Bytes written per host call: bounds the guest's buffer and each transfer.
const PIECE: usize = 1 << 20;

fn main() {
    let mut wait = true;
    let mut positional = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-wait" => wait = false,
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
    assert!(
        positional.next().is_none(),
        "usage: producer [name] [count] [first-size] [--no-wait]"
    );

    let config = MemoryConfig::new(Layout::new(64, 8), 4, AllocationStrategy::PowerOfTwo);
    let memory = Memory::create(&name, config).expect("create the memory");
    let mut out = std::io::stdout().lock();
    let mut chunks: Vec<Chunk<'_>> = Vec::new();
    for i in 0..count {
        let len = first
            .checked_shl(i)
            .filter(|len| len >> i == first)
            .expect("chunk size overflows u64");
        let seed = u64::from(i) + 1;
        let mut chunk = memory
            .allocate(Layout::new(len, 8))
            .expect("allocate a chunk");
        fill(&mut chunk, seed);
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
}

fn fill(chunk: &mut Chunk<'_>, seed: u64) {
    let mut buf = vec![0; PIECE];
    let mut at = 0;
    while at < chunk.len() {
        let n = PIECE.min(usize::try_from(chunk.len() - at).unwrap_or(PIECE));
        pattern::fill(seed, at, &mut buf[..n]);
        chunk.write_at(at, &buf[..n]).expect("write the pattern");
        at += n as u64;
    }
}
