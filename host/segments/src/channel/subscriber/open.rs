//! Opening a subscriber: finding the publisher's control object and memory, taking a slot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::super::later;
use super::super::layout::{
    Control, Facts, SLOT_ACTIVE, SLOT_FREE, SLOT_LEFT, Validated, validate_raw,
};
use super::super::notify::{Notifier, address, anybody_waiting, has_exited};
use super::super::{ChannelError, Overflow, error::io_error, names};
use super::Subscriber;
use crate::backend::Mapping;
use crate::{AccessMode, Config, OpenError, View};

/// How long `open` waits for the publisher to reclaim dead subscribers' slots.
const STALE_GRACE: Duration = Duration::from_millis(200);

/// Configures and opens a [`Subscriber`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct SubscriberBuilder {
    service: String,
    config: Config,
    timeout: Duration,
    spin: Duration,
}

impl SubscriberBuilder {
    pub(super) fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            config: Config::default(),
            timeout: Duration::ZERO,
            spin: Duration::ZERO,
        }
    }

    /// Where the service's objects live and how they are named.
    pub fn config(mut self, config: &Config) -> Self {
        self.config = config.clone();
        self
    }

    /// How long `open` waits for a publisher that does not exist yet or is still creating
    /// the service (and for a dead subscriber's slot to be reclaimed). Default: zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long `receive_timeout` busy-polls before it sleeps: lower latency when samples
    /// come close together, at the cost of CPU while waiting. Default: zero (never spins).
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Opens the service and takes a free subscriber slot.
    pub fn open(self) -> Result<Subscriber, ChannelError> {
        names::validate(&self.service, &self.config)?;
        let start = Instant::now();
        let deadline = later(start, self.timeout);
        // Dead subscribers' slots: the publisher reclaims them when asked (at its next call),
        // so a joiner gives it a moment even with a zero timeout.
        let stale_deadline = deadline.max(start + STALE_GRACE);
        let mut asked_for_reclaim = false;
        loop {
            let (error, until) = match self.try_open(!asked_for_reclaim) {
                Ok(subscriber) => return Ok(subscriber),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Retry(e)) => (e, deadline),
                Err(Attempt::SlotsStale) => {
                    asked_for_reclaim = true;
                    (ChannelError::SubscriberLimitReached, stale_deadline)
                }
            };
            if Instant::now() >= until {
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// One attempt; `ask` bumps the membership counter when only stale slots are left, so
    /// that the publisher reclaims them.
    fn try_open(&self, ask: bool) -> Result<Subscriber, Attempt> {
        let backend = self.config.get_backend();
        let control_name = names::control_name(&self.service, &self.config);
        let mapping = match backend.open(&control_name, AccessMode::ReadWrite) {
            Ok(mapping) => mapping,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Attempt::Retry(ChannelError::DoesNotExist));
            }
            Err(e) => {
                return Err(match io_error(&e, "opening the control object") {
                    e @ ChannelError::DoesNotExist => Attempt::Retry(e),
                    e => Attempt::Failed(e),
                });
            }
        };
        // SAFETY: the mapping is ours for the duration of the call.
        let facts = match unsafe {
            validate_raw(mapping.as_ptr(), mapping.len(), self.config.get_prefix())
        } {
            Ok(Validated::Ready(facts)) => facts,
            Ok(Validated::NotReady) => return Err(Attempt::Retry(ChannelError::DoesNotExist)),
            Err(e @ ChannelError::DoesNotExist) => return Err(Attempt::Retry(e)),
            Err(e) => return Err(Attempt::Failed(e)),
        };
        // SAFETY: validated: total_size <= len, page aligned; the mapping moves into the
        // subscriber with `control`.
        let control = unsafe { Control::new(mapping.as_ptr(), facts.geometry) };
        // Opened before the lock is checked: if the lock is held afterwards, the pid was the
        // live publisher's when the pidfd was made (unless the header lies, which only costs
        // a wake-up: see `wait_for_data`).
        let publisher_pidfd = super::super::notify::pidfd(facts.publisher_pid);
        let closed = control.header().closed.load(Ordering::Acquire) != 0;
        if closed || !mapping.is_locked_by_other().unwrap_or(true) {
            return Err(Attempt::Retry(ChannelError::PublisherGone));
        }
        if has_exited(publisher_pidfd.as_ref(), facts.publisher_pid) && remover_lets_go(&mapping) {
            // The lock was a remover's, taking the dead publisher's service down.
            return Err(Attempt::Retry(ChannelError::PublisherGone));
        }
        let view = match View::builder(&self.service)
            .config(&self.config)
            .open(AccessMode::Read)
        {
            Ok(view) => view,
            Err(OpenError::DoesNotExist | OpenError::InitializationNotYetFinalized) => {
                return Err(Attempt::Retry(ChannelError::DoesNotExist));
            }
            Err(OpenError::OwnerDead) => return Err(Attempt::Retry(ChannelError::PublisherGone)),
            Err(e) => return Err(Attempt::Failed(e.into())),
        };
        if view.header_info().memory_id != facts.memory_id {
            // The memory and the control object are of different publishers (one is being
            // replaced): look again.
            return Err(Attempt::Retry(ChannelError::DoesNotExist));
        }
        // Bound before the slot is taken: the nonce that names it is in the slot before the
        // publisher can see the slot active.
        let (notifier, nonce) = Notifier::bind('s')
            .map_err(|e| Attempt::Failed(io_error(&e, "binding the wake-up socket")))?;
        let joined = match self.join(&control, &facts, nonce) {
            Err(Attempt::SlotsStale) if ask => {
                control.header().live.joins.fetch_add(1, Ordering::AcqRel);
                return Err(Attempt::SlotsStale);
            }
            other => other?,
        };
        let Joined {
            k,
            lock,
            word: state_word,
            completion_write,
        } = joined;
        control.header().live.joins.fetch_add(1, Ordering::AcqRel);
        let publisher_address = address(facts.epoch, 'p').ok();
        if anybody_waiting(&control.header().live.publisher_waiters)
            && let Some(address) = &publisher_address
        {
            // A publisher in `wait_for_subscribers`.
            notifier.wake(address);
        }
        Ok(Subscriber {
            id: super::super::detached::next_owner_id(),
            service: self.service.clone(),
            config: self.config.clone(),
            control,
            mapping,
            lock,
            view,
            overflow: Overflow::from_code(facts.overflow),
            publisher_address,
            publisher_pidfd,
            pidfd_trusted: AtomicBool::new(true),
            facts,
            k,
            state_word,
            notifier,
            spin: self.spin,
            borrowed: AtomicUsize::new(0),
            completion_write: AtomicU64::new(completion_write),
            completion_busy: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            next_liveness: AtomicU64::new(0),
            gone: AtomicBool::new(false),
            last_taken_ms: AtomicU64::new(0),
            yielding: Default::default(),
        })
    }

    /// Takes a slot. Creating its lock object (exclusive, locked) is the claim, and it
    /// excludes the publisher's reclaim too (which holds the same object meanwhile). The slot
    /// must then be free (reclaimed by the publisher) or left by a subscriber that dropped
    /// normally, which gave back everything first: its queues are taken over as they are.
    /// Returns the slot, its lock object, its state word and the completion index to go on
    /// from.
    fn join(&self, control: &Control, facts: &Facts, nonce: u64) -> Result<Joined, Attempt> {
        let backend = self.config.get_backend();
        let mut stale = false;
        for k in 0..facts.geometry.max_subscribers {
            let name = names::lock_name(&self.service, facts.epoch, k, &self.config);
            let state = &control.slot(k).control.state;
            let created = names::create_lock_object(&name, &self.config);
            let lock = match created {
                Ok(lock) => lock,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if backend.is_locked(&name).unwrap_or(true) {
                        continue; // a live occupant (or a reclaim in progress)
                    }
                    if state.load(Ordering::Acquire) == SLOT_FREE {
                        // A joiner died between creating it and taking the slot: nobody
                        // holds anything here. Remove it (under its lock) for the next round.
                        if let Ok(Some(held)) = backend.try_lock(&name) {
                            if held.is_linked().unwrap_or(false) {
                                let _ = backend.remove(&name);
                            }
                            drop(held);
                        }
                    }
                    // A dead occupant the publisher has not reclaimed yet, or a slot free
                    // again for the retry.
                    stale = true;
                    continue;
                }
                Err(e) => {
                    return Err(Attempt::Failed(io_error(&e, "creating the lock object")));
                }
            };
            let word = (super::super::nonce() << 8) | SLOT_ACTIVE;
            let current = state.load(Ordering::Acquire);
            let took = match current & 0xff {
                SLOT_FREE if current == SLOT_FREE => Some(0),
                // Taken over as it is, if its completion queue is plausible (else the
                // publisher resets the slot when it reclaims it).
                SLOT_LEFT => {
                    let queue = control.completion(k);
                    let (write, _) = queue.indices();
                    queue.observed_read(write).map(|_| write)
                }
                _ => None,
            };
            if took.is_some() {
                // Ours to write while we hold the lock object; published by the state CAS.
                let slot = &control.slot(k);
                slot.control.nonce.store(nonce, Ordering::Relaxed);
                slot.control
                    .pid
                    .store(std::process::id(), Ordering::Relaxed);
                slot.control.waiters.store(0, Ordering::Relaxed);
                slot.control.bell_waiters.store(0, Ordering::Relaxed);
                slot.sub_read.borrowed.store(0, Ordering::Relaxed);
            }
            match took {
                Some(completion_write)
                    if state
                        .compare_exchange(current, word, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok() =>
                {
                    return Ok(Joined {
                        k,
                        lock,
                        word,
                        completion_write,
                    });
                }
                _ => {
                    // Occupied in the control object without a lock object: a dead occupant
                    // whose object vanished. The publisher reclaims it.
                    let _ = backend.remove(&name);
                    drop(lock);
                    stale = true;
                }
            }
        }
        Err(if stale {
            Attempt::SlotsStale
        } else {
            Attempt::Retry(ChannelError::SubscriberLimitReached)
        })
    }
}

struct Joined {
    k: usize,
    lock: Mapping,
    word: u64,
    completion_write: u64,
}

enum Attempt {
    /// Worth trying again until the timeout.
    Retry(ChannelError),
    /// Final.
    Failed(ChannelError),
    /// No free slot, but some are held by dead or departed subscribers.
    SlotsStale,
}

/// How long a held lock of an exited publisher is watched for a remover letting go.
const REMOVER_GRACE: Duration = Duration::from_millis(100);

/// Whether the lock of a service whose publisher has exited is let go within
/// [`REMOVER_GRACE`]: a remover of stale services holds it only while it removes the objects.
/// A lock held longer is taken for the publisher's (one in another pid namespace, whose pid
/// means nothing here).
fn remover_lets_go(mapping: &Mapping) -> bool {
    let deadline = Instant::now() + REMOVER_GRACE;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        if !mapping.is_locked_by_other().unwrap_or(true) {
            return true;
        }
    }
    false
}
