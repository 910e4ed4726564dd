//! The `channel_parse` fuzz driver, shared by the libFuzzer target
//! (`fuzz/fuzz_targets/channel_parse.rs`) and the stable corpus replay test
//! (`host/segments/tests/fuzz_channel_corpus.rs`).
//!
//! Each input sets up a live service on the process-local backend (a publisher with 3
//! subscriber slots, queues of 4, 2 borrowed samples and 4 loans at most, the overflow policy
//! and allocation strategy the input picks, and one or two subscribers), then decodes a
//! program: a hostile peer's writes into the control object (u8/u32/u64 at any offset, biased
//! to the header fields, slot state words, a slot's four queue indices, submission and
//! completion entries, and whole forged geometries), interleaved with publisher calls (loan,
//! send, send_copy, set_len beyond the loan, drop unsent, drop and re-create the publisher),
//! subscriber calls (receive, drop samples, receive again after BorrowLimitReached),
//! subscribers opening on the scribbled header and dropping, `service_info`, and
//! `layout::validate` on raw input bytes and on patched copies of the control object.
//!
//! Checked whatever the bytes (a panic otherwise):
//! - calls return a value or a typed `ChannelError`, and the errors with an exact condition
//!   come exactly then: BorrowLimitReached when the subscriber holds `max_borrowed` samples,
//!   LoanLimitReached at `max_loans` loans, InvalidLength for `set_len` beyond the loan, and a
//!   subscriber open fails as `layout::validate` on the same bytes says;
//! - a received sample's payload is read in full; it is what was sent (length and bytes) or
//!   came from a forged entry (counted);
//! - until the first hostile write (a clean run) a model of every queue is exact: each
//!   receive yields the model's next sample, `send` delivers to the subscribers the policy
//!   says, counts, `service_info` and chunks in use match the model;
//! - the publisher never frees a chunk twice (its free path debug_asserts: run with debug
//!   assertions), chunks in use never exceed the sample indices, and once every sample,
//!   loan and subscriber is dropped no chunk is in use and no object of the run is left;
//! - no hang: the driver's thread only makes non-blocking calls; a `send` under
//!   `Overflow::Block` runs on a helper thread while the driver makes room (receives, drops
//!   samples, then drops subscribers), and it must return once none is left.

use std::alloc::Layout;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use resmem::backend::Mapping;
use resmem::channel::layout::{self, Validated};
use resmem::channel::{is_publisher_alive, list_services, remove_stale_service, service_info};
#[path = "channel_parse/calls.rs"]
mod calls;

use resmem::{
    AccessMode, AllocationStrategy, ChannelError, Config, Overflow, ProcessLocal, Publisher,
    Sample, SampleMut, Subscriber, View,
};

const SERVICE: &str = "s";
const SUBSCRIBERS: usize = 3;
const BUFFER: usize = 4;
const BORROWED: usize = 2;
const LOANS: usize = 4;
const COMPLETION: usize = BUFFER + BORROWED;
/// The publisher's sample indices: the most chunks that can be allocated at once.
const CHUNKS_MAX: u64 = (LOANS + SUBSCRIBERS * COMPLETION) as u64;
const MAX_OPS: usize = 96;
/// Opens per input: one that finds only stale slots waits 200 ms for a reclaim.
const MAX_OPENS: usize = 4;

// The control object's layout (host/segments/src/channel/layout.rs), checked at setup.
/// Header fields (offset, width): magic, version, overflow, max_subscribers, buffer_size,
/// completion_size, max_borrowed, slot_stride, total_size, prefix_hash, memory_id, epoch,
/// publisher_pid, ready, closed.
#[rustfmt::skip]
const HEADER_FIELDS: [(usize, usize); 15] = [
    (0, 8), (8, 4), (12, 4), (16, 4), (20, 4), (24, 4), (28, 4), (32, 8),
    (40, 8), (48, 8), (56, 8), (64, 8), (72, 4), (76, 4), (80, 4),
];
/// The header's live line: joins, publisher_waiters, violations, sent.
const LIVE_FIELDS: [(usize, usize); 6] =
    [(128, 8), (136, 4), (140, 4), (144, 8), (152, 8), (160, 4)];
