//! The publisher's side of each subscriber slot: joining and leaving, liveness probes,
//! delivery into the submission queue, returns from the completion queue, reclaim.

use std::os::unix::net::SocketAddr;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::freed::Freed;
use super::super::layout::{SLOT_ACTIVE, SLOT_FREE};
use super::super::notify::{address, anybody_waiting_fenced};
use super::super::records::Release;
use super::super::{Overflow, PROBE_INTERVAL, coarse_now_ms, names, pack};
use super::{Publisher, State};
use crate::PointerOffset;

/// Longest wait of a blocked `send` before it checks the subscriber's liveness again.
const BLOCK_SLICE: Duration = Duration::from_millis(10);

/// What the publisher knows of one slot, from its own bookkeeping only.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) attached: bool,
    /// The slot's state word when the occupant joined.
    state_word: u64,
    pub(super) address: Option<SocketAddr>,
    /// The occupant's nonce `address` was made from.
    nonce: u64,
    /// Producer index of the submission queue.
    write: u64,
    /// Sample index at each ring position (the truth, whatever the shared entries say).
    shadow: Vec<u32>,
    /// Consumer index of the completion queue.
    comp_read: u64,
}

impl Conn {
    pub(super) fn detached(buffer_size: usize) -> Self {
        Self {
            attached: false,
            state_word: 0,
            address: None,
            nonce: 0,
            write: 0,
            shadow: vec![0; buffer_size.next_power_of_two()],
            comp_read: 0,
        }
    }
}

/// What keeps joiners off a slot while it is reclaimed (released when dropped).
enum Held {
    Lock(crate::backend::ObjectLock),
    Created(crate::backend::Mapping),
}

impl Held {
    fn release(self) {
        match self {
            Self::Lock(lock) => drop(lock),
            Self::Created(mapping) => drop(mapping),
        }
    }
}

/// The outcome of one delivery attempt.
pub(super) enum Push {
    Delivered,
    /// Not delivered (`DropNewest`, or a queue whose indices are impossible).
    Skipped,
    /// `Overflow::Block` and the subscriber holds all it may.
    Full,
}

impl Publisher {
    /// Per call: takes in joins and leaves; with `full` (every call but `send`, which always
    /// follows a `loan`) also probes liveness when the interval passed and takes returned
    /// samples.
    pub(super) fn maintain(&self, state: &mut State, freed: &mut Freed, full: bool) {
        let joins = self.control.header().live.joins.load(Ordering::Acquire);
        if joins != state.joins_seen {
            state.joins_seen = joins;
            // A join, a leave or a request for a dead subscriber's slot: look at every slot.
            self.scan(state, freed, true);
        } else if full && coarse_now_ms() >= self.next_probe.load(Ordering::Relaxed) {
            self.scan(state, freed, true);
        }
        if !full {
            return;
        }
        for i in 0..state.attached.len() {
            let k = state.attached[i];
            self.take_returns(state, k, freed);
        }
    }

    /// Looks at every slot: attaches new occupants, reclaims dead (with `probe`) or departed
    /// ones, frees slots whose never-attached occupant is gone.
    pub(super) fn scan(&self, state: &mut State, freed: &mut Freed, probe: bool) {
        self.next_probe.store(
            coarse_now_ms() + PROBE_INTERVAL.as_millis() as u64,
            Ordering::Relaxed,
        );
        for k in 0..state.subs.len() {
            let word = self.control.slot(k).control.state.load(Ordering::Acquire);
            let conn = &state.subs[k];
            if conn.attached {
                let changed = word != conn.state_word;
                if changed && word & 0xff == SLOT_ACTIVE && self.occupant_alive(k) {
                    // A new occupant took over a slot its predecessor left normally: the
                    // queues and the record go on as they are.
                    self.adopt_successor(state, k, word);
                } else if (changed || probe) && !self.occupant_alive(k) {
                    self.reclaim(state, k, freed);
                } else if !changed && word & 0xff == SLOT_ACTIVE {
                    // A joiner publishes its nonce after it took the slot (then bumps `joins`):
                    // an attach in between read the previous occupant's nonce, or none.
                    self.refresh_address(state, k);
                }
            } else if word & 0xff == SLOT_ACTIVE {
                if self.occupant_alive(k) {
                    self.attach(state, k, word);
                } else {
                    self.reclaim(state, k, freed);
                }
            } else if word != SLOT_FREE && !self.occupant_alive(k) {
                self.reclaim(state, k, freed);
            }
        }
    }

