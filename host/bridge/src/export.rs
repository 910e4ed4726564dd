//! An exported service: a local subscriber like any other, whose samples go out on the key
//! `<prefix>/<service>`, reliably and in order, put by the thread that received them (no
//! thread hop, no queue). The message is the header followed by the sample's bytes in place
//! ([`held`]): zenoh copies them into its batches and the sample goes back to its publisher
//! when zenoh lets go of the message.
//!
//! Puts wait for the link (`CongestionControl::Block`), so a lossless local publisher
//! (`Overflow::Block`) is paced by the link as a zenoh publisher is, and nothing is lost while
//! the link moves. It is never held up for longer than `max_hold`: a watchdog that sees one
//! put last that long (a stalled link; zenoh waits up to its block timeout before it closes
//! the link) takes over receiving and drops, counted, what arrives until the put returns.
//! Without a remote importer a sample is dropped at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use resmem::{ChannelError, Config, Subscriber};
use zenoh::Wait;
use zenoh::bytes::ZBytes;
use zenoh::matching::MatchingListener;
use zenoh::pubsub::Publisher as ZPublisher;

use crate::bridge::Shared;
use crate::held;
use crate::stats::Counters;
use crate::wire::Header;

/// How long one wait for a local publisher (or a sample) lasts before the stop flag is read.
const SLICE: Duration = Duration::from_millis(100);
/// Longest wait of the watchdog's receives while it sheds (the relay wants the subscriber
/// back as soon as its put returns).
const SHED_SLICE: Duration = Duration::from_millis(5);

pub(crate) struct Export {
    pub(crate) service: String,
    pub(crate) counters: Arc<Counters>,
    /// Longest time one put may keep the local subscriber from receiving.
    pub(crate) max_hold: Duration,
}

/// What the relay (the receiving and putting thread) and its watchdog share while one local
/// publisher lives.
struct Relay {
    subscriber: Arc<Subscriber>,
    /// Held by whoever receives: the relay, or the watchdog while a put is stuck.
    receiving: Mutex<()>,
    /// Incremented before and after every put: odd while one is under way.
    puts: AtomicU64,
    /// Sequence number of the next sample taken (dropped ones too: the importer sees gaps).
    seq: AtomicU64,
    /// The relay has returned: the watchdog ends.
    done: AtomicBool,
}

