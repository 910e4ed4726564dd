//! The `host_interface` fuzz driver: decodes a sequence of `resizable-memory` calls from the
//! input and makes them on a fresh `GuestState` directly through the host's trait
//! implementations (no wasm), with small quotas in a namespace of its own. After every call it
//! checks the answer against a model of the guest's memories (with every chunk's bytes),
//! views and registrations, and the usage the host reports; at the end it drops everything
//! and checks that no OS object of the namespace is left. Any violation panics.
//!
//! Shared by the libFuzzer target (`fuzz/fuzz_targets/host_interface.rs`) and the stable
//! corpus replay test (`tests/tests/fuzz_corpus.rs`), which include this file by path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resmem_host::bindings::api::{Host, HostMemory, HostView, MemoryConfig};
use resmem_host::bindings::types::{
    AccessMode, AllocationStrategy, ContentPlacement, Error, Layout, PointerOffset,
};
use resmem_host::{GuestState, Policy, Quotas, ResmemView, Usage};
use wasmtime::component::Resource;
use wasmtime_wasi::WasiCtxBuilder;

const KIB: u64 = 1024;

/// Small limits, so inputs reach every quota quickly.
fn quotas() -> Quotas {
    let mut quotas = Quotas::default();
    quotas.shm_bytes = 8 * KIB * KIB;
    quotas.chunk_bytes = 256 * KIB;
    quotas.live_chunks = 64;
    quotas.memories = 4;
    quotas.views = 4;
    quotas.registrations = 64;
    quotas.io_bytes = 256 * KIB;
    quotas.open_timeout = Duration::from_millis(1);
    quotas
}

/// What one input did, for the replay test's report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub calls: u64,
    pub ok: u64,
    pub errors: u64,
}

/// The fuzz input as a stream of choices; reads past the end give zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.byte()) << (8 * i))
    }

    /// A number biased towards edges: zero, powers of two and their neighbours, the top of
    /// 56 and 64 bits, small values, or raw bits.
    fn value(&mut self) -> u64 {
        match self.byte() % 8 {
            0 => [0, 1, 2, 3, 7, 8, 63, 64][self.below(8)],
            1 => 1 << self.below(64),
            2 => (1u64 << self.below(64)).wrapping_sub(1),
            3 => (1u64 << self.below(64)).wrapping_add(1),
            4 => [
                u64::MAX,
                u64::MAX - 1,
                (1 << 56) - 1,
                1 << 56,
                1 << 63,
                1 << 32,
            ][self.below(6)],
            5 => u64::from(self.byte()) * 8,
            6 => u64::from(u16::from_le_bytes([self.byte(), self.byte()])),
            _ => self.u64(),
        }
    }

    fn is_done(&self) -> bool {
        self.data.is_empty()
    }
}

#[derive(Debug)]
struct MemoryModel {
    rep: u32,
    name: String,
    /// Packed offset → the chunk's bytes.
    chunks: BTreeMap<u64, Vec<u8>>,
    /// Offsets returned (or moved by `grow`): likely stale, the best forgeries.
    freed: Vec<u64>,
}

#[derive(Debug)]
struct ViewModel {
    rep: u32,
    /// The memory it shows, while that memory's owner (this guest) keeps it.
    memory: Option<String>,
    writable: bool,
    registered: HashMap<u64, u32>,
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

fn kind(e: &Error) -> &'static str {
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

/// Deterministic fill for a new chunk (or the new part of a grown one).
fn fill(len: usize, salt: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            (i.wrapping_mul(0x9E37_79B9)
                .wrapping_add(salt.wrapping_mul(0x51))
                >> 5) as u8
        })
        .collect()
}