/// A slot's control line (state, nonce, pid, waiters, bell waiters, bell) and the borrowed
/// count beside the submission queue's read index.
const SLOT_FIELDS: [(usize, usize); 7] =
    [(0, 8), (8, 8), (16, 4), (20, 4), (24, 4), (28, 4), (264, 4)];
/// Submission write and read, completion write and read: one cache line each.
const QUEUE_INDICES: [usize; 4] = [128, 256, 384, 512];
/// Entries (two u64 each) follow: the submission queue's, then the completion queue's.
const ENTRIES: usize = 640;
const ENTRY: usize = 16;
#[rustfmt::skip]
const SPECIAL: [u64; 16] = [
    0, 1, 2, 3, 4, 6, 7, 0xff,
    0x100, 0xffff_ffff, 1 << 32, (1 << 40) - 1, 1 << 40, 1 << 63, u64::MAX - 1, u64::MAX,
];

fn geometry(subscribers: usize, buffer: usize, borrowed: usize) -> layout::Geometry {
    layout::Geometry::new(subscribers, buffer, borrowed).expect("a valid geometry")
}

fn slot_stride(buffer: usize, borrowed: usize) -> usize {
    geometry(1, buffer, borrowed).slot_stride
}

/// The header's size as laid out (rounded up to a page: the first slot's offset).
fn header_size() -> usize {
    geometry(1, 1, 1).slot_offset(0)
}

/// What one input did, for the replay test's coverage checks and the corpus generator.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// `what:kind` for every distinct outcome (`receive:Corrupted`, `open:ok`, ...).
    pub kinds: BTreeSet<String>,
    /// The kinds reached before the first hostile write (checked against the model).
    pub clean_kinds: BTreeSet<String>,
    pub overflow: &'static str,
    pub writes: u64,
    pub received: u64,
    pub forged: u64,
}

/// Reads the program's operands; runs dry (zeros) at the end of the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn b(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
    fn u(&mut self, n: usize) -> u64 {
        (0..n).fold(0, |v, i| v | u64::from(self.b()) << (8 * i))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }
}

fn unique_prefix() -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    format!("fc{}_{run}_", std::process::id())
}

fn pattern(tag: u8, i: usize) -> u8 {
    tag.wrapping_add((i as u8).wrapping_mul(13)) ^ (i >> 8) as u8
}

fn kind(e: &ChannelError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_owned()
}

fn peek(mapping: &Mapping, at: usize, width: usize) -> u64 {
    let at = at.min(mapping.len() - width);
    let mut bytes = [0u8; 8];
    // Plain bytes; no other thread runs while the driver reads or writes them.
    // SAFETY: `at + width <= len` of a live mapping.
    unsafe { std::ptr::copy_nonoverlapping(mapping.as_ptr().add(at), bytes.as_mut_ptr(), width) };
    u64::from_le_bytes(bytes)
}

/// A hostile peer's write of `bytes` at `at` (moved back to fit).
fn poke(mapping: &Mapping, at: usize, bytes: &[u8]) {
    let n = bytes.len().min(mapping.len());
    let at = at.min(mapping.len() - n);
    // Every reader of these bytes uses atomics or copies; no other thread runs meanwhile.
    // SAFETY: `at + n <= len` of a live, writable mapping.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), mapping.as_ptr().add(at), n) };
}

fn snapshot(mapping: &Mapping) -> Vec<u8> {
    let mut bytes = vec![0u8; mapping.len()];
    // SAFETY: as in `peek`, for the whole mapping.
    unsafe { std::ptr::copy_nonoverlapping(mapping.as_ptr(), bytes.as_mut_ptr(), bytes.len()) };
    bytes
}

/// A value that samples and loans borrow as `'static` from beside it in [`World`]; freed by
/// `free` once the driver dropped every borrow (a run that panics leaks it).
struct Leaked<T>(*mut T);

