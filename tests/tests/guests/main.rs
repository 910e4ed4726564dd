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

#[path = "../support/mod.rs"]
mod support;

mod c_peer;
mod channel;
#[path = "../channel_support/mod.rs"]
mod channel_support;

mod errors;
mod every_guest;
mod filter;
mod fuzz;
mod growth;
mod namespaces;
mod owner_view;
mod parallel;
mod python_peer;
mod quotas;
mod traps;
mod window;

// The test modules (`channel` and the topics) have `use super::*;`: these imports, `support`
// and the harness below are what they share.
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
