//! Hostile channel calls: forged offsets, foreign handles, lookalike services, each with the error it must produce.

use super::*;

impl Fuzz {
    /// An offset that may or may not be anybody's.
    pub(super) fn forged(&mut self) -> PointerOffset {
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
    pub(super) fn not_a_loan(&mut self, p: usize, offset: PointerOffset, what: &str) {
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
    pub(super) fn not_a_sample(&mut self, s: usize, offset: PointerOffset, what: &str) {
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
    pub(super) fn foreign_offsets(&self) -> Vec<PointerOffset> {
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
    pub(super) fn channel_hostile(&mut self) {
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
    pub(super) fn lookalike(&mut self) {
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
}
