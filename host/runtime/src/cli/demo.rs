//! `resmem demo`: the main job, on built-in defaults.
//!
//! 1. The embedded `producer` guest (a wasm component) creates memory `frames` and allocates
//!    chunks of doubling size, each forcing a new segment, filled with a checkable pattern.
//! 2. A native peer *process* (`resmem peer`) opens a view, maps every segment from the
//!    offsets the guest printed, and verifies every byte.
//! 3. The embedded `filter` plugin reads each chunk through its own view and writes the
//!    transformed bytes into its own memory; the host verifies those natively.
//! 4. The embedded `window` guest writes a large chunk in place through its zero-copy window
//!    (`map`: no copy through the host); the native peer process verifies every byte.
//! 5. The guests exit; their memories are removed; nothing is left in the namespace.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use resmem::{AccessMode, Config, PointerOffset, View};
use resmem_host::run::Buffer;
use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome, pattern};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};

#[derive(Args)]
pub struct DemoArgs {
    /// Chunks the producer guest allocates; each is twice as large as the one before.
    #[arg(long, default_value_t = 12)]
    chunks: u32,
    /// Size of the first chunk in bytes.
    #[arg(long, default_value_t = 4096)]
    first_size: u64,
    /// Skip the filter plugin stage.
    #[arg(long)]
    no_filter: bool,
    /// Bytes the zero-copy stage writes in place (0 skips the stage).
    #[arg(long, default_value_t = 64 << 20)]
    zero_copy_size: u64,
}

/// The filter plugin XORs every byte with this (see guest/filter).
const FILTER_KEY: u8 = 0x5A;

/// One chunk as the producer reported it.
struct Chunk {
    seed: u64,
    offset: PointerOffset,
    len: u64,
    segment: u8,
    active: u32,
}

fn parse_chunk(line: &str) -> Option<Chunk> {
    let mut chunk = Chunk {
        seed: 0,
        offset: PointerOffset::from_u64(0),
        len: 0,
        segment: 0,
        active: 0,
    };
    for field in line.strip_prefix("chunk ")?.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        match key {
            "seed" => chunk.seed = value.parse().ok()?,
            "offset" => chunk.offset = PointerOffset::from_u64(value.parse().ok()?),
            "len" => chunk.len = value.parse().ok()?,
            "segment" => chunk.segment = value.parse().ok()?,
            "active" => chunk.active = value.parse().ok()?,
            _ => {}
        }
    }
    Some(chunk)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn demo(args: &DemoArgs) -> Result<i32> {
    ensure!((1..=20).contains(&args.chunks), "--chunks must be 1..=20");
    let namespace = format!("resmem_demo_{}_", std::process::id());
    let policy = Policy::builder().namespace(&namespace).build();
    let config = policy.config().clone();
    let host = GuestHost::new(policy, EngineOptions::with_default_cache())?;
    let started = Instant::now();
    let producer = host.load(resmem_guests::PRODUCER_WASM)?;
    println!(
        "host:   namespace {namespace}; producer guest compiled/loaded in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let (mut wasi, stdout_reader, mut stdin_writer) = piped_wasi(&[
        "producer".to_owned(),
        "frames".to_owned(),
        args.chunks.to_string(),
        args.first_size.to_string(),
    ])?;

    std::thread::scope(|scope| -> Result<i32> {
        let guest = scope.spawn(|| host.run_command(&producer, &mut wasi));
        let result = drive(&host, &config, &namespace, stdout_reader, args);
        // Let the producer exit (it waits for a line), whatever happened above.
        let _ = writeln!(stdin_writer);
        drop(stdin_writer);
        let outcome = guest
            .join()
            .map_err(|_| anyhow::anyhow!("the guest thread panicked"))??;
        let stats = result?;
        ensure!(
            outcome == RunOutcome::Exited(0),
            "the producer guest ended with {outcome:?}"
        );
        let leftovers = resmem::list(&config)?;
        ensure!(leftovers.is_empty(), "memories left behind: {leftovers:?}");
        println!("host:   producer exited 0; its memory was removed; namespace is empty");
        let total = started.elapsed().as_secs_f64();
        println!(
            "summary: {} chunks in {} segments ({:.1} MiB) written by a wasm guest, verified byte \
             by byte by a native peer process at {:.0} MiB/s{}; {:.2} s in all",
            stats.chunks,
            stats.segments,
            mib(stats.bytes),
            mib(stats.bytes) / stats.peer_seconds.max(1e-9),
            match stats.filter_seconds {
                Some(s) => format!(
                    ", filtered by a wasm plugin and verified natively at {:.0} MiB/s",
                    mib(stats.bytes) / s.max(1e-9)
                ),
                None => String::new(),
            },
            total
        );
        Ok(0)
    })
}

