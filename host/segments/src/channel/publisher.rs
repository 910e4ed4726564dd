//! The publisher: owns the service's control object and memory, loans chunks, delivers
//! offsets and frees what comes back.

mod links;

use std::alloc::Layout;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::freed::Freed;
use super::layout::{Control, Facts, Geometry};
use super::names;
use super::notify::{Notifier, WaiterGuard};
use super::records::{Records, Release};
use super::{ChannelError, MAX_SAMPLE_LEN, MAX_SAMPLES, Overflow, error::io_error};
use crate::backend::{CreateOptions, Mapping, page_size};
use crate::{
    AllocError, AllocationStrategy, Config, Memory, PointerOffset, SegmentBudget, ShmPointer,
};

use links::{Conn, Push};

/// Longest sleep of `wait_for_subscribers` between two looks at the slots.
const JOIN_SLICE: Duration = Duration::from_millis(50);

/// Largest private record (holding bitmaps) a publisher may need.
const MAX_RECORD_BYTES: usize = 256 << 20;

/// How often `create` with `reclaim_stale` removes a stale service and tries again.
const RECLAIM_ATTEMPTS: usize = 4;

/// Configures and creates a [`Publisher`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct PublisherBuilder {
    service: String,
    config: Config,
    max_subscribers: usize,
    buffer_size: usize,
    max_loans: usize,
    max_borrowed: usize,
    overflow: Overflow,
    chunk_layout: Option<Layout>,
    chunks: Option<usize>,
    strategy: AllocationStrategy,
    reclaim_stale: bool,
    budget: Option<Arc<dyn SegmentBudget>>,
}

impl PublisherBuilder {
    /// Where the service's objects live and how they are named.
    pub fn config(mut self, config: &Config) -> Self {
        self.config = config.clone();
        self
    }

