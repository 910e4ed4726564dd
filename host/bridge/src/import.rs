//! An imported service: messages of the key `<prefix>/<service>` republished into the local
//! service, whose publisher the importer is (created at start, taking over a stale one; its
//! memory grows as payloads grow). Sequence numbers tell lost messages (gaps), per origin.
//!
//! Each message is handled in zenoh's subscriber callback, on the task that received it: a
//! thread behind a channel would add a wake-up to every message. A full local subscriber
//! under `Overflow::Block` holds that task up as zenoh's own bounded FIFO handler would.

use std::alloc::Layout;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use resmem::Publisher;
use zenoh::sample::Sample as ZSample;

use crate::BridgeError;
use crate::bridge::Shared;
use crate::stats::Counters;
use crate::wire::{HEADER, Header};

pub(crate) struct Import {
    pub(crate) service: String,
    pub(crate) counters: Arc<Counters>,
    publisher: Publisher,
    /// Next sequence number expected from each origin.
    next: Mutex<HashMap<[u8; 16], u64>>,
}

impl Import {
    pub(crate) fn new(service: String, publisher: Publisher) -> Self {
        Self {
            service,
            counters: Arc::default(),
            publisher,
            next: Mutex::default(),
        }
    }

    /// One message from zenoh. Its payload is read straight into the loan, piece by piece:
    /// a large message arrives as zenoh's fragments, and gathering them first would copy it
    /// once more.
    pub(crate) fn handle(&self, shared: &Shared, message: &ZSample) {
        let payload = message.payload();
        let mut reader = payload.reader();
        let mut head = [0u8; HEADER];
        let header = match reader.read_exact(&mut head) {
            Ok(()) => Header::decode_head(&head, payload.len()),
            Err(_) => Err(BridgeError::Malformed("no resmem-bridge header")),
        };
        let Ok(header) = header else {
            Counters::add(&self.counters.malformed, 1);
            return;
        };
        if header.origin == shared.zid {
            Counters::add(&self.counters.looped, 1);
            return;
        }
        self.count_gaps(shared, &header);
        if self.publish(reader, payload.len() - HEADER) {
            Counters::add(&self.counters.samples, 1);
            Counters::add(&self.counters.bytes, header.len);
        } else {
            Counters::add(&self.counters.dropped, 1);
        }
    }

    fn count_gaps(&self, shared: &Shared, header: &Header) {
        // Plain data: a panic elsewhere while it was held leaves nothing half-done.
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        match next.get(&header.origin) {
            Some(&expected) if header.seq > expected => {
                let missed = header.seq - expected;
                Counters::add(&self.counters.gaps, missed);
                shared.log(format!(
                    "import {}: gap of {missed} samples (seq {expected}..{}) from {}",
                    self.service,
                    header.seq - 1,
                    hex(&header.origin)
                ));
            }
            Some(&expected) if header.seq < expected => shared.log(format!(
                "import {}: {} restarted its sequence at {}",
                self.service,
                hex(&header.origin),
                header.seq
            )),
            _ => {}
        }
        next.insert(header.origin, header.seq.wrapping_add(1));
    }

    /// Loans `len` bytes, reads them from `payload` and sends; `false` when the local memory
    /// refused the loan.
    fn publish(&self, mut payload: impl Read, len: usize) -> bool {
        let Ok(layout) = Layout::from_size_align(len, 8) else {
            return false;
        };
        match self.publisher.loan(layout) {
            // The length was checked against the header: the read cannot come up short (if
            // it did, the loan would go back unsent).
            Ok(mut sample) => {
                payload.read_exact(sample.payload_mut()).is_ok() && sample.send().is_ok()
            }
            Err(_) => false,
        }
    }
}

/// A zenoh id as zenoh prints it (lowercase hex, most significant byte first, no leading
/// zeros).
pub(crate) fn hex(id: &[u8; 16]) -> String {
    let text: String = id.iter().rev().map(|b| format!("{b:02x}")).collect();
    let trimmed = text.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}
