//! Command-line interface: one module per subcommand.

#[cfg(feature = "demo")]
mod demo;
mod filter;
mod inspect;
mod interrupt;
mod peer;
mod publish;
mod run;
mod services;
mod subscribe;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use resmem::Config;
use resmem_host::{DEFAULT_NAMESPACE, Quotas};

#[derive(Parser)]
#[command(
    name = "resmem",
    version,
    about = "Resizable shared memory for WebAssembly components and native peers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a wasi:cli command component with the resizable-memory interface.
    Run(run::RunArgs),
    /// List the memories and the services of a namespace.
    Ls(NamespaceArgs),
    /// Show a memory's header (owner, strategy, segments, bucket layout, chunks in use), or a
    /// service (publisher, limits, subscriber slots) and its memory.
    Inspect(inspect::InspectArgs),
    /// Remove every OS object of a memory (only when its owner is gone, unless --force) or of
    /// a service (only when its publisher is gone).
    Rm(inspect::RmArgs),
    /// Remove every stale service (publisher gone) and memory (owner gone) of a namespace;
    /// live ones are never touched.
    Gc(inspect::GcArgs),
    /// Offer a service and send samples: a file (whole or in chunks) or a checkable pattern.
    Publish(publish::PublishArgs),
    /// Take a service's samples: verify them, write them out, or print one line each.
    Subscribe(subscribe::SubscribeArgs),
    /// A native peer: open a view, map the offsets' segments, print or check chunk contents.
    Peer(peer::PeerArgs),
    /// Hand buffers of a memory to a chain of filter plugins; write what comes out.
    Filter(filter::FilterArgs),
    /// The main job: a zero-copy hand-off pipeline on channels between wasm guests and native
    /// processes.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// The demo's native subscriber process: verifies frames, prints latency stats.
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    VerifyFrames(demo::VerifyArgs),
}

/// Where the memories live.
#[derive(Args, Clone)]
pub struct NamespaceArgs {
    /// Prefix of the OS object names (the guests' namespace) [default: resmem_guest_].
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Use plain files in this directory instead of POSIX shared memory.
    #[arg(long)]
    pub backend_dir: Option<PathBuf>,
}

impl NamespaceArgs {
    /// The namespace and the native configuration for it; tells the user on stderr when the
    /// default namespace is used.
    pub fn resolve(&self) -> (String, Config) {
        let namespace = match &self.namespace {
            Some(ns) => ns.clone(),
            None => {
                eprintln!(
                    "resmem: namespace '{DEFAULT_NAMESPACE}' (default; --namespace to change)"
                );
                DEFAULT_NAMESPACE.to_owned()
            }
        };
        let config = Config::default().prefix(&namespace);
        let config = match &self.backend_dir {
            Some(dir) => config.backend(resmem::FileBacked::new(dir)),
            None => config,
        };
        (namespace, config)
    }
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Ls(args) => inspect::ls(&args).map(|()| 0),
        Command::Inspect(args) => inspect::inspect(&args).map(|()| 0),
        Command::Rm(args) => inspect::rm(&args),
        Command::Gc(args) => inspect::gc(&args),
        Command::Peer(args) => peer::peer(&args),
        Command::Publish(args) => publish::publish(&args),
        Command::Subscribe(args) => subscribe::subscribe(&args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::demo(&args),
        #[cfg(feature = "demo")]
        Command::VerifyFrames(args) => demo::verify(&args),
        Command::Filter(args) => filter::filter(&args),
    }
}

/// `4096`, `64K`, `16M`, `1G`, `2GiB` → bytes (binary units).
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .with_context(|| format!("not a size: {text:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => bail!("unknown size unit {other:?} in {text:?}"),
    };
    value
        .checked_mul(1 << shift)
        .with_context(|| format!("size overflows: {text:?}"))
}