    /// Most subscribers at once. Default: 8.
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n;
        self
    }

    /// Queue length per subscriber. Default: 16.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n;
        self
    }

    /// Most unsent loans at once. Default: 16.
    pub fn max_loans(mut self, n: usize) -> Self {
        self.max_loans = n;
        self
    }

    /// Most received samples a subscriber holds at once. Default: 8.
    pub fn max_borrowed(mut self, n: usize) -> Self {
        self.max_borrowed = n;
        self
    }

    /// What `send` does when a subscriber's queue is full. Default: [`Overflow::DropOldest`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// The largest sample expected; sizes the first segment. Default: 64 bytes.
    pub fn max_chunk_layout_hint(mut self, layout: Layout) -> Self {
        self.chunk_layout = Some(layout);
        self
    }

    /// Samples expected at once; sizes the first segment. Default: every sample that can be
    /// in flight (`max_loans + max_subscribers * (buffer_size + max_borrowed)`).
    pub fn max_number_of_chunks_hint(mut self, n: usize) -> Self {
        self.chunks = Some(n);
        self
    }

    /// How a new segment is sized when a sample does not fit. Default: power of two.
    pub fn allocation_strategy(mut self, strategy: AllocationStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Caps the bytes of the memory's data segments, as
    /// [`MemoryBuilder::budget`](crate::MemoryBuilder::budget) does (a host charges a guest's
    /// channels to its shared-memory quota). Default: none.
    pub fn budget(mut self, budget: Arc<dyn SegmentBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Take over a service whose publisher died (its objects are removed first), as
    /// [`MemoryBuilder::reclaim_stale`](crate::MemoryBuilder::reclaim_stale) does for
    /// memories. A live publisher's service is never taken. Default: off.
    pub fn reclaim_stale(mut self, reclaim: bool) -> Self {
        self.reclaim_stale = reclaim;
        self
    }

    /// Creates the control object and the memory. `AlreadyExists` when the service has a
    /// publisher (or a stale one, unless `reclaim_stale`), or a plain memory has the name.
    pub fn create(self) -> Result<Publisher, ChannelError> {
        names::validate(&self.service, &self.config)?;
        let geometry = Geometry::new(self.max_subscribers, self.buffer_size, self.max_borrowed)?;
        if self.max_loans == 0 || self.max_loans > MAX_SAMPLES {
            return Err(ChannelError::InvalidConfig("max_loans must be 1..=2^24"));
        }
        let in_flight = geometry
            .max_subscribers
            .checked_mul(geometry.completion_size)
            .and_then(|n| n.checked_add(self.max_loans))
            .filter(|&n| n <= MAX_SAMPLES)
            .ok_or(ChannelError::InvalidConfig(
                "max_loans + max_subscribers * (buffer_size + max_borrowed) exceeds 2^24",
            ))?;
        // The record keeps a bitmap of every sample index per subscriber.
        if geometry.max_subscribers * in_flight.div_ceil(8) > MAX_RECORD_BYTES {
            return Err(ChannelError::InvalidConfig(
                "max_subscribers * (max_loans + max_subscribers * (buffer_size + max_borrowed)) \
                 needs more than 256 MiB of bookkeeping",
            ));
        }
        for _ in 0..RECLAIM_ATTEMPTS {
            match self.create_once(geometry, in_flight) {
                Err(ChannelError::AlreadyExists) => {}
                other => return other,
            }
            // A publisher that closed normally but left its objects to draining subscribers
            // is no crash to keep for inspection: a new publisher takes the name over.
            if !self.reclaim_stale
                && !super::service::closed_and_unattended(&self.service, &self.config)
            {
                return Err(ChannelError::AlreadyExists);
            }
            match super::remove_stale_service(&self.service, &self.config)? {
                crate::StaleRemoval::OwnerAlive => return Err(ChannelError::AlreadyExists),
                crate::StaleRemoval::Removed | crate::StaleRemoval::NotFound => {}
            }
        }
        Err(ChannelError::AlreadyExists)
    }

    fn create_once(&self, geometry: Geometry, in_flight: usize) -> Result<Publisher, ChannelError> {
        let backend = self.config.get_backend();
        let control_name = names::control_name(&self.service, &self.config);
        let size = geometry.total_size.next_multiple_of(page_size());
        let mapping = backend
            .create(
                &control_name,
                size,
                &CreateOptions {
                    permissions: self.config.get_permissions(),
                    prefault: false,
                    lock_exclusive: true,
                },
            )
            .map_err(|e| io_error(&e, "creating the control object"))?;
        // Until the publisher exists, a failure removes the control object again.
        let remove_on_error = RemoveOnError {
            config: &self.config,
            name: &control_name,
            armed: true,
        };
        let mut memory = Memory::builder(&self.service)
            .config(&self.config)
            .max_chunk_layout_hint(self.chunk_layout.unwrap_or(DEFAULT_CHUNK))
            .max_number_of_chunks_hint(self.chunks.unwrap_or(in_flight).max(1))
            .allocation_strategy(self.strategy)
            .reclaim_stale(self.reclaim_stale);
        if let Some(budget) = &self.budget {
            memory = memory.budget(Arc::clone(budget));
        }
        let mut memory = memory.create()?;
        // `memory()` hands it to safe code: a free from there could let two loans alias.
        memory.set_channel_owned();
        let (notifier, epoch) =
            Notifier::bind('p').map_err(|e| io_error(&e, "binding the wake-up socket"))?;
        let facts = Facts {
            geometry,
            overflow: self.overflow.code(),
            memory_id: memory.memory_id(),
            epoch,
            publisher_pid: std::process::id(),
        };
        // SAFETY: the mapping is page aligned, at least total_size long, and kept in the
        // publisher next to `control` for as long as the publisher lives.
        let control = unsafe { Control::new(mapping.as_ptr(), geometry) };
        control.init(&facts, self.config.get_prefix());
        remove_on_error.disarm();
        let per_subscriber = geometry.completion_size;
        Ok(Publisher {
            id: super::detached::next_owner_id(),
            service: self.service.clone(),
            config: self.config.clone(),
            control,
            mapping,
            memory: ManuallyDrop::new(memory),
            facts,
            overflow: self.overflow,
            notifier,
            next_probe: AtomicU64::new(0),
            state: Mutex::new(State {
                records: Records::new(self.max_loans, geometry.max_subscribers, per_subscriber),
                subs: (0..geometry.max_subscribers)
                    .map(|_| Conn::detached(geometry.buffer_size))
                    .collect(),
                attached: Vec::with_capacity(geometry.max_subscribers),
                joins_seen: 0,
                sent: 0,
            }),
        })
    }
}

const DEFAULT_CHUNK: Layout = match Layout::from_size_align(64, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("64/8 is a valid layout"),
};

struct RemoveOnError<'a> {
    config: &'a Config,
    name: &'a str,
    armed: bool,
}

