//! Harness of the cross-process tests: unique namespaces whose leftovers are detected and
//! removed, and child processes that are always reaped and never outlive a timeout.

#![allow(dead_code)]

use std::alloc::Layout;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resmem::{Config, Memory, SegmentId, View};
use resmem_e2e::{ChunkSpec, Mismatch, READY_LINE, VerifySummary, check_pattern, fill_pattern};

/// The peer binary cargo built for these tests.
pub const PEER: &str = env!("CARGO_BIN_EXE_resmem-test-peer");

/// How long any single step with a child (a reply, an exit) may take before the child is
/// killed and the test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// Where POSIX shared-memory objects appear on Linux.
pub const SHM_DIR: &str = "/dev/shm";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A per-test namespace: prefix `rme2e<pid>x<n><tag>_`, unique across the parallel tests of
/// this run and across concurrent runs. On drop it removes whatever objects with its prefix
/// are left and fails the test if there were any.
pub struct Scope {
    prefix: String,
}

impl Scope {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("rme2e{}x{n}{tag}_", std::process::id()),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn config(&self) -> Config {
        Config::default().prefix(&self.prefix)
    }

    /// OS objects in `/dev/shm` with this scope's prefix, sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)
            .expect("/dev/shm is readable")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }

    /// The OS object of data segment `id` of memory `name`.
    pub fn segment_object(&self, name: &str, id: SegmentId) -> String {
        format!("{}{name}__{}", self.prefix, id.value())
    }

    pub fn mgmt_object(&self, name: &str) -> String {
        format!("{}{name}__mgmt", self.prefix)
    }

    pub fn object_path(&self, object: &str) -> PathBuf {
        Path::new(SHM_DIR).join(object)
    }

    pub fn object_exists(&self, object: &str) -> bool {
        self.object_path(object).exists()
    }

    /// `<mode> --prefix <p> --name <name>`: the start of every peer command line.
    pub fn peer_args(&self, mode: &str, name: &str) -> Vec<String> {
        vec![
            mode.to_owned(),
            "--prefix".to_owned(),
            self.prefix.clone(),
            "--name".to_owned(),
            name.to_owned(),
        ]
    }

    pub fn assert_clean(&self) {
        let left = self.objects();
        assert!(left.is_empty(), "leftover shared-memory objects: {left:?}");
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let left = self.objects();
        for object in &left {
            let _ = std::fs::remove_file(self.object_path(object));
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("test left shared-memory objects behind (now removed): {left:?}");
        }
    }
}

/// A child process with piped stdio. Its stdout is read line by line on a thread (so reads can
/// time out), its stderr collected for failure messages. Dropping it kills and reaps it.
pub struct Peer {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Peer {
    /// Spawns `command` (stdio is replaced by pipes).
    pub fn spawn(mut command: Command, what: &str) -> Self {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what} ({command:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = line_channel(stdout);
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            status: None,
        }
    }

    /// The peer binary with `args`.
    pub fn spawn_peer(args: &[String], what: &str) -> Self {
        let mut command = Command::new(PEER);
        command.args(args);
        Self::spawn(command, what)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        // Let the stderr thread drain what the child wrote before dying.
        std::thread::sleep(Duration::from_millis(50));
        panic!(
            "{}: {why} (status {status:?})\n--- stderr ---\n{}",
            self.what,
            self.stderr()
        );
    }

