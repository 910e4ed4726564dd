//! The `header_parse` fuzz driver, shared by the libFuzzer target (`fuzz/fuzz_targets`) and
//! the stable corpus replay test (`host/segments/tests/fuzz_corpus.rs`).
//!
//! Each input sets up a live memory on the process-local backend (three segments, chunks with
//! known bytes), then decodes a program from the input: a peer's writes into the management
//! object or a data segment (trailer included), replaced segment objects of any size, raw
//! management objects of any content, and views opening the memory and translating offsets,
//! interleaved with owner calls. Whatever the bytes, every call must return a typed error or a
//! result that holds up: a translated address lies inside the payload the view mapped for that
//! segment and can be read. Anything else panics.

use std::alloc::Layout;
use std::sync::atomic::{AtomicU64, Ordering};

use resmem::backend::{Backend, CreateOptions, Mapping};
use resmem::header::MGMT_SIZE;
use resmem::{
    AccessMode, AllocationStrategy, AllocatorKind, Config, Memory, OpenError, PointerOffset,
    ProcessLocal, View,
};

/// What one input did, for the replay test's coverage checks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub opens_ok: u64,
    pub open_errors: Vec<OpenError>,
    pub translations_ok: u64,
    pub translate_errors: Vec<OpenError>,
    pub patches: u64,
}

