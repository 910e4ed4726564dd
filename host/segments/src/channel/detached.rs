//! Loans and samples without a borrow of their publisher or subscriber, for hosts that keep
//! them in tables next to their owner (a wasm host keys a guest's loans by offset).
//!
//! A detached token is inert: it holds no reference and reads no memory. Only its own
//! publisher (or subscriber) turns it back into a [`SampleMut`] (or [`Sample`]): every
//! publisher and subscriber carries a process-unique id, and reattaching someone else's
//! token fails with [`ChannelError::ForeignToken`]. A token that is dropped instead keeps its
//! loan (or sample) taken until its owner drops: nothing is freed twice, only held longer.

use std::sync::atomic::{AtomicU64, Ordering};

use super::ChannelError;
use super::publisher::{Publisher, SampleMut};
use super::subscriber::{Sample, Subscriber};
use crate::{PointerOffset, ShmPointer};

/// Ids of publishers and subscribers in this process; 0 is never handed out.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_owner_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A loan taken out of its [`SampleMut`] by [`SampleMut::detach`]; [`Publisher::reattach`]
/// makes it a `SampleMut` again.
#[derive(Debug)]
#[must_use = "a detached loan stays taken until it is reattached (or its publisher drops)"]
pub struct DetachedLoan {
    pub(super) owner: u64,
    pub(super) idx: u32,
    pub(super) chunk: ShmPointer,
    pub(super) capacity: usize,
}

// SAFETY: the token's pointer is never dereferenced through the token; it is only handed back
// to the publisher it came from, which is Send + Sync.
unsafe impl Send for DetachedLoan {}
// SAFETY: as above; &DetachedLoan exposes only plain values.
unsafe impl Sync for DetachedLoan {}

impl DetachedLoan {
    /// The chunk's offset, the same in every process.
    pub fn offset(&self) -> PointerOffset {
        self.chunk.offset
    }

    /// Bytes loaned.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Where the loan's `capacity` bytes are mapped in this process while the publisher
    /// lives (writing them is sound for the holder of the loan, which is unsent).
    pub fn as_ptr(&self) -> *mut u8 {
        self.chunk.data_ptr
    }
}

/// A received sample taken out of its [`Sample`] by [`Sample::detach`];
/// [`Subscriber::reattach`] makes it a `Sample` again.
#[derive(Debug)]
#[must_use = "a detached sample stays borrowed until it is reattached (or its subscriber drops)"]
pub struct DetachedSample {
    pub(super) owner: u64,
    pub(super) ptr: *const u8,
    pub(super) len: usize,
    pub(super) offset: PointerOffset,
    pub(super) idx: u64,
}

// SAFETY: as for DetachedLoan: the pointer is only used after reattaching to its subscriber.
unsafe impl Send for DetachedSample {}
// SAFETY: as above.
unsafe impl Sync for DetachedSample {}

impl DetachedSample {
    /// The chunk's offset, the same in every process.
    pub fn offset(&self) -> PointerOffset {
        self.offset
    }

    /// Bytes in the sample.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sample has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the sample's `len` bytes are mapped (read-only) in this process while the
    /// sample is held and its subscriber lives.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
}

impl<'a> SampleMut<'a> {
    /// Lets go of the borrow of the publisher, keeping the loan (its length is reset to the
    /// whole loan when reattached).
    pub fn detach(self) -> DetachedLoan {
        let this = std::mem::ManuallyDrop::new(self);
        DetachedLoan {
            owner: this.publisher.id,
            idx: this.idx,
            chunk: this.chunk,
            capacity: this.capacity,
        }
    }
}

impl Publisher {
    /// The loan as a [`SampleMut`] again. `ForeignToken` (the loan dropped with the error,
    /// still taken) when another publisher loaned it.
    pub fn reattach(&self, loan: DetachedLoan) -> Result<SampleMut<'_>, ChannelError> {
        if loan.owner != self.id {
            return Err(ChannelError::ForeignToken);
        }
        Ok(SampleMut::new(self, loan.idx, loan.chunk, loan.capacity))
    }
}

impl<'a> Sample<'a> {
    /// Lets go of the borrow of the subscriber, keeping the sample received.
    pub fn detach(self) -> DetachedSample {
        let this = std::mem::ManuallyDrop::new(self);
        DetachedSample {
            owner: this.subscriber.id,
            ptr: this.ptr,
            len: this.len,
            offset: this.offset,
            idx: this.idx,
        }
    }
}

impl Subscriber {
    /// The sample as a [`Sample`] again. `ForeignToken` when another subscriber received it.
    pub fn reattach(&self, sample: DetachedSample) -> Result<Sample<'_>, ChannelError> {
        if sample.owner != self.id {
            return Err(ChannelError::ForeignToken);
        }
        Ok(Sample {
            subscriber: self,
            ptr: sample.ptr,
            len: sample.len,
            offset: sample.offset,
            idx: sample.idx,
        })
    }
}