struct Stats {
    chunks: usize,
    segments: usize,
    bytes: u64,
    peer_seconds: f64,
    filter_seconds: Option<f64>,
}

fn drive(
    host: &GuestHost,
    config: &Config,
    namespace: &str,
    producer_stdout: std::io::PipeReader,
    args: &DemoArgs,
) -> Result<Stats> {
    let mut chunks = Vec::new();
    let mut segments = std::collections::BTreeSet::new();
    for line in BufReader::new(producer_stdout).lines() {
        let line = line.context("reading the producer's output")?;
        if line == "ready" {
            break;
        }
        let chunk = parse_chunk(&line).with_context(|| format!("unexpected output: {line}"))?;
        let new = segments.insert(chunk.segment);
        println!(
            "guest:  chunk {:>2}: {:>9} B at {:<8} {} guest segments active: {}",
            chunks.len(),
            chunk.len,
            chunk.offset.to_string(),
            if new {
                "(new segment)"
            } else {
                "             "
            },
            chunk.active
        );
        chunks.push(chunk);
    }
    ensure!(
        chunks.len() == args.chunks as usize,
        "the producer reported {} chunks, expected {}",
        chunks.len(),
        args.chunks
    );
    let bytes: u64 = chunks.iter().map(|c| c.len).sum();

    // A separate native process maps the segments and checks every byte.
    let peer_started = Instant::now();
    let mut peer = Command::new(std::env::current_exe()?);
    peer.args(["peer", "frames", "--namespace", namespace, "--pattern", "0"])
        .args(
            chunks
                .iter()
                .map(|c| format!("{}/{}@{}", c.offset.as_u64(), c.len, c.seed)),
        )
        .stdout(Stdio::piped());
    let output = peer.output().context("running the native peer process")?;
    let peer_seconds = peer_started.elapsed().as_secs_f64();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("peer:   {line}");
    }
    if !output.status.success() {
        bail!("the native peer process failed: {}", output.status);
    }

    let filter_seconds = if args.no_filter {
        None
    } else {
        Some(filter_stage(host, config, &chunks)?)
    };
    if args.zero_copy_size > 0 {
        zero_copy_stage(host, namespace, args.zero_copy_size)?;
    }
    Ok(Stats {
        chunks: chunks.len(),
        segments: segments.len(),
        bytes,
        peer_seconds,
        filter_seconds,
    })
}

