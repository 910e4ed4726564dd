//! End-to-end tests of the WebAssembly side: the real guest components of `guest/` (built by
//! `resmem-guests`), run by wasmtime through `resmem-host`'s [`GuestHost`] in this process,
//! against native owners and views in this process and native peer *processes*
//! (`resmem-test-peer`, with `--pattern guest`).
//!
//! Every test has its own [`Scope`] (a unique namespace whose leftovers in `/dev/shm` fail the
//! test) and its own `GuestHost` under that namespace. Guests run on threads with their stdio
//! on pipes ([`Running`]); a guest or child process that does not finish within
//! [`CHILD_TIMEOUT`] fails the test (children are killed and reaped). Compiled components are
//! cached under the target directory, so only the first test to load a guest compiles it.

mod support;

#[path = "guests/channel.rs"]
mod channel;
#[path = "channel_support/mod.rs"]
mod channel_support;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use resmem::{AccessMode, AllocationStrategy, Config, Memory, OpenError, PointerOffset, View};
use resmem_e2e::{ChunkSpec, Pattern, exit};
use resmem_host::bindings::api::{Host, HostMemory, HostView, MemoryConfig};
use resmem_host::bindings::types::{
    AccessMode as WitAccess, AllocationStrategy as WitStrategy, Error as WitError,
    Layout as WitLayout, PointerOffset as WitOffset,
};
use resmem_host::run::Buffer;
use resmem_host::{EngineOptions, GuestHost, GuestState, Policy, Quotas, ResmemView, RunOutcome};
use support::*;
use wasmtime::component::{Component, Resource};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};

/// Longest a guest run or a child process may take before the test fails (children are
/// killed).
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The filter plugin XORs every byte with this (guest/filter).
const FILTER_KEY: u8 = 0x5A;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Compiled components are cached in the target directory: cheap repeated loads, and nothing
/// written to the user's home.
fn engine_options() -> EngineOptions {
    EngineOptions {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resmem-cwasm")),
    }
}

fn policy(scope: &Scope, quotas: Quotas) -> Policy {
    Policy::builder()
        .namespace(scope.prefix())
        .quotas(quotas)
        .build()
}

/// A host whose guests live in the scope's namespace, with the default quotas.
fn host(scope: &Scope) -> Arc<GuestHost> {
    host_with(scope, Quotas::default())
}

fn host_with(scope: &Scope, quotas: Quotas) -> Arc<GuestHost> {
    let host = GuestHost::new(policy(scope, quotas), engine_options()).expect("a guest host");
    assert_eq!(host.policy().namespace(), scope.prefix());
    Arc::new(host)
}

fn load(host: &GuestHost, bytes: &[u8]) -> Component {
    host.load(bytes).expect("compile or load the component")
}

/// Fails unless the namespace has no memory and `/dev/shm` no object with its prefix.
fn assert_empty(scope: &Scope) {
    let names = resmem::list(&scope.config()).expect("list the namespace");
    assert!(
        names.is_empty(),
        "memories left in the namespace: {names:?}"
    );
    scope.assert_clean();
}

/// A command guest running on its own thread, stdin, stdout and stderr on pipes.
struct Running {
    what: String,
    thread: Option<JoinHandle<anyhow::Result<RunOutcome>>>,
    stdin: Option<std::io::PipeWriter>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a guest run ended, with everything it printed.
#[derive(Debug)]
struct Finished {
    outcome: RunOutcome,
    /// Stdout lines not consumed through [`Running::line`] before the end.
    stdout: Vec<String>,
    stderr: String,
}

impl Running {
    /// Starts `component` with `args` (`args[0]` is the program name).
    fn start(host: &Arc<GuestHost>, component: &Component, args: &[&str]) -> Self {
        let (stdout_reader, stdout_writer) = std::io::pipe().expect("a pipe");
        let (stderr_reader, stderr_writer) = std::io::pipe().expect("a pipe");
        let (stdin_reader, stdin_writer) = std::io::pipe().expect("a pipe");
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(OutputFile::new(File::from(OwnedFd::from(stdout_writer))))
            .stderr(OutputFile::new(File::from(OwnedFd::from(stderr_writer))))
            .stdin(InputFile::new(File::from(OwnedFd::from(stdin_reader))))
            .args(args);
        let (host, component) = (Arc::clone(host), component.clone());
        // The store, and with it the write ends of stdout and stderr, is gone when the run is.
        let thread = std::thread::spawn(move || {
            host.run_command(&component, &mut wasi)
                .map_err(anyhow::Error::from)
        });
        let lines = line_channel(stdout_reader);
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr_reader).read_to_string(&mut text);
            text
        });
        Self {
            what: args.join(" "),
            thread: Some(thread),
            stdin: Some(stdin_writer),
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next stdout line; fails the test after [`CHILD_TIMEOUT`] or at the end of output.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(CHILD_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no output within a minute", self.what),
            Err(RecvTimeoutError::Disconnected) => {
                let end = self.finish_inner();
                panic!(
                    "{}: output ended while a line was expected: {end:?}",
                    self.what
                )
            }
        }
    }

    /// The stdout lines before `ready`.
    fn until_ready(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.line() {
                line if line == "ready" => return lines,
                line => lines.push(line),
            }
        }
    }

    /// Sends the line a waiting producer exits on.
    fn release(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin)
            .and_then(|()| stdin.flush())
            .expect("write the guest's stdin");
    }

    /// Closes stdin and waits for the end of the run (at most [`CHILD_TIMEOUT`]).
    fn finish(mut self) -> Finished {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Finished {
        self.stdin = None;
        let thread = self.thread.take().expect("finished once");
        let deadline = Instant::now() + CHILD_TIMEOUT;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{}: the guest did not finish within {CHILD_TIMEOUT:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let outcome = thread
            .join()
            .expect("the guest thread panicked")
            .unwrap_or_else(|e| panic!("{}: run_command failed: {e:?}", self.what));
        let mut stdout = Vec::new();
        loop {
            match self.lines.recv_timeout(CHILD_TIMEOUT) {
                Ok(line) => stdout.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("{}: stdout never closed", self.what),
            }
        }
        let stderr = self
            .stderr
            .take()
            .expect("stderr read once")
            .join()
            .expect("the stderr reader panicked");
        Finished {
            outcome,
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    /// Lets a guest that waits for stdin go and waits (bounded) for its store to be dropped,
    /// so the scope's leftover check sees the final state even when a test failed early.
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + CHILD_TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Runs a command guest to completion with stdin closed.
fn run(host: &Arc<GuestHost>, component: &Component, args: &[&str]) -> Finished {
    Running::start(host, component, args).finish()
}

/// One `chunk ...` line of the producer guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GuestChunk {
    seed: u64,
    offset: u64,
    len: u64,
    segment: u8,
    active: u32,
}

impl GuestChunk {
    fn parse(line: &str) -> Self {
        let fields = line
            .strip_prefix("chunk ")
            .unwrap_or_else(|| panic!("not a chunk line: {line:?}"));
        let mut chunk = Self {
            seed: u64::MAX,
            offset: u64::MAX,
            len: u64::MAX,
            segment: u8::MAX,
            active: u32::MAX,
        };
        let mut seen = 0;
        for field in fields.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {field:?} in {line:?}"));
            let number = || -> u64 {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad number in {line:?}"))
            };
            match key {
                "seed" => chunk.seed = number(),
                "offset" => chunk.offset = number(),
                "len" => chunk.len = number(),
                "segment" => chunk.segment = number() as u8,
                "active" => chunk.active = number() as u32,
                other => panic!("unknown field {other:?} in {line:?}"),
            }
            seen += 1;
        }
        assert_eq!(seen, 5, "{line:?}");
        chunk
    }

    fn pointer(&self) -> PointerOffset {
        PointerOffset::from_u64(self.offset)
    }

    fn spec(&self) -> ChunkSpec {
        ChunkSpec::new(self.pointer(), self.len as usize, self.seed)
    }

    /// `<offset>:<len>:<seed>`, the consumer guest's argument.
    fn consumer_arg(&self) -> String {
        format!("{}:{}:{}", self.offset, self.len, self.seed)
    }
}

fn parse_chunks(lines: &[String]) -> Vec<GuestChunk> {
    lines.iter().map(|l| GuestChunk::parse(l)).collect()
}

/// Checks the producer's report: `count` chunks of `first << i` bytes with seeds `1..`, every
/// chunk in a segment of its own (the packed offset says which), all segments still active.
fn assert_doubling(chunks: &[GuestChunk], count: usize, first: u64) {
    assert_eq!(chunks.len(), count, "{chunks:?}");
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.seed, i as u64 + 1, "{c:?}");
        assert_eq!(c.len, first << i, "{c:?}");
        assert_eq!(c.pointer().segment_id().value(), c.segment, "{c:?}");
        assert_eq!(
            c.active,
            i as u32 + 1,
            "every chunk keeps its segment alive: {c:?}"
        );
        if i > 0 {
            assert_ne!(
                c.segment,
                chunks[i - 1].segment,
                "chunk {i} needs a new segment"
            );
        }
    }
}

