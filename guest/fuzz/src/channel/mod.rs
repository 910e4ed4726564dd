//! The channel part of the fuzz: every function of `resmem:memory/channel`, valid and
//! hostile, checked against a model. The guest is publisher and subscriber of its own services
//! (several of each), so the model knows what every subscriber must receive, in which order
//! and with which bytes: `send` delivers to every subscriber of the publisher, and a full
//! queue (`buffer-size` samples waiting) drops its oldest sample (`drop-oldest`), misses the
//! new one (`drop-newest`), or is made room in before the send (`block`, which would wait for
//! the host's block timeout otherwise). Pollables are polled only when the model says at
//! least one is ready, so the guest never blocks.
//!
//! The hogs take publishers, subscribers, loans and received samples until the host refuses;
//! each must yield exactly what the host's default quota leaves (16 publishers, 64
//! subscribers, 1024 loans, 1024 samples held), so a leak of quota usage is found. The
//! teardown drops every publisher (its subscribers drain what was queued, then see
//! `disconnected`), every subscriber, checks no service is left and runs every hog once more.

use std::collections::{BTreeMap, VecDeque};

use resmem_guest::bindings::resmem::memory::channel::{self as ch, ChannelConfig, Overflow};
use resmem_guest::bindings::resmem::memory::resizable_memory as wit;
use resmem_guest::bindings::resmem::memory::types::{
    AllocationStrategy, Error, Layout, PointerOffset,
};
use resmem_guest::bindings::wasi::io::poll::{self, Pollable};
use resmem_guest::window::raw;

use crate::{Fuzz, pack, unpack};

mod checks;
mod hostile;
mod publishers;
mod quotas;
mod subscribers;

/// The host's default quotas (`host/runtime/src/policy.rs`).
const QUOTA_PUBLISHERS: usize = 16;
const QUOTA_SUBSCRIBERS: usize = 64;
const QUOTA_LOANS: usize = 1024;
const QUOTA_BORROWED: usize = 1024;
/// Largest `max-subscribers`, `buffer-size`, `max-loans` and `max-borrowed`.
const CONFIG_LIMIT: u32 = 4096;
/// Bytes one `read` or `write` may move.
const IO_LIMIT: u64 = 16 << 20;
/// Largest chunk (and chunk-layout hint).
const CHUNK_LIMIT: u64 = 256 << 20;

/// What the model holds at once: one run stays small.
const MAX_PUBLISHERS: usize = 4;
const MAX_SUBSCRIBERS: usize = 8;
const MAX_LOANS: usize = 24;
const MAX_SAMPLE: u64 = 16 * 1024;

/// Counts for the summary.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) sent: u64,
    /// Sum of what `send` returned.
    pub(crate) delivered: u64,
    pub(crate) received: u64,
    /// Oldest samples dropped from a full queue (`drop-oldest`).
    pub(crate) dropped: u64,
    /// Sends a full subscriber missed (`drop-newest`).
    pub(crate) missed: u64,
    /// Receives that said `disconnected`.
    pub(crate) disconnected: u64,
    pub(crate) polls: u64,
    pub(crate) peak_loans: usize,
}

/// An unsent loan and its bytes.
struct Loan {
    capacity: u64,
    data: Vec<u8>,
}

/// A sample on its way: queued for a subscriber, or received and held.
#[derive(Clone)]
struct Delivered {
    packed: u64,
    /// Of the chunk (the loan), for overlap checks.
    capacity: u64,
    /// The bytes sent.
    data: Vec<u8>,
}

struct PublisherModel {
    raw: ch::Publisher,
    /// Tells this publisher's subscribers from those of an earlier one of the same name.
    id: u64,
    service: String,
    config: ChannelConfig,
    /// Packed offset → loan.
    loans: BTreeMap<u64, Loan>,
    /// Offsets sent or discarded (possibly loaned again since: check `loans`).
    gone: Vec<PointerOffset>,
}

