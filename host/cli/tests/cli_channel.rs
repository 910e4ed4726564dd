//! Tests of `resmem publish`, `resmem subscribe` and the services in `ls`, `inspect` and `gc`:
//! real `resmem` processes talking through a service.
//!
//! Every test works in its own namespace ([`Ns`]), which fails the test if objects with its
//! prefix are left in `/dev/shm`; every child is killed after [`TIMEOUT`] and always reaped.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../src/pattern.rs"]
mod pattern;

const RESMEM: &str = env!("CARGO_BIN_EXE_resmem");
/// Longest any child may run, or any condition may take, before the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);
const SHM_DIR: &str = "/dev/shm";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique namespace (`rmch<pid>x<n><tag>_`); on drop, removes objects left with its prefix
/// and fails the test if there were any.
struct Ns {
    prefix: String,
}

impl Ns {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self {
            prefix: format!("rmch{}x{n}{tag}_", std::process::id()),
        }
    }

    fn objects(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)
            .expect("/dev/shm is readable")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }

    fn assert_clean(&self) {
        let left = self.objects();
        assert!(left.is_empty(), "leftover shared-memory objects: {left:?}");
    }

    /// A scratch file path for this namespace, removed by the test.
    fn file(&self, name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}{name}", self.prefix))
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

/// A `resmem` child: stdout read line by line on a thread, stderr collected. Dropping it
/// kills and reaps it.
struct Proc {
    what: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    done: bool,
}

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
        Self::spawn_with_stdin(args, None)
    }

    /// With `input` written to its stdin (then closed) on a thread.
    fn spawn_with_stdin(args: &[&str], input: Option<Vec<u8>>) -> Self {
        let mut child = Command::new(RESMEM)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning resmem {args:?}: {e}"));
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
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
            child,
            lines,
            stderr: Some(stderr),
            done: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no output in time", self.what),
            Err(RecvTimeoutError::Disconnected) => panic!("{}: stdout closed", self.what),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (so not reused).
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill {signal} {}", self.what);
    }

    /// Waits for the exit (killing the child after [`TIMEOUT`]); collects its output.
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            match self.child.try_wait().expect("waiting") {
                Some(status) => break status,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                None => panic!("{}: did not exit in time", self.what),
            }
        };
        self.done = true;
        let mut stdout = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
            stdout.push(line);
        }
        let stderr = self.stderr.take().expect("once").join().expect("stderr");
        Output {
            status,
            stdout: stdout.join("\n"),
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn resmem(args: &[&str]) -> Output {
    Proc::spawn(args).finish()
}

/// Polls `check` every 20 ms until it holds; fails the test after [`TIMEOUT`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The row of `name` in the services table of `ls`, split at whitespace.
fn service_row(ns: &Ns, name: &str) -> Option<Vec<String>> {
    let out = resmem(&["ls", "-n", &ns.prefix]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("SERVICE"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|row| row.first().is_some_and(|n| n == name))
}

/// A subscriber checking the pattern of `seed`, a publisher sending it: every byte arrives,
/// both say so, and nothing is left.
#[test]
fn publish_and_subscribe_verify_the_pattern() {
    let ns = Ns::new("verify");
    let n = &ns.prefix;
    let sub = Proc::spawn(&[
        "subscribe",
        "cam",
        "-n",
        n,
        "--verify",
        "7",
        "--count",
        "20",
        "--timeout",
        "30s",
    ]);
    let publisher = resmem(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "7",
        "--len",
        "100K",
        "--count",
        "20",
    ]);
    assert_eq!(publisher.code(), Some(0), "{publisher:?}");
    assert!(
        publisher
            .stderr
            .contains("published 20 samples, 2048000 bytes, to 'cam' (each to 1 subscriber)"),
        "{publisher:?}"
    );
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("received 20 samples, 2048000 bytes of 'cam' (20 verified against seed 7)"),
        "{out:?}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 20, "{out:?}");
    assert!(
        lines[19].starts_with("sample 19: 102400 bytes at "),
        "{out:?}"
    );
    assert!(lines[19].ends_with(", verified"), "{out:?}");
    ns.assert_clean();
}

/// `--verify` with the wrong seed stops at the first sample (exit 3) and says where; a file
/// that is the pattern but for one byte is caught at that byte.
#[test]
fn subscribe_verify_reports_the_first_mismatch() {
    let ns = Ns::new("mismatch");
    let n = &ns.prefix;
    let sub = Proc::spawn(&[
        "subscribe",
        "cam",
        "-n",
        n,
        "--verify",
        "8",
        "--timeout",
        "30s",
    ]);
    let publisher = resmem(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "7",
        "--len",
        "4096",
        "--count",
        "3",
    ]);
    assert_eq!(publisher.code(), Some(0), "{publisher:?}");
    let out = sub.finish();
    assert_eq!(out.code(), Some(3), "{out:?}");
    let expected = format!(
        "): byte 0 is {:#04x}, expected {:#04x} (pattern seed 8)",
        pattern::byte(7, 0),
        pattern::byte(8, 0)
    );
    assert!(
        out.stderr.contains("sample 0 (4096 bytes, offset "),
        "{out:?}"
    );
    assert!(out.stderr.contains(&expected), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // The pattern of 5 with byte 1000 flipped, sent twice: the first sample is caught there.
    let mut bytes: Vec<u8> = (0..5000).map(|i| pattern::byte(5, i)).collect();
    bytes[1000] ^= 0x40;
    let file = ns.file("flipped");
    std::fs::write(&file, &bytes).unwrap();
    let sub = Proc::spawn(&["subscribe", "cam", "-n", n, "--verify", "5"]);
    let file_arg = file.to_str().unwrap();
    let publisher = resmem(&[
        "publish", "cam", "-n", n, "--file", file_arg, "--count", "2",
    ]);
    assert_eq!(publisher.code(), Some(0), "{publisher:?}");
    let out = sub.finish();
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "): byte 1000 is {:#04x}, expected {:#04x}",
            bytes[1000],
            pattern::byte(5, 1000)
        )),
        "{out:?}"
    );
    std::fs::remove_file(&file).unwrap();
    ns.assert_clean();
}