/// Reads the program's operands; runs dry (zeros) at the end of the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8().unwrap_or(0), self.u8().unwrap_or(0)])
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        for b in &mut bytes {
            *b = self.u8().unwrap_or(0);
        }
        u64::from_le_bytes(bytes)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn unique_prefix() -> String {
    static RUN: AtomicU64 = AtomicU64::new(0);
    format!(
        "fz{}_{}_",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    )
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// Copies `bytes` into `mapping` at `at` (wrapped into the mapping), as a peer's write.
fn patch(mapping: &Mapping, at: usize, bytes: &[u8]) {
    let len = mapping.len();
    if len == 0 || bytes.is_empty() {
        return;
    }
    let at = at % len;
    let n = bytes.len().min(len - at);
    // SAFETY: `at + n <= len`; the mapping is writable (opened read-write) and alive; the
    // bytes are plain shared memory that every reader accesses with atomics or raw copies.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), mapping.as_ptr().add(at), n) };
}

fn open_view(name: &str, config: &Config, stale: bool) -> Result<View, OpenError> {
    View::builder(name)
        .config(config)
        .allow_stale(stale)
        .open(AccessMode::Read)
}

/// Registers `offset`, checks the address against the payload the view has mapped for its
/// segment, reads the first byte, unregisters.
fn translate(view: &View, offset: PointerOffset, out: &mut Outcome) {
    // SAFETY: unregistered below, after the only read.
    match unsafe { view.register_and_translate_offset(offset) } {
        Ok(ptr) => {
            let payload = view
                .segment_payload_size(offset.segment_id())
                .expect("a registered offset's segment is mapped");
            assert!(
                offset.offset() < payload as u64,
                "translated {offset:?} outside the mapped payload of {payload} bytes"
            );
            // SAFETY: the address lies inside the mapped payload (checked above) and stays
            // mapped while registered.
            let _ = unsafe { std::ptr::read_volatile(ptr) };
            // SAFETY: registered above; `ptr` is not used afterwards.
            unsafe { view.unregister_offset(offset) };
            out.translations_ok += 1;
        }
        Err(e) => out.translate_errors.push(e),
    }
}

/// Runs one input. Panics if any call misbehaves.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let mut out = Outcome::default();
    let prefix = unique_prefix();
    let config = Config::default().prefix(&prefix).backend(ProcessLocal);
    let backend: &dyn Backend = config.get_backend();
    let allocator = if input.u8().unwrap_or(0) & 1 == 0 {
        AllocatorKind::Pool
    } else {
        AllocatorKind::Bump
    };
    let memory = Memory::builder("m")
        .config(&config)
        .max_chunk_layout_hint(layout(64))
        .max_number_of_chunks_hint(2)
        .allocation_strategy(AllocationStrategy::PowerOfTwo)
        .allocator(allocator)
        .create()
        .expect("creating a memory in a fresh namespace");
    // Chunks in segments 0, 1 and 2.
    let mut chunks: Vec<PointerOffset> = [64, 64, 256, 4096]
        .iter()
        .map(|&size| memory.allocate(layout(size)).expect("allocate").offset)
        .collect();
    let mgmt_name = format!("{prefix}m__mgmt");
    let segment_name = |id: u8| format!("{prefix}m__{id}");
    let mgmt = backend
        .open(&mgmt_name, AccessMode::ReadWrite)
        .expect("the management object");
    let mut views: Vec<View> = Vec::new();

    for _ in 0..64 {
        let Some(op) = input.u8() else { break };
        match op % 9 {
            // A peer writes into the management object.
            0 => {
                let at = usize::from(input.u16()) % MGMT_SIZE;
                let n = usize::from(input.u8().unwrap_or(0) % 64);
                patch(&mgmt, at, input.bytes(n));
                out.patches += 1;
            }
            // A peer writes into a data segment (payload, padding or trailer).
            1 => {
                let id = input.u8().unwrap_or(0) % 4;
                let from_end = usize::from(input.u16());
                let n = usize::from(input.u8().unwrap_or(0) % 64);
                let bytes = input.bytes(n).to_vec();
                if let Ok(segment) = backend.open(&segment_name(id), AccessMode::ReadWrite) {
                    let at = segment.len().saturating_sub(from_end % (segment.len() + 1));
                    patch(&segment, at, &bytes);
                    out.patches += 1;
                }
            }
            // A peer replaces a data segment object with one of another size and content.
            2 => {
                let id = input.u8().unwrap_or(0) % 4;
                let size = 1 + usize::from(input.u16());
                let copy_trailer = input.u8().unwrap_or(0) & 1 == 1;
                let fill = input.bytes(32).to_vec();
                let old = backend.open(&segment_name(id), AccessMode::Read).ok();
                let _ = backend.remove(&segment_name(id));
                let options = CreateOptions {
                    permissions: 0o600,
                    prefault: false,
                    lock_exclusive: false,
                };
                if let Ok(new) = backend.create(&segment_name(id), size, &options) {
                    patch(&new, 0, &fill);
                    if let (true, Some(old)) = (copy_trailer, &old) {
                        // A careful attacker copies the original's tail (its trailer).
                        let n = old.len().min(new.len()).min(4096);
                        // SAFETY: `n` bytes at the end of both mappings, which are distinct
                        // objects and alive.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                old.as_ptr().add(old.len() - n),
                                new.as_ptr().add(new.len() - n),
                                n,
                            )
                        };
                    }
                }
                out.patches += 1;
            }
            // A view opens the memory (also as a forensic open).
            3 | 4 => match open_view("m", &config, op % 9 == 4) {
                Ok(view) => {
                    // Validated at open: the current segment's record is live and sane (nobody
                    // wrote since, this is one thread).
                    let current = view.header_info().current_segment;
                    let records = view.segment_records();
                    assert!(records.iter().any(|(id, _)| *id == current));
                    for (_, record) in records {
                        assert!(record.layout.chunk_size <= record.layout.payload_size);
                        assert!(record.layout.chunk_align.is_power_of_two());
                    }
                    let _ = view.owner_current_segment();
                    let _ = view.is_owner_alive();
                    out.opens_ok += 1;
                    if views.len() < 4 {
                        views.push(view);
                    }
                }
                Err(e) => out.open_errors.push(e),
            },
            // A view translates a known chunk's offset, or any offset.
            5 => {
                let raw = input.u64();
                let offset = if raw & 1 == 0 && !chunks.is_empty() {
                    chunks[(raw >> 1) as usize % chunks.len()]
                } else {
                    PointerOffset::from_u64(raw >> 1)
                };
                if let Some(view) = views.last() {
                    translate(view, offset, &mut out);
                }
            }
            // The owner keeps working: allocate, or return any offset (checked).
            6 => {
                let size = 8 << (input.u8().unwrap_or(0) % 14);
                if let Ok(chunk) = memory.allocate(layout(size)) {
                    chunks.push(chunk.offset);
                }
            }
            7 => {
                let raw = input.u64();
                let _ = memory.try_deallocate(PointerOffset::from_u64(raw));
            }
            // A raw management object of another memory, with the input as its content,
            // held by a (fake) live owner.
            _ => {
                let size = usize::from(input.u16()) + 1;
                let content = input.bytes(MGMT_SIZE).to_vec();
                let options = CreateOptions {
                    permissions: 0o600,
                    prefault: false,
                    lock_exclusive: true,
                };
                let raw = format!("{prefix}raw__mgmt");
                let _ = backend.remove(&raw);
                if let Ok(fake) = backend.create(&raw, size.max(content.len()), &options) {
                    patch(&fake, 0, &content);
                    match open_view("raw", &config, false) {
                        Ok(view) => {
                            out.opens_ok += 1;
                            translate(&view, PointerOffset::from_u64(input.u64()), &mut out);
                        }
                        Err(e) => out.open_errors.push(e),
                    }
                    let _ = resmem::list(&config);
                    let _ = resmem::exists("raw", &config);
                }
                let _ = backend.remove(&raw);
            }
        }
    }
    // Every view's registered offsets were unregistered; the owner cleans up.
    for view in &views {
        let _ = view.number_of_active_segments();
    }
    drop(views);
    drop(mgmt);
    for offset in chunks {
        let _ = memory.try_deallocate(offset);
    }
    drop(memory);
    for object in backend.list().unwrap_or_default() {
        if object.starts_with(&prefix) {
            let _ = backend.remove(&object);
        }
    }
    out
}
