//! The publisher's private record of who holds which sample: the ground truth for freeing
//! chunks. Nothing in shared memory is trusted for it: a returned entry counts only if this
//! record says that subscriber holds that sample, so no peer can make the publisher free a
//! chunk twice or while another subscriber still holds it.

/// What a sample index is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Loaned,
    Sent,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    state: State,
    offset: u64,
    /// Holders, plus one while `send` is still delivering it.
    refs: u32,
}

/// Per subscriber slot: the sample indices it holds (queued or received).
#[derive(Debug, Clone)]
struct Holding {
    bits: Vec<u64>,
    count: usize,
}

/// What a returned entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// It was the last reference: the caller frees the chunk at this offset.
    Freed(u64),
    /// Others still hold it.
    Kept,
    /// The subscriber did not hold that sample (or the offset does not match): ignored.
    Invalid,
}

/// Sample indices and their holders.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    samples: Vec<Sample>,
    free: Vec<u32>,
    loans: usize,
    max_loans: usize,
    holdings: Vec<Holding>,
    /// Most samples one subscriber may hold (queue plus borrowed).
    per_subscriber: usize,
}

impl Records {
    pub(crate) fn new(max_loans: usize, subscribers: usize, per_subscriber: usize) -> Self {
        let size = max_loans + subscribers * per_subscriber;
        Self {
            samples: vec![
                Sample {
                    state: State::Free,
                    offset: 0,
                    refs: 0,
                };
                size
            ],
            free: (0..size as u32).rev().collect(),
            loans: 0,
            max_loans,
            holdings: vec![
                Holding {
                    bits: vec![0; size.div_ceil(64)],
                    count: 0,
                };
                subscribers
            ],
            per_subscriber,
        }
    }

