//! Publishers of the channel part: create, drop, loans, send, discard, count.

use super::*;

impl Fuzz {
    pub(super) fn create_publisher(&mut self) {
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

    pub(super) fn drop_publisher(&mut self) {
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
    pub(super) fn drop_publisher_at(&mut self, p: usize) {
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
    pub(super) fn open_dead(&mut self, name: &str) {
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
    pub(super) fn loan_with(&mut self, p: usize, layout: Layout) -> Option<u64> {
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

    pub(super) fn loan(&mut self) {
        let Some(p) = self.sending_publisher() else {
            return self.create_publisher();
        };
        if self.loans_total() >= MAX_LOANS {
            return self.discard();
        }
        let layout = self.sample_layout();
        self.loan_with(p, layout);
    }

    pub(super) fn write_loan(&mut self) {
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
    pub(super) fn map_loan(&mut self) {
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

    pub(super) fn send(&mut self) {
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
    pub(super) fn send_loan(&mut self, p: usize, packed: u64, len: u64) {
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

    pub(super) fn discard(&mut self) {
        let Some(p) = self.publisher_index() else {
            return;
        };
        let Some(packed) = self.loan_of(p) else {
            return;
        };
        self.discard_loan(p, packed);
    }

    pub(super) fn discard_loan(&mut self, p: usize, packed: u64) {
        let offset = unpack(packed);
        let result = self.ch.publishers[p].raw.discard(offset);
        self.must("discard a loan", result);
        self.ch.publishers[p].loans.remove(&packed);
        self.ch.publishers[p].gone.push(offset);
        let again = self.ch.publishers[p].raw.discard(offset);
        self.must_fail("discard twice", &["invalid-offset"], again);
    }

    pub(super) fn count_subscribers(&mut self) {
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
}
