//! The C API from C and C++ processes: `examples/c/` compiled (`-Wall -Wextra -Werror`)
//! against the static `libresmem_c.a` that this test builds with cargo, run against the real
//! `channel` wasm guest (in this process, through resmem-host) and native Rust publishers
//! and subscribers, every byte of every frame checked on the receiving side; the C
//! subscriber also under valgrind.
//!
//! Without a C compiler the tests are skipped (with a message) unless `RESMEM_REQUIRE_C=1`;
//! without valgrind the valgrind test is skipped unless `RESMEM_REQUIRE_VALGRIND=1`.

#[path = "support/mod.rs"]
mod support;

use std::alloc::Layout;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use resmem::{Publisher, Subscriber};
use resmem_e2e::guest_frame as frame;
use resmem_e2e::sample::now_ns;
use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome};
use support::{Peer, Scope, TempDir, line_channel};
use wasmtime::component::Component;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};

/// Longest a guest run or a peer may take before the test fails (peers are killed).
const TIMEOUT: Duration = Duration::from_secs(120);

/// System libraries a Rust static library needs (`rustc --print native-static-libs`; the C
/// driver adds libgcc_s and libc itself).
const SYSTEM_LIBS: [&str; 4] = ["-lpthread", "-ldl", "-lm", "-lrt"];

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

fn required(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| v == "1")
}

/// Whether `tool --version` runs.
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `libresmem_c.a`, built once per test binary by a nested `cargo build -p resmem-c` (same
/// target directory and profile), found in cargo's JSON artifact messages.
fn static_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(&cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "-p",
                "resmem-c",
                "--message-format=json-render-diagnostics",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {cargo:?} build -p resmem-c: {e}"));
        assert!(
            output.status.success(),
            "cargo build -p resmem-c failed: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).expect("cargo's messages are UTF-8");
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "resmem_c")
            .flat_map(|m| {
                m["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
                    .collect::<Vec<_>>()
            })
            .find(|f| f.file_name().is_some_and(|n| n == "libresmem_c.a"))
            .unwrap_or_else(|| panic!("no libresmem_c.a among cargo's artifacts:\n{stdout}"))
    })
}

/// The example peers, compiled into a temporary directory.
struct CPeers {
    _dir: TempDir,
    subscriber: PathBuf,
    publisher: PathBuf,
    cpp: PathBuf,
}

/// Compiles `examples/c/`; `None` (after saying so) when there is no C or C++ compiler and
/// `RESMEM_REQUIRE_C` is not 1.
fn c_peers(test: &str) -> Option<CPeers> {
    if !(have("cc") && have("c++")) {
        assert!(
            !required("RESMEM_REQUIRE_C"),
            "{test}: RESMEM_REQUIRE_C=1 but `cc` or `c++` is missing"
        );
        eprintln!(
            "SKIPPED {test}: no C or C++ compiler (cc, c++); RESMEM_REQUIRE_C=1 fails instead"
        );
        return None;
    }
    let library = static_library();
    let dir = TempDir::new("cpeers");
    let examples = workspace_root().join("examples/c");
    let include = workspace_root().join("host/capi/include");
    let compile = |compiler: &str, standard: &str, source: &str, out: &str| -> PathBuf {
        let binary = dir.0.join(out);
        let result = Command::new(compiler)
            .args([standard, "-Wall", "-Wextra", "-Werror", "-g", "-I"])
            .arg(&include)
            .arg(examples.join(source))
            .arg(library)
            .args(SYSTEM_LIBS)
            .arg("-o")
            .arg(&binary)
            .output()
            .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
        assert!(
            result.status.success(),
            "{compiler} {source} failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        binary
    };
    Some(CPeers {
        subscriber: compile("cc", "-std=c11", "subscriber.c", "subscriber"),
        publisher: compile("cc", "-std=c11", "publisher.c", "publisher"),
        cpp: compile("c++", "-std=c++17", "cpp_peer.cpp", "cpp_peer"),
        _dir: dir,
    })
}

/// A peer binary on `args`, stdio on pipes.
fn spawn(binary: &Path, args: &[&str], what: &str) -> Peer {
    let mut command = Command::new(binary);
    command.args(args);
    Peer::spawn(command, what)
}

/// `valgrind <checks> binary args...`.
fn spawn_valgrind(binary: &Path, args: &[&str], what: &str) -> Peer {
    let mut command = Command::new("valgrind");
    command
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99",
        ])
        .arg(binary)
        .args(args);
    Peer::spawn(command, what)
}

