//! What the host keeps for a guest's publishers and subscribers: the native end, the loans
//! or samples the guest holds (by offset), and which segments are in the guest's window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use resmem::channel::{DetachedLoan, DetachedSample};
use resmem::{ByteBudget, Publisher, SegmentBudget, SegmentId, SegmentRegion, Subscriber};
use wasmtime_wasi::p2::Pollable;

use crate::ctx::Deadline;
use crate::window::{GuestSegments, Segmented};

/// A guest's publisher, with its unsent loans (packed offset → loan).
#[derive(Debug)]
pub struct GuestPublisher {
    pub(crate) segments: GuestSegments,
    pub(crate) loans: HashMap<u64, DetachedLoan>,
    /// The control object's bytes, charged to the guest's shared-memory budget.
    pub(crate) control_bytes: u64,
    pub(crate) budget: Arc<ByteBudget>,
    pub(crate) publisher: Publisher,
}

impl GuestPublisher {
    /// Takes released segments out of the window.
    pub(crate) fn sweep_window(&mut self) {
        let Self {
            segments,
            publisher,
            ..
        } = self;
        segments.sweep(|id| {
            publisher
                .memory()
                .segment_region(SegmentId::new(id))
                .map(|r| r.sequence())
        });
    }
}

impl Drop for GuestPublisher {
    fn drop(&mut self) {
        // The window first: the guest must not reach chunks that go back to the memory.
        self.segments.unmap_all();
        for (_, loan) in self.loans.drain() {
            // Every loan is this publisher's: reattached and dropped, it is returned unsent.
            drop(self.publisher.reattach(loan));
        }
        self.budget.release(self.control_bytes);
    }
}

impl Segmented for GuestPublisher {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion> {
        self.publisher.memory().segment_region(id)
    }

    fn segments_mut(&mut self) -> &mut GuestSegments {
        &mut self.segments
    }
}

/// A guest's subscriber, with the samples it holds (packed offset → samples; a hostile
/// publisher may send one offset twice).
#[derive(Debug)]
pub struct GuestSubscriber {
    pub(crate) segments: GuestSegments,
    pub(crate) held: HashMap<u64, Vec<DetachedSample>>,
    pub(crate) deadline: Deadline,
    pub(crate) subscriber: Subscriber,
}

impl GuestSubscriber {
    /// The held sample at `packed`, if any (the newest of its kind).
    pub(crate) fn sample(&self, packed: u64) -> Option<&DetachedSample> {
        self.held.get(&packed).and_then(|v| v.last())
    }

    /// Takes segments the view no longer maps out of the window.
    pub(crate) fn sweep_window(&mut self) {
        let Self {
            segments,
            subscriber,
            ..
        } = self;
        segments.sweep(|id| {
            subscriber
                .segment_region(SegmentId::new(id))
                .map(|r| r.sequence())
        });
    }
}

impl Drop for GuestSubscriber {
    fn drop(&mut self) {
        self.segments.unmap_all();
        for (_, samples) in self.held.drain() {
            for sample in samples {
                // Reattached and dropped, each goes back to the publisher now.
                drop(self.subscriber.reattach(sample));
            }
        }
    }
}

impl Segmented for GuestSubscriber {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion> {
        self.subscriber.segment_region(id)
    }

    fn segments_mut(&mut self) -> &mut GuestSegments {
        &mut self.segments
    }
}

/// Pause after the reactor refused the wake-up socket, so a guest polling in a loop does not
/// spin the host.
const REGISTER_RETRY: Duration = Duration::from_millis(10);

/// `subscriber.subscribe`: level-triggered, ready while a sample waits or the publisher is
/// gone, and at the guest's deadline (so `poll` returns and the epoch can stop it).
#[wasmtime_wasi::async_trait]
impl Pollable for GuestSubscriber {
    async fn ready(&mut self) {
        let deadline = self.deadline.get();
        let wait = async {
            if self.subscriber.ready_async().await.is_err() {
                tokio::time::sleep(REGISTER_RETRY).await;
            }
        };
        match deadline {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), wait).await;
            }
            None => wait.await,
        }
    }
}
