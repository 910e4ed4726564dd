//! Channel guest: publisher, subscriber, filter and hostile-holder roles on
//! `resmem:memory/channel`, for the tests and the demo. Every frame is a
//! `resmem_guest::frame` (sequence number, tag, stamp, pattern), so native peers check every
//! byte.
//!
//! ```text
//! channel pub <service> <count> <first-size> [--max-size N] [--grow-every K] [--map]
//!             [--seed S] [--overflow drop-oldest|drop-newest|block] [--buffer N]
//!             [--subscribers N] [--interval-us U] [--linger-ms M]
//! channel sub <service> <count> [--map] [--seed S] [--key K] [--timeout-ms T] [--open-ms T]
//! channel filter <in> <out> <count> [--seed S] [--key K] [--map] [--subscribers N]
//!             [--timeout-ms T]
//! channel hold <out-service> <in-service> <loans> <samples> [--then trap|exit|sleep]
//! ```
//!
//! - `pub` creates `service`, waits (up to 30 s) for `--subscribers` subscribers (default 1,
//!   0 to not wait), sends `count` frames of `first-size << (i / K)` bytes (capped at
//!   `--max-size`; K default 1, so sizes double and the memory grows while subscribers are
//!   connected), written by copy or in place (`--map`); prints `sent seq=<i> len=<n>
//!   delivered=<d> segment=<id>` per frame and `done sent=<count>`, then keeps the service for `--linger-ms`
//!   (default 0) so subscribers drain.
//! - `sub` opens `service` (waiting `--open-ms`, default 10 s), waits for frames with
//!   `receive_timeout` (wasi:io/poll; `--timeout-ms` per frame, default 30 s), checks every byte
//!   (payload XOR `--key`, default 0) by copy or in place (`--map`), prints `got seq=<i>
//!   len=<n> stamp=<ns>` per frame, and ends with `done received=<n>` after `count`, or
//!   `disconnected received=<n>` / `timeout received=<n>`.
//! - `filter` receives from `in`, XORs every payload byte with `--key` (default 0x5A),
//!   restamps, publishes to `out`; prints `filtered seq=<i> len=<n> delivered=<d>`.
//! - `hold` creates `out-service`, takes `loans` loans, opens `in-service` and holds `samples`
//!   received samples, prints `holding loans=<l> samples=<s>`, waits for a line on stdin, then
//!   traps (`unreachable`),
//!   exits (with failure: WASI 0.2's exit carries no other code), or sleeps until the host
//!   stops it.
//!
//! A failure prints `failed <what> error=<wit error name>: <detail>` and exits with code 1.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use resmem_guest::channel::{ChannelConfig, Overflow, Publisher, Sample, Subscriber};
use resmem_guest::{AllocationStrategy, Error, Layout, MemoryConfig, frame};

const USAGE: &str = "usage: channel pub|sub|filter|hold ... (see the source's doc comment)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((role, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let opts = Opts::parse(rest);
    let result = match role.as_str() {
        "pub" => publish(&opts),
        "sub" => subscribe(&opts),
        "filter" => filter(&opts),
        "hold" => hold(&opts),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err((what, e)) => {
            println!(
                "failed {what} error={}: {}",
                e.name(),
                e.detail().unwrap_or("")
            );
            ExitCode::from(1)
        }
    }
}

type Outcome = Result<ExitCode, (&'static str, Error)>;

/// Positional arguments and `--flag value` options.
struct Opts {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = match name {
                    "map" => None,
                    _ => it.next().cloned(),
                };
                flags.push((name.to_owned(), value));
            } else {
                positional.push(arg.clone());
            }
        }
        Self { positional, flags }
    }

    fn pos(&self, i: usize) -> &str {
        self.positional
            .get(i)
            .map_or_else(|| panic!("{USAGE}"), String::as_str)
    }

    fn pos_num(&self, i: usize) -> u64 {
        self.pos(i).parse().unwrap_or_else(|_| panic!("{USAGE}"))
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name).map_or(default, |v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|_| panic!("--{name}: a number"))
        })
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn config(opts: &Opts, largest: u64) -> ChannelConfig {
    let overflow = match opts.get("overflow") {
        None | Some("drop-oldest") => Overflow::DropOldest,
        Some("drop-newest") => Overflow::DropNewest,
        Some("block") => Overflow::Block,
        Some(other) => panic!("--overflow {other}: drop-oldest, drop-newest or block"),
    };
    let mut config = ChannelConfig::new(MemoryConfig::new(
        Layout::new(largest.max(frame::HEADER as u64), 8),
        4,
        AllocationStrategy::PowerOfTwo,
    ));
    config.buffer_size = opts.num("buffer", 16) as u32;
    config.max_loans = opts.num("loans", 16) as u32;
    config.overflow = overflow;
    config
}

