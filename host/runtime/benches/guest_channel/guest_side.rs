//! The guest rows: a ping-pong whose measuring side is the native channel bench's resmem
//! process (`resmem_side::parent_ends`: native publisher `a2b`, spinning native subscriber of
//! `b2a`) and whose peer is either the bench guest's echo (`guest/bench`, `bench echo`) run by
//! a [`GuestHost`] in the peer process, or the same echo in native code (the calibration
//! row). Both sides stamp every message with the wall clock (CLOCK_REALTIME, one clock for
//! both processes), so each round trip splits into its two legs:
//!
//! - out (`a2b`, native → peer): from before the measuring side's loan to after the peer
//!   released the received sample (every byte read);
//! - back (`b2a`, peer → native): from there (before the peer's loan) to after the measuring
//!   side released the answer (every byte read), which is also the next stamp of the
//!   measuring side.
//!
//! The legs tile the round trip, so per sample the mean out leg plus the mean back leg is
//! exactly the round trip (`half` = round trip / 2 is the native bench's figure).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::OutputFile;

use crate::harness::{self, Job, Peer, QUIT};
use crate::{iceoryx2_side, resmem_side};

/// The peer side of a guest row.
pub const GUEST: &str = "guest";
/// The peer sides of the native calibration rows (resmem and iceoryx2).
pub const NATIVE: &str = "stamped";
pub const NATIVE_ICEORYX2: &str = "stamped-iceoryx2";

/// Compiled components are cached beside the bench's other build outputs: every peer process
/// loads the component the measuring process compiled.
pub fn engine_options() -> EngineOptions {
    EngineOptions {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resmem-cwasm")),
    }
}

/// A host whose guests live in the resmem side's namespace of this run, so that native ends
/// open the guests' services by the same names.
pub fn host(run: u32) -> GuestHost {
    let policy = Policy::builder()
        .namespace(&resmem_side::shm_prefix(run))
        .build();
    GuestHost::new(policy, engine_options()).expect("a guest host")
}

/// Wall-clock nanoseconds, the clock the guest's `wasi:clocks/wall-clock` reads.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One stamped ping-pong's figures, ns; `half`, `out`, `back`: one value per sample (means
/// over its round trips); `out_each`, `back_each`: every timed message's leg.
#[derive(Default)]
pub struct Legs {
    pub half: Vec<f64>,
    pub out: Vec<f64>,
    pub back: Vec<f64>,
    pub out_each: Vec<f64>,
    pub back_each: Vec<f64>,
}

impl Legs {
    pub fn extend(&mut self, other: Legs) {
        self.half.extend(other.half);
        self.out.extend(other.out);
        self.back.extend(other.back);
        self.out_each.extend(other.out_each);
        self.back_each.extend(other.back_each);
    }
}

/// A measuring side's ends (both channels' bench `Ends`).
pub trait Echo {
    fn send(&self, seq: u64);
    fn receive_seq(&self) -> u64;
}

impl Echo for resmem_side::Ends {
    fn send(&self, seq: u64) {
        resmem_side::Ends::send(self, seq)
    }
    fn receive_seq(&self) -> u64 {
        resmem_side::Ends::receive_seq(self)
    }
}

impl Echo for iceoryx2_side::Ends {
    fn send(&self, seq: u64) {
        iceoryx2_side::Ends::send(self, seq)
    }
    fn receive_seq(&self) -> u64 {
        iceoryx2_side::Ends::receive_seq(self)
    }
}

/// `samples` samples of `iters` round trips of `size`-byte messages with the peer of `job`
/// (after `min(iters, 1000)` untimed ones), stamped on both sides; the measuring side is
/// resmem's, but for the iceoryx2 calibration peer.
pub fn pingpong(job: &Job, size: usize, iters: u64, samples: usize) -> Legs {
    if job.side == NATIVE_ICEORYX2 {
        let node = iceoryx2_side::node(job.run);
        let ends = iceoryx2_side::Ends::new(&node, job, "a2b", size, "b2a");
        let peer = Peer::spawn(job);
        return stamped(&ends, peer, iters, samples);
    }
    let (ends, peer) = resmem_side::parent_ends(job, size);
    stamped(&ends, peer, iters, samples)
}

