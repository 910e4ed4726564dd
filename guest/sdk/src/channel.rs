//! Zero-copy publish-subscribe: the WIT interface `resmem:memory/channel` with RAII.
//!
//! A [`Publisher`] loans a chunk ([`SampleMut`]), the guest writes it (by copy, or in place
//! through [`SampleMut::map`]) and sends it: every subscriber, guest or native process, gets
//! its offset. A [`Subscriber`] receives [`Sample`]s, reads them where they lie and gives them
//! back by dropping them. An unsent loan is returned when dropped.
//!
//! Waiting is `wasi:io/poll`: [`Subscriber::pollable`] is ready whenever a sample waits or the
//! publisher is gone, and can be polled together with any other pollable;
//! [`Subscriber::receive_timeout`] polls it next to a monotonic-clock timer.
//!
//! ```no_run
//! use resmem_guest::channel::{ChannelConfig, Publisher, Subscriber};
//! use std::time::Duration;
//!
//! let publisher = Publisher::create("frames", ChannelConfig::default())?;
//! let mut sample = publisher.loan_bytes(5)?;
//! sample.write_at(0, b"hello")?;
//! sample.send()?;
//!
//! // in a subscriber (another guest, or a native process)
//! let subscriber = Subscriber::open("frames", Duration::from_secs(5))?;
//! if let Some(sample) = subscriber.receive_timeout(Duration::from_millis(100))? {
//!     assert_eq!(sample.read_all()?, b"hello");
//! }
//! # Ok::<(), resmem_guest::Error>(())
//! ```

use std::cell::OnceCell;
use std::fmt;
use std::time::Duration;

use crate::bindings::resmem::memory::channel as wit;
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::io::poll::{self, Pollable};
use crate::{Error, Layout, MemoryConfig, Offset, Result, Window, WindowMut};

pub use wit::{ChannelConfig, Overflow};

impl ChannelConfig {
    /// A configuration with the native defaults and `memory` sizing the first segment.
    pub const fn new(memory: MemoryConfig) -> Self {
        Self {
            max_subscribers: 8,
            buffer_size: 16,
            max_loans: 16,
            max_borrowed: 8,
            overflow: Overflow::DropOldest,
            memory,
        }
    }
}

impl Default for ChannelConfig {
    /// The native defaults: 8 subscribers, 16 queued samples each, 16 loans, 8 borrowed,
    /// `drop-oldest`, samples of up to 64 bytes in the first segment (later ones grow it).
    fn default() -> Self {
        Self::new(MemoryConfig::new(
            Layout::new(64, 8),
            64,
            crate::AllocationStrategy::PowerOfTwo,
        ))
    }
}

/// The sending side of a service. Dropping it closes the service: subscribers drain what is
/// queued, then see [`Error::Disconnected`].
pub struct Publisher {
    raw: wit::Publisher,
}

impl Publisher {
    /// Creates the service `service` (in the guest's namespace).
    pub fn create(service: &str, config: ChannelConfig) -> Result<Self> {
        Ok(Self {
            raw: wit::Publisher::create(service, config)?,
        })
    }

    /// Loans a chunk of `layout`; the memory grows when it does not fit.
    pub fn loan(&self, layout: Layout) -> Result<SampleMut<'_>> {
        let offset = self.raw.loan(layout)?.into();
        Ok(SampleMut {
            publisher: self,
            offset,
            capacity: layout.size,
            len: layout.size,
            sent: false,
        })
    }

    /// Loans `len` bytes, 8-aligned.
    pub fn loan_bytes(&self, len: u64) -> Result<SampleMut<'_>> {
        self.loan(Layout::new(len, 8))
    }

    /// Loans, copies `data` in and sends; returns how many subscribers got it.
    pub fn send_copy(&self, data: &[u8]) -> Result<u32> {
        let mut sample = self.loan_bytes(data.len() as u64)?;
        sample.write_at(0, data)?;
        sample.send()
    }

    /// Subscribers connected now.
    pub fn number_of_subscribers(&self) -> u32 {
        self.raw.number_of_subscribers()
    }

    /// The WIT resource, for calls the safe API does not offer (e.g. on raw offsets).
    pub fn as_raw(&self) -> &wit::Publisher {
        &self.raw
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// A loaned chunk, written and then sent. Dropping it unsent returns it.
#[must_use = "a loan is returned unsent when dropped"]
pub struct SampleMut<'p> {
    publisher: &'p Publisher,
    offset: Offset,
    capacity: u64,
    len: u64,
    sent: bool,
}

