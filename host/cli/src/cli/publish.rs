//! `resmem publish`: offers a service and sends samples (a file's contents, whole or in
//! chunks, or the checkable pattern), paced, once its subscribers are there; then waits until
//! they have taken what was sent.

use std::alloc::Layout;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::pattern;
use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, ValueEnum};
use resmem::channel::{self, ChannelError, Overflow, Publisher};
use resmem::{AccessMode, Config, View};

use super::interrupt::{self, EXIT_INTERRUPTED};
use super::{NamespaceArgs, parse_duration, parse_size};

/// Exit code when the subscribers did not come within `--timeout` (as `timeout(1)`).
const EXIT_TIMEOUT: i32 = 124;
/// Largest first segment `publish` asks for (the memory grows beyond it when needed).
const FIRST_SEGMENT_BYTES: usize = 64 << 20;
/// How often the publisher looks for subscribers (joining, taking samples back) while it waits.
const POLL: Duration = Duration::from_millis(5);
/// When `publish` says that it waits for subscribers.
const ANNOUNCE_AFTER: Duration = Duration::from_millis(250);

#[derive(Args)]
#[command(
    group(ArgGroup::new("payload").required(true).args(["file", "pattern"])),
    after_help = "Samples: with --pattern, every sample is LEN bytes of the pattern of SEED (the \
one `peer --pattern` and the demo use); with --file, every sample is the whole file, or with \
--chunk the file is cut into samples of SIZE bytes as it is read (good for pipes: \
`producer | resmem publish cam --file - --chunk 64K`).\n\n\
Exit codes: 0 sent; 1 error; 2 bad arguments; 124 fewer than --wait-subscribers subscribers \
within --timeout (nothing sent); 130 interrupted (SIGINT/SIGTERM; the service is removed)."
)]
pub struct PublishArgs {
    /// The service's name (without the namespace prefix).
    service: String,
    /// Send this file's contents (`-`: standard input): the whole file as every sample, or
    /// pieces of --chunk bytes.
    #[arg(long, value_name = "F")]
    file: Option<PathBuf>,
    /// Cut --file into samples of at most SIZE bytes (4096, 64K, 1M), read as they are sent;
    /// the last one may be shorter.
    #[arg(long, value_name = "SIZE", requires = "file", value_parser = parse_len)]
    chunk: Option<usize>,
    /// Send samples filled with the pattern of this seed (`subscribe --verify SEED` checks it).
    #[arg(long, value_name = "SEED", requires = "len")]
    pattern: Option<u64>,
    /// Bytes per pattern sample (4096, 64K, 1M).
    #[arg(long, value_name = "N", requires = "pattern", value_parser = parse_len)]
    len: Option<usize>,
    /// Samples to send [default: 1; with --chunk: until the end of the file].
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Samples per second (`10`, `0.5`) [default: as fast as the subscribers take them].
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Wait for this many subscribers before the first sample (0: send at once).
    #[arg(long, value_name = "N", default_value_t = 1)]
    wait_subscribers: usize,
    /// How long to wait for --wait-subscribers at the start, and at the end for the
    /// subscribers to take back what was sent (from their last progress): `500ms`, `2s`, `1m`.
    #[arg(long, value_name = "T", default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// When a subscriber's queue is full: wait for it, drop its oldest queued sample, or
    /// skip it for this sample.
    #[arg(long, value_enum, default_value_t = OverflowArg::Block)]
    overflow: OverflowArg,
    /// Most subscribers at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_subscribers: usize,
    /// Queue length per subscriber.
    #[arg(long, value_name = "N", default_value_t = 16)]
    buffer: usize,
    /// One line per sample on stderr: index, bytes, how many subscribers got it.
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum OverflowArg {
    Block,
    DropOldest,
    DropNewest,
}

impl From<OverflowArg> for Overflow {
    fn from(arg: OverflowArg) -> Self {
        match arg {
            OverflowArg::Block => Self::Block,
            OverflowArg::DropOldest => Self::DropOldest,
            OverflowArg::DropNewest => Self::DropNewest,
        }
    }
}

fn parse_len(text: &str) -> Result<usize> {
    let bytes = usize::try_from(parse_size(text)?).context("too large")?;
    if bytes > channel::MAX_SAMPLE_LEN {
        bail!("a sample holds at most {} bytes", channel::MAX_SAMPLE_LEN);
    }
    Ok(bytes)
}

fn parse_rate(text: &str) -> Result<f64> {
    let rate: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("not a rate in Hz: {text:?}"))?;
    if !(rate.is_finite() && rate > 0.0) {
        bail!("the rate must be a positive number of samples per second, got {text:?}");
    }
    Ok(rate)
}

