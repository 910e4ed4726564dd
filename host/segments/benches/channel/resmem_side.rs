//! The same workloads on `resmem::channel` (POSIX shm backend, default pool allocator).
//!
//! Every direction is one channel service (`a2b`, `b2a`). Blocking waits are
//! `Subscriber::receive_timeout` with no spin: the publisher wakes a sleeping subscriber itself,
//! so no second service is needed. Settings are the channel defaults (buffer 16, drop the
//! oldest) with `max_chunk_layout_hint` sized for the payload. Every run uses its own prefix
//! (`rmchr<pid>_`).
//!
//! The guest-channel bench (host/runtime/benches/guest_channel) compiles this file in too: its
//! guest rows measure from [`parent_ends`] against a guest that echoes in this format.

use std::alloc::Layout;
use std::time::{Duration, Instant};

use resmem::{AllocationStrategy, Config, Publisher, Sample, Subscriber};

use crate::harness::{
    self, END, Job, PEER_TIMEOUT, Peer, QUIT, Stream, check, ns_per, per_call, spin, stamp,
};

pub const SIDE: &str = "resmem";
const ALIGN: usize = 8;

/// Prefix of every shared-memory object this run creates.
pub fn shm_prefix(run: u32) -> String {
    format!("rmchr{run}_")
}

pub fn config(run: u32) -> Config {
    Config::default().prefix(&shm_prefix(run))
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("valid payload layout")
}

pub fn name(direction: &str, tag: &str) -> String {
    format!("{direction}_{tag}")
}

fn publisher(config: &Config, name: &str, size: usize) -> Publisher {
    Publisher::builder(name)
        .config(config)
        .max_chunk_layout_hint(layout(size))
        .create()
        .expect("resmem publisher")
}

fn subscriber(config: &Config, name: &str) -> Subscriber {
    spinning_subscriber(config, name, 0)
}

fn spinning_subscriber(config: &Config, name: &str, spin_us: u64) -> Subscriber {
    Subscriber::builder(name)
        .config(config)
        .timeout(PEER_TIMEOUT)
        .spin(Duration::from_micros(spin_us))
        .open()
        .expect("resmem subscriber")
}

/// One process's ends: publisher of the outgoing service, subscriber of the incoming one.
pub struct Ends {
    publisher: Publisher,
    subscriber: Subscriber,
    blocking: bool,
    out_size: usize,
}

impl Ends {
    pub fn send(&self, seq: u64) {
        let mut sample = self
            .publisher
            .loan(layout(self.out_size))
            .expect("resmem loan");
        stamp(sample.payload_mut(), seq);
        sample.send().expect("resmem send");
    }

    fn receive(&self) -> Sample<'_> {
        if !self.blocking {
            return spin(|| self.subscriber.receive().expect("resmem receive"));
        }
        let start = Instant::now();
        loop {
            if let Some(sample) = self
                .subscriber
                .receive_timeout(PEER_TIMEOUT)
                .expect("resmem receive_timeout")
            {
                return sample;
            }
            assert!(start.elapsed() < PEER_TIMEOUT, "the peer stopped sending");
        }
    }

    /// Receives one message, reads every byte and releases it; returns its sequence number.
    pub fn receive_seq(&self) -> u64 {
        check(self.receive().payload())
    }
}

/// The measuring process's ends: its publisher exists before the peer starts, its subscriber
/// opens the peer's publisher once the peer is ready.
pub fn parent_ends(job: &Job, out_size: usize) -> (Ends, Peer) {
    let config = config(job.run);
    let publisher = publisher(&config, &name("a2b", &job.tag), out_size);
    let peer = Peer::spawn(job);
    let subscriber = spinning_subscriber(&config, &name("b2a", &job.tag), job.spin_us);
    let start = Instant::now();
    while publisher.number_of_subscribers() == 0 {
        assert!(start.elapsed() < PEER_TIMEOUT, "the peer never subscribed");
        std::thread::yield_now();
    }
    let ends = Ends {
        publisher,
        subscriber,
        blocking: job.blocking,
        out_size,
    };
    (ends, peer)
}

pub fn child_ends(job: &Job) -> Ends {
    let config = config(job.run);
    let publisher = publisher(&config, &name("b2a", &job.tag), job.size);
    let subscriber = spinning_subscriber(&config, &name("a2b", &job.tag), job.spin_us);
    Ends {
        publisher,
        subscriber,
        blocking: job.blocking,
        out_size: job.size,
    }
}

/// Round trips of `size`-byte messages with a peer that echoes them; one-way ns per sample.
/// `spin_us`: both sides' blocking receives spin that long before they sleep.
pub fn pingpong(blocking: bool, spin_us: u64, size: usize, iters: u64, samples: usize) -> Vec<f64> {
    let job = Job::new(SIDE, "echo", blocking, size, 0).with_spin(spin_us);
    let (ends, peer) = parent_ends(&job, size);
    let mut seq = 0u64;
    let mut round_trips = |n: u64| {
        for _ in 0..n {
            ends.send(seq);
            assert_eq!(ends.receive_seq(), seq, "echo out of order");
            seq += 1;
        }
    };
    round_trips(iters.min(1000));
    let result = (0..samples)
        .map(|_| {
            let start = Instant::now();
            round_trips(iters);
            ns_per(start.elapsed(), 2 * iters)
        })
        .collect();
    ends.send(QUIT);
    assert_eq!(ends.receive_seq(), QUIT);
    peer.finish();
    result
}