/// Registers `offset` with a native view, checks `len` bytes in place against the guests'
/// pattern of `seed`, unregisters.
fn check_in_place(view: &View, offset: PointerOffset, len: usize, seed: u64) -> Result<(), String> {
    let bytes = copy_from_view(view, offset, len)?;
    Pattern::Guest
        .check(&bytes, seed)
        .map_err(|m| format!("chunk at {offset}: {m}"))
}

/// Copies `len` bytes at `offset` out of a native view (register, bounds check, unregister).
fn copy_from_view(view: &View, offset: PointerOffset, len: usize) -> Result<Vec<u8>, String> {
    // SAFETY: unregistered below, after the last use of the address.
    let ptr = unsafe { view.register_and_translate_offset(offset) }
        .map_err(|e| format!("register {offset}: {e:?}"))?;
    let payload = view.segment_payload_size(offset.segment_id()).unwrap_or(0);
    let inside = (offset.offset() as usize)
        .checked_add(len)
        .is_some_and(|end| end <= payload);
    let bytes = inside.then(|| {
        // SAFETY: the range lies inside the mapped payload of the offset's segment (checked
        // just above); nobody writes these bytes while the tests read them.
        unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
    });
    // SAFETY: registered above; `ptr` is not used after this.
    unsafe { view.unregister_offset(offset) };
    bytes.ok_or_else(|| format!("{len} bytes at {offset} exceed the {payload}-byte payload"))
}

/// A native owner's chunk filled with the guests' pattern.
fn alloc_guest_filled(memory: &Memory, len: usize, seed: u64) -> ChunkSpec {
    let chunk = memory
        .allocate(layout(len))
        .unwrap_or_else(|e| panic!("allocating {len} bytes: {e:?}"));
    // SAFETY: a fresh chunk of at least `len` bytes that this test owns until the memory is
    // dropped; guests only read it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(chunk.data_ptr, len) };
    Pattern::Guest.fill(bytes, seed);
    ChunkSpec::new(chunk.offset, len, seed)
}

/// `resmem-test-peer verify --pattern guest` of `specs` in a separate process.
fn peer_verify(scope: &Scope, name: &str, specs: &[ChunkSpec]) -> Outcome {
    let mut args = verify_args(scope, name, specs);
    args.extend(["--pattern".to_owned(), "guest".to_owned()]);
    run_peer(&args, CHILD_TIMEOUT)
}

