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

    // -----------------------------------------------------------------------------------------
    // Publishers
    // -----------------------------------------------------------------------------------------

    fn create_publisher(&mut self) {
        if self.ch.publishers.len() >= MAX_PUBLISHERS {
            return self.drop_publisher();
        }
        // Now and then the name of a dead service again: free once nothing is left of it.
        let reuse = match self.ch.dead.last() {
            Some(name) if self.rng.chance(40) => Some(name.clone()),
            _ => None,
        };
        let name = match reuse {
            Some(name) => match self.service(&name) {
                Service::Gone => name,
                Service::Draining => {
                    let again = ch::Publisher::create(&name, self.channel_config());
                    return self.must_fail(
                        "create a publisher of a service still draining",
                        &["already-exists"],
                        again,
                    );
                }
                Service::Live => self.service_name(),
            },
            None => self.service_name(),
        };
        let config = self.channel_config();
        let result = ch::Publisher::create(&name, config);
        let raw = self.must("create a publisher", result);
        self.ch.dead.retain(|n| *n != name);
        let again = ch::Publisher::create(&name, self.channel_config());
        self.must_fail("create a publisher twice", &["already-exists"], again);
        let count = raw.number_of_subscribers();
        self.noted();
        if count != 0 {
            self.fail(&format!("a new publisher has {count} subscribers"));
        }
        self.ch.next_id += 1;
        self.ch.publishers.push(PublisherModel {
            raw,
            id: self.ch.next_id,
            service: name,
            config,
            loans: BTreeMap::new(),
            gone: Vec::new(),
        });
    }

    fn drop_publisher(&mut self) {
        let Some(p) = self.publisher_index() else {
            return;
        };
        self.drop_publisher_at(p);
        // Often one of its subscribers drains at once.
        if self.rng.chance(50)
            && let Some(s) = self.ch.subscribers.iter().position(|s| s.gone)
        {
            self.drain(s);
        }
    }

    /// Drops publisher `p` with its loans: its subscribers see it gone at once, and nobody
    /// new may open the service.
    fn drop_publisher_at(&mut self, p: usize) {
        let model = self.ch.publishers.swap_remove(p);
        let (id, name) = (model.id, model.service.clone());
        let pending = self
            .ch
            .subscribers
            .iter()
            .any(|s| s.publisher == id && !s.queue.is_empty());
        drop(model);
        for sub in &mut self.ch.subscribers {
            if sub.publisher == id {
                sub.gone = true;
            }
        }
        if pending {
            self.ch.draining.push((name.clone(), id));
        }
        self.ch.dead.push(name.clone());
        if let Some(s) = self.ch.subscribers.iter().position(|s| s.publisher == id) {
            let alive = self.ch.subscribers[s].raw.is_publisher_alive();
            self.noted();
            if alive {
                self.fail("is-publisher-alive after the publisher dropped");
            }
        }
        self.open_dead(&name);
    }

    /// Opens a service whose publisher is gone: `disconnected` while it drains, else
    /// `does-not-exist`.
    fn open_dead(&mut self, name: &str) {
        let expected = match self.service(name) {
            Service::Live => return,
            Service::Draining => "disconnected",
            Service::Gone => "does-not-exist",
        };
        let result = ch::Subscriber::open(name, 0);
        self.must_fail(
            "open a service whose publisher is gone",
            &[expected],
            result,
        );
    }

    /// Loans from `p`; the model's answer to every outcome. Returns the new loan.
    fn loan_with(&mut self, p: usize, layout: Layout) -> Option<u64> {
        let (total, mine) = (self.loans_total(), self.ch.publishers[p].loans.len());
        let max_loans = self.ch.publishers[p].config.max_loans as usize;
        let strategy = self.ch.publishers[p].config.memory.allocation_strategy;
        let result = self.ch.publishers[p].raw.loan(layout);
        if total >= QUOTA_LOANS {
            self.must_fail("loan beyond the loan quota", &["quota-exceeded"], result);
            return None;
        }
        if mine >= max_loans {
            self.must_fail("loan beyond max-loans", &["limit-reached"], result);
            return None;
        }
        let offset = match self.note(result) {
            Ok(offset) => offset,
            // A static memory may be full; the others grow.
            Err(Error::OutOfMemory) if strategy == AllocationStrategy::Static => return None,
            Err(e) => self.fail(&format!("loan {layout:?}: {e:?}")),
        };
        let packed = pack(offset);
        if !offset.offset.is_multiple_of(layout.align) {
            self.fail(&format!(
                "loan {offset:?} is not aligned to {}",
                layout.align
            ));
        }
        // No chunk of this publisher still loaned, queued or held may overlap it.
        let id = self.ch.publishers[p].id;
        let loans = self.ch.publishers[p]
            .loans
            .iter()
            .map(|(&k, l)| (k, l.capacity));
        let delivered = self
            .ch
            .subscribers
            .iter()
            .filter(|s| s.publisher == id)
            .flat_map(|s| s.queue.iter().chain(s.held.values()))
            .map(|d| (d.packed, d.capacity));
        let clash = loans
            .chain(delivered)
            .find(|&(k, capacity)| overlap(unpack(k), capacity, offset, layout.size));
        if let Some((k, _)) = clash {
            self.fail(&format!(
                "loan {offset:?} ({} bytes) overlaps the live chunk {:?}",
                layout.size,
                unpack(k)
            ));
        }
        // Filled with fresh bytes, so every later read has a known answer.
        let data = self.rng.bytes(layout.size as usize);
        let write = self.ch.publishers[p].raw.write(offset, 0, &data);
        self.must("fill a new loan", write);
        self.ch.publishers[p].loans.insert(
            packed,
            Loan {
                capacity: layout.size,
                data,
            },
        );
        Some(packed)
    }

    fn loan(&mut self) {
        let Some(p) = self.sending_publisher() else {
            return self.create_publisher();
        };
        if self.loans_total() >= MAX_LOANS {
            return self.discard();
        }
        let layout = self.sample_layout();
        self.loan_with(p, layout);
    }

    fn write_loan(&mut self) {
        let Some(p) = self.publisher_index() else {
            return;
        };
        let Some(packed) = self.loan_of(p) else {
            return;
        };
        let offset = unpack(packed);
        let capacity = self.ch.publishers[p].loans[&packed].capacity;
        let at = self.rng.below(capacity + 1);
        let len = self.rng.below(capacity - at + 1);
        let data = self.rng.bytes(len as usize);
        let result = self.ch.publishers[p].raw.write(offset, at, &data);
        self.must("write inside a loan", result);
        self.ch.publishers[p]
            .loans
            .get_mut(&packed)
            .expect("in the model")
            .data[at as usize..(at + len) as usize]
            .copy_from_slice(&data);
        let past = self.ch.publishers[p].raw.write(offset, capacity, &[1]);
        self.must_fail("write past a loan", &["invalid-offset"], past);
    }

    /// Writes a loan in place through the window and reads all of it back there.
    fn map_loan(&mut self) {
        let Some(p) = self.publisher_index() else {
            return;
        };
        let Some(packed) = self.loan_of(p) else {
            return;
        };
        let offset = unpack(packed);
        let result = self.ch.publishers[p].raw.map(offset);
        let addr = self.must("map a loan", result);
        let again = self.ch.publishers[p].raw.map(offset);
        if self.must("map a loan again", again) != addr {
            self.fail("a loan mapped twice has two addresses");
        }
        let capacity = self.ch.publishers[p].loans[&packed].capacity;
        if u64::from(addr) + capacity > 1 << 32 {
            self.fail(&format!(
                "loan mapped at {addr:#x} leaves the address space"
            ));
        }
        let at = self.rng.below(capacity + 1);
        let len = self.rng.below(capacity - at + 1);
        let data = self.rng.bytes(len as usize);
        // SAFETY: the host mapped the loan's `capacity` bytes read-write at `addr`; it stays
        // loaned (and mapped) until this function returns. No reference into the window.
        unsafe {
            raw::copy_in(
                (addr as usize + at as usize) as *mut u8,
                data.as_ptr(),
                data.len(),
            )
        };
        let loan = self.ch.publishers[p]
            .loans
            .get_mut(&packed)
            .expect("in the model");
        loan.data[at as usize..(at + len) as usize].copy_from_slice(&data);
        let mut back = vec![0; capacity as usize];
        // SAFETY: as above, read only.
        unsafe { raw::copy_out(back.as_mut_ptr(), addr as usize as *const u8, back.len()) };
        if back != self.ch.publishers[p].loans[&packed].data {
            self.fail("a mapped loan holds other bytes than were written");
        }
    }

    fn send(&mut self) {
        let Some(p) = self.sending_publisher() else {
            return self.create_publisher();
        };
        let packed = match self.loan_of(p) {
            Some(packed) => packed,
            None if self.loans_total() < MAX_LOANS => {
                let layout = self.sample_layout();
                let Some(packed) = self.loan_with(p, layout) else {
                    return;
                };
                packed
            }
            None => return,
        };
        let capacity = self.ch.publishers[p].loans[&packed].capacity;
        let len = match self.rng.below(4) {
            0 => capacity,
            1 => 0,
            _ => self.rng.below(capacity + 1),
        };
        self.send_loan(p, packed, len);
    }

    /// Sends `len` bytes of loan `packed` of `p`: every subscriber of `p` gets it, by the
    /// publisher's overflow policy.
    fn send_loan(&mut self, p: usize, packed: u64, len: u64) {
        let id = self.ch.publishers[p].id;
        let overflow = self.ch.publishers[p].config.overflow;
        if overflow == Overflow::Block {
            // A full subscriber would keep `send` waiting for the host's block timeout: make
            // room in each first.
            for s in 0..self.ch.subscribers.len() {
                let sub = &self.ch.subscribers[s];
                if sub.publisher == id && sub.queue.len() >= sub.buffer_size {
                    self.make_room(s);
                    if self.receive_on(s) != Got::Sample {
                        self.fail("a full subscriber did not receive");
                    }
                }
            }
        }
        let offset = unpack(packed);
        let result = self.ch.publishers[p].raw.send(offset, len);
        let loan = self.ch.publishers[p]
            .loans
            .remove(&packed)
            .expect("in the model");
        self.ch.publishers[p].gone.push(offset);
        let data = loan.data[..len as usize].to_vec();
        let mut expected = 0;
        for sub in &mut self.ch.subscribers {
            if sub.publisher != id {
                continue;
            }
            if sub.queue.len() >= sub.buffer_size {
                match overflow {
                    Overflow::DropNewest => {
                        self.ch.stats.missed += 1;
                        continue;
                    }
                    _ => {
                        sub.queue.pop_front();
                        self.ch.stats.dropped += 1;
                    }
                }
            }
            sub.queue.push_back(Delivered {
                packed,
                capacity: loan.capacity,
                data: data.clone(),
            });
            expected += 1;
        }
        let delivered = self.must("send a loan", result);
        if delivered != expected {
            self.fail(&format!(
                "send delivered to {delivered} subscribers, the model {expected}"
            ));
        }
        self.ch.stats.sent += 1;
        self.ch.stats.delivered += u64::from(delivered);
        if !self.ch.publishers[p].loans.contains_key(&packed) {
            let write = self.ch.publishers[p].raw.write(offset, 0, &[]);
            self.must_fail("write a sent loan", &["invalid-offset"], write);
        }
    }

    fn discard(&mut self) {
        let Some(p) = self.publisher_index() else {
            return;
        };
        let Some(packed) = self.loan_of(p) else {
            return;
        };
        self.discard_loan(p, packed);
    }

    fn discard_loan(&mut self, p: usize, packed: u64) {
        let offset = unpack(packed);
        let result = self.ch.publishers[p].raw.discard(offset);
        self.must("discard a loan", result);
        self.ch.publishers[p].loans.remove(&packed);
        self.ch.publishers[p].gone.push(offset);
        let again = self.ch.publishers[p].raw.discard(offset);
        self.must_fail("discard twice", &["invalid-offset"], again);
    }

    fn count_subscribers(&mut self) {
        for p in 0..self.ch.publishers.len() {
            let count = self.ch.publishers[p].raw.number_of_subscribers();
            self.noted();
            let expected = self.subscribers_of(self.ch.publishers[p].id);
            if count as usize != expected {
                self.fail(&format!(
                    "number-of-subscribers {count}, the model {expected}"
                ));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Subscribers
    // -----------------------------------------------------------------------------------------

    fn open_subscriber(&mut self) {
        if self.ch.subscribers.len() >= MAX_SUBSCRIBERS {
            return self.drop_subscriber();
        }
        let Some(p) = self.publisher_index() else {
            return;
        };
        let (id, name, config) = {
            let model = &self.ch.publishers[p];
            (model.id, model.service.clone(), model.config)
        };
        let timeout = self.rng.pick(&[0, 0, 0, 5]);
        let result = ch::Subscriber::open(&name, timeout);
        if self.ch.subscribers.len() >= QUOTA_SUBSCRIBERS {
            return self.must_fail("open beyond the quota", &["quota-exceeded"], result);
        }
        if self.subscribers_of(id) >= config.max_subscribers as usize {
            return self.must_fail("open beyond max-subscribers", &["limit-reached"], result);
        }
        let raw = self.must("open a subscriber", result);
        self.ch.subscribers.push(SubscriberModel {
            pollable: None,
            raw,
            publisher: id,
            service: name,
            buffer_size: config.buffer_size as usize,
            max_borrowed: config.max_borrowed as usize,
            queue: VecDeque::new(),
            held: BTreeMap::new(),
            released: Vec::new(),
            gone: false,
        });
        let s = self.ch.subscribers.len() - 1;
        let alive = self.ch.subscribers[s].raw.is_publisher_alive();
        self.noted();
        if !alive {
            self.fail("a new subscriber's publisher is not alive");
        }
        // Nothing sent before it joined.
        if self.receive_on(s) != Got::Empty {
            self.fail("a new subscriber received something");
        }
        let count = self.ch.publishers[p].raw.number_of_subscribers();
        self.noted();
        if count as usize != self.subscribers_of(id) {
            self.fail(&format!("{count} subscribers after an open"));
        }
    }

    fn drop_subscriber(&mut self) {
        // Mostly one whose publisher is gone.
        let gone = self.ch.subscribers.iter().position(|s| s.gone);
        let s = match gone {
            Some(s) if self.rng.chance(70) => s,
            _ => match self.subscriber_index() {
                Some(s) => s,
                None => return,
            },
        };
        self.drop_subscriber_at(s);
    }

    /// Drops subscriber `s` (its pollable first) with what it holds and what is queued.
    fn drop_subscriber_at(&mut self, s: usize) {
        let model = self.ch.subscribers.swap_remove(s);
        let (id, name) = (model.publisher, model.service.clone());
        drop(model);
        if let Some(p) = self.ch.publishers.iter().position(|p| p.id == id) {
            let count = self.ch.publishers[p].raw.number_of_subscribers();
            self.noted();
            if count as usize != self.subscribers_of(id) {
                self.fail(&format!("{count} subscribers after a drop"));
            }
        } else if self.subscribers_of(id) == 0 {
            // The last one of a draining service removed it.
            self.ch.draining.retain(|(_, d)| *d != id);
            self.open_dead(&name);
        }
    }

    /// Receives on `s` and checks the answer against the model: the oldest queued sample,
    /// with exactly the bytes sent.
    fn receive_on(&mut self, s: usize) -> Got {
        let held_total = self.held_total();
        let result = self.ch.subscribers[s].raw.receive();
        let sub = &self.ch.subscribers[s];
        let (held, max_borrowed, gone) = (sub.held.len(), sub.max_borrowed, sub.gone);
        let front = sub.queue.front().map(|d| (d.packed, d.data.len() as u64));
        if held_total >= QUOTA_BORROWED {
            self.must_fail(
                "receive beyond the borrowed quota",
                &["quota-exceeded"],
                result,
            );
            return Got::Refused;
        }
        if held >= max_borrowed {
            self.must_fail("receive beyond max-borrowed", &["limit-reached"], result);
            return Got::Refused;
        }
        match (self.note(result), front) {
            (Ok(Some(sample)), Some((packed, len))) => {
                if pack(sample.offset) != packed || sample.len != len {
                    self.fail(&format!(
                        "received {:?} ({} bytes), the model {:?} ({len} bytes)",
                        sample.offset,
                        sample.len,
                        unpack(packed)
                    ));
                }
                let delivered = self.ch.subscribers[s]
                    .queue
                    .pop_front()
                    .expect("in the model");
                if self.ch.subscribers[s].held.contains_key(&packed) {
                    self.fail(&format!(
                        "received {:?}, which it still holds",
                        sample.offset
                    ));
                }
                let read = self.ch.subscribers[s].raw.read(sample.offset, 0, len);
                if self.must("read a received sample", read) != delivered.data {
                    self.fail("a received sample holds other bytes than were sent");
                }
                self.ch.subscribers[s].held.insert(packed, delivered);
                self.ch.stats.received += 1;
                Got::Sample
            }
            (Ok(None), None) if !gone => Got::Empty,
            (Err(Error::Disconnected), None) if gone => {
                self.ch.stats.disconnected += 1;
                Got::Disconnected
            }
            (other, front) => self.fail(&format!(
                "receive: got {other:?}; the model has {} queued ({front:?} first), \
                 publisher gone: {gone}",
                self.ch.subscribers[s].queue.len()
            )),
        }
    }

    fn receive(&mut self) {
        if let Some(s) = self.receiving_subscriber() {
            self.receive_on(s);
        }
    }

    /// Releases a sample of `s` if it holds its maximum, so that it may receive.
    fn make_room(&mut self, s: usize) {
        let sub = &self.ch.subscribers[s];
        if sub.held.len() >= sub.max_borrowed
            && let Some(packed) = self.held_of(s)
        {
            self.release_sample(s, packed);
        }
    }

    /// Receives everything queued for `s` (releasing as it goes), then `disconnected`.
    fn drain(&mut self, s: usize) {
        if !self.ch.subscribers[s].gone {
            self.fail("drain of a subscriber whose publisher lives");
        }
        loop {
            self.make_room(s);
            match self.receive_on(s) {
                Got::Sample => {}
                Got::Disconnected => break,
                other => self.fail(&format!("drain: {other:?}")),
            }
        }
    }

    fn read_sample(&mut self) {
        let Some(s) = self.subscriber_index() else {
            return;
        };
        let Some(packed) = self.held_of(s) else {
            return;
        };
        let offset = unpack(packed);
        let size = self.ch.subscribers[s].held[&packed].data.len() as u64;
        let at = self.rng.below(size + 1);
        let len = self.rng.below(size - at + 1);
        let result = self.ch.subscribers[s].raw.read(offset, at, len);
        let bytes = self.must("read inside a sample", result);
        let model = &self.ch.subscribers[s].held[&packed].data[at as usize..(at + len) as usize];
        if bytes != model {
            self.fail(&format!(
                "sample read {len} bytes at {at}: not what was sent"
            ));
        }
        let past = self.ch.subscribers[s].raw.read(offset, at, size - at + 1);
        self.must_fail("read past a sample", &["invalid-offset"], past);
    }

    /// Reads a whole sample in place through the window.
    fn map_sample(&mut self) {
        let Some(s) = self.subscriber_index() else {
            return;
        };
        let Some(packed) = self.held_of(s) else {
            return;
        };
        let result = self.ch.subscribers[s].raw.map(unpack(packed));
        let addr = self.must("map a sample", result);
        let len = self.ch.subscribers[s].held[&packed].data.len();
        if u64::from(addr) + len as u64 > 1 << 32 {
            self.fail(&format!(
                "sample mapped at {addr:#x} leaves the address space"
            ));
        }
        let mut back = vec![0; len];
        // SAFETY: the host mapped the held sample's `len` bytes at `addr`; it stays held (and
        // mapped) until this function returns. Read only, no reference into the window.
        unsafe { raw::copy_out(back.as_mut_ptr(), addr as usize as *const u8, len) };
        if back != self.ch.subscribers[s].held[&packed].data {
            self.fail("a mapped sample holds other bytes than were sent");
        }
    }

    fn release(&mut self) {
        let Some(s) = self.subscriber_index() else {
            return;
        };
        if let Some(packed) = self.held_of(s) {
            self.release_sample(s, packed);
        }
    }

    fn release_sample(&mut self, s: usize, packed: u64) {
        let offset = unpack(packed);
        let result = self.ch.subscribers[s].raw.release(offset);
        self.must("release a sample", result);
        self.ch.subscribers[s].held.remove(&packed);
        self.ch.subscribers[s].released.push(offset);
        let sub = &self.ch.subscribers[s].raw;
        let (again, read) = (sub.release(offset), sub.read(offset, 0, 0));
        self.must_fail("release twice", &["invalid-offset"], again);
        self.must_fail("read a released sample", &["invalid-offset"], read);
    }

    /// Polls the pollables of a few subscribers when the model says at least one is ready;
    /// exactly the ready ones must be, and each then receives a sample or `disconnected`.
    fn poll_subscribers(&mut self) {
        let n = self.ch.subscribers.len();
        if n == 0 {
            return;
        }
        let mut chosen = Vec::new();
        for _ in 0..self.rng.below(3) + 1 {
            let s = self.rng.below(n as u64) as usize;
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        for &s in &chosen {
            if self.ch.subscribers[s].pollable.is_none() {
                let pollable = self.ch.subscribers[s].raw.subscribe();
                self.noted();
                self.ch.subscribers[s].pollable = Some(pollable);
            }
        }
        let ready: Vec<u32> = (0..chosen.len() as u32)
            .filter(|&i| {
                let sub = &self.ch.subscribers[chosen[i as usize]];
                !sub.queue.is_empty() || sub.gone
            })
            .collect();
        if !ready.is_empty() {
            let pollables: Vec<&Pollable> = chosen
                .iter()
                .map(|&s| {
                    self.ch.subscribers[s]
                        .pollable
                        .as_ref()
                        .expect("made above")
                })
                .collect();
            let mut got = poll::poll(&pollables);
            self.noted();
            self.ch.stats.polls += 1;
            got.sort_unstable();
            if got != ready {
                self.fail(&format!(
                    "poll returned {got:?}, the model has {ready:?} ready"
                ));
            }
            for i in ready {
                let s = chosen[i as usize];
                self.make_room(s);
                let pollable = self.ch.subscribers[s]
                    .pollable
                    .as_ref()
                    .expect("made above");
                if !pollable.ready() {
                    self.fail("a ready pollable says it is not ready");
                }
                self.noted();
                match self.receive_on(s) {
                    Got::Sample | Got::Disconnected => {}
                    other => self.fail(&format!("receive after poll: {other:?}")),
                }
            }
        }
        // Now and then a pollable goes (before its subscriber, as it must).
        if self.rng.chance(25) {
            let s = chosen[0];
            self.ch.subscribers[s].pollable = None;
        }
    }

    fn check_alive(&mut self) {
        for s in 0..self.ch.subscribers.len() {
            let alive = self.ch.subscribers[s].raw.is_publisher_alive();
            self.noted();
            if alive == self.ch.subscribers[s].gone {
                self.fail(&format!(
                    "is-publisher-alive {alive}, the model says gone: {}",
                    self.ch.subscribers[s].gone
                ));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Hostile calls
    // -----------------------------------------------------------------------------------------

    /// An offset that may or may not be anybody's.
    fn forged(&mut self) -> PointerOffset {
        PointerOffset {
            segment: self.rng.pick(&[0, 0, 1, 2, 17, 255]),
            offset: self.rng.pick(&[
                0,
                8,
                64,
                4096,
                1 << 20,
                1 << 40,
                1 << 55,
                (1 << 56) - 1,
                1 << 56,
                u64::MAX,
            ]),
        }
    }

    /// `write`, `map`, `send` and `discard` of an offset that is not one of `p`'s loans.
    fn not_a_loan(&mut self, p: usize, offset: PointerOffset, what: &str) {
        if offset.offset < 1 << 56 && self.ch.publishers[p].loans.contains_key(&pack(offset)) {
            return;
        }
        let raw = &self.ch.publishers[p].raw;
        let (w, m, s, d) = (
            raw.write(offset, 0, &[1]),
            raw.map(offset),
            raw.send(offset, 0),
            raw.discard(offset),
        );
        self.must_fail(&format!("write {what}"), &["invalid-offset"], w);
        self.must_fail(&format!("map {what}"), &["invalid-offset"], m);
        self.must_fail(&format!("send {what}"), &["invalid-offset"], s);
        self.must_fail(&format!("discard {what}"), &["invalid-offset"], d);
    }

    /// `read`, `map` and `release` of an offset that is not a sample `s` holds.
    fn not_a_sample(&mut self, s: usize, offset: PointerOffset, what: &str) {
        if offset.offset < 1 << 56 && self.ch.subscribers[s].held.contains_key(&pack(offset)) {
            return;
        }
        let raw = &self.ch.subscribers[s].raw;
        let (r, m, l) = (raw.read(offset, 0, 1), raw.map(offset), raw.release(offset));
        self.must_fail(&format!("read {what}"), &["invalid-offset"], r);
        self.must_fail(&format!("map {what}"), &["invalid-offset"], m);
        self.must_fail(&format!("release {what}"), &["invalid-offset"], l);
    }

    /// Every offset someone else has: other publishers' loans, samples queued or held by
    /// any subscriber.
    fn foreign_offsets(&self) -> Vec<PointerOffset> {
        let loans = self
            .ch
            .publishers
            .iter()
            .flat_map(|p| p.loans.keys().copied());
        let delivered = self.ch.subscribers.iter().flat_map(|s| {
            s.queue
                .iter()
                .map(|d| d.packed)
                .chain(s.held.keys().copied())
        });
        loans.chain(delivered).map(unpack).collect()
    }

    /// One hostile call (or a few) with the error each must produce.
    fn channel_hostile(&mut self) {
        match self.rng.below(20) {
            0 => {
                let name =
                    self.rng
                        .pick(&["", "a/b", "..", "a\0b", "/x", "../etc/passwd", "x/../y"]);
                let config = self.channel_config();
                let result = ch::Publisher::create(name, config);
                self.must_fail(
                    "create a publisher with a bad name",
                    &["invalid-name"],
                    result,
                );
                let result = ch::Subscriber::open(name, 0);
                self.must_fail(
                    "open a subscriber with a bad name",
                    &["invalid-name"],
                    result,
                );
            }
            1 => {
                let name = "s".repeat(10 * 1024);
                let config = self.channel_config();
                let result = ch::Publisher::create(&name, config);
                self.must_fail("create with a 10 KiB name", &["invalid-name"], result);
                let result = ch::Subscriber::open(&name, 0);
                self.must_fail("open with a 10 KiB name", &["invalid-name"], result);
            }
            2 => {
                // Long names: a service name must leave room for its longest object name.
                let len = 150 + self.rng.below(110) as usize;
                let name = format!("fc{}-{}", self.seed, "l".repeat(len));
                let config = self.channel_config();
                let created = ch::Publisher::create(&name, config);
                let refused = match self.note(created) {
                    Ok(publisher) => {
                        if publisher.number_of_subscribers() != 0 {
                            self.fail("a new publisher has subscribers");
                        }
                        self.noted();
                        false
                    }
                    Err(Error::InvalidName(_)) => true,
                    Err(e) => self.fail(&format!("create with a {len}-byte name: {e:?}")),
                };
                // The same check for both ends; a publisher that was created is gone now.
                let expected = if refused {
                    "invalid-name"
                } else {
                    "does-not-exist"
                };
                let result = ch::Subscriber::open(&name, 0);
                self.must_fail("open with a long name", &[expected], result);
            }
            3 => {
                let mut config = self.channel_config();
                match self.rng.below(4) {
                    0 => config.max_subscribers = 0,
                    1 => config.buffer_size = 0,
                    2 => config.max_loans = 0,
                    _ => config.max_borrowed = 0,
                }
                let name = self.service_name();
                let result = ch::Publisher::create(&name, config);
                self.must_fail("create with a zero limit", &["quota-exceeded"], result);
            }
            4 => {
                let mut config = self.channel_config();
                let huge = self.rng.pick(&[CONFIG_LIMIT + 1, 65536, 1 << 24, u32::MAX]);
                match self.rng.below(5) {
                    0 => config.max_subscribers = huge,
                    1 => config.buffer_size = huge,
                    2 => config.max_loans = huge,
                    3 => config.max_borrowed = huge,
                    _ => {
                        // Each within the limit, together far too much.
                        config.max_subscribers = CONFIG_LIMIT;
                        config.buffer_size = CONFIG_LIMIT;
                        config.max_loans = CONFIG_LIMIT;
                        config.max_borrowed = CONFIG_LIMIT;
                    }
                }
                let name = self.service_name();
                let result = ch::Publisher::create(&name, config);
                self.must_fail("create with huge limits", &["quota-exceeded"], result);
            }
            5 => {
                let mut config = self.channel_config();
                let hint = &mut config.memory;
                let expected = match self.rng.below(6) {
                    0 => {
                        hint.max_chunk_layout_hint.align = self.rng.pick(&[0, 3, 12, u64::MAX]);
                        "invalid-layout"
                    }
                    1 => {
                        // A power of two, but more than a page.
                        hint.max_chunk_layout_hint.align = self.rng.pick(&[1 << 17, 1 << 20]);
                        "invalid-layout"
                    }
                    2 => {
                        hint.max_chunk_layout_hint.size =
                            self.rng.pick(&[CHUNK_LIMIT + 1, 1 << 40]);
                        "quota-exceeded"
                    }
                    3 => {
                        // Rounded up to the alignment, it overflows.
                        hint.max_chunk_layout_hint.size = self.rng.pick(&[u64::MAX >> 1, u64::MAX]);
                        "invalid-layout"
                    }
                    4 => {
                        hint.max_number_of_chunks_hint = self.rng.pick(&[1 << 20, u64::MAX]);
                        "quota-exceeded"
                    }
                    _ => {
                        // Within every per-chunk limit, but a first segment of 4 GiB and more:
                        // beyond the guest's shared-memory quota.
                        hint.max_chunk_layout_hint.size = 1 << 20;
                        hint.max_number_of_chunks_hint = self.rng.pick(&[4096, 65536]);
                        "quota-exceeded"
                    }
                };
                let name = self.service_name();
                let result = ch::Publisher::create(&name, config);
                self.must_fail("create with a bad memory hint", &[expected], result);
                // Nothing of it is left.
                let result = ch::Subscriber::open(&name, 0);
                self.must_fail("open a service that failed", &["does-not-exist"], result);
            }
            6 => {
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let raw = &self.ch.publishers[p].raw;
                let align = self.rng.pick(&[0, 3, 12, 1 << 63, u64::MAX]);
                let (bad_align, overflowing, huge) = (
                    raw.loan(Layout { size: 8, align }),
                    raw.loan(Layout {
                        size: self.rng.pick(&[u64::MAX, u64::MAX - 7, 1 << 63]),
                        align: 8,
                    }),
                    raw.loan(Layout {
                        size: self.rng.pick(&[CHUNK_LIMIT + 1, 1 << 40]),
                        align: 8,
                    }),
                );
                self.must_fail("loan with a bad alignment", &["invalid-layout"], bad_align);
                self.must_fail(
                    "loan a size that overflows",
                    &["invalid-layout"],
                    overflowing,
                );
                self.must_fail("loan beyond the chunk quota", &["quota-exceeded"], huge);
            }
            7 => {
                // A valid power of two, more than a page: the memory cannot align it.
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let (total, mine) = (self.loans_total(), self.ch.publishers[p].loans.len());
                let max_loans = self.ch.publishers[p].config.max_loans as usize;
                let strategy = self.ch.publishers[p].config.memory.allocation_strategy;
                let align = self.rng.pick(&[1 << 17, 1 << 20]);
                let result = self.ch.publishers[p].raw.loan(Layout { size: 8, align });
                let expected = if total >= QUOTA_LOANS {
                    "quota-exceeded"
                } else if mine >= max_loans {
                    "limit-reached"
                } else if strategy == AllocationStrategy::Static {
                    // A static memory has no room for what its segment cannot hold.
                    "out-of-memory"
                } else {
                    "invalid-layout"
                };
                self.must_fail("loan aligned beyond a page", &[expected], result);
            }
            8 => {
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let forged = self.forged();
                self.not_a_loan(p, forged, "a forged offset");
            }
            9 => {
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let Some(&gone) = self.ch.publishers[p].gone.last() else {
                    return;
                };
                self.not_a_loan(p, gone, "a sent or discarded loan");
            }
            10 => {
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let foreign = self.foreign_offsets();
                if foreign.is_empty() {
                    return;
                }
                let offset = foreign[self.rng.below(foreign.len() as u64) as usize];
                self.not_a_loan(p, offset, "another's offset");
            }
            11 => {
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let Some(packed) = self.loan_of(p) else {
                    return;
                };
                let offset = unpack(packed);
                let capacity = self.ch.publishers[p].loans[&packed].capacity;
                let raw = &self.ch.publishers[p].raw;
                let at = self.rng.pick(&[u64::MAX, u64::MAX - 1, 1 << 63, 1 << 32]);
                let (after, overflowing, far) = (
                    raw.write(offset, capacity + 1, &[]),
                    raw.write(offset, at, &[1, 2]),
                    raw.write(offset, capacity, &[0; 16]),
                );
                self.must_fail(
                    "write an empty range past a loan",
                    &["invalid-offset"],
                    after,
                );
                self.must_fail(
                    "write with at + len overflowing",
                    &["invalid-offset"],
                    overflowing,
                );
                self.must_fail("write 16 bytes past a loan", &["invalid-offset"], far);
                if self.rng.chance(5) {
                    let big = vec![0; IO_LIMIT as usize + 1];
                    let result = self.ch.publishers[p].raw.write(offset, 0, &big);
                    self.must_fail("write more than one call may", &["quota-exceeded"], result);
                }
            }
            12 => {
                // A send longer than the loan fails and keeps the loan.
                let Some(p) = self.publisher_index() else {
                    return;
                };
                let Some(packed) = self.loan_of(p) else {
                    return;
                };
                let capacity = self.ch.publishers[p].loans[&packed].capacity;
                let len = self
                    .rng
                    .pick(&[capacity + 1, capacity + 4096, 1 << 40, u64::MAX]);
                let result = self.ch.publishers[p].raw.send(unpack(packed), len);
                self.must_fail("send more than the loan", &["invalid-layout"], result);
                let count = self.ch.publishers[p].raw.number_of_subscribers();
                self.noted();
                if count as usize != self.subscribers_of(self.ch.publishers[p].id) {
                    self.fail("a refused send changed the subscriber count");
                }
                match self.rng.below(3) {
                    0 => {
                        let len = self.rng.below(capacity + 1);
                        self.send_loan(p, packed, len);
                    }
                    1 => self.discard_loan(p, packed),
                    _ => {
                        // Still a loan: it can be written.
                        let write = self.ch.publishers[p].raw.write(unpack(packed), 0, &[]);
                        self.must("write a loan whose send was refused", write);
                    }
                }
            }
            13 => {
                let Some(s) = self.subscriber_index() else {
                    return;
                };
                let forged = self.forged();
                self.not_a_sample(s, forged, "a forged offset");
            }
            14 => {
                let Some(s) = self.subscriber_index() else {
                    return;
                };
                let Some(&released) = self.ch.subscribers[s].released.last() else {
                    return;
                };
                self.not_a_sample(s, released, "a released sample");
            }
            15 => {
                let Some(s) = self.subscriber_index() else {
                    return;
                };
                let foreign = self.foreign_offsets();
                if foreign.is_empty() {
                    return;
                }
                let offset = foreign[self.rng.below(foreign.len() as u64) as usize];
                self.not_a_sample(s, offset, "an offset it does not hold");
            }
            16 => {
                let Some(s) = self.subscriber_index() else {
                    return;
                };
                let Some(packed) = self.held_of(s) else {
                    let forged = self.forged();
                    let result = self.ch.subscribers[s].raw.read(forged, 0, IO_LIMIT + 1);
                    return self.must_fail(
                        "read too much of a forged offset",
                        &["quota-exceeded", "invalid-offset"],
                        result,
                    );
                };
                let offset = unpack(packed);
                let len = self.ch.subscribers[s].held[&packed].data.len() as u64;
                let raw = &self.ch.subscribers[s].raw;
                let at = self.rng.pick(&[u64::MAX, u64::MAX - 1, 1 << 63, 1 << 32]);
                let (after, overflowing, huge, max) = (
                    raw.read(offset, len + 1, 0),
                    raw.read(offset, at, 2),
                    raw.read(offset, 0, IO_LIMIT + 1),
                    raw.read(offset, 1, u64::MAX),
                );
                self.must_fail(
                    "read an empty range past a sample",
                    &["invalid-offset"],
                    after,
                );
                self.must_fail(
                    "read with at + len overflowing",
                    &["invalid-offset"],
                    overflowing,
                );
                self.must_fail("read more than one call may", &["quota-exceeded"], huge);
                self.must_fail("read u64::MAX bytes", &["quota-exceeded"], max);
                let end = self.ch.subscribers[s].raw.read(offset, len, 0);
                if !self.must("read an empty range at the end", end).is_empty() {
                    self.fail("an empty read returned bytes");
                }
            }
            17 => {
                let missing = self.service_name();
                let timeout = self.rng.pick(&[0, 0, 1, 3]);
                let result = ch::Subscriber::open(&missing, timeout);
                self.must_fail("open a missing service", &["does-not-exist"], result);
                let name = self.rng.pick(&["..resmem_x", "resmem_frames", "fz-other"]);
                let result = ch::Subscriber::open(name, 0);
                self.must_fail(
                    "open a service that is not ours",
                    &["does-not-exist", "invalid-name"],
                    result,
                );
            }
            18 => {
                // Names taken: by a live publisher, by a draining service, by a memory.
                if let Some(p) = self.publisher_index() {
                    let name = self.ch.publishers[p].service.clone();
                    let config = self.channel_config();
                    let result = ch::Publisher::create(&name, config);
                    self.must_fail("create a live service again", &["already-exists"], result);
                    let result = wit::Memory::create(&name, config.memory);
                    self.must_fail(
                        "create a memory named as a service",
                        &["already-exists"],
                        result,
                    );
                    if !self.must("exists of a service's memory", wit::exists(&name)) {
                        self.fail("a live service's memory does not exist");
                    }
                    let result = wit::remove(&name);
                    self.must_fail(
                        "remove a live service's memory",
                        &["permission-denied"],
                        result,
                    );
                }
                if let Some(m) = self.memory_index() {
                    let name = self.memories[m].name.clone();
                    let config = self.channel_config();
                    let result = ch::Publisher::create(&name, config);
                    self.must_fail(
                        "create a service named as a memory",
                        &["already-exists"],
                        result,
                    );
                    let result = ch::Subscriber::open(&name, 0);
                    self.must_fail("open a memory as a service", &["does-not-exist"], result);
                }
            }
            19 => self.lookalike(),
            _ => {
                let Some(name) = self.ch.dead.last().cloned() else {
                    return;
                };
                self.open_dead(&name);
                if let Service::Draining = self.service(&name) {
                    let config = self.channel_config();
                    let result = ch::Publisher::create(&name, config);
                    self.must_fail(
                        "create a publisher of a service still draining",
                        &["already-exists"],
                        result,
                    );
                }
            }
        }
    }

    /// A name made of another service's or memory's name and the suffix of one of its OS
    /// objects (control object, management object, segment, subscriber lock): `remove` finds
    /// no memory of that name, and a service of that name is one of its own (created, opened,
    /// sent to and dropped) that leaves the other untouched.
    fn lookalike(&mut self) {
        let mut bases: Vec<String> = self
            .ch
            .publishers
            .iter()
            .map(|p| p.service.clone())
            .collect();
        bases.extend(self.memories.iter().map(|m| m.name.clone()));
        if bases.is_empty() {
            return;
        }
        let base = bases[self.rng.below(bases.len() as u64) as usize].clone();
        let suffix = self
            .rng
            .pick(&["__svc", "__mgmt", "__0", "__1", "__sub0000000000000001_0"]);
        let name = format!("{base}{suffix}");
        if self.must("remove a lookalike name", wit::remove(&name)) {
            self.fail(&format!("remove {name} removed something"));
        }
        let result = ch::Publisher::create(&name, Self::small_config(1, 1, 1, 1));
        let publisher = self.must("create a lookalike service", result);
        let result = ch::Subscriber::open(&name, 0);
        let subscriber = self.must("open a lookalike service", result);
        let delivered = publisher
            .loan(Layout { size: 3, align: 1 })
            .and_then(|offset| {
                publisher.write(offset, 0, b"abc")?;
                publisher.send(offset, 3)
            });
        if self.must("send on a lookalike service", delivered) != 1 {
            self.fail("a lookalike service lost its subscriber");
        }
        let received = subscriber.receive();
        let Some(sample) = self.must("receive on a lookalike service", received) else {
            self.fail("a lookalike service lost its sample");
        };
        let bytes = subscriber.read(sample.offset, 0, sample.len);
        if self.must("read on a lookalike service", bytes) != b"abc" {
            self.fail("a lookalike service's sample differs");
        }
        drop(subscriber);
        drop(publisher);
        if self.must("exists of a dropped lookalike", wit::exists(&name)) {
            self.fail(&format!("{name} is left"));
        }
        let result = ch::Subscriber::open(&name, 0);
        self.must_fail("open a dropped lookalike", &["does-not-exist"], result);
    }

    // -----------------------------------------------------------------------------------------
    // Quotas
    // -----------------------------------------------------------------------------------------

    fn channel_hog(&mut self) {
        match self.rng.below(4) {
            0 => self.hog_publishers(),
            1 => self.hog_subscribers(),
            2 => self.hog_loans(),
            _ => self.hog_borrowed(),
        }
    }

    /// Publishers until the host refuses: exactly what the quota leaves.
    fn hog_publishers(&mut self) {
        let room = QUOTA_PUBLISHERS - self.ch.publishers.len();
        let mut extra = Vec::new();
        let error = loop {
            let name = self.service_name();
            let result = ch::Publisher::create(&name, Self::small_config(1, 1, 1, 1));
            match self.note(result) {
                Ok(publisher) => extra.push(publisher),
                Err(e) => break e,
            }
            if extra.len() > room {
                self.fail(&format!("{} publishers and no quota", extra.len()));
            }
        };
        self.must_fail::<()>(
            "publishers beyond the quota",
            &["quota-exceeded"],
            Err(error),
        );
        if extra.len() != room {
            self.fail(&format!(
                "{} more publishers before the quota, expected {room}",
                extra.len()
            ));
        }
        // The name is judged first.
        let result = ch::Publisher::create("a/b", Self::small_config(1, 1, 1, 1));
        self.must_fail("a bad name at the quota", &["invalid-name"], result);
        // One back, one more.
        extra.pop();
        let name = self.service_name();
        let result = ch::Publisher::create(&name, Self::small_config(1, 1, 1, 1));
        extra.push(self.must("a publisher after one went", result));
        let name = self.service_name();
        let result = ch::Publisher::create(&name, Self::small_config(1, 1, 1, 1));
        self.must_fail(
            "publishers beyond the quota again",
            &["quota-exceeded"],
            result,
        );
    }

    /// Subscribers of one service until the host refuses: exactly what the quota leaves.
    fn hog_subscribers(&mut self) {
        let room = QUOTA_SUBSCRIBERS - self.ch.subscribers.len();
        if self.ch.publishers.len() >= QUOTA_PUBLISHERS {
            return;
        }
        let name = self.service_name();
        let config = Self::small_config(QUOTA_SUBSCRIBERS as u32 + 8, 1, 1, 1);
        let result = ch::Publisher::create(&name, config);
        let publisher = self.must("create a publisher to hog subscribers", result);
        let mut extra = Vec::new();
        let error = loop {
            match self.note(ch::Subscriber::open(&name, 0)) {
                Ok(subscriber) => extra.push(subscriber),
                Err(e) => break e,
            }
            if extra.len() > room {
                self.fail(&format!("{} subscribers and no quota", extra.len()));
            }
        };
        self.must_fail::<()>(
            "subscribers beyond the quota",
            &["quota-exceeded"],
            Err(error),
        );
        if extra.len() != room {
            self.fail(&format!(
                "{} more subscribers before the quota, expected {room}",
                extra.len()
            ));
        }
        // The quota is judged before the service is looked for.
        let missing = self.service_name();
        let result = ch::Subscriber::open(&missing, 0);
        self.must_fail(
            "open a missing service at the quota",
            &["quota-exceeded"],
            result,
        );
        let count = publisher.number_of_subscribers();
        self.noted();
        if count as usize != room {
            self.fail(&format!("{count} subscribers counted, {room} open"));
        }
        // Every one got the sample.
        let delivered = publisher
            .loan(Layout { size: 8, align: 8 })
            .and_then(|offset| publisher.send(offset, 8));
        if self.must("send to every hogged subscriber", delivered) as usize != room {
            self.fail("a send missed hogged subscribers");
        }
        drop(extra);
        let count = publisher.number_of_subscribers();
        self.noted();
        if count != 0 {
            self.fail(&format!("{count} subscribers after all dropped"));
        }
    }

    /// Loans until the host refuses: exactly what the quota leaves.
    fn hog_loans(&mut self) {
        let room = QUOTA_LOANS - self.loans_total();
        if self.ch.publishers.len() >= QUOTA_PUBLISHERS {
            return;
        }
        let name = self.service_name();
        let config = Self::small_config(1, 1, QUOTA_LOANS as u32 + 64, 1);
        let result = ch::Publisher::create(&name, config);
        let publisher = self.must("create a publisher to hog loans", result);
        let mut loans = Vec::new();
        let error = loop {
            let size = self.rng.below(9);
            match self.note(publisher.loan(Layout { size, align: 8 })) {
                Ok(offset) => loans.push(offset),
                Err(e) => break e,
            }
            if loans.len() > room {
                self.fail(&format!("{} loans and no quota", loans.len()));
            }
        };
        self.must_fail::<()>("loans beyond the quota", &["quota-exceeded"], Err(error));
        if loans.len() != room {
            self.fail(&format!(
                "{} more loans before the quota, expected {room}",
                loans.len()
            ));
        }
        // The layout is judged first; a discarded loan gives its place back.
        let result = publisher.loan(Layout { size: 8, align: 3 });
        self.must_fail("a bad layout at the quota", &["invalid-layout"], result);
        if let Some(offset) = loans.pop() {
            let result = publisher.discard(offset);
            self.must("discard a hogged loan", result);
            let result = publisher.loan(Layout { size: 8, align: 8 });
            loans.push(self.must("a loan after one went back", result));
            let result = publisher.loan(Layout { size: 8, align: 8 });
            self.must_fail("loans beyond the quota again", &["quota-exceeded"], result);
        }
        // Some back one by one, the rest with the publisher.
        for offset in loans.iter().take(room / 2) {
            let result = publisher.discard(*offset);
            self.must("discard a hogged loan", result);
        }
    }

    /// Received samples until the host refuses: exactly what the quota leaves.
    fn hog_borrowed(&mut self) {
        let room = QUOTA_BORROWED - self.held_total();
        let busy = self.ch.publishers.len() >= QUOTA_PUBLISHERS
            || self.ch.subscribers.len() >= QUOTA_SUBSCRIBERS;
        if busy {
            return;
        }
        let name = self.service_name();
        let deep = QUOTA_BORROWED as u32 + 64;
        let config = Self::small_config(1, deep, 2, deep);
        let result = ch::Publisher::create(&name, config);
        let publisher = self.must("create a publisher to hog samples", result);
        let result = ch::Subscriber::open(&name, 0);
        let subscriber = self.must("open a subscriber to hog samples", result);
        for seq in 0..=room as u64 {
            let sent = publisher
                .loan(Layout { size: 8, align: 8 })
                .and_then(|offset| {
                    publisher.write(offset, 0, &seq.to_le_bytes())?;
                    publisher.send(offset, 8)
                });
            if self.must("send a sample to hog", sent) != 1 {
                self.fail("a hog sample missed its subscriber");
            }
        }
        let mut held = 0u64;
        let mut last = None;
        let error = loop {
            match self.note(subscriber.receive()) {
                Ok(Some(sample)) => {
                    let bytes = subscriber.read(sample.offset, 0, sample.len);
                    if self.must("read a hogged sample", bytes) != held.to_le_bytes() {
                        self.fail(&format!("hogged sample {held} out of order"));
                    }
                    held += 1;
                    last = Some(sample.offset);
                }
                Ok(None) => self.fail("the hog ran out of samples"),
                Err(e) => break e,
            }
            if held as usize > room {
                self.fail(&format!("{held} samples held and no quota"));
            }
        };
        self.must_fail::<()>("samples beyond the quota", &["quota-exceeded"], Err(error));
        if held as usize != room {
            self.fail(&format!(
                "{held} more samples held before the quota, expected {room}"
            ));
        }
        // Every subscriber is refused now, whatever it has queued.
        if let Some(s) = self.subscriber_index() {
            let result = self.ch.subscribers[s].raw.receive();
            self.must_fail("receive at the quota", &["quota-exceeded"], result);
        }
        // A released sample gives its place back: the last one sent comes, then the quota.
        if let Some(offset) = last {
            let result = subscriber.release(offset);
            self.must("release a hogged sample", result);
            let result = subscriber.receive();
            let Some(sample) = self.must("receive after a release", result) else {
                self.fail("the last hogged sample is missing");
            };
            let bytes = subscriber.read(sample.offset, 0, sample.len);
            if self.must("read the last hogged sample", bytes) != (room as u64).to_le_bytes() {
                self.fail("the last hogged sample out of order");
            }
            let result = subscriber.receive();
            self.must_fail(
                "samples beyond the quota again",
                &["quota-exceeded"],
                result,
            );
        }
        drop(subscriber);
        drop(publisher);
    }

    // -----------------------------------------------------------------------------------------
    // Model checks and teardown
    // -----------------------------------------------------------------------------------------

    /// Cross-checks the model against what the host reports.
    pub(crate) fn check_channels(&mut self) {
        if self.step.is_multiple_of(8) {
            self.count_subscribers();
            self.check_alive();
        }
        if !self.step.is_multiple_of(64) {
            return;
        }
        // Every byte of every loan, in place, and of every held sample, by copy.
        for p in 0..self.ch.publishers.len() {
            let keys: Vec<u64> = self.ch.publishers[p].loans.keys().copied().collect();
            for packed in keys {
                let result = self.ch.publishers[p].raw.map(unpack(packed));
                let addr = self.must("map a loan", result);
                let data = &self.ch.publishers[p].loans[&packed].data;
                let mut back = vec![0; data.len()];
                // SAFETY: a live loan, mapped read-write at `addr` for its capacity.
                unsafe { raw::copy_out(back.as_mut_ptr(), addr as usize as *const u8, back.len()) };
                if back != *data {
                    self.fail(&format!(
                        "loan {:?} changed behind our back",
                        unpack(packed)
                    ));
                }
            }
        }
        for s in 0..self.ch.subscribers.len() {
            let keys: Vec<u64> = self.ch.subscribers[s].held.keys().copied().collect();
            for packed in keys {
                let len = self.ch.subscribers[s].held[&packed].data.len() as u64;
                let result = self.ch.subscribers[s].raw.read(unpack(packed), 0, len);
                let bytes = self.must("read a whole sample", result);
                if bytes != self.ch.subscribers[s].held[&packed].data {
                    self.fail(&format!(
                        "sample {:?} changed behind our back",
                        unpack(packed)
                    ));
                }
            }
        }
    }

    /// Drops every publisher (its subscribers drain, then see `disconnected`) and every
    /// subscriber, checks that no service is left, and that every quota is whole again.
    pub(crate) fn channel_teardown(&mut self) {
        for sub in &mut self.ch.subscribers {
            sub.pollable = None;
        }
        while !self.ch.publishers.is_empty() {
            let p = self.rng.below(self.ch.publishers.len() as u64) as usize;
            self.drop_publisher_at(p);
        }
        for s in 0..self.ch.subscribers.len() {
            self.drain(s);
            // Drained and disconnected: it stays so.
            if self.receive_on(s) != Got::Disconnected {
                self.fail("a drained subscriber is not disconnected");
            }
        }
        while !self.ch.subscribers.is_empty() {
            let s = self.rng.below(self.ch.subscribers.len() as u64) as usize;
            self.drop_subscriber_at(s);
        }
        if !self.ch.draining.is_empty() {
            self.fail("a service still drains without subscribers");
        }
        self.hog_publishers();
        self.hog_subscribers();
        self.hog_loans();
        self.hog_borrowed();
        for name in std::mem::take(&mut self.ch.services) {
            let result = ch::Subscriber::open(&name, 0);
            self.must_fail(
                "open a service after the teardown",
                &["does-not-exist"],
                result,
            );
            if self.must("exists of a service after the teardown", wit::exists(&name)) {
                self.fail(&format!("the memory of service {name} is left"));
            }
        }
    }
}