struct SubscriberModel {
    // Declared first: a pollable is a child of its subscriber and must be dropped before it.
    pollable: Option<Pollable>,
    raw: ch::Subscriber,
    /// The publisher's `id`.
    publisher: u64,
    service: String,
    buffer_size: usize,
    max_borrowed: usize,
    /// What the publisher sent and this subscriber has not received, oldest first.
    queue: VecDeque<Delivered>,
    /// Packed offset → received sample.
    held: BTreeMap<u64, Delivered>,
    released: Vec<PointerOffset>,
    /// The publisher was dropped.
    gone: bool,
}

#[derive(Default)]
pub(crate) struct Channels {
    subscribers: Vec<SubscriberModel>,
    publishers: Vec<PublisherModel>,
    /// Services whose publisher was dropped with samples queued: their objects stay while a
    /// subscriber of that publisher (`id`) lives.
    draining: Vec<(String, u64)>,
    /// Services whose publisher was dropped (maybe created again since).
    dead: Vec<String>,
    /// Every service name used, for the teardown's check that nothing is left.
    services: Vec<String>,
    next_id: u64,
    pub(crate) stats: Stats,
}

/// What the host knows of a service name.
enum Service {
    Live,
    /// The publisher is gone; its subscribers still drain.
    Draining,
    Gone,
}

/// What a `receive` returned, as the model expected.
#[derive(PartialEq, Eq, Debug)]
enum Got {
    Sample,
    Empty,
    Disconnected,
    Refused,
}

fn overlap(a: PointerOffset, a_size: u64, b: PointerOffset, b_size: u64) -> bool {
    a.segment == b.segment
        && a.offset < b.offset + b_size.max(1)
        && b.offset < a.offset + a_size.max(1)
}

impl Fuzz {
    /// One random channel call (or a short sequence the model needs).
    pub(crate) fn channel_one(&mut self) {
        match self.rng.below(100) {
            0..=4 => self.create_publisher(),
            5..=6 => self.drop_publisher(),
            7..=18 => self.loan(),
            19..=23 => self.write_loan(),
            24..=26 => self.map_loan(),
            27..=40 => self.send(),
            41..=43 => self.discard(),
            44 => self.count_subscribers(),
            45..=51 => self.open_subscriber(),
            52..=54 => self.drop_subscriber(),
            55..=67 => self.receive(),
            68..=71 => self.read_sample(),
            72..=73 => self.map_sample(),
            74..=80 => self.release(),
            81..=85 => self.poll_subscribers(),
            86 => self.check_alive(),
            87..=98 => self.channel_hostile(),
            _ => self.channel_hog(),
        }
        let loans = self.loans_total();
        self.ch.stats.peak_loans = self.ch.stats.peak_loans.max(loans);
    }

    /// A call without a result (counted as a success).
    fn noted(&mut self) {
        let _ = self.note::<()>(Ok(()));
    }

    fn service_name(&mut self) -> String {
        self.next_name += 1;
        let name = format!("fc{}-{}", self.seed, self.next_name);
        self.ch.services.push(name.clone());
        name
    }

    fn service(&self, name: &str) -> Service {
        if self.ch.publishers.iter().any(|p| p.service == name) {
            return Service::Live;
        }
        let draining = self.ch.draining.iter().any(|(service, id)| {
            service == name && self.ch.subscribers.iter().any(|s| s.publisher == *id)
        });
        if draining {
            Service::Draining
        } else {
            Service::Gone
        }
    }

    fn loans_total(&self) -> usize {
        self.ch.publishers.iter().map(|p| p.loans.len()).sum()
    }

    fn held_total(&self) -> usize {
        self.ch.subscribers.iter().map(|s| s.held.len()).sum()
    }

    fn subscribers_of(&self, id: u64) -> usize {
        self.ch
            .subscribers
            .iter()
            .filter(|s| s.publisher == id)
            .count()
    }

    fn publisher_index(&mut self) -> Option<usize> {
        let n = self.ch.publishers.len() as u64;
        (n > 0).then(|| self.rng.below(n) as usize)
    }

