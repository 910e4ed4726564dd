//! `resmem subscribe`: joins a service and takes its samples: checks them against the pattern,
//! writes them out, or prints one line each; optionally goes on with the next publisher.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::pattern;
use anyhow::{Context, Result};
use clap::Args;
use resmem::Config;
use resmem::channel::{ChannelError, Sample, Subscriber};

use super::interrupt::{self, EXIT_INTERRUPTED};
use super::{NamespaceArgs, parse_duration};

/// A sample differs from the pattern of `--verify`.
const EXIT_MISMATCH: i32 = 3;
/// The publisher went away before `--count` samples arrived.
const EXIT_SHORT: i32 = 4;
/// `--timeout` passed without a publisher or a sample (as `timeout(1)`).
const EXIT_TIMEOUT: i32 = 124;
/// Longest single wait: how soon a signal or `--timeout` is noticed.
const SLICE: Duration = Duration::from_millis(200);

#[derive(Args)]
#[command(
    after_help = "Without --output, one line per sample goes to stdout (index, bytes, \
offset); the summary (samples, bytes, verified) always goes to stderr.\n\n\
Exit codes: 0 done (--count samples, or the publisher is gone); 1 error; 2 bad arguments; \
3 a sample differs from --verify's pattern; 4 the publisher went away before --count samples; \
124 no publisher, or no sample, within --timeout; 130 interrupted (SIGINT/SIGTERM)."
)]
pub struct SubscribeArgs {
    /// The service's name (without the namespace prefix).
    service: String,
    /// Stop after N samples [default: when the publisher is gone; with --follow, never].
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Check every byte of every sample against the pattern of `publish --pattern SEED`.
    #[arg(long, value_name = "SEED")]
    verify: Option<u64>,
    /// Write the payloads back to back to FILE (`-`: standard output).
    #[arg(long, value_name = "FILE|-")]
    output: Option<PathBuf>,
    /// Give up when no publisher appears (at the start, or after one left with --follow) or
    /// no sample arrives within T: `500ms`, `2s`, `1m` [default: wait forever].
    #[arg(long, value_name = "T", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// When the publisher is gone, wait for a new one and go on.
    #[arg(long)]
    follow: bool,
    /// No line per sample on stdout (the summary on stderr stays).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

/// What was received so far.
struct Tally {
    samples: u64,
    bytes: u64,
    verified: u64,
    publishers: u64,
    /// When the first sample arrived.
    start: Option<Instant>,
}

impl Tally {
    fn summary(&self, args: &SubscribeArgs, end: &str) {
        let verified = match args.verify {
            Some(seed) => format!("{} verified against seed {seed}", self.verified),
            None => "not verified".into(),
        };
        let publishers = if self.publishers > 1 {
            format!(" from {} publishers", self.publishers)
        } else {
            String::new()
        };
        eprintln!(
            "resmem: received {} samples, {} bytes of '{}'{publishers} ({verified}) in {:.3} s; {end}",
            self.samples,
            self.bytes,
            args.service,
            self.start
                .map_or(0.0, |start| start.elapsed().as_secs_f64())
        );
    }
}

/// How waiting for a publisher ended.
enum Opened {
    Yes(Box<Subscriber>),
    TimedOut,
    Interrupted,
}

pub fn subscribe(args: &SubscribeArgs) -> Result<i32> {
    interrupt::install();
    let (namespace, config) = args.namespace.resolve();
    let mut output = open_output(args)?;
    let lines = !args.quiet && output.is_none();
    let mut tally = Tally {
        samples: 0,
        bytes: 0,
        verified: 0,
        publishers: 0,
        start: None,
    };
    let service = &args.service;
    let done = |tally: &Tally| args.count.is_some_and(|count| tally.samples >= count);
    loop {
        if done(&tally) {
            break;
        }
        let subscriber = match open(args, &config)
            .with_context(|| format!("subscribing to '{service}' in namespace '{namespace}'"))?
        {
            Opened::Yes(subscriber) => subscriber,
            Opened::TimedOut => {
                let waited = args.timeout.unwrap_or_default();
                tally.summary(args, &format!("no publisher within {waited:?}"));
                return Ok(EXIT_TIMEOUT);
            }
            Opened::Interrupted => {
                tally.summary(args, "interrupted");
                return Ok(EXIT_INTERRUPTED);
            }
        };
        tally.publishers += 1;
        if tally.publishers > 1 {
            eprintln!("resmem: a new publisher of '{service}'; going on");
        }
        let mut last = Instant::now();
        loop {
            if done(&tally) {
                break;
            }
            if interrupt::interrupted() {
                tally.summary(args, "interrupted");
                return Ok(EXIT_INTERRUPTED);
            }
            let slice = match args.timeout {
                Some(timeout) => SLICE.min(timeout.saturating_sub(last.elapsed())),
                None => SLICE,
            };
            match subscriber.receive_timeout(slice) {
                Ok(Some(sample)) => {
                    if let Some(code) = take(args, &mut tally, &sample, &mut output, lines)? {
                        return Ok(code);
                    }
                    last = Instant::now();
                }
                Ok(None) => {
                    if let Some(timeout) = args.timeout
                        && last.elapsed() >= timeout
                    {
                        tally.summary(args, &format!("no sample within {timeout:?}"));
                        return Ok(EXIT_TIMEOUT);
                    }
                }
                Err(ChannelError::PublisherGone) => break,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "receiving sample {} of '{service}' in namespace '{namespace}'",
                            tally.samples
                        )
                    });
                }
            }
        }
        if done(&tally) {
            break;
        }
        if !args.follow {
            return Ok(match args.count {
                Some(count) => {
                    tally.summary(
                        args,
                        &format!("the publisher is gone after {} of {count}", tally.samples),
                    );
                    EXIT_SHORT
                }
                None => {
                    tally.summary(args, "the publisher is gone");
                    0
                }
            });
        }
        eprintln!("resmem: the publisher of '{service}' is gone; waiting for a new one");
    }
    tally.summary(args, "done");
    Ok(0)
}