/// Waits for `count` subscribers, polling (30 s at most).
fn await_subscribers(publisher: &Publisher, count: u32) -> bool {
    for _ in 0..3000 {
        if publisher.number_of_subscribers() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn publish(opts: &Opts) -> Outcome {
    let service = opts.pos(0);
    let count = opts.pos_num(1);
    let first = opts.pos_num(2).max(frame::HEADER as u64);
    let max = opts.num("max-size", u64::MAX);
    let grow_every = opts.num("grow-every", 1).max(1);
    let seed = opts.num("seed", 1);
    let interval = Duration::from_micros(opts.num("interval-us", 0));
    // Segment 0 sized for the first frame: the later, larger ones grow the memory.
    let publisher = Publisher::create(service, config(opts, first)).map_err(|e| ("create", e))?;
    let wanted = opts.num("subscribers", 1) as u32;
    if !await_subscribers(&publisher, wanted) {
        return Err(("wait", Error::Timeout));
    }
    let mut buf = Vec::new();
    for seq in 0..count {
        let shift = (seq / grow_every).min(40) as u32;
        let len = first
            .saturating_mul(1u64 << shift)
            .min(max)
            .max(frame::HEADER as u64);
        let mut sample = publisher.loan_bytes(len).map_err(|e| ("loan", e))?;
        buf.resize(len as usize, 0);
        frame::fill(&mut buf, seed, seq, now_ns(), 0);
        if opts.has("map") {
            let mut window = sample.map().map_err(|e| ("map", e))?;
            window.copy_from(0, &buf);
        } else {
            sample.write_at(0, &buf).map_err(|e| ("write", e))?;
        }
        let segment = sample.offset().segment();
        let delivered = sample.send().map_err(|e| ("send", e))?;
        println!("sent seq={seq} len={len} delivered={delivered} segment={segment}");
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    println!("done sent={count}");
    std::thread::sleep(Duration::from_millis(opts.num("linger-ms", 0)));
    Ok(ExitCode::SUCCESS)
}

/// The sample's bytes, by copy or through the window.
fn bytes_of(sample: &Sample<'_>, map: bool) -> Result<Vec<u8>, (&'static str, Error)> {
    if map {
        let window = sample.map().map_err(|e| ("map", e))?;
        Ok(window.to_vec(0, window.len()))
    } else {
        sample.read_all().map_err(|e| ("read", e))
    }
}

/// Receives one frame (waiting `timeout`), or says why there is none.
enum Next<'s> {
    Frame(Sample<'s>),
    Disconnected,
    Timeout,
}

fn next<'s>(
    subscriber: &'s Subscriber,
    timeout: Duration,
) -> Result<Next<'s>, (&'static str, Error)> {
    match subscriber.receive_timeout(timeout) {
        Ok(Some(sample)) => Ok(Next::Frame(sample)),
        Ok(None) => Ok(Next::Timeout),
        Err(Error::Disconnected) => Ok(Next::Disconnected),
        Err(e) => Err(("receive", e)),
    }
}

fn subscribe(opts: &Opts) -> Outcome {
    let service = opts.pos(0);
    let count = opts.pos_num(1);
    let seed = opts.num("seed", 1);
    let key = opts.num("key", 0) as u8;
    let timeout = Duration::from_millis(opts.num("timeout-ms", 30_000));
    let subscriber = Subscriber::open(service, Duration::from_millis(opts.num("open-ms", 10_000)))
        .map_err(|e| ("open", e))?;
    println!("subscribed");
    let mut received = 0;
    while received < count {
        let sample = match next(&subscriber, timeout)? {
            Next::Frame(sample) => sample,
            Next::Disconnected => {
                println!("disconnected received={received}");
                return Ok(ExitCode::SUCCESS);
            }
            Next::Timeout => {
                println!("timeout received={received}");
                return Ok(ExitCode::from(4));
            }
        };
        let bytes = bytes_of(&sample, opts.has("map"))?;
        match frame::check(&bytes, seed, key) {
            Ok(f) => println!("got seq={} len={} stamp={}", f.seq, bytes.len(), f.stamp_ns),
            Err(e) => {
                println!("bad len={} {e}", bytes.len());
                return Ok(ExitCode::from(5));
            }
        }
        received += 1;
    }
    println!("done received={received}");
    Ok(ExitCode::SUCCESS)
}

fn filter(opts: &Opts) -> Outcome {
    let (input, output) = (opts.pos(0), opts.pos(1));
    let count = opts.pos_num(2);
    let seed = opts.num("seed", 1);
    let key = opts.num("key", 0x5A) as u8;
    let timeout = Duration::from_millis(opts.num("timeout-ms", 30_000));
    let publisher = Publisher::create(output, config(opts, 4096)).map_err(|e| ("create", e))?;
    let subscriber = Subscriber::open(input, Duration::from_secs(10)).map_err(|e| ("open", e))?;
    println!("subscribed");
    if !await_subscribers(&publisher, opts.num("subscribers", 1) as u32) {
        return Err(("wait", Error::Timeout));
    }
    let mut done = 0;
    while done < count {
        let sample = match next(&subscriber, timeout)? {
            Next::Frame(sample) => sample,
            Next::Disconnected => break,
            Next::Timeout => {
                println!("timeout filtered={done}");
                return Ok(ExitCode::from(4));
            }
        };
        let mut bytes = bytes_of(&sample, opts.has("map"))?;
        let seq = match frame::check(&bytes, seed, 0) {
            Ok(f) => f.seq,
            Err(e) => {
                println!("bad len={} {e}", bytes.len());
                return Ok(ExitCode::from(5));
            }
        };
        drop(sample);
        frame::xor_payload(&mut bytes, key);
        frame::restamp(&mut bytes, now_ns());
        let delivered = publisher.send_copy(&bytes).map_err(|e| ("send", e))?;
        println!(
            "filtered seq={seq} len={} delivered={delivered}",
            bytes.len()
        );
        done += 1;
    }
    println!("done filtered={done}");
    // Subscribers drain what is queued after the publisher goes.
    Ok(ExitCode::SUCCESS)
}

fn hold(opts: &Opts) -> Outcome {
    let (output, input) = (opts.pos(0), opts.pos(1));
    let (loans, samples) = (opts.pos_num(2), opts.pos_num(3));
    let mut config = config(opts, 4096);
    config.max_loans = loans.max(1) as u32;
    let publisher = Publisher::create(output, config).map_err(|e| ("create", e))?;
    let mut held_loans = Vec::new();
    for _ in 0..loans {
        held_loans.push(publisher.loan_bytes(4096).map_err(|e| ("loan", e))?);
    }
    let subscriber = Subscriber::open(input, Duration::from_secs(10)).map_err(|e| ("open", e))?;
    let mut held = Vec::new();
    while (held.len() as u64) < samples {
        match next(&subscriber, Duration::from_secs(30))? {
            Next::Frame(sample) => held.push(sample),
            Next::Disconnected | Next::Timeout => return Err(("receive", Error::Timeout)),
        }
    }
    println!("holding loans={} samples={}", held_loans.len(), held.len());
    // Until a line (or EOF) on stdin: the test queues more samples meanwhile.
    let _ = std::io::stdin().read_line(&mut String::new());
    match opts.get("then").unwrap_or("trap") {
        "exit" => std::process::exit(1),
        "sleep" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        _ => std::process::abort(),
    }
}
