//! Tests of the `resmem` binary: `run` (arguments, exit codes, traps, stdin, namespace and
//! quota options), `ls`, `inspect`, `rm`, `peer` and `demo`, each run as a real child process
//! against real guests (`resmem_guests`) and native memories owned by this test process.
//!
//! Every test works in its own namespace ([`Ns`]), which fails the test if objects with its
//! prefix are left in `/dev/shm`; every child is killed after [`TIMEOUT`] and always reaped.

use std::alloc::Layout;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use resmem::{AllocationStrategy, Config, Memory, PointerOffset};

#[path = "../src/pattern.rs"]
mod pattern;

const RESMEM: &str = env!("CARGO_BIN_EXE_resmem");

/// Longest any child may run before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

const SHM_DIR: &str = "/dev/shm";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique namespace (`rmcli<pid>x<n><tag>_`); on drop, removes objects left with its prefix
/// and fails the test if there were any.
struct Ns {
    prefix: String,
}

impl Ns {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("rmcli{}x{n}{tag}_", std::process::id()),
        }
    }

    fn config(&self) -> Config {
        Config::default().prefix(&self.prefix)
    }

    fn objects(&self) -> Vec<String> {
        objects_with_prefix(&self.prefix)
    }

    fn assert_clean(&self) {
        let left = self.objects();
        assert!(left.is_empty(), "leftover shared-memory objects: {left:?}");
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let left = self.objects();
        for object in &left {
            let _ = std::fs::remove_file(Path::new(SHM_DIR).join(object));
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("test left shared-memory objects behind (now removed): {left:?}");
        }
    }
}

fn objects_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)
        .expect("/dev/shm is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Compiled components go to the target directory, not the user's cache.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resmem-cwasm")
}

/// A `resmem` child with piped stdio; stdout is read line by line on a thread, stderr
/// collected. Dropping it kills and reaps it.
struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

/// How a child ended, with its output.
#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut command = Command::new(RESMEM);
        command
            .args(args)
            .env("RESMEM_CACHE_DIR", cache_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning resmem {args:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        Self {
            what: format!("resmem {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            status: None,
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        self.status = status.as_ref().ok().copied();
        panic!("{}: {why} (status {status:?})", self.what);
    }

    /// The next stdout line; fails the test after [`TIMEOUT`] or at the end of output.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => self.fail("no output within the timeout"),
            Err(RecvTimeoutError::Disconnected) => self.fail("stdout closed"),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            self.fail(&format!("writing stdin: {e}"));
        }
    }

    /// Whether the child is still running.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes stdin, waits for the exit (killing the child after [`TIMEOUT`]), collects the
    /// rest of its output.
    fn finish(mut self) -> Output {
        self.stdin = None;
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => self.fail("did not exit within the timeout"),
                Err(e) => self.fail(&format!("waiting: {e}")),
            }
        };
        self.status = Some(status);
        let mut stdout = Vec::new();
        loop {
            match self.lines.recv_timeout(TIMEOUT) {
                Ok(line) => stdout.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail("stdout never closed"),
            }
        }
        let stderr = self
            .stderr
            .take()
            .expect("once")
            .join()
            .expect("stderr reader");
        Output {
            status,
            stdout: stdout.join("\n"),
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `resmem args...` to completion with stdin at end of file.
fn resmem(args: &[&str]) -> Output {
    Proc::spawn(args).finish()
}

fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 8).expect("valid layout")
}

/// A chunk of a native memory, filled with `pattern` of `seed`.
#[derive(Debug, Clone, Copy)]
struct Filled {
    offset: PointerOffset,
    len: usize,
    seed: u64,
    ptr: *mut u8,
}

