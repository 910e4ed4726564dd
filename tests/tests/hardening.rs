//! Hardening of the WebAssembly side, end to end with the real guests of `guest/`:
//!
//! - guests that run forever (a pure loop, a loop of host calls, a loop holding a full quota)
//!   are stopped at the host's deadline, and everything they held is released;
//! - a guest that grows its linear memory past its quota traps and releases everything;
//! - the fuzz guest runs 64 seeds of random valid and hostile calls against one host on
//!   several threads, checking every answer against its own model;
//! - stress: churning guests on several threads while native peer processes register,
//!   verify and unregister their pinned chunks.
//!
//! Every test has its own namespace ([`Scope`]); leftovers fail it.

mod support;

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use resmem_e2e::ChunkSpec;
use resmem_host::bindings::types::PointerOffset as WitOffset;
use resmem_host::run::Buffer;
use resmem_host::{EngineOptions, GuestHost, Policy, Quotas, RunOutcome};
use support::*;
use wasmtime::component::Component;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};

/// Longest any guest run or peer step may take before the test fails.
const LIMIT: Duration = Duration::from_secs(60);

fn engine_options() -> EngineOptions {
    EngineOptions {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resmem-cwasm")),
    }
}

fn host(scope: &Scope, quotas: Quotas, deadline: Option<Duration>) -> Arc<GuestHost> {
    let policy = Policy::builder()
        .namespace(scope.prefix())
        .quotas(quotas)
        .deadline(deadline)
        .build();
    Arc::new(GuestHost::new(policy, engine_options()).expect("a guest host"))
}

fn assert_empty(scope: &Scope) {
    let names = resmem::list(&scope.config()).expect("list the namespace");
    assert!(names.is_empty(), "memories left: {names:?}");
    scope.assert_clean();
}

/// A command guest on its own thread with stdin and stdout on pipes (stderr captured).
struct Guest {
    args: String,
    started: Instant,
    thread: Option<JoinHandle<(anyhow::Result<RunOutcome>, Instant)>>,
    stdin: Option<std::io::PipeWriter>,
    lines: Receiver<String>,
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

impl Guest {
    fn start(host: &Arc<GuestHost>, component: &Component, args: &[&str]) -> Self {
        let (stdout_reader, stdout_writer) = std::io::pipe().expect("a pipe");
        let (stdin_reader, stdin_writer) = std::io::pipe().expect("a pipe");
        let stderr = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(OutputFile::new(File::from(OwnedFd::from(stdout_writer))))
            .stdin(InputFile::new(File::from(OwnedFd::from(stdin_reader))))
            .stderr(stderr.clone())
            .args(args);
        let (host, component) = (Arc::clone(host), component.clone());
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let outcome = host
                .run_command(&component, &mut wasi)
                .map_err(anyhow::Error::from);
            (outcome, Instant::now())
        });
        Self {
            args: args.join(" "),
            started,
            thread: Some(thread),
            stdin: Some(stdin_writer),
            lines: line_channel(stdout_reader),
            stderr,
        }
    }

    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no output within {LIMIT:?}", self.args),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{}: output ended; stderr: {}",
                self.args,
                String::from_utf8_lossy(&self.stderr.contents())
            ),
        }
    }

    fn release(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin)
            .and_then(|()| stdin.flush())
            .expect("write stdin");
    }

    /// Waits (at most [`LIMIT`]) for the end: the outcome, how long the run took, and the
    /// stdout lines not read yet.
    fn finish(mut self) -> (RunOutcome, Duration, Vec<String>) {
        self.stdin = None;
        let thread = self.thread.take().expect("finished once");
        let deadline = Instant::now() + LIMIT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "{}: still running", self.args);
            std::thread::sleep(Duration::from_millis(1));
        }
        let (outcome, ended) = thread.join().expect("the guest thread panicked");
        let outcome = outcome.unwrap_or_else(|e| panic!("{}: {e:?}", self.args));
        let rest = self.lines.iter().collect();
        (outcome, ended - self.started, rest)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + LIMIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlines and quotas
