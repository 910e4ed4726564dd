//! The quota hogs: publishers, subscribers, loans and held samples until the host refuses, exactly at its default quota.

use super::*;

impl Fuzz {
    pub(super) fn channel_hog(&mut self) {
        match self.rng.below(4) {
            0 => self.hog_publishers(),
            1 => self.hog_subscribers(),
            2 => self.hog_loans(),
            _ => self.hog_borrowed(),
        }
    }

    /// Publishers until the host refuses: exactly what the quota leaves.
    pub(super) fn hog_publishers(&mut self) {
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
    pub(super) fn hog_subscribers(&mut self) {
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
    pub(super) fn hog_loans(&mut self) {
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
    pub(super) fn hog_borrowed(&mut self) {
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
}