/// The peer streams `count` samples of `size` bytes per round as fast as it can; this process
/// receives, reads and releases them. Samples received per second and the fraction of the
/// sent samples that arrived (the rest were dropped, oldest first), one value per round.
pub fn stream(size: usize, count: u64, samples: usize) -> Stream {
    let job = Job::new(SIDE, "stream", false, size, count);
    let (ends, peer) = parent_ends(&job, 8);
    let mut round = |r: u64| {
        let start = Instant::now();
        ends.send(r);
        let mut received = 0u64;
        while ends.receive_seq() != END {
            received += 1;
        }
        let elapsed = start.elapsed().as_secs_f64();
        (
            (received + 1) as f64 / elapsed,
            (received + 1) as f64 / count as f64,
        )
    };
    round(0); // warm-up
    let (rates, delivered) = (1..=samples as u64).map(&mut round).unzip();
    let result = Stream { rates, delivered };
    ends.send(QUIT);
    peer.finish();
    result
}

/// Loan 64 B, write it, send, receive, read and release, all in one thread; ns per cycle.
pub fn in_process(samples: usize, iters: u64) -> Vec<f64> {
    let job = Job::new(SIDE, "local", false, 64, 0);
    let config = config(job.run);
    let name = name("local", &job.tag);
    let publisher = publisher(&config, &name, 64);
    let subscriber = subscriber(&config, &name);
    let mut seq = 0u64;
    per_call(samples, iters, || {
        let mut sample = publisher.loan(layout(64)).expect("resmem loan");
        stamp(sample.payload_mut(), seq);
        sample.send().expect("resmem send");
        let received = subscriber.receive().expect("receive").expect("a sample");
        assert_eq!(check(received.payload()), seq);
        seq += 1;
    })
}

/// Loans that each need a larger segment than the publisher's memory has (PowerOfTwo growth
/// from a 1 KiB hint, loans of 2 KiB up to 256 KiB); ns per loan, one value per loan.
pub fn growing_loan(samples: usize) -> Vec<f64> {
    let job = Job::new(SIDE, "grow", false, 0, 0);
    let config = config(job.run);
    let prefix = shm_prefix(job.run);
    let mut result = Vec::new();
    for sample in 0..samples {
        let name = name(&format!("grow{sample}"), &job.tag);
        let publisher = Publisher::builder(&name)
            .config(&config)
            .max_chunk_layout_hint(layout(harness::GROW_INITIAL))
            .allocation_strategy(AllocationStrategy::PowerOfTwo)
            .create()
            .expect("resmem publisher");
        let _subscriber = subscriber(&config, &name);
        for size in harness::grow_sizes() {
            let before = harness::shm_names(&prefix);
            let start = Instant::now();
            let loan = publisher.loan(layout(size)).expect("growing loan");
            let elapsed = start.elapsed();
            drop(std::hint::black_box(loan));
            harness::assert_grew(&before, &prefix, size);
            result.push(ns_per(elapsed, 1));
        }
    }
    result
}

/// A subscriber in the peer waits for samples that never come; CPU % of each window.
pub struct Idle {
    peer: Peer,
    _publisher: Publisher,
}

/// `spin_us`: the idle subscriber spins that long at the start of each wait.
pub fn idle_start(spin_us: u64) -> Idle {
    let job = Job::new(SIDE, "idle", true, 64, 0).with_spin(spin_us);
    let publisher = publisher(&config(job.run), &name("idle", &job.tag), 64);
    let peer = Peer::spawn(&job);
    Idle {
        peer,
        _publisher: publisher,
    }
}

impl Idle {
    pub fn finish(mut self) -> Vec<f64> {
        let result = harness::read_idle(&mut self.peer);
        self.peer.finish();
        result
    }
}

/// The peer process's part of every two-process workload.
pub fn child(job: &Job) {
    match job.workload.as_str() {
        "echo" => {
            let ends = child_ends(job);
            harness::say("ready");
            loop {
                let seq = ends.receive_seq();
                ends.send(seq);
                if seq == QUIT {
                    break;
                }
            }
        }
        "stream" => {
            let ends = child_ends(job);
            harness::say("ready");
            while ends.receive_seq() != QUIT {
                for seq in 0..job.count - 1 {
                    ends.send(seq);
                }
                ends.send(END);
            }
        }
        "idle" => {
            let subscriber =
                spinning_subscriber(&config(job.run), &name("idle", &job.tag), job.spin_us);
            harness::say("ready");
            harness::idle_windows(|timeout: Duration| {
                let sample = subscriber
                    .receive_timeout(timeout)
                    .expect("resmem receive_timeout");
                assert!(sample.is_none(), "nothing was sent");
            });
        }
        other => panic!("unknown resmem workload {other}"),
    }
}
