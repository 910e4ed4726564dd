//! Through the bridge: a native resmem publisher in namespace A → the bridge of side A
//! (export) → the bridge of side B (import) → a native resmem subscriber in namespace B, and
//! back the other way for the echo. Each side is one process holding its bridge
//! (`resmem_bridge::Bridge`, in-process, the library the `resmem-bridge` binary runs) and its
//! native ends, as the zenoh anchor's processes hold their sessions. The bridges use the same
//! zenoh settings: peer mode, TCP on loopback, explicit endpoints, multicast off.
//!
//! Native publishers block when a subscriber's queue is full (`Overflow::Block`), so the
//! stream's sender waits for the exporter as the zenoh publisher waits for its link; native
//! subscribers wait without spinning, as zenoh's FIFO receiver does.

use std::alloc::Layout;
use std::time::Duration;

use resmem::{Config, Overflow, Publisher, Subscriber};
use resmem_bridge::{Bridge, Direction, ServiceStats};

use crate::harness::{self, Job, PEER_TIMEOUT, Peer};
use crate::workload::{self, Receive, Send, Stream};

pub const SIDE: &str = "bridge";

/// Prefix of every shared-memory object this run creates.
pub fn shm_prefix(run: u32) -> String {
    format!("rmbb{run}_")
}

/// Namespace of side `side` ("A" or "B").
fn config(job: &Job, side: &str) -> Config {
    Config::default().prefix(&format!("{}{}{side}_", shm_prefix(job.run), job.tag))
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("payload layout")
}

struct Ends {
    publisher: Option<Publisher>,
    subscriber: Option<Subscriber>,
    // Last: stopped after the native ends are gone.
    bridge: Bridge,
}

impl Ends {
    /// Side A listens, side B connects; `publish` is a native publisher (exported by this
    /// side's bridge), `subscribe` a native subscriber (of a service this side's bridge
    /// imports).
    fn new(job: &Job, side: &str, publish: Option<&str>, subscribe: Option<&str>) -> Ends {
        let config = config(job, side);
        let publisher = publish.map(|name| {
            Publisher::builder(name)
                .config(&config)
                .overflow(Overflow::Block)
                // Large samples: a short queue keeps each one in cache between the fill and
                // the exporter's copy into zenoh's batches (16 x 1 MiB does not fit).
                .buffer_size(if job.size > 64 << 10 { 4 } else { 16 })
                .max_chunk_layout_hint(layout(job.size.max(workload::CONTROL)))
                .create()
                .expect("native publisher")
        });
        let mut builder = Bridge::builder()
            .config(&config)
            .key_prefix(&format!("rmbench/{}", job.tag))
            .multicast(false)
            .overflow(Overflow::Block)
            .buffer_size(if job.size > 64 << 10 { 16 } else { 256 })
            .on_log(|_| {});
        builder = if side == "A" {
            builder.listen(&job.endpoint())
        } else {
            builder.connect(&job.endpoint())
        };
        if let Some(name) = publish {
            builder = builder.export(name);
        }
        if let Some(name) = subscribe {
            builder = builder.import(name);
        }
        let bridge = builder.start().expect("bridge");
        if let Some(publisher) = &publisher {
            // The exporter is subscribed.
            assert_eq!(publisher.wait_for_subscribers(1, PEER_TIMEOUT), 1);
        }
        let subscriber = subscribe.map(|name| {
            Subscriber::builder(name)
                .config(&config)
                .timeout(PEER_TIMEOUT)
                .open()
                .expect("native subscriber")
        });
        Ends {
            publisher,
            subscriber,
            bridge,
        }
    }

    fn export_stats(&self) -> Option<ServiceStats> {
        self.bridge
            .stats()
            .into_iter()
            .find(|s| s.direction == Direction::Export)
    }
}

impl Send for Ends {
    fn send(&self, seq: u64, size: usize) {
        let publisher = self.publisher.as_ref().expect("a sending end");
        let mut sample = publisher.loan(layout(size)).expect("native loan");
        harness::stamp(sample.payload_mut(), seq);
        sample.send().expect("native send");
    }
}

impl Receive for Ends {
    fn receive(&self, timeout: Duration) -> Option<u64> {
        let subscriber = self.subscriber.as_ref().expect("a receiving end");
        let sample = subscriber
            .receive_timeout(timeout)
            .expect("native receive")?;
        Some(harness::check(sample.payload()))
    }
}

pub fn pingpong(size: usize, iters: u64, samples: usize) -> Vec<f64> {
    let job = Job::new(SIDE, "echo", size);
    let ends = Ends::new(&job, "A", Some("ping"), Some("pong"));
    let peer = Peer::spawn(&job);
    let result = workload::pingpong(&ends, &peer, size, iters, samples);
    peer.finish();
    result
}

/// The stream's rounds and side A's exporter counters at the end (what it dropped).
pub fn stream(size: usize, count: u64, samples: usize) -> (Stream, Option<ServiceStats>) {
    let job = Job::new(SIDE, "stream", size);
    let ends = Ends::new(&job, "A", Some("data"), None);
    let peer = Peer::spawn(&job);
    let result = workload::stream(&ends, &peer, size, count, samples);
    peer.finish();
    (result, ends.export_stats())
}

/// Side B, in the child process.
pub fn child(job: &Job) {
    match job.workload.as_str() {
        "echo" => {
            let ends = Ends::new(job, "B", Some("pong"), Some("ping"));
            harness::say("ready");
            workload::echo(&ends, job.size);
        }
        "stream" => {
            let ends = Ends::new(job, "B", None, Some("data"));
            harness::say("ready");
            workload::count(&ends);
        }
        other => panic!("unknown bridge workload {other}"),
    }
}
