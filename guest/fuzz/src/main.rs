//! Fuzz guest: `fuzz <seed> [ops]` makes a seeded random sequence of valid and hostile calls
//! of `resizable-memory` and `channel` (default 1500) and checks every answer against its own
//! model of its memories, chunks (with their contents), views and registrations, and of its
//! publishers, loans, subscribers, queued and held samples (see `channel/`). Hostile calls
//! must fail with the error the contract names; valid ones must succeed and return exactly the
//! bytes the model holds. Prints `seed <seed>: <summary>` and exits 0, or prints the first
//! violation on stderr and exits 1. The summary is
//!
//! ```text
//! seed <seed>: <ops> ops, <calls> calls, peak <n> chunks; <memory outcome>=<count> ...;
//!   channel: <calls> calls, <n> sent, <n> delivered, <n> received, <n> dropped, <n> missed,
//!   <n> disconnected, <n> polls, peak <n> loans; <channel outcome>=<count> ...
//! ```
//!
//! (one line; `calls` counts both parts, outcomes are `ok` or WIT error names). The channel
//! part expects the host's default channel quotas.
//!
//! Memory names start with `fz<seed>-`, service names with `fc<seed>-`, so guests with
//! different seeds can share a namespace.
//!
//! `fuzz churn <name> <seed> <ops>` is the stress mode: it creates memory `name`, allocates
//! four pinned chunks filled with `resmem_guest::pattern` (seeds `seed..seed + 4`), prints
//! `chunk offset=<u64> len=<n> seed=<s>` for each and `ready`, then allocates, grows and frees
//! other chunks `ops` times (checking their contents and that no chunk overlaps another live
//! one), re-checking the pinned chunks as it goes, prints `churned <summary>` and waits for a
//! line on stdin before it exits (peers verify the pinned chunks meanwhile).

mod channel;
mod checks;
mod churn;
mod hostile;
mod memories;
mod quotas;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::process::exit;

use resmem_guest::bindings::resmem::memory::resizable_memory as wit;
use resmem_guest::bindings::resmem::memory::types::{
    AccessMode, AllocationStrategy, ContentPlacement, Error, Layout, PointerOffset,
};

/// Limits that keep one run small: many seeds run at once in one host.
const MAX_MEMORIES: usize = 4;
const MAX_VIEWS: usize = 4;
const MAX_CHUNKS: usize = 48;
const MAX_CHUNK: u64 = 64 * 1024;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("churn") {
        let words: Vec<String> = args.skip(1).collect();
        let [name, seed, ops] = &words[..] else {
            eprintln!("usage: fuzz churn <name> <seed> <ops>");
            exit(2)
        };
        let (Ok(seed), Ok(ops)) = (seed.parse(), ops.parse()) else {
            eprintln!("usage: fuzz churn <name> <seed> <ops>");
            exit(2)
        };
        return churn::churn(name, seed, ops);
    }
    let seed: u64 = match args.next().map(|s| s.parse()) {
        Some(Ok(seed)) => seed,
        _ => {
            eprintln!("usage: fuzz <seed> [ops]");
            exit(2)
        }
    };
    let ops: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1500);
    let mut fuzz = Fuzz::new(seed);
    for step in 0..ops {
        fuzz.step = step;
        fuzz.one();
        fuzz.check_model();
    }
    fuzz.teardown();
    let outcomes = |map: &BTreeMap<&str, u64>| {
        let counts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
        counts.join(" ")
    };
    let s = &fuzz.ch.stats;
    println!(
        "seed {seed}: {ops} ops, {} calls, peak {} chunks; {}; channel: {} calls, {} sent, \
         {} delivered, {} received, {} dropped, {} missed, {} disconnected, {} polls, \
         peak {} loans; {}",
        fuzz.calls,
        fuzz.peak_chunks,
        outcomes(&fuzz.outcomes),
        fuzz.channel_calls,
        s.sent,
        s.delivered,
        s.received,
        s.dropped,
        s.missed,
        s.disconnected,
        s.polls,
        s.peak_loans,
        outcomes(&fuzz.channel_outcomes),
    );
}

/// splitmix64: small, seeded, and good enough to pick calls.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

struct ChunkModel {
    size: u64,
    data: Vec<u8>,
}

struct MemoryModel {
    raw: wit::Memory,
    name: String,
    /// Packed offset → chunk.
    chunks: BTreeMap<u64, ChunkModel>,
    /// Offsets handed out and returned since (possibly handed out again: check `chunks`).
    freed: Vec<PointerOffset>,
}

struct ViewModel {
    raw: wit::View,
    /// Index into `memories` by name: views of dropped memories keep `None`.
    memory: Option<String>,
    writable: bool,
    /// Packed offset → registrations.
    registered: HashMap<u64, u32>,
}