/// Sets its flag when dropped.
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Relay {
    fn receiving(&self) -> std::sync::MutexGuard<'_, ()> {
        // Guards no data: a panic while it was held leaves nothing half-done.
        self.receiving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Export {
    pub(crate) fn run(&self, shared: &Shared, publisher: &ZPublisher<'_>) {
        let matching = Matching::new(publisher);
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
            let relay = Relay {
                subscriber: Arc::new(subscriber),
                receiving: Mutex::new(()),
                puts: AtomicU64::new(0),
                seq: AtomicU64::new(seq),
                done: AtomicBool::new(false),
            };
            std::thread::scope(|scope| {
                scope.spawn(|| self.watch(shared, &relay));
                // Set also if `forward` panics, so that the scope's join does not wait for the
                // bridge to stop.
                let _done = Done(&relay.done);
                self.forward(shared, &matching, &relay, publisher);
            });
            seq = relay.seq.load(Ordering::Relaxed);
        }
    }

    fn is_own_import(&self, shared: &Shared) -> bool {
        shared.imports.contains(&self.service)
            && resmem::channel::service_info(&self.service, &shared.config)
                .is_ok_and(|info| info.publisher_pid == std::process::id())
    }

    /// Takes samples and puts them until the local publisher goes (or the bridge stops).
    fn forward(
        &self,
        shared: &Shared,
        matching: &Matching<'_>,
        relay: &Relay,
        publisher: &ZPublisher<'_>,
    ) {
        // A sample held by zenoh during its put keeps one borrow: the watchdog needs another
        // to shed. With a limit of one, the bytes are copied and the sample released first.
        let in_place = relay.subscriber.max_borrowed() >= 2;
        while !shared.stop.load(Ordering::Relaxed) {
            let receiving = relay.receiving();
            let sample = match relay.subscriber.receive_timeout(SLICE) {
                Ok(Some(sample)) => sample,
                Ok(None) => continue,
                // Zenoh still holds samples of earlier puts (a local zenoh subscriber keeps
                // their messages): wait for one to come back.
                Err(ChannelError::BorrowLimitReached) => {
                    drop(receiving);
                    std::thread::sleep(SHED_SLICE);
                    continue;
                }
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
            let seq = relay.seq.fetch_add(1, Ordering::Relaxed);
            drop(receiving);
            if !matching.now() {
                Counters::add(&self.counters.dropped, 1);
                continue;
            }
            let header = Header {
                seq,
                len: sample.len() as u64,
                origin: shared.zid,
            };
            let message = if in_place {
                let mut message = ZBytes::writer();
                message.append(ZBytes::from(header.to_bytes()));
                if !sample.is_empty() {
                    message.append(ZBytes::from(held::bytes(
                        Arc::clone(&relay.subscriber),
                        sample.detach(),
                    )));
                }
                message.finish()
            } else {
                let message = ZBytes::from(header.encode(sample.payload()));
                // Released before the put: the watchdog may need the one borrow allowed.
                drop(sample);
                message
            };
            // SeqCst: the watchdog reads the count on another thread's clock.
            relay.puts.fetch_add(1, Ordering::SeqCst);
            let put = publisher.put(message).wait().is_ok();
            relay.puts.fetch_add(1, Ordering::SeqCst);
            if put {
                Counters::add(&self.counters.samples, 1);
                Counters::add(&self.counters.bytes, header.len);
            } else {
                Counters::add(&self.counters.dropped, 1);
            }
        }
    }

    /// The watchdog: looks at the relay every quarter of `max_hold` (at most every `SLICE`);
    /// a put seen under way for `max_hold` makes it shed.
    fn watch(&self, shared: &Shared, relay: &Relay) {
        let tick = (self.max_hold / 4).clamp(Duration::from_millis(1), SLICE);
        let mut seen: Option<(u64, Instant)> = None;
        while !relay.done.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            let puts = relay.puts.load(Ordering::SeqCst);
            if puts.is_multiple_of(2) {
                seen = None;
                continue;
            }
            match seen {
                Some((put, since)) if put == puts => {
                    if since.elapsed() + tick >= self.max_hold {
                        if !self.shed(shared, relay, puts) {
                            // The local publisher is gone: the relay sees it once its put
                            // returns; nothing is left to shed.
                            return;
                        }
                        seen = None;
                    }
                }
                _ => seen = Some((puts, Instant::now())),
            }
        }
    }

    /// Receives and drops, counted, while put number `put` is still under way. `false` when
    /// the local publisher went away meanwhile.
    fn shed(&self, shared: &Shared, relay: &Relay, put: u64) -> bool {
        shared.log(format!(
            "export {}: the link took no sample for {:?}; dropping until it does",
            self.service, self.max_hold
        ));
        let _receiving = relay.receiving();
        let mut dropped = 0u64;
        while relay.puts.load(Ordering::SeqCst) == put && !shared.stop.load(Ordering::Relaxed) {
            match relay.subscriber.receive_timeout(SHED_SLICE) {
                Ok(Some(sample)) => {
                    relay.seq.fetch_add(1, Ordering::Relaxed);
                    drop(sample);
                    dropped += 1;
                    Counters::add(&self.counters.dropped, 1);
                }
                Ok(None) => {}
                // Only while zenoh also holds samples of earlier puts (their messages kept
                // by a local zenoh subscriber): wait for one to come back.
                Err(ChannelError::BorrowLimitReached) => std::thread::sleep(SHED_SLICE),
                // Gone (or broken): the relay meets it too once its put returns.
                Err(_) => {
                    shared.log(format!(
                        "export {}: the local publisher went away during a stalled put; \
                         {dropped} samples dropped meanwhile",
                        self.service
                    ));
                    return false;
                }
            }
        }
        if relay.puts.load(Ordering::SeqCst) != put {
            shared.log(format!(
                "export {}: the link moves again; {dropped} samples dropped meanwhile",
                self.service
            ));
        }
        true
    }
}

/// Whether a remote importer listens on the key, asked for every sample: a matching listener
/// keeps the answer in a flag (asking zenoh's `matching_status` walks its routing tables);
/// without a listener, zenoh is asked.
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