impl<T> Leaked<T> {
    fn new(value: T) -> Self {
        Self(Box::into_raw(Box::new(value)))
    }
    fn get(&self) -> &'static T {
        // SAFETY: the box lives until `free`, which runs only after every borrow is dropped.
        unsafe { &*self.0 }
    }
    /// # Safety
    /// No borrow from [`Leaked::get`] (sample, loan, reference) is alive.
    unsafe fn free(self) {
        // SAFETY: from Box::into_raw, freed once (`self` is consumed); no borrow is left.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

struct Sent {
    generation: u64,
    offset: Option<u64>,
    len: usize,
    tag: u8,
}

struct Sub {
    id: u64,
    generation: u64,
    sub: Leaked<Subscriber>,
    /// The clean model of its submission queue: indices into `World::sent`.
    queue: VecDeque<usize>,
}

struct Held {
    sub: u64,
    sample: Sample<'static>,
    sent: Option<usize>,
}

struct Pub {
    publisher: Leaked<Publisher>,
    control: Mapping,
    /// A view of the publisher's memory, for its chunks in use.
    memory: View,
}

struct World {
    prefix: String,
    config: Config,
    overflow: Overflow,
    strategy: AllocationStrategy,
    publisher: Option<Pub>,
    generation: u64,
    /// A copy of the first control object, for `validate` when no publisher lives.
    template: Vec<u8>,
    loans: Vec<(SampleMut<'static>, u8)>,
    subs: Vec<Sub>,
    held: Vec<Held>,
    sent: Vec<Sent>,
    offsets: Vec<u64>,
    next_sub: u64,
    dirty: bool,
    opens: usize,
    out: Outcome,
}

/// Runs one input. Panics if any call misbehaves.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let setup = input.b();
    let overflow =
        [Overflow::DropOldest, Overflow::DropNewest, Overflow::Block][setup as usize % 3];
    let strategy = [
        AllocationStrategy::PowerOfTwo,
        AllocationStrategy::BestFit,
        AllocationStrategy::Static,
    ][setup as usize / 3 % 3];
    let prefix = unique_prefix();
    let mut world = World {
        config: Config::default().prefix(&prefix).backend(ProcessLocal),
        prefix,
        overflow,
        strategy,
        publisher: None,
        generation: 0,
        template: Vec::new(),
        loans: Vec::new(),
        subs: Vec::new(),
        held: Vec::new(),
        sent: Vec::new(),
        offsets: Vec::new(),
        next_sub: 0,
        dirty: false,
        opens: 0,
        out: Outcome {
            overflow: ["DropOldest", "DropNewest", "Block"][setup as usize % 3],
            ..Outcome::default()
        },
    };
    world.create_publisher();
    for _ in 0..1 + usize::from(setup / 9 % 2) {
        world.open();
    }
    for _ in 0..MAX_OPS {
        let Some(op) = input.next() else { break };
        match op % 16 {
            0..=2 => world.hostile_write(&mut input),
            3 => world.loan(&mut input),
            4 => world.send_loan(&mut input),
            5 => {
                let pick = usize::from(input.b());
                if !world.loans.is_empty() {
                    drop(world.loans.remove(pick % world.loans.len()));
                    world.note("loan", "dropped");
                }
            }
            6 => world.send_copy(&mut input),
            7 | 8 => {
                let pick = usize::from(input.b());
                world.receive(pick, op % 16 == 8);
            }
            9 => {
                let pick = usize::from(input.b());
                if !world.held.is_empty() {
                    // Still mapped and readable until it is dropped.
                    let held = world.held.remove(pick % world.held.len());
                    let payload = held.sample.payload();
                    assert_eq!(payload.len(), held.sample.len());
                    std::hint::black_box(payload.iter().fold(0u8, |x, &b| x ^ b));
                }
            }
            10 => world.open(),
            11 => {
                let pick = usize::from(input.b());
                world.drop_sub(pick);
            }
            12 => world.validate(&mut input),
            13 => {
                for i in 0..world.subs.len() {
                    world.receive(i, false);
                }
            }
            14 => world.inspect(),
            _ => {
                if input.b() % 3 == 0 {
                    world.drop_or_restart_publisher();
                }
            }
        }
        world.check_chunks();
    }
    world.finish()
}

impl World {
    fn note(&mut self, what: &str, kind: &str) {
        if !self.dirty {
            self.out.clean_kinds.insert(format!("{what}:{kind}"));
        }
        self.out.kinds.insert(format!("{what}:{kind}"));
    }

    fn publisher(&self) -> Option<&'static Publisher> {
        self.publisher.as_ref().map(|p| p.publisher.get())
    }

    fn create_publisher(&mut self) {
        let publisher = Publisher::builder(SERVICE)
            .config(&self.config)
            .max_subscribers(SUBSCRIBERS)
            .buffer_size(BUFFER)
            .max_borrowed(BORROWED)
            .max_loans(LOANS)
            .overflow(self.overflow)
            .allocation_strategy(self.strategy)
            // A restart takes over the closed service even while old subscribers drain it.
            .reclaim_stale(true)
            .create()
            .expect("creating a publisher in a fresh namespace");
        let backend = self.config.get_backend();
        let control = backend
            .open(
                &format!("{}{SERVICE}__svc", self.prefix),
                AccessMode::ReadWrite,
            )
            .expect("the control object");
        let memory = View::builder(SERVICE)
            .config(&self.config)
            .open(AccessMode::Read)
            .expect("a view of the publisher's memory");
        // The offsets above are those of layout.rs.
        let stride = slot_stride(BUFFER, BORROWED);
        let expected = [
            (0, u64::from_le_bytes(*b"RESMEMCH")),
            (1, u64::from(layout::VERSION)),
            (3, SUBSCRIBERS as u64),
            (4, BUFFER as u64),
            (5, COMPLETION as u64),
            (6, BORROWED as u64),
            (7, stride as u64),
            (8, (header_size() + SUBSCRIBERS * stride) as u64),
            (12, u64::from(std::process::id())),
            (13, 1),
            (14, 0),
        ];
        for (field, value) in expected {
            let (at, width) = HEADER_FIELDS[field];
            assert_eq!(peek(&control, at, width), value, "header field at {at}");
        }
        match layout::validate(&snapshot(&control), &self.prefix) {
            Ok(Validated::Ready(facts)) => assert_eq!(facts.geometry.slot_stride, stride),
            other => panic!("a fresh control object does not validate: {other:?}"),
        }
        if self.template.is_empty() {
            self.template = snapshot(&control);
        }
        self.generation += 1;
        self.publisher = Some(Pub {
            publisher: Leaked::new(publisher),
            control,
            memory,
        });
    }

    fn drop_or_restart_publisher(&mut self) {
        let Some(Pub {
            publisher,
            control,
            memory,
        }) = self.publisher.take()
        else {
            self.create_publisher();
            self.note("publisher", "restarted");
            return;
        };
        self.loans.clear();
        drop((control, memory));
        // SAFETY: the loans, the only borrows of the publisher, were just dropped.
        unsafe { publisher.free() };
        self.note("publisher", "dropped");
    }

    fn chunks_in_use(&self) -> Option<u64> {
        let p = self.publisher.as_ref()?;
        Some(
            p.memory
                .segment_records()
                .iter()
                .map(|(_, r)| r.chunks_in_use)
                .sum(),
        )
    }

    fn check_chunks(&self) {
        if let Some(n) = self.chunks_in_use() {
            assert!(
                n <= CHUNKS_MAX,
                "{n} chunks in use, more than {CHUNKS_MAX} samples"
            );
        }
    }

    /// Subscribers of the living publisher.
    fn current(&self) -> usize {
        let alive = self.publisher.is_some();
        self.subs
            .iter()
            .filter(|s| alive && s.generation == self.generation)
            .count()
    }

    fn hostile_write(&mut self, input: &mut Input) {
        let (selector, k, idx) = (input.b(), usize::from(input.b()), usize::from(input.b()));
        let Some(p) = &self.publisher else { return };
        let control = &p.control;
        let slot = header_size() + k % SUBSCRIBERS * slot_stride(BUFFER, BORROWED);
        let (at, width) = match selector % 9 {
            0 => HEADER_FIELDS[idx % HEADER_FIELDS.len()],
            1 => LIVE_FIELDS[idx % LIVE_FIELDS.len()],
            2 => {
                let (at, width) = SLOT_FIELDS[idx % SLOT_FIELDS.len()];
                (slot + at, width)
            }
            3 => (slot + QUEUE_INDICES[idx % 4], 8),
            4 => (slot + ENTRIES + idx / 2 % BUFFER * ENTRY + idx % 2 * 8, 8),
            5 => (
                slot + ENTRIES
                    + (BUFFER.next_power_of_two() + idx / 2 % COMPLETION) * ENTRY
                    + idx % 2 * 8,
                8,
            ),
            6 => (
                (k << 8 | idx) % control.len(),
                [1, 4, 8][usize::from(selector / 9) % 3],
            ),
            7 => {
                let n = usize::from(selector / 9) % 32 + 1;
                poke(control, (k << 8 | idx) % control.len(), &input.bytes(n));
                self.dirty = true;
                self.out.writes += 1;
                return;
            }
            _ => {
                // A whole geometry, consistent in itself, that is not the publisher's.
                let (subs, buffer, borrowed) = (1 + k % 4, 1 + idx % 8, 1 + idx / 8 % 8);
                let stride = slot_stride(buffer, borrowed);
                let sizes = [subs, buffer, buffer + borrowed, borrowed];
                for (field, value) in (3..7).zip(sizes) {
                    poke(
                        control,
                        HEADER_FIELDS[field].0,
                        &(value as u32).to_le_bytes(),
                    );
                }
                poke(control, 32, &(stride as u64).to_le_bytes());
                let total = header_size() + subs * stride;
                poke(control, 40, &(total as u64).to_le_bytes());
                self.dirty = true;
                self.out.writes += 1;
                return;
            }
        };
        let current = peek(control, at, width);
        let v = input.b();
        let value = match v % 6 {
            0 => input.u(width),
            1 => current.wrapping_add_signed(i64::from(input.b() as i8 >> 4)),
            2 => SPECIAL[usize::from(input.b()) % SPECIAL.len()],
            // A slot state (free, ?, active, left) keeping the generation bits.
            3 => current & !0xff | u64::from(input.b() % 4),
            4 => {
                let b = input.b();
                if b.is_multiple_of(2) && !self.offsets.is_empty() {
                    let offset = self.offsets[usize::from(b / 2) % self.offsets.len()];
                    offset.wrapping_add(u64::from(v / 6 % 4) * 8)
                } else {
                    // A submission entry's second word: length | sample index << 40.
                    let len =
                        [0u64, 1, 8, 63, 64, 4096, 1 << 20, (1 << 40) - 1][usize::from(b / 2) % 8];
                    len | u64::from(v / 6 % 32) << 40
                }
            }
            // Another queue index of the same slot, give or take one.
            _ => {
                let b = input.b();
                let other = peek(control, slot + QUEUE_INDICES[usize::from(b) % 4], 8);
                other.wrapping_add(u64::from(b / 4 % 3)).wrapping_sub(1)
            }
        };
        poke(control, at, &value.to_le_bytes()[..width]);
        self.dirty = true;
        self.out.writes += 1;
    }

    fn validate(&mut self, input: &mut Input) {
        let mode = input.b();
        let mut bytes = match &self.publisher {
            Some(p) => snapshot(&p.control),
            None => self.template.clone(),
        };
        match mode % 3 {
            0 => {
                let n = usize::from(input.b()) * 8;
                bytes = input.bytes(n);
            }
            1 => {
                let (at, n) = (usize::from(input.b()), usize::from(input.b() % 32));
                let patch = input.bytes(n);
                let at = at.min(bytes.len() - patch.len());
                bytes[at..at + patch.len()].copy_from_slice(&patch);
                let len = input.u(2) as usize % (bytes.len() + 1);
                if mode & 8 != 0 {
                    bytes.truncate(len);
                }
            }
            _ => {
                let (at, width) = HEADER_FIELDS[usize::from(input.b()) % HEADER_FIELDS.len()];
                let value = SPECIAL[usize::from(input.b()) % SPECIAL.len()];
                bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
        }
        let result = layout::validate(&bytes, &self.prefix);
        assert_eq!(
            result,
            layout::validate(&bytes, &self.prefix),
            "validate is a function"
        );
        match &result {
            Ok(Validated::Ready(facts)) => {
                let g = &facts.geometry;
                assert!(g.total_size <= bytes.len() && facts.overflow <= 2);
                assert_eq!(g.completion_size, g.buffer_size + g.max_borrowed);
                assert_eq!(g.slot_stride, slot_stride(g.buffer_size, g.max_borrowed));
                assert_eq!(
                    g.total_size,
                    header_size() + g.max_subscribers * g.slot_stride
                );
                let other = layout::validate(&bytes, "another_prefix_");
                assert_eq!(
                    other,
                    Err(ChannelError::DoesNotExist),
                    "the prefix is checked"
                );
                self.note("validate", "ready");
            }
            Ok(Validated::NotReady) => self.note("validate", "not-ready"),
            Ok(_) => self.note("validate", "unknown"),
            Err(e) => self.note("validate", &kind(e)),
        }
    }

    /// Publisher and service queries; in a clean run, against the model.
    fn inspect(&mut self) {
        let Some(publisher) = self.publisher() else {
            // Gone, or closed with samples still queued for draining subscribers.
            match service_info(SERVICE, &self.config) {
                Err(ChannelError::DoesNotExist) => {}
                Ok(info) => assert!(!info.publisher_alive, "{info:?}"),
                Err(e) if self.dirty => self.note("inspect", &kind(&e)),
                Err(e) => panic!("service_info of a dropped publisher's service: {e:?}"),
            }
            assert_eq!(is_publisher_alive(SERVICE, &self.config), Ok(false));
            let removed = remove_stale_service(SERVICE, &self.config);
            assert!(removed.is_ok_and(|r| r != resmem::StaleRemoval::OwnerAlive));
            return self.note("inspect", "no-publisher");
        };
        let (attached, connected) = (
            publisher.number_of_subscribers(),
            publisher.update_connections(),
        );
        assert_eq!(is_publisher_alive(SERVICE, &self.config), Ok(true));
        assert!(list_services(&self.config).is_ok_and(|s| s == [SERVICE]));
        let info = service_info(SERVICE, &self.config);
        if let Ok(info) = &info {
            assert!(info.subscribers.len() <= info.max_subscribers);
            for s in &info.subscribers {
                assert!(s.slot < info.max_subscribers && s.queued <= info.buffer_size as u64);
                assert!(s.borrowed as usize <= info.max_borrowed);
            }
        }
        if self.dirty {
            return self.note("inspect", &info.map_or_else(|e| kind(&e), |_| "ok".into()));
        }
        let current = self.current();
        assert_eq!(
            (attached, connected),
            (current, current),
            "clean run: subscribers"
        );
        assert_eq!(publisher.violations(), 0, "clean run: violations");
        let info = info.expect("clean run: service_info");
        assert!(info.publisher_alive && info.subscribers.len() == current);
        let mut live = BTreeSet::new();
        for sub in self.subs.iter().filter(|s| s.generation == self.generation) {
            let slot = sub.sub.get().slot();
            let s = info
                .subscribers
                .iter()
                .find(|s| s.slot == slot)
                .expect("its slot");
            let held = self.held.iter().filter(|h| h.sub == sub.id);
            assert_eq!(
                s.queued,
                sub.queue.len() as u64,
                "clean run: queued in slot {slot}"
            );
            assert_eq!(s.borrowed as usize, held.clone().count());
            live.extend(sub.queue.iter().copied());
            live.extend(held.filter_map(|h| h.sent));
        }
        let chunks = self.chunks_in_use().expect("a publisher lives");
        let expected = (self.loans.len() + live.len()) as u64;
        assert_eq!(
            chunks, expected,
            "clean run: chunks in use against loans and samples"
        );
        self.note("inspect", "clean");
    }

    fn finish(mut self) -> Outcome {
        self.held.clear();
        self.loans.clear();
        if self.publisher.is_some() && !self.dirty {
            self.inspect();
        }
        while !self.subs.is_empty() {
            self.drop_sub(0);
        }
        if let Some(publisher) = self.publisher() {
            assert_eq!(
                publisher.update_connections(),
                0,
                "subscribers after all dropped"
            );
            let chunks = self.chunks_in_use();
            assert_eq!(
                chunks,
                Some(0),
                "chunks in use after every sample, loan and subscriber"
            );
        }
        if self.publisher.is_some() {
            self.drop_or_restart_publisher();
        }
        assert!(resmem::list(&self.config).is_ok_and(|l| l.is_empty()));
        assert!(list_services(&self.config).is_ok_and(|l| l.is_empty()));
        let backend = self.config.get_backend();
        let left: Vec<String> = (backend.list().unwrap_or_default().into_iter())
            .filter(|o| o.starts_with(&self.prefix))
            .collect();
        for object in &left {
            let _ = backend.remove(object);
        }
        assert!(left.is_empty(), "objects left behind: {left:?}");
        if !self.dirty {
            self.note("run", "clean");
        }
        let policy = self.out.overflow;
        self.note("run", policy);
        self.out
    }
}