/// `--file` round trips to `--output`: the whole file per sample (`--count 2`: twice), and
/// standard input cut into `--chunk` samples.
#[test]
fn file_round_trips_to_output() {
    let ns = Ns::new("file");
    let n = &ns.prefix;
    let bytes: Vec<u8> = (0..300_001u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let input = ns.file("in");
    let output = ns.file("out");
    std::fs::write(&input, &bytes).unwrap();
    let (input_arg, output_arg) = (input.to_str().unwrap(), output.to_str().unwrap());

    let sub = Proc::spawn(&["subscribe", "blob", "-n", n, "--output", output_arg]);
    let publisher = resmem(&[
        "publish", "blob", "-n", n, "--file", input_arg, "--count", "2",
    ]);
    assert_eq!(publisher.code(), Some(0), "{publisher:?}");
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains("received 2 samples, 600002 bytes"),
        "{out:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "no sample lines with --output: {out:?}"
    );
    let written = std::fs::read(&output).unwrap();
    assert_eq!(written.len(), 2 * bytes.len());
    assert!(written[..bytes.len()] == bytes[..] && written[bytes.len()..] == bytes[..]);

    let sub = Proc::spawn(&["subscribe", "blob", "-n", n, "--output", output_arg]);
    let publisher = Proc::spawn_with_stdin(
        &[
            "publish", "blob", "-n", n, "--file", "-", "--chunk", "64K", "-v",
        ],
        Some(bytes.clone()),
    )
    .finish();
    assert_eq!(publisher.code(), Some(0), "{publisher:?}");
    // 300001 = 4 * 65536 + 37857.
    assert!(
        publisher
            .stderr
            .contains("sample 4: 37857 bytes to 1 subscriber"),
        "{publisher:?}"
    );
    assert!(
        publisher
            .stderr
            .contains("published 5 samples, 300001 bytes"),
        "{publisher:?}"
    );
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        std::fs::read(&output).unwrap() == bytes,
        "chunked round trip"
    );
    std::fs::remove_file(&input).unwrap();
    std::fs::remove_file(&output).unwrap();
    ns.assert_clean();
}