impl RemoveOnError<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for RemoveOnError<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.config.get_backend().remove(self.name);
        }
    }
}

/// The publisher's private state, behind one lock.
#[derive(Debug)]
struct State {
    records: Records,
    subs: Vec<Conn>,
    /// Slots with an attached subscriber, in joining order.
    attached: Vec<usize>,
    joins_seen: u64,
    /// Samples sent (published to the header for `resmem inspect`).
    sent: u64,
}

/// The sending side of a service. `Send + Sync`: every method takes `&self`.
#[derive(Debug)]
pub struct Publisher {
    /// Tells its detached loans from other publishers'.
    pub(super) id: u64,
    service: String,
    config: Config,
    control: Control,
    /// Maps `control` and holds the service's owner lock (released when the fields drop,
    /// after `drop` removed the objects).
    mapping: Mapping,
    /// Taken in `drop` (removed, or left for subscribers still draining).
    memory: ManuallyDrop<Memory>,
    facts: Facts,
    overflow: Overflow,
    notifier: Notifier,
    /// Coarse-clock deadline (ms) of the next liveness probe.
    next_probe: AtomicU64,
    state: Mutex<State>,
}

impl Publisher {
    /// A builder for a publisher of `service` (a memory name: no `/`, NUL or `..`).
    pub fn builder(service: &str) -> PublisherBuilder {
        PublisherBuilder {
            service: service.to_owned(),
            config: Config::default(),
            max_subscribers: 8,
            buffer_size: 16,
            max_loans: 16,
            max_borrowed: 8,
            overflow: Overflow::default(),
            chunk_layout: None,
            chunks: None,
            strategy: AllocationStrategy::default(),
            reclaim_stale: false,
            budget: None,
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The memory the samples are chunks of.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// Subscribers connected now (after taking in joins and leaves).
    pub fn number_of_subscribers(&self) -> usize {
        let mut freed = Freed::default();
        let count = {
            let mut state = self.lock();
            self.maintain(&mut state, &mut freed, true);
            state.attached.len()
        };
        self.free(freed);
        count
    }

    /// Waits (asleep; a joining subscriber wakes it) until at least `count` subscribers are
    /// connected or `timeout` passes. Returns how many are connected.
    pub fn wait_for_subscribers(&self, count: usize, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            let connected = self.number_of_subscribers();
            let elapsed = start.elapsed();
            if connected >= count || elapsed >= timeout {
                return connected;
            }
            let joins = self.control.header().live.joins.load(Ordering::Acquire);
            let _waiting = WaiterGuard::enter(&self.control.header().live.publisher_waiters);
            if self.control.header().live.joins.load(Ordering::Acquire) == joins {
                // Bounded: a joiner that found only stale slots is served on the next round.
                self.notifier.wait((timeout - elapsed).min(JOIN_SLICE));
            }
        }
    }

    /// Checks every subscriber's liveness now and reclaims what dead ones held (this also
    /// happens on its own within [`PROBE_INTERVAL`](super::PROBE_INTERVAL) of activity).
    /// Returns how many subscribers are connected.
    pub fn update_connections(&self) -> usize {
        let mut freed = Freed::default();
        let count = {
            let mut state = self.lock();
            self.scan(&mut state, &mut freed, true);
            self.maintain(&mut state, &mut freed, true);
            state.attached.len()
        };
        self.free(freed);
        count
    }

    /// Returned entries refused so far (a subscriber returned a sample twice, one it never
    /// got, or scribbled its queue indices).
    pub fn violations(&self) -> u64 {
        self.control
            .header()
            .live
            .violations
            .load(Ordering::Relaxed)
    }

    /// Loans a chunk of `layout`; the memory grows when it does not fit. Dropping the
    /// sample unsent returns it.
    pub fn loan(&self, layout: Layout) -> Result<SampleMut<'_>, ChannelError> {
        if layout.size() > MAX_SAMPLE_LEN {
            return Err(ChannelError::Alloc(AllocError::SizeTooLarge));
        }
        let mut freed = Freed::default();
        let idx = {
            let mut state = self.lock();
            self.maintain(&mut state, &mut freed, true);
            state.records.loan()
        };
        self.free(freed);
        let idx = idx.ok_or(ChannelError::LoanLimitReached)?;
        // Chunks cannot be empty; a zero-sized loan still has an offset.
        let request = Layout::from_size_align(layout.size().max(1), layout.align())
            .map_err(|_| ChannelError::Alloc(AllocError::SizeTooLarge))?;
        let chunk = match self.memory.allocate(request) {
            Ok(chunk) => Ok(chunk),
            Err(AllocError::OutOfMemory | AllocError::QuotaExceeded) => {
                // Short of memory: dead subscribers may hold it.
                let mut freed = Freed::default();
                {
                    let mut state = self.lock();
                    self.scan(&mut state, &mut freed, true);
                }
                let reclaimed = !freed.is_empty();
                self.free(freed);
                if reclaimed {
                    self.memory.allocate(request)
                } else {
                    Err(AllocError::OutOfMemory)
                }
            }
            Err(e) => Err(e),
        };
        match chunk {
            Ok(chunk) => Ok(SampleMut::new(self, idx, chunk, layout.size())),
            Err(e) => {
                self.lock().records.cancel_loan(idx);
                Err(ChannelError::Alloc(e))
            }
        }
    }

