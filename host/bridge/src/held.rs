//! A received sample as `bytes::Bytes`, read in place: zenoh takes the payload of an exported
//! message without a copy of ours, and the sample goes back to its publisher when the last
//! handle on the bytes drops (on whichever thread zenoh drops it).

use std::sync::Arc;

use bytes::Bytes;
use resmem::Subscriber;
use resmem::channel::DetachedSample;

/// Keeps the sample borrowed and its subscriber (with the mapping) alive.
struct Held {
    subscriber: Arc<Subscriber>,
    sample: Option<DetachedSample>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        match &self.sample {
            // SAFETY: the sample is held (reattached only in `drop`) and its subscriber lives
            // in `self.subscriber`, so its `len` bytes stay mapped at `as_ptr` (the contract
            // of `DetachedSample::as_ptr`), as `Sample::payload` reads them.
            Some(sample) if !sample.is_empty() => unsafe {
                std::slice::from_raw_parts(sample.as_ptr(), sample.len())
            },
            _ => &[],
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(sample) = self.sample.take() {
            // Released as the `Sample` drops; a token is never foreign to its own subscriber.
            drop(self.subscriber.reattach(sample));
        }
    }
}

/// The bytes of `sample` (of `subscriber`), in place.
pub(crate) fn bytes(subscriber: Arc<Subscriber>, sample: DetachedSample) -> Bytes {
    Bytes::from_owner(Held {
        subscriber,
        sample: Some(sample),
    })
}