/// Asserts that `peer` prints `frame <seq> <first << seq>` for every seq below `count`,
/// then `done count=<count>`, and exits with 0.
fn assert_frames(peer: &mut Peer, count: u64, first: u64) {
    for seq in 0..count {
        assert_eq!(peer.line(TIMEOUT), format!("frame {seq} {}", first << seq));
    }
    assert_eq!(peer.line(TIMEOUT), format!("done count={count}"));
    let status = peer.wait(TIMEOUT);
    assert!(status.success(), "{status:?}\n{}", peer.stderr_at_exit());
}

fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 8).expect("a layout")
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

// ---------------------------------------------------------------------------------------------
// The guest harness (as tests/guests/main.rs has it): a host per namespace and a command guest
// on a thread with its stdio on pipes.
// ---------------------------------------------------------------------------------------------

fn host(scope: &Scope) -> Arc<GuestHost> {
    let policy = Policy::builder().namespace(scope.prefix()).build();
    let options = EngineOptions {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resmem-cwasm")),
    };
    Arc::new(GuestHost::new(policy, options).expect("a guest host"))
}

fn channel_guest(host: &GuestHost) -> Component {
    host.load(resmem_guests::CHANNEL_WASM)
        .expect("compile or load the channel guest")
}

/// A command guest running on its own thread.
struct Running {
    thread: Option<JoinHandle<anyhow::Result<RunOutcome>>>,
    stdin: Option<std::io::PipeWriter>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
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
        let thread = std::thread::spawn(move || {
            host.run_command(&component, &mut wasi)
                .map_err(anyhow::Error::from)
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr_reader).read_to_string(&mut text);
            text
        });
        Self {
            thread: Some(thread),
            stdin: Some(stdin_writer),
            lines: line_channel(stdout_reader),
            stderr: Some(stderr),
        }
    }

    /// Waits for the end of the run: its outcome, stdout lines and stderr.
    fn finish(mut self) -> (RunOutcome, Vec<String>, String) {
        self.stdin = None;
        let thread = self.thread.take().expect("finished once");
        let deadline = Instant::now() + TIMEOUT;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the guest did not finish in time"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let outcome = thread
            .join()
            .expect("the guest thread panicked")
            .expect("run_command");
        let mut stdout = Vec::new();
        loop {
            match self.lines.recv_timeout(TIMEOUT) {
                Ok(line) => stdout.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the guest's stdout never closed"),
            }
        }
        let stderr = self.stderr.take().expect("once").join().expect("stderr");
        (outcome, stdout, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The guest publisher's report: `sent seq=<i> len=<first << i> delivered=1 ...` per frame,
/// then `done sent=<count>`, and exit 0.
fn assert_guest_sent(end: (RunOutcome, Vec<String>, String), count: u64, first: u64) {
    let (outcome, stdout, stderr) = end;
    assert_eq!(outcome, RunOutcome::Exited(0), "{stdout:?}\n{stderr}");
    assert_eq!(stdout.len(), count as usize + 1, "{stdout:?}");
    for (seq, line) in stdout.iter().take(count as usize).enumerate() {
        let sent = format!("sent seq={seq} len={} delivered=1 segment=", first << seq);
        assert!(line.starts_with(&sent), "{line}");
    }
    assert_eq!(stdout[count as usize], format!("done sent={count}"));
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Frames of `1024 << seq` bytes from the wasm guest publisher reach the C subscriber
/// process, which checks every byte, while the publisher's memory adds segments.
#[test]
fn guest_publisher_to_c_subscriber_across_growth() {
    let Some(peers) = c_peers("guest_publisher_to_c_subscriber_across_growth") else {
        return;
    };
    let scope = Scope::new("cpc");
    let host = host(&scope);
    let guest = Running::start(
        &host,
        &channel_guest(&host),
        &["channel", "pub", "svc", "11", "1024", "--seed", "7"],
    );
    let mut c = spawn(
        &peers.subscriber,
        &["svc", "11", "7", scope.prefix()],
        "C subscriber",
    );
    assert_frames(&mut c, 11, 1024);
    assert_guest_sent(guest.finish(), 11, 1024);
    assert_empty(&scope);
}

/// The same with the C++ peer (RAII over the C API).
#[test]
fn guest_publisher_to_cpp_subscriber_across_growth() {
    let Some(peers) = c_peers("guest_publisher_to_cpp_subscriber_across_growth") else {
        return;
    };
    let scope = Scope::new("cpp");
    let host = host(&scope);
    let guest = Running::start(
        &host,
        &channel_guest(&host),
        &["channel", "pub", "svc", "11", "1024", "--seed", "7"],
    );
    let mut cpp = spawn(
        &peers.cpp,
        &["svc", "11", "7", scope.prefix()],
        "C++ subscriber",
    );
    assert_frames(&mut cpp, 11, 1024);
    assert_guest_sent(guest.finish(), 11, 1024);
    assert_empty(&scope);
}

/// Frames written in place by the C publisher are checked by the wasm guest subscriber and,
/// in a second run, by a native Rust subscriber in this process.
#[test]
fn c_publisher_to_guest_and_native_subscribers() {
    let Some(peers) = c_peers("c_publisher_to_guest_and_native_subscribers") else {
        return;
    };
    let scope = Scope::new("cpub");
    let host = host(&scope);
    let mut c = spawn(
        &peers.publisher,
        &["svc", "8", "1024", "9", scope.prefix()],
        "C publisher",
    );
    let guest = Running::start(
        &host,
        &channel_guest(&host),
        &[
            "channel",
            "sub",
            "svc",
            "8",
            "--seed",
            "9",
            "--open-ms",
            "30000",
        ],
    );
    for seq in 0..8u64 {
        assert_eq!(c.line(TIMEOUT), format!("sent {seq} {} 1", 1024u64 << seq));
    }
    assert_eq!(c.line(TIMEOUT), "done sent=8");
    let (outcome, stdout, stderr) = guest.finish();
    assert_eq!(outcome, RunOutcome::Exited(0), "{stdout:?}\n{stderr}");
    assert_eq!(stdout.first().map(String::as_str), Some("subscribed"));
    for seq in 0..8u64 {
        let got = format!("got seq={seq} len={} stamp=", 1024u64 << seq);
        assert!(stdout[seq as usize + 1].starts_with(&got), "{stdout:?}");
    }
    assert_eq!(stdout[9], "done received=8");
    assert!(c.wait(TIMEOUT).success(), "{}", c.stderr_at_exit());
    assert_empty(&scope);

    let mut c = spawn(
        &peers.publisher,
        &["svc2", "6", "4096", "11", scope.prefix()],
        "C publisher",
    );
    let subscriber = Subscriber::builder("svc2")
        .config(&scope.config())
        .timeout(Duration::from_secs(30))
        .open()
        .expect("open the C publisher's service");
    for seq in 0..6u64 {
        let sample = subscriber
            .receive_timeout(TIMEOUT)
            .expect("receive")
            .expect("a frame within the timeout");
        let checked = frame::check(sample.payload(), 11, 0).expect("every byte checks");
        assert_eq!((checked.seq, sample.len()), (seq, 4096 << seq));
    }
    drop(subscriber);
    for seq in 0..6u64 {
        assert_eq!(c.line(TIMEOUT), format!("sent {seq} {} 1", 4096u64 << seq));
    }
    assert_eq!(c.line(TIMEOUT), "done sent=6");
    assert!(c.wait(TIMEOUT).success(), "{}", c.stderr_at_exit());
    assert_empty(&scope);
}

/// A native publisher whose first frame has one byte flipped: the C subscriber names the
/// byte (as the Rust check words it) and exits with 3.
#[test]
fn c_subscriber_rejects_a_damaged_frame() {
    let Some(peers) = c_peers("c_subscriber_rejects_a_damaged_frame") else {
        return;
    };
    let scope = Scope::new("cbad");
    let publisher = Publisher::builder("svc")
        .config(&scope.config())
        .max_chunk_layout_hint(layout(1024))
        .create()
        .expect("a publisher");
    let mut c = spawn(
        &peers.subscriber,
        &["svc", "3", "7", scope.prefix()],
        "C subscriber",
    );
    assert_eq!(publisher.wait_for_subscribers(1, TIMEOUT), 1);
    let mut sample = publisher.loan(layout(1024)).expect("loan");
    assert!(frame::fill(sample.payload_mut(), 7, 0, now_ns(), 0));
    sample.payload_mut()[500] ^= 0xFF;
    let rust_says = frame::check(sample.payload(), 7, 0).expect_err("damaged");
    assert_eq!(sample.send(), Ok(1));
    assert_eq!(c.line(TIMEOUT), format!("mismatch {rust_says}"));
    assert!(
        rust_says.to_string().starts_with("frame 0: byte 500 is "),
        "{rust_says}"
    );
    assert_eq!(c.wait(TIMEOUT).code(), Some(3), "{}", c.stderr_at_exit());
    drop(publisher);
    assert_empty(&scope);
}

/// The C subscriber and the C++ peer under valgrind's memcheck, against a native publisher:
/// every frame checks, and valgrind reports no error and no definite or indirect leak.
#[test]
fn c_and_cpp_subscribers_under_valgrind() {
    let test = "c_and_cpp_subscribers_under_valgrind";
    if !have("valgrind") {
        assert!(
            !required("RESMEM_REQUIRE_VALGRIND"),
            "{test}: RESMEM_REQUIRE_VALGRIND=1 but valgrind is missing"
        );
        eprintln!(
            "SKIPPED {test}: valgrind is not installed; RESMEM_REQUIRE_VALGRIND=1 fails instead"
        );
        return;
    }
    let Some(peers) = c_peers(test) else {
        return;
    };
    for (binary, service) in [(&peers.subscriber, "svcc"), (&peers.cpp, "svccpp")] {
        let scope = Scope::new("cvg");
        let publisher = Publisher::builder(service)
            .config(&scope.config())
            .max_chunk_layout_hint(layout(1024))
            .create()
            .expect("a publisher");
        let mut peer = spawn_valgrind(binary, &[service, "6", "5", scope.prefix()], service);
        assert_eq!(publisher.wait_for_subscribers(1, TIMEOUT), 1);
        for seq in 0..6u64 {
            let mut sample = publisher.loan(layout(1024 << seq)).expect("loan");
            assert!(frame::fill(sample.payload_mut(), 5, seq, now_ns(), 0));
            assert_eq!(sample.send(), Ok(1));
        }
        assert_frames(&mut peer, 6, 1024);
        let report = peer.stderr_at_exit();
        assert!(
            report.contains("ERROR SUMMARY: 0 errors from 0 contexts"),
            "valgrind's report:\n{report}"
        );
        assert!(
            !report.contains("definitely lost: ") || report.contains("definitely lost: 0 bytes"),
            "valgrind's report:\n{report}"
        );
        drop(publisher);
        assert_empty(&scope);
    }
}
