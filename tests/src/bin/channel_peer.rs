//! `resmem-channel-peer`: a publisher or subscriber process for the channel's cross-process
//! tests (tests/tests/channel.rs). Every mode takes `--prefix P` and a service name; samples
//! carry the checkable content of `resmem_e2e::sample` (id, tag, seeded pattern).
//!
//! ```text
//! publish SVC --count N --len L --seed S [--len-max M | --grow] [--threads T]
//!             [--wait-subscribers W] [--quiet] [publisher options]
//!     prints `created`, `subscribers <n>` once W joined, `sent <id> <len> <offset> <delivered>`
//!     per sample (thread t's n-th sample has id t << 32 | n), `published samples=<n>
//!     delivered=<d>`, then waits for end of stdin (or `exit`), drops the publisher: `dropped`.
//! subscribe SVC --count N --verify S [--hold K] [--recheck] [--gate] [--delay-ms D]
//!             [--until-empty] [--probe-borrow] [--threads T] [--quiet] [--then-wait]
//!     prints `opening`, `joined slot=<k>`; with --gate waits for a stdin line first; receives
//!     N samples (or, --until-empty, until none is queued), checks every byte, prints
//!     `got <id> <len> <offset>`, keeps the K newest (re-checked when dropped, --recheck);
//!     --probe-borrow prints `limit borrowed=<n>` at BorrowLimitReached and drops the oldest;
//!     --threads checks that every publisher thread's samples arrive complete and in order.
//!     Ends with `done samples=<n> bytes=<b> [per-thread=<c0>,<c1>,...]`.
//! hold SVC --take K --verify S     receives K samples, keeps them, prints `holding`, and
//!     waits for end of stdin (a test SIGKILLs it first).
//! latency SVC --count N            per sample: `lat <ns>` from the send stamp in its first
//!     8 bytes (CLOCK_REALTIME ns) to the return of receive_timeout.
//! idle SVC --ms D                  `waiting`, one receive_timeout(D) that must time out,
//!     `idle done elapsed_ms=<ms>`, then waits for end of stdin.
//! scribble SVC, hostile-publish SVC --seed S   hostile peers driven by stdin (hostile.rs).
//! slow-join SVC                    the join protocol by hand, paused mid-way (join.rs).
//! frames SVC --count N --seed S [--key K] [--hold-after H]
//!     the guests' frames (`resmem_guest::frame`, payload XOR K): prints `joined slot=<k>`,
//!     per frame `frame <seq> <len> <latency_ns>` (from its stamp), `frames done count=<n>`
//!     (also when the publisher goes first); after H frames it keeps every later one and
//!     prints `holding <n>` per frame (a test kills it then).
//! send-frames SVC --count N --len L [--len-max M] --seed S [--wait-subscribers W]
//!             [--interval-us U] [publisher options]
//!     sends N frames of L, 2L, 4L, ... bytes (capped at M), prints `sent <seq> <len>
//!     <delivered>` per frame and `sent done`, then waits for end of stdin.
//! ```
//!
//! Publisher options: `--policy drop-oldest|drop-newest|block --buffer B --max-subscribers M
//! --max-borrowed K --max-loans L --chunk-size C --chunk-hint H --strategy static|power-of-two`.
//! Common: `--open-timeout-ms` (5000), `--timeout-ms` (per receive, 10000),
//! `--max-lifetime-s` (120: the peer exits by itself if a harness forgot it).
//! A failed channel call prints `error <ChannelError:?>` on stdout and exits with
//! `exit::CHANNEL`; a wrong byte exits with `exit::MISMATCH`.

#[path = "channel_peer/frames.rs"]
mod frames;
#[path = "channel_peer/hostile.rs"]
mod hostile;
#[path = "channel_peer/join.rs"]
mod join;

use std::alloc::Layout;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use resmem::{AllocationStrategy, ChannelError, Config, Overflow, Publisher, Sample, Subscriber};
use resmem_e2e::exit;
use resmem_e2e::sample::{check_sample, fill_sample, now_ns, sample_id, sample_seed, split_id};

