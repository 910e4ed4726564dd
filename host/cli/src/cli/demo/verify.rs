//! `resmem verify-frames` (hidden): the demo's native subscriber process. Receives frames of a
//! service, checks every byte, measures each frame's latency from its stamp, releases it (or
//! keeps the first `--hold`), and ends with one `stats` line for the demo to print.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use resmem::{ChannelError, Subscriber};
use resmem_host::frame;

use crate::cli::NamespaceArgs;

#[derive(Args)]
pub struct VerifyArgs {
    /// The service (without the namespace prefix).
    service: String,
    /// Frames to take before the stats line.
    #[arg(long)]
    count: u64,
    /// The publisher's frame seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every payload byte is XORed with this (a filter's key).
    #[arg(long, default_value_t = 0)]
    key: u8,
    /// Keep the first N samples instead of releasing them (a subscriber that hoards).
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Longest wait for one frame.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn verify(args: &VerifyArgs) -> Result<i32> {
    let (_, config) = args.namespace.resolve();
    let subscriber = Subscriber::builder(&args.service)
        .config(&config)
        .timeout(Duration::from_secs(30))
        .open()
        .with_context(|| format!("opening a subscriber of {:?}", args.service))?;
    println!(
        "joined slot={} pid={}",
        subscriber.slot(),
        std::process::id()
    );
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut held = Vec::new();
    let mut latencies = Vec::with_capacity(args.count as usize);
    let (mut bytes, mut next_seq) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while (latencies.len() as u64) < args.count {
        let sample = match subscriber.receive_timeout(timeout) {
            Ok(Some(sample)) => sample,
            Ok(None) => bail!(
                "no frame within {timeout:?} after {} frames",
                latencies.len()
            ),
            Err(ChannelError::PublisherGone) => break,
            Err(e) => return Err(e).context("receiving a frame"),
        };
        let checked = frame::check(sample.payload(), args.seed, args.key)
            .map_err(|e| anyhow::anyhow!("frame {} differs: {e}", latencies.len()))?;
        latencies.push(now_ns().saturating_sub(checked.stamp_ns));
        first.get_or_insert_with(Instant::now);
        if checked.seq != next_seq {
            bail!("frame {} arrived where {next_seq} was due", checked.seq);
        }
        next_seq += 1;
        bytes += sample.len() as u64;
        if (held.len() as u64) < args.hold {
            held.push(sample);
            println!("holding {}", held.len());
        }
    }
    let seconds = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "stats samples={} bytes={bytes} p50_ns={} p99_ns={} seconds={seconds:.6}",
        latencies.len(),
        at(0.5),
        at(0.99)
    );
    drop(held);
    Ok(0)
}