    fn adopt_successor(&self, state: &mut State, k: usize, word: u64) {
        let nonce = self.control.slot(k).control.nonce.load(Ordering::Acquire);
        let conn = &mut state.subs[k];
        conn.state_word = word;
        conn.nonce = nonce;
        conn.address = address(nonce, 's').ok();
    }

    fn refresh_address(&self, state: &mut State, k: usize) {
        let nonce = self.control.slot(k).control.nonce.load(Ordering::Acquire);
        let conn = &mut state.subs[k];
        if nonce != conn.nonce {
            conn.nonce = nonce;
            conn.address = address(nonce, 's').ok();
        }
    }

    fn attach(&self, state: &mut State, k: usize, word: u64) {
        let nonce = self.control.slot(k).control.nonce.load(Ordering::Acquire);
        let conn = &mut state.subs[k];
        conn.attached = true;
        state.attached.push(k);
        conn.state_word = word;
        conn.nonce = nonce;
        conn.address = address(nonce, 's').ok();
        conn.write = 0;
        conn.comp_read = 0;
    }

    /// Whether slot `k`'s lock object is held. An error other than "not found" counts as
    /// alive: nothing is reclaimed on a guess.
    pub(super) fn occupant_alive(&self, k: usize) -> bool {
        let name = names::lock_name(&self.service, self.facts.epoch, k, &self.config);
        match self.config.get_backend().is_locked(&name) {
            Ok(locked) => locked,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }

    /// Slot `k`'s occupant is gone: releases everything it held, resets the slot, frees it.
    /// Holds the slot's lock object meanwhile (the dead occupant's, or one it creates), so
    /// no joiner takes the slot while it is being reset.
    fn reclaim(&self, state: &mut State, k: usize, freed: &mut Freed) {
        let backend = self.config.get_backend();
        let name = names::lock_name(&self.service, self.facts.epoch, k, &self.config);
        let held = match backend.try_lock(&name) {
            Ok(Some(lock)) => Held::Lock(lock),
            // Alive after all (or a joiner is taking the slot): not now.
            Ok(None) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match names::create_lock_object(&name, &self.config) {
                    Ok(mapping) => Held::Created(mapping),
                    // A joiner created it first: it decides what the slot is now.
                    Err(_) => return,
                }
            }
            Err(_) => return,
        };
        freed.extend(state.records.release_all(k));
        self.control.submission(k).reset();
        self.control.completion(k).reset();
        let slot = &self.control.slot(k).control;
        slot.waiters.store(0, Ordering::Relaxed);
        slot.bell_waiters.store(0, Ordering::Relaxed);
        self.control
            .slot(k)
            .sub_read
            .borrowed
            .store(0, Ordering::Relaxed);
        slot.nonce.store(0, Ordering::Relaxed);
        slot.pid.store(0, Ordering::Relaxed);
        slot.state.store(SLOT_FREE, Ordering::Release);
        state.subs[k] = super::Conn::detached(self.facts.geometry.buffer_size);
        state.attached.retain(|&j| j != k);
        let _ = backend.remove(&name);
        held.release();
    }

    /// Takes subscriber `k`'s returned samples; refuses (and counts) every entry the record
    /// does not confirm.
    fn take_returns(&self, state: &mut State, k: usize, freed: &mut Freed) {
        let State { records, subs, .. } = state;
        let conn = &mut subs[k];
        let mut refused = 0u64;
        let queue = self.control.completion(k);
        match queue.drain(conn.comp_read, |offset, idx| {
            match records.release(k, idx, offset) {
                Release::Freed(offset) => freed.push(offset),
                Release::Kept => {}
                Release::Invalid => refused += 1,
            }
        }) {
            Some(write) => conn.comp_read = write,
            None => refused += 1,
        }
        if refused > 0 {
            self.control
                .header()
                .live
                .violations
                .fetch_add(refused, Ordering::Relaxed);
        }
    }