/// The size of a guest's zero-copy window: whole 64 KiB wasm pages, leaving the heap at
/// least 64 MiB of the 4 GiB address space.
pub fn window_size(text: &str) -> Result<u64> {
    use resmem_host::window::{ADDRESS_SPACE, MIN_HEAP, SLOT_ALIGN};
    let bytes = parse_size(text)?;
    if bytes % SLOT_ALIGN != 0 {
        bail!("the window must be a multiple of 64 KiB, got {bytes} bytes");
    }
    if bytes > ADDRESS_SPACE - MIN_HEAP {
        bail!(
            "the window may take at most {} bytes of the 4 GiB address space (64 MiB stay heap), \
             got {bytes}",
            ADDRESS_SPACE - MIN_HEAP
        );
    }
    Ok(bytes)
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds (`30`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("not a duration: {text:?}"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("unknown duration unit {other:?} in {text:?} (ms, s, m, h)"),
    };
    Duration::try_from_secs_f64(seconds).with_context(|| format!("duration out of range: {text:?}"))
}

/// Applies `name=value` quota settings on top of the defaults.
pub fn parse_quotas(settings: &[String]) -> Result<Quotas> {
    let mut quotas = Quotas::default();
    for setting in settings {
        let (name, value) = setting
            .split_once('=')
            .with_context(|| format!("--quota takes NAME=VALUE, got {setting:?}"))?;
        let count = || -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("not a number: {value:?}"))
        };
        match name {
            "shm-bytes" => quotas.shm_bytes = parse_size(value)?,
            "chunk-bytes" => quotas.chunk_bytes = parse_size(value)?,
            "io-bytes" => quotas.io_bytes = parse_size(value)?,
            "live-chunks" => quotas.live_chunks = count()?,
            "registrations" => quotas.registrations = count()?,
            "memories" => {
                quotas.memories = u32::try_from(count()?).context("memories: too large")?
            }
            "views" => quotas.views = u32::try_from(count()?).context("views: too large")?,
            "open-timeout-ms" => quotas.open_timeout = std::time::Duration::from_millis(count()?),
            "window-bytes" => quotas.window_bytes = window_size(value)?,
            "wasm-memory" => quotas.wasm_memory_bytes = parse_size(value)?,
            "publishers" => {
                quotas.publishers = u32::try_from(count()?).context("publishers: too large")?
            }
            "subscribers" => {
                quotas.subscribers = u32::try_from(count()?).context("subscribers: too large")?
            }
            "loans" => quotas.loans = count()?,
            "borrowed" => quotas.borrowed = count()?,
            "channel-config" => {
                quotas.channel_config =
                    u32::try_from(count()?).context("channel-config: too large")?
            }
            "block-timeout-ms" => quotas.block_timeout = std::time::Duration::from_millis(count()?),
            other => bail!(
                "unknown quota {other:?}; known: shm-bytes, chunk-bytes, io-bytes, live-chunks, \
                 registrations, memories, views, open-timeout-ms, window-bytes, wasm-memory, \
                 publishers, subscribers, loans, borrowed, channel-config, block-timeout-ms"
            ),
        }
    }
    Ok(quotas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn window_sizes_are_whole_pages_below_the_heap_minimum() {
        assert_eq!(window_size("1G").unwrap(), 1 << 30);
        assert_eq!(window_size("0").unwrap(), 0);
        assert!(window_size("100K").is_err());
        assert!(window_size("4G").is_err());
        assert_eq!(window_size("4032M").unwrap(), 4032 << 20);
        assert!(window_size("4033M").is_err());
        let q = parse_quotas(&["window-bytes=512M".into()]).unwrap();
        assert_eq!(q.window_bytes, 512 << 20);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn quotas_override_defaults() {
        let q = parse_quotas(&["shm-bytes=2G".into(), "memories=3".into()]).unwrap();
        assert_eq!(q.shm_bytes, 2 << 30);
        assert_eq!(q.memories, 3);
        let q = parse_quotas(&["wasm-memory=64M".into()]).unwrap();
        assert_eq!(q.wasm_memory_bytes, 64 << 20);
        assert_eq!(q.chunk_bytes, Quotas::default().chunk_bytes);
        assert!(parse_quotas(&["nope=1".into()]).is_err());
        assert!(parse_quotas(&["memories".into()]).is_err());
        let q = parse_quotas(&[
            "publishers=2".into(),
            "subscribers=3".into(),
            "loans=4".into(),
            "borrowed=5".into(),
            "channel-config=6".into(),
            "block-timeout-ms=70".into(),
        ])
        .unwrap();
        assert_eq!(
            (
                q.publishers,
                q.subscribers,
                q.loans,
                q.borrowed,
                q.channel_config
            ),
            (2, 3, 4, 5, 6)
        );
        assert_eq!(q.block_timeout, Duration::from_millis(70));
        assert!(parse_quotas(&["publishers=5000000000".into()]).is_err());
    }
}
