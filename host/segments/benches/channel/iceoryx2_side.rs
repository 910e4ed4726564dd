//! The anchor: crates.io `iceoryx2` 0.10 publish-subscribe (`ipc::Service`, payload `[u8]`).
//!
//! Every direction is one publish-subscribe service (`a2b`: measuring process to peer, `b2a`:
//! back). Blocking waits use what iceoryx2 offers for a subscriber that must not spin: an event
//! service beside each publish-subscribe service; the sender notifies after `send`, the receiver
//! sleeps in `Listener::timed_wait` until a notification arrives and then receives.
//!
//! Settings mirror resmem's defaults: subscriber buffer 16, safe overflow (drop the oldest),
//! history 0, and a publisher sized for the payload (`initial_max_slice_len`). Every run uses
//! its own prefix and root directory (`rmchi<pid>_`, `/tmp/rmchi<pid>/`), removed at the end.
//!
//! The guest-channel bench (host/runtime/benches/guest_channel) compiles this file in too and
//! runs its stamped echo on [`Ends`].

use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::service::port_factory::{event, publish_subscribe};

use crate::harness::{
    self, END, Job, PEER_TIMEOUT, Peer, QUIT, Stream, check, ns_per, per_call, spin, stamp_uninit,
};

type Svc = ipc::Service;
type Pub = Publisher<Svc, [u8], ()>;
type Sub = Subscriber<Svc, [u8], ()>;
type Received = Sample<Svc, [u8], ()>;

pub const SIDE: &str = "iceoryx2";
const BUFFER: usize = 16;

/// Prefix of every shared-memory object this run creates.
pub fn shm_prefix(run: u32) -> String {
    format!("rmchi{run}_")
}

/// Root directory of this run's iceoryx2 files (service and node records, sockets).
pub fn root_dir(run: u32) -> String {
    format!("/tmp/rmchi{run}/")
}

pub fn node(run: u32) -> Node<Svc> {
    let mut config = Config::default();
    config.global.prefix =
        FileName::new(shm_prefix(run).as_bytes()).expect("valid iceoryx2 prefix");
    config
        .global
        .set_root_path(&Path::new(root_dir(run).as_bytes()).expect("valid iceoryx2 root"));
    NodeBuilder::new()
        .config(&config)
        .create::<Svc>()
        .expect("iceoryx2 node")
}

fn name(direction: &str, tag: &str) -> ServiceName {
    ServiceName::new(&format!("{direction}_{tag}")).expect("valid service name")
}

fn pubsub(node: &Node<Svc>, name: &ServiceName) -> publish_subscribe::PortFactory<Svc, [u8], ()> {
    node.service_builder(name)
        .publish_subscribe::<[u8]>()
        .subscriber_max_buffer_size(BUFFER)
        .history_size(0)
        .enable_safe_overflow(true)
        .open_or_create()
        .expect("iceoryx2 publish-subscribe service")
}

fn events(node: &Node<Svc>, name: &ServiceName) -> event::PortFactory<Svc> {
    node.service_builder(name)
        .event()
        .open_or_create()
        .expect("iceoryx2 event service")
}

/// One process's ends: publisher of `outgoing`, subscriber of `incoming`, and with blocking
/// waits the notifier and listener of the matching event services.
pub struct Ends {
    publisher: Pub,
    subscriber: Sub,
    notifier: Option<Notifier<Svc>>,
    listener: Option<Listener<Svc>>,
    out_size: usize,
}

impl Ends {
    pub fn new(
        node: &Node<Svc>,
        job: &Job,
        outgoing: &str,
        out_size: usize,
        incoming: &str,
    ) -> Self {
        let out = pubsub(node, &name(outgoing, &job.tag));
        let inc = pubsub(node, &name(incoming, &job.tag));
        let publisher = out
            .publisher_builder()
            .initial_max_slice_len(out_size)
            .create()
            .expect("iceoryx2 publisher");
        let subscriber = inc
            .subscriber_builder()
            .create()
            .expect("iceoryx2 subscriber");
        let (notifier, listener) = if job.blocking {
            let out_ev = events(node, &name(&format!("{outgoing}ev"), &job.tag));
            let inc_ev = events(node, &name(&format!("{incoming}ev"), &job.tag));
            (
                Some(out_ev.notifier_builder().create().expect("notifier")),
                Some(inc_ev.listener_builder().create().expect("listener")),
            )
        } else {
            (None, None)
        };
        Ends {
            publisher,
            subscriber,
            notifier,
            listener,
            out_size,
        }
    }

    pub fn send(&self, seq: u64) {
        let mut sample = self
            .publisher
            .loan_slice_uninit(self.out_size)
            .expect("iceoryx2 loan");
        stamp_uninit(sample.payload_mut(), seq);
        // SAFETY: `stamp_uninit` wrote every element of the payload.
        let sample = unsafe { sample.assume_init() };
        sample.send().expect("iceoryx2 send");
        if let Some(notifier) = &self.notifier {
            notifier.notify().expect("iceoryx2 notify");
        }
    }

