//! The subscriber: joins a slot of the service, takes entries from its submission queue,
//! maps their segments through a view and gives samples back through its completion queue.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::layout::{Control, Facts, SLOT_ACTIVE, SLOT_LEFT};
use super::notify::{Notifier, WaiterGuard, anybody_waiting_fenced};
use super::queue::Pop;
use super::{ChannelError, Overflow, coarse_now_ms, later, names, unpack};
use crate::backend::Mapping;
use crate::{Config, OpenError, PointerOffset, View};

/// Longest sleep of a waiting subscriber before it checks that the publisher still lives.
const LIVENESS_SLICE: Duration = Duration::from_millis(100);
/// The same while a pidfd of the publisher wakes the subscriber when it exits (a backstop for
/// a publisher in another pid namespace, or a pid in the header that is not the publisher's).
const WATCHED_SLICE: Duration = Duration::from_secs(1);
/// A `receive_timeout` that took a sample this recently (ms) waits on the slot's bell (a
/// futex, cheap to ring) in slices of `BELL_SLICE`; an idle one waits on the socket next to
/// the publisher's pidfd, which wakes it at once when the publisher dies.
const HOT_MS: u64 = 20;
const BELL_SLICE: Duration = Duration::from_millis(10);
/// How often (ms) an idle `receive` may probe the publisher's lock.
const LIVENESS_EVERY_MS: u64 = 10;
/// How often, and how far apart, the last subscriber of a closed service tries to remove it
/// while the publisher finishes its drop.
const CLOSE_ATTEMPTS: usize = 100;
const CLOSE_PAUSE: Duration = Duration::from_millis(2);
mod open;
mod yielding;

use yielding::Yielding;

pub use open::SubscriberBuilder;

/// The receiving side of a service. `Send + Sync`: every method takes `&self`.
#[derive(Debug)]
pub struct Subscriber {
    /// Tells its detached samples from other subscribers'.
    pub(super) id: u64,
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
    /// When `receive_timeout` last returned a sample (coarse ms).
    last_taken_ms: AtomicU64,
    /// Whether a hot `receive_timeout` yields before it sleeps.
    yielding: Yielding,
}

impl Subscriber {
    /// A builder for a subscriber of `service`.
    pub fn builder(service: &str) -> SubscriberBuilder {
        SubscriberBuilder::new(service)
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

    /// Where segment `id` of the publisher's memory is mapped in this process, if a sample
    /// in it was received (the newest segment stays mapped after its samples are dropped).
    pub fn segment_region(&self, id: crate::SegmentId) -> Option<crate::SegmentRegion> {
        self.view.segment_region(id)
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

    /// Wakes a publisher blocked on this queue once half of it (at least one entry) is free:
    /// woken at every take, a publisher refills one entry per wake-up and sleeps again, so
    /// publisher and subscriber ping-pong at the wake-up latency. A publisher only blocks on
    /// a full queue (the held limit is the queue plus `max_borrowed`, which `receive` keeps),
    /// so a return with the queue fuller than that cannot unblock it either.
    fn wake_publisher(&self) {
        let queue = self.control.submission(self.k);
        let capacity = queue.capacity();
        let low_water = capacity - (capacity / 2).max(1);
        if queue.len_hint() > low_water {
            return;
        }
        // One fence for both: the bell (a blocked `send`) and the socket (a publisher in
        // `wait_for_subscribers`).
        std::sync::atomic::fence(Ordering::SeqCst);
        self.control.publisher_bell().ring_fenced();
        if anybody_waiting_fenced(&self.control.header().live.publisher_waiters)
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
    /// the builder's `spin`, if any): a `send` wakes it. A subscriber that took a sample in
    /// the last 20 ms first yields its CPU a few times, for a publisher that may share it
    /// (not after a sample above 64 KiB, nor while yields give the CPU to somebody else).
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Option<Sample<'_>>, ChannelError> {
        let deadline = later(Instant::now(), timeout);
        let mut spun = self.spin.is_zero();
        loop {
            if let Some(sample) = self.receive()? {
                self.last_taken_ms.store(coarse_now_ms(), Ordering::Relaxed);
                self.yielding.taken(sample.len());
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
            if coarse_now_ms().saturating_sub(self.last_taken_ms.load(Ordering::Relaxed)) < HOT_MS {
                let queue = self.control.submission(self.k);
                if self
                    .yielding
                    .round(|| self.has_samples(), || queue.len_hint())
                {
                    continue;
                }
                let waiting = self.control.data_bell(self.k).enter();
                if self.has_samples() || self.publisher_gone() {
                    continue;
                }
                waiting.wait((deadline - now).min(BELL_SLICE));
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
        loop {
            if let Some(sample) = self.receive()? {
                return Ok(sample);
            }
            self.ready_async().await?;
        }
    }

    /// Whether [`Subscriber::receive`] would return at once: a sample is queued or the
    /// publisher is gone.
    pub fn is_ready(&self) -> bool {
        self.has_samples() || self.publisher_gone()
    }

    /// Waits, without blocking the thread and without taking anything, until
    /// [`Subscriber::is_ready`]: what a `wasi:io/poll` pollable of the subscriber awaits.
    /// Fails only when the wake-up socket cannot be registered with the reactor.
    ///
    /// # Panics
    /// Outside a Tokio runtime with the IO and time drivers enabled (as Tokio's own IO does).
    #[cfg(feature = "tokio")]
    pub async fn ready_async(&self) -> Result<(), ChannelError> {
        use std::task::Poll;
        use tokio::io::Interest;
        use tokio::io::unix::AsyncFd;
        // Registered with the reactor for this call (dropped, and deregistered, with it).
        let register = |fd: OwnedFd, what: &str| {
            // SAFETY: the AsyncFd owns its descriptor (a clone of ours), which stays open and
            // the same until the AsyncFd drops it.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(|e| super::error::io_error(&e.into(), what))
        };
        loop {
            if self.is_ready() {
                return Ok(());
            }
            let socket = self
                .notifier
                .try_clone()
                .map_err(|e| super::error::io_error(&e, "cloning the wake-up socket"))?;
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
        if self.overflow == Overflow::Block {
            self.control.publisher_bell().ring();
            if let Some(address) = &self.publisher_address {
                self.notifier.wake(address);
            }
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
    pub(super) subscriber: &'a Subscriber,
    pub(super) ptr: *const u8,
    pub(super) len: usize,
    pub(super) offset: PointerOffset,
    pub(super) idx: u64,
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
