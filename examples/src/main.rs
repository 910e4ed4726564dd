//! `resmem-demo`: the README's main job until the wasm host exists.
//!
//! `demo` creates a memory, allocates chunks of growing size (forcing several new segments),
//! fills each with a checkable pattern and hands the offsets to a separate peer *process*
//! (this binary again, `peer` subcommand) that maps the segments lazily and verifies every
//! byte. Then it frees the old chunks, so the old segments are released on both sides.

use std::alloc::Layout;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use resmem::{AccessMode, AllocationStrategy, Config, Memory, PointerOffset, ShmPointer, View};

#[derive(Parser)]
#[command(
    version,
    about = "resmem demo: an owner grows a shared memory, a peer process verifies it"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the owner and spawn a verifying peer process.
    Demo {
        /// Number of chunks; chunk i has `first_chunk << i` bytes.
        #[arg(long, default_value_t = 13)]
        chunks: u32,
        /// Size of the first chunk in bytes.
        #[arg(long, default_value_t = 4096)]
        first_chunk: usize,
        #[arg(long, value_enum, default_value_t = Strategy::PowerOfTwo)]
        strategy: Strategy,
    },
    /// Internal: the peer process. Reads `verify <offset> <len> <seed>` lines from stdin.
    Peer {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Strategy {
    BestFit,
    PowerOfTwo,
}

/// Byte `index` of a chunk filled with `seed`: cheap, position dependent, seed dependent.
fn pattern(seed: u64, index: usize) -> u8 {
    ((index as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(seed * 0x51)
        >> 3) as u8
}

fn fill(chunk: &ShmPointer, len: usize, seed: u64) {
    // SAFETY: the chunk was allocated with `len` bytes and belongs to this owner alone.
    let bytes = unsafe { std::slice::from_raw_parts_mut(chunk.data_ptr, len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(seed, i);
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Demo {
            chunks,
            first_chunk,
            strategy,
        } => demo(chunks, first_chunk, strategy),
        Cmd::Peer { prefix, name } => peer(&prefix, &name),
    }
}

fn demo(chunks: u32, first_chunk: usize, strategy: Strategy) -> Result<()> {
    ensure!((1..=16).contains(&chunks), "--chunks must be 1..=16");
    let prefix = format!("resmem_demo{}_", std::process::id());
    let config = Config::default().prefix(&prefix);
    let strategy = match strategy {
        Strategy::BestFit => AllocationStrategy::BestFit,
        Strategy::PowerOfTwo => AllocationStrategy::PowerOfTwo,
    };
    let memory = Memory::builder("demo")
        .config(&config)
        .max_chunk_layout_hint(Layout::from_size_align(first_chunk, 64)?)
        .max_number_of_chunks_hint(2)
        .allocation_strategy(strategy)
        .create()
        .context("creating the memory")?;
    println!(
        "owner: created memory 'demo' (prefix {prefix}, {strategy:?}), segment 0 with {} B buckets",
        memory.bucket_size(resmem::SegmentId::new(0))
    );

    let mut child = Command::new(std::env::current_exe()?)
        .args(["peer", "--prefix", &prefix, "--name", "demo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning the peer process")?;
    let mut to_peer = child.stdin.take().context("peer stdin")?;
    let mut from_peer = BufReader::new(child.stdout.take().context("peer stdout")?).lines();
    println!("owner: spawned peer process {}", child.id());

    let start = Instant::now();
    let mut held = Vec::new();
    let mut verified = 0u64;
    let mut segments_created = 0;
    for i in 0..chunks {
        let len = first_chunk.checked_shl(i).context("chunk size overflows")?;
        let layout = Layout::from_size_align(len, 64)?;
        let before = memory.current_segment();
        let chunk = memory.allocate(layout).context("allocating")?;
        let grew = memory.current_segment() != before;
        segments_created += usize::from(grew);
        fill(&chunk, len, u64::from(i));
        println!(
            "owner: chunk {i:>2}: {len:>9} B at {:<6} {} (buckets of {:>9} B), owner segments active: {}",
            chunk.offset.to_string(),
            if grew { "new segment" } else { "           " },
            memory.bucket_size(chunk.offset.segment_id()),
            memory.number_of_active_segments()
        );
        writeln!(to_peer, "verify {} {len} {i}", chunk.offset.as_u64())?;
        let reply = from_peer.next().context("peer exited early")??;
        println!("peer:  {reply}");
        let bytes: u64 = reply
            .strip_prefix("verified ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("peer failed: {reply}"))?;
        verified += bytes;
        held.push((chunk, layout));
    }
    let elapsed = start.elapsed();

    // Free all but the newest chunk: the older segments go away on the owner side at once.
    let last = held.pop().context("no chunk")?;
    for (chunk, layout) in held.drain(..) {
        // SAFETY: allocated above, verified by the peer, which has unregistered it.
        unsafe { memory.deallocate(chunk.offset, layout) };
    }
    println!(
        "owner: freed all but the newest chunk; owner segments active: {}",
        memory.number_of_active_segments()
    );
    writeln!(
        to_peer,
        "verify {} {} {}",
        last.0.offset.as_u64(),
        last.1.size(),
        chunks - 1
    )?;
    println!("peer:  {}", from_peer.next().context("peer exited early")??);
    writeln!(to_peer, "quit")?;
    drop(to_peer);
    let status = child.wait()?;
    ensure!(status.success(), "peer process failed: {status}");
    // SAFETY: allocated above; the peer has exited.
    unsafe { memory.deallocate(last.0.offset, last.1) };
    drop(memory);
    let leftovers = resmem::list(&config)?;
    ensure!(leftovers.is_empty(), "objects left behind: {leftovers:?}");

    let mib = verified as f64 / (1024.0 * 1024.0);
    println!(
        "summary: {chunks} chunks, {segments_created} new segments, {mib:.1} MiB written by the owner and \
         verified byte by byte in another process in {:.1} ms ({:.0} MiB/s end to end); nothing left in /dev/shm",
        elapsed.as_secs_f64() * 1e3,
        mib / elapsed.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn peer(prefix: &str, name: &str) -> Result<()> {
    let config = Config::default().prefix(prefix);
    let view = View::builder(name)
        .config(&config)
        .timeout(Duration::from_secs(5))
        .open(AccessMode::Read)
        .context("opening the view")?;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["quit"] => break,
            ["verify", offset, len, seed] => verify(
                &view,
                PointerOffset::from_u64(offset.parse()?),
                len.parse()?,
                seed.parse()?,
            ),
            _ => bail!("unknown request: {line}"),
        };
        let text = match reply {
            Ok(bytes) => format!(
                "verified {bytes} B in segment {}; peer segments mapped: {}",
                PointerOffset::from_u64(words[1].parse()?).segment_id(),
                view.number_of_active_segments()
            ),
            Err(e) => format!("error: {e:#}"),
        };
        writeln!(stdout.lock(), "{text}")?;
    }
    Ok(())
}

fn verify(view: &View, offset: PointerOffset, len: usize, seed: u64) -> Result<usize> {
    // SAFETY: unregistered below, after the last read of `bytes`.
    let ptr = unsafe { view.register_and_translate_offset(offset) }?;
    // SAFETY: the owner allocated `len` bytes at this offset and keeps them until we reply.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    let mismatch = bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b != pattern(seed, i));
    // SAFETY: registered above; `bytes` is not used after this.
    unsafe { view.unregister_offset(offset) };
    match mismatch {
        None => Ok(len),
        Some(i) => bail!("byte {i} of {offset} differs"),
    }
}
