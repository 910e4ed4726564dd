//! The two workloads, written once over a sending and a receiving end, so that raw zenoh and
//! the bridge run exactly the same protocol.
//!
//! - `echo`: side A sends a message, side B sends it back, A waits for it: one-way latency is
//!   the round trip / 2.
//! - `stream`: side A sends `count` messages as fast as its end lets it (raw zenoh: `put` with
//!   `CongestionControl::Block`; the bridge: a native publisher under `Overflow::Block`), then
//!   `END` until B answers. B reads every byte of every message and times from the first
//!   message of the round to the last: (received − 1) / that time is the rate, and received /
//!   sent the fraction delivered. B answers on its stdout, which the bridge does not carry.

use std::time::{Duration, Instant};

use crate::harness::{END, PEER_TIMEOUT, PROBE, Peer, QUIT, say};

/// Bytes of the control messages (probes, `END`, `QUIT`).
pub const CONTROL: usize = 64;

/// Where a side's messages go: `seq` stamped into `size` bytes.
pub trait Send {
    fn send(&self, seq: u64, size: usize);
}

/// Where a side's messages come from.
pub trait Receive {
    /// The next message's sequence number, every byte read and checked; `None` after `timeout`.
    fn receive(&self, timeout: Duration) -> Option<u64>;
}

/// One streaming workload's rounds.
pub struct Stream {
    /// Messages received per second.
    pub rates: Vec<f64>,
    /// Fraction of the messages sent that B received.
    pub delivered: Vec<f64>,
}

/// Side A of `echo`: `samples` timings of `iters` round trips each; one-way ns.
pub fn pingpong(
    ends: &(impl Send + Receive),
    peer: &Peer,
    size: usize,
    iters: u64,
    samples: usize,
) -> Vec<f64> {
    // Probes until one comes back: both paths are up. Then the ones still on the way.
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < PEER_TIMEOUT,
            "the echo path never came up"
        );
        ends.send(PROBE, size);
        if ends.receive(Duration::from_millis(20)).is_some() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    while ends.receive(Duration::from_millis(50)).is_some() {}
    let mut seq = 0u64;
    let mut round_trips = |n: u64| {
        for _ in 0..n {
            ends.send(seq, size);
            let back = ends.receive(PEER_TIMEOUT).expect("no echo in time");
            assert_eq!(back, seq, "echo out of order");
            seq += 1;
        }
    };
    round_trips(iters.min(1000)); // warm-up
    let result = (0..samples)
        .map(|_| {
            let start = Instant::now();
            round_trips(iters);
            start.elapsed().as_nanos() as f64 / (2 * iters) as f64
        })
        .collect();
    quit(ends, peer);
    result
}

/// Side B of `echo`: sends back whatever arrives until `QUIT`.
pub fn echo(ends: &(impl Send + Receive), size: usize) {
    loop {
        let seq = ends.receive(PEER_TIMEOUT).expect("side A went quiet");
        if seq == QUIT {
            break;
        }
        ends.send(seq, size);
    }
    say("bye");
}

/// Side A of `stream`: a warm-up round, then `samples` timed rounds of `count` messages.
pub fn stream(end: &impl Send, peer: &Peer, size: usize, count: u64, samples: usize) -> Stream {
    let linked = peer.send_until_line(Duration::from_millis(20), || end.send(PROBE, CONTROL));
    assert_eq!(linked, "linked");
    let round = || {
        for seq in 0..count {
            end.send(seq, size);
        }
        let line = peer.send_until_line(Duration::from_millis(1), || end.send(END, CONTROL));
        let fields: Vec<f64> = line
            .strip_prefix("round ")
            .unwrap_or_else(|| panic!("stream peer said {line:?}"))
            .split(' ')
            .map(|f| f.parse().expect("round figures"))
            .collect();
        let (received, ns) = (fields[0], fields[1]);
        assert!(received >= 2.0, "only {received} of {count} arrived");
        ((received - 1.0) / (ns / 1e9), received / count as f64)
    };
    round(); // warm-up
    let (rates, delivered) = (0..samples).map(|_| round()).unzip();
    quit(end, peer);
    Stream { rates, delivered }
}

/// Side B of `stream`: counts and times each round's messages, answers at its first `END`.
pub fn count(end: &impl Receive) {
    let mut linked = false;
    let (mut received, mut first, mut last) = (0u64, Instant::now(), Instant::now());
    loop {
        let seq = end.receive(PEER_TIMEOUT).expect("side A went quiet");
        let now = Instant::now();
        match seq {
            QUIT => break,
            PROBE => {
                if !linked {
                    say("linked");
                    linked = true;
                }
            }
            END => {
                if received > 0 {
                    say(&format!("round {received} {}", (last - first).as_nanos()));
                    received = 0;
                }
            }
            _ => {
                if received == 0 {
                    first = now;
                }
                last = now;
                received += 1;
            }
        }
    }
    say("bye");
}

/// `QUIT` until the peer says goodbye (a bridge may drop a message; zenoh does not).
fn quit(end: &impl Send, peer: &Peer) {
    let bye = peer.send_until_line(Duration::from_millis(10), || end.send(QUIT, CONTROL));
    assert_eq!(bye, "bye");
}