/// `ls` and `inspect` show a live service: its publisher, its subscriber (pid, alive), and
/// the memory of the same name; SIGINT stops the publisher cleanly (exit 130) and the
/// subscriber ends with it.
#[test]
fn ls_and_inspect_show_a_live_service_with_its_subscriber() {
    let ns = Ns::new("inspect");
    let n = &ns.prefix;
    let publisher = Proc::spawn(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "1",
        "--len",
        "4K",
        "--count",
        "1000000",
        "--rate",
        "50",
    ]);
    let mut sub = Proc::spawn(&["subscribe", "cam", "-n", n, "--verify", "1"]);
    sub.line();
    let row = service_row(&ns, "cam").expect("ls lists the service");
    // SERVICE PUBLISHER STATE SUBSCRIBERS QUEUED BORROWED SENT
    assert_eq!(row[1], publisher.pid().to_string(), "{row:?}");
    assert_eq!(row[2], "alive", "{row:?}");
    assert_eq!(row[3], "1", "{row:?}");
    assert!(row[6].parse::<u64>().unwrap() >= 1, "{row:?}");

    let out = resmem(&["inspect", "cam", "-n", n]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let text = &out.stdout;
    assert!(text.contains(&format!("service     {n}cam")), "{text}");
    assert!(
        text.contains(&format!("publisher   pid {} (alive)", publisher.pid())),
        "{text}"
    );
    assert!(text.contains("overflow    Block"), "{text}");
    assert!(
        text.contains("limits      8 subscribers, queue 16"),
        "{text}"
    );
    let slot: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("SLOT"))
        .nth(1)
        .expect("a slot row")
        .split_whitespace()
        .collect();
    assert_eq!(slot[..3], ["0", &sub.pid().to_string(), "alive"], "{text}");
    // The service's memory, as for any memory.
    assert!(text.contains(&format!("memory      {n}cam")), "{text}");
    assert!(
        text.contains(&format!("owner       pid {} (alive)", publisher.pid())),
        "{text}"
    );

    // gc leaves a live service alone.
    let objects = ns.objects();
    let out = resmem(&["gc", "-n", n]);
    assert!(out.stdout.contains("removed 0 stale services"), "{out:?}");
    assert_eq!(ns.objects(), objects);

    publisher.signal(libc::SIGINT);
    let out = publisher.finish();
    assert_eq!(out.code(), Some(130), "{out:?}");
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr.contains("the publisher is gone"), "{out:?}");
    ns.assert_clean();
}

/// A SIGKILLed publisher leaves its service behind: `ls` and `inspect` call it stale, its
/// subscriber ends short of `--count` (exit 4), and `gc` removes every object of it while a
/// live service in the same namespace stays.
#[test]
fn killed_publisher_is_stale_and_gc_removes_it() {
    let ns = Ns::new("gc");
    let n = &ns.prefix;
    let long = [
        "--pattern",
        "2",
        "--len",
        "8K",
        "--count",
        "1000000",
        "--rate",
        "50",
    ];
    let doomed = Proc::spawn(&[&["publish", "doomed", "-n", n][..], &long[..]].concat());
    let live = Proc::spawn(
        &[
            &["publish", "live", "-n", n, "--wait-subscribers", "0"][..],
            &long[..],
        ]
        .concat(),
    );
    let mut sub = Proc::spawn(&["subscribe", "doomed", "-n", n, "--count", "1000000"]);
    sub.line();
    eventually("the live service", || service_row(&ns, "live").is_some());

    let pid = doomed.pid().to_string();
    doomed.signal(libc::SIGKILL);
    let out = doomed.finish();
    assert!(out.code().is_none(), "killed: {out:?}");
    let out = sub.finish();
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(
        out.stderr.contains("the publisher is gone after"),
        "{out:?}"
    );

    let row = service_row(&ns, "doomed").expect("ls lists the stale service");
    assert_eq!(row[1..3], [pid.as_str(), "stale"], "{row:?}");
    assert_eq!(service_row(&ns, "live").expect("live")[2], "alive");
    let out = resmem(&["inspect", "doomed", "-n", n]);
    assert!(
        out.stdout
            .contains(&format!("publisher   pid {pid} (gone: stale")),
        "{out:?}"
    );
    let live_objects: Vec<String> = ns
        .objects()
        .into_iter()
        .filter(|o| o.starts_with(&format!("{n}live")))
        .collect();
    assert!(
        ns.objects()
            .iter()
            .any(|o| o.starts_with(&format!("{n}doomed")))
    );

    let out = resmem(&["gc", "-n", n, "--dry-run"]);
    assert!(
        out.stdout.contains(&format!(
            "would remove service 'doomed' (publisher pid {pid}, gone)"
        )),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("would remove 0 stale memories"),
        "{out:?}"
    );
    let out = resmem(&["gc", "-n", n]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("removed 1 stale service from"),
        "{out:?}"
    );
    assert_eq!(ns.objects(), live_objects, "only the live service is left");
    assert!(service_row(&ns, "doomed").is_none());

    live.signal(libc::SIGTERM);
    let out = live.finish();
    assert_eq!(out.code(), Some(130), "{out:?}");
    ns.assert_clean();
}