/// Where the samples' bytes come from.
enum Source {
    /// The same bytes for every sample (a whole file, or the pattern).
    Repeat(Vec<u8>),
    /// Pieces of a stream, read into each loan.
    Chunks(Box<dyn Read>, usize),
}

impl Source {
    fn open(args: &PublishArgs) -> Result<Self> {
        if let (Some(seed), Some(len)) = (args.pattern, args.len) {
            return Ok(Self::Repeat(
                (0..len).map(|i| pattern::byte(seed, i)).collect(),
            ));
        }
        let path = args
            .file
            .as_ref()
            .context("--file or --pattern is needed")?;
        let stdin = path.as_os_str() == "-";
        let what = || {
            if stdin {
                "standard input".to_owned()
            } else {
                format!("'{}'", path.display())
            }
        };
        let mut reader: Box<dyn Read> = if stdin {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", what()))?)
        };
        if let Some(chunk) = args.chunk {
            if chunk == 0 {
                bail!("--chunk must be at least 1 byte");
            }
            return Ok(Self::Chunks(reader, chunk));
        }
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", what()))?;
        if bytes.len() > channel::MAX_SAMPLE_LEN {
            bail!("{} is larger than a sample may be; use --chunk", what());
        }
        Ok(Self::Repeat(bytes))
    }

    /// The size the first segment is laid out for.
    fn sample_size(&self) -> usize {
        match self {
            Self::Repeat(bytes) => bytes.len(),
            Self::Chunks(_, chunk) => *chunk,
        }
    }
}

fn subscribers(n: usize) -> String {
    format!("{n} subscriber{}", if n == 1 { "" } else { "s" })
}

/// How many subscribers the samples reached.
#[derive(Default)]
struct Stats {
    samples: u64,
    bytes: u64,
    min: Option<usize>,
    max: usize,
    unheard: u64,
}

impl Stats {
    fn add(&mut self, len: usize, delivered: usize) {
        self.samples += 1;
        self.bytes += len as u64;
        self.min = Some(self.min.map_or(delivered, |m| m.min(delivered)));
        self.max = self.max.max(delivered);
        if delivered == 0 {
            self.unheard += 1;
        }
    }

    fn reach(&self) -> String {
        let text = match self.min {
            None => "no sample sent".to_owned(),
            Some(min) if min == self.max => format!("each to {}", subscribers(min)),
            Some(min) => format!("each to {min} to {} subscribers", self.max),
        };
        if self.unheard > 0 {
            format!("{text}; {} reached no subscriber", self.unheard)
        } else {
            text
        }
    }
}

pub fn publish(args: &PublishArgs) -> Result<i32> {
    interrupt::install();
    let (namespace, config) = args.namespace.resolve();
    let mut source = Source::open(args)?;
    let publisher = create(args, &namespace, &config, source.sample_size())?;
    eprintln!(
        "resmem: publishing '{}' in namespace '{namespace}' (pid {})",
        args.service,
        std::process::id()
    );
    if !wait_for_subscribers(args, &publisher)? {
        return Ok(if interrupt::interrupted() {
            EXIT_INTERRUPTED
        } else {
            EXIT_TIMEOUT
        });
    }
    // Our own view of the memory: its header counts the chunks the subscribers still hold.
    let view = View::builder(&args.service)
        .config(&config)
        .open(AccessMode::Read);
    let start = Instant::now();
    let mut stats = Stats::default();
    let count = match source {
        Source::Chunks(..) => args.count.unwrap_or(u64::MAX),
        Source::Repeat(_) => args.count.unwrap_or(1),
    };
    let mut index = 0;
    while index < count {
        if let Some(rate) = args.rate {
            let due = start + Duration::from_secs_f64(index as f64 / rate);
            if !interrupt::sleep_until(due) {
                break;
            }
        }
        if interrupt::interrupted() {
            break;
        }
        let Some((len, delivered)) = send_one(&publisher, &mut source)
            .with_context(|| format!("sending sample {index} of '{}'", args.service))?
        else {
            break;
        };
        stats.add(len, delivered);
        if args.verbose {
            eprintln!(
                "resmem: sample {index}: {len} bytes to {}",
                subscribers(delivered)
            );
        }
        index += 1;
    }
    let elapsed = start.elapsed();
    let outstanding = match &view {
        Ok(view) => drain(&publisher, view, args.timeout),
        Err(_) => 0,
    };
    let seconds = elapsed.as_secs_f64();
    eprintln!(
        "resmem: published {} samples, {} bytes, to '{}' ({}) in {seconds:.3} s ({:.1} MB/s)",
        stats.samples,
        stats.bytes,
        args.service,
        stats.reach(),
        stats.bytes as f64 / seconds.max(1e-9) / 1e6,
    );
    if outstanding > 0 {
        eprintln!(
            "resmem: warning: {outstanding} samples still queued or held by subscribers after \
             {:?} without progress; they may be lost",
            args.timeout
        );
    }
    Ok(if interrupt::interrupted() {
        EXIT_INTERRUPTED
    } else {
        0
    })
}