// ---------------------------------------------------------------------------------------------

/// Three ways to run forever, each while holding memories, segments, chunks and registered
/// view offsets: every one is stopped at the deadline (within a bound) with
/// `DeadlineExceeded`, and nothing of it is left.
#[test]
fn spinning_guests_are_stopped_at_the_deadline_and_release_everything() {
    let scope = Scope::new("hspin");
    let deadline = Duration::from_millis(300);
    let mut quotas = Quotas::default();
    quotas.shm_bytes = 24 << 20;
    let host = host(&scope, quotas, Some(deadline));
    let spin = host.load(resmem_guests::SPIN_WASM).expect("load spin");
    for (mode, first) in [
        ("loop", "holding sloop"),
        ("calls", "calling scalls"),
        ("shm", "refused quota-exceeded after"),
    ] {
        let name = format!("s{mode}");
        let mut guest = Guest::start(&host, &spin, &["spin", mode, &name]);
        let line = guest.line();
        assert!(line.starts_with(first), "{mode}: {line:?}");
        // It holds OS objects now: the memory and its data segments.
        assert!(resmem::exists(&name, &scope.config()).unwrap(), "{mode}");
        let held = scope.objects().len();
        assert!(held >= 2, "{mode}: {held} objects");
        if mode == "shm" {
            let chunks: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
            assert!((10..=24).contains(&chunks), "{line}");
        }
        let (outcome, took, _) = guest.finish();
        assert_eq!(outcome, RunOutcome::DeadlineExceeded(deadline), "{mode}");
        assert_eq!(outcome.exit_code(), 124);
        assert!(took >= deadline, "{mode}: stopped after {took:?}");
        // Generous for a loaded CI machine; the tick is 10 ms.
        assert!(
            took < deadline + Duration::from_secs(5),
            "{mode}: took {took:?}"
        );
        println!(
            "spin {mode}: held {held} objects, stopped {:?} after the deadline",
            took - deadline
        );
        assert_empty(&scope);
    }
}

/// A plugin's `process` gets the deadline per call: a call that stalls fails with the
/// deadline (inspectable by `is_deadline_exceeded`), and dropping the plugin releases the
/// memory the stalled call created.
#[test]
fn a_stalled_plugin_call_is_stopped_at_the_deadline() {
    let scope = Scope::new("hstall");
    let deadline = Duration::from_millis(200);
    let host = host(&scope, Quotas::default(), Some(deadline));
    let stall = host.load(resmem_guests::STALL_WASM).expect("load stall");
    let mut plugin = host
        .plugin(&stall, &mut WasiCtxBuilder::new())
        .expect("instantiate");
    let buffer = |len| Buffer {
        memory: "input".to_owned(),
        offset: WitOffset {
            segment: 0,
            offset: 0,
        },
        len,
    };
    // Calls within the deadline are unaffected, however many there are.
    for _ in 0..3 {
        assert!(matches!(plugin.process(&buffer(0)), Ok(Ok(None))));
    }
    let started = Instant::now();
    let error = plugin
        .process(&buffer(5))
        .expect_err("the call must be stopped");
    let took = started.elapsed();
    assert!(resmem_host::is_deadline_exceeded(&error), "{error:?}");
    assert!(
        format!("{error:#}").contains("deadline of 200ms"),
        "{error:#}"
    );
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(5),
        "{took:?}"
    );
    println!(
        "stall: process stopped {:?} after the deadline",
        took - deadline
    );
    assert!(resmem::exists("stall-5", &scope.config()).unwrap());
    drop(plugin);
    assert_empty(&scope);
}