    /// Number of sample indices.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.samples.len()
    }

    /// Loans not yet sent (or still being delivered).
    #[cfg(test)]
    pub(crate) fn loans(&self) -> usize {
        self.loans
    }

    /// A sample index for a new loan; `None` at `max_loans`.
    pub(crate) fn loan(&mut self) -> Option<u32> {
        if self.loans >= self.max_loans {
            return None;
        }
        // Held samples are bounded per subscriber, so an index is always free below max_loans.
        let idx = self.free.pop()?;
        self.samples[idx as usize] = Sample {
            state: State::Loaned,
            offset: 0,
            refs: 0,
        };
        self.loans += 1;
        Some(idx)
    }

    /// An unsent loan goes back.
    pub(crate) fn cancel_loan(&mut self, idx: u32) {
        let sample = &mut self.samples[idx as usize];
        debug_assert_eq!(sample.state, State::Loaned);
        sample.state = State::Free;
        self.loans -= 1;
        self.free.push(idx);
    }

    /// A loan is being sent: it holds itself (and counts as a loan) until
    /// [`Records::end_send`], so a `send` blocked by `Overflow::Block` keeps its index.
    pub(crate) fn begin_send(&mut self, idx: u32, offset: u64) {
        let sample = &mut self.samples[idx as usize];
        debug_assert_eq!(sample.state, State::Loaned);
        sample.state = State::Sent;
        sample.offset = offset;
        sample.refs = 1;
    }

    /// Whether subscriber `k` holds as much as it may.
    pub(crate) fn is_full(&self, k: usize) -> bool {
        self.holdings[k].count >= self.per_subscriber
    }

    /// Samples subscriber `k` holds.
    #[cfg(test)]
    pub(crate) fn held_by(&self, k: usize) -> usize {
        self.holdings[k].count
    }

    /// Subscriber `k` now holds `idx` (the caller checked [`Records::is_full`]).
    pub(crate) fn deliver(&mut self, idx: u32, k: usize) {
        let holding = &mut self.holdings[k];
        let (word, bit) = (idx as usize / 64, 1u64 << (idx % 64));
        debug_assert_eq!(holding.bits[word] & bit, 0);
        holding.bits[word] |= bit;
        holding.count += 1;
        self.samples[idx as usize].refs += 1;
    }

    /// `send` is done delivering `idx`.
    pub(crate) fn end_send(&mut self, idx: u32) -> Release {
        self.loans -= 1;
        self.unref(idx)
    }

    fn unref(&mut self, idx: u32) -> Release {
        let sample = &mut self.samples[idx as usize];
        sample.refs -= 1;
        if sample.refs > 0 {
            return Release::Kept;
        }
        sample.state = State::Free;
        self.free.push(idx);
        Release::Freed(sample.offset)
    }

    /// Subscriber `k` gives back sample `idx` at `offset` (from its completion queue, or
    /// taken back from its submission queue).
    pub(crate) fn release(&mut self, k: usize, idx: u64, offset: u64) -> Release {
        let Ok(idx) = u32::try_from(idx) else {
            return Release::Invalid;
        };
        let Some(sample) = self.samples.get(idx as usize) else {
            return Release::Invalid;
        };
        if sample.state != State::Sent || sample.offset != offset {
            return Release::Invalid;
        }
        self.release_held(k, idx)
    }

    /// Subscriber `k` gives back `idx` if, and only if, it holds it (the publisher took it back
    /// from the queue, where its own shadow says which sample lies).
    pub(crate) fn release_held(&mut self, k: usize, idx: u32) -> Release {
        let holding = &mut self.holdings[k];
        let bit = 1u64 << (idx % 64);
        match holding.bits.get_mut(idx as usize / 64) {
            Some(word) if *word & bit != 0 => *word &= !bit,
            _ => return Release::Invalid,
        }
        holding.count -= 1;
        self.unref(idx)
    }

    /// Subscriber `k` is gone: everything it held is released. Returns the offsets to free.
    pub(crate) fn release_all(&mut self, k: usize) -> Vec<u64> {
        let mut freed = Vec::new();
        for word in 0..self.holdings[k].bits.len() {
            let mut bits = std::mem::take(&mut self.holdings[k].bits[word]);
            while bits != 0 {
                let idx = (word * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                if let Release::Freed(offset) = self.unref(idx) {
                    freed.push(offset);
                }
            }
        }
        self.holdings[k].count = 0;
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_freed_by_its_last_holder_only() {
        let mut r = Records::new(2, 2, 3);
        let idx = r.loan().unwrap();
        r.begin_send(idx, 4096);
        r.deliver(idx, 0);
        r.deliver(idx, 1);
        assert_eq!(r.end_send(idx), Release::Kept);
        assert_eq!(r.release(0, idx.into(), 4096), Release::Kept);
        assert_eq!(r.release(0, idx.into(), 4096), Release::Invalid, "twice");
        assert_eq!(
            r.release(1, idx.into(), 8192),
            Release::Invalid,
            "wrong offset"
        );
        assert_eq!(r.release(1, idx.into(), 4096), Release::Freed(4096));
        assert_eq!(
            r.release(1, idx.into(), 4096),
            Release::Invalid,
            "after free"
        );
    }

    #[test]
    fn loans_are_limited_and_dead_holders_release_everything() {
        let mut r = Records::new(2, 1, 4);
        let a = r.loan().unwrap();
        let b = r.loan().unwrap();
        assert_eq!(r.loan(), None);
        r.cancel_loan(b);
        r.begin_send(a, 64);
        r.deliver(a, 0);
        assert_eq!(r.end_send(a), Release::Kept);
        assert_eq!(r.held_by(0), 1);
        assert_eq!(r.release_all(0), vec![64]);
        assert_eq!(r.held_by(0), 0);
        assert_eq!(r.release(0, a.into(), 64), Release::Invalid);
        assert_eq!(
            r.release(0, 1 << 40, 64),
            Release::Invalid,
            "index out of range"
        );
    }

    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// An operation on the record, with indices chosen from what exists at that moment.
    #[derive(Debug, Clone)]
    enum Op {
        Loan,
        Cancel(usize),
        /// Sends the n-th loan to the subscribers in the mask.
        Send(usize, u8),
        /// Subscriber k returns the n-th sample it holds (honestly).
        Return(usize, usize),
        /// Subscriber k returns something made up: (index, offset).
        Forge(usize, u64, u64),
        /// Subscriber k returns the n-th sample it holds twice.
        Twice(usize, usize),
        /// Subscriber k dies.
        Die(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Loan),
            1 => any::<usize>().prop_map(Op::Cancel),
            3 => (any::<usize>(), any::<u8>()).prop_map(|(n, m)| Op::Send(n, m)),
            4 => (0..3usize, any::<usize>()).prop_map(|(k, n)| Op::Return(k, n)),
            1 => (0..3usize, 0..64u64, 0..64u64).prop_map(|(k, i, o)| Op::Forge(k, i, o * 64)),
            1 => (0..3usize, any::<usize>()).prop_map(|(k, n)| Op::Twice(k, n)),
            1 => (0..3usize).prop_map(Op::Die),
        ]
    }

    proptest! {
        /// Against a model of who holds what: a chunk is freed exactly once, exactly when
        /// its last holder let go, and no return the model does not confirm changes anything.
        #[test]
        fn the_record_frees_each_chunk_once_after_its_last_holder(ops in proptest::collection::vec(op(), 1..200)) {
            const SUBS: usize = 3;
            const PER: usize = 4;
            let mut r = Records::new(4, SUBS, PER);
            let mut loans: Vec<u32> = Vec::new();
            // sample index -> (offset, holders)
            let mut sent: BTreeMap<u32, (u64, BTreeSet<usize>)> = BTreeMap::new();
            let mut next_offset = 64u64;
            let mut freed_offsets: BTreeSet<u64> = BTreeSet::new();
            let free = |offset: u64, freed: &mut BTreeSet<u64>| {
                prop_assert!(freed.insert(offset), "offset {} freed twice", offset);
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Loan => match r.loan() {
                        Some(idx) => {
                            prop_assert!(loans.len() < 4);
                            prop_assert!(!loans.contains(&idx) && !sent.contains_key(&idx));
                            loans.push(idx);
                        }
                        None => prop_assert_eq!(loans.len(), 4),
                    },
                    Op::Cancel(n) if !loans.is_empty() => {
                        let idx = loans.remove(n % loans.len());
                        r.cancel_loan(idx);
                    }
                    Op::Send(n, mask) if !loans.is_empty() => {
                        let idx = loans.remove(n % loans.len());
                        let offset = next_offset;
                        next_offset += 64;
                        r.begin_send(idx, offset);
                        let mut holders = BTreeSet::new();
                        for k in 0..SUBS {
                            if mask & (1 << k) != 0 && !r.is_full(k) {
                                r.deliver(idx, k);
                                holders.insert(k);
                            }
                        }
                        match r.end_send(idx) {
                            Release::Freed(o) => {
                                prop_assert!(holders.is_empty());
                                prop_assert_eq!(o, offset);
                                free(o, &mut freed_offsets)?;
                            }
                            Release::Kept => {
                                prop_assert!(!holders.is_empty());
                                sent.insert(idx, (offset, holders));
                            }
                            Release::Invalid => prop_assert!(false, "end_send refused"),
                        }
                    }
                    Op::Return(k, n) | Op::Twice(k, n) => {
                        let held: Vec<u32> = sent.iter().filter(|(_, (_, h))| h.contains(&k)).map(|(i, _)| *i).collect();
                        if held.is_empty() { continue; }
                        let idx = held[n % held.len()];
                        let offset = sent[&idx].0;
                        let times = if matches!(op, Op::Twice(..)) { 2 } else { 1 };
                        for time in 0..times {
                            let result = r.release(k, idx.into(), offset);
                            if time == 1 {
                                prop_assert_eq!(result, Release::Invalid, "second return");
                                continue;
                            }
                            let entry = sent.get_mut(&idx).unwrap();
                            entry.1.remove(&k);
                            if entry.1.is_empty() {
                                prop_assert_eq!(result, Release::Freed(offset));
                                sent.remove(&idx);
                                free(offset, &mut freed_offsets)?;
                            } else {
                                prop_assert_eq!(result, Release::Kept);
                            }
                        }
                    }
                    Op::Forge(k, idx, offset) => {
                        let genuine = sent.get(&(idx as u32)).is_some_and(|(o, h)| *o == offset && h.contains(&k));
                        if genuine { continue; }
                        prop_assert_eq!(r.release(k, idx, offset), Release::Invalid);
                    }
                    Op::Die(k) => {
                        let mut expected = BTreeSet::new();
                        for (idx, (offset, holders)) in sent.iter_mut() {
                            if holders.remove(&k) && holders.is_empty() {
                                expected.insert((*idx, *offset));
                            }
                        }
                        let got: BTreeSet<u64> = r.release_all(k).into_iter().collect();
                        prop_assert_eq!(&got, &expected.iter().map(|(_, o)| *o).collect::<BTreeSet<_>>());
                        for (idx, offset) in expected {
                            sent.remove(&idx);
                            free(offset, &mut freed_offsets)?;
                        }
                        prop_assert_eq!(r.held_by(k), 0);
                    }
                    _ => {}
                }
                for k in 0..SUBS {
                    let held = sent.values().filter(|(_, h)| h.contains(&k)).count();
                    prop_assert_eq!(r.held_by(k), held);
                    prop_assert!(held <= PER);
                }
                prop_assert_eq!(r.loans(), loans.len());
                prop_assert_eq!(r.free.len() + loans.len() + sent.len(), r.capacity());
            }
        }
    }
}
