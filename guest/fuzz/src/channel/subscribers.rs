//! Subscribers of the channel part: open, drop, receive, read, map, release, poll, liveness.

use super::*;

impl Fuzz {
    pub(super) fn open_subscriber(&mut self) {
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

    pub(super) fn drop_subscriber(&mut self) {
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
    pub(super) fn drop_subscriber_at(&mut self, s: usize) {
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
    pub(super) fn receive_on(&mut self, s: usize) -> Got {
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

    pub(super) fn receive(&mut self) {
        if let Some(s) = self.receiving_subscriber() {
            self.receive_on(s);
        }
    }

    /// Releases a sample of `s` if it holds its maximum, so that it may receive.
    pub(super) fn make_room(&mut self, s: usize) {
        let sub = &self.ch.subscribers[s];
        if sub.held.len() >= sub.max_borrowed
            && let Some(packed) = self.held_of(s)
        {
            self.release_sample(s, packed);
        }
    }

    /// Receives everything queued for `s` (releasing as it goes), then `disconnected`.
    pub(super) fn drain(&mut self, s: usize) {
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

    pub(super) fn read_sample(&mut self) {
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
    pub(super) fn map_sample(&mut self) {
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

    pub(super) fn release(&mut self) {
        let Some(s) = self.subscriber_index() else {
            return;
        };
        if let Some(packed) = self.held_of(s) {
            self.release_sample(s, packed);
        }
    }

    pub(super) fn release_sample(&mut self, s: usize, packed: u64) {
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
    pub(super) fn poll_subscribers(&mut self) {
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

    pub(super) fn check_alive(&mut self) {
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
}
