//! Fuzz guest: `fuzz <seed> [ops]` makes a seeded random sequence of valid and hostile calls
//! of `resizable-memory` and `channel` (default 1500) and checks every answer against its own
//! model of its memories, chunks (with their contents), views and registrations, and of its
//! publishers, loans, subscribers, queued and held samples (see `channel.rs`). Hostile calls
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
        return churn(name, seed, ops);
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

    fn create(&mut self) {
        if self.memories.len() >= MAX_MEMORIES {
            return self.drop_memory();
        }
        let name = self.fresh_name();
        let config = self.config();
        let raw = self.must("create", wit::Memory::create(&name, config));
        if raw.name() != name {
            self.fail("name() differs from the created name");
        }
        if raw.allocation_strategy() != config.allocation_strategy {
            self.fail("allocation_strategy() differs from the config");
        }
        let again = wit::Memory::create(&name, config);
        self.must_fail("create twice", &["already-exists"], again);
        let exists = wit::exists(&name);
        if !self.must("exists", exists) {
            self.fail("a created memory does not exist");
        }
        self.memories.push(MemoryModel {
            raw,
            name,
            chunks: BTreeMap::new(),
            freed: Vec::new(),
        });
    }

    fn drop_memory(&mut self) {
        if self.memories.is_empty() {
            return;
        }
        let i = self.rng.below(self.memories.len() as u64) as usize;
        let memory = self.memories.swap_remove(i);
        let name = memory.name.clone();
        drop(memory);
        for view in &mut self.views {
            if view.memory.as_deref() == Some(&name) {
                view.memory = None;
            }
        }
        let exists = wit::exists(&name);
        if self.must("exists after drop", exists) {
            self.fail("a dropped memory still exists");
        }
        let view = wit::View::open(&name, AccessMode::Read, 0);
        self.must_fail("open a dropped memory", &["does-not-exist"], view);
    }

    fn layout(&mut self) -> Layout {
        let size = match self.rng.below(10) {
            0 => 0,
            1..=5 => self.rng.below(512) + 1,
            6..=8 => self.rng.below(8192) + 1,
            _ => self.rng.below(MAX_CHUNK) + 1,
        };
        Layout {
            size,
            align: 1 << self.rng.below(7),
        }
    }

    fn memory_index(&mut self) -> Option<usize> {
        (!self.memories.is_empty()).then(|| self.rng.below(self.memories.len() as u64) as usize)
    }

    fn chunk_of(&mut self, m: usize) -> Option<u64> {
        let chunks = &self.memories[m].chunks;
        if chunks.is_empty() {
            return None;
        }
        let k = self.rng.below(chunks.len() as u64) as usize;
        chunks.keys().nth(k).copied()
    }

    fn allocate(&mut self) {
        let Some(m) = self.memory_index() else {
            return self.create();
        };
        if self.live_chunks() >= MAX_CHUNKS {
            return self.deallocate();
        }
        let layout = self.layout();
        let result = self.memories[m].raw.allocate(layout);
        let offset = match self.note(result) {
            Ok(offset) => offset,
            // A static memory may be full; the others grow.
            Err(Error::OutOfMemory)
                if self.memories[m].raw.allocation_strategy() == AllocationStrategy::Static =>
            {
                return;
            }
            Err(e) => self.fail(&format!("allocate {layout:?}: {e:?}")),
        };
        self.admit(m, offset, layout);
    }

    /// Checks a chunk just handed out and adds it to the model, filled with fresh bytes.
    fn admit(&mut self, m: usize, offset: PointerOffset, layout: Layout) {
        let packed = pack(offset);
        if !offset.offset.is_multiple_of(layout.align) {
            self.fail(&format!("{offset:?} is not aligned to {}", layout.align));
        }
        let end = offset.offset + layout.size.max(1);
        for (&other, chunk) in &self.memories[m].chunks {
            let o = unpack(other);
            if o.segment == offset.segment
                && o.offset < end
                && offset.offset < o.offset + chunk.size.max(1)
            {
                self.fail(&format!("{offset:?} overlaps the live chunk {o:?}"));
            }
        }
        let data = self.rng.bytes(layout.size as usize);
        let write = self.memories[m].raw.write(offset, 0, &data);
        self.must("fill a new chunk", write);
        self.memories[m].chunks.insert(
            packed,
            ChunkModel {
                size: layout.size,
                data,
            },
        );
    }

    fn deallocate(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let offset = unpack(packed);
        let result = self.memories[m].raw.deallocate(offset);
        self.must("deallocate", result);
        self.memories[m].chunks.remove(&packed);
        self.memories[m].freed.push(offset);
        let again = self.memories[m].raw.deallocate(offset);
        self.must_fail("double deallocate", &["invalid-offset"], again);
    }

    fn grow(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let old = unpack(packed);
        let old_size = self.memories[m].chunks[&packed].size;
        let placement = self
            .rng
            .pick(&[ContentPlacement::Front, ContentPlacement::Back]);
        if old_size > 0 && self.rng.chance(20) {
            let smaller = Layout {
                size: old_size - 1,
                align: 1,
            };
            let result = self.memories[m].raw.grow(old, smaller, placement);
            return self.must_fail("grow smaller", &["invalid-layout"], result);
        }
        let new_size = (old_size + self.rng.below(4096)).min(MAX_CHUNK.max(old_size));
        let new = Layout {
            size: new_size,
            align: 1 << self.rng.below(4),
        };
        let result = self.memories[m].raw.grow(old, new, placement);
        let grown = match self.note(result) {
            Ok(grown) => grown,
            Err(Error::OutOfMemory)
                if self.memories[m].raw.allocation_strategy() == AllocationStrategy::Static =>
            {
                return;
            }
            Err(e) => self.fail(&format!("grow {old:?} to {new:?}: {e:?}")),
        };
        let chunk = self.memories[m]
            .chunks
            .remove(&packed)
            .expect("in the model");
        let at = match placement {
            ContentPlacement::Front => 0,
            ContentPlacement::Back => (new_size - old_size) as usize,
        };
        let read = self.memories[m].raw.read(grown, 0, new_size);
        let bytes = self.must("read a grown chunk", read);
        if bytes[at..at + chunk.data.len()] != chunk.data[..] {
            self.fail(&format!("grow {placement:?} did not keep the content"));
        }
        if pack(grown) != packed {
            self.memories[m].freed.push(old);
            let stale = self.memories[m].raw.read(old, 0, 1.min(old_size));
            if !self.memories[m].chunks.contains_key(&packed) {
                self.must_fail("read the old offset after grow", &["invalid-offset"], stale);
            }
        }
        self.memories[m].chunks.insert(
            pack(grown),
            ChunkModel {
                size: new_size,
                data: bytes,
            },
        );
    }

    fn write_chunk(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let size = self.memories[m].chunks[&packed].size;
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let data = self.rng.bytes(len as usize);
        let result = self.memories[m].raw.write(unpack(packed), at, &data);
        self.must("write inside a chunk", result);
        self.memories[m]
            .chunks
            .get_mut(&packed)
            .expect("in the model")
            .data[at as usize..(at + len) as usize]
            .copy_from_slice(&data);
        // One byte past the end.
        let past = self.memories[m].raw.write(unpack(packed), size, &[1]);
        self.must_fail("write past a chunk", &["invalid-offset"], past);
    }

    fn read_chunk(&mut self) {
        let Some(m) = self.memory_index() else { return };
        let Some(packed) = self.chunk_of(m) else {
            return;
        };
        let size = self.memories[m].chunks[&packed].size;
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let result = self.memories[m].raw.read(unpack(packed), at, len);
        let bytes = self.must("read inside a chunk", result);
        let model = &self.memories[m].chunks[&packed].data[at as usize..(at + len) as usize];
        if bytes != model {
            self.fail(&format!("read {len} bytes at {at}: not what was written"));
        }
        let past = self.memories[m].raw.read(unpack(packed), at, size - at + 1);
        self.must_fail("read past a chunk", &["invalid-offset"], past);
    }

    fn open_view(&mut self) {
        if self.views.len() >= MAX_VIEWS {
            return self.drop_view();
        }
        let Some(m) = self.memory_index() else { return };
        let name = self.memories[m].name.clone();
        let writable = self.rng.chance(50);
        let mode = if writable {
            AccessMode::ReadWrite
        } else {
            AccessMode::Read
        };
        let raw = self.must("open a view", wit::View::open(&name, mode, 0));
        if raw.number_of_active_segments() > self.memories[m].raw.number_of_active_segments() {
            self.fail("a fresh view maps more segments than its memory has");
        }
        self.views.push(ViewModel {
            raw,
            memory: Some(name),
            writable,
            registered: HashMap::new(),
        });
    }

    fn drop_view(&mut self) {
        if !self.views.is_empty() {
            let i = self.rng.below(self.views.len() as u64) as usize;
            self.views.swap_remove(i);
        }
    }

    /// A view of a live memory and one of its memory's chunks.
    fn view_and_chunk(&mut self) -> Option<(usize, usize, u64)> {
        if self.views.is_empty() {
            return None;
        }
        let v = self.rng.below(self.views.len() as u64) as usize;
        let name = self.views[v].memory.clone()?;
        let m = self.memories.iter().position(|m| m.name == name)?;
        let packed = self.chunk_of(m)?;
        Some((v, m, packed))
    }

    fn register(&mut self) {
        let Some((v, _, packed)) = self.view_and_chunk() else {
            return;
        };
        let result = self.views[v].raw.register(unpack(packed));
        self.must("register a live chunk", result);
        *self.views[v].registered.entry(packed).or_default() += 1;
    }

    fn unregister(&mut self) {
        if self.views.is_empty() {
            return;
        }
        let v = self.rng.below(self.views.len() as u64) as usize;
        let Some(&packed) = self.views[v].registered.keys().next() else {
            let result = self.views[v].raw.unregister(unpack(12345 << 8));
            return self.must_fail("unregister an unknown offset", &["invalid-offset"], result);
        };
        let result = self.views[v].raw.unregister(unpack(packed));
        self.must("unregister", result);
        let count = self.views[v]
            .registered
            .get_mut(&packed)
            .expect("registered");
        *count -= 1;
        if *count == 0 {
            self.views[v].registered.remove(&packed);
        }
    }

    /// Reads (and writes, through writable views) a registered live chunk; the owner's read
    /// must see what the view wrote.
    fn view_io(&mut self) {
        let Some((v, m, packed)) = self.view_and_chunk() else {
            return;
        };
        let offset = unpack(packed);
        let size = self.memories[m].chunks[&packed].size;
        if !self.views[v].registered.contains_key(&packed) {
            let result = self.views[v].raw.read(offset, 0, size.min(1));
            return self.must_fail("read an unregistered offset", &["invalid-offset"], result);
        }
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let result = self.views[v].raw.read(offset, at, len);
        let bytes = self.must("read a registered chunk", result);
        if bytes[..] != self.memories[m].chunks[&packed].data[at as usize..(at + len) as usize] {
            self.fail("a view read other bytes than the owner wrote");
        }
        let data = self.rng.bytes(len as usize);
        let result = self.views[v].raw.write(offset, at, &data);
        if self.views[v].writable {
            self.must("write through a read-write view", result);
            self.memories[m]
                .chunks
                .get_mut(&packed)
                .expect("in the model")
                .data[at as usize..(at + len) as usize]
                .copy_from_slice(&data);
            let back = self.memories[m].raw.read(offset, at, len);
            if self.must("owner reads the view's write", back) != data {
                self.fail("the owner does not see a view's write");
            }
        } else {
            self.must_fail(
                "write through a read-only view",
                &["permission-denied"],
                result,
            );
        }
        let overflow = self.views[v].raw.read(offset, u64::MAX, 2);
        self.must_fail(
            "view read with at + len overflowing",
            &["invalid-offset"],
            overflow,
        );
    }

    fn names(&mut self) {
        let listed = self.must("list", wit::list());
        for memory in &self.memories {
            if !listed.contains(&memory.name) {
                self.fail(&format!("list misses {}", memory.name));
            }
        }
        let prefix = format!("fz{}-", self.seed);
        let ours = listed.iter().filter(|n| n.starts_with(&prefix)).count();
        if ours != self.memories.len() {
            self.fail(&format!(
                "list has {ours} of our memories, the model {}",
                self.memories.len()
            ));
        }
        if let Some(m) = self.memory_index() {
            let name = self.memories[m].name.clone();
            let result = wit::remove(&name);
            self.must_fail(
                "remove a memory with a live owner",
                &["permission-denied"],
                result,
            );
        }
        let missing = self.fresh_name();
        if self.must("exists of a fresh name", wit::exists(&missing)) {
            self.fail("a fresh name exists");
        }
        let removed = wit::remove(&missing);
        if self.must("remove of a fresh name", removed) {
            self.fail("remove of a fresh name removed something");
        }
    }

    /// One hostile call with the error it must produce.
    fn hostile(&mut self) {
        let config = self.config();
        match self.rng.below(16) {
            0 => {
                let name =
                    self.rng
                        .pick(&["", "a/b", "..", "a\0b", "/x", "../etc/passwd", "x/../y"]);
                let result = wit::Memory::create(name, config);
                self.must_fail("create with a bad name", &["invalid-name"], result);
                let result = wit::View::open(name, AccessMode::Read, 0);
                self.must_fail("open with a bad name", &["invalid-name"], result);
                self.must_fail(
                    "exists with a bad name",
                    &["invalid-name"],
                    wit::exists(name),
                );
                self.must_fail(
                    "remove with a bad name",
                    &["invalid-name"],
                    wit::remove(name),
                );
            }
            1 => {
                let name = "n".repeat(10 * 1024);
                let result = wit::Memory::create(&name, config);
                self.must_fail("create with a 10 KiB name", &["invalid-name"], result);
            }
            2 => {
                let mut config = config;
                config.max_chunk_layout_hint.align = self.rng.pick(&[0, 3, 1 << 63, 6]);
                let name = self.fresh_name();
                let result = wit::Memory::create(&name, config);
                self.must_fail("create with a bad hint", &["invalid-layout"], result);
            }
            3 => {
                let mut config = config;
                config.max_chunk_layout_hint.size = self.rng.pick(&[1 << 40, u64::MAX >> 1]);
                config.max_number_of_chunks_hint = self.rng.pick(&[1, 1 << 20, u64::MAX]);
                let name = self.fresh_name();
                let result = wit::Memory::create(&name, config);
                self.must_fail(
                    "create with a huge hint",
                    &["quota-exceeded", "invalid-layout"],
                    result,
                );
            }
            4..=5 => {
                let Some(m) = self.memory_index() else { return };
                let align = self.rng.pick(&[0, 3, 1 << 63, 12, u64::MAX]);
                let result = self.memories[m].raw.allocate(Layout { size: 8, align });
                self.must_fail("allocate with a bad alignment", &["invalid-layout"], result);
                let size = self.rng.pick(&[u64::MAX, u64::MAX - 7, 1 << 63]);
                let result = self.memories[m].raw.allocate(Layout { size, align: 8 });
                self.must_fail(
                    "allocate a size that overflows",
                    &["invalid-layout"],
                    result,
                );
                let result = self.memories[m].raw.allocate(Layout {
                    size: 1 << 40,
                    align: 8,
                });
                self.must_fail("allocate 1 TiB", &["quota-exceeded"], result);
            }
            6..=7 => {
                let Some(m) = self.memory_index() else { return };
                let forged = PointerOffset {
                    segment: self.rng.next() as u8,
                    offset: self
                        .rng
                        .pick(&[0, 8, 4096, 1 << 55, (1 << 56) - 1, 1 << 56, u64::MAX]),
                };
                if self.memories[m].chunks.contains_key(&pack(forged)) {
                    return;
                }
                let memory = &self.memories[m].raw;
                let (d, r, w, g) = (
                    memory.deallocate(forged),
                    memory.read(forged, 0, 1),
                    memory.write(forged, 0, &[1]),
                    memory.grow(
                        forged,
                        Layout { size: 16, align: 8 },
                        ContentPlacement::Front,
                    ),
                );
                self.must_fail("deallocate a forged offset", &["invalid-offset"], d);
                self.must_fail("read a forged offset", &["invalid-offset"], r);
                self.must_fail("write a forged offset", &["invalid-offset"], w);
                self.must_fail("grow a forged offset", &["invalid-offset"], g);
            }
            8 => {
                let Some(m) = self.memory_index() else { return };
                let Some(&freed) = self.memories[m].freed.last() else {
                    return;
                };
                if self.memories[m].chunks.contains_key(&pack(freed)) {
                    return;
                }
                let memory = &self.memories[m].raw;
                let (d, r, w) = (
                    memory.deallocate(freed),
                    memory.read(freed, 0, 1),
                    memory.write(freed, 0, &[1]),
                );
                self.must_fail("deallocate a freed offset", &["invalid-offset"], d);
                self.must_fail("read a freed offset", &["invalid-offset"], r);
                self.must_fail("write a freed offset", &["invalid-offset"], w);
            }
            9..=10 => {
                let Some(m) = self.memory_index() else { return };
                let Some(packed) = self.chunk_of(m) else {
                    return;
                };
                let offset = unpack(packed);
                let at = self.rng.pick(&[u64::MAX, u64::MAX - 1, 1 << 63, 1 << 32]);
                let memory = &self.memories[m].raw;
                let (r, w) = (
                    memory.read(offset, at, 2),
                    memory.write(offset, at, &[1, 2]),
                );
                let (huge, max) = (
                    memory.read(offset, 0, 1 << 32),
                    memory.read(offset, 1, u64::MAX),
                );
                self.must_fail("read with at + len overflowing", &["invalid-offset"], r);
                self.must_fail("write with at + len overflowing", &["invalid-offset"], w);
                self.must_fail("read 4 GiB", &["quota-exceeded"], huge);
                self.must_fail("read u64::MAX bytes", &["quota-exceeded"], max);
            }
            11 => {
                let Some(m) = self.memory_index() else { return };
                let Some(packed) = self.chunk_of(m) else {
                    return;
                };
                let align = self.rng.pick(&[0, 3, 1 << 63]);
                let result = self.memories[m].raw.grow(
                    unpack(packed),
                    Layout {
                        size: 1 << 20,
                        align,
                    },
                    ContentPlacement::Back,
                );
                self.must_fail("grow with a bad alignment", &["invalid-layout"], result);
            }
            12 => {
                if self.views.is_empty() {
                    return;
                }
                let v = self.rng.below(self.views.len() as u64) as usize;
                let forged = PointerOffset {
                    segment: self.rng.pick(&[0, 1, 17, 255]),
                    offset: self.rng.pick(&[1 << 40, (1 << 56) - 1, 1 << 56, u64::MAX]),
                };
                let result = self.views[v].raw.register(forged);
                self.must_fail("register a forged offset", &["invalid-offset"], result);
                let result = self.views[v].raw.read(forged, 0, 1);
                self.must_fail("view read of a forged offset", &["invalid-offset"], result);
            }
            13 => {
                let missing = self.fresh_name();
                let result = wit::View::open(&missing, AccessMode::ReadWrite, 0);
                self.must_fail("open a missing memory", &["does-not-exist"], result);
            }
            14 => {
                // Another namespace: names cannot leave the guest's prefix.
                let name = self.rng.pick(&["..resmem_x", "resmem_frames", "fz-other"]);
                let result = wit::View::open(name, AccessMode::Read, 0);
                self.must_fail(
                    "open a name that is not ours",
                    &["does-not-exist", "invalid-name"],
                    result,
                );
            }
            _ => {
                let Some(m) = self.memory_index() else { return };
                let Some(packed) = self.chunk_of(m) else {
                    return;
                };
                let size = self.memories[m].chunks[&packed].size;
                let memory = &self.memories[m].raw;
                let (past, end) = (
                    memory.read(unpack(packed), size + 1, 0),
                    memory.read(unpack(packed), size, 0),
                );
                self.must_fail(
                    "read an empty range past the end",
                    &["invalid-offset"],
                    past,
                );
                if !self.must("read an empty range at the end", end).is_empty() {
                    self.fail("an empty read returned bytes");
                }
            }
        }
    }

    /// Takes one kind of resource until the host refuses, then gives it all back.
    fn hog(&mut self) {
        match self.rng.below(3) {
            0 => {
                let mut extra = Vec::new();
                let error = loop {
                    let name = self.fresh_name();
                    let config = self.config();
                    match wit::Memory::create(&name, config) {
                        Ok(memory) => extra.push(memory),
                        Err(e) => break e,
                    }
                    if extra.len() > 1000 {
                        self.fail("1000 memories and no quota");
                    }
                };
                self.must_fail::<()>("memories beyond the quota", &["quota-exceeded"], Err(error));
            }
            1 => {
                let Some(m) = self.memory_index() else { return };
                let name = self.memories[m].name.clone();
                let mut extra = Vec::new();
                let error = loop {
                    match wit::View::open(&name, AccessMode::Read, 0) {
                        Ok(view) => extra.push(view),
                        Err(e) => break e,
                    }
                    if extra.len() > 1000 {
                        self.fail("1000 views and no quota");
                    }
                };
                self.must_fail::<()>("views beyond the quota", &["quota-exceeded"], Err(error));
            }
            _ => {
                let Some((v, _, packed)) = self.view_and_chunk() else {
                    return;
                };
                let mut count = 0u64;
                let error = loop {
                    match self.views[v].raw.register(unpack(packed)) {
                        Ok(()) => count += 1,
                        Err(e) => break e,
                    }
                    if count > 100_000 {
                        self.fail("100000 registrations and no quota");
                    }
                };
                self.must_fail::<()>(
                    "registrations beyond the quota",
                    &["quota-exceeded"],
                    Err(error),
                );
                for _ in 0..count {
                    let result = self.views[v].raw.unregister(unpack(packed));
                    self.must("unregister", result);
                }
            }
        }
    }

    /// Cross-checks the model against what the host reports.
    fn check_model(&mut self) {
        self.part = Part::Channel;
        self.check_channels();
        self.part = Part::Memory;
        for m in 0..self.memories.len() {
            let segments = self.memories[m].raw.number_of_active_segments();
            if segments == 0 || segments > 256 {
                self.fail(&format!("{segments} active segments"));
            }
        }
        if self.step.is_multiple_of(64) {
            // Every byte of every chunk, through the owner.
            for m in 0..self.memories.len() {
                let keys: Vec<u64> = self.memories[m].chunks.keys().copied().collect();
                for packed in keys {
                    let size = self.memories[m].chunks[&packed].size;
                    let result = self.memories[m].raw.read(unpack(packed), 0, size);
                    let bytes = self.must("read a whole chunk", result);
                    if bytes != self.memories[m].chunks[&packed].data {
                        self.fail(&format!(
                            "chunk {:?} changed behind our back",
                            unpack(packed)
                        ));
                    }
                }
            }
        }
    }

    /// Tears the channels down (see `channel_teardown`), unregisters, drops views and
    /// memories, and checks nothing of ours is left.
    fn teardown(&mut self) {
        self.part = Part::Channel;
        self.channel_teardown();
        self.part = Part::Memory;
        for view in &mut self.views {
            for (&packed, &count) in &view.registered {
                for _ in 0..count {
                    if view.raw.unregister(unpack(packed)).is_err() {
                        eprintln!("seed {}: unregister failed at teardown", self.seed);
                        exit(1);
                    }
                }
            }
        }
        self.views.clear();
        let names: Vec<String> = self.memories.iter().map(|m| m.name.clone()).collect();
        self.memories.clear();
        for name in names {
            if self.must("exists at teardown", wit::exists(&name)) {
                self.fail(&format!("{name} exists after its owner dropped it"));
            }
        }
    }
}