fn stamped(ends: &impl Echo, mut peer: Peer, iters: u64, samples: usize) -> Legs {
    let warm = iters.min(1000) as usize;
    let total = warm + iters as usize * samples;
    // ours[i]: before sending message i; ours[total]: after the last answer.
    let mut ours = Vec::with_capacity(total + 1);
    for seq in 0..total as u64 {
        ours.push(now_ns());
        ends.send(seq);
        assert_eq!(ends.receive_seq(), seq, "echo out of order");
    }
    ours.push(now_ns());
    ends.send(QUIT);
    assert_eq!(ends.receive_seq(), QUIT);
    let theirs = read_stamps(&mut peer);
    peer.finish();
    assert_eq!(
        theirs.len(),
        total + 1,
        "the peer stamped another number of messages"
    );
    // In integers first: an f64 holds today's wall-clock nanoseconds only to 256 ns.
    let leg = |to: u64, from: u64| to.wrapping_sub(from) as i64 as f64;
    let mut legs = Legs::default();
    let n = iters as usize;
    for sample in 0..samples {
        let start = warm + sample * n;
        let range = start..start + n;
        let outs: Vec<f64> = range.clone().map(|i| leg(theirs[i], ours[i])).collect();
        let backs: Vec<f64> = range.map(|i| leg(ours[i + 1], theirs[i])).collect();
        legs.half
            .push(leg(ours[start + n], ours[start]) / (2 * n) as f64);
        legs.out.push(outs.iter().sum::<f64>() / n as f64);
        legs.back.push(backs.iter().sum::<f64>() / n as f64);
        legs.out_each.extend(outs);
        legs.back_each.extend(backs);
    }
    legs
}

/// The peer's `stamps ...` lines up to `done`.
fn read_stamps(peer: &mut Peer) -> Vec<u64> {
    let mut stamps = Vec::new();
    loop {
        let line = peer.line();
        if line == "done" {
            return stamps;
        }
        let rest = line
            .strip_prefix("stamps ")
            .unwrap_or_else(|| panic!("the peer said {line:?}"));
        stamps.extend(rest.split(' ').map(|s| s.parse::<u64>().expect("a stamp")));
    }
}

fn print_stamps(stamps: &[u64]) {
    for line in stamps.chunks(256) {
        let words: Vec<String> = line.iter().map(u64::to_string).collect();
        harness::say(&format!("stamps {}", words.join(" ")));
    }
    harness::say("done");
}

/// Peers `stamped` and `stamped-iceoryx2`: the guest's echo in native code on either
/// channel (the calibration of the stamps, and the anchor of single messages).
pub fn native_child(job: &Job) {
    if job.side == NATIVE_ICEORYX2 {
        let node = iceoryx2_side::node(job.run);
        let ends = iceoryx2_side::Ends::new(&node, job, "b2a", job.size, "a2b");
        echo_stamped(&ends);
    } else {
        echo_stamped(&resmem_side::child_ends(job));
    }
}

fn echo_stamped(ends: &impl Echo) {
    harness::say("ready");
    let mut stamps = Vec::new();
    loop {
        let seq = ends.receive_seq();
        stamps.push(now_ns());
        ends.send(seq);
        if seq == QUIT {
            break;
        }
    }
    print_stamps(&stamps);
}

/// Peer `guest`, workload `echo-<copy|map>-<spin|poll>`: the bench guest's echo, its stdout
/// this process's (the guest prints `ready`, the stamps and `done` itself).
pub fn guest_child(job: &Job) {
    let mode = job
        .workload
        .strip_prefix("echo-")
        .and_then(|m| m.split_once('-'))
        .unwrap_or_else(|| panic!("guest workload {}", job.workload));
    let host = host(job.run);
    let component = host
        .load(resmem_guests::BENCH_WASM)
        .expect("load the bench guest");
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdout().inherit_stderr().args(&[
        "bench".to_owned(),
        "echo".to_owned(),
        resmem_side::name("a2b", &job.tag),
        resmem_side::name("b2a", &job.tag),
        job.size.to_string(),
        mode.0.to_owned(),
        mode.1.to_owned(),
    ]);
    let outcome = host
        .run_command(&component, &mut wasi)
        .expect("run the bench guest");
    assert_eq!(outcome, RunOutcome::Exited(0), "the echo guest failed");
}

/// The bench guest's one-guest workloads (`bench 1 <samples> <names...>`), run in this
/// process; name → median ns per operation.
pub fn local(host: &GuestHost, samples: usize, names: &[&str]) -> Vec<(String, f64)> {
    let component = host
        .load(resmem_guests::BENCH_WASM)
        .expect("load the bench guest");
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut wasi = WasiCtxBuilder::new();
    let mut args = vec!["bench".to_owned(), "1".to_owned(), samples.to_string()];
    args.extend(names.iter().map(|n| n.to_string()));
    wasi.stdout(OutputFile::new(File::from(OwnedFd::from(writer))))
        .inherit_stderr()
        .args(&args);
    let (outcome, text) = std::thread::scope(|scope| {
        let collector = scope.spawn(|| std::io::read_to_string(reader));
        let outcome = host.run_command(&component, &mut wasi);
        drop(wasi);
        let text = collector.join().expect("the output reader panicked");
        (outcome, text)
    });
    let outcome = outcome.expect("run the bench guest");
    assert_eq!(outcome, RunOutcome::Exited(0), "the bench guest failed");
    let text = text.expect("the bench guest's output");
    let mut results = Vec::new();
    for line in text.lines() {
        if line == "done" {
            continue;
        }
        let parsed = line
            .strip_prefix("bench ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(name, ns)| Some((name.to_owned(), ns.parse::<f64>().ok()?)));
        results.push(parsed.unwrap_or_else(|| panic!("unexpected guest output {line:?}")));
    }
    results
}
