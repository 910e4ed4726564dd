//! The Python package (`host/python`, `import resmem`) as a native peer: its pytest suite, and
//! a pipeline across three languages and runtimes — the `channel` wasm guest publishes frames,
//! a Python process (`examples/python/filter.py`) reads each one in place as a numpy array and
//! writes its transform straight into a loan of a second service, and a native Rust subscriber
//! process checks every byte of what arrives.
//!
//! The package is built into its own virtualenv by `host/python/build.sh` (pinned maturin,
//! pytest, numpy). Where those cannot be installed the tests print `SKIPPED` and pass, unless
//! `RESMEM_REQUIRE_PYTHON=1` (set by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use resmem_e2e::guest_frame as frame;

use super::*;

const CHANNEL_PEER: &str = env!("CARGO_BIN_EXE_resmem-channel-peer");
/// A cold build of the extension (release) on a loaded machine, and the whole pytest suite.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn build_script() -> PathBuf {
    repo().join("host/python/build.sh")
}

/// The virtualenv's python with `resmem` installed, built once per test binary; `None` (the
/// test skips) when the tools cannot be installed here and Python is not required.
fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let mut command = Command::new("bash");
        command.arg(build_script()).arg("python");
        let out = support::run(command, "host/python/build.sh python", BUILD_TIMEOUT);
        match out.code() {
            Some(0) => {
                let path = out
                    .stdout
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                assert!(
                    Path::new(&path).is_file(),
                    "build.sh python printed {path:?}"
                );
                Ok(PathBuf::from(path))
            }
            Some(2) => Err(out.stderr.clone()),
            _ => panic!("building the Python package failed: {out:?}"),
        }
    });
    match found {
        Ok(path) => Some(path),
        Err(why) if std::env::var_os("RESMEM_REQUIRE_PYTHON").is_some_and(|v| v == "1") => {
            panic!("RESMEM_REQUIRE_PYTHON=1 but the Python tools are unavailable: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the Python package's tools could not be installed: {why}");
            None
        }
    }
}

/// `host/python/tests` (chunks, views, numpy round trips, every exception, buffer lifetimes,
/// threads) against the built extension.
#[test]
fn pytest_suite_passes() {
    if python().is_none() {
        return;
    }
    let mut command = Command::new("bash");
    command
        .arg(build_script())
        .args(["test", "-p", "no:cacheprovider"]);
    let out = support::run(command, "pytest", BUILD_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let summary = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary: {out:?}"));
    let passed: u32 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary {summary:?}"));
    assert!(passed >= 30, "only {passed} tests ran: {summary}");
    assert!(
        !summary.contains("failed") && !summary.contains("error") && !summary.contains("skipped"),
        "{summary}"
    );
}

/// A CPython 3.9 that runs: `python3.9` on the PATH, else pyenv's.
fn python39() -> Option<PathBuf> {
    let runs = |p: &Path| {
        Command::new(p)
            .args(["-c", "import sys; assert sys.version_info[:2] == (3, 9)"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    let mut candidates = vec![PathBuf::from("python3.9")];
    if let Some(versions) = pyenv.map(|p| p.join("versions"))
        && let Ok(entries) = std::fs::read_dir(versions)
    {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("3.9."))
            .map(|e| e.path().join("bin/python3.9"))
            .collect();
        found.sort();
        candidates.extend(found);
    }
    candidates.into_iter().find(|p| runs(p))
}

/// The same suite on the oldest supported interpreter, where the extension is built without
/// abi3 (the limited API has the buffer protocol only from 3.11 on). Runs where a CPython 3.9
/// exists (this project's machines have pyenv's).
#[test]
fn pytest_suite_passes_on_python_3_9() {
    if python().is_none() {
        return;
    }
    let Some(python39) = python39() else {
        eprintln!("SKIPPED: no CPython 3.9 on this machine");
        return;
    };
    let mut command = Command::new("bash");
    command
        .arg(build_script())
        .args(["test", "-p", "no:cacheprovider"])
        .env("RESMEM_PYTHON", &python39);
    let out = support::run(command, "pytest on 3.9", BUILD_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let summary = out.stdout.lines().rev().find(|l| l.contains(" passed"));
    let summary = summary.unwrap_or_else(|| panic!("no pytest summary: {out:?}"));
    assert!(
        !summary.contains("failed") && !summary.contains("skipped"),
        "{summary}"
    );
}

/// Sum of frame `seq`'s payload bytes (after the header), as the guest writes it.
fn payload_sum(seed: u64, seq: u64, len: usize) -> u64 {
    let mut buf = vec![0u8; len];
    assert!(frame::fill(&mut buf, seed, seq, 0, 0));
    buf[frame::HEADER..].iter().map(|&b| u64::from(b)).sum()
}

/// Guest → Python (numpy, in place) → native Rust subscriber, frames of 1 KiB to 1 MiB, so
/// both memories grow while the pipeline runs; every byte checked at the end, and the
/// Python stage's own sums checked against what the guest wrote.
#[test]
fn guest_to_python_to_native_subscriber_every_byte() {
    let Some(python) = python() else { return };
    let scope = Scope::new("gpyn");
    let host = host(&scope);
    let (count, seed, key) = (11u64, 7u64, 0xA7u8);
    let guest = Running::start(
        &host,
        &load(&host, resmem_guests::CHANNEL_WASM),
        &["channel", "pub", "raw", "11", "1024", "--seed", "7"],
    );
    let mut native = Command::new(CHANNEL_PEER);
    native
        .args(["frames", "cooked", "--prefix", scope.prefix()])
        .args([
            "--count",
            "11",
            "--seed",
            "7",
            "--key",
            &key.to_string(),
            "--open-timeout-ms",
            "60000",
        ]);
    let mut native = Peer::spawn(native, "native subscriber of cooked");
    let mut filter = Command::new(python);
    filter
        .arg(repo().join("examples/python/filter.py"))
        .args(["raw", "cooked", "11", &key.to_string(), "--namespace"])
        .arg(scope.prefix());
    let mut filter = Peer::spawn(filter, "python filter");

    assert_eq!(filter.line(STEP), "created");
    assert_eq!(filter.line(STEP), "joined");
    for seq in 0..count {
        let len = 1024usize << seq;
        assert_eq!(
            filter.line(STEP),
            format!("frame {seq} {len} {}", payload_sum(seed, seq, len))
        );
    }
    assert_eq!(filter.line(STEP), "done count=11");
    assert!(filter.wait(STEP).success(), "{}", filter.stderr());

    super::channel::assert_native_frames(&mut native, count, 1024);

    let end = guest.finish();
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.last().map(String::as_str), Some("done sent=11"));
    assert_empty(&scope);
}
