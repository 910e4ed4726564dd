//! Counters of each forwarded service, shared by its thread and whoever reports them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which way a service crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local samples out to zenoh.
    Export,
    /// Zenoh messages into the local service.
    Import,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Export => "export",
            Self::Import => "import",
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) samples: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) looped: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One service's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    /// The local service.
    pub service: String,
    /// Export or import.
    pub direction: Direction,
    /// Samples forwarded (exported to zenoh, or published locally).
    pub samples: u64,
    /// Payload bytes forwarded.
    pub bytes: u64,
    /// Import: samples missing between the sequence numbers received (lost on the way).
    pub gaps: u64,
    /// Export: samples taken locally but not forwarded (no remote importer, a link stalled
    /// past `max_hold`, or zenoh refused);
    /// import: messages received but not published (the local memory refused them).
    pub dropped: u64,
    /// Import: messages of this bridge's own origin, ignored (a loop).
    pub looped: u64,
    /// Import: messages without a valid bridge header, ignored.
    pub malformed: u64,
}

impl ServiceStats {
    pub(crate) fn of(service: &str, direction: Direction, c: &Counters) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            service: service.to_owned(),
            direction,
            samples: get(&c.samples),
            bytes: get(&c.bytes),
            gaps: get(&c.gaps),
            dropped: get(&c.dropped),
            looped: get(&c.looped),
            malformed: get(&c.malformed),
        }
    }
}