struct Fuzz {
    seed: u64,
    rng: Rng,
    step: u64,
    calls: u64,
    peak_chunks: usize,
    next_name: u64,
    memories: Vec<MemoryModel>,
    views: Vec<ViewModel>,
    /// Outcome name → count of the memory calls, for the summary.
    outcomes: BTreeMap<&'static str, u64>,
    /// Which part the calls being made belong to.
    part: Part,
    ch: channel::Channels,
    channel_calls: u64,
    /// Outcome name → count of the channel calls.
    channel_outcomes: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Memory,
    Channel,
}

fn pack(o: PointerOffset) -> u64 {
    (o.offset << 8) | u64::from(o.segment)
}

fn unpack(p: u64) -> PointerOffset {
    PointerOffset {
        segment: p as u8,
        offset: p >> 8,
    }
}

fn name_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidName(_) => "invalid-name",
        Error::InvalidLayout(_) => "invalid-layout",
        Error::InvalidOffset(_) => "invalid-offset",
        Error::AlreadyExists => "already-exists",
        Error::DoesNotExist => "does-not-exist",
        Error::PermissionDenied(_) => "permission-denied",
        Error::OutOfMemory => "out-of-memory",
        Error::MaxReallocationsReached => "max-reallocations-reached",
        Error::QuotaExceeded(_) => "quota-exceeded",
        Error::Timeout => "timeout",
        Error::Io(_) => "io",
        Error::LimitReached(_) => "limit-reached",
        Error::Disconnected => "disconnected",
    }
}

impl Fuzz {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: Rng(seed ^ 0x5EED_F00D),
            step: 0,
            calls: 0,
            peak_chunks: 0,
            next_name: 0,
            memories: Vec::new(),
            views: Vec::new(),
            outcomes: BTreeMap::new(),
            part: Part::Memory,
            ch: channel::Channels::default(),
            channel_calls: 0,
            channel_outcomes: BTreeMap::new(),
        }
    }

    fn fail(&self, what: &str) -> ! {
        eprintln!("seed {} step {}: {what}", self.seed, self.step);
        exit(1)
    }

    /// Counts the outcome and returns the result.
    fn note<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        self.calls += 1;
        let key = match &result {
            Ok(_) => "ok",
            Err(e) => name_of(e),
        };
        let outcomes = match self.part {
            Part::Memory => &mut self.outcomes,
            Part::Channel => {
                self.channel_calls += 1;
                &mut self.channel_outcomes
            }
        };
        *outcomes.entry(key).or_default() += 1;
        result
    }

    /// A call that must succeed.
    fn must<T>(&mut self, what: &str, result: Result<T, Error>) -> T {
        match self.note(result) {
            Ok(value) => value,
            Err(e) => self.fail(&format!("{what}: expected success, got {e:?}")),
        }
    }

    /// A call that must fail with one of `expected` (WIT error names).
    fn must_fail<T>(&mut self, what: &str, expected: &[&str], result: Result<T, Error>) {
        match self.note(result) {
            Ok(_) => self.fail(&format!("{what}: expected {expected:?}, got success")),
            Err(e) if expected.contains(&name_of(&e)) => {}
            Err(e) => self.fail(&format!("{what}: expected {expected:?}, got {e:?}")),
        }
    }

    fn fresh_name(&mut self) -> String {
        self.next_name += 1;
        format!("fz{}-{}", self.seed, self.next_name)
    }

    fn live_chunks(&self) -> usize {
        self.memories.iter().map(|m| m.chunks.len()).sum()
    }

    /// One random call: of the channel part a little less than half of the time.
    fn one(&mut self) {
        if self.rng.chance(45) {
            self.part = Part::Channel;
            self.channel_one();
            self.part = Part::Memory;
            return;
        }
        match self.rng.below(100) {
            0..=5 => self.create(),
            6..=7 => self.drop_memory(),
            8..=27 => self.allocate(),
            28..=35 => self.deallocate(),
            36..=41 => self.grow(),
            42..=51 => self.write_chunk(),
            52..=61 => self.read_chunk(),
            62..=64 => self.open_view(),
            65 => self.drop_view(),
            66..=71 => self.register(),
            72..=74 => self.unregister(),
            75..=81 => self.view_io(),
            82..=84 => self.names(),
            85..=95 => self.hostile(),
            _ => self.hog(),
        }
        self.peak_chunks = self.peak_chunks.max(self.live_chunks());
    }

    fn config(&mut self) -> wit::MemoryConfig {
        let size = self.rng.pick(&[1, 64, 256, 4096]);
        wit::MemoryConfig {
            max_chunk_layout_hint: Layout { size, align: 8 },
            max_number_of_chunks_hint: self.rng.below(16) + 1,
            allocation_strategy: self.rng.pick(&[
                AllocationStrategy::BestFit,
                AllocationStrategy::PowerOfTwo,
                AllocationStrategy::PowerOfTwo,
                AllocationStrategy::Static,
            ]),
        }
    }
}