/// The same host runs well-behaved guests after stopping one, and a guest that finishes in
/// time is not affected by the deadline.
#[test]
fn a_deadline_only_stops_guests_that_overrun_it() {
    let scope = Scope::new("hdl");
    let host = host(&scope, Quotas::default(), Some(Duration::from_secs(20)));
    let fuzz = host.load(resmem_guests::FUZZ_WASM).expect("load fuzz");
    let (outcome, _, lines) = Guest::start(&host, &fuzz, &["fuzz", "3", "300"]).finish();
    assert_eq!(outcome, RunOutcome::Exited(0), "{lines:?}");
    assert!(lines[0].starts_with("seed 3: 300 ops"), "{lines:?}");
    assert_empty(&scope);
}

/// Growing the guest's own linear memory past the `wasm_memory_bytes` quota fails the
/// allocation (the guest aborts: a trap) well before the host's memory suffers.
#[test]
fn linear_memory_beyond_its_quota_traps_the_guest() {
    let scope = Scope::new("hwmem");
    let mut quotas = Quotas::default();
    quotas.wasm_memory_bytes = 32 << 20;
    let host = host(&scope, quotas, Some(Duration::from_secs(30)));
    let spin = host.load(resmem_guests::SPIN_WASM).expect("load spin");
    let (outcome, _, lines) = Guest::start(&host, &spin, &["spin", "wasm-memory"]).finish();
    assert!(matches!(outcome, RunOutcome::Trapped(_)), "{outcome:?}");
    let grown: u64 = lines
        .last()
        .and_then(|l| l.strip_prefix("grown "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no grown line: {lines:?}"));
    assert!((16..32).contains(&grown), "grew to {grown} MiB");
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// The fuzz guest
// ---------------------------------------------------------------------------------------------

/// 64 seeds of the fuzz guest on 4 threads of one host: every run checks every answer
/// against its model and exits 0; afterwards the namespace is empty.
#[test]
fn fuzz_guest_passes_64_seeds_in_one_host() {
    const SEEDS: u64 = 64;
    const THREADS: usize = 4;
    let scope = Scope::new("hfuzz");
    let mut quotas = Quotas::default();
    // The guest's registration hog counts to the quota twice per attempt.
    quotas.registrations = 2048;
    let host = host(&scope, quotas, Some(LIMIT));
    let fuzz = host.load(resmem_guests::FUZZ_WASM).expect("load fuzz");
    let next = Arc::new(AtomicU64::new(0));
    let summaries = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (host, fuzz) = (Arc::clone(&host), fuzz.clone());
            let (next, summaries) = (Arc::clone(&next), Arc::clone(&summaries));
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= SEEDS {
                        break;
                    }
                    let seed_arg = seed.to_string();
                    let guest = Guest::start(&host, &fuzz, &["fuzz", &seed_arg, "800"]);
                    let stderr = guest.stderr.clone();
                    let (outcome, _, lines) = guest.finish();
                    assert_eq!(
                        outcome,
                        RunOutcome::Exited(0),
                        "seed {seed}: {}",
                        String::from_utf8_lossy(&stderr.contents())
                    );
                    assert_eq!(lines.len(), 1, "seed {seed}: {lines:?}");
                    assert!(lines[0].starts_with(&format!("seed {seed}: 800 ops")));
                    summaries.lock().unwrap().push(lines[0].clone());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a fuzz thread failed");
    }
    let summaries = summaries.lock().unwrap();
    assert_eq!(summaries.len() as u64, SEEDS);
    let calls: u64 = summaries
        .iter()
        .map(|s| s.split_whitespace().nth(4).unwrap().parse::<u64>().unwrap())
        .sum();
    println!(
        "fuzz guest: {SEEDS} seeds x 800 ops, {calls} host calls, {:?} on {THREADS} threads",
        started.elapsed()
    );
    assert_empty(&scope);
}

// ---------------------------------------------------------------------------------------------
// Stress
// ---------------------------------------------------------------------------------------------

/// Four guests on four threads of one host allocate, grow and free thousands of chunks (each
/// checking contents and overlaps) while four native peer processes repeatedly register,
/// verify and unregister each guest's pinned chunks (`repeat`, `hold`, `check-held`,
/// `release`) through their own views. No chunk overlaps, no byte changes, no deadlock,
/// nothing left.
#[test]
fn churning_guests_and_peer_processes_stress() {
    const GUESTS: usize = 4;
    const OPS: &str = "60000";
    /// Register-verify-unregister passes over the four pinned chunks per peer request.
    const REPEAT: u64 = 25;
    let scope = Scope::new("hstress");
    let host = host(&scope, Quotas::default(), Some(LIMIT));
    let fuzz = host.load(resmem_guests::FUZZ_WASM).expect("load fuzz");
    let started = Instant::now();
    let mut guests = Vec::new();
    let mut pinned = Vec::new();
    for g in 0..GUESTS {
        let name = format!("churn{g}");
        let seed = (100 * g).to_string();
        let mut guest = Guest::start(&host, &fuzz, &["fuzz", "churn", &name, &seed, OPS]);
        let mut specs = Vec::new();
        loop {
            let line = guest.line();
            if line == "ready" {
                break;
            }
            specs.push(parse_chunk(&line));
        }
        assert_eq!(specs.len(), 4, "{name}");
        guests.push(guest);
        pinned.push((name, specs));
    }
    let mut peers: Vec<Peer> = pinned
        .iter()
        .map(|(name, _)| {
            let mut args = scope.peer_args("serve", name);
            args.extend(["--pattern", "guest"].map(String::from));
            let mut peer = Peer::spawn_peer(&args, &format!("serve peer of {name}"));
            assert!(peer.until_ready().is_empty());
            peer
        })
        .collect();

    // Peers work until every guest has finished churning.
    let mut rounds = 0u64;
    let mut churned = vec![None; GUESTS];
    while churned.iter().any(Option::is_none) {
        // Every peer gets its batch before any reply is read: the peers work at once.
        for (peer, (_, specs)) in peers.iter_mut().zip(&pinned) {
            peer.send(&format!("repeat {REPEAT} {}", join(specs)));
            peer.send(&format!("hold {}", join(&specs[..2])));
            peer.send("check-held");
            peer.send("release");
        }
        for peer in &mut peers {
            let replies: Vec<String> = (0..4).map(|_| peer.line(STEP)).collect();
            assert!(
                replies[0].starts_with(&format!("ok repeated {REPEAT}"))
                    && replies[1..].iter().all(|r| r.starts_with("ok ")),
                "{replies:?}"
            );
        }
        rounds += 1;
        for (g, guest) in guests.iter_mut().enumerate() {
            if churned[g].is_none()
                && let Ok(line) = guest.lines.try_recv()
            {
                assert!(line.starts_with("churned"), "{line}");
                churned[g] = Some(line);
            }
        }
        assert!(started.elapsed() < LIMIT, "stress did not finish");
    }
    for (peer, (_, specs)) in peers.iter_mut().zip(&pinned) {
        peer.verify(specs);
        assert_eq!(peer.ok("quit"), "bye");
        assert!(peer.wait(LIMIT).success());
    }
    for mut guest in guests {
        guest.release();
        let (outcome, _, _) = guest.finish();
        assert_eq!(outcome, RunOutcome::Exited(0));
    }
    println!(
        "stress: {GUESTS} guests x {OPS} ops, {GUESTS} peer processes x {rounds} rounds \
         ({} registrations each) in {:?}; {}",
        rounds * (REPEAT * 4 + 2),
        started.elapsed(),
        churned
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    assert_empty(&scope);
}

/// `chunk offset=<u64> len=<n> seed=<s>` of the churn guest.
fn parse_chunk(line: &str) -> ChunkSpec {
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    ChunkSpec::new(
        resmem::PointerOffset::from_u64(field("offset")),
        field("len") as usize,
        field("seed"),
    )
}