fn open_output(args: &SubscribeArgs) -> Result<Option<Box<dyn Write>>> {
    Ok(match &args.output {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(Box::new(std::io::stdout().lock())),
        Some(path) => Some(Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating '{}'", path.display()))?,
        ))),
    })
}

/// Waits for a publisher: `--timeout` if given, else until interrupted.
fn open(args: &SubscribeArgs, config: &Config) -> Result<Opened> {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(deadline) => SLICE.min(deadline.saturating_duration_since(Instant::now())),
            None => SLICE,
        };
        match Subscriber::builder(&args.service)
            .config(config)
            .timeout(slice)
            .open()
        {
            Ok(subscriber) => return Ok(Opened::Yes(Box::new(subscriber))),
            // Not there yet, or only a stale one: a new publisher may come.
            Err(ChannelError::DoesNotExist | ChannelError::PublisherGone) => {}
            Err(e) => return Err(e.into()),
        }
        if interrupt::interrupted() {
            return Ok(Opened::Interrupted);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(Opened::TimedOut);
        }
    }
}

/// Checks, writes and counts one sample; `Some(exit code)` when the command must stop.
fn take(
    args: &SubscribeArgs,
    tally: &mut Tally,
    sample: &Sample<'_>,
    output: &mut Option<Box<dyn Write>>,
    lines: bool,
) -> Result<Option<i32>> {
    let payload = sample.payload();
    let index = tally.samples;
    tally.start.get_or_insert_with(Instant::now);
    let mut verified = "";
    if let Some(seed) = args.verify {
        if let Some(at) = pattern::first_mismatch(seed, payload) {
            eprintln!(
                "resmem: sample {index} ({} bytes, offset {}): byte {at} is {:#04x}, expected \
                 {:#04x} (pattern seed {seed})",
                payload.len(),
                sample.offset(),
                payload[at],
                pattern::byte(seed, at)
            );
            tally.summary(args, &format!("MISMATCH in sample {index}"));
            return Ok(Some(EXIT_MISMATCH));
        }
        tally.verified += 1;
        verified = ", verified";
    }
    if let Some(out) = output {
        out.write_all(payload)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing sample {index}"))?;
    }
    if lines {
        println!(
            "sample {index}: {} bytes at {}{verified}",
            payload.len(),
            sample.offset()
        );
    }
    tally.samples += 1;
    tally.bytes += payload.len() as u64;
    Ok(None)
}
