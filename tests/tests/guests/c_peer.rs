//! The C API (crate `resmem-c`) from C and C++ processes: `examples/c/` compiled (`-Wall -Wextra -Werror`)
//! against the static `libresmem_c.a` that this test builds with cargo, run against the real
//! `channel` wasm guest (in this process, through resmem-host) and native Rust publishers
//! and subscribers, every byte of every frame checked on the receiving side; the C
//! subscriber also under valgrind.
//!
//! Without a C compiler the tests are skipped (with a message) unless `RESMEM_REQUIRE_C=1`;
//! without valgrind the valgrind test is skipped unless `RESMEM_REQUIRE_VALGRIND=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use resmem::{Publisher, Subscriber};
use resmem_e2e::guest_frame as frame;
use resmem_e2e::sample::now_ns;

use super::*;

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

/// The guest publisher's report: `sent seq=<i> len=<first << i> delivered=1 ...` per frame,
/// then `done sent=<count>`, and exit 0.
fn assert_guest_sent(end: Finished, count: u64, first: u64) {
    let Finished {
        outcome,
        stdout,
        stderr,
    } = end;
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

/// Frames of `1024 << seq` bytes from the wasm guest publisher reach the peer `pick` chooses,
/// a separate process that checks every byte, while the publisher's memory adds segments.
fn guest_publisher_to(test: &str, tag: &str, pick: fn(&CPeers) -> &Path, what: &str) {
    let Some(peers) = c_peers(test) else {
        return;
    };
    let scope = Scope::new(tag);
    let host = host(&scope);
    let guest = Running::start(
        &host,
        &load(&host, resmem_guests::CHANNEL_WASM),
        &["channel", "pub", "svc", "11", "1024", "--seed", "7"],
    );
    let mut peer = spawn(pick(&peers), &["svc", "11", "7", scope.prefix()], what);
    assert_frames(&mut peer, 11, 1024);
    assert_guest_sent(guest.finish(), 11, 1024);
    assert_empty(&scope);
}

#[test]
fn guest_publisher_to_c_subscriber_across_growth() {
    guest_publisher_to(
        "guest_publisher_to_c_subscriber_across_growth",
        "cpc",
        |p| &p.subscriber,
        "C subscriber",
    );
}

/// The same with the C++ peer (RAII over the C API).
#[test]
fn guest_publisher_to_cpp_subscriber_across_growth() {
    guest_publisher_to(
        "guest_publisher_to_cpp_subscriber_across_growth",
        "cpp",
        |p| &p.cpp,
        "C++ subscriber",
    );
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
        &load(&host, resmem_guests::CHANNEL_WASM),
        &"channel sub svc 8 --seed 9 --open-ms 30000"
            .split(' ')
            .collect::<Vec<_>>(),
    );
    for seq in 0..8u64 {
        assert_eq!(c.line(TIMEOUT), format!("sent {seq} {} 1", 1024u64 << seq));
    }
    assert_eq!(c.line(TIMEOUT), "done sent=8");
    let Finished {
        outcome,
        stdout,
        stderr,
    } = guest.finish();
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