    /// Loans a chunk of `data.len()` bytes (8-aligned), copies `data` into it and sends it.
    pub fn send_copy(&self, data: &[u8]) -> Result<usize, ChannelError> {
        let layout = Layout::from_size_align(data.len(), 8)
            .map_err(|_| ChannelError::Alloc(AllocError::SizeTooLarge))?;
        let mut sample = self.loan(layout)?;
        sample.payload_mut().copy_from_slice(data);
        sample.send()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees chunks whose last holder is gone (outside the state lock).
    fn free(&self, freed: Freed) {
        for offset in freed.drain().map(PointerOffset::from_u64) {
            if cfg!(debug_assertions) {
                // Tests and fuzzing: every free is checked against the allocator.
                let result = self.memory.try_deallocate_owned(offset);
                assert!(
                    result.is_ok(),
                    "the record freed {offset} twice or never loaned it"
                );
            } else {
                // SAFETY: the record releases each chunk `loan` got exactly once, when its
                // last holder let go (its property test checks that against a model, debug
                // builds check every free above); nothing here uses the chunk afterwards.
                unsafe { self.memory.deallocate_bucket(offset) };
            }
        }
    }

    fn cancel(&self, idx: u32, offset: PointerOffset) {
        self.lock().records.cancel_loan(idx);
        let result = self.memory.try_deallocate_owned(offset);
        debug_assert!(result.is_ok(), "a loan's chunk is allocated");
    }

    /// Delivers to every attached subscriber; under `Overflow::Block` a full one is waited for
    /// until `deadline` (`None`: as long as it lives), then skipped.
    fn send_sample(
        &self,
        idx: u32,
        offset: PointerOffset,
        len: usize,
        deadline: Option<Instant>,
    ) -> usize {
        let mut freed = Freed::default();
        let mut state = self.lock();
        self.maintain(&mut state, &mut freed, false);
        state.records.begin_send(idx, offset.as_u64());
        let mut delivered = 0;
        // In slot order; a subscriber that joins while a blocked send waits may get it too.
        let mut k = 0;
        // Whether the last wait on subscriber k saw it do nothing.
        let mut stalled = false;
        while k < state.subs.len() {
            if !state.subs[k].attached {
                k += 1;
                continue;
            }
            match self.push(&mut state, k, idx, offset, len, &mut freed) {
                Push::Delivered => {
                    delivered += 1;
                    k += 1;
                    stalled = false;
                }
                Push::Skipped => {
                    k += 1;
                    stalled = false;
                }
                // Retries k when the subscriber made room (or was reclaimed).
                Push::Full => match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
                    Some(left) if left.is_zero() => {
                        k += 1;
                        stalled = false;
                    }
                    left => {
                        let progressed;
                        (state, progressed) = self.block_on(state, k, &mut freed, left, stalled);
                        stalled = !progressed;
                    }
                },
            }
        }
        if let Release::Freed(offset) = state.records.end_send(idx) {
            freed.push(offset);
        }
        state.sent += 1;
        self.control
            .header()
            .live
            .sent
            .store(state.sent, Ordering::Relaxed);
        if delivered > 0 {
            self.wake_waiting(&state);
        }
        drop(state);
        self.free(freed);
        delivered
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Subscribers drain what is queued, then see PublisherGone.
        self.control.header().closed.store(1, Ordering::Release);
        let mut state = self.lock();
        // Only live subscribers drain what is queued: reclaim the dead ones first, or their
        // queues would keep the objects forever.
        let mut freed = Freed::default();
        self.scan(&mut state, &mut freed, true);
        let mut pending = false;
        for &k in &state.attached {
            let conn = &state.subs[k];
            pending |= !self.control.submission(k).is_empty();
            self.control.data_bell(k).ring();
            if let Some(address) = &conn.address {
                self.notifier.wake(address);
            }
        }
        drop(state);
        self.free(freed);
        // SAFETY: `memory` is not used after this point (this is the publisher's drop).
        let memory = unsafe { ManuallyDrop::take(&mut self.memory) };
        if pending {
            // Queued samples may lie in segments a subscriber has not mapped yet: leave the
            // objects for them; the last subscriber to drop removes the service.
            memory.abandon();
            return;
        }
        drop(memory);
        let backend = self.config.get_backend();
        let name = names::control_name(&self.service, &self.config);
        if backend
            .is_same_object(&name, &self.mapping)
            .unwrap_or(false)
        {
            let _ = backend.remove(&name);
        }
    }
}

