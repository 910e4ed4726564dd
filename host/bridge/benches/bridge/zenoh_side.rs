//! The anchor: two plain zenoh processes, a publisher and a subscriber per direction, as a
//! zenoh application would write them. Peer mode over TCP on loopback, explicit endpoints,
//! multicast scouting off; publishers use `CongestionControl::Block` and the default
//! reliability (reliable), as the bridge's exporters do; subscribers use the default FIFO
//! handler and read the payload contiguously (`ZBytes::to_bytes`), as the bridge's importers
//! do.

use std::time::Duration;

use zenoh::Wait;
use zenoh::handlers::FifoChannelHandler;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::sample::Sample;

use crate::harness::{self, Job, Peer};
use crate::workload::{self, Receive, Send, Stream};

pub const SIDE: &str = "zenoh";

/// Side A listens on the job's port, side B connects to it.
fn session(job: &Job, listen: bool) -> zenoh::Session {
    let mut config = zenoh::Config::default();
    let endpoints = format!("[\"{}\"]", job.endpoint());
    let set = |config: &mut zenoh::Config, key: &str, value: &str| {
        config
            .insert_json5(key, value)
            .unwrap_or_else(|e| panic!("zenoh config {key}: {e}"));
    };
    set(&mut config, "mode", "\"peer\"");
    if listen {
        set(&mut config, "listen/endpoints", &endpoints);
    } else {
        set(&mut config, "connect/endpoints", &endpoints);
    }
    set(&mut config, "scouting/multicast/enabled", "false");
    zenoh::open(config).wait().expect("zenoh session")
}

fn key(job: &Job, name: &str) -> String {
    format!("rmbench/{}/{name}", job.tag)
}

struct Ends {
    publisher: Option<Publisher<'static>>,
    subscriber: Option<Subscriber<FifoChannelHandler<Sample>>>,
    // Last: closed after its publisher and subscriber are undeclared.
    _session: zenoh::Session,
}

impl Ends {
    fn new(job: &Job, listen: bool, publish: Option<&str>, subscribe: Option<&str>) -> Ends {
        let session = session(job, listen);
        let publisher = publish.map(|name| {
            session
                .declare_publisher(key(job, name))
                .congestion_control(CongestionControl::Block)
                .wait()
                .expect("zenoh publisher")
        });
        let subscriber = subscribe.map(|name| {
            session
                .declare_subscriber(key(job, name))
                .wait()
                .expect("zenoh subscriber")
        });
        Ends {
            publisher,
            subscriber,
            _session: session,
        }
    }
}

impl Send for Ends {
    fn send(&self, seq: u64, size: usize) {
        let publisher = self.publisher.as_ref().expect("a sending end");
        publisher
            .put(harness::stamped(size, seq))
            .wait()
            .expect("zenoh put");
    }
}

impl Receive for Ends {
    fn receive(&self, timeout: Duration) -> Option<u64> {
        let subscriber = self.subscriber.as_ref().expect("a receiving end");
        let sample = subscriber.recv_timeout(timeout).expect("zenoh receive")?;
        Some(harness::check(&sample.payload().to_bytes()))
    }
}

pub fn pingpong(size: usize, iters: u64, samples: usize) -> Vec<f64> {
    let job = Job::new(SIDE, "echo", size);
    let ends = Ends::new(&job, true, Some("ping"), Some("pong"));
    let peer = Peer::spawn(&job);
    let result = workload::pingpong(&ends, &peer, size, iters, samples);
    peer.finish();
    result
}

pub fn stream(size: usize, count: u64, samples: usize) -> Stream {
    let job = Job::new(SIDE, "stream", size);
    let ends = Ends::new(&job, true, Some("data"), None);
    let peer = Peer::spawn(&job);
    let result = workload::stream(&ends, &peer, size, count, samples);
    peer.finish();
    result
}

/// Side B, in the child process.
pub fn child(job: &Job) {
    match job.workload.as_str() {
        "echo" => {
            let ends = Ends::new(job, false, Some("pong"), Some("ping"));
            harness::say("ready");
            workload::echo(&ends, job.size);
        }
        "stream" => {
            let ends = Ends::new(job, false, None, Some("data"));
            harness::say("ready");
            workload::count(&ends);
        }
        other => panic!("unknown zenoh workload {other}"),
    }
}