struct Driver {
    state: GuestState,
    prefix: String,
    memories: Vec<MemoryModel>,
    views: Vec<ViewModel>,
    stats: Stats,
    salt: u64,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs one input; panics on the first violated invariant.
pub fn run(data: &[u8]) -> Stats {
    let prefix = format!(
        "rmfz{}x{}_",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let policy = Policy::builder()
        .namespace(&prefix)
        .quotas(quotas())
        .build();
    let mut driver = Driver {
        state: GuestState::new(WasiCtxBuilder::new().build(), Arc::new(policy)),
        prefix,
        memories: Vec::new(),
        views: Vec::new(),
        stats: Stats::default(),
        salt: 0,
    };
    let mut input = Input { data };
    let mut steps = 0;
    while !input.is_done() && steps < 256 {
        driver.step(&mut input);
        driver.check_usage();
        steps += 1;
    }
    driver.finish()
}

fn borrow<T: 'static>(rep: u32) -> Resource<T> {
    Resource::new_borrow(rep)
}

impl Driver {
    fn note<T>(&mut self, result: wasmtime::Result<Result<T, Error>>) -> Result<T, Error> {
        self.stats.calls += 1;
        let result = result.expect("a host call trapped (host bug: the handle is ours)");
        match &result {
            Ok(_) => self.stats.ok += 1,
            Err(_) => self.stats.errors += 1,
        }
        result
    }

    fn expect_err<T: std::fmt::Debug>(what: &str, result: Result<T, Error>, allowed: &[&str]) {
        match result {
            Err(e) if allowed.contains(&kind(&e)) => {}
            other => panic!("{what}: expected one of {allowed:?}, got {other:?}"),
        }
    }

