//! An imported service: messages of the key `<prefix>/<service>` republished into the local
//! service, whose publisher the importer is (created at start, taking over a stale one; its
//! memory grows as payloads grow). Sequence numbers tell lost messages (gaps), per origin.
//!
//! Each message is handled in zenoh's subscriber callback, on the task that received it: a
//! thread behind a channel would add a wake-up to every message. A full local subscriber
//! under `Overflow::Block` holds that task up as zenoh's own bounded FIFO handler would.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use resmem::Publisher;
use zenoh::sample::Sample as ZSample;

use crate::bridge::Shared;
use crate::stats::Counters;
use crate::wire::Header;

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

    /// One message from zenoh.
    pub(crate) fn handle(&self, shared: &Shared, message: &ZSample) {
        let bytes = message.payload().to_bytes();
        let Ok((header, payload)) = Header::decode(&bytes) else {
            Counters::add(&self.counters.malformed, 1);
            return;
        };
        if header.origin == shared.zid {
            Counters::add(&self.counters.looped, 1);
            return;
        }
        self.count_gaps(shared, &header);
        if self.publish(payload) {
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
        next.insert(header.origin, header.seq + 1);
    }

    /// Loans, copies and sends; `false` when the local memory refused the loan.
    fn publish(&self, payload: &[u8]) -> bool {
        let Ok(layout) = Layout::from_size_align(payload.len(), 8) else {
            return false;
        };
        match self.publisher.loan(layout) {
            Ok(mut sample) => {
                sample.payload_mut().copy_from_slice(payload);
                sample.send().is_ok()
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