    fn receive(&self) -> Received {
        let Some(listener) = &self.listener else {
            return spin(|| self.subscriber.receive().expect("iceoryx2 receive"));
        };
        let start = Instant::now();
        loop {
            if let Some(sample) = self.subscriber.receive().expect("iceoryx2 receive") {
                return sample;
            }
            assert!(start.elapsed() < PEER_TIMEOUT, "the peer stopped sending");
            listener
                .timed_wait(|_| {}, PEER_TIMEOUT)
                .expect("iceoryx2 timed_wait");
        }
    }

    /// Receives one message, reads every byte and releases it; returns its sequence number.
    pub fn receive_seq(&self) -> u64 {
        check(self.receive().payload())
    }
}

/// Round trips of `size`-byte messages with a peer that echoes them; one-way ns per sample.
pub fn pingpong(blocking: bool, size: usize, iters: u64, samples: usize) -> Vec<f64> {
    let job = Job::new(SIDE, "echo", blocking, size, 0);
    let node = node(job.run);
    let ends = Ends::new(&node, &job, "a2b", size, "b2a");
    let peer = Peer::spawn(&job);
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
    let node = node(job.run);
    let ends = Ends::new(&node, &job, "a2b", 8, "b2a");
    let peer = Peer::spawn(&job);
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
    let node = node(job.run);
    let service = pubsub(&node, &name("local", &job.tag));
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(64)
        .create()
        .expect("iceoryx2 publisher");
    let subscriber = service.subscriber_builder().create().expect("subscriber");
    let mut seq = 0u64;
    per_call(samples, iters, || {
        let mut sample = publisher.loan_slice_uninit(64).expect("iceoryx2 loan");
        stamp_uninit(sample.payload_mut(), seq);
        // SAFETY: `stamp_uninit` wrote every element of the payload.
        let sample = unsafe { sample.assume_init() };
        sample.send().expect("iceoryx2 send");
        let received = subscriber.receive().expect("receive").expect("a sample");
        assert_eq!(check(received.payload()), seq);
        seq += 1;
    })
}

/// Loans that each need a larger data segment than the publisher has (PowerOfTwo growth from
/// 1 KiB slices, loans of 2 KiB up to 256 KiB); ns per loan, one value per loan.
pub fn growing_loan(samples: usize) -> Vec<f64> {
    let job = Job::new(SIDE, "grow", false, 0, 0);
    let node = node(job.run);
    let prefix = shm_prefix(job.run);
    let mut result = Vec::new();
    for sample in 0..samples {
        let service = pubsub(&node, &name(&format!("grow{sample}"), &job.tag));
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(harness::GROW_INITIAL)
            .allocation_strategy(AllocationStrategy::PowerOfTwo)
            .create()
            .expect("iceoryx2 publisher");
        let _subscriber = service.subscriber_builder().create().expect("subscriber");
        for size in harness::grow_sizes() {
            let before = harness::shm_names(&prefix);
            let start = Instant::now();
            let loan = publisher.loan_slice_uninit(size).expect("growing loan");
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
    _node: Node<Svc>,
    _publisher: Pub,
    _notifier: Notifier<Svc>,
}

pub fn idle_start() -> Idle {
    let job = Job::new(SIDE, "idle", true, 64, 0);
    let node = node(job.run);
    let publisher = pubsub(&node, &name("idle", &job.tag))
        .publisher_builder()
        .initial_max_slice_len(64)
        .create()
        .expect("iceoryx2 publisher");
    let notifier = events(&node, &name("idleev", &job.tag))
        .notifier_builder()
        .create()
        .expect("notifier");
    let peer = Peer::spawn(&job);
    Idle {
        peer,
        _node: node,
        _publisher: publisher,
        _notifier: notifier,
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
    let node = node(job.run);
    match job.workload.as_str() {
        "echo" => {
            let ends = Ends::new(&node, job, "b2a", job.size, "a2b");
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
            let ends = Ends::new(&node, job, "b2a", job.size, "a2b");
            harness::say("ready");
            while ends.receive_seq() != QUIT {
                for seq in 0..job.count - 1 {
                    ends.send(seq);
                }
                ends.send(END);
            }
        }
        "idle" => {
            let subscriber = pubsub(&node, &name("idle", &job.tag))
                .subscriber_builder()
                .create()
                .expect("subscriber");
            let listener = events(&node, &name("idleev", &job.tag))
                .listener_builder()
                .create()
                .expect("listener");
            harness::say("ready");
            harness::idle_windows(|timeout: Duration| {
                listener
                    .timed_wait(|_| {}, timeout)
                    .expect("iceoryx2 timed_wait");
                assert!(subscriber.receive().expect("receive").is_none());
            });
        }
        other => panic!("unknown iceoryx2 workload {other}"),
    }
}
