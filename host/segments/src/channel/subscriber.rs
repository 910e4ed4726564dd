//! The subscriber: joins a slot of the service, takes entries from its submission queue,
//! maps their segments through a view and gives samples back through its completion queue.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::layout::{Control, Facts, SLOT_ACTIVE, SLOT_FREE, SLOT_LEFT, Validated, validate_raw};
use super::notify::{Notifier, WaiterGuard, address, anybody_waiting};
use super::queue::Pop;
use super::{ChannelError, Overflow, coarse_now_ms, error::io_error, names, unpack};
use crate::backend::{CreateOptions, Mapping, page_size};
use crate::{AccessMode, Config, OpenError, PointerOffset, View};

/// Longest sleep of a waiting subscriber before it checks that the publisher still lives.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);
/// The same while a pidfd of the publisher wakes the subscriber when it exits (a backstop for
/// a publisher in another pid namespace, or a pid in the header that is not the publisher's).
const WATCHED_SLICE: Duration = Duration::from_secs(1);
/// How often (ms) an idle `receive` may probe the publisher's lock.
const LIVENESS_EVERY_MS: u64 = 10;
/// How often, and how far apart, the last subscriber of a closed service tries to remove it
/// while the publisher finishes its drop.
const CLOSE_ATTEMPTS: usize = 100;
const CLOSE_PAUSE: Duration = Duration::from_millis(2);
/// How long `open` waits for the publisher to reclaim dead subscribers' slots.
const STALE_GRACE: Duration = Duration::from_millis(200);