    fn name(&self, input: &mut Input<'_>) -> String {
        match input.byte() % 16 {
            0..=7 => ["a", "b", "c", "d"][input.below(4)].to_owned(),
            8 => String::new(),
            9 => ["a/b", "..", "x\0y", "/abs", "a/../b", "."][input.below(6)].to_owned(),
            10 => "n".repeat(10 * 1024),
            11 => "n".repeat(200 + input.below(100)),
            // Another namespace's name, in full.
            12 => format!("resmem_{}", ["a", "guest_a", "frames"][input.below(3)]),
            13 => format!("{}a", self.prefix),
            _ => {
                let len = input.below(12);
                let bytes: Vec<u8> = (0..len).map(|_| input.byte()).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    fn layout(input: &mut Input<'_>) -> Layout {
        let size = match input.byte() % 4 {
            0 => input.value(),
            _ => u64::from(u16::from_le_bytes([input.byte(), input.byte()])) % (64 * KIB),
        };
        let align = match input.byte() % 4 {
            0 => input.value(),
            _ => 1 << input.below(13),
        };
        Layout { size, align }
    }

    /// A live chunk, a freed one, or a forgery.
    fn offset(&self, input: &mut Input<'_>, m: Option<usize>) -> PointerOffset {
        let choice = input.byte() % 8;
        if let Some(m) = m {
            let memory = &self.memories[m];
            if choice < 5 && !memory.chunks.is_empty() {
                let k = input.below(memory.chunks.len());
                let packed = *memory.chunks.keys().nth(k).expect("k < len");
                // Sometimes a neighbour of a live chunk.
                return match input.byte() % 8 {
                    0 => unpack(packed.wrapping_add(1 << 8)),
                    1 => unpack(packed ^ 1),
                    _ => unpack(packed),
                };
            }
            if choice < 6 && !memory.freed.is_empty() {
                return unpack(memory.freed[input.below(memory.freed.len())]);
            }
        }
        PointerOffset {
            segment: input.byte(),
            offset: input.value(),
        }
    }

    fn pick_memory(&self, input: &mut Input<'_>) -> Option<usize> {
        (!self.memories.is_empty()).then(|| input.below(self.memories.len()))
    }

    fn pick_view(&self, input: &mut Input<'_>) -> Option<usize> {
        (!self.views.is_empty()).then(|| input.below(self.views.len()))
    }

    fn step(&mut self, input: &mut Input<'_>) {
        match input.byte() % 20 {
            0 | 1 => self.create(input),
            2 => self.drop_memory(input),
            3..=5 => self.allocate(input),
            6 => self.deallocate(input),
            7 => self.grow(input),
            8 => self.write(input),
            9 => self.read(input),
            10 => self.open_view(input),
            11 => self.drop_view(input),
            12 => self.register(input),
            13 => self.unregister(input),
            14 => self.view_read(input),
            15 => self.view_write(input),
            16 => self.exists(input),
            17 => self.list(),
            18 => self.remove(input),
            _ => self.inspect(input),
        }
    }

    fn create(&mut self, input: &mut Input<'_>) {
        let name = self.name(input);
        let config = MemoryConfig {
            max_chunk_layout_hint: Self::layout(input),
            max_number_of_chunks_hint: match input.byte() % 4 {
                0 => input.value(),
                _ => u64::from(input.byte() % 32),
            },
            allocation_strategy: [
                AllocationStrategy::Static,
                AllocationStrategy::BestFit,
                AllocationStrategy::PowerOfTwo,
            ][input.below(3)],
        };
        let taken = self.memories.iter().any(|m| m.name == name);
        let result = HostMemory::create(&mut self.state.resmem(), name.clone(), config);
        match self.note(result) {
            Ok(handle) => {
                assert!(!taken, "created {name:?} twice");
                let rep = handle.rep();
                let got = HostMemory::name(&mut self.state.resmem(), borrow(rep)).unwrap();
                assert_eq!(got, name);
                let strategy =
                    HostMemory::allocation_strategy(&mut self.state.resmem(), borrow(rep)).unwrap();
                assert_eq!(strategy, config.allocation_strategy);
                self.memories.push(MemoryModel {
                    rep,
                    name,
                    chunks: BTreeMap::new(),
                    freed: Vec::new(),
                });
            }
            Err(e) => {
                // The hint is checked before the name is looked up.
                if taken {
                    Self::expect_err(
                        "create of a taken name",
                        Err::<(), _>(e),
                        &["already-exists", "quota-exceeded", "invalid-layout"],
                    );
                }
            }
        }
    }

    fn drop_memory(&mut self, input: &mut Input<'_>) {
        let Some(m) = self.pick_memory(input) else {
            return;
        };
        let memory = self.memories.swap_remove(m);
        HostMemory::drop(&mut self.state.resmem(), Resource::new_own(memory.rep)).unwrap();
        for view in &mut self.views {
            if view.memory.as_deref() == Some(&memory.name) {
                view.memory = None;
            }
        }
        let exists = Host::exists(&mut self.state.resmem(), memory.name.clone());
        let exists = self.note(exists);
        assert!(
            matches!(exists, Ok(false)),
            "{} after drop: {exists:?}",
            memory.name
        );
    }

    fn allocate(&mut self, input: &mut Input<'_>) {
        let Some(m) = self.pick_memory(input) else {
            return;
        };
        let layout = Self::layout(input);
        let rep = self.memories[m].rep;
        let result = HostMemory::allocate(&mut self.state.resmem(), borrow(rep), layout);
        match self.note(result) {
            Ok(offset) => self.admit(m, offset, layout),
            Err(e) => Self::expect_err(
                "allocate",
                Err::<(), _>(e),
                &[
                    "invalid-layout",
                    "quota-exceeded",
                    "out-of-memory",
                    "max-reallocations-reached",
                ],
            ),
        }
    }

    /// Checks a chunk just handed out (aligned, overlapping no live chunk) and fills it.
    fn admit(&mut self, m: usize, offset: PointerOffset, layout: Layout) {
        assert!(
            layout.align.is_power_of_two() && offset.offset.is_multiple_of(layout.align.min(4096)),
            "{offset:?} is not aligned to {}",
            layout.align
        );
        let end = offset.offset + layout.size.max(1);
        for (&other, data) in &self.memories[m].chunks {
            let o = unpack(other);
            assert!(
                o.segment != offset.segment
                    || end <= o.offset
                    || o.offset + (data.len() as u64).max(1) <= offset.offset,
                "{offset:?} ({} bytes) overlaps the live chunk {o:?} ({} bytes)",
                layout.size,
                data.len()
            );
        }
        self.salt += 1;
        let data = fill(layout.size as usize, self.salt);
        let rep = self.memories[m].rep;
        let written = HostMemory::write(
            &mut self.state.resmem(),
            borrow(rep),
            offset,
            0,
            data.clone(),
        );
        self.note(written)
            .unwrap_or_else(|e| panic!("filling a new chunk: {e:?}"));
        self.memories[m].chunks.insert(pack(offset), data);
        self.memories[m].freed.retain(|&f| f != pack(offset));
    }

    fn deallocate(&mut self, input: &mut Input<'_>) {
        let Some(m) = self.pick_memory(input) else {
            return;
        };
        let offset = self.offset(input, Some(m));
        let rep = self.memories[m].rep;
        let result = HostMemory::deallocate(&mut self.state.resmem(), borrow(rep), offset);
        let result = self.note(result);
        let packed = pack(offset);
        if offset.offset < 1 << 56 && self.memories[m].chunks.contains_key(&packed) {
            result.unwrap_or_else(|e| panic!("deallocate a live chunk: {e:?}"));
            self.memories[m].chunks.remove(&packed);
            self.memories[m].freed.push(packed);
        } else {
            Self::expect_err("deallocate a non-chunk", result, &["invalid-offset"]);
        }
    }

    fn grow(&mut self, input: &mut Input<'_>) {
        let Some(m) = self.pick_memory(input) else {
            return;
        };
        let offset = self.offset(input, Some(m));
        let mut layout = Self::layout(input);
        let placement = [ContentPlacement::Front, ContentPlacement::Back][input.below(2)];
        let packed = pack(offset);
        let live = offset.offset < 1 << 56 && self.memories[m].chunks.contains_key(&packed);
        if live && input.byte().is_multiple_of(2) {
            // Mostly grow for real.
            let old = self.memories[m].chunks[&packed].len() as u64;
            layout.size = old + layout.size % (16 * KIB);
        }
        let rep = self.memories[m].rep;
        let result = HostMemory::grow(
            &mut self.state.resmem(),
            borrow(rep),
            offset,
            layout,
            placement,
        );
        match self.note(result) {
            Ok(grown) => {
                assert!(live, "grow of a non-chunk {offset:?} succeeded");
                let old = self.memories[m].chunks.remove(&packed).expect("live");
                if pack(grown) != packed {
                    self.memories[m].freed.push(packed);
                }
                // The old bytes, where the placement says.
                let new = layout.size as usize;
                let at = match placement {
                    ContentPlacement::Front => 0,
                    ContentPlacement::Back => new - old.len(),
                };
                let read =
                    HostMemory::read(&mut self.state.resmem(), borrow(rep), grown, 0, new as u64);
                let bytes = self.note(read).expect("read a grown chunk");
                assert_eq!(bytes.len(), new);
                assert!(
                    bytes[at..at + old.len()] == old[..],
                    "grow {placement:?} lost the contents"
                );
                // Back in the model (checked for overlaps), refilled.
                self.admit(m, grown, layout);
            }
            Err(e) => {
                let allowed: &[&str] = if live {
                    &[
                        "invalid-layout",
                        "quota-exceeded",
                        "out-of-memory",
                        "max-reallocations-reached",
                    ]
                } else {
                    &["invalid-offset", "invalid-layout", "quota-exceeded"]
                };
                Self::expect_err("grow", Err::<(), _>(e), allowed);
            }
        }
    }

    /// The size of the live chunk at `offset` (offsets beyond 56 bits are never chunks: their
    /// packing would alias one).
    fn chunk_size(&self, m: usize, offset: PointerOffset) -> Option<u64> {
        if offset.offset >= 1 << 56 {
            return None;
        }
        self.memories[m]
            .chunks
            .get(&pack(offset))
            .map(|d| d.len() as u64)
    }

    /// The bytes the model holds at `[start, start + len)` of memory `m`'s segment `segment`,
    /// byte by byte (`None` where no live chunk is).
    fn model_bytes(&self, m: usize, segment: u8, start: u64, len: usize) -> Vec<Option<u8>> {
        let mut out = vec![None; len];
        let end = start.saturating_add(len as u64);
        for (&packed, data) in &self.memories[m].chunks {
            let o = unpack(packed);
            let chunk_end = o.offset + data.len() as u64;
            if o.segment != segment || chunk_end <= start || end <= o.offset {
                continue;
            }
            let from = start.max(o.offset);
            let to = end.min(chunk_end);
            for at in from..to {
                out[(at - start) as usize] = Some(data[(at - o.offset) as usize]);
            }
        }
        out
    }

    /// Applies a write at `[start, ...)` of a segment to the chunks it covers.
    fn model_write(&mut self, m: usize, segment: u8, start: u64, bytes: &[u8]) {
        let end = start.saturating_add(bytes.len() as u64);
        for (&packed, data) in &mut self.memories[m].chunks {
            let o = unpack(packed);
            let chunk_end = o.offset + data.len() as u64;
            if o.segment != segment || chunk_end <= start || end <= o.offset {
                continue;
            }
            for at in start.max(o.offset)..end.min(chunk_end) {
                data[(at - o.offset) as usize] = bytes[(at - start) as usize];
            }
        }
    }

    fn range(input: &mut Input<'_>, size: Option<u64>) -> (u64, u64) {
        match (size, input.byte() % 4) {
            (Some(size), 0..=2) => {
                let at = input.u64() % (size + 1);
                (at, input.u64() % (size - at + 1))
            }
            _ => (input.value(), input.value()),
        }
    }

    fn write(&mut self, input: &mut Input<'_>) {
        let Some(m) = self.pick_memory(input) else {
            return;
        };
        let offset = self.offset(input, Some(m));
        let size = self.chunk_size(m, offset);
        let (at, len) = Self::range(input, size);
        // Never build more than the io quota plus one byte.
        let len = len.min(quotas().io_bytes + 1);
        self.salt += 1;
        let data = fill(len as usize, self.salt);
        let rep = self.memories[m].rep;
        let result = HostMemory::write(
            &mut self.state.resmem(),
            borrow(rep),
            offset,
            at,
            data.clone(),
        );
        let result = self.note(result);
        match size {
            Some(size) if at.checked_add(len).is_some_and(|end| end <= size) => {
                if len > quotas().io_bytes {
                    Self::expect_err("write over the io quota", result, &["quota-exceeded"]);
                } else {
                    result.unwrap_or_else(|e| panic!("write inside a chunk: {e:?}"));
                    self.model_write(m, offset.segment, offset.offset + at, &data);
                }
            }
            _ => Self::expect_err(
                "write outside a chunk",
                result,
                &["invalid-offset", "quota-exceeded"],
            ),
        }
    }

    fn read(&mut self, input: &mut Input<'_>) {
        let Some(m) = self.pick_memory(input) else {
            return;
        };
        let offset = self.offset(input, Some(m));
        let packed = pack(offset);
        let size = self.chunk_size(m, offset);
        let (at, len) = Self::range(input, size);
        let rep = self.memories[m].rep;
        let result = HostMemory::read(&mut self.state.resmem(), borrow(rep), offset, at, len);
        let result = self.note(result);
        match size {
            Some(size) if at.checked_add(len).is_some_and(|end| end <= size) => {
                if len > quotas().io_bytes {
                    Self::expect_err("read over the io quota", result, &["quota-exceeded"]);
                } else {
                    let bytes = result.expect("read inside a chunk");
                    let data = &self.memories[m].chunks[&packed];
                    assert!(
                        bytes[..] == data[at as usize..(at + len) as usize],
                        "read {len} bytes at {at} of {offset:?}: not what was written"
                    );
                }
            }
            _ => Self::expect_err(
                "read outside a chunk",
                result,
                &["invalid-offset", "quota-exceeded"],
            ),
        }
    }

    fn open_view(&mut self, input: &mut Input<'_>) {
        let name = self.name(input);
        let writable = input.byte().is_multiple_of(2);
        let mode = if writable {
            AccessMode::ReadWrite
        } else {
            AccessMode::Read
        };
        let timeout = u32::from(input.byte() % 3);
        let result = HostView::open(&mut self.state.resmem(), name.clone(), mode, timeout);
        let live = self.memories.iter().any(|m| m.name == name);
        match self.note(result) {
            Ok(handle) => {
                assert!(live, "opened {name:?}, which this guest does not own");
                self.views.push(ViewModel {
                    rep: handle.rep(),
                    memory: Some(name),
                    writable,
                    registered: HashMap::new(),
                });
            }
            Err(e) if live => {
                Self::expect_err("open a live memory", Err::<(), _>(e), &["quota-exceeded"])
            }
            Err(e) => Self::expect_err(
                "open a missing memory",
                Err::<(), _>(e),
                &["does-not-exist", "invalid-name", "quota-exceeded"],
            ),
        }
    }

    fn drop_view(&mut self, input: &mut Input<'_>) {
        let Some(v) = self.pick_view(input) else {
            return;
        };
        let view = self.views.swap_remove(v);
        HostView::drop(&mut self.state.resmem(), Resource::new_own(view.rep)).unwrap();
    }

    /// The memory index a view shows, if its owner still lives.
    fn view_memory(&self, v: usize) -> Option<usize> {
        let name = self.views[v].memory.as_deref()?;
        self.memories.iter().position(|m| m.name == name)
    }

    fn register(&mut self, input: &mut Input<'_>) {
        let Some(v) = self.pick_view(input) else {
            return;
        };
        let offset = self.offset(input, self.view_memory(v));
        let result =
            HostView::register(&mut self.state.resmem(), borrow(self.views[v].rep), offset);
        match self.note(result) {
            Ok(()) => *self.views[v].registered.entry(pack(offset)).or_default() += 1,
            Err(e) => {
                let live = self
                    .view_memory(v)
                    .is_some_and(|m| self.chunk_size(m, offset).is_some());
                let allowed: &[&str] = if live {
                    // A live chunk of a live memory registers unless the quota is reached.
                    &["quota-exceeded"]
                } else {
                    &["invalid-offset", "quota-exceeded", "io", "does-not-exist"]
                };
                Self::expect_err("register", Err::<(), _>(e), allowed);
            }
        }
    }

    fn unregister(&mut self, input: &mut Input<'_>) {
        let Some(v) = self.pick_view(input) else {
            return;
        };
        let offset = if !input.byte().is_multiple_of(4) && !self.views[v].registered.is_empty() {
            let k = input.below(self.views[v].registered.len());
            unpack(*self.views[v].registered.keys().nth(k).expect("k < len"))
        } else {
            self.offset(input, self.view_memory(v))
        };
        let result =
            HostView::unregister(&mut self.state.resmem(), borrow(self.views[v].rep), offset);
        let result = self.note(result);
        let packed = pack(offset);
        match self.views[v].registered.get_mut(&packed) {
            Some(count) if offset.offset < 1 << 56 => {
                result.unwrap_or_else(|e| panic!("unregister a registered offset: {e:?}"));
                *count -= 1;
                if *count == 0 {
                    self.views[v].registered.remove(&packed);
                }
            }
            _ => Self::expect_err("unregister", result, &["invalid-offset"]),
        }
    }

    fn view_target(&self, input: &mut Input<'_>, v: usize) -> PointerOffset {
        if !input.byte().is_multiple_of(4) && !self.views[v].registered.is_empty() {
            let k = input.below(self.views[v].registered.len());
            unpack(*self.views[v].registered.keys().nth(k).expect("k < len"))
        } else {
            self.offset(input, self.view_memory(v))
        }
    }

    fn view_read(&mut self, input: &mut Input<'_>) {
        let Some(v) = self.pick_view(input) else {
            return;
        };
        let offset = self.view_target(input, v);
        let m = self.view_memory(v);
        let size = m.and_then(|m| self.chunk_size(m, offset));
        let (at, len) = Self::range(input, size);
        let result = HostView::read(
            &mut self.state.resmem(),
            borrow(self.views[v].rep),
            offset,
            at,
            len,
        );
        let result = self.note(result);
        let registered =
            offset.offset < 1 << 56 && self.views[v].registered.contains_key(&pack(offset));
        match result {
            Ok(bytes) => {
                assert!(registered, "a view read an unregistered offset {offset:?}");
                assert!(len <= quotas().io_bytes, "read over the io quota");
                assert_eq!(bytes.len() as u64, len, "view read length");
                if let Some(m) = m {
                    let start = offset.offset + at;
                    let model = self.model_bytes(m, offset.segment, start, bytes.len());
                    for (i, (got, want)) in bytes.iter().zip(&model).enumerate() {
                        if let Some(want) = want {
                            assert_eq!(got, want, "view byte {} of {offset:?}+{at}", i);
                        }
                    }
                }
            }
            Err(e) => {
                let fits = size.is_some_and(|s| at.checked_add(len).is_some_and(|e| e <= s));
                if registered && fits && len <= quotas().io_bytes {
                    panic!("a view read inside a registered live chunk failed: {e:?}");
                }
                Self::expect_err(
                    "view read",
                    Err::<(), _>(e),
                    &["invalid-offset", "quota-exceeded"],
                );
            }
        }
    }

    fn view_write(&mut self, input: &mut Input<'_>) {
        let Some(v) = self.pick_view(input) else {
            return;
        };
        let offset = self.view_target(input, v);
        let m = self.view_memory(v);
        let size = m.and_then(|m| self.chunk_size(m, offset));
        let (at, len) = Self::range(input, size);
        let len = len.min(quotas().io_bytes + 1);
        self.salt += 1;
        let data = fill(len as usize, self.salt);
        let rep = self.views[v].rep;
        let result = HostView::write(
            &mut self.state.resmem(),
            borrow(rep),
            offset,
            at,
            data.clone(),
        );
        let result = self.note(result);
        let registered =
            offset.offset < 1 << 56 && self.views[v].registered.contains_key(&pack(offset));
        match result {
            Ok(()) => {
                assert!(
                    registered,
                    "a view wrote at an unregistered offset {offset:?}"
                );
                assert!(self.views[v].writable, "a read-only view wrote");
                if let Some(m) = m {
                    self.model_write(m, offset.segment, offset.offset + at, &data);
                }
            }
            Err(e) => {
                let fits = size.is_some_and(|s| at.checked_add(len).is_some_and(|e| e <= s));
                if registered && fits && len <= quotas().io_bytes && self.views[v].writable {
                    panic!("a view write inside a registered live chunk failed: {e:?}");
                }
                Self::expect_err(
                    "view write",
                    Err::<(), _>(e),
                    &["invalid-offset", "quota-exceeded", "permission-denied"],
                );
            }
        }
    }

    fn exists(&mut self, input: &mut Input<'_>) {
        let name = self.name(input);
        let live = self.memories.iter().any(|m| m.name == name);
        let result = Host::exists(&mut self.state.resmem(), name.clone());
        match self.note(result) {
            Ok(found) => assert_eq!(found, live, "exists({name:?})"),
            Err(e) => {
                assert!(!live, "exists of a live memory failed: {e:?}");
                Self::expect_err("exists", Err::<(), _>(e), &["invalid-name"]);
            }
        }
    }

    fn list(&mut self) {
        let result = Host::list(&mut self.state.resmem());
        let mut listed = self.note(result).expect("list");
        listed.sort();
        let mut ours: Vec<String> = self.memories.iter().map(|m| m.name.clone()).collect();
        ours.sort();
        assert_eq!(listed, ours, "list");
    }

    fn remove(&mut self, input: &mut Input<'_>) {
        let name = self.name(input);
        let live = self.memories.iter().any(|m| m.name == name);
        let result = Host::remove(&mut self.state.resmem(), name.clone());
        let result = self.note(result);
        if live {
            Self::expect_err("remove a live memory", result, &["permission-denied"]);
        } else {
            match result {
                Ok(removed) => assert!(!removed, "remove({name:?}) removed something"),
                Err(e) => Self::expect_err("remove", Err::<(), _>(e), &["invalid-name"]),
            }
        }
    }

    fn inspect(&mut self, input: &mut Input<'_>) {
        if let Some(m) = self.pick_memory(input) {
            let rep = self.memories[m].rep;
            let n = HostMemory::number_of_active_segments(&mut self.state.resmem(), borrow(rep))
                .unwrap();
            assert!((1..=256).contains(&n), "{n} active segments");
        }
        if let Some(v) = self.pick_view(input) {
            let rep = self.views[v].rep;
            let n =
                HostView::number_of_active_segments(&mut self.state.resmem(), borrow(rep)).unwrap();
            assert!(n <= 256, "{n} segments mapped by a view");
        }
    }

    fn check_usage(&self) {
        let expected = Usage {
            memories: self.memories.len() as u32,
            views: self.views.len() as u32,
            chunks: self.memories.iter().map(|m| m.chunks.len() as u64).sum(),
            registrations: self
                .views
                .iter()
                .flat_map(|v| v.registered.values())
                .map(|&c| u64::from(c))
                .sum(),
            // This target drives only resizable-memory.
            ..Usage::default()
        };
        assert_eq!(self.state.usage(), expected, "usage");
        assert!(
            self.state.shm_bytes() <= quotas().shm_bytes,
            "shm quota overrun"
        );
    }

    /// Drops views and memories in the input's order, then the state; nothing may be left.
    fn finish(mut self) -> Stats {
        // Every chunk still holds what the model says.
        for m in 0..self.memories.len() {
            let rep = self.memories[m].rep;
            let chunks: Vec<(u64, Vec<u8>)> = self.memories[m]
                .chunks
                .iter()
                .map(|(&p, d)| (p, d.clone()))
                .collect();
            for (packed, data) in chunks {
                let read = HostMemory::read(
                    &mut self.state.resmem(),
                    borrow(rep),
                    unpack(packed),
                    0,
                    data.len() as u64,
                );
                assert!(
                    self.note(read).expect("read a live chunk") == data,
                    "final contents"
                );
            }
        }
        for view in std::mem::take(&mut self.views) {
            HostView::drop(&mut self.state.resmem(), Resource::new_own(view.rep)).unwrap();
        }
        for memory in std::mem::take(&mut self.memories) {
            HostMemory::drop(&mut self.state.resmem(), Resource::new_own(memory.rep)).unwrap();
        }
        assert_eq!(
            self.state.usage(),
            Usage::default(),
            "usage after dropping everything"
        );
        assert_eq!(
            self.state.shm_bytes(),
            0,
            "shm bytes after dropping everything"
        );
        drop(self.state);
        let left: Vec<String> = std::fs::read_dir("/dev/shm")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "objects left behind: {left:?}");
        self.stats
    }
}