fn wit_offset(offset: PointerOffset) -> WitOffset {
    WitOffset {
        segment: offset.segment_id().value(),
        offset: offset.offset(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A guest owner, verified by a native peer process
// ---------------------------------------------------------------------------------------------

/// The producer guest grows memory `frames` through eight segments and waits; a native peer
/// process maps every segment from the printed offsets and checks every byte (and fails on a
/// wrong seed). When the guest exits, its memory is gone.
#[test]
fn guest_owner_is_verified_byte_by_byte_by_a_native_peer_process() {
    let scope = Scope::new("gown");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host, &producer, &["producer", "frames", "8", "4096"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 8, 4096);

    // While the guest waits, its memory is a normal native memory of the namespace.
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["frames"]);
    assert_eq!(
        scope.objects().len(),
        1 + chunks.len(),
        "the management object and one segment per chunk: {:?}",
        scope.objects()
    );
    let specs: Vec<ChunkSpec> = chunks.iter().map(GuestChunk::spec).collect();
    let out = peer_verify(&scope, "frames", &specs);
    let summary = out.summary();
    assert_eq!(
        (summary.bytes, summary.offsets, summary.active_segments),
        (4096 * 255, 8, 8),
        "{summary:?}"
    );
    assert!(out.stdout.contains("owner_alive=true"), "{}", out.stdout);

    // The same peer fails on a wrong seed, so the check above means something.
    let mut wrong = specs.clone();
    wrong[5].seed += 1;
    let out = peer_verify(&scope, "frames", &wrong);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");
    assert!(out.stderr.contains("mismatch at byte 0"), "{}", out.stderr);

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert!(end.stdout.is_empty(), "{end:?}");
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 2. A native owner, read in place by a guest view
// ---------------------------------------------------------------------------------------------

/// This process owns a memory with pattern-filled chunks in several segments; the consumer
/// guest opens a view, maps each segment from the offsets and checks every byte. A wrong seed
/// and a corrupted last byte make it exit 1.
#[test]
fn native_owner_is_verified_in_place_by_a_guest_view() {
    let scope = Scope::new("gview");
    let host = host(&scope);
    let consumer = load(&host, resmem_guests::CONSUMER_WASM);
    let memory = Memory::builder("native")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let sizes = [
        4 * KIB,
        4 * KIB,
        10_000,
        64 * KIB,
        300_000,
        MIB + MIB / 2 + 3,
    ];
    let specs: Vec<ChunkSpec> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_guest_filled(&memory, len, 100 + i as u64))
        .collect();
    let segments = segments_of(&specs);
    assert!(segments.len() >= 4, "{segments:?}");
    let arg = |s: &ChunkSpec| format!("{}:{}:{}", s.offset.as_u64(), s.len, s.seed);

    let mut args = vec!["consumer".to_owned(), "native".to_owned()];
    args.extend(specs.iter().map(arg));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let end = run(&host, &consumer, &args_ref);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let total: usize = sizes.iter().sum();
    assert_eq!(end.stdout, [format!("verified {total} bytes")], "{end:?}");
    assert_eq!(end.stderr, "");

    // A wrong seed for the last chunk.
    let mut wrong = specs.clone();
    wrong[5].seed = 7;
    let args: Vec<String> = ["consumer".to_owned(), "native".to_owned()]
        .into_iter()
        .chain(wrong.iter().map(arg))
        .collect();
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let end = run(&host, &consumer, &args_ref);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(end.stdout.is_empty(), "{end:?}");
    assert!(
        end.stderr.contains("mismatch at byte 0 of the chunk") && end.stderr.contains("seed 7"),
        "{}",
        end.stderr
    );

    // The owner flips the very last byte of the 300 000-byte chunk: the guest reads the
    // owner's bytes in place, not a copy.
    let victim = specs[4];
    let ptr = memory.translate(victim.offset).expect("a live chunk");
    // SAFETY: the last byte of a chunk this test owns; no guest runs right now.
    unsafe { *ptr.add(victim.len - 1) ^= 0xFF };
    let end = run(&host, &consumer, &["consumer", "native", &arg(&victim)]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("mismatch at byte 299999 "),
        "{}",
        end.stderr
    );

    // A view leaves no object behind; the memory is the owner's until it is dropped.
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["native"]);
    drop(memory);
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 3. Guest growth under each strategy
// ---------------------------------------------------------------------------------------------

/// The producer guest grows through five segments with `--strategy` (or the default); a native
/// view of the live memory sees the strategy in the header, the bucket size each segment got
/// and every byte of every chunk.
fn guest_grows(strategy: Option<&str>, expected: AllocationStrategy, buckets: [usize; 5]) {
    let scope = Scope::new("ggrow");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut args = vec!["producer", "g", "5", "3000"];
    if let Some(strategy) = strategy {
        args.extend(["--strategy", strategy]);
    }
    let mut guest = Running::start(&host, &producer, &args);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 5, 3000);

    let view = View::builder("g")
        .config(&scope.config())
        .open(AccessMode::Read)
        .unwrap();
    assert_eq!(view.header_info().strategy, expected);
    let records = view.segment_records();
    let by_segment: Vec<(u8, usize)> = records
        .iter()
        .map(|(id, r)| (id.value(), r.layout.chunk_size))
        .collect();
    let want: Vec<(u8, usize)> = chunks
        .iter()
        .zip(buckets)
        .map(|(c, bucket)| (c.segment, bucket))
        .collect();
    assert_eq!(
        by_segment, want,
        "segment id and bucket size per live segment"
    );
    for (_, record) in &records {
        assert_eq!(record.chunks_in_use, 1, "{record:?}");
    }
    for c in &chunks {
        check_in_place(&view, c.pointer(), c.len as usize, c.seed).unwrap();
    }
    drop(view);

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_empty(&scope);
}

#[test]
fn guest_grows_by_powers_of_two_by_default() {
    guest_grows(
        None,
        AllocationStrategy::PowerOfTwo,
        [4096, 8192, 16384, 32768, 65536],
    );
}

#[test]
fn guest_grows_by_powers_of_two() {
    guest_grows(
        Some("power-of-two"),
        AllocationStrategy::PowerOfTwo,
        [4096, 8192, 16384, 32768, 65536],
    );
}

#[test]
fn guest_grows_best_fit() {
    guest_grows(
        Some("best-fit"),
        AllocationStrategy::BestFit,
        [3000, 6000, 12000, 24000, 48000],
    );
}

/// A static memory never grows: the chunk that fits segment 0's 64-byte buckets succeeds, the
/// next is refused with `out-of-memory`, and the guest reports it and exits 1 (no trap).
#[test]
fn static_guest_memory_cannot_grow() {
    let scope = Scope::new("gstatic");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let end = run(
        &host,
        &producer,
        &[
            "producer",
            "s",
            "3",
            "64",
            "--no-wait",
            "--strategy",
            "static",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    let [first, failed] = end.stdout.as_slice() else {
        panic!("two lines expected: {end:?}");
    };
    let first = GuestChunk::parse(first);
    assert_eq!(
        (first.seed, first.len, first.segment, first.active),
        (1, 64, 0, 1)
    );
    assert_eq!(
        failed,
        "failed step=allocate seed=2 len=128 error=out-of-memory"
    );
    assert!(end.stderr.contains("out of memory"), "{}", end.stderr);
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 4. Every error variant a guest can reach
// ---------------------------------------------------------------------------------------------

/// The errors guest's cases and the WIT error each must produce (the host decides; the order
/// is the guest's output order). Validation order: quotas (chunk and I/O size) before bounds;
/// sizes that overflow are invalid layouts; forged offsets are invalid offsets.
const ERROR_CASES: &[(&str, &str)] = &[
    ("name-empty", "invalid-name"),
    ("name-slash", "invalid-name"),
    ("name-dotdot", "invalid-name"),
    ("name-nul", "invalid-name"),
    ("name-10k", "invalid-name"),
    ("view-name-empty", "invalid-name"),
    ("exists-name-slash", "invalid-name"),
    ("remove-name-nul", "invalid-name"),
    ("layout-align-3", "invalid-layout"),
    ("layout-align-0", "invalid-layout"),
    ("layout-size-overflow", "invalid-layout"),
    ("hint-align-3", "invalid-layout"),
    ("grow-shrink", "invalid-layout"),
    ("offset-forged-deallocate", "invalid-offset"),
    ("offset-forged-read", "invalid-offset"),
    ("offset-forged-grow", "invalid-offset"),
    ("offset-freed-deallocate", "invalid-offset"),
    ("offset-freed-write", "invalid-offset"),
    ("read-past-chunk", "invalid-offset"),
    ("write-past-chunk", "invalid-offset"),
    ("view-register-forged", "invalid-offset"),
    ("view-read-unregistered", "invalid-offset"),
    ("already-exists", "already-exists"),
    ("view-does-not-exist", "does-not-exist"),
    ("view-write-read-only", "permission-denied"),
    ("quota-huge-allocation", "quota-exceeded"),
    ("quota-too-many-memories", "quota-exceeded"),
    ("quota-read-4gib", "quota-exceeded"),
    ("static-full", "out-of-memory"),
    ("max-reallocations", "max-reallocations-reached"),
];

/// Every case of the WIT `error` variant.
const WIT_ERRORS: &[&str] = &[
    "invalid-name",
    "invalid-layout",
    "invalid-offset",
    "already-exists",
    "does-not-exist",
    "permission-denied",
    "out-of-memory",
    "max-reallocations-reached",
    "quota-exceeded",
    "timeout",
    "io",
];

/// The errors guest provokes each error; every `case <name>: <variant>` line must name the
/// expected variant, the guest must agree (it reports disagreements on stderr) and survive
/// every one of them, and it must leave nothing behind.
#[test]
fn errors_guest_reaches_every_error_with_the_expected_variant() {
    let scope = Scope::new("gerr");
    let host = host(&scope);
    let errors = load(&host, resmem_guests::ERRORS_WASM);
    let end = run(&host, &errors, &["errors"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let observed: Vec<(&str, &str)> = end
        .stdout
        .iter()
        .map(|line| {
            line.strip_prefix("case ")
                .and_then(|rest| rest.split_once(": "))
                .unwrap_or_else(|| panic!("not a case line: {line:?}"))
        })
        .collect();
    for (i, (name, variant)) in observed.iter().enumerate() {
        let expected = ERROR_CASES.get(i).copied();
        assert_eq!(
            Some((*name, *variant)),
            expected,
            "case {i} (stderr: {})",
            end.stderr
        );
    }
    assert_eq!(observed.len(), ERROR_CASES.len(), "{:?}", end.stdout);
    assert_eq!(end.stderr, "", "the guest expected something else");
    // Every variant but timeout and io (see the next test) comes up.
    let reached: std::collections::BTreeSet<&str> = observed.iter().map(|(_, v)| *v).collect();
    let missing: Vec<&&str> = WIT_ERRORS
        .iter()
        .filter(|v| !reached.contains(**v))
        .collect();
    assert_eq!(missing, [&"timeout", &"io"]);
    assert_empty(&scope);
}

/// `timeout` and `io`, which one guest cannot provoke by itself, reach a guest view through
/// memories this test fakes: an empty management object (an owner still initialising) and one
/// holding garbage. The wait is bounded by the `open-timeout` quota, not the guest's 5 s.
#[test]
fn timeout_and_io_errors_reach_a_guest_view() {
    let scope = Scope::new("gtio");
    let host = host_with(&scope, {
        let mut quotas = Quotas::default();
        quotas.open_timeout = Duration::from_millis(300);
        quotas
    });
    let consumer = load(&host, resmem_guests::CONSUMER_WASM);
    let stuck = scope.object_path(&scope.mgmt_object("stuck"));
    let garbage = scope.object_path(&scope.mgmt_object("garbage"));
    std::fs::write(&stuck, b"").unwrap();
    std::fs::write(&garbage, [0xA5u8; 100]).unwrap();
    // Their (fake) owners hold the owner lock, as a live owner does: without it the memories
    // would be stale (`OwnerDead`, also an `io` error) instead.
    let owners: Vec<std::fs::File> = [&stuck, &garbage]
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(path).unwrap();
            file.try_lock().unwrap();
            file
        })
        .collect();

    let started = Instant::now();
    let end = run(&host, &consumer, &["consumer", "stuck", "1:8:1"]);
    let waited = started.elapsed();
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("open \"stuck\": timed out"),
        "{}",
        end.stderr
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(4500),
        "waited {waited:?}: not the open-timeout quota"
    );

    let end = run(&host, &consumer, &["consumer", "garbage", "1:8:1"]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("open \"garbage\": I/O error"),
        "{}",
        end.stderr
    );

    // Its owner gone, the memory is stale: still `io`, with a message that says so.
    drop(owners);
    let end = run(&host, &consumer, &["consumer", "garbage", "1:8:1"]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("open \"garbage\": I/O error") && end.stderr.contains("owner is gone"),
        "{}",
        end.stderr
    );

    std::fs::remove_file(stuck).unwrap();
    std::fs::remove_file(garbage).unwrap();
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 5. A trapping guest
// ---------------------------------------------------------------------------------------------

/// The trap guest allocates in two segments, keeps a view with a registered offset, then
/// executes `unreachable`: the run is `Trapped` with the reason, and the memory, its segments
/// and the view are gone.
#[test]
fn trapping_guest_leaves_nothing_behind() {
    let scope = Scope::new("gtrap");
    let host = host(&scope);
    let trap = load(&host, resmem_guests::TRAP_WASM);
    let mut guest = Running::start(&host, &trap, &["trap", "crash"]);
    assert_eq!(guest.line(), "allocated crash");
    let end = guest.finish();
    let RunOutcome::Trapped(trap) = &end.outcome else {
        panic!("a trap expected: {end:?}");
    };
    assert!(trap.message.contains("unreachable"), "{trap}");
    // The trap code and the guest's frames are kept, not only the text.
    assert_eq!(
        trap.code,
        Some(wasmtime::Trap::UnreachableCodeReached),
        "{trap}"
    );
    assert!(!trap.backtrace.is_empty(), "{trap:?}");
    assert_eq!(end.outcome.exit_code(), 101);
    assert!(end.stdout.is_empty(), "{end:?}");
    assert!(
        !resmem::exists("crash", &scope.config()).unwrap(),
        "the trapped guest's memory"
    );
    assert_empty(&scope);

    // The host is not poisoned: the next guest runs.
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let end = run(
        &host,
        &producer,
        &["producer", "after", "2", "64", "--no-wait"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 6. The filter plugin
// ---------------------------------------------------------------------------------------------

fn buffer(memory: &str, spec: &ChunkSpec) -> Buffer {
    Buffer {
        memory: memory.to_owned(),
        offset: wit_offset(spec.offset),
        len: spec.len as u64,
    }
}

/// Hands every chunk to the plugin and checks each output natively: same length, in the
/// plugin's memory `filter-out`, every byte `input ^ 0x5A`.
fn filter_and_check(
    plugin: &mut resmem_host::Plugin,
    scope: &Scope,
    memory: &str,
    specs: &[ChunkSpec],
) {
    let mut output_view: Option<View> = None;
    for spec in specs {
        let out = plugin
            .process(&buffer(memory, spec))
            .expect("the plugin does not trap")
            .unwrap_or_else(|e| panic!("the plugin refused {spec}: {e}"))
            .expect("an output buffer");
        assert_eq!(
            (out.memory.as_str(), out.len),
            ("filter-out", spec.len as u64)
        );
        let view = output_view.get_or_insert_with(|| {
            View::builder("filter-out")
                .config(&scope.config())
                .open(AccessMode::Read)
                .expect("the plugin's output memory")
        });
        let offset = PointerOffset::new(
            resmem::SegmentId::new(out.offset.segment),
            out.offset.offset,
        );
        let bytes = copy_from_view(view, offset, spec.len).unwrap();
        let bad = bytes
            .iter()
            .enumerate()
            .position(|(i, &b)| b != Pattern::Guest.byte(spec.seed, i as u64) ^ FILTER_KEY);
        assert_eq!(bad, None, "output of {spec} differs at this byte");
    }
}

/// A native owner's chunks (several segments) through the filter plugin; the plugin's output
/// memory lives exactly as long as the plugin.
#[test]
fn filter_plugin_xors_native_buffers_and_its_memory_dies_with_it() {
    let scope = Scope::new("gfilt");
    let host = host(&scope);
    let filter = load(&host, resmem_guests::FILTER_WASM);
    let memory = Memory::builder("input")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(1000))
        .create()
        .unwrap();
    let specs: Vec<ChunkSpec> = [1000, 70_000, MIB + 3, 5]
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_guest_filled(&memory, len, 40 + i as u64))
        .collect();
    assert!(segments_of(&specs).len() >= 3);

    let mut plugin = host
        .plugin(&filter, WasiCtxBuilder::new().inherit_stderr())
        .expect("instantiate the plugin");
    filter_and_check(&mut plugin, &scope, "input", &specs);
    assert_eq!(plugin.state().usage().memories, 1);
    assert_eq!(plugin.state().usage().chunks, 1, "the last output only");
    assert!(plugin.state().shm_bytes() > 0);
    assert_eq!(
        resmem::list(&scope.config()).unwrap(),
        ["filter-out", "input"]
    );

    // An empty buffer gives no output (and frees the previous one); a missing memory is the
    // plugin's refusal, not a trap, and the plugin keeps working afterwards.
    let empty = ChunkSpec::new(specs[0].offset, 0, 0);
    let none = plugin.process(&buffer("input", &empty)).unwrap();
    assert!(matches!(none, Ok(None)), "{}", none.is_ok());
    assert_eq!(plugin.state().usage().chunks, 0);
    let refused = plugin.process(&buffer("missing", &specs[0])).unwrap();
    let message = refused.expect_err("no memory called missing");
    assert!(
        message.contains("open input memory \"missing\""),
        "{message}"
    );
    filter_and_check(&mut plugin, &scope, "input", &specs[..2]);

    drop(plugin);
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["input"]);
    drop(memory);
    assert_empty(&scope);
}

/// A guest-to-guest pipeline in one host: the producer guest owns the input, the filter plugin
/// transforms it, this process checks the result.
#[test]
fn filter_plugin_xors_a_producer_guests_chunks() {
    let scope = Scope::new("gpipe");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let filter = load(&host, resmem_guests::FILTER_WASM);
    let mut guest = Running::start(&host, &producer, &["producer", "frames", "5", "5000"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 5, 5000);
    let specs: Vec<ChunkSpec> = chunks.iter().map(GuestChunk::spec).collect();

    let mut plugin = host
        .plugin(&filter, WasiCtxBuilder::new().inherit_stderr())
        .expect("instantiate the plugin");
    filter_and_check(&mut plugin, &scope, "frames", &specs);
    drop(plugin);
    assert_eq!(resmem::list(&scope.config()).unwrap(), ["frames"]);

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 7. Quotas
// ---------------------------------------------------------------------------------------------

/// Runs the producer under `quotas` and expects it to report `failed_line` and exit 1 (a
/// refusal, not a trap); then a small producer runs fine on the same host.
fn producer_refused(
    tag: &str,
    quotas: Quotas,
    args: &[&str],
    failed_line: &str,
    chunks_before: usize,
) {
    let scope = Scope::new(tag);
    let host = host_with(&scope, quotas);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut full = vec!["producer", "big"];
    full.extend(args);
    full.push("--no-wait");
    let end = run(&host, &producer, &full);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    let (last, before) = end.stdout.split_last().expect("output");
    assert_eq!(last, failed_line, "{end:?}");
    assert_eq!(before.len(), chunks_before, "{end:?}");
    parse_chunks(before);
    assert!(end.stderr.contains("quota exceeded"), "{}", end.stderr);
    assert_empty(&scope);

    let end = run(
        &host,
        &producer,
        &["producer", "small", "1", "64", "--no-wait"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.len(), 2, "{end:?}");
    assert_empty(&scope);
}

#[test]
fn quota_shm_bytes_refuses_a_segment() {
    // Segments keep the hint's four buckets: 64, 128 and 256 KiB of payload (plus a trailer
    // page each) fit 512 KiB; 512 KiB more do not.
    producer_refused(
        "qshm",
        {
            let mut quotas = Quotas::default();
            quotas.shm_bytes = 512 * KIB as u64;
            quotas
        },
        &["4", "16384"],
        "failed step=allocate seed=4 len=131072 error=quota-exceeded",
        3,
    );
}

#[test]
fn quota_io_bytes_refuses_a_large_write() {
    producer_refused(
        "qio",
        {
            let mut quotas = Quotas::default();
            quotas.io_bytes = 64 * KIB as u64;
            quotas
        },
        &["3", "65536"],
        "failed step=write seed=2 len=131072 error=quota-exceeded",
        1,
    );
}

#[test]
fn quota_live_chunks_refuses_an_allocation() {
    // The producer hints four chunks, which the quota allows; the fifth live chunk is refused.
    producer_refused(
        "qlive",
        {
            let mut quotas = Quotas::default();
            quotas.live_chunks = 4;
            quotas
        },
        &["6", "1024"],
        "failed step=allocate seed=5 len=16384 error=quota-exceeded",
        4,
    );
}

#[test]
fn quota_chunk_bytes_refuses_a_large_chunk() {
    producer_refused(
        "qchunk",
        {
            let mut quotas = Quotas::default();
            quotas.chunk_bytes = 8 * KIB as u64;
            quotas
        },
        &["4", "4096"],
        "failed step=allocate seed=3 len=16384 error=quota-exceeded",
        2,
    );
}

#[test]
fn quota_memories_refuses_a_memory() {
    let scope = Scope::new("qmem");
    let host = host_with(&scope, {
        let mut quotas = Quotas::default();
        quotas.memories = 0;
        quotas
    });
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let end = run(&host, &producer, &["producer", "m", "1", "64", "--no-wait"]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert_eq!(end.stdout, ["failed step=create error=quota-exceeded"]);
    assert!(end.stderr.contains("0 memories at once"), "{}", end.stderr);
    assert_empty(&scope);
}

#[test]
fn quota_views_refuses_a_guest_view() {
    let scope = Scope::new("qview");
    let host = host_with(&scope, {
        let mut quotas = Quotas::default();
        quotas.views = 0;
        quotas
    });
    let consumer = load(&host, resmem_guests::CONSUMER_WASM);
    let memory = Memory::builder("v")
        .config(&scope.config())
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 64, 3);
    let arg = format!("{}:64:3", spec.offset.as_u64());
    let end = run(&host, &consumer, &["consumer", "v", &arg]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("quota exceeded: 0 views at once"),
        "{}",
        end.stderr
    );
    // The same consumer under default quotas succeeds: the quota, not the memory, refused.
    let unlimited = GuestHost::new(
        Policy::builder().namespace(scope.prefix()).build(),
        engine_options(),
    )
    .unwrap();
    let unlimited = Arc::new(unlimited);
    let end = run(
        &unlimited,
        &load(&unlimited, resmem_guests::CONSUMER_WASM),
        &["consumer", "v", &arg],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    drop(memory);
    assert_empty(&scope);
}

/// The count quotas exactly, through the host implementation itself (`GuestState` and the
/// bindgen traits, as the linker calls them): the limit is reached, refused with
/// `quota-exceeded`, and freed again when a resource is dropped.
#[test]
fn count_quotas_are_exact_and_freed_on_drop() {
    let scope = Scope::new("qcount");
    let policy = policy(&scope, {
        let mut quotas = Quotas::default();
        quotas.memories = 2;
        quotas.views = 1;
        quotas.registrations = 1;
        quotas.live_chunks = 2;
        quotas
    });
    let mut state = GuestState::new(WasiCtxBuilder::new().build(), Arc::new(policy));
    let st = &mut state;
    let config = || MemoryConfig {
        max_chunk_layout_hint: WitLayout { size: 64, align: 8 },
        // The chunk-count hint is checked against the live-chunks quota too.
        max_number_of_chunks_hint: 2,
        allocation_strategy: WitStrategy::PowerOfTwo,
    };
    let borrow = |r: &Resource<resmem_host::GuestMemory>| Resource::new_borrow(r.rep());
    let small = WitLayout { size: 64, align: 8 };

    let a = HostMemory::create(&mut st.resmem(), "a".into(), config())
        .unwrap()
        .unwrap();
    let b = HostMemory::create(&mut st.resmem(), "b".into(), config())
        .unwrap()
        .unwrap();
    let refused = HostMemory::create(&mut st.resmem(), "c".into(), config()).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert_eq!(st.usage().memories, 2);
    assert_eq!(Host::list(&mut st.resmem()).unwrap().unwrap(), ["a", "b"]);
    HostMemory::drop(&mut st.resmem(), b).unwrap();
    assert_eq!(st.usage().memories, 1);
    let c = HostMemory::create(&mut st.resmem(), "c".into(), config())
        .unwrap()
        .unwrap();
    assert_eq!(Host::list(&mut st.resmem()).unwrap().unwrap(), ["a", "c"]);

    let first = HostMemory::allocate(&mut st.resmem(), borrow(&a), small)
        .unwrap()
        .unwrap();
    let second = HostMemory::allocate(&mut st.resmem(), borrow(&c), small)
        .unwrap()
        .unwrap();
    let refused = HostMemory::allocate(&mut st.resmem(), borrow(&a), small).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    assert_eq!(st.usage().chunks, 2);
    HostMemory::deallocate(&mut st.resmem(), borrow(&c), second)
        .unwrap()
        .unwrap();
    let third = HostMemory::allocate(&mut st.resmem(), borrow(&a), small)
        .unwrap()
        .unwrap();
    assert_eq!(st.usage().chunks, 2);

    let view = HostView::open(&mut st.resmem(), "a".into(), WitAccess::Read, 0)
        .unwrap()
        .unwrap();
    let refused = HostView::open(&mut st.resmem(), "c".into(), WitAccess::Read, 0).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{}",
        refused.is_ok()
    );
    let vb = || Resource::<resmem_host::GuestView>::new_borrow(view.rep());
    HostView::register(&mut st.resmem(), vb(), first)
        .unwrap()
        .unwrap();
    let refused = HostView::register(&mut st.resmem(), vb(), third).unwrap();
    assert!(
        matches!(refused, Err(WitError::QuotaExceeded(_))),
        "{refused:?}"
    );
    HostView::unregister(&mut st.resmem(), vb(), first)
        .unwrap()
        .unwrap();
    HostView::register(&mut st.resmem(), vb(), third)
        .unwrap()
        .unwrap();
    assert_eq!(st.usage().registrations, 1);
    HostView::drop(&mut st.resmem(), view).unwrap();
    assert_eq!((st.usage().views, st.usage().registrations), (0, 0));

    // Dropping a memory returns its chunks to the quota; dropping the state removes the rest.
    HostMemory::drop(&mut st.resmem(), a).unwrap();
    assert_eq!((st.usage().memories, st.usage().chunks), (1, 0));
    assert_eq!(Host::list(&mut st.resmem()).unwrap().unwrap(), ["c"]);
    drop(state);
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 8. Namespace isolation
// ---------------------------------------------------------------------------------------------

/// A guest's memory under namespace A is invisible to guests (and the host functions) under
/// namespace B; a native view with prefix A reads the guest's printed offsets unchanged.
#[test]
fn namespaces_isolate_guests_and_offsets_mean_the_same_natively() {
    let scope_a = Scope::new("nsa");
    let scope_b = Scope::new("nsb");
    let host_a = host(&scope_a);
    let host_b = host(&scope_b);
    let producer = load(&host_a, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host_a, &producer, &["producer", "shared", "3", "4096"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_doubling(&chunks, 3, 4096);
    let mut consumer_args = vec!["consumer".to_owned(), "shared".to_owned()];
    consumer_args.extend(chunks.iter().map(GuestChunk::consumer_arg));
    let consumer_args: Vec<&str> = consumer_args.iter().map(String::as_str).collect();

    // Same namespace: a consumer guest verifies the producer guest's chunks.
    let end = run(
        &host_a,
        &load(&host_a, resmem_guests::CONSUMER_WASM),
        &consumer_args,
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout, [format!("verified {} bytes", 4096 * 7)]);

    // Other namespace: the same consumer does not find the memory.
    let end = run(
        &host_b,
        &load(&host_b, resmem_guests::CONSUMER_WASM),
        &consumer_args,
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr
            .contains("open \"shared\": no memory with this name exists"),
        "{}",
        end.stderr
    );

    // The host functions a guest calls, under each namespace.
    let state = |host: &GuestHost| {
        GuestState::new(
            WasiCtxBuilder::new().build(),
            Arc::new(host.policy().clone()),
        )
    };
    let mut in_a = state(&host_a);
    let mut in_b = state(&host_b);
    assert_eq!(Host::list(&mut in_a.resmem()).unwrap().unwrap(), ["shared"]);
    assert!(
        Host::exists(&mut in_a.resmem(), "shared".into())
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        Host::list(&mut in_b.resmem()).unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert!(
        !Host::exists(&mut in_b.resmem(), "shared".into())
            .unwrap()
            .unwrap()
    );
    let opened = HostView::open(&mut in_b.resmem(), "shared".into(), WitAccess::Read, 0).unwrap();
    assert!(
        matches!(opened, Err(WitError::DoesNotExist)),
        "{}",
        opened.is_ok()
    );
    // B cannot remove A's memory either: for B it does not exist.
    assert!(
        !Host::remove(&mut in_b.resmem(), "shared".into())
            .unwrap()
            .unwrap()
    );
    let removed = Host::remove(&mut in_a.resmem(), "shared".into()).unwrap();
    assert!(
        matches!(removed, Err(WitError::PermissionDenied(_))),
        "a live owner's memory"
    );

    // Natively: prefix A reads the printed offsets unchanged; prefix B finds nothing.
    let view = View::builder("shared")
        .config(&Config::default().prefix(scope_a.prefix()))
        .open(AccessMode::Read)
        .unwrap();
    for c in &chunks {
        check_in_place(
            &view,
            PointerOffset::from_u64(c.offset),
            c.len as usize,
            c.seed,
        )
        .unwrap();
    }
    assert_eq!(view.number_of_active_segments(), 1, "unregistered again");
    assert!(check_in_place(&view, chunks[0].pointer(), chunks[0].len as usize, 99).is_err());
    drop(view);
    let missing = View::builder("shared")
        .config(&Config::default().prefix(scope_b.prefix()))
        .open(AccessMode::Read);
    assert!(
        matches!(missing, Err(OpenError::DoesNotExist)),
        "{missing:?}"
    );
    assert_eq!(
        resmem::list(&scope_b.config()).unwrap(),
        Vec::<String>::new()
    );

    guest.release();
    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    drop((in_a, in_b));
    assert_empty(&scope_a);
    assert_empty(&scope_b);
}

/// Namespaces are plain prefixes, so when one namespace is a prefix of another (`P` and
/// `Pinner_`) the outer one's guests see the inner one's memory `frames` as `inner_frames`:
/// they list it, open it and read it, and could create `inner_frames` for the inner guests to
/// open as `frames`. Isolation must not depend on the host never nesting namespaces.
#[test]
fn nested_namespaces_are_isolated() {
    let outer = Scope::new("nest");
    let inner = format!("{}inner_", outer.prefix());
    let host_outer = host(&outer);
    let host_inner = Arc::new(
        GuestHost::new(
            Policy::builder().namespace(&inner).build(),
            engine_options(),
        )
        .unwrap(),
    );
    let producer = load(&host_inner, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host_inner, &producer, &["producer", "frames", "2", "64"]);
    let chunks = parse_chunks(&guest.until_ready());
    let mut args = vec!["consumer".to_owned(), "inner_frames".to_owned()];
    args.extend(chunks.iter().map(GuestChunk::consumer_arg));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut in_outer = GuestState::new(
        WasiCtxBuilder::new().build(),
        Arc::new(host_outer.policy().clone()),
    );
    let listed = Host::list(&mut in_outer.resmem()).unwrap().unwrap();
    let exists = Host::exists(&mut in_outer.resmem(), "inner_frames".into())
        .unwrap()
        .unwrap();
    let opened = HostView::open(
        &mut in_outer.resmem(),
        "inner_frames".into(),
        WitAccess::Read,
        0,
    )
    .unwrap()
    .is_ok();
    let end = run(
        &host_outer,
        &load(&host_outer, resmem_guests::CONSUMER_WASM),
        &args,
    );
    drop(in_outer);
    guest.release();
    let finished = guest.finish();
    assert_eq!(finished.outcome, RunOutcome::Exited(0), "{finished:?}");
    assert_empty(&outer);

    assert_eq!(
        listed,
        Vec::<String>::new(),
        "the outer namespace lists the inner memory"
    );
    assert!(!exists, "the inner memory exists in the outer namespace");
    assert!(!opened, "the outer namespace opens the inner memory");
    assert_eq!(
        end.outcome,
        RunOutcome::Exited(1),
        "a guest of the outer namespace read the inner guest's chunks: {end:?}"
    );
}

/// `remove` (from a guest) must refuse a memory whose owner is alive; the owner's lock on the
/// management object says so even when the header's bytes were overwritten (any peer that can
/// write the object can do that, and the owner keeps working on its private state).
#[test]
fn guest_remove_refuses_a_live_owner_with_a_corrupted_header() {
    let scope = Scope::new("grmlive");
    let host = host(&scope);
    let memory = Memory::builder("live")
        .config(&scope.config())
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 4096, 5);
    let mut state = GuestState::new(
        WasiCtxBuilder::new().build(),
        Arc::new(host.policy().clone()),
    );
    let refused = Host::remove(&mut state.resmem(), "live".into()).unwrap();
    assert!(
        matches!(refused, Err(WitError::PermissionDenied(_))),
        "intact header: {refused:?}"
    );

    // A peer scribbles over the header's first bytes.
    let mgmt = scope.object_path(&scope.mgmt_object("live"));
    let mut file = std::fs::OpenOptions::new().write(true).open(&mgmt).unwrap();
    file.write_all(&[0xEE; 16]).unwrap();
    drop(file);
    let corrupted = View::builder("live")
        .config(&scope.config())
        .open(AccessMode::Read);
    assert!(
        matches!(corrupted, Err(OpenError::Corrupted)),
        "{corrupted:?}"
    );

    let refused = Host::remove(&mut state.resmem(), "live".into()).unwrap();
    let still_there = scope.object_exists(&scope.segment_object("live", spec.offset.segment_id()));
    drop(state);
    drop(memory);
    assert_empty(&scope);
    assert!(
        matches!(refused, Err(WitError::PermissionDenied(_))),
        "a guest removed the memory of a live owner: {refused:?}"
    );
    assert!(still_there, "the live owner's segment was unlinked");
}

// ---------------------------------------------------------------------------------------------
// 9. Guests on several threads
// ---------------------------------------------------------------------------------------------

/// Four producer guests on four threads of one host, each growing its own memory; all are
/// alive at once, verified natively and by a peer process, and all clean up.
#[test]
fn four_producer_guests_run_in_parallel_in_one_host() {
    let scope = Scope::new("gpar");
    let host = host(&scope);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let setups = [
        ("p0", 6, 4096),
        ("p1", 5, 1000),
        ("p2", 4, 65536),
        ("p3", 7, 64),
    ];
    let mut guests: Vec<Running> = setups
        .iter()
        .map(|(name, count, first)| {
            let (count, first) = (count.to_string(), first.to_string());
            Running::start(&host, &producer, &["producer", name, &count, &first])
        })
        .collect();
    let mut all = Vec::new();
    for (guest, (name, count, first)) in guests.iter_mut().zip(setups) {
        let chunks = parse_chunks(&guest.until_ready());
        assert_doubling(&chunks, count, first);
        all.push((name, chunks));
    }
    // All four are alive at the same time.
    assert_eq!(
        resmem::list(&scope.config()).unwrap(),
        ["p0", "p1", "p2", "p3"]
    );
    for (name, chunks) in &all {
        let view = View::builder(name)
            .config(&scope.config())
            .open(AccessMode::Read)
            .unwrap();
        for c in chunks {
            check_in_place(&view, c.pointer(), c.len as usize, c.seed).unwrap();
        }
    }
    let (name, chunks) = &all[2];
    let specs: Vec<ChunkSpec> = chunks.iter().map(GuestChunk::spec).collect();
    let summary = peer_verify(&scope, name, &specs).summary();
    assert_eq!(summary.bytes, 65536 * 15);

    for guest in &mut guests {
        guest.release();
    }
    for guest in guests {
        let end = guest.finish();
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    }
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// 10. The fuzz guest on both interfaces
// ---------------------------------------------------------------------------------------------

/// The channel part of a fuzz summary line: its counts (`sent`, `received`, ...) and its
/// outcomes (`ok` and WIT error names).
fn fuzz_channel_summary(
    line: &str,
) -> (
    std::collections::HashMap<String, u64>,
    std::collections::HashMap<String, u64>,
) {
    let (_, channel) = line
        .split_once("; channel: ")
        .unwrap_or_else(|| panic!("no channel part in {line:?}"));
    let (counts, outcomes) = channel
        .split_once("; ")
        .unwrap_or_else(|| panic!("no channel outcomes in {line:?}"));
    let counts = counts
        .split(", ")
        .map(|field| {
            let (number, name) = field
                .trim_start_matches("peak ")
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad count {field:?} in {line:?}"));
            let number = number
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {field:?}"));
            (name.to_owned(), number)
        })
        .collect();
    let outcomes = outcomes
        .split_whitespace()
        .map(|field| {
            let (name, number) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("bad outcome {field:?} in {line:?}"));
            let number = number
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {field:?}"));
            (name.to_owned(), number)
        })
        .collect();
    (counts, outcomes)
}

/// Several seeds of the fuzz guest, one after the other in one host: each checks every
/// channel function (and the memory interface) against its model, valid and hostile, and
/// exits 0. Together they sent, received, dropped (drop-oldest), missed (drop-newest), polled
/// and drained to `disconnected`, and were refused with every error a hostile channel call
/// can earn. Afterwards the namespace is empty. `RESMEM_FUZZ_SEEDS=<first>..<end>` and
/// `RESMEM_FUZZ_OPS=<n>` run other seeds.
#[test]
fn fuzz_guest_checks_every_channel_function_against_its_model() {
    let seeds = std::env::var("RESMEM_FUZZ_SEEDS").map_or(100..116, |range| {
        let (first, end) = range
            .split_once("..")
            .expect("RESMEM_FUZZ_SEEDS=<first>..<end>");
        first.parse().expect("a first seed")..end.parse().expect("an end seed")
    });
    let ops = std::env::var("RESMEM_FUZZ_OPS").unwrap_or_else(|_| "800".to_owned());
    let scope = Scope::new("gfuzz");
    let host = host(&scope);
    let fuzz = load(&host, resmem_guests::FUZZ_WASM);
    let mut counts = std::collections::HashMap::<String, u64>::new();
    let mut outcomes = std::collections::HashMap::<String, u64>::new();
    let started = Instant::now();
    let mut runs = 0;
    for seed in seeds {
        let seed = seed.to_string();
        let end = run(&host, &fuzz, &["fuzz", &seed, &ops]);
        assert_eq!(
            end.outcome,
            RunOutcome::Exited(0),
            "seed {seed}: {}",
            end.stderr
        );
        assert_eq!(end.stdout.len(), 1, "{end:?}");
        let line = &end.stdout[0];
        assert!(
            line.starts_with(&format!("seed {seed}: {ops} ops")),
            "{line}"
        );
        let (seed_counts, seed_outcomes) = fuzz_channel_summary(line);
        assert!(seed_counts["calls"] > 0, "{line}");
        assert!(seed_outcomes.get("ok").is_some_and(|&n| n > 0), "{line}");
        for (name, n) in seed_counts {
            *counts.entry(name).or_default() += n;
        }
        for (name, n) in seed_outcomes {
            *outcomes.entry(name).or_default() += n;
        }
        runs += 1;
        assert_empty(&scope);
    }
    println!(
        "fuzz guest: {runs} seeds x {ops} ops in {:?}; channel {counts:?}; {outcomes:?}",
        started.elapsed()
    );
    if runs >= 4 {
        for count in [
            "sent",
            "delivered",
            "received",
            "dropped",
            "missed",
            "disconnected",
            "polls",
        ] {
            assert!(counts[count] > 0, "no {count}: {counts:?}");
        }
        for outcome in [
            "ok",
            "invalid-name",
            "invalid-layout",
            "invalid-offset",
            "already-exists",
            "does-not-exist",
            "permission-denied",
            "quota-exceeded",
            "limit-reached",
            "disconnected",
        ] {
            assert!(
                outcomes.get(outcome).is_some_and(|&n| n > 0),
                "no channel call ended {outcome}: {outcomes:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every guest
// ---------------------------------------------------------------------------------------------

/// One check per guest that it instantiates and runs as documented.
mod every_guest {
    use super::*;

    pub fn bench(host: &Arc<GuestHost>) {
        let end = run(
            host,
            &load(host, resmem_guests::BENCH_WASM),
            &[
                "bench",
                "0.0001",
                "1",
                "noop",
                "pair-64",
                "wall-clock",
                "chan-receive-empty",
                "chan-cycle-64",
                "chan-cycle-map-64",
            ],
        );
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        let names: Vec<&str> = end
            .stdout
            .iter()
            .map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["bench", name, ns] if ns.parse::<f64>().is_ok_and(|ns| ns >= 0.0) => name,
                    ["done"] => "done",
                    _ => panic!("unexpected bench output {line:?}"),
                },
            )
            .collect();
        assert_eq!(
            names,
            [
                "noop",
                "wall-clock",
                "chan-receive-empty",
                "chan-cycle-64",
                "chan-cycle-map-64",
                "pair-64",
                "done"
            ]
        );
    }

    pub fn consumer(host: &Arc<GuestHost>) {
        let end = run(
            host,
            &load(host, resmem_guests::CONSUMER_WASM),
            &["consumer"],
        );
        assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
        assert!(end.stderr.contains("usage: consumer"), "{}", end.stderr);
    }

    pub fn errors(host: &Arc<GuestHost>) {
        let end = run(host, &load(host, resmem_guests::ERRORS_WASM), &["errors"]);
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(end.stdout.len(), ERROR_CASES.len(), "{end:?}");
    }

    /// A plugin's answer to an empty buffer.
    fn process_empty(
        host: &Arc<GuestHost>,
        component: &[u8],
    ) -> anyhow::Result<Result<Option<Buffer>, String>> {
        let mut plugin = host
            .plugin(&load(host, component), &mut WasiCtxBuilder::new())
            .expect("instantiate the plugin");
        let empty = Buffer {
            memory: "nothing".to_owned(),
            offset: WitOffset {
                segment: 0,
                offset: 0,
            },
            len: 0,
        };
        plugin.process(&empty).map_err(anyhow::Error::from)
    }

    pub fn filter(host: &Arc<GuestHost>) {
        let none = process_empty(host, resmem_guests::FILTER_WASM).unwrap();
        assert!(matches!(none, Ok(None)), "{}", none.is_ok());
    }

    pub fn fuzz(host: &Arc<GuestHost>) {
        let end = run(
            host,
            &load(host, resmem_guests::FUZZ_WASM),
            &["fuzz", "1", "200"],
        );
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(end.stdout.len(), 1, "{end:?}");
        assert!(end.stdout[0].starts_with("seed 1: 200 ops"), "{end:?}");
        // The channel part ran too (its teardown alone makes hundreds of calls).
        let (counts, outcomes) = fuzz_channel_summary(&end.stdout[0]);
        assert!(counts["calls"] > 0, "{end:?}");
        assert!(outcomes.get("ok").is_some_and(|&n| n > 0), "{end:?}");
        assert!(
            outcomes.get("quota-exceeded").is_some_and(|&n| n > 0),
            "{end:?}"
        );
    }

    pub fn producer(host: &Arc<GuestHost>) {
        let end = run(
            host,
            &load(host, resmem_guests::PRODUCER_WASM),
            &["producer", "smoke", "2", "128", "--no-wait"],
        );
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(end.stdout.len(), 3, "{end:?}");
        assert_eq!(end.stdout[2], "ready");
    }

    /// Runs forever: only a host with a deadline can run it (hardening.rs tests it fully).
    pub fn spin(host: &Arc<GuestHost>) {
        let deadline = Duration::from_millis(100);
        let policy = Policy::builder()
            .namespace(host.policy().namespace())
            .deadline(Some(deadline))
            .build();
        let bounded = Arc::new(GuestHost::new(policy, engine_options()).expect("a guest host"));
        let end = run(
            &bounded,
            &load(&bounded, resmem_guests::SPIN_WASM),
            &["spin", "loop"],
        );
        assert_eq!(
            end.outcome,
            RunOutcome::DeadlineExceeded(deadline),
            "{end:?}"
        );
        assert_eq!(end.stdout, ["holding spin"]);
    }

    /// Stalls on any non-empty input: only a host with a deadline can call it (hardening.rs).
    pub fn stall(host: &Arc<GuestHost>) {
        assert!(matches!(
            process_empty(host, resmem_guests::STALL_WASM),
            Ok(Ok(None))
        ));
    }

    pub fn trap(host: &Arc<GuestHost>) {
        let end = run(host, &load(host, resmem_guests::TRAP_WASM), &["trap"]);
        assert!(matches!(end.outcome, RunOutcome::Trapped(_)), "{end:?}");
        assert_eq!(end.stdout, ["allocated trap"]);
    }

    pub fn channel(host: &Arc<GuestHost>) {
        let end = run(
            host,
            &load(host, resmem_guests::CHANNEL_WASM),
            &["channel", "sub", "nosuch", "1", "--open-ms", "0"],
        );
        assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
        assert_eq!(end.stdout.len(), 1, "{end:?}");
        assert!(
            end.stdout[0].starts_with("failed open error=does-not-exist"),
            "{end:?}"
        );
    }

    pub fn window(host: &Arc<GuestHost>) {
        let end = run(
            host,
            &load(host, resmem_guests::WINDOW_WASM),
            &["window", "reuse"],
        );
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(end.stdout.len(), 1, "{end:?}");
    }
}

/// `foreach_guest!` names every guest: a guest without a function in [`every_guest`] does not
/// compile, and each one must instantiate and behave as its doc comment says.
#[test]
fn every_guest_instantiates_and_runs() {
    let scope = Scope::new("gall");
    let host = host(&scope);
    let mut ran = Vec::new();
    macro_rules! check {
        ($name:ident) => {
            every_guest::$name(&host);
            assert_empty(&scope);
            ran.push(stringify!($name));
        };
    }
    resmem_guests::foreach_guest!(check);
    let all: Vec<&str> = resmem_guests::all().iter().map(|(name, _)| *name).collect();
    assert_eq!(ran, all);
    // The embedded bytes are the files the constants name.
    assert_eq!(
        std::fs::read(resmem_guests::PRODUCER).unwrap(),
        resmem_guests::PRODUCER_WASM
    );
}

// ---------------------------------------------------------------------------------------------
// The zero-copy window (`map`): guests read and write shared memory in place
// ---------------------------------------------------------------------------------------------

/// `key=value` fields of a guest output line that starts with `head`.
fn fields(line: &str, head: &str) -> std::collections::HashMap<String, u64> {
    let rest = line
        .strip_prefix(head)
        .unwrap_or_else(|| panic!("expected {head:?}, got {line:?}"));
    rest.split_whitespace()
        .map(|field| {
            let (key, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("bad field {field:?} in {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {line:?}"));
            (key.to_owned(), value)
        })
        .collect()
}

/// A real, separate process (coreutils `truncate`) shrinks the scope's `objects` to nothing,
/// as a hostile peer would.
fn truncate_objects(scope: &Scope, objects: &[String]) {
    let status = std::process::Command::new("truncate")
        .args(["-s", "0"])
        .args(objects.iter().map(|o| scope.object_path(o)))
        .status()
        .expect("run truncate");
    assert!(status.success());
}

/// Whether a trap message says the guest touched memory it may not.
fn is_memory_fault(outcome: &RunOutcome) -> bool {
    matches!(outcome, RunOutcome::Trapped(t) if t.message.contains("memory fault") || t.message.contains("out of bounds"))
}

/// The window guest maps a 64 MiB chunk and fills it with its own stores; a native peer
/// process checks every byte (and fails on a wrong seed).
#[test]
fn window_guest_writes_64_mib_in_place_and_a_native_peer_verifies_every_byte() {
    let scope = Scope::new("wbig");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let len = 64 * MIB;
    let mut guest = Running::start(
        &host,
        &window,
        &["window", "produce", "big", &len.to_string(), "9"],
    );
    let lines = guest.until_ready();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let chunk = fields(&lines[0], "chunk ");
    assert_eq!(chunk["len"], len as u64);
    // The window lies above the heap cap (the upper 2 GiB by default).
    assert!(chunk["addr"] >= 2 << 30, "{chunk:?}");
    let spec = ChunkSpec::new(PointerOffset::from_u64(chunk["offset"]), len, 9);

    let out = peer_verify(&scope, "big", &[spec]);
    assert_eq!(out.summary().bytes, len as u64, "{out:?}");
    let mut wrong = spec;
    wrong.seed = 10;
    let out = peer_verify(&scope, "big", &[wrong]);
    assert_eq!(out.code(), Some(exit::MISMATCH), "{out:?}");

    guest.release();
    assert_eq!(guest.finish().outcome, RunOutcome::Exited(0));
    assert_empty(&scope);
}

/// A native owner's chunks are read in place by a guest through a read-only view, and written
/// in place through a read-write one: the owner sees the guest's bytes without any copy call.
#[test]
fn native_owner_is_read_and_written_in_place_through_the_window() {
    let scope = Scope::new("wnat");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let memory = Memory::builder("native")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let specs: Vec<ChunkSpec> = [4 * KIB, 100_000, 3 * MIB + 5]
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_guest_filled(&memory, len, 40 + i as u64))
        .collect();
    assert!(segments_of(&specs).len() >= 2);
    for spec in &specs {
        let args = [
            "window".to_owned(),
            "verify".to_owned(),
            "native".to_owned(),
            spec.offset.as_u64().to_string(),
            spec.len.to_string(),
            spec.seed.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let end = run(&host, &window, &args);
        assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
        assert_eq!(fields(&end.stdout[0], "verified ")["len"], spec.len as u64);
        // A wrong seed is noticed.
        let mut wrong = args.clone();
        let seed = (spec.seed + 1).to_string();
        wrong[5] = &seed;
        let end = run(&host, &window, &wrong);
        assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
        assert!(end.stdout[0].starts_with("mismatch at="), "{end:?}");
    }

    // Written in place by the guest, checked here through the owner's own pointer.
    let target = specs[2];
    let end = run(
        &host,
        &window,
        &[
            "window",
            "fill",
            "native",
            &target.offset.as_u64().to_string(),
            &target.len.to_string(),
            "77",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let view = View::builder("native")
        .config(&scope.config())
        .open(AccessMode::Read)
        .unwrap();
    let bytes = copy_from_view(&view, target.offset, target.len).unwrap();
    Pattern::Guest.check(&bytes, 77).expect("the guest's bytes");
    drop(view);
    drop(memory);
    assert_empty(&scope);
}

/// A store through a read-only mapping traps that guest only: the chunk is unchanged and a
/// second guest of the same host, running meanwhile, finishes its work.
#[test]
fn a_store_through_a_read_only_mapping_traps_and_the_host_serves_other_guests() {
    let scope = Scope::new("wro");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let memory = Memory::builder("ro")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(64 * KIB))
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 64 * KIB, 5);
    let mut other = Running::start(
        &host,
        &window,
        &["window", "produce", "other", "65536", "6"],
    );
    let other_chunk = fields(&other.until_ready()[0], "chunk ");

    let end = run(
        &host,
        &window,
        &[
            "window",
            "write-readonly",
            "ro",
            &spec.offset.as_u64().to_string(),
        ],
    );
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert_eq!(
        end.stdout,
        ["writing"],
        "the store never completed: {end:?}"
    );
    let view = View::builder("ro")
        .config(&scope.config())
        .open(AccessMode::Read)
        .unwrap();
    let bytes = copy_from_view(&view, spec.offset, spec.len).unwrap();
    Pattern::Guest
        .check(&bytes, 5)
        .expect("the chunk is unchanged");

    // The other guest is unaffected: its chunk verifies, and it exits normally.
    let other_spec = ChunkSpec::new(PointerOffset::from_u64(other_chunk["offset"]), 64 * KIB, 6);
    assert_eq!(
        peer_verify(&scope, "other", &[other_spec]).summary().bytes,
        65536
    );
    other.release();
    assert_eq!(other.finish().outcome, RunOutcome::Exited(0));
    drop(view);
    drop(memory);
    assert_empty(&scope);
}

/// A segment the memory released is gone from the window (touching it traps), and window
/// slots are reused.
#[test]
fn released_segments_leave_the_window_and_their_slots_are_reused() {
    let scope = Scope::new("wrel");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let end = run(&host, &window, &["window", "released"]);
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert_eq!(end.stdout.len(), 1, "the load never completed: {end:?}");
    let released = fields(&end.stdout[0], "released ");
    assert_eq!(released["segments"], 1, "{released:?}");
    assert!(released["addr"] >= 2 << 30, "{released:?}");
    assert_empty(&scope);

    let end = run(&host, &window, &["window", "reuse"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let reuse = fields(&end.stdout[0], "reuse ");
    assert_eq!(reuse["first"], reuse["second"], "{reuse:?}");
    assert_empty(&scope);
}

/// Each guest has its own reservation: an address where one guest has a chunk mapped traps in
/// another guest of the same host, whose heap still reads fine.
#[test]
fn two_guests_in_one_host_cannot_see_each_others_windows() {
    let scope = Scope::new("wiso");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let mut owner = Running::start(&host, &window, &["window", "produce", "mine", "65536", "3"]);
    let addr = fields(&owner.until_ready()[0], "chunk ")["addr"];

    let end = run(&host, &window, &["window", "probe", &addr.to_string()]);
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert_eq!(end.stdout, ["probing"], "{end:?}");
    // The same probe of a heap address succeeds, so the trap is about the window.
    let end = run(&host, &window, &["window", "probe", "1024"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");

    owner.release();
    assert_eq!(owner.finish().outcome, RunOutcome::Exited(0));
    assert_empty(&scope);
}

/// A peer process truncates a segment that one guest has in its window and another reads
/// through the host's copies. The SIGBUS that follows traps the first guest and fails the
/// second one's `read` and `map` with `io`; the host process lives on and runs more guests.
#[test]
fn a_peer_truncating_a_segment_traps_or_fails_only_the_guests_using_it() {
    let scope = Scope::new("wbus");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let memory = Memory::builder("shrink")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(256 * KIB))
        .create()
        .unwrap();
    let spec = alloc_guest_filled(&memory, 256 * KIB, 8);
    let (offset, len) = (spec.offset.as_u64().to_string(), spec.len.to_string());
    let mut mapped = Running::start(
        &host,
        &window,
        &["window", "hold-map", "shrink", &offset, &len],
    );
    assert!(mapped.line().starts_with("mapped addr="));
    let mut copied = Running::start(
        &host,
        &window,
        &["window", "hold-copy", "shrink", &offset, &len],
    );
    assert_eq!(copied.line(), "registered");
    let (window_faults, copy_faults) = resmem_host::sigbus::contained_faults();

    let object = scope.segment_object("shrink", spec.offset.segment_id());
    truncate_objects(&scope, &[object]);

    mapped.release();
    let end = mapped.finish();
    assert!(is_memory_fault(&end.outcome), "{end:?}");
    assert!(end.stdout.is_empty(), "the copy never completed: {end:?}");
    copied.release();
    let end = copied.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout, ["error=io", "map error=io"], "{end:?}");
    let (window_after, copy_after) = resmem_host::sigbus::contained_faults();
    assert!(window_after > window_faults, "a window fault was contained");
    assert!(copy_after > copy_faults, "a copy fault was contained");

    // The host is alive and well.
    let end = run(&host, &window, &["window", "reuse"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    drop(memory);
    assert_empty(&scope);
}

/// The window is finite: mapping beyond it is `quota-exceeded`, and its size is the policy's.
#[test]
fn mapping_beyond_the_window_is_quota_exceeded() {
    let scope = Scope::new("wfull");
    let mut quotas = Quotas::default();
    quotas.window_bytes = 4 * MIB as u64;
    let host = host_with(&scope, quotas);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let end = run(&host, &window, &["window", "fill-window", &MIB.to_string()]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    // Each 1 MiB chunk's segment maps 1 MiB plus its trailer page: a 1 MiB + 64 KiB slot.
    assert_eq!(end.stdout, ["full after=3 error=quota-exceeded"], "{end:?}");
    assert_empty(&scope);
}

/// Four guests instantiated at once on four threads of one host: each memory attaches to its
/// own guest's window (the binding is per thread), so every guest maps its chunk at the bottom
/// of its own window and a native peer process finds every guest's bytes.
#[test]
fn guests_instantiated_in_parallel_each_get_their_own_window() {
    let scope = Scope::new("wpar");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let names: Vec<String> = (0..4).map(|i| format!("par{i}")).collect();
    let mut guests: Vec<Running> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Running::start(
                &host,
                &window,
                &["window", "produce", name, "1048576", &(20 + i).to_string()],
            )
        })
        .collect();
    let heap_cap = (4u64 << 30) - Quotas::default().window_bytes;
    for (i, guest) in guests.iter_mut().enumerate() {
        let chunk = fields(&guest.until_ready()[0], "chunk ");
        assert_eq!(chunk["addr"], heap_cap, "guest {i}: {chunk:?}");
        let spec = ChunkSpec::new(PointerOffset::from_u64(chunk["offset"]), MIB, 20 + i as u64);
        assert_eq!(
            peer_verify(&scope, &names[i], &[spec]).summary().bytes,
            MIB as u64
        );
    }
    for mut guest in guests {
        guest.release();
        assert_eq!(guest.finish().outcome, RunOutcome::Exited(0));
    }
    assert_empty(&scope);
}

/// A peer truncates every object of a guest's memory (header and segments) while the guest
/// holds it. Another guest's view of it fails with an error, and dropping the memory (which
/// writes the truncated header) neither kills the host nor leaves the objects behind.
#[test]
fn a_guest_owner_whose_objects_a_peer_truncated_is_released_cleanly() {
    let scope = Scope::new("wtown");
    let host = host(&scope);
    let window = load(&host, resmem_guests::WINDOW_WASM);
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let mut guest = Running::start(&host, &producer, &["producer", "gone", "2", "65536"]);
    let chunks = parse_chunks(&guest.until_ready());
    assert_eq!(chunks.len(), 2);
    let objects = scope.objects();
    assert_eq!(objects.len(), 3, "{objects:?}");
    truncate_objects(&scope, &objects);
    // Another guest's view cannot open the broken memory, and gets an error, not a crash.
    let end = run(
        &host,
        &window,
        &[
            "window",
            "verify",
            "gone",
            &chunks[0].offset.to_string(),
            "16",
            "1",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(end.stdout[0].starts_with("error="), "{end:?}");
    guest.release();
    assert_eq!(guest.finish().outcome, RunOutcome::Exited(0));
    assert_empty(&scope);
}
