//! An imported service: messages of the key `<prefix>/<service>` republished into the local
//! service, whose publisher the importer is (created at start, taking over a stale one; its
//! memory grows as payloads grow). Sequence numbers tell lost messages (gaps), per origin.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use resmem::Publisher;
use zenoh::handlers::FifoChannelHandler;
use zenoh::pubsub::Subscriber as ZSubscriber;
use zenoh::sample::Sample as ZSample;

use crate::bridge::Shared;
use crate::stats::Counters;
use crate::wire::Header;

const SLICE: Duration = Duration::from_millis(100);

pub(crate) struct Import {
    pub(crate) service: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) publisher: Publisher,
}

impl Import {
    pub(crate) fn run(
        &self,
        shared: &Shared,
        subscriber: &ZSubscriber<FifoChannelHandler<ZSample>>,
    ) {
        // Next sequence number expected from each origin.
        let mut next: HashMap<[u8; 16], u64> = HashMap::new();
        while !shared.stop.load(Ordering::Relaxed) {
            let message = match subscriber.recv_timeout(SLICE) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(_) => return,
            };
            let bytes = message.payload().to_bytes();
            let Ok((header, payload)) = Header::decode(&bytes) else {
                Counters::add(&self.counters.malformed, 1);
                continue;
            };
            if header.origin == shared.zid {
                Counters::add(&self.counters.looped, 1);
                continue;
            }
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
            if self.publish(payload) {
                Counters::add(&self.counters.samples, 1);
                Counters::add(&self.counters.bytes, header.len);
            } else {
                Counters::add(&self.counters.dropped, 1);
            }
        }
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
