//! The driver's publisher and subscriber calls, checked against the clean model (see the
//! module docs of `channel_parse`).

use super::*;

enum Job {
    Copy(Vec<u8>),
    Loan(SampleMut<'static>),
}

impl Job {
    fn run(self, publisher: &Publisher) -> Result<usize, ChannelError> {
        match self {
            Self::Copy(data) => publisher.send_copy(&data),
            Self::Loan(sample) => sample.send(),
        }
    }
}

impl World {
    fn loan_layout(input: &mut Input) -> Layout {
        let (s, a) = (input.b(), input.b());
        let size = match s % 8 {
            0..=3 => usize::from(a % 64),
            4 | 5 => 64 + usize::from(a) * 2,
            6 => 512 + usize::from(a) * 32,
            _ => 8192 + usize::from(a) * 256,
        };
        let align = [8, 1, 8, 64, 8, 4096, 8, 16][usize::from(s / 8) % 8];
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    pub(super) fn loan(&mut self, input: &mut Input) {
        let layout = Self::loan_layout(input);
        let tag = input.b();
        let Some(publisher) = self.publisher() else {
            return;
        };
        let before = self.loans.len();
        match publisher.loan(layout) {
            Ok(mut sample) => {
                assert!(before < LOANS, "a loan beyond max_loans");
                assert_eq!(
                    (sample.len(), sample.capacity()),
                    (layout.size(), layout.size())
                );
                for (i, byte) in sample.payload_mut().iter_mut().enumerate() {
                    *byte = pattern(tag, i);
                }
                self.offsets.push(sample.offset().as_u64());
                self.loans.push((sample, tag));
                self.note("loan", "ok");
            }
            Err(e) => {
                let limit = e == ChannelError::LoanLimitReached;
                assert_eq!(
                    limit,
                    before == LOANS,
                    "loan with {before} loans held: {e:?}"
                );
                assert!(limit || matches!(e, ChannelError::Alloc(_)), "loan: {e:?}");
                self.note("loan", &kind(&e));
            }
        }
    }

    pub(super) fn send_loan(&mut self, input: &mut Input) {
        let (pick, mode, n) = (usize::from(input.b()), input.b(), usize::from(input.b()));
        if self.loans.is_empty() {
            return;
        }
        let (mut sample, tag) = self.loans.remove(pick % self.loans.len());
        let capacity = sample.capacity();
        let set = match mode % 4 {
            0 => None,
            1 => Some(n % (capacity + 1)),
            2 => Some(capacity + 1 + n),
            _ => Some(0),
        };
        if let Some(n) = set {
            sample.set_len(n);
        }
        let too_long = set.filter(|&n| n > capacity);
        assert_eq!(
            sample.len(),
            set.filter(|&n| n <= capacity).unwrap_or(capacity)
        );
        let (offset, len) = (sample.offset().as_u64(), sample.len());
        let result = self.run_send(Job::Loan(sample));
        if let Some(len) = too_long {
            assert_eq!(result, Err(ChannelError::InvalidLength { len, capacity }));
            self.note("send", "InvalidLength");
        } else {
            assert!(result.is_ok(), "send of a loan: {result:?}");
            self.sent_ok(result, Some(offset), len, tag, "send");
        }
    }

    pub(super) fn send_copy(&mut self, input: &mut Input) {
        let len = Self::loan_layout(input).size();
        let tag = input.b();
        if self.publisher.is_none() {
            return;
        }
        let data: Vec<u8> = (0..len).map(|i| pattern(tag, i)).collect();
        let before = self.loans.len();
        let result = self.run_send(Job::Copy(data));
        match &result {
            Err(ChannelError::LoanLimitReached) => assert_eq!(before, LOANS),
            Err(ChannelError::Alloc(_)) | Ok(_) => assert!(before < LOANS),
            Err(e) => panic!("send_copy: {e:?}"),
        }
        self.sent_ok(result, None, len, tag, "send_copy");
    }

    /// Records a sent sample, and in a clean run checks `delivered` against the model.
    fn sent_ok(
        &mut self,
        result: Result<usize, ChannelError>,
        offset: Option<u64>,
        len: usize,
        tag: u8,
        what: &str,
    ) {
        let delivered = match result {
            Ok(n) => n,
            Err(e) => return self.note(what, &kind(&e)),
        };
        self.note(what, if delivered == 0 { "nobody" } else { "ok" });
        let index = self.sent.len();
        self.sent.push(Sent {
            generation: self.generation,
            offset,
            len,
            tag,
        });
        if self.dirty {
            assert!(
                delivered <= SUBSCRIBERS,
                "delivered to {delivered} subscribers"
            );
            if delivered < self.current() {
                self.note(what, "skipped-subscriber");
            }
            return;
        }
        let (mut expected, mut full) = (0, false);
        for sub in self
            .subs
            .iter_mut()
            .filter(|s| s.generation == self.generation)
        {
            if sub.queue.len() == BUFFER {
                full = true;
                match self.overflow {
                    Overflow::DropNewest => continue,
                    Overflow::DropOldest => drop(sub.queue.pop_front()),
                    Overflow::Block => panic!("a blocking send into a full queue returned"),
                    other => panic!("the model does not know overflow policy {other:?}"),
                }
            }
            sub.queue.push_back(index);
            expected += 1;
        }
        if full {
            let kind = format!("full-queue-{:?}", self.overflow);
            self.note(what, &kind);
        }
        assert_eq!(
            delivered, expected,
            "clean run: send delivered to the wrong subscribers"
        );
    }

    /// Sends; under `Overflow::Block` on a helper thread while this one makes room.
    fn run_send(&mut self, job: Job) -> Result<usize, ChannelError> {
        let publisher = self.publisher().expect("callers check for a publisher");
        if self.overflow != Overflow::Block {
            return job.run(publisher);
        }
        if !self.dirty {
            self.make_room();
        }
        let mut stalled = false;
        let result = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            scope.spawn(move || tx.send(job.run(publisher)));
            let mut step = 0;
            loop {
                let wait = if self.dirty { 20 } else { 2000 };
                match rx.recv_timeout(Duration::from_millis(wait)) {
                    Ok(result) => return result,
                    // The helper panicked; the scope passes the panic on.
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(ChannelError::InternalError("send panicked".into()));
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        stalled |= !self.dirty;
                        if step == 250 && self.subs.is_empty() {
                            // A hang, not a panic: the scope would wait for the helper.
                            eprintln!("BUG: a blocked send does not return without subscribers");
                        }
                        self.rescue(step);
                        step += 1;
                    }
                }
            }
        });
        assert!(
            !stalled,
            "clean run: a send under Overflow::Block stalled with room"
        );
        result
    }

    /// Clean run, `Overflow::Block`: no queue of the model is full before a send.
    pub(super) fn make_room(&mut self) {
        for i in 0..self.subs.len() {
            let sub = &self.subs[i];
            if sub.generation == self.generation && sub.queue.len() == BUFFER {
                let id = sub.id;
                self.held.retain(|h| h.sub != id);
                self.receive(i, false);
                self.held.retain(|h| h.sub != id);
                self.note("block", "made-room");
            }
        }
    }

    /// A blocked send waits: receive and give back everything, then drop subscribers.
    fn rescue(&mut self, step: usize) {
        self.held.clear();
        for i in 0..self.subs.len() {
            for _ in 0..BUFFER + 2 {
                match self.subs[i].sub.get().receive() {
                    Ok(Some(sample)) => drop(std::hint::black_box(sample.payload().to_vec())),
                    _ => break,
                }
            }
        }
        self.note("block", "rescued");
        if step > 0 && !self.subs.is_empty() {
            self.drop_sub(0);
            self.note("block", "rescue-dropped");
        }
    }

    pub(super) fn receive(&mut self, pick: usize, retry: bool) {
        if self.subs.is_empty() {
            return;
        }
        let i = pick % self.subs.len();
        let (id, sub) = (self.subs[i].id, self.subs[i].sub.get());
        let held = self.held.iter().filter(|h| h.sub == id).count();
        assert_eq!(sub.borrowed(), held, "borrowed() against the samples held");
        let result = sub.receive();
        let limit = matches!(result, Err(ChannelError::BorrowLimitReached));
        assert_eq!(
            limit,
            held >= sub.max_borrowed(),
            "receive holding {held}: {:?}",
            result.as_ref().map(|s| s.as_ref().map(Sample::len))
        );
        if limit {
            self.note("receive", "BorrowLimitReached");
            if retry {
                let first = self
                    .held
                    .iter()
                    .position(|h| h.sub == id)
                    .expect("one held");
                self.held.remove(first);
                let again = sub.receive();
                assert_ne!(
                    again.as_ref().err(),
                    Some(&ChannelError::BorrowLimitReached)
                );
                self.note("receive", "after-limit");
                self.received(i, again);
            }
            return;
        }
        self.received(i, result);
    }

    fn received(&mut self, i: usize, result: Result<Option<Sample<'static>>, ChannelError>) {
        let sub = &mut self.subs[i];
        let id = sub.id;
        let gone = self.publisher.is_none() || sub.generation != self.generation;
        let clean = !self.dirty;
        let sample = match result {
            Ok(Some(sample)) => sample,
            Ok(None) => {
                assert!(
                    !clean || (sub.queue.is_empty() && !gone),
                    "clean run: nothing received"
                );
                return self.note("receive", "none");
            }
            Err(e) => {
                if clean {
                    let expected = e == ChannelError::PublisherGone
                        || (e == ChannelError::Corrupted && !sub.queue.is_empty());
                    assert!(gone && expected, "clean run: receive failed: {e:?}");
                    sub.queue.pop_front();
                }
                return self.note("receive", &kind(&e));
            }
        };
        let payload = sample.payload();
        assert_eq!(payload.len(), sample.len());
        let offset = sample.offset().as_u64();
        let generation = sub.generation;
        if let Some(p) = (self.publisher.as_ref()).filter(|_| generation == self.generation) {
            // Translated through the driver's own view: where it maps the same segment object
            // (process-local objects have one address), the sample lies inside its payload.
            let at = sample.offset();
            // SAFETY: unregistered right below; the address is only compared.
            if let Ok(ptr) = unsafe { p.memory.register_and_translate_offset(at) } {
                let size = p.memory.segment_payload_size(at.segment_id());
                // SAFETY: registered just above; `ptr` is not dereferenced.
                unsafe { p.memory.unregister_offset(at) };
                if std::ptr::eq(ptr, payload.as_ptr()) {
                    let end = at.offset() + payload.len() as u64;
                    assert!(
                        size.is_some_and(|size| end <= size as u64),
                        "a sample ends past its segment"
                    );
                }
            }
        }
        // Every byte is read.
        std::hint::black_box(payload.iter().fold(0u8, |x, &b| x ^ b));
        let is = |s: &Sent| {
            s.generation == generation
                && s.len == payload.len()
                && s.offset.is_none_or(|o| o == offset)
                && payload
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern(s.tag, i))
        };
        let sent = if clean {
            let index = sub
                .queue
                .pop_front()
                .expect("clean run: a sample beyond the model");
            assert!(
                is(&self.sent[index]),
                "clean run: a sample is not the one sent"
            );
            self.sent[index].offset = Some(offset);
            Some(index)
        } else {
            self.sent.iter().rposition(is)
        };
        self.out.received += 1;
        if sent.is_none() {
            self.out.forged += 1;
            self.note("receive", "forged");
        } else {
            self.note("receive", "sent");
        }
        self.offsets.push(offset);
        self.held.push(Held {
            sub: id,
            sample,
            sent,
        });
    }

    pub(super) fn open(&mut self) {
        if self.opens >= MAX_OPENS {
            return;
        }
        self.opens += 1;
        let expected = self
            .publisher
            .as_ref()
            .map(|p| layout::validate(&snapshot(&p.control), &self.prefix));
        let result = Subscriber::builder(SERVICE).config(&self.config).open();
        let error = result.as_ref().err();
        match &expected {
            // No publisher: gone, or closed with samples left for draining subscribers.
            None => assert!(
                matches!(
                    error,
                    Some(&ChannelError::DoesNotExist | &ChannelError::PublisherGone)
                ),
                "open without a publisher: {error:?}"
            ),
            Some(Err(e)) => assert_eq!(error, Some(e), "open against validate"),
            Some(Ok(Validated::NotReady)) => assert_eq!(error, Some(&ChannelError::DoesNotExist)),
            Some(Ok(_)) => {}
        }
        if !self.dirty && self.publisher.is_some() {
            let full = self.current() == SUBSCRIBERS;
            let limit = error == Some(&ChannelError::SubscriberLimitReached);
            assert!(
                if full { limit } else { error.is_none() },
                "clean run: open {error:?}"
            );
        }
        let subscriber = match result {
            Ok(subscriber) => subscriber,
            Err(e) => return self.note("open", &kind(&e)),
        };
        if let Some(Ok(Validated::Ready(facts))) = expected {
            assert!(subscriber.slot() < facts.geometry.max_subscribers);
            assert_eq!(subscriber.max_borrowed(), facts.geometry.max_borrowed);
            let forged = facts.geometry.slot_stride != slot_stride(BUFFER, BORROWED)
                || facts.geometry.max_subscribers != SUBSCRIBERS;
            self.note("open", if forged { "ok-forged-geometry" } else { "ok" });
        }
        assert_eq!(subscriber.borrowed(), 0);
        let _ = (subscriber.has_samples(), subscriber.is_publisher_alive());
        self.next_sub += 1;
        self.subs.push(Sub {
            id: self.next_sub,
            generation: self.generation,
            sub: Leaked::new(subscriber),
            queue: VecDeque::new(),
        });
    }

    pub(super) fn drop_sub(&mut self, pick: usize) {
        if self.subs.is_empty() {
            return;
        }
        let sub = self.subs.remove(pick % self.subs.len());
        self.held.retain(|h| h.sub != sub.id);
        // SAFETY: its samples, the only borrows of the subscriber, were just dropped.
        unsafe { sub.sub.free() };
        self.note("subscriber", "dropped");
    }
}