/// Why the peer failed; decides the exit code.
pub enum Failure {
    Usage(String),
    Channel(String, ChannelError),
    Mismatch(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Other(e.into())
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// `map_err` for channel calls: names what failed.
pub fn ch(what: &str) -> impl FnOnce(ChannelError) -> Failure + '_ {
    move |e| Failure::Channel(what.to_owned(), e)
}

const SWITCHES: &[&str] = &[
    "--grow",
    "--gate",
    "--recheck",
    "--probe-borrow",
    "--until-empty",
    "--quiet",
    "--then-wait",
];

/// `MODE SERVICE --flag value --switch ...`.
pub struct Args {
    pub service: String,
    values: HashMap<String, String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Self> {
        let usage = |m: String| Failure::Usage(m);
        let service = args
            .first()
            .filter(|s| !s.starts_with("--"))
            .ok_or_else(|| usage("missing service name".into()))?
            .clone();
        let mut values = HashMap::new();
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            if !flag.starts_with("--") {
                return Err(usage(format!("unexpected argument {flag:?}")));
            }
            let value = if SWITCHES.contains(&flag.as_str()) {
                String::new()
            } else {
                rest.next()
                    .ok_or_else(|| usage(format!("{flag} needs a value")))?
                    .clone()
            };
            values.insert(flag.clone(), value);
        }
        Ok(Self { service, values })
    }

    pub fn switch(&self, flag: &str) -> bool {
        self.values.contains_key(flag)
    }

    pub fn get<T: FromStr>(&self, flag: &str) -> Result<Option<T>> {
        self.values
            .get(flag)
            .map(|v| {
                v.parse()
                    .map_err(|_| Failure::Usage(format!("{flag}: cannot parse {v:?}")))
            })
            .transpose()
    }

    pub fn or<T: FromStr>(&self, flag: &str, default: T) -> Result<T> {
        Ok(self.get(flag)?.unwrap_or(default))
    }

    pub fn need<T: FromStr>(&self, flag: &str) -> Result<T> {
        self.get(flag)?
            .ok_or_else(|| Failure::Usage(format!("{flag} is required")))
    }

    pub fn config(&self) -> Result<Config> {
        Ok(Config::default().prefix(&self.need::<String>("--prefix")?))
    }

    pub fn ms(&self, flag: &str, default: u64) -> Result<Duration> {
        Ok(Duration::from_millis(self.or(flag, default)?))
    }

    /// The publisher builder with every publisher option applied.
    pub fn publisher(&self) -> Result<Publisher> {
        let mut b = Publisher::builder(&self.service).config(&self.config()?);
        if let Some(policy) = self.get::<String>("--policy")? {
            b = b.overflow(match policy.as_str() {
                "drop-oldest" => Overflow::DropOldest,
                "drop-newest" => Overflow::DropNewest,
                "block" => Overflow::Block,
                other => return Err(Failure::Usage(format!("--policy {other:?}"))),
            });
        }
        if let Some(strategy) = self.get::<String>("--strategy")? {
            b = b.allocation_strategy(match strategy.as_str() {
                "static" => AllocationStrategy::Static,
                "power-of-two" => AllocationStrategy::PowerOfTwo,
                other => return Err(Failure::Usage(format!("--strategy {other:?}"))),
            });
        }
        if let Some(n) = self.get("--buffer")? {
            b = b.buffer_size(n);
        }
        if let Some(n) = self.get("--max-subscribers")? {
            b = b.max_subscribers(n);
        }
        if let Some(n) = self.get("--max-borrowed")? {
            b = b.max_borrowed(n);
        }
        if let Some(n) = self.get("--max-loans")? {
            b = b.max_loans(n);
        }
        if let Some(n) = self.get("--chunk-hint")? {
            b = b.max_number_of_chunks_hint(n);
        }
        if let Some(size) = self.get("--chunk-size")? {
            let layout = Layout::from_size_align(size, 8).map_err(|e| anyhow!("{e}"))?;
            b = b.max_chunk_layout_hint(layout);
        }
        b.create().map_err(ch("create publisher"))
    }

    pub fn subscriber(&self) -> Result<Subscriber> {
        say("opening");
        Subscriber::builder(&self.service)
            .config(&self.config()?)
            .timeout(self.ms("--open-timeout-ms", 5000)?)
            .open()
            .map_err(ch("open subscriber"))
    }
}

/// One line on stdout (line buffered: the test reads it at once).
pub fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