    /// Puts sample `idx` into subscriber `k`'s queue, applying the overflow policy.
    pub(super) fn push(
        &self,
        state: &mut State,
        k: usize,
        idx: u32,
        offset: PointerOffset,
        len: usize,
        freed: &mut Freed,
    ) -> Push {
        let queue = self.control.submission(k);
        let capacity = queue.capacity();
        // `send` does not take returns up front (its `loan` did); a subscriber that looks
        // full may have given samples back since: take those in before judging.
        let mut returns_taken = false;
        for _ in 0..8 {
            let State { records, subs, .. } = &mut *state;
            let conn = &mut subs[k];
            let Some(read) = queue.observed_read(conn.write) else {
                // Scribbled: put the index back (what was queued stays recorded as held, so
                // nothing is freed under the subscriber; it comes back when it leaves).
                queue.repair_read(conn.write);
                self.control
                    .header()
                    .live
                    .violations
                    .fetch_add(1, Ordering::Relaxed);
                return Push::Skipped;
            };
            let ring_full = conn.write - read == capacity;
            if (ring_full || records.is_full(k)) && !returns_taken {
                returns_taken = true;
                self.take_returns(state, k, freed);
                continue;
            }
            if ring_full || records.is_full(k) {
                match self.overflow {
                    Overflow::DropNewest => {
                        self.probe_one(state, k, freed);
                        return Push::Skipped;
                    }
                    Overflow::Block => return Push::Full,
                    Overflow::DropOldest if ring_full => {
                        if queue.take(read) {
                            let oldest = conn.shadow[queue.position(read)];
                            if let Release::Freed(offset) = records.release_held(k, oldest) {
                                freed.push(offset);
                            }
                        }
                        // Taken by us or by the subscriber: there is room now.
                        continue;
                    }
                    Overflow::DropOldest => {
                        // Holds its maximum without a full queue: a subscriber that does
                        // not return what it received (or is dead).
                        self.probe_one(state, k, freed);
                        return Push::Skipped;
                    }
                }
            }
            queue.push(conn.write, offset.as_u64(), pack(len, idx));
            conn.shadow[queue.position(conn.write)] = idx;
            conn.write += 1;
            records.deliver(idx, k);
            return Push::Delivered;
        }
        Push::Skipped
    }

    fn probe_one(&self, state: &mut State, k: usize, freed: &mut Freed) {
        if !self.occupant_alive(k) {
            self.reclaim(state, k, freed);
        }
    }

    /// `Overflow::Block`: waits, without the state lock, until subscriber `k` receives or
    /// returns something, or dies. Returns whether it did anything meanwhile.
    ///
    /// Its liveness is probed (a few syscalls) only when `stalled` (the previous wait on it
    /// saw nothing happen) or the probe interval passed: a live subscriber draining a full
    /// queue makes a publisher block once per wake-up, and probing each time was most of its
    /// cost.
    pub(super) fn block_on<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        k: usize,
        freed: &mut Freed,
        at_most: Option<Duration>,
        stalled: bool,
    ) -> (MutexGuard<'a, State>, bool) {
        if (stalled || coarse_now_ms() >= self.next_probe.load(Ordering::Relaxed))
            && !self.occupant_alive(k)
        {
            self.reclaim(&mut state, k, freed);
            return (state, true);
        }
        let submission = self.control.submission(k);
        let completion = self.control.completion(k);
        let before = (submission.indices(), completion.indices());
        drop(state);
        {
            // The bell, not the socket: a blocked publisher waits for nothing else, and a
            // subscriber draining a full queue rings it at every half-empty queue.
            let waiting = self.control.publisher_bell().enter();
            if (submission.indices(), completion.indices()) == before {
                waiting.wait(at_most.map_or(BLOCK_SLICE, |left| left.min(BLOCK_SLICE)));
            }
        }
        let progressed = (submission.indices(), completion.indices()) != before;
        let mut state = self.lock();
        self.maintain(&mut state, freed, true);
        (state, progressed)
    }

    /// Wakes every attached subscriber that has a thread waiting.
    pub(super) fn wake_waiting(&self, state: &State) {
        std::sync::atomic::fence(Ordering::SeqCst);
        for &k in &state.attached {
            let conn = &state.subs[k];
            self.control.data_bell(k).ring_fenced();
            if anybody_waiting_fenced(&self.control.slot(k).control.waiters)
                && let Some(address) = &conn.address
            {
                self.notifier.wake(address);
            }
        }
    }
}
