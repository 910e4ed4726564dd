//! `resmem demo`: the main job, a zero-copy hand-off pipeline on channels, on built-in defaults.
//!
//! ```text
//!   producer guest ──frames──┬──> native subscriber process (verifies every byte, releases)
//!   (wasm, writes in place)  ├──> native subscriber process (hoards 4 samples; killed midway)
//!                            └──> filter guest (wasm) ──filtered──> native subscriber process
//! ```
//!
//! The producer publishes frames of growing size, so its memory adds segments while
//! subscribers are connected; every frame carries a stamp and a checkable pattern. Midway the
//! hoarding subscriber is killed (SIGKILL) and the demo shows the producer's publisher reclaim
//! its slot and samples. Per stage it prints samples, bytes, latency (median, p99) and
//! throughput, and at the end that nothing is left in the namespace.

mod verify;

pub use verify::{VerifyArgs, verify};

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use resmem::{AccessMode, Config, View};
use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::OutputFile;

#[derive(Args)]
pub struct DemoArgs {
    /// Frames the producer guest publishes.
    #[arg(long, default_value_t = 64)]
    frames: u64,
    /// Bytes of the first frame; the size doubles every --grow-every frames.
    #[arg(long, default_value = "4K", value_parser = super::parse_size)]
    first_size: u64,
    /// Largest frame.
    #[arg(long, default_value = "1M", value_parser = super::parse_size)]
    max_size: u64,
    /// Frames between two doublings of the frame size.
    #[arg(long, default_value_t = 6)]
    grow_every: u64,
    /// Pause of the producer between two frames, in microseconds.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Do not kill the hoarding subscriber midway.
    #[arg(long)]
    no_kill: bool,
}

