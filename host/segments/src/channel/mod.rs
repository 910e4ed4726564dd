//! # Zero-copy publish-subscribe over a resizable memory
//!
//! A [`Publisher`] owns a [`Memory`](crate::Memory) named after its service; a sample is a
//! chunk of it. `send` puts the chunk's offset and length into every subscriber's
//! **submission queue** and wakes the subscribers that wait; a [`Subscriber`] maps the
//! chunk's segment through its [`View`](crate::View) (once per segment) and reads in place;
//! dropping the [`Sample`] puts the offset into its **completion queue**, and the publisher
//! frees the chunk when every subscriber that got it gave it back. A sample larger than the
//! current segment grows the memory, as any allocation does.
//!
//! ```text
//!  <prefix><service>__svc          control object: header, one slot (two queues) per subscriber
//!  <prefix><service>__mgmt, __0..  the publisher's memory (the samples)
//!  <prefix><service>__sub<e>_<k>   lock object of subscriber slot k (held while it lives)
//! ```
//!
//! The publisher trusts nothing a subscriber writes: it keeps a private record of which
//! subscriber holds which sample and frees a chunk only when that record says so. Dead
//! subscribers are found by their lock objects (the OS releases the lock of a killed
//! process), at the latest when the publisher runs short, and otherwise within
//! [`PROBE_INTERVAL`] of publisher activity; everything they held is reclaimed.
//!
//! ```
//! use resmem::{Config, Publisher, Subscriber};
//!
//! let config = Config::default().prefix(&format!("docch{}_", std::process::id()));
//! let publisher = Publisher::builder("frames").config(&config).create()?;
//! let subscriber = Subscriber::builder("frames").config(&config).open()?;
//! assert_eq!(publisher.send_copy(b"hello")?, 1);
//! let sample = subscriber.receive()?.expect("a sample is queued");
//! assert_eq!(sample.payload(), b"hello");
//! # Ok::<(), resmem::ChannelError>(())
//! ```

mod detached;
mod error;
mod freed;
pub mod layout;
mod names;
mod notify;
mod publisher;
mod queue;
mod records;
mod service;
mod subscriber;

pub use detached::{DetachedLoan, DetachedSample};
pub use error::ChannelError;
pub use publisher::{Publisher, PublisherBuilder, SampleMut};
pub use service::{
    ServiceInfo, SubscriberInfo, is_publisher_alive, list_services, remove_stale_service,
    service_info,
};
pub use subscriber::{Sample, Subscriber, SubscriberBuilder};

use std::time::Duration;

/// What `send` does when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// The oldest queued sample is dropped (and released) to make room.
    #[default]
    DropOldest,
    /// That subscriber does not get the new sample.
    DropNewest,
    /// `send` waits (without spinning) until the subscriber receives or releases, or dies.
    Block,
}

impl Overflow {
    fn code(self) -> u32 {
        match self {
            Self::DropOldest => 0,
            Self::DropNewest => 1,
            Self::Block => 2,
        }
    }

    fn from_code(code: u32) -> Self {
        match code {
            1 => Self::DropNewest,
            2 => Self::Block,
            _ => Self::DropOldest,
        }
    }
}

/// Longest time between two liveness probes of the subscribers while the publisher is active.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// `start + wait`, or about a century later when that does not fit (`Duration::MAX` means
/// "wait forever").
fn later(start: std::time::Instant, wait: Duration) -> std::time::Instant {
    start
        .checked_add(wait)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A random, non-zero 64-bit value.
fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish().max(1)
}

/// Milliseconds of the coarse monotonic clock (a few ns to read, a few ms of resolution):
/// cheap enough for the per-call probe deadline.
fn coarse_now_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; the clock id is a constant Linux knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) } != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// Submission entry word `b`: length in the low 40 bits, sample index above.
const LEN_BITS: u32 = 40;
const LEN_MASK: u64 = (1 << LEN_BITS) - 1;
/// Largest sample a channel carries (1 TiB - 1).
pub const MAX_SAMPLE_LEN: usize = LEN_MASK as usize;
/// Most sample indices a publisher may have (24 bits).
const MAX_SAMPLES: usize = 1 << 24;

fn pack(len: usize, idx: u32) -> u64 {
    (len as u64 & LEN_MASK) | (u64::from(idx) << LEN_BITS)
}

fn unpack(b: u64) -> (u64, u64) {
    (b & LEN_MASK, b >> LEN_BITS)
}
