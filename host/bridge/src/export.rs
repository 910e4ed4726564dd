//! An exported service: a local subscriber like any other, whose samples go out on the key
//! `<prefix>/<service>`, copied once into the zenoh message and released at once.
//!
//! Two paths, in order. A small message (one zenoh batch) while nothing waits for the sender
//! is put at once by the receiving thread, with `CongestionControl::Drop`: zenoh waits at most
//! about a millisecond for room, and a put that had to wait turns the direct path off for a
//! while. Everything else goes to a sender thread that puts reliably and waits for the link
//! (a 64 MiB message takes its time), fed through a queue bounded in messages and bytes. The
//! local publisher is never held up: without a remote importer, or with the queue full, a
//! sample is dropped and counted; what zenoh drops shows as a gap at the importer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use resmem::{ChannelError, Config, Subscriber};
use zenoh::Wait;
use zenoh::matching::MatchingListener;
use zenoh::pubsub::Publisher as ZPublisher;

use crate::bridge::Shared;
use crate::stats::Counters;
use crate::wire::Header;

/// How long one wait for a local publisher (or a sample) lasts before the stop flag is read.
const SLICE: Duration = Duration::from_millis(100);
/// Messages, and bytes, waiting for the sender at most.
const QUEUE: usize = 64;
const QUEUE_BYTES: u64 = 256 << 20;
/// Largest message put directly: zenoh fragments larger ones, and a fragmented message under
/// `CongestionControl::Drop` may wait up to 50 ms for room.
const DIRECT_MAX: usize = 48 << 10;
/// A direct put that took longer met a full zenoh queue: the sender takes over for `COOL_OFF`.
const SLOW_PUT: Duration = Duration::from_micros(300);
const COOL_OFF: Duration = Duration::from_millis(50);

/// A message for the sender and its payload length.
struct Outgoing {
    message: Vec<u8>,
    len: u64,
}

/// What waits for the sender, in messages and bytes: read before a sample is copied, so that
/// a sample the queue has no room for is dropped without the copy.
#[derive(Default)]
struct Backlog {
    messages: AtomicUsize,
    bytes: AtomicU64,
}

impl Backlog {
    /// Nothing queued and nothing being put: a direct put now keeps the order.
    fn is_idle(&self) -> bool {
        self.messages.load(Ordering::Acquire) == 0
    }

    fn has_room(&self, bytes: u64) -> bool {
        self.messages.load(Ordering::Relaxed) < QUEUE
            && self.bytes.load(Ordering::Relaxed) + bytes <= QUEUE_BYTES
    }

    fn add(&self, bytes: u64) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// After the message was put (or given up): `Release` orders the put before a direct
    /// one that sees the backlog idle.
    fn remove(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.messages.fetch_sub(1, Ordering::Release);
    }
}

pub(crate) struct Export {
    pub(crate) service: String,
    pub(crate) counters: Arc<Counters>,
}

/// The zenoh publishers of one exported key.
pub(crate) struct Keyed<'a> {
    /// Reliable, `CongestionControl::Block`: the sender thread's.
    pub(crate) waiting: ZPublisher<'a>,
    /// Reliable, `CongestionControl::Drop`: the direct path's.
    pub(crate) direct: ZPublisher<'a>,
}

/// The receiving thread's side of the sender: its queue and the direct path's state.
struct Outbox<'a> {
    tx: SyncSender<Outgoing>,
    queued: &'a Backlog,
    direct: &'a ZPublisher<'a>,
    /// The direct path is off until then.
    cool_off_until: Option<Instant>,
}

impl Export {
    pub(crate) fn run(&self, shared: &Shared, keyed: &Keyed<'_>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let queued = Backlog::default();
        let matching = Matching::new(&keyed.waiting);
        std::thread::scope(|scope| {
            scope.spawn(|| self.send(&keyed.waiting, &matching, rx, &queued));
            let mut outbox = Outbox {
                tx,
                queued: &queued,
                direct: &keyed.direct,
                cool_off_until: None,
            };
            self.receive(shared, &matching, &mut outbox);
            drop(outbox);
        });
    }

    /// The sender: puts each message, or counts it dropped when no importer listens.
    fn send(
        &self,
        publisher: &ZPublisher<'_>,
        matching: &Matching<'_>,
        rx: Receiver<Outgoing>,
        queued: &Backlog,
    ) {
        for out in rx {
            let size = out.message.len() as u64;
            self.count(
                matching.now() && publisher.put(out.message).wait().is_ok(),
                out.len,
            );
            queued.remove(size);
        }
    }

