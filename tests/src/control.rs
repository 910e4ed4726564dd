//! A channel's control object (`/dev/shm/<prefix><service>__svc`) as raw bytes, for the
//! hostile peers of the channel tests: where each queue index, queue entry and slot field
//! lies, read and written with `pread`/`pwrite` on the object's file, behind the back of every
//! `resmem` mapping of it.
//!
//! The geometry comes from the object's own header, validated by
//! `resmem::channel::layout::validate`; slot positions from `Geometry::slot_offset` and the
//! queue indices from `layout::offsets`. The few fields `offsets` does not name (header line 1,
//! the slot's nonce, pid, waiter counts and bell) follow `ServiceHeader` and `SlotControl` of
//! host/segments/src/channel/layout.rs:
//!
//! ```text
//!  header line 1 (byte 128): joins u64 | publisher_waiters u32 | publisher_bell_waiters u32 |
//!                            violations u64 | sent u64 | publisher_bell u32
//!  slot control line:        state u64 | nonce u64 | pid u32 | waiters u32 | bell_waiters u32 |
//!                            bell u32
//!  entries:                  submission_slots of (offset u64, len | idx << 40), then
//!                            completion_slots of (offset u64, idx u64); ring position = index
//!                            modulo the (power of two) number of slots
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use resmem::channel::layout::{self, Facts, Validated, offsets};

const ENTRY: u64 = 16;
/// `joins`, `violations` and `sent` of the header's second line.
pub const JOINS: u64 = 128;
pub const VIOLATIONS: u64 = 128 + 16;
pub const SENT: u64 = 128 + 24;
/// Bits of a submission entry's second word that hold the length.
pub const LEN_BITS: u32 = 40;

/// The control object's path under `/dev/shm`.
pub fn control_path(prefix: &str, service: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{prefix}{service}__svc"))
}

/// An open control object and the facts its header states (validated once, at open).
#[derive(Debug)]
pub struct ControlFile {
    file: File,
    pub facts: Facts,
    /// Queue capacities (what the queue protocol allows to be outstanding).
    pub buffer_size: u64,
    pub completion_size: u64,
    pub max_subscribers: u64,
    /// Entries stored per queue (ring positions).
    submission_slots: u64,
    completion_slots: u64,
}

impl ControlFile {
    /// Opens the object read-write and validates its header as a subscriber would.
    pub fn open(prefix: &str, service: &str) -> io::Result<Self> {
        let path = control_path(prefix, service);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let bytes = std::fs::read(&path)?;
        let facts = match layout::validate(&bytes, prefix) {
            Ok(Validated::Ready(facts)) => facts,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("control object not usable: {other:?}"),
                ));
            }
        };
        let g = facts.geometry;
        Ok(Self {
            file,
            facts,
            buffer_size: g.buffer_size as u64,
            completion_size: g.completion_size as u64,
            max_subscribers: g.max_subscribers as u64,
            submission_slots: g.submission_slots as u64,
            completion_slots: g.completion_slots as u64,
        })
    }

    pub fn read_u64(&self, at: u64) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        self.file.read_exact_at(&mut buf, at)?;
        Ok(u64::from_le_bytes(buf))
    }

    pub fn write_u64(&self, at: u64, value: u64) -> io::Result<()> {
        self.file.write_all_at(&value.to_le_bytes(), at)
    }

    pub fn write_u32(&self, at: u64, value: u32) -> io::Result<()> {
        self.file.write_all_at(&value.to_le_bytes(), at)
    }

    fn slot(&self, k: u64) -> u64 {
        assert!(k < self.max_subscribers, "slot {k} out of range");
        self.facts.geometry.slot_offset(k as usize) as u64
    }

    /// Slot `k`'s state word (`u64`).
    pub fn state(&self, k: u64) -> u64 {
        self.slot(k) + offsets::STATE as u64
    }

    /// Slot `k`'s nonce (`u64`, names its wake-up socket).
    pub fn nonce(&self, k: u64) -> u64 {
        self.state(k) + 8
    }

    /// Slot `k`'s pid (`u32`).
    pub fn pid(&self, k: u64) -> u64 {
        self.state(k) + 16
    }

    /// Slot `k`'s waiter count (`u32`).
    pub fn waiters(&self, k: u64) -> u64 {
        self.state(k) + 20
    }

    pub fn sub_write(&self, k: u64) -> u64 {
        self.slot(k) + offsets::SUB_WRITE as u64
    }

    pub fn sub_read(&self, k: u64) -> u64 {
        self.slot(k) + offsets::SUB_READ as u64
    }

    pub fn comp_write(&self, k: u64) -> u64 {
        self.slot(k) + offsets::COMP_WRITE as u64
    }

    pub fn comp_read(&self, k: u64) -> u64 {
        self.slot(k) + offsets::COMP_READ as u64
    }

    /// Where the submission entry of queue index `index` lies (two words).
    pub fn sub_entry(&self, k: u64, index: u64) -> u64 {
        self.slot(k) + offsets::ENTRIES as u64 + (index % self.submission_slots) * ENTRY
    }

    /// Where the completion entry of queue index `index` lies (two words).
    pub fn comp_entry(&self, k: u64, index: u64) -> u64 {
        self.slot(k)
            + offsets::ENTRIES as u64
            + self.submission_slots * ENTRY
            + (index % self.completion_slots) * ENTRY
    }
}
