//! `resmem-bridge`: forwards channel services between hosts over Zenoh.
//!
//! ```text
//! resmem-bridge run [--export S]... [--import S]... [--namespace P] [--listen E]...
//!                   [--connect E]... [--key-prefix resmem] [--zenoh-config FILE]
//!                   [--no-multicast] [--buffer-size N] [--max-subscribers N]
//!                   [--overflow drop-oldest|drop-newest|block] [--max-hold-ms MS]
//!                   [--status-ms MS]
//! ```
//!
//! Prints `bridge zid=<id> ready` once forwarding, log lines (`import S: gap of N samples
//! ...`), and every `--status-ms` (default 1000; 0: never) one `status <export|import> <S>
//! samples=<n> bytes=<b> gaps=<g> dropped=<d> rate=<samples/s>` line per service whose counters
//! moved. Stops on SIGINT or SIGTERM (or end of stdin with `--stdin-stop`), printing a final
//! status of every service.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use resmem::{Config, Overflow};
use resmem_bridge::{Bridge, ServiceStats};

#[derive(Parser)]
#[command(
    name = "resmem-bridge",
    version,
    about = "Forward resmem channel services between hosts over Zenoh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export and import services until stopped.
    Run(RunArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum OverflowArg {
    DropOldest,
    DropNewest,
    Block,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A local service whose samples go out on `<key-prefix>/<SERVICE>`.
    #[arg(long = "export", value_name = "SERVICE")]
    exports: Vec<String>,
    /// A key `<key-prefix>/<SERVICE>` republished into the local service SERVICE.
    #[arg(long = "import", value_name = "SERVICE")]
    imports: Vec<String>,
    /// Prefix of the local OS object names [default: resmem_guest_, the host's].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A zenoh locator to listen on, e.g. tcp/0.0.0.0:7447.
    #[arg(long = "listen", value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// A zenoh locator to connect to, e.g. tcp/10.0.0.2:7447 (retried).
    #[arg(long = "connect", value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// First chunk of every key.
    #[arg(long, default_value = "resmem")]
    key_prefix: String,
    /// A zenoh configuration file to start from.
    #[arg(long)]
    zenoh_config: Option<std::path::PathBuf>,
    /// Turn multicast scouting off (use explicit endpoints).
    #[arg(long)]
    no_multicast: bool,
    /// Queue length of each imported service's subscribers [channel default: 16].
    #[arg(long)]
    buffer_size: Option<usize>,
    /// Subscribers of each imported service [channel default: 8].
    #[arg(long)]
    max_subscribers: Option<usize>,
    /// Overflow policy of imported services.
    #[arg(long, value_enum, default_value = "drop-oldest")]
    overflow: OverflowArg,
    /// Longest time in milliseconds a stalled link may keep an exporter from receiving;
    /// then it drops (counted) until the link moves again.
    #[arg(long, default_value_t = 100)]
    max_hold_ms: u64,
    /// Period of the status lines in milliseconds (0: only the final one).
    #[arg(long, default_value_t = 1000)]
    status_ms: u64,
    /// Also stop at the end of stdin (for supervisors and tests).
    #[arg(long)]
    stdin_stop: bool,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn status(s: &ServiceStats, rate: f64) -> String {
    format!(
        "status {} {} samples={} bytes={} gaps={} dropped={} looped={} rate={rate:.0}",
        s.direction, s.service, s.samples, s.bytes, s.gaps, s.dropped, s.looped
    )
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn run(args: RunArgs) -> Result<()> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| "resmem_guest_".to_owned());
    let config = Config::default().prefix(&namespace);
    let mut builder = Bridge::builder()
        .config(&config)
        .key_prefix(&args.key_prefix)
        .multicast(!args.no_multicast)
        .overflow(match args.overflow {
            OverflowArg::DropOldest => Overflow::DropOldest,
            OverflowArg::DropNewest => Overflow::DropNewest,
            OverflowArg::Block => Overflow::Block,
        })
        .max_hold(Duration::from_millis(args.max_hold_ms))
        .on_log(say);
    for s in &args.exports {
        builder = builder.export(s);
    }
    for s in &args.imports {
        builder = builder.import(s);
    }
    for e in &args.listen {
        builder = builder.listen(e);
    }
    for e in &args.connect {
        builder = builder.connect(e);
    }
    if let Some(path) = &args.zenoh_config {
        builder = builder.zenoh_config(path);
    }
    if let Some(n) = args.buffer_size {
        builder = builder.buffer_size(n);
    }
    if let Some(n) = args.max_subscribers {
        builder = builder.max_subscribers(n);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let bridge = builder.start().context("starting the bridge")?;
    say(&format!("bridge zid={} ready", bridge.zid()));
    if args.stdin_stop {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            STOP.store(true, Ordering::Relaxed);
        });
    }
    let period = Duration::from_millis(args.status_ms);
    let mut last = bridge.stats();
    let mut at = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if period.is_zero() || at.elapsed() < period {
            continue;
        }
        let now = bridge.stats();
        let seconds = at.elapsed().as_secs_f64();
        for (new, old) in now.iter().zip(&last) {
            if new != old {
                say(&status(new, (new.samples - old.samples) as f64 / seconds));
            }
        }
        last = now;
        at = Instant::now();
    }
    for s in bridge.stats() {
        say(&status(&s, 0.0));
    }
    bridge.stop();
    say("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resmem-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