/// `start + wait`, or about a century later when that does not fit (`Duration::MAX` means
/// "wait forever").
fn later(start: Instant, wait: Duration) -> Instant {
    start
        .checked_add(wait)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600))
}

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
        let publisher_pidfd = super::notify::pidfd(facts.publisher_pid);
        let closed = control.header().closed.load(Ordering::Acquire) != 0;
        if closed || !mapping.is_locked_by_other().unwrap_or(true) {
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
            let created = backend.create(
                &name,
                page_size(),
                &CreateOptions {
                    permissions: self.config.get_permissions(),
                    prefault: false,
                    lock_exclusive: true,
                },
            );
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
            let word = (super::nonce() << 8) | SLOT_ACTIVE;
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

/// The receiving side of a service. `Send + Sync`: every method takes `&self`.
#[derive(Debug)]
pub struct Subscriber {
    service: String,
    config: Config,
    control: Control,
    /// Maps `control`; its lock tells whether the publisher lives.
    mapping: Mapping,
    /// Our slot's lock object, held while we live.
    lock: Mapping,
    view: View,
    facts: Facts,
    overflow: Overflow,
    publisher_address: Option<SocketAddr>,
    /// Readable once the publisher's process exits, while `pidfd_trusted`.
    publisher_pidfd: Option<OwnedFd>,
    /// Cleared when the pidfd fired but the publisher still holds its lock (the header's pid
    /// was not the publisher's): then waits fall back to short slices.
    pidfd_trusted: AtomicBool,
    k: usize,
    state_word: u64,
    notifier: Notifier,
    spin: Duration,
    borrowed: AtomicUsize,
    /// Producer index of our completion queue, guarded by `completion_busy`.
    completion_write: AtomicU64,
    completion_busy: AtomicBool,
    /// Returns that found the completion queue full (only a scribbled index does that).
    refused: AtomicU64,
    next_liveness: AtomicU64,
    gone: AtomicBool,
}

impl Subscriber {
    /// A builder for a subscriber of `service`.
    pub fn builder(service: &str) -> SubscriberBuilder {
        SubscriberBuilder {
            service: service.to_owned(),
            config: Config::default(),
            timeout: Duration::ZERO,
            spin: Duration::ZERO,
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The slot this subscriber occupies.
    pub fn slot(&self) -> usize {
        self.k
    }

    /// Samples received and not yet dropped.
    pub fn borrowed(&self) -> usize {
        self.borrowed.load(Ordering::Relaxed)
    }

    /// Most samples this subscriber may hold at once.
    pub fn max_borrowed(&self) -> usize {
        self.facts.geometry.max_borrowed
    }

    /// Whether a sample is queued.
    pub fn has_samples(&self) -> bool {
        !self.control.submission(self.k).is_empty()
    }

    /// Whether the publisher lives (it holds its lock and did not close the service).
    pub fn is_publisher_alive(&self) -> bool {
        self.control.header().closed.load(Ordering::Acquire) == 0
            && self.mapping.is_locked_by_other().unwrap_or(true)
    }

    /// Gone for good, probed at most every few ms (idle `receive` loops stay cheap).
    fn publisher_gone(&self) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return true;
        }
        let closed = self.control.header().closed.load(Ordering::Acquire) != 0;
        let now = coarse_now_ms();
        let gone = closed
            || (now >= self.next_liveness.load(Ordering::Relaxed) && {
                self.next_liveness
                    .store(now + LIVENESS_EVERY_MS, Ordering::Relaxed);
                !self.mapping.is_locked_by_other().unwrap_or(true)
            });
        if gone {
            self.gone.store(true, Ordering::Relaxed);
        }
        gone
    }

    /// Takes the oldest queued sample; never blocks. `Ok(None)` when nothing is queued,
    /// `PublisherGone` when nothing is queued and the publisher is gone.
    pub fn receive(&self) -> Result<Option<Sample<'_>>, ChannelError> {
        if self.borrowed.fetch_add(1, Ordering::Acquire) >= self.facts.geometry.max_borrowed {
            self.borrowed.fetch_sub(1, Ordering::Release);
            return Err(ChannelError::BorrowLimitReached);
        }
        let result = self.take();
        if !matches!(result, Ok(Some(_))) {
            self.borrowed.fetch_sub(1, Ordering::Release);
        }
        result
    }

    fn take(&self) -> Result<Option<Sample<'_>>, ChannelError> {
        let queue = self.control.submission(self.k);
        let (a, b) = match queue.pop() {
            Pop::Entry(a, b) => (a, b),
            // The publisher is gone only after its last send: look once more, an entry sent
            // just before the end is still worth taking.
            Pop::Empty if self.publisher_gone() => match queue.pop() {
                Pop::Entry(a, b) => (a, b),
                Pop::Empty => return Err(ChannelError::PublisherGone),
                Pop::Corrupt => return Err(ChannelError::Corrupted),
            },
            Pop::Empty => return Ok(None),
            Pop::Corrupt => return Err(ChannelError::Corrupted),
        };
        if self.overflow == Overflow::Block {
            self.wake_publisher();
        }
        let (len, idx) = unpack(b);
        let offset = PointerOffset::from_u64(a);
        match self.map(offset, len) {
            Ok(ptr) => {
                self.note_borrowed();
                Ok(Some(Sample {
                    subscriber: self,
                    ptr,
                    len: len as usize,
                    offset,
                    idx,
                }))
            }
            Err(e) => {
                // Whatever it was, the publisher decides from its record what it means.
                self.give_back(a, idx);
                // A segment that cannot be mapped once the publisher is gone was removed
                // (by `gc`, or by a new publisher of the name), not forged.
                Err(if self.publisher_gone() {
                    ChannelError::PublisherGone
                } else {
                    e
                })
            }
        }
    }

    /// Registers `offset` with the view, checking that `len` bytes from it lie in the
    /// segment's payload.
    fn map(&self, offset: PointerOffset, len: u64) -> Result<*const u8, ChannelError> {
        // SAFETY: unregistered exactly once, by Sample::drop.
        unsafe { self.view.register_and_translate_range(offset, len) }.map_err(|e| match e {
            OpenError::DoesNotExist => ChannelError::PublisherGone,
            OpenError::InvalidOffset | OpenError::Corrupted | OpenError::SegmentReplaced => {
                ChannelError::Corrupted
            }
            other => other.into(),
        })
    }

    /// Publishes the borrowed count for `resmem inspect`.
    fn note_borrowed(&self) {
        self.control.slot(self.k).sub_read.borrowed.store(
            self.borrowed.load(Ordering::Relaxed) as u32,
            Ordering::Relaxed,
        );
    }

    /// Puts an entry into the completion queue. Samples drop on any thread: a tiny spin lock
    /// (a few stores inside, never a syscall) orders the producers.
    fn give_back(&self, offset: u64, idx: u64) {
        let queue = self.control.completion(self.k);
        let mut spins = 0u32;
        while self
            .completion_busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let write = self.completion_write.load(Ordering::Relaxed);
        match queue.observed_read(write) {
            Some(read) if write - read < queue.capacity() && write < u64::MAX => {
                queue.push(write, offset, idx);
                self.completion_write.store(write + 1, Ordering::Relaxed);
            }
            // Only a scribbled index makes an honest subscriber's queue full.
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.completion_busy.store(false, Ordering::Release);
        if self.overflow == Overflow::Block {
            self.wake_publisher();
        }
    }

    fn wake_publisher(&self) {
        if anybody_waiting(&self.control.header().live.publisher_waiters)
            && let Some(address) = &self.publisher_address
        {
            self.notifier.wake(address);
        }
    }

    fn release(&self, offset: PointerOffset, idx: u64) {
        // SAFETY: registered by `map` for this sample, which is being dropped: no further use.
        unsafe { self.view.unregister_offset(offset) };
        self.give_back(offset.as_u64(), idx);
        self.borrowed.fetch_sub(1, Ordering::Release);
        self.note_borrowed();
    }

    /// Like [`Subscriber::receive`], but waits up to `timeout` for a sample, asleep (after
    /// the builder's `spin`, if any): a `send` wakes it.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Option<Sample<'_>>, ChannelError> {
        let deadline = later(Instant::now(), timeout);
        let mut spun = self.spin.is_zero();
        loop {
            if let Some(sample) = self.receive()? {
                return Ok(Some(sample));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if !spun {
                spun = true;
                let until = later(now, self.spin).min(deadline);
                while Instant::now() < until && !self.has_samples() {
                    std::hint::spin_loop();
                }
                continue;
            }
            let _waiting = WaiterGuard::enter(&self.control.slot(self.k).control.waiters);
            if self.has_samples() || self.publisher_gone() {
                continue;
            }
            self.wait_for_data(deadline - now);
        }
    }

    /// Sleeps until a wake-up, the publisher's exit (through its pidfd) or `timeout`, at most
    /// a liveness slice.
    fn wait_for_data(&self, timeout: Duration) {
        let watched = self
            .publisher_pidfd
            .as_ref()
            .filter(|_| self.pidfd_trusted.load(Ordering::Relaxed));
        let slice = if watched.is_some() {
            WATCHED_SLICE
        } else {
            LIVENESS_SLICE
        };
        let exited = self
            .notifier
            .wait_or(timeout.min(slice), watched.map(AsFd::as_fd));
        if exited {
            // Check now, not in 10 ms; a pidfd of some other process stops being used.
            self.next_liveness.store(0, Ordering::Relaxed);
            if !self.publisher_gone() {
                self.pidfd_trusted.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Waits for a sample without blocking the thread: the wake-up socket is registered with
    /// Tokio's reactor while it waits.
    ///
    /// # Panics
    /// Outside a Tokio runtime with the IO and time drivers enabled (as Tokio's own IO does).
    #[cfg(feature = "tokio")]
    pub async fn receive_async(&self) -> Result<Sample<'_>, ChannelError> {
        use std::task::Poll;
        use tokio::io::Interest;
        use tokio::io::unix::AsyncFd;
        // Registered with the reactor for this call (dropped, and deregistered, with it).
        let register = |fd: OwnedFd, what: &str| {
            // SAFETY: the AsyncFd owns its descriptor (a clone of ours), which stays open and
            // the same until the AsyncFd drops it.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(|e| io_error(&e.into(), what))
        };
        loop {
            if let Some(sample) = self.receive()? {
                return Ok(sample);
            }
            let socket = self
                .notifier
                .try_clone()
                .map_err(|e| io_error(&e, "cloning the wake-up socket"))?;
            let socket = register(OwnedFd::from(socket), "registering the wake-up socket")?;
            let pidfd = match self
                .publisher_pidfd
                .as_ref()
                .filter(|_| self.pidfd_trusted.load(Ordering::Relaxed))
                .map(OwnedFd::try_clone)
            {
                Some(Ok(fd)) => register(fd, "registering the publisher's pidfd").ok(),
                _ => None,
            };
            let slice = if pidfd.is_some() {
                WATCHED_SLICE
            } else {
                LIVENESS_SLICE
            };
            let _waiting = WaiterGuard::enter(&self.control.slot(self.k).control.waiters);
            if self.has_samples() || self.publisher_gone() {
                continue;
            }
            let woken = std::future::poll_fn(|cx| {
                if let Poll::Ready(Ok(mut ready)) = socket.poll_read_ready(cx) {
                    self.notifier.drain();
                    ready.clear_ready();
                    return Poll::Ready(false);
                }
                match pidfd.as_ref().map(|fd| fd.poll_read_ready(cx)) {
                    Some(Poll::Ready(_)) => Poll::Ready(true),
                    _ => Poll::Pending,
                }
            });
            if let Ok(true) = tokio::time::timeout(slice, woken).await {
                // The publisher's process exited (or the pid was not the publisher's).
                self.next_liveness.store(0, Ordering::Relaxed);
                if !self.publisher_gone() {
                    self.pidfd_trusted.store(false, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Every sample borrowed `self`, so none is alive. Mark the slot departed, give up the
        // lock object's name, and tell the publisher to reclaim what is still queued.
        let generation = self.state_word >> 8;
        self.control
            .slot(self.k)
            .control
            .state
            .store((generation << 8) | SLOT_LEFT, Ordering::Release);
        // Give back what is queued, so that the next joiner may take the slot over at once.
        let queue = self.control.submission(self.k);
        for _ in 0..queue.capacity() {
            match queue.pop() {
                Pop::Entry(offset, b) => self.give_back(offset, unpack(b).1),
                Pop::Empty | Pop::Corrupt => break,
            }
        }
        let name = names::lock_name(&self.service, self.facts.epoch, self.k, &self.config);
        let backend = self.config.get_backend();
        if backend.is_same_object(&name, &self.lock).unwrap_or(false) {
            let _ = backend.remove(&name);
        }
        self.control
            .header()
            .live
            .joins
            .fetch_add(1, Ordering::AcqRel);
        if self.overflow == Overflow::Block
            && let Some(address) = &self.publisher_address
        {
            self.notifier.wake(address);
        }
        // A publisher that closed with samples still queued left its objects for us; the last
        // subscriber out removes them. (A crashed publisher's service is for `resmem gc`.)
        let ours = || {
            // The name may already be a new publisher's.
            let name = names::control_name(&self.service, &self.config);
            backend
                .is_same_object(&name, &self.mapping)
                .unwrap_or(false)
        };
        if self.control.header().closed.load(Ordering::Acquire) != 0
            && !self.others_alive()
            && ours()
        {
            // The publisher may still be in its own drop (it closes first and lets go of its
            // lock last): give it a moment rather than leave the objects to `gc`.
            for _ in 0..CLOSE_ATTEMPTS {
                match super::remove_stale_service(&self.service, &self.config) {
                    Ok(crate::StaleRemoval::OwnerAlive) => std::thread::sleep(CLOSE_PAUSE),
                    _ => break,
                }
            }
        }
    }
}

impl Subscriber {
    /// Whether another slot has a live occupant.
    fn others_alive(&self) -> bool {
        let backend = self.config.get_backend();
        (0..self.facts.geometry.max_subscribers)
            .filter(|&j| j != self.k)
            .filter(|&j| {
                self.control.slot(j).control.state.load(Ordering::Acquire) & 0xff == SLOT_ACTIVE
            })
            .any(|j| {
                let name = names::lock_name(&self.service, self.facts.epoch, j, &self.config);
                backend.is_locked(&name).unwrap_or(true)
            })
    }
}

/// A received sample, read in place. Dropping it gives it back to the publisher.
#[derive(Debug)]
pub struct Sample<'a> {
    subscriber: &'a Subscriber,
    ptr: *const u8,
    len: usize,
    offset: PointerOffset,
    idx: u64,
}

// SAFETY: the pointer is into a segment the subscriber's view keeps mapped while the offset is
// registered (until drop); the view and subscriber are Sync, so any thread may read and drop.
unsafe impl Send for Sample<'_> {}
// SAFETY: &Sample only reads the bytes.
unsafe impl Sync for Sample<'_> {}

impl Sample<'_> {
    /// The sample's bytes, in the publisher's memory. The publisher does not write a sent
    /// chunk; a hostile process of the same user could (the price of sharing, as for any
    /// chunk).
    pub fn payload(&self) -> &[u8] {
        // SAFETY: `map` checked that ptr..ptr+len lies inside the registered segment's payload,
        // which stays mapped until this sample is dropped.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The chunk's offset, the same in every process.
    pub fn offset(&self) -> PointerOffset {
        self.offset
    }

    /// Bytes in the sample.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sample has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        self.subscriber.release(self.offset, self.idx);
    }
}