/// A loaned chunk, written in place and then sent. Dropping it unsent returns the chunk.
#[derive(Debug)]
#[must_use = "a loan is returned unsent when dropped"]
pub struct SampleMut<'a> {
    pub(super) publisher: &'a Publisher,
    pub(super) idx: u32,
    pub(super) chunk: ShmPointer,
    pub(super) capacity: usize,
    len: usize,
    bad_len: Option<usize>,
    sent: bool,
}

impl<'a> SampleMut<'a> {
    pub(super) fn new(
        publisher: &'a Publisher,
        idx: u32,
        chunk: ShmPointer,
        capacity: usize,
    ) -> Self {
        Self {
            publisher,
            idx,
            chunk,
            capacity,
            len: capacity,
            bad_len: None,
            sent: false,
        }
    }

    /// The bytes that will be sent (the whole loan until [`SampleMut::set_len`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        // SAFETY: the chunk is allocated for at least `capacity >= len` bytes and belongs to
        // this loan alone until it is sent (no subscriber has its offset yet).
        unsafe { std::slice::from_raw_parts_mut(self.chunk.data_ptr, self.len) }
    }

    /// The bytes that will be sent.
    pub fn payload(&self) -> &[u8] {
        // SAFETY: as for payload_mut; shared access through &self.
        unsafe { std::slice::from_raw_parts(self.chunk.data_ptr, self.len) }
    }

    /// The chunk's offset, the same in every process.
    pub fn offset(&self) -> PointerOffset {
        self.chunk.offset
    }

    /// Bytes that will be sent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte will be sent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes loaned.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sends only the first `len` bytes. More than loaned is refused: `len()` stays as it was
    /// and `send` fails with [`ChannelError::InvalidLength`] (returning the chunk).
    pub fn set_len(&mut self, len: usize) {
        if len <= self.capacity {
            self.len = len;
            self.bad_len = None;
        } else {
            self.bad_len = Some(len);
        }
    }

    /// Delivers the sample to every connected subscriber; returns how many got it. With no
    /// subscriber, the chunk is freed at once.
    pub fn send(self) -> Result<usize, ChannelError> {
        self.deliver(None)
    }

    /// Like [`SampleMut::send`], but under [`Overflow::Block`] waits at most `timeout` in all
    /// for subscribers whose queue is full; those still full then do not get this sample (as
    /// under `DropNewest`). Other policies never wait, so it is `send` for them.
    pub fn send_timeout(self, timeout: Duration) -> Result<usize, ChannelError> {
        self.deliver(Some(super::later(Instant::now(), timeout)))
    }

    fn deliver(mut self, deadline: Option<Instant>) -> Result<usize, ChannelError> {
        if let Some(len) = self.bad_len {
            return Err(ChannelError::InvalidLength {
                len,
                capacity: self.capacity,
            });
        }
        self.sent = true;
        Ok(self
            .publisher
            .send_sample(self.idx, self.chunk.offset, self.len, deadline))
    }
}

impl Drop for SampleMut<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.publisher.cancel(self.idx, self.chunk.offset);
        }
    }
}