/// Reads stdin until end of input or a line `exit`.
pub fn wait_eof() {
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(line) if line.trim() == "exit" => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

pub fn wait_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Polls until `n` subscribers are connected.
pub fn wait_subscribers(publisher: &Publisher, n: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while publisher.number_of_subscribers() < n {
        if Instant::now() >= deadline {
            return Err(anyhow!("{n} subscribers did not join within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    say(format!("subscribers {}", publisher.number_of_subscribers()));
    Ok(())
}

/// Loans `len` bytes, fills them as sample `id` and sends; returns the offset and how many
/// subscribers got it.
pub fn send_sample(publisher: &Publisher, seed: u64, id: u64, len: usize) -> Result<(u64, usize)> {
    let layout = Layout::from_size_align(len, 8).map_err(|e| anyhow!("{e}"))?;
    let mut sample = publisher.loan(layout).map_err(ch("loan"))?;
    fill_sample(sample.payload_mut(), seed, id);
    let offset = sample.offset().as_u64();
    let delivered = sample.send().map_err(ch("send"))?;
    Ok((offset, delivered))
}

fn publish(a: &Args) -> Result<()> {
    let publisher = a.publisher()?;
    say("created");
    wait_subscribers(
        &publisher,
        a.or("--wait-subscribers", 0)?,
        a.ms("--open-timeout-ms", 20_000)?,
    )?;
    let (count, len, seed): (u32, usize, u64) =
        (a.need("--count")?, a.need("--len")?, a.need("--seed")?);
    let len_max: usize = a.or("--len-max", len)?;
    let (grow, quiet, threads) = (
        a.switch("--grow"),
        a.switch("--quiet"),
        a.or("--threads", 1)?,
    );
    let delivered = AtomicU64::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t: u32| {
                let (publisher, delivered) = (&publisher, &delivered);
                s.spawn(move || -> Result<()> {
                    for n in 0..count {
                        let id = sample_id(t, n);
                        let len = if grow {
                            len << n
                        } else {
                            let spread = len_max.saturating_sub(len) as u64 + 1;
                            len + (sample_seed(seed, id) % spread) as usize
                        };
                        let (offset, d) = send_sample(publisher, seed, id, len)?;
                        delivered.fetch_add(d as u64, Ordering::Relaxed);
                        if !quiet {
                            say(format!("sent {id} {len} {offset} {d}"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow!("a publisher thread panicked"))?
        })
    })?;
    say(format!(
        "published samples={} delivered={}",
        u64::from(count) * u64::from(threads),
        delivered.load(Ordering::Relaxed)
    ));
    wait_eof();
    drop(publisher);
    say("dropped");
    Ok(())
}

/// Drops the oldest kept sample, re-checking its bytes first when asked.
fn release_oldest(held: &mut VecDeque<(Sample<'_>, u64)>, seed: u64, recheck: bool) -> Result<()> {
    let Some((sample, id)) = held.pop_front() else {
        return Ok(());
    };
    if recheck {
        match check_sample(sample.payload(), seed) {
            Ok(again) if again == id => {}
            other => {
                return Err(Failure::Mismatch(format!(
                    "held sample {id} at {} changed while held: {other:?}",
                    sample.offset().as_u64()
                )));
            }
        }
    }
    Ok(())
}

fn subscribe(a: &Args, hold_mode: bool) -> Result<()> {
    let subscriber = a.subscriber()?;
    say(format!("joined slot={}", subscriber.slot()));
    if a.switch("--gate") {
        wait_line()?;
    }
    std::thread::sleep(a.ms("--delay-ms", 0)?);
    let seed: u64 = a.need("--verify")?;
    let (count, hold): (u64, usize) = if hold_mode {
        let take = a.need("--take")?;
        (take, take as usize)
    } else {
        (a.or("--count", 0)?, a.or("--hold", 0)?)
    };
    let timeout = a.ms("--timeout-ms", 10_000)?;
    let (until_empty, probe, quiet) = (
        a.switch("--until-empty"),
        a.switch("--probe-borrow"),
        a.switch("--quiet"),
    );
    let recheck = a.switch("--recheck") || hold_mode;
    let mut next = vec![0u32; a.or("--threads", 0)?];
    let mut held = VecDeque::new();
    let (mut got, mut bytes) = (0u64, 0u64);
    while until_empty || got < count {
        let result = if until_empty {
            subscriber.receive()
        } else {
            subscriber.receive_timeout(timeout)
        };
        let sample = match result {
            Ok(Some(sample)) => sample,
            Ok(None) if until_empty => break,
            Ok(None) => return Err(anyhow!("no sample within {timeout:?} after {got}").into()),
            Err(ChannelError::BorrowLimitReached) if probe && !held.is_empty() => {
                say(format!("limit borrowed={}", subscriber.borrowed()));
                release_oldest(&mut held, seed, recheck)?;
                continue;
            }
            Err(e) => return Err(Failure::Channel(format!("receive #{got}"), e)),
        };
        let id = check_sample(sample.payload(), seed).map_err(|e| {
            Failure::Mismatch(format!(
                "sample #{got} ({} bytes at {}): {e}",
                sample.len(),
                sample.offset().as_u64()
            ))
        })?;
        if !next.is_empty() {
            let (t, n) = split_id(id);
            match next.get_mut(t as usize) {
                Some(want) if *want == n => *want += 1,
                want => {
                    return Err(anyhow!("thread {t}: sample {n} arrived, expected {want:?}").into());
                }
            }
        }
        let line = format!("got {id} {} {}", sample.len(), sample.offset().as_u64());
        got += 1;
        bytes += sample.len() as u64;
        held.push_back((sample, id));
        while held.len() > hold {
            release_oldest(&mut held, seed, recheck)?;
        }
        // After the release: when the test reads `got`, the samples that fell out of the hold
        // window are back in the completion queue.
        if !quiet {
            say(line);
        }
    }
    if hold_mode {
        say("holding");
    }
    let per_thread = if next.is_empty() {
        String::new()
    } else {
        let counts: Vec<String> = next.iter().map(ToString::to_string).collect();
        format!(" per-thread={}", counts.join(","))
    };
    say(format!("done samples={got} bytes={bytes}{per_thread}"));
    if hold_mode || a.switch("--then-wait") {
        wait_eof();
    }
    while !held.is_empty() {
        release_oldest(&mut held, seed, recheck)?;
    }
    drop(held);
    drop(subscriber);
    say("left");
    Ok(())
}

fn latency(a: &Args) -> Result<()> {
    let subscriber = a.subscriber()?;
    say(format!("joined slot={}", subscriber.slot()));
    let timeout = a.ms("--timeout-ms", 10_000)?;
    for i in 0..a.need::<u64>("--count")? {
        let sample = subscriber
            .receive_timeout(timeout)
            .map_err(ch("receive_timeout"))?
            .ok_or_else(|| anyhow!("sample {i} did not arrive within {timeout:?}"))?;
        let now = now_ns();
        let stamp = u64::from_le_bytes(
            sample
                .payload()
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("latency sample shorter than 8 bytes"))?,
        );
        drop(sample);
        say(format!("lat {}", now.saturating_sub(stamp)));
    }
    say("done");
    Ok(())
}

fn idle(a: &Args) -> Result<()> {
    let subscriber = a.subscriber()?;
    let wait = a.ms("--ms", 1500)?;
    say("waiting");
    let start = Instant::now();
    if subscriber
        .receive_timeout(wait)
        .map_err(ch("receive_timeout"))?
        .is_some()
    {
        return Err(anyhow!("an idle subscriber received a sample").into());
    }
    say(format!(
        "idle done elapsed_ms={}",
        start.elapsed().as_millis()
    ));
    wait_eof();
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let (mode, rest) = args
        .split_first()
        .ok_or_else(|| Failure::Usage("missing mode".into()))?;
    let a = Args::parse(rest)?;
    let lifetime = Duration::from_secs(a.or("--max-lifetime-s", 120)?);
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!("resmem-channel-peer: max lifetime of {lifetime:?} exceeded, exiting");
        std::process::exit(exit::FAILURE);
    });
    match mode.as_str() {
        "publish" => publish(&a),
        "subscribe" => subscribe(&a, false),
        "hold" => subscribe(&a, true),
        "latency" => latency(&a),
        "idle" => idle(&a),
        "scribble" => hostile::scribble(&a),
        "hostile-publish" => hostile::publish(&a),
        "slow-join" => join::slow_join(&a),
        "frames" => frames::receive(&a),
        "send-frames" => frames::send(&a),
        other => Err(Failure::Usage(format!("unknown mode {other:?}"))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&args) {
        Ok(()) => exit::OK,
        Err(Failure::Usage(m)) => {
            eprintln!("resmem-channel-peer: usage: {m}");
            exit::USAGE
        }
        Err(Failure::Channel(what, e)) => {
            // The variant name first, for the test to match on.
            say(format!("error {e:?}"));
            eprintln!("resmem-channel-peer: {what}: {e:?} ({e})");
            exit::CHANNEL
        }
        Err(Failure::Mismatch(m)) => {
            say("error mismatch");
            eprintln!("resmem-channel-peer: mismatch: {m}");
            exit::MISMATCH
        }
        Err(Failure::Other(e)) => {
            eprintln!("resmem-channel-peer: error: {e:#}");
            exit::FAILURE
        }
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(code as u8)
}