/// The filter guest XORs every payload byte with this (guest/channel, `filter`).
const FILTER_KEY: u8 = 0x5A;
/// Samples the hoarding subscriber keeps until it is killed.
const HOARD: u64 = 4;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Lines of a reader, as they come, on a channel (the reader on its own thread).
fn lines_of(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line within `timeout`.
fn next_line(lines: &Receiver<String>, what: &str, timeout: Duration) -> Result<String> {
    lines
        .recv_timeout(timeout)
        .with_context(|| format!("{what} printed nothing within {timeout:?} (or ended)"))
}

/// A native subscriber process (`resmem verify-frames`), killed if the demo fails.
struct Verifier {
    what: &'static str,
    child: Child,
    lines: Receiver<String>,
    pid: u32,
    slot: usize,
}

impl Verifier {
    fn spawn(what: &'static str, namespace: &str, service: &str, args: &[String]) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["verify-frames", service, "--namespace", namespace])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {what}"))?;
        let lines = lines_of(child.stdout.take().context("piped stdout")?);
        let pid = child.id();
        let mut verifier = Self {
            what,
            child,
            lines,
            pid,
            slot: usize::MAX,
        };
        let joined = verifier.line()?;
        verifier.slot = joined
            .strip_prefix("joined slot=")
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{what}: unexpected {joined:?}"))?;
        Ok(verifier)
    }

    fn line(&mut self) -> Result<String> {
        next_line(&self.lines, self.what, Duration::from_secs(60))
    }

    /// Its `stats` line, after which it must exit 0.
    fn stats(mut self) -> Result<Stats> {
        let line = loop {
            let line = self.line()?;
            if line.starts_with("stats ") {
                break line;
            }
        };
        let status = self.child.wait()?;
        ensure!(status.success(), "the {} failed: {status}", self.what);
        Stats::parse(&line)
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A verifier's `stats` line.
struct Stats {
    samples: u64,
    bytes: u64,
    p50_ns: u64,
    p99_ns: u64,
    seconds: f64,
}

impl Stats {
    fn parse(line: &str) -> Result<Self> {
        let field = |key: &str| -> Result<&str> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("no {key} in {line:?}"))
        };
        Ok(Self {
            samples: field("samples")?.parse()?,
            bytes: field("bytes")?.parse()?,
            p50_ns: field("p50_ns")?.parse()?,
            p99_ns: field("p99_ns")?.parse()?,
            seconds: field("seconds")?.parse()?,
        })
    }

    fn print(&self, stage: &str) {
        println!(
            "{stage}: {} samples, {:.1} MiB, every byte verified; latency median {:.1} µs, \
             p99 {:.1} µs; {:.0} MiB/s",
            self.samples,
            mib(self.bytes),
            self.p50_ns as f64 / 1e3,
            self.p99_ns as f64 / 1e3,
            mib(self.bytes) / self.seconds.max(1e-9)
        );
    }
}

/// A WASI context for a command guest with `args`, stdout on a pipe (stderr inherited).
fn piped_wasi(args: &[String]) -> Result<(WasiCtxBuilder, Receiver<String>)> {
    let (stdout_reader, stdout_writer) = std::io::pipe()?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(OutputFile::new(File::from(OwnedFd::from(stdout_writer))))
        .inherit_stderr()
        .args(args);
    Ok((wasi, lines_of(stdout_reader)))
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// `key=value` of a guest line.
fn value(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

pub fn demo(args: &DemoArgs) -> Result<i32> {
    ensure!(
        (8..=100_000).contains(&args.frames),
        "--frames must be 8..=100000"
    );
    ensure!(
        args.first_size >= resmem_host::frame::HEADER as u64,
        "--first-size must be at least {} bytes",
        resmem_host::frame::HEADER
    );
    ensure!(
        args.max_size >= args.first_size,
        "--max-size is below --first-size"
    );
    let namespace = format!("resmem_demo_{}_", std::process::id());
    let policy = Policy::builder().namespace(&namespace).build();
    let config = policy.config().clone();
    let host = GuestHost::new(policy, EngineOptions::with_default_cache())?;
    let started = Instant::now();
    let component = host.load(resmem_guests::CHANNEL_WASM)?;
    println!(
        "host:     namespace {namespace}; channel guest compiled/loaded in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let frames = args.frames.to_string();
    let (mut producer_wasi, producer_out) = piped_wasi(&strings(&[
        "channel",
        "pub",
        "frames",
        &frames,
        &args.first_size.to_string(),
        "--max-size",
        &args.max_size.to_string(),
        "--grow-every",
        &args.grow_every.to_string(),
        "--interval-us",
        &args.interval_us.to_string(),
        "--map",
        "--subscribers",
        "3",
        "--overflow",
        "block",
        "--seed",
        "1",
    ]))?;
    let (mut filter_wasi, filter_out) = piped_wasi(&strings(&[
        "channel",
        "filter",
        "frames",
        "filtered",
        &frames,
        "--seed",
        "1",
        "--map",
        "--subscribers",
        "1",
        "--overflow",
        "block",
    ]))?;
    let pipeline_started = Instant::now();
    let result = std::thread::scope(|scope| -> Result<()> {
        let producer = scope.spawn(|| host.run_command(&component, &mut producer_wasi));
        let verify = |key: u8, hold: u64| {
            strings(&[
                "--count",
                &frames,
                "--key",
                &key.to_string(),
                "--hold",
                &hold.to_string(),
            ])
        };
        let checker = Verifier::spawn("native subscriber", &namespace, "frames", &verify(0, 0))?;
        let hoarder = Verifier::spawn(
            "hoarding subscriber",
            &namespace,
            "frames",
            &verify(0, HOARD),
        )?;
        let filter = scope.spawn(|| host.run_command(&component, &mut filter_wasi));
        let filtered = Verifier::spawn(
            "filtered subscriber",
            &namespace,
            "filtered",
            &verify(FILTER_KEY, 0),
        )?;
        println!(
            "pipeline: producer guest -> 'frames' -> native pid {} (slot {}), hoarding pid {} \
             (slot {}), filter guest -> 'filtered' -> native pid {} (slot {})",
            checker.pid, checker.slot, hoarder.pid, hoarder.slot, filtered.pid, filtered.slot
        );
        let mut hoarder = Some(hoarder);
        drive_producer(&config, &producer_out, args, &mut hoarder)?;
        let outcome = producer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
        ensure!(
            outcome == RunOutcome::Exited(0),
            "the producer guest ended with {outcome:?}"
        );
        let checked = checker.stats()?;
        loop {
            let line = next_line(&filter_out, "the filter guest", Duration::from_secs(60))?;
            if line.starts_with("done ") {
                ensure!(
                    value(&line, "filtered") == Some(args.frames),
                    "the filter guest: {line}"
                );
                break;
            }
            if line.starts_with("failed") || line.starts_with("bad") || line.starts_with("timeout")
            {
                bail!("the filter guest: {line}");
            }
        }
        let outcome = filter
            .join()
            .map_err(|_| anyhow::anyhow!("the filter thread panicked"))??;
        ensure!(
            outcome == RunOutcome::Exited(0),
            "the filter guest ended with {outcome:?}"
        );
        let filtered = filtered.stats()?;
        if let Some(hoarder) = hoarder {
            hoarder.stats()?;
        }
        ensure!(
            checked.samples == args.frames && filtered.samples == args.frames,
            "frames went missing: {} and {} of {}",
            checked.samples,
            filtered.samples,
            args.frames
        );
        checked.print("stage 1  producer guest -> native subscriber");
        filtered.print("stage 2  filter guest   -> native subscriber");
        Ok(())
    });
    result?;
    let memories = resmem::list(&config)?;
    let services = resmem::channel::list_services(&config)?;
    let objects = shm_objects(&namespace);
    ensure!(
        memories.is_empty() && services.is_empty() && objects.is_empty(),
        "left behind: memories {memories:?}, services {services:?}, objects {objects:?}"
    );
    println!(
        "host:     both guests exited 0; their services were removed; namespace is empty \
         (0 memories, 0 services, 0 shared-memory objects)"
    );
    println!(
        "summary:  {} frames handed off zero-copy through 2 wasm guests and 3 native processes \
         in {:.2} s; {:.2} s in all",
        args.frames,
        pipeline_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

/// Objects of the namespace in /dev/shm (empty when the backend is not there).
fn shm_objects(namespace: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(namespace))
                .collect()
        })
        .unwrap_or_default()
}

/// Follows the producer's frames: prints where the memory grows, kills the hoarder midway and
/// shows its slot and samples reclaimed.
fn drive_producer(
    config: &Config,
    lines: &Receiver<String>,
    args: &DemoArgs,
    hoarder: &mut Option<Verifier>,
) -> Result<()> {
    let mut memory: Option<View> = None;
    let mut last_segment = None;
    loop {
        let line = next_line(lines, "the producer guest", Duration::from_secs(60))?;
        if line.starts_with("done ") {
            ensure!(
                value(&line, "sent") == Some(args.frames),
                "the producer: {line}"
            );
            return Ok(());
        }
        let (Some(seq), Some(len), Some(delivered), Some(segment)) = (
            value(&line, "seq"),
            value(&line, "len"),
            value(&line, "delivered"),
            value(&line, "segment"),
        ) else {
            bail!("the producer guest: {line}");
        };
        if last_segment != Some(segment) {
            last_segment = Some(segment);
            let view = match &memory {
                Some(view) => view,
                None => memory.insert(
                    View::builder("frames")
                        .config(config)
                        .open(AccessMode::Read)
                        .context("a view of the producer's memory")?,
                ),
            };
            println!(
                "producer: frame {seq:>4}: {len:>8} B written in place in segment {segment} \
                 (new), delivered to {delivered}; live segments: {}",
                view.segment_records().len()
            );
        }
        if seq == args.frames / 2
            && !args.no_kill
            && let Some(victim) = hoarder.take()
        {
            kill_and_watch(config, victim)?;
        }
    }
}

/// Kills the hoarding subscriber and waits for the publisher to reclaim its slot.
fn kill_and_watch(config: &Config, mut victim: Verifier) -> Result<()> {
    let before = resmem::channel::service_info("frames", config)?;
    let borrowed = before
        .subscribers
        .iter()
        .find(|s| s.slot == victim.slot)
        .map_or(0, |s| s.borrowed);
    victim
        .child
        .kill()
        .context("killing the hoarding subscriber")?;
    victim.child.wait()?;
    let killed = Instant::now();
    let reclaimed = loop {
        let info = resmem::channel::service_info("frames", config)?;
        if !info.subscribers.iter().any(|s| s.slot == victim.slot) {
            break Some(info.subscribers.len());
        }
        if killed.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let Some(left) = reclaimed else {
        bail!("the killed subscriber's slot was not reclaimed within 5 s");
    };
    println!(
        "kill:     SIGKILL to hoarding subscriber pid {} (slot {}) holding {borrowed} samples; \
         the producer's publisher reclaimed the slot and its samples {:.1} ms later; {left} \
         subscribers remain",
        victim.pid,
        victim.slot,
        killed.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
