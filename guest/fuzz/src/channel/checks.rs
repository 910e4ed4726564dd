//! Cross-checks of the model against the host, and the teardown that must leave nothing.

use super::*;

impl Fuzz {
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