    /// The next stdout line; `None` at end of output. Fails the test after `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("no output within {timeout:?}")),
        }
    }

    pub fn line(&mut self, timeout: Duration) -> String {
        match self.next_line(timeout) {
            Some(line) => line,
            None => self.fail("stdout closed while a line was expected"),
        }
    }

    /// Lines up to (without) `ready`.
    pub fn until_ready(&mut self) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let line = self.line(STEP);
            if line == READY_LINE {
                return before;
            }
            before.push(line);
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        let sent = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        if let Err(e) = sent {
            self.fail(&format!("writing {line:?} to stdin: {e}"));
        }
    }

    /// Sends a serve-mode command and returns the whole reply line (`ok ...` or `err ...`).
    pub fn request(&mut self, command: &str) -> String {
        self.send(command);
        self.line(STEP)
    }

    /// Sends a serve-mode command that must succeed; returns the reply without `ok `.
    pub fn ok(&mut self, command: &str) -> String {
        let reply = self.request(command);
        match reply.strip_prefix("ok ") {
            Some(rest) => rest.to_owned(),
            None => self.fail(&format!("{command:?} was answered {reply:?}")),
        }
    }

    /// Sends a serve-mode `verify` of `specs`, which must succeed; returns its summary.
    pub fn verify(&mut self, specs: &[ChunkSpec]) -> VerifySummary {
        let reply = self.ok(&format!("verify {}", join(specs)));
        VerifySummary::find_in(&reply).unwrap_or_else(|| panic!("no summary in {reply:?}"))
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the child to exit; kills it and fails the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return status;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => self.fail(&format!("did not exit within {timeout:?}")),
                Err(e) => self.fail(&format!("waiting: {e}")),
            }
        }
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the child");
        self.wait(STEP)
    }

    /// Everything the child wrote to stderr, once it exited (call [`Peer::wait`] first): the
    /// stderr thread ends at end of file, right after the exit; this gives it a moment.
    pub fn stderr_at_exit(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&self.stderr) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.stderr()
    }

    /// Remaining stdout lines after the child exited.
    pub fn rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(STEP) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a one-shot peer run produced.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn summary(&self) -> VerifySummary {
        assert!(
            self.status.success(),
            "peer failed: {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        VerifySummary::find_in(&self.stdout)
            .unwrap_or_else(|| panic!("no summary in peer output {:?}", self.stdout))
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

/// Runs `command` to completion with stdin closed, within `timeout`.
pub fn run(command: Command, what: &str, timeout: Duration) -> Outcome {
    let mut peer = Peer::spawn(command, what);
    peer.close_stdin();
    let status = peer.wait(timeout);
    let stdout = peer.rest().join("\n");
    Outcome {
        status,
        stdout,
        stderr: peer.stderr_at_exit(),
    }
}

pub fn run_peer(args: &[String], timeout: Duration) -> Outcome {
    let mut command = Command::new(PEER);
    command.args(args);
    run(command, &format!("peer {}", args[0]), timeout)
}

/// `verify` command line for `specs` (read-only view, 5 s open timeout).
pub fn verify_args(scope: &Scope, name: &str, specs: &[ChunkSpec]) -> Vec<String> {
    let mut args = scope.peer_args("verify", name);
    args.push("--offset".to_owned());
    args.extend(specs.iter().map(ToString::to_string));
    args
}

pub fn write_args(scope: &Scope, name: &str, specs: &[ChunkSpec]) -> Vec<String> {
    let mut args = scope.peer_args("write", name);
    args.push("--offset".to_owned());
    args.extend(specs.iter().map(ToString::to_string));
    args
}

/// A `serve` peer on memory `name`, ready for commands.
pub fn serve(scope: &Scope, name: &str, access: &str) -> Peer {
    let mut args = scope.peer_args("serve", name);
    args.extend(["--access".to_owned(), access.to_owned()]);
    let mut peer = Peer::spawn_peer(&args, &format!("serve peer ({access})"));
    let before = peer.until_ready();
    assert!(before.is_empty(), "unexpected serve output {before:?}");
    peer
}

pub fn join(specs: &[ChunkSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 8).expect("valid layout")
}

/// A chunk the test process owns: its spec and its address in this process.
#[derive(Debug, Clone, Copy)]
pub struct Owned {
    pub spec: ChunkSpec,
    pub ptr: *mut u8,
}

impl Owned {
    pub fn segment(&self) -> SegmentId {
        self.spec.offset.segment_id()
    }

    /// Checks the chunk's bytes, in the owner's mapping, against the pattern of `seed`.
    pub fn check(&self, seed: u64) -> Result<(), Mismatch> {
        // SAFETY: `ptr` is the owner's address of a chunk of at least `spec.len` bytes that is
        // still allocated (the tests never check freed chunks); no peer writes it while the
        // owner reads (the tests' protocol).
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.spec.len) };
        check_pattern(bytes, seed)
    }

    /// Frees the chunk.
    pub fn free(self, memory: &Memory) {
        // SAFETY: the chunk came from `memory.allocate` with this layout and is freed once
        // (`self` is consumed); the test does not use its address afterwards.
        unsafe { memory.deallocate(self.spec.offset, layout(self.spec.len)) };
    }
}

/// Allocates a chunk of `len` bytes and fills it with the pattern of `seed`.
pub fn alloc_filled(memory: &Memory, len: usize, seed: u64) -> Owned {
    let chunk = memory
        .allocate(layout(len))
        .unwrap_or_else(|e| panic!("allocating {len} bytes: {e:?}"));
    // SAFETY: a fresh chunk of at least `len` bytes, owned by this test until it is freed.
    fill_pattern(
        unsafe { std::slice::from_raw_parts_mut(chunk.data_ptr, len) },
        seed,
    );
    Owned {
        spec: ChunkSpec::new(chunk.offset, len, seed),
        ptr: chunk.data_ptr,
    }
}

/// Registers `spec` with `view`, checks its bytes, unregisters.
pub fn view_check(view: &View, spec: ChunkSpec) -> Result<(), String> {
    // SAFETY: unregistered below, after the last use of the address.
    let ptr = unsafe { view.register_and_translate_offset(spec.offset) }
        .map_err(|e| format!("register {spec}: {e:?}"))?;
    // SAFETY: the translation of a chunk of at least `spec.len` bytes, registered until the
    // unregister below; nobody writes it meanwhile (the tests' protocol).
    let result = check_pattern(
        unsafe { std::slice::from_raw_parts(ptr, spec.len) },
        spec.seed,
    );
    // SAFETY: registered above; `ptr` is not used after this.
    unsafe { view.unregister_offset(spec.offset) };
    result.map_err(|m| format!("chunk {spec}: {m}"))
}

pub fn segments_of(specs: &[ChunkSpec]) -> BTreeSet<SegmentId> {
    specs.iter().map(|s| s.offset.segment_id()).collect()
}

/// The effective uid of this process, from `/proc/self/status` (std has no `geteuid`).
pub fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    // Uid: real effective saved filesystem
    line.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .expect("effective uid")
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("rme2e_{}_{n}_{tag}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines `reader` produces, delivered through a channel by a reader thread (so a test can
/// wait for a line with a timeout); the channel closes at end of input.
pub fn line_channel(
    reader: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