/// Creates the publisher; takes over a stale service (publisher gone) and says so.
fn create(
    args: &PublishArgs,
    namespace: &str,
    config: &Config,
    sample_size: usize,
) -> Result<Publisher> {
    let service = &args.service;
    let stale = channel::list_services(config)
        .map(|names| names.iter().any(|n| n == service))
        .unwrap_or(false)
        && !channel::is_publisher_alive(service, config).unwrap_or(true);
    if stale {
        let pid = channel::service_info(service, config)
            .map(|info| info.publisher_pid.to_string())
            .unwrap_or_else(|_| "unknown".into());
        eprintln!("resmem: taking over stale service '{service}' (publisher pid {pid} is gone)");
    }
    let size = sample_size.max(1);
    // Room for what can be in flight to one subscriber, but not a huge first segment: the
    // memory grows when more is needed.
    let chunks = args
        .buffer
        .saturating_add(9)
        .min(FIRST_SEGMENT_BYTES / size)
        .max(1);
    let layout = Layout::from_size_align(size, 8).context("sample size too large")?;
    Publisher::builder(service)
        .config(config)
        .max_subscribers(args.max_subscribers)
        .buffer_size(args.buffer)
        .overflow(args.overflow.into())
        .max_chunk_layout_hint(layout)
        .max_number_of_chunks_hint(chunks)
        .reclaim_stale(true)
        .create()
        .map_err(|e| match e {
            ChannelError::AlreadyExists => {
                let owner = channel::service_info(service, config)
                    .map(|info| format!("a live publisher (pid {})", info.publisher_pid))
                    .unwrap_or_else(|_| "a live publisher or a memory of that name".into());
                anyhow::anyhow!("service '{service}' is taken by {owner}")
            }
            e => anyhow::Error::new(e),
        })
        .with_context(|| format!("creating service '{service}' in namespace '{namespace}'"))
}

/// Waits for `--wait-subscribers` subscribers; `false` on timeout or interruption.
fn wait_for_subscribers(args: &PublishArgs, publisher: &Publisher) -> Result<bool> {
    let wanted = args.wait_subscribers;
    if wanted > args.max_subscribers {
        bail!(
            "--wait-subscribers {wanted} exceeds --max-subscribers {}",
            args.max_subscribers
        );
    }
    if wanted == 0 {
        return Ok(true);
    }
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut announced = false;
    loop {
        let connected = publisher.number_of_subscribers();
        if connected >= wanted {
            return Ok(true);
        }
        if interrupt::interrupted() {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "resmem: {connected} of {} within {:?}; nothing sent (--wait-subscribers 0 \
                 sends without waiting)",
                subscribers(wanted),
                args.timeout
            );
            return Ok(false);
        }
        // Subscribers already waiting join within milliseconds: no message for them.
        if !announced && start.elapsed() >= ANNOUNCE_AFTER {
            announced = true;
            eprintln!(
                "resmem: waiting up to {:?} for {} ({connected} so far)",
                args.timeout,
                subscribers(wanted)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Sends the next sample; `None` at the end of a chunked input. Returns its length and how
/// many subscribers got it.
fn send_one(publisher: &Publisher, source: &mut Source) -> Result<Option<(usize, usize)>> {
    match source {
        Source::Repeat(bytes) => Ok(Some((bytes.len(), publisher.send_copy(bytes)?))),
        Source::Chunks(reader, chunk) => {
            let layout = Layout::from_size_align(*chunk, 8).context("chunk size too large")?;
            let mut sample = publisher.loan(layout)?;
            let filled = read_full(reader, sample.payload_mut()).context("reading the input")?;
            if filled == 0 {
                // End of input; the loan goes back unsent.
                return Ok(None);
            }
            sample.set_len(filled);
            Ok(Some((filled, sample.send()?)))
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Waits until the subscribers gave back every sample (or are gone), at most `timeout` since
/// their last progress: samples still queued when the memory goes may be lost. Returns how
/// many are still out.
fn drain(publisher: &Publisher, view: &View, timeout: Duration) -> u64 {
    let in_use = || -> u64 {
        view.segment_records().iter().fold(0, |sum, (_, record)| {
            sum.saturating_add(record.chunks_in_use)
        })
    };
    let mut deadline = Instant::now() + timeout;
    let mut last = u64::MAX;
    loop {
        // Takes returned samples in (and reclaims what dead subscribers held).
        let connected = publisher.number_of_subscribers();
        let out = in_use();
        if out == 0 || connected == 0 || interrupt::interrupted() {
            return 0;
        }
        if out < last {
            last = out;
            deadline = Instant::now() + timeout;
        } else if Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(POLL);
    }
}