    fn subscriber_index(&mut self) -> Option<usize> {
        let n = self.ch.subscribers.len() as u64;
        (n > 0).then(|| self.rng.below(n) as usize)
    }

    /// Mostly a publisher with subscribers (so that samples flow), else any.
    fn sending_publisher(&mut self) -> Option<usize> {
        let with: Vec<usize> = (0..self.ch.publishers.len())
            .filter(|&p| self.subscribers_of(self.ch.publishers[p].id) > 0)
            .collect();
        if !with.is_empty() && self.rng.chance(75) {
            return Some(with[self.rng.below(with.len() as u64) as usize]);
        }
        self.publisher_index()
    }

    /// Mostly a subscriber with something queued, else any.
    fn receiving_subscriber(&mut self) -> Option<usize> {
        let with: Vec<usize> = (0..self.ch.subscribers.len())
            .filter(|&s| !self.ch.subscribers[s].queue.is_empty())
            .collect();
        if !with.is_empty() && self.rng.chance(60) {
            return Some(with[self.rng.below(with.len() as u64) as usize]);
        }
        self.subscriber_index()
    }

    fn loan_of(&mut self, p: usize) -> Option<u64> {
        let loans = &self.ch.publishers[p].loans;
        if loans.is_empty() {
            return None;
        }
        let k = self.rng.below(loans.len() as u64) as usize;
        loans.keys().nth(k).copied()
    }

    fn held_of(&mut self, s: usize) -> Option<u64> {
        let held = &self.ch.subscribers[s].held;
        if held.is_empty() {
            return None;
        }
        let k = self.rng.below(held.len() as u64) as usize;
        held.keys().nth(k).copied()
    }

    fn channel_config(&mut self) -> ChannelConfig {
        ChannelConfig {
            max_subscribers: self.rng.pick(&[1, 2, 3, 4]),
            buffer_size: self.rng.pick(&[1, 1, 2, 3, 4, 8]),
            max_loans: self.rng.pick(&[1, 2, 4, 8]),
            max_borrowed: self.rng.pick(&[1, 2, 3, 4]),
            overflow: self.rng.pick(&[
                Overflow::DropOldest,
                Overflow::DropOldest,
                Overflow::DropNewest,
                Overflow::Block,
            ]),
            memory: wit::MemoryConfig {
                max_chunk_layout_hint: Layout {
                    size: self.rng.pick(&[1, 64, 512, 4096]),
                    align: 8,
                },
                max_number_of_chunks_hint: self.rng.below(16) + 1,
                allocation_strategy: self.rng.pick(&[
                    AllocationStrategy::BestFit,
                    AllocationStrategy::PowerOfTwo,
                    AllocationStrategy::PowerOfTwo,
                    AllocationStrategy::PowerOfTwo,
                    AllocationStrategy::BestFit,
                    AllocationStrategy::PowerOfTwo,
                    AllocationStrategy::BestFit,
                    AllocationStrategy::Static,
                ]),
            },
        }
    }

    /// A configuration for the hogs' publishers.
    fn small_config(
        max_subscribers: u32,
        buffer_size: u32,
        max_loans: u32,
        max_borrowed: u32,
    ) -> ChannelConfig {
        ChannelConfig {
            max_subscribers,
            buffer_size,
            max_loans,
            max_borrowed,
            overflow: Overflow::DropOldest,
            memory: wit::MemoryConfig {
                max_chunk_layout_hint: Layout { size: 8, align: 8 },
                max_number_of_chunks_hint: 64,
                allocation_strategy: AllocationStrategy::PowerOfTwo,
            },
        }
    }

    fn sample_layout(&mut self) -> Layout {
        let size = match self.rng.below(10) {
            0 => 0,
            1..=5 => self.rng.below(256) + 1,
            6..=8 => self.rng.below(4096) + 1,
            _ => self.rng.below(MAX_SAMPLE) + 1,
        };
        Layout {
            size,
            align: 1 << self.rng.below(7),
        }
    }
}