    fn receive(&self, shared: &Shared, matching: &Matching<'_>, outbox: &mut Outbox<'_>) {
        let mut seq = 0u64;
        let mut announced = false;
        while !shared.stop.load(Ordering::Relaxed) {
            let subscriber = match open(&self.service, &shared.config) {
                Ok(subscriber) => subscriber,
                Err(ChannelError::DoesNotExist | ChannelError::PublisherGone) => continue,
                Err(e) => {
                    shared.log(format!("export {}: cannot subscribe: {e}", self.service));
                    std::thread::sleep(SLICE);
                    continue;
                }
            };
            if self.is_own_import(shared) {
                // This bridge's importer publishes it: re-exporting would loop.
                if !announced {
                    shared.log(format!(
                        "export {}: not exported, this bridge imports it",
                        self.service
                    ));
                    announced = true;
                }
                std::thread::sleep(SLICE);
                continue;
            }
            shared.log(format!(
                "export {}: subscribed (slot {})",
                self.service,
                subscriber.slot()
            ));
            self.forward(shared, matching, &subscriber, &mut seq, outbox);
        }
    }

    fn is_own_import(&self, shared: &Shared) -> bool {
        shared.imports.contains(&self.service)
            && resmem::channel::service_info(&self.service, &shared.config)
                .is_ok_and(|info| info.publisher_pid == std::process::id())
    }

    /// Takes samples until the local publisher goes (or the bridge stops).
    fn forward(
        &self,
        shared: &Shared,
        matching: &Matching<'_>,
        subscriber: &Subscriber,
        seq: &mut u64,
        outbox: &mut Outbox<'_>,
    ) {
        while !shared.stop.load(Ordering::Relaxed) {
            let sample = match subscriber.receive_timeout(SLICE) {
                Ok(Some(sample)) => sample,
                Ok(None) => continue,
                Err(ChannelError::PublisherGone) => {
                    shared.log(format!(
                        "export {}: the local publisher is gone",
                        self.service
                    ));
                    return;
                }
                Err(e) => {
                    shared.log(format!("export {}: receive: {e}", self.service));
                    return;
                }
            };
            let header = Header {
                seq: *seq,
                len: sample.len() as u64,
                origin: shared.zid,
            };
            *seq += 1;
            let size = crate::wire::HEADER + sample.len();
            if !matching.now() {
                Counters::add(&self.counters.dropped, 1);
                continue;
            }
            if size <= DIRECT_MAX && outbox.direct_open() {
                let message = header.encode(sample.payload());
                drop(sample);
                self.put_direct(outbox, message, header.len);
                continue;
            }
            if !outbox.queued.has_room(size as u64) {
                Counters::add(&self.counters.dropped, 1);
                continue;
            }
            // Copied: the local chunk goes back to its publisher before zenoh sends anything.
            let message = header.encode(sample.payload());
            drop(sample);
            outbox.queued.add(size as u64);
            let out = Outgoing {
                message,
                len: header.len,
            };
            if let Err(TrySendError::Full(out) | TrySendError::Disconnected(out)) =
                outbox.tx.try_send(out)
            {
                outbox.queued.remove(out.message.len() as u64);
                Counters::add(&self.counters.dropped, 1);
            }
        }
    }

    /// Counts one put of a `len`-byte sample: forwarded, or dropped.
    fn count(&self, put: bool, len: u64) {
        if put {
            Counters::add(&self.counters.samples, 1);
            Counters::add(&self.counters.bytes, len);
        } else {
            Counters::add(&self.counters.dropped, 1);
        }
    }

    /// Puts `message` from the receiving thread; a put that waited for room closes the direct
    /// path for a while, so that a congested link never slows the local subscriber.
    fn put_direct(&self, outbox: &mut Outbox<'_>, message: Vec<u8>, len: u64) {
        let started = Instant::now();
        self.count(outbox.direct.put(message).wait().is_ok(), len);
        let took = started.elapsed();
        if took > SLOW_PUT {
            outbox.cool_off_until = Some(started + took + COOL_OFF);
        }
    }
}

impl Outbox<'_> {
    /// Whether a message may be put directly now: the sender has nothing (order) and no
    /// direct put met congestion lately.
    fn direct_open(&mut self) -> bool {
        if let Some(until) = self.cool_off_until {
            if Instant::now() < until {
                return false;
            }
            self.cool_off_until = None;
        }
        self.queued.is_idle()
    }
}

/// Whether a remote importer listens on the key, asked for every sample: a matching listener
/// keeps the answer in a flag (asking zenoh's `matching_status` walks its routing tables, twice
/// per sample); without a listener, zenoh is asked.
struct Matching<'a> {
    publisher: &'a ZPublisher<'a>,
    flag: Arc<AtomicBool>,
    listener: Option<MatchingListener<()>>,
}

impl<'a> Matching<'a> {
    fn new(publisher: &'a ZPublisher<'a>) -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        // Called with `true` at once when something matches already, then at every change.
        let listener = publisher
            .matching_listener()
            .callback({
                let flag = Arc::clone(&flag);
                move |status| flag.store(status.matching(), Ordering::Relaxed)
            })
            .wait()
            .ok();
        Self {
            publisher,
            flag,
            listener,
        }
    }

    fn now(&self) -> bool {
        if self.listener.is_some() {
            return self.flag.load(Ordering::Relaxed);
        }
        self.publisher
            .matching_status()
            .wait()
            .is_ok_and(|status| status.matching())
    }
}

fn open(service: &str, config: &Config) -> Result<Subscriber, ChannelError> {
    Subscriber::builder(service)
        .config(config)
        .timeout(SLICE)
        .open()
}