/// `--follow` goes on with the next publisher: one that ended normally, then one that was
/// killed, whose stale service the third publisher takes over.
#[test]
fn follow_picks_up_new_publishers() {
    let ns = Ns::new("follow");
    let n = &ns.prefix;
    let mut sub = Proc::spawn(&[
        "subscribe",
        "cam",
        "-n",
        n,
        "--follow",
        "--verify",
        "3",
        "--count",
        "6",
        "--timeout",
        "30s",
    ]);
    let first = resmem(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "3",
        "--len",
        "100",
        "--count",
        "3",
    ]);
    assert_eq!(first.code(), Some(0), "{first:?}");
    for i in 0..3 {
        assert!(sub.line().starts_with(&format!("sample {i}: 100 bytes")));
    }
    // The second sends one sample now and the next in 10 s: it is killed in between.
    let second = Proc::spawn(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "3",
        "--len",
        "5000",
        "--count",
        "2",
        "--rate",
        "0.1",
    ]);
    assert!(sub.line().starts_with("sample 3: 5000 bytes"));
    second.signal(libc::SIGKILL);
    let _ = second.finish();
    let third = resmem(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "3",
        "--len",
        "70000",
        "--count",
        "2",
    ]);
    assert_eq!(third.code(), Some(0), "{third:?}");
    assert!(
        third.stderr.contains("taking over stale service 'cam'"),
        "{third:?}"
    );
    let out = sub.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains(
            "received 6 samples, 145300 bytes of 'cam' from 3 publishers (6 verified against seed 3)"
        ),
        "{out:?}"
    );
    assert!(out.stderr.contains("waiting for a new one"), "{out:?}");
    ns.assert_clean();
}

/// Timeouts exit with 124: no publisher for a subscriber, no subscriber for a publisher.
#[test]
fn timeouts_exit_124_and_leave_nothing() {
    let ns = Ns::new("timeout");
    let n = &ns.prefix;
    let started = Instant::now();
    let out = resmem(&["subscribe", "cam", "-n", n, "--timeout", "300ms"]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(out.stderr.contains("no publisher within 300ms"), "{out:?}");
    let out = resmem(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "1",
        "--len",
        "64",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(out.code(), Some(124), "{out:?}");
    assert!(
        out.stderr
            .contains("0 of 1 subscriber within 300ms; nothing sent"),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // A publisher with nobody to wait for sends and exits at once.
    let out = resmem(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "1",
        "--len",
        "64",
        "--wait-subscribers",
        "0",
    ]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stderr.contains("1 reached no subscriber"), "{out:?}");
    ns.assert_clean();
}

/// `rm` refuses a service whose publisher lives (also with --force) and removes a stale one
/// with every object of it.
#[test]
fn rm_removes_only_a_stale_service() {
    let ns = Ns::new("rm");
    let n = &ns.prefix;
    let publisher = Proc::spawn(&[
        "publish",
        "cam",
        "-n",
        n,
        "--pattern",
        "1",
        "--len",
        "64",
        "--wait-subscribers",
        "0",
        "--count",
        "1000000",
        "--rate",
        "20",
    ]);
    eventually("the service", || service_row(&ns, "cam").is_some());
    let objects = ns.objects();
    for force in [false, true] {
        let args = ["rm", "cam", "-n", n, "--force"];
        let out = resmem(&args[..if force { 5 } else { 4 }]);
        assert_eq!(out.code(), Some(1), "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "service 'cam' has a live publisher (pid {})",
                publisher.pid()
            )),
            "{out:?}"
        );
        assert_eq!(ns.objects(), objects, "rm touched a live service");
    }
    publisher.signal(libc::SIGKILL);
    let _ = publisher.finish();
    let out = resmem(&["rm", "cam", "-n", n]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("removed 'cam' from namespace '{n}'"));
    ns.assert_clean();
}
