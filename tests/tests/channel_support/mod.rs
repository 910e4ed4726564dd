//! Harness of the channel's cross-process tests: spawning `resmem-channel-peer` in a test's
//! namespace, reading its protocol lines, and observing the publisher from outside (chunks in
//! use as its memory's header counts them, a child's CPU time from `/proc`).

#![allow(dead_code)]

use std::alloc::Layout;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use resmem::{AccessMode, ChannelError, Publisher, PublisherBuilder, View};
use resmem_e2e::sample::fill_sample;

use super::support::{Peer, STEP, Scope};

/// The channel peer binary cargo built for these tests.
pub const CHANNEL_PEER: &str = env!("CARGO_BIN_EXE_resmem-channel-peer");

/// Service name of every test (each test has its own prefix).
pub const SVC: &str = "svc";

/// `resmem-channel-peer <mode> svc --prefix <scope's prefix> <args...>`.
pub fn spawn(scope: &Scope, mode: &str, args: &[&str], what: &str) -> Peer {
    let mut command = Command::new(CHANNEL_PEER);
    command
        .args([mode, SVC, "--prefix", scope.prefix()])
        .args(args);
    Peer::spawn(command, what)
}

/// A subscriber peer that has joined: returns it and its slot.
pub fn subscriber(scope: &Scope, mode: &str, args: &[&str], what: &str) -> (Peer, usize) {
    let mut peer = spawn(scope, mode, args, what);
    expect(&mut peer, "opening");
    let line = peer.line(STEP);
    let slot = line
        .strip_prefix("joined slot=")
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{what}: expected `joined slot=<k>`, got {line:?}"));
    (peer, slot)
}

/// The next line must be `want`.
pub fn expect(peer: &mut Peer, want: &str) {
    let line = peer.line(STEP);
    assert_eq!(line, want, "unexpected peer line");
}

/// The next line must start with `prefix`; returns the rest.
pub fn expect_prefix(peer: &mut Peer, prefix: &str) -> String {
    let line = peer.line(STEP);
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected a line starting {prefix:?}, got {line:?}"))
        .to_owned()
}

/// A `got <id> <len> <offset>` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Got {
    pub id: u64,
    pub len: usize,
    pub offset: u64,
}

pub fn parse_got(line: &str) -> Got {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["got", id, len, offset, ..] => Got {
            id: id.parse().expect("id"),
            len: len.parse().expect("len"),
            offset: offset.parse().expect("offset"),
        },
        _ => panic!("expected `got <id> <len> <offset>`, got {line:?}"),
    }
}

pub fn next_got(peer: &mut Peer) -> Got {
    parse_got(&peer.line(STEP))
}

/// Reads lines until one starts with `prefix`; returns the lines before it and its rest.
pub fn until_prefix(peer: &mut Peer, prefix: &str) -> (Vec<String>, String) {
    let mut before = Vec::new();
    loop {
        let line = peer.line(STEP);
        if let Some(rest) = line.strip_prefix(prefix) {
            return (before, rest.to_owned());
        }
        before.push(line);
    }
}

/// A `key=value` field of a line.
pub fn field<T: std::str::FromStr>(line: &str, key: &str) -> T {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Waits for the child's exit and checks its code.
pub fn exits_with(peer: &mut Peer, code: i32) {
    let status = peer.wait(STEP);
    assert_eq!(
        status.code(),
        Some(code),
        "exit status {status:?}; stderr:\n{}",
        peer.stderr()
    );
}

pub fn builder(scope: &Scope) -> PublisherBuilder {
    Publisher::builder(SVC).config(&scope.config())
}

pub fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 8).expect("layout")
}

/// Loans `len` bytes, fills them as sample `id`, sends: (offset, subscribers reached).
pub fn send(publisher: &Publisher, seed: u64, id: u64, len: usize) -> (u64, usize) {
    let mut sample = publisher.loan(layout(len)).expect("loan");
    fill_sample(sample.payload_mut(), seed, id);
    let offset = sample.offset().as_u64();
    (offset, sample.send().expect("send"))
}

/// Polls `publisher.number_of_subscribers()` (publisher activity) until it is `n`.
pub fn wait_subscribers(publisher: &Publisher, n: usize) {
    let deadline = Instant::now() + STEP;
    while publisher.number_of_subscribers() != n {
        assert!(
            Instant::now() < deadline,
            "{} subscribers, waited for {n}",
            publisher.number_of_subscribers()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` while another thread keeps the publisher active (a call every millisecond, as a
/// publisher that sends would): what it does for joiners and dead subscribers happens in calls.
pub fn with_activity<T>(publisher: &Publisher, f: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                publisher.number_of_subscribers();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        // Stops the thread also when `f` panics.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        f()
    })
}

/// A read-only view of the publisher's memory, to read its header's chunk counts.
pub fn memory_view(scope: &Scope) -> View {
    View::builder(SVC)
        .config(&scope.config())
        .open(AccessMode::Read)
        .expect("view of the service's memory")
}

/// Chunks allocated in the publisher's memory now, as its header counts them.
pub fn chunks_in_use(view: &View) -> u64 {
    view.segment_records()
        .iter()
        .map(|(_, record)| record.chunks_in_use)
        .sum()
}

/// utime + stime of process `pid` in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The command name (field 2) may contain spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Nanoseconds the main thread of `pid` ran (`/proc/<pid>/schedstat`, field 1): exact where
/// utime and stime count 10 ms ticks; `None` without schedstats.
pub fn main_thread_cpu_ns(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on every Linux ABI).
pub const USER_HZ: u64 = 100;

/// `Err(e)` of a channel call, as the peer names it on its `error` line.
pub fn error_line(e: ChannelError) -> String {
    format!("error {e:?}")
}

/// Median and maximum of `values` (sorted in place).
pub fn median_max(values: &mut [u64]) -> (u64, u64) {
    values.sort_unstable();
    (values[values.len() / 2], values[values.len() - 1])
}