/// The stress mode (see the crate documentation).
fn churn(name: &str, seed: u64, ops: u64) {
    use resmem_guest::pattern;
    use std::io::{BufRead, Write};

    let fail = |what: String| -> ! {
        eprintln!("churn {name}: {what}");
        exit(1)
    };
    let config = wit::MemoryConfig {
        max_chunk_layout_hint: Layout {
            size: 4096,
            align: 8,
        },
        max_number_of_chunks_hint: 8,
        allocation_strategy: AllocationStrategy::PowerOfTwo,
    };
    let memory = wit::Memory::create(name, config).unwrap_or_else(|e| fail(format!("{e:?}")));
    let mut pinned = Vec::new();
    let mut out = std::io::stdout().lock();
    for (i, size) in [4096u64, 20_000, 70_000, 300_000].into_iter().enumerate() {
        let offset = memory
            .allocate(Layout { size, align: 8 })
            .unwrap_or_else(|e| fail(format!("pinned allocate: {e:?}")));
        let mut data = vec![0; size as usize];
        pattern::fill(seed + i as u64, 0, &mut data);
        memory
            .write(offset, 0, &data)
            .unwrap_or_else(|e| fail(format!("pinned write: {e:?}")));
        writeln!(
            out,
            "chunk offset={} len={size} seed={}",
            pack(offset),
            seed + i as u64
        )
        .and_then(|()| out.flush())
        .unwrap_or_else(|e| fail(format!("stdout: {e}")));
        pinned.push((offset, data));
    }
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .unwrap_or_else(|e| fail(format!("stdout: {e}")));

    let mut rng = Rng(seed.wrapping_mul(31) ^ 0xC0FFEE);
    // Packed offset -> (segment, start, contents); pinned chunks take part in overlap checks.
    let mut live: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut peak, mut max_segments, mut grown) = (0, 0, 0u64);
    let overlaps = |live: &BTreeMap<u64, Vec<u8>>, at: PointerOffset, size: u64| {
        live.iter()
            .map(|(&p, d)| (unpack(p), d.len() as u64))
            .chain(pinned.iter().map(|(o, d)| (*o, d.len() as u64)))
            .any(|(o, len)| {
                o.segment == at.segment
                    && o.offset < at.offset + size.max(1)
                    && at.offset < o.offset + len.max(1)
            })
    };
    for op in 0..ops {
        match rng.below(10) {
            0..=4 if live.len() < 64 => {
                let bits = rng.below(17);
                let size = rng.below(1 << bits) + 1;
                let offset = memory
                    .allocate(Layout { size, align: 8 })
                    .unwrap_or_else(|e| fail(format!("allocate {size}: {e:?}")));
                if overlaps(&live, offset, size) {
                    fail(format!("{offset:?} ({size} bytes) overlaps a live chunk"));
                }
                let data = rng.bytes(size as usize);
                memory
                    .write(offset, 0, &data)
                    .unwrap_or_else(|e| fail(format!("write: {e:?}")));
                live.insert(pack(offset), data);
            }
            5..=6 if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                let packed = *live.keys().nth(k).expect("k < len");
                let data = live.remove(&packed).expect("live");
                let size = data.len() as u64 + rng.below(8192) + 1;
                let grown_at = memory
                    .grow(
                        unpack(packed),
                        Layout { size, align: 8 },
                        ContentPlacement::Front,
                    )
                    .unwrap_or_else(|e| fail(format!("grow to {size}: {e:?}")));
                if overlaps(&live, grown_at, size) {
                    fail(format!("grown {grown_at:?} overlaps a live chunk"));
                }
                let back = memory
                    .read(grown_at, 0, data.len() as u64)
                    .unwrap_or_else(|e| fail(format!("read: {e:?}")));
                if back != data {
                    fail(format!("grow lost the contents of {:?}", unpack(packed)));
                }
                let mut data = data;
                data.resize(size as usize, 0);
                let tail = rng.bytes(size as usize - back.len());
                memory
                    .write(grown_at, back.len() as u64, &tail)
                    .unwrap_or_else(|e| fail(format!("write: {e:?}")));
                data[back.len()..].copy_from_slice(&tail);
                live.insert(pack(grown_at), data);
                grown += 1;
            }
            _ if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                let packed = *live.keys().nth(k).expect("k < len");
                let data = live.remove(&packed).expect("live");
                let back = memory
                    .read(unpack(packed), 0, data.len() as u64)
                    .unwrap_or_else(|e| fail(format!("read: {e:?}")));
                if back != data {
                    fail(format!(
                        "chunk {:?} changed behind our back",
                        unpack(packed)
                    ));
                }
                memory
                    .deallocate(unpack(packed))
                    .unwrap_or_else(|e| fail(format!("deallocate: {e:?}")));
            }
            _ => {}
        }
        peak = peak.max(live.len());
        max_segments = max_segments.max(memory.number_of_active_segments());
        if op.is_multiple_of(256) {
            for (offset, data) in &pinned {
                let back = memory
                    .read(*offset, 0, data.len() as u64)
                    .unwrap_or_else(|e| fail(format!("read pinned: {e:?}")));
                if &back != data {
                    fail(format!("pinned chunk {offset:?} changed"));
                }
            }
        }
    }
    writeln!(
        out,
        "churned {ops} ops, {grown} grows, peak {peak} chunks, up to {max_segments} segments"
    )
    .and_then(|()| out.flush())
    .unwrap_or_else(|e| fail(format!("stdout: {e}")));
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