/// Runs every chunk through the filter plugin and checks its output natively.
fn filter_stage(host: &GuestHost, config: &Config, chunks: &[Chunk]) -> Result<f64> {
    let component = host.load(resmem_guests::FILTER_WASM)?;
    let mut plugin = host.plugin(&component, WasiCtxBuilder::new().inherit_stderr())?;
    let started = Instant::now();
    let mut output_view: Option<View> = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let input = Buffer {
            memory: "frames".to_owned(),
            offset: resmem_host::bindings::types::PointerOffset {
                segment: chunk.offset.segment_id().value(),
                offset: chunk.offset.offset(),
            },
            len: chunk.len,
        };
        let out = plugin
            .process(&input)?
            .map_err(|e| anyhow::anyhow!("the filter refused chunk {i}: {e}"))?
            .context("the filter returned no output")?;
        ensure!(
            out.len == chunk.len,
            "filter output has {} bytes, expected {}",
            out.len,
            chunk.len
        );
        let view = match &output_view {
            Some(view) => view,
            None => output_view.insert(
                View::builder(&out.memory)
                    .config(config)
                    .open(AccessMode::Read)
                    .context("opening the filter's output memory")?,
            ),
        };
        let offset = resmem::PointerOffset::new(
            resmem::SegmentId::new(out.offset.segment),
            out.offset.offset,
        );
        // The plugin keeps its output chunk until the next call.
        let bad = super::peer::with_bytes(view, offset, out.len, |bytes| {
            bytes
                .iter()
                .enumerate()
                .position(|(j, &b)| b != pattern::byte(chunk.seed, j) ^ FILTER_KEY)
        })
        .context("reading the filter's output")?;
        if let Some(j) = bad {
            bail!("filter output of chunk {i} differs at byte {j}");
        }
        println!(
            "filter: chunk {i:>2}: {:>9} B -> {}:{} in '{}', verified natively (input ^ {FILTER_KEY:#04x})",
            out.len, out.offset.segment, out.offset.offset, out.memory
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// A WASI context for a command guest with `args`, its stdout and stdin on pipes (stderr
/// inherited): the context, the read end of its stdout, the write end of its stdin.
fn piped_wasi(
    args: &[String],
) -> Result<(WasiCtxBuilder, std::io::PipeReader, std::io::PipeWriter)> {
    let (stdout_reader, stdout_writer) = std::io::pipe()?;
    let (stdin_reader, stdin_writer) = std::io::pipe()?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(OutputFile::new(File::from(OwnedFd::from(stdout_writer))))
        .stdin(InputFile::new(File::from(OwnedFd::from(stdin_reader))))
        .inherit_stderr()
        .args(args);
    Ok((wasi, stdout_reader, stdin_writer))
}

/// The window guest fills one chunk in place; the native peer process verifies it.
fn zero_copy_stage(host: &GuestHost, namespace: &str, size: u64) -> Result<()> {
    const SEED: u64 = 99;
    let component = host.load(resmem_guests::WINDOW_WASM)?;
    let (mut wasi, stdout_reader, mut stdin_writer) = piped_wasi(&[
        "window".to_owned(),
        "produce".to_owned(),
        "zero-copy".to_owned(),
        size.to_string(),
        SEED.to_string(),
    ])?;
    std::thread::scope(|scope| -> Result<()> {
        let started = Instant::now();
        let guest = scope.spawn(|| host.run_command(&component, &mut wasi));
        let checked = (|| -> Result<()> {
            let mut lines = BufReader::new(stdout_reader).lines();
            let line = lines.next().context("the window guest printed nothing")??;
            let field = |key: &str| -> Result<u64> {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
                    .with_context(|| format!("no {key} in {line:?}"))
            };
            let (offset, addr) = (field("offset")?, field("addr")?);
            let written = started.elapsed().as_secs_f64();
            println!(
                "window: {:.0} MiB written in place at guest address {addr:#x} (offset {}) in {:.0} ms, no host copy",
                mib(size),
                PointerOffset::from_u64(offset),
                written * 1e3
            );
            let output = Command::new(std::env::current_exe()?)
                .args([
                    "peer",
                    "zero-copy",
                    "--namespace",
                    namespace,
                    "--pattern",
                    "0",
                ])
                .arg(format!("{offset}/{size}@{SEED}"))
                .stdout(Stdio::piped())
                .output()
                .context("running the native peer process")?;
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                println!("peer:   {line}");
            }
            ensure!(
                output.status.success(),
                "the native peer process failed on the window's bytes: {}",
                output.status
            );
            Ok(())
        })();
        let _ = writeln!(stdin_writer);
        drop(stdin_writer);
        let outcome = guest
            .join()
            .map_err(|_| anyhow::anyhow!("the guest thread panicked"))??;
        checked?;
        ensure!(
            outcome == RunOutcome::Exited(0),
            "the window guest ended with {outcome:?}"
        );
        Ok(())
    })
}