impl SampleMut<'_> {
    /// Where the chunk is, the same in every process.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// Bytes loaned.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes [`SampleMut::send`] sends: the whole loan until [`SampleMut::set_len`].
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sends only the first `len` bytes; more than loaned is refused (nothing changes).
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        if len > self.capacity {
            return Err(Error::InvalidLayout(format!(
                "length {len} exceeds the loan's {} bytes",
                self.capacity
            )));
        }
        self.len = len;
        Ok(())
    }

    /// Copies `data` into the loan at byte `at`.
    pub fn write_at(&mut self, at: u64, data: &[u8]) -> Result<()> {
        Ok(self.publisher.raw.write(self.offset.into(), at, data)?)
    }

    /// The loan's bytes in the zero-copy window, written in place (see [`crate::window`]).
    pub fn map(&mut self) -> Result<WindowMut<'_>> {
        let addr = self.publisher.raw.map(self.offset.into())?;
        // SAFETY: the host mapped the loan's segment read-write at `addr`; the loan is
        // borrowed for the window's lifetime, so it stays loaned and its segment alive.
        unsafe { WindowMut::new(addr, self.capacity) }
    }

    /// Sends the sample to every subscriber; returns how many got it. The chunk must not be
    /// written afterwards (the loan is gone with `self`).
    pub fn send(mut self) -> Result<u32> {
        self.sent = true;
        Ok(self.publisher.raw.send(self.offset.into(), self.len)?)
    }
}

impl Drop for SampleMut<'_> {
    fn drop(&mut self) {
        if !self.sent {
            // Ours came from the host, which only refuses offsets it does not know.
            let _ = self.publisher.raw.discard(self.offset.into());
        }
    }
}

impl fmt::Debug for SampleMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleMut")
            .field("offset", &self.offset)
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .finish()
    }
}

/// The receiving side of a service.
pub struct Subscriber {
    // Declared first: a pollable is a child of its subscriber and must be dropped before it.
    pollable: OnceCell<Pollable>,
    raw: wit::Subscriber,
}

impl Subscriber {
    /// Opens a subscriber of `service`, waiting up to `timeout` (whole milliseconds) for its
    /// publisher to appear.
    pub fn open(service: &str, timeout: Duration) -> Result<Self> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        Ok(Self {
            pollable: OnceCell::new(),
            raw: wit::Subscriber::open(service, timeout_ms)?,
        })
    }

    /// The oldest queued sample, if any; never waits. [`Error::Disconnected`] once nothing is
    /// queued and the publisher is gone.
    pub fn receive(&self) -> Result<Option<Sample<'_>>> {
        Ok(self.raw.receive()?.map(|s| Sample {
            subscriber: self,
            offset: s.offset.into(),
            len: s.len,
        }))
    }

    /// Like [`Subscriber::receive`], but waits (in `wasi:io/poll`, asleep) up to `timeout`
    /// for a sample.
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Option<Sample<'_>>> {
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let deadline = monotonic_clock::now().saturating_add(timeout_ns);
        loop {
            if let Some(sample) = self.receive()? {
                return Ok(Some(sample));
            }
            if monotonic_clock::now() >= deadline {
                return Ok(None);
            }
            let timer = monotonic_clock::subscribe_instant(deadline);
            poll::poll(&[self.pollable(), &timer]);
        }
    }

    /// Ready whenever a sample waits or the publisher is gone (level-triggered); poll it with
    /// `wasi:io/poll` together with other pollables. One per subscriber, made on first use.
    pub fn pollable(&self) -> &Pollable {
        self.pollable.get_or_init(|| self.raw.subscribe())
    }

    /// Whether the publisher lives.
    pub fn is_publisher_alive(&self) -> bool {
        self.raw.is_publisher_alive()
    }

    /// The WIT resource, for calls the safe API does not offer (e.g. on raw offsets).
    pub fn as_raw(&self) -> &wit::Subscriber {
        &self.raw
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

/// A received sample, read where it lies. Dropping it gives it back to the publisher.
pub struct Sample<'s> {
    subscriber: &'s Subscriber,
    offset: Offset,
    len: u64,
}

impl Sample<'_> {
    /// Where the chunk is, the same in every process.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// Bytes in the sample.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `len` bytes from byte `at` of the sample.
    pub fn read_at(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self.subscriber.raw.read(self.offset.into(), at, len)?)
    }

    /// Copies the whole sample.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        self.read_at(0, self.len)
    }

    /// The sample's bytes in the zero-copy window, read in place (mapped read-only: a store
    /// traps). See [`crate::window`].
    pub fn map(&self) -> Result<Window<'_>> {
        let addr = self.subscriber.raw.map(self.offset.into())?;
        // SAFETY: the host mapped the sample's segment at `addr` for at least `len` bytes; the
        // sample is borrowed for the window's lifetime, so it stays held and mapped.
        unsafe { Window::new(addr, self.len) }
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        let _ = self.subscriber.raw.release(self.offset.into());
    }
}

impl fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}