fn alloc_filled(memory: &Memory, len: usize, seed: u64) -> Filled {
    let chunk = memory.allocate(layout(len)).expect("allocate");
    // SAFETY: a fresh chunk of at least `len` bytes owned by this test until the memory is
    // dropped; the child processes only read it.
    let bytes = unsafe { std::slice::from_raw_parts_mut(chunk.data_ptr, len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern::byte(seed, i);
    }
    Filled {
        offset: chunk.offset,
        len,
        seed,
        ptr: chunk.data_ptr,
    }
}

/// A native memory with chunks in three segments: two 4 KiB chunks fill segment 0, 10 000
/// bytes need a segment of 16 KiB buckets, 100 000 bytes one of 128 KiB buckets.
fn live_memory(ns: &Ns, name: &str) -> (Memory, Vec<Filled>) {
    let memory = Memory::builder(name)
        .config(&ns.config())
        .max_chunk_layout_hint(layout(4096))
        .max_number_of_chunks_hint(2)
        .allocation_strategy(AllocationStrategy::PowerOfTwo)
        .create()
        .expect("create a native memory");
    let chunks: Vec<Filled> = [4096, 4096, 10_000, 100_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| alloc_filled(&memory, len, 20 + i as u64))
        .collect();
    assert_eq!(memory.number_of_active_segments(), 3);
    (memory, chunks)
}

fn guest(path: &'static str) -> &'static str {
    assert!(Path::new(path).is_file(), "{path} was not built");
    path
}

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

/// Guest arguments after `--` reach the guest; its exit code is the process's.
#[test]
fn run_passes_arguments_and_the_exit_code_through() {
    let ns = Ns::new("runargs");
    let producer = guest(resmem_guests::PRODUCER);
    let out = resmem(&[
        "run",
        "-n",
        &ns.prefix,
        producer,
        "--",
        "frames",
        "3",
        "4096",
        "--no-wait",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    for (i, line) in lines[..3].iter().enumerate() {
        let expected = format!("chunk seed={} ", i + 1);
        assert!(line.starts_with(&expected), "{line}");
        assert!(line.contains(&format!(" len={} ", 4096 << i)), "{line}");
    }
    assert_eq!(lines[3], "ready");
    assert!(!out.stderr.contains("default"), "{}", out.stderr);
    ns.assert_clean();

    // A guest that exits 1 makes `resmem run` exit 1.
    let out = resmem(&[
        "run",
        "-n",
        &ns.prefix,
        producer,
        "--",
        "s",
        "3",
        "64",
        "--no-wait",
        "--strategy",
        "static",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout
            .ends_with("failed step=allocate seed=2 len=128 error=out-of-memory"),
        "{out:?}"
    );
    ns.assert_clean();

    // A missing component is the CLI's own error.
    let out = resmem(&["run", "-n", &ns.prefix, "/nonexistent/x.wasm", "--no-cache"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("reading /nonexistent/x.wasm"),
        "{}",
        out.stderr
    );
}

/// `--window` sets the size of the zero-copy window: mapping beyond it is `quota-exceeded`;
/// sizes that are not whole wasm pages, or leave no heap, are refused before anything runs.
#[test]
fn run_window_sets_the_zero_copy_window_size() {
    let ns = Ns::new("runwin");
    let window = guest(resmem_guests::WINDOW);
    let fill = |size: &str| {
        resmem(&[
            "run",
            "-n",
            &ns.prefix,
            "--window",
            size,
            window,
            "--",
            "fill-window",
            "1048576",
        ])
    };
    // Each 1 MiB chunk takes a 1 MiB + 64 KiB slot (its segment's trailer page, rounded).
    let out = fill("4M");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "full after=3 error=quota-exceeded");
    let out = fill("8MiB");
    assert_eq!(out.stdout.trim(), "full after=7 error=quota-exceeded");
    ns.assert_clean();
    for bad in ["100K", "4G", "lots"] {
        let out = fill(bad);
        assert_eq!(out.code(), Some(1), "{bad}: {out:?}");
        assert!(out.stdout.is_empty(), "{bad}: {out:?}");
    }
}

/// A trap is exit code 101 with the trap on stderr; the host process itself exits normally
/// (no signal) and the guest's memory is gone.
#[test]
fn run_reports_a_trap_with_exit_code_101() {
    let ns = Ns::new("runtrap");
    let out = resmem(&[
        "run",
        "-n",
        &ns.prefix,
        guest(resmem_guests::TRAP),
        "--",
        "boom",
    ]);
    assert_eq!(out.status.signal(), None, "killed by a signal: {out:?}");
    assert_eq!(out.code(), Some(101), "{out:?}");
    assert_eq!(out.stdout, "allocated boom");
    assert!(
        out.stderr.contains("resmem: guest trapped:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unreachable"), "{}", out.stderr);
    ns.assert_clean();
}

/// `--timeout` stops a guest that never returns: exit code 124, the deadline on stderr, the
/// guest's memory gone; a malformed duration is refused before anything runs.
#[test]
fn run_stops_a_spinning_guest_at_its_timeout() {
    let ns = Ns::new("runspin");
    let started = Instant::now();
    let out = resmem(&[
        "run",
        "-n",
        &ns.prefix,
        "--timeout",
        "300ms",
        guest(resmem_guests::SPIN),
        "--",
        "loop",
        "forever",
    ]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(out.stdout, "holding forever");
    assert!(
        out.stderr
            .contains("guest stopped: still running after its deadline of 300ms"),
        "{}",
        out.stderr
    );
    ns.assert_clean();

    let out = resmem(&["run", "--timeout", "soon", guest(resmem_guests::SPIN)]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("not a duration"), "{}", out.stderr);
}

/// The guest reads the process's stdin: the producer keeps its memory alive until a line
/// arrives.
#[test]
fn run_inherits_stdin() {
    let ns = Ns::new("runstdin");
    let mut proc = Proc::spawn(&[
        "run",
        "-n",
        &ns.prefix,
        guest(resmem_guests::PRODUCER),
        "--",
        "waiting",
        "2",
        "4096",
    ]);
    assert!(proc.line().starts_with("chunk seed=1 "));
    assert!(proc.line().starts_with("chunk seed=2 "));
    assert_eq!(proc.line(), "ready");
    // Still waiting for stdin, with its memory alive.
    std::thread::sleep(Duration::from_millis(200));
    assert!(proc.running(), "the producer did not wait for stdin");
    assert!(resmem::exists("waiting", &ns.config()).unwrap());
    proc.send("go");
    let out = proc.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "");
    ns.assert_clean();
}

/// Without `--namespace` the default is used and said on stderr; with it, nothing is said.
#[test]
fn default_namespace_is_announced_on_stderr() {
    // The consumer exits with its usage before touching any memory.
    let out = resmem(&["run", guest(resmem_guests::CONSUMER)]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("resmem: namespace 'resmem_guest_' (default; --namespace to change)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("usage: consumer"), "{}", out.stderr);

    let ns = Ns::new("nsdefault");
    let out = resmem(&["ls", "--namespace", &ns.prefix]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!out.stderr.contains("default"), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("(no memories under namespace '{}')", ns.prefix)),
        "{}",
        out.stdout
    );
}

/// Malformed `--quota` settings are refused before any guest runs; valid ones apply.
#[test]
fn quota_options_are_parsed_and_applied() {
    let ns = Ns::new("quota");
    let producer = guest(resmem_guests::PRODUCER);
    for (setting, message) in [
        ("nope=1", "unknown quota \"nope\""),
        ("memories", "--quota takes NAME=VALUE, got \"memories\""),
        ("shm-bytes=1X", "unknown size unit \"x\""),
        ("memories=abc", "not a number: \"abc\""),
        ("memories=99999999999", "memories: too large"),
        ("io-bytes=99999999999T", "size overflows"),
    ] {
        let out = resmem(&[
            "run",
            "-n",
            &ns.prefix,
            "--quota",
            setting,
            producer,
            "--",
            "q",
            "1",
            "64",
            "--no-wait",
        ]);
        assert_eq!(out.code(), Some(1), "{setting}: {out:?}");
        assert!(out.stderr.contains(message), "{setting}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{setting}: a guest ran");
    }

    let out = resmem(&[
        "run",
        "-n",
        &ns.prefix,
        "--quota",
        "memories=0",
        producer,
        "--",
        "q",
        "1",
        "64",
        "--no-wait",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, "failed step=create error=quota-exceeded");

    let out = resmem(&[
        "run",
        "-n",
        &ns.prefix,
        "--quota",
        "io-bytes=64K",
        "--quota",
        "memories=1",
        producer,
        "--",
        "q",
        "2",
        "65536",
        "--no-wait",
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stdout
            .ends_with("failed step=write seed=2 len=131072 error=quota-exceeded"),
        "{out:?}"
    );
    ns.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// ls, inspect, rm
// ---------------------------------------------------------------------------------------------

/// `ls` and `inspect` of a memory this process owns: name, owner pid, liveness, segments,
/// bucket sizes and chunks in use, as the owner knows them.
#[test]
fn ls_and_inspect_show_a_live_memory() {
    let ns = Ns::new("inspect");
    let (memory, chunks) = live_memory(&ns, "live");
    let pid = std::process::id();

    let out = resmem(&["ls", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    // NAME OWNER STATE SEGMENTS PAYLOAD-BYTES CHUNKS
    assert_eq!(row[0], "live");
    assert_eq!(row[1], pid.to_string());
    assert_eq!(row[2], "alive");
    assert_eq!(row[3], "3");
    assert_eq!(row[5], chunks.len().to_string());

    let out = resmem(&["inspect", "live", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let text = &out.stdout;
    assert!(
        text.contains(&format!("memory      {}live", ns.prefix)),
        "{text}"
    );
    assert!(
        text.contains(&format!("owner       pid {pid} (alive)")),
        "{text}"
    );
    assert!(text.contains("strategy PowerOfTwo"), "{text}");
    assert!(
        text.contains(&format!("current     segment {}", memory.current_segment())),
        "{text}"
    );
    // SEGMENT CREATION PAYLOAD BUCKET ALIGN BUCKETS IN-USE, one row per live segment.
    let rows: Vec<Vec<u64>> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("SEGMENT"))
        .skip(1)
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.parse().unwrap_or_else(|_| panic!("row {l:?}")))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    let mut in_use = std::collections::BTreeMap::new();
    for c in &chunks {
        *in_use
            .entry(u64::from(c.offset.segment_id().value()))
            .or_insert(0u64) += 1;
    }
    for row in &rows {
        let id = resmem::SegmentId::new(row[0] as u8);
        assert_eq!(
            row[3],
            memory.bucket_size(id) as u64,
            "bucket size of {row:?}"
        );
        assert_eq!(
            Some(&row[6]),
            in_use.get(&row[0]),
            "chunks in use of {row:?}"
        );
    }
    let buckets: Vec<u64> = rows.iter().map(|r| r[3]).collect();
    assert_eq!(buckets, [4096, 16384, 131072]);

    let out = resmem(&["inspect", "absent", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("opening 'absent'"), "{}", out.stderr);
    drop(memory);
    ns.assert_clean();
}

/// `rm` refuses a memory whose owner lives; once the owner is gone without cleaning up
/// (abandoned, as after a crash), `ls`/`inspect` call it stale and `rm` removes every object.
#[test]
fn rm_refuses_a_live_owner_and_removes_an_abandoned_memory() {
    let ns = Ns::new("rm");
    let (memory, _chunks) = live_memory(&ns, "left");
    let objects = ns.objects();
    assert_eq!(objects.len(), 4, "{objects:?}");

    let out = resmem(&["rm", "left", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("has a live owner (pid {})", std::process::id())),
        "{}",
        out.stderr
    );
    assert_eq!(ns.objects(), objects, "rm touched a live memory");

    memory.abandon();
    assert_eq!(ns.objects(), objects, "abandon leaves the objects");
    let out = resmem(&["ls", "-n", &ns.prefix]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("left") && l.contains(" stale ")),
        "{out:?}"
    );
    let out = resmem(&["inspect", "left", "-n", &ns.prefix]);
    assert!(
        out.stdout.contains("gone: stale, remove with `resmem rm`"),
        "{out:?}"
    );

    let out = resmem(&["rm", "left", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("removed 'left' from namespace '{}'", ns.prefix)
    );
    ns.assert_clean();

    let out = resmem(&["rm", "left", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("no memory 'left'"), "{}", out.stderr);
}

/// `rm` must refuse a live owner's memory even when its header bytes were overwritten: the
/// owner's lock on the management object, not the header, says whether the owner lives.
#[test]
fn rm_refuses_a_live_owner_with_a_corrupted_header() {
    let ns = Ns::new("rmcorrupt");
    let (memory, _chunks) = live_memory(&ns, "victim");
    let objects = ns.objects();
    let mgmt = Path::new(SHM_DIR).join(format!("{}victim__mgmt", ns.prefix));
    let mut file = std::fs::OpenOptions::new().write(true).open(&mgmt).unwrap();
    file.write_all(&[0xEE; 16]).unwrap();
    drop(file);

    let out = resmem(&["rm", "victim", "-n", &ns.prefix]);
    let left = ns.objects();
    drop(memory);
    ns.assert_clean();
    assert_eq!(left, objects, "rm removed a live owner's memory: {out:?}");
    assert_eq!(out.code(), Some(1), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// peer
// ---------------------------------------------------------------------------------------------

/// `--seed-per-offset` counts modulo 2^64: a seed of `u64::MAX` is followed by 0 (it used to
/// overflow and panic).
#[test]
fn peer_seeds_per_offset_wrap_around() {
    let ns = Ns::new("peerwrap");
    let memory = Memory::builder("wrap")
        .config(&ns.config())
        .max_chunk_layout_hint(layout(4096))
        .max_number_of_chunks_hint(2)
        .create()
        .expect("create a native memory");
    let last = alloc_filled(&memory, 4096, u64::MAX);
    let first = alloc_filled(&memory, 4096, 0);
    let (a, b) = (
        last.offset.as_u64().to_string(),
        first.offset.as_u64().to_string(),
    );
    let max = u64::MAX.to_string();
    let args = [
        "peer",
        "wrap",
        "-n",
        &ns.prefix,
        "--pattern",
        &max,
        "--seed-per-offset",
    ];
    let out = resmem(&[&args[..], &["--len", "4096", &a, &b]].concat());
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("verified 4096 bytes (seed 0)"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("2 offsets, 8192 bytes verified, 0 mismatches"),
        "{out:?}"
    );
    drop(memory);
    ns.assert_clean();
}

/// `resmem peer` verifies `OFFSET/LEN@SEED` (packed or `SEGMENT:OFFSET`), `--pattern` with
/// `--seed-per-offset`, prints bytes without a pattern, and exits 1 on a mismatch.
#[test]
fn peer_verifies_and_prints_offsets() {
    let ns = Ns::new("peer");
    let (memory, chunks) = live_memory(&ns, "data");
    let spec = |c: &Filled| format!("{}/{}@{}", c.offset.as_u64(), c.len, c.seed);
    let split = |c: &Filled| {
        format!(
            "{}:{}/{}@{}",
            c.offset.segment_id().value(),
            c.offset.offset(),
            c.len,
            c.seed
        )
    };

    let mut args = vec![
        "peer".to_owned(),
        "data".into(),
        "-n".into(),
        ns.prefix.clone(),
    ];
    args.extend(chunks[..2].iter().map(spec));
    args.extend(chunks[2..].iter().map(split));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = resmem(&args);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for c in &chunks {
        assert!(
            out.stdout
                .contains(&format!(": verified {} bytes (seed {});", c.len, c.seed)),
            "{out:?}"
        );
    }
    let total: usize = chunks.iter().map(|c| c.len).sum();
    assert!(
        out.stdout
            .contains(&format!("4 offsets, {total} bytes verified, 0 mismatches")),
        "{out:?}"
    );

    // --pattern with --seed-per-offset: seeds 20, 21 for the first two chunks.
    let (a, b) = (
        chunks[0].offset.as_u64().to_string(),
        chunks[1].offset.as_u64().to_string(),
    );
    let out = resmem(&[
        "peer",
        "data",
        "-n",
        &ns.prefix,
        "--pattern",
        "20",
        "--seed-per-offset",
        "--len",
        "4096",
        &a,
        &b,
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("2 offsets, 8192 bytes verified, 0 mismatches"),
        "{out:?}"
    );

    // A wrong seed is a mismatch: exit 1.
    let wrong = format!("{}/{}@{}", chunks[3].offset.as_u64(), chunks[3].len, 99);
    let out = resmem(&[
        "peer",
        "data",
        "-n",
        &ns.prefix,
        &a,
        "--pattern",
        "20",
        "--len",
        "4096",
        &wrong,
    ]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("MISMATCH at byte 0"), "{out:?}");
    assert!(
        out.stdout
            .contains("2 offsets, 4096 bytes verified, 1 mismatches"),
        "{out:?}"
    );

    // One corrupted byte at the end of a chunk is found.
    let last = chunks[2];
    // SAFETY: the last byte of a chunk this test owns; no peer runs right now.
    unsafe { *last.ptr.add(last.len - 1) ^= 0x01 };
    let out = resmem(&["peer", "data", "-n", &ns.prefix, &spec(&last)]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("MISMATCH at byte 9999"), "{out:?}");

    // Without a pattern: the bytes in hex.
    let out = resmem(&["peer", "data", "-n", &ns.prefix, "--len", "8", &a]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let hex: Vec<String> = (0..8)
        .map(|i| format!("{:02x}", pattern::byte(20, i)))
        .collect();
    assert!(out.stdout.contains(&hex.join(" ")), "{out:?}");

    // A range past the segment's payload is an error, not a read out of bounds.
    let past = format!("{}/{}", chunks[3].offset.as_u64(), 1 << 30);
    let out = resmem(&["peer", "data", "-n", &ns.prefix, &past]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("the range ends beyond the segment's"),
        "{}",
        out.stderr
    );

    // Malformed specs.
    let out = resmem(&["peer", "data", "-n", &ns.prefix, "12/x"]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("bad length in \"12/x\""),
        "{}",
        out.stderr
    );
    drop(memory);
    ns.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// demo
// ---------------------------------------------------------------------------------------------

/// The demo runs end to end (producer guest, three native subscriber processes, the filter
/// guest), kills the hoarding subscriber midway and shows its slot reclaimed, prints per-stage
/// figures and leaves nothing in its namespace.
#[test]
fn demo_runs_and_leaves_nothing_behind() {
    let proc = Proc::spawn(&[
        "demo",
        "--frames",
        "24",
        "--grow-every",
        "3",
        "--max-size",
        "256K",
    ]);
    let namespace = format!("resmem_demo_{}_", proc.child.id());
    let out = proc.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let stdout = &out.stdout;
    assert!(
        stdout.contains(&format!("host:     namespace {namespace};")),
        "{stdout}"
    );
    // Frames of 4 KiB doubling every 3 up to 256 KiB: a new segment for each new size.
    let segments: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("producer: frame"))
        .collect();
    assert!(segments.len() >= 7, "{stdout}");
    for size in [4096, 8192, 16384, 32768, 65536, 131072, 262144] {
        assert!(
            segments
                .iter()
                .any(|l| l.contains(&format!(" {size} B written in place"))),
            "no new segment for {size}-byte frames: {stdout}"
        );
    }
    let kill = stdout
        .lines()
        .find(|l| l.starts_with("kill:"))
        .unwrap_or_else(|| panic!("no kill line: {stdout}"));
    assert!(kill.contains("reclaimed the slot"), "{kill}");
    assert!(kill.contains("2 subscribers remain"), "{kill}");
    for stage in ["stage 1  producer guest", "stage 2  filter guest"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(stage))
            .unwrap_or_else(|| panic!("no {stage:?}: {stdout}"));
        assert!(line.contains(": 24 samples, "), "{line}");
        assert!(
            line.contains("every byte verified; latency median"),
            "{line}"
        );
    }
    assert!(stdout.contains("namespace is empty"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("summary:  24 frames")),
        "{stdout}"
    );
    let left = objects_with_prefix(&namespace);
    assert!(left.is_empty(), "the demo left {left:?}");
}
