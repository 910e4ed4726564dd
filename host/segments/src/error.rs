//! Typed errors of every fallible operation. Unit variants keep them cheap to match and compare.

use thiserror::Error;

/// Why a memory or view could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CreateError {
    /// A memory with this name already exists.
    #[error("a memory with this name already exists")]
    AlreadyExists,
    /// Insufficient permissions to create the shared-memory objects.
    #[error("insufficient permissions to create the shared-memory objects")]
    InsufficientPermissions,
    /// Invalid name: empty, too long for the OS, or containing `/`, NUL or `..`.
    #[error("invalid name: empty, too long for the OS, or containing '/', NUL or '..'")]
    InvalidName,
    /// The layout or chunk-count hint is not representable (overflow, alignment above the page
    /// size, or a first segment larger than the supported maximum).
    #[error("the chunk layout or chunk count hint is too large or too aligned")]
    InvalidHint,
    /// The operating system failed to create or map a segment.
    #[error("the operating system failed to create or map a segment")]
    InternalError,
    /// Segment 0 would exceed the memory's [`SegmentBudget`](crate::SegmentBudget).
    #[error("the first segment exceeds the shared-memory budget")]
    QuotaExceeded,
}

/// Why a view could not be opened, or an offset could not be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpenError {
    /// No memory (or segment) with this name exists.
    #[error("no memory (or segment) with this name exists")]
    DoesNotExist,
    /// Insufficient permissions to open the shared-memory objects.
    #[error("insufficient permissions to open the shared-memory objects")]
    InsufficientPermissions,
    /// The owner has not finished initialising the memory.
    #[error("the owner has not finished initialising the memory")]
    InitializationNotYetFinalized,
    /// Invalid name: empty, too long for the OS, or containing `/`, NUL or `..`.
    #[error("invalid name: empty, too long for the OS, or containing '/', NUL or '..'")]
    InvalidName,
    /// The management header was written by an incompatible version of resmem.
    #[error("the management header was written by an incompatible version of resmem")]
    IncompatibleVersion,
    /// The management header or a segment is corrupted or inconsistent.
    #[error("the management header or a segment is corrupted or inconsistent")]
    Corrupted,
    /// The offset lies outside the payload of its segment, or its segment is not alive.
    #[error("the offset does not point into a live segment's payload")]
    InvalidOffset,
    /// The owner released the segment and created a new one under the same id while this view
    /// still has offsets of the old one registered.
    #[error("the segment id was reused while offsets of its previous segment are still registered")]
    SegmentReplaced,
    /// The operating system failed to open or map a segment.
    #[error("the operating system failed to open or map a segment")]
    InternalError,
    /// The owner process is gone (its lock on the management object is free): the memory is
    /// stale. Remove it (`resmem gc`), reclaim the name
    /// ([`MemoryBuilder::reclaim_stale`](crate::MemoryBuilder::reclaim_stale)), or open it
    /// with [`ViewBuilder::allow_stale`](crate::ViewBuilder::allow_stale) to read what it left.
    #[error("the memory's owner is gone (stale memory): remove it or reclaim its name")]
    OwnerDead,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AllocError {
    /// No chunk is free and the strategy (or the system) does not allow a new segment.
    #[error("out of memory")]
    OutOfMemory,
    /// A new segment is needed but all 256 segment ids are alive.
    #[error("a new segment is needed but the maximum of 256 live segments is reached")]
    MaxReallocationsReached,
    /// The requested alignment exceeds the page size.
    #[error("the requested alignment exceeds the page size")]
    ExceedsMaxSupportedAlignment,
    /// The requested size is larger than a segment can be.
    #[error("the requested size is larger than a segment can be")]
    SizeTooLarge,
    /// A new segment would exceed the memory's [`SegmentBudget`](crate::SegmentBudget).
    #[error("a new segment would exceed the shared-memory budget")]
    QuotaExceeded,
}

/// Why a grow failed; the old chunk stays valid and untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GrowError {
    /// The new layout is smaller than the old one.
    #[error("the new layout is smaller than the old one")]
    GrowWouldShrink,
    /// Out of memory.
    #[error("out of memory")]
    OutOfMemory,
    /// A new segment is needed but the maximum of 256 live segments is reached.
    #[error("a new segment is needed but the maximum of 256 live segments is reached")]
    MaxReallocationsReached,
    /// The requested alignment exceeds the page size.
    #[error("the requested alignment exceeds the page size")]
    ExceedsMaxSupportedAlignment,
    /// The requested size is larger than a segment can be.
    #[error("the requested size is larger than a segment can be")]
    SizeTooLarge,
    /// The offset is not an allocated chunk of this memory.
    #[error("the offset is not an allocated chunk of this memory")]
    InvalidOffset,
    /// A new segment would exceed the shared-memory budget.
    #[error("a new segment would exceed the shared-memory budget")]
    QuotaExceeded,
}

impl From<AllocError> for GrowError {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::OutOfMemory => Self::OutOfMemory,
            AllocError::MaxReallocationsReached => Self::MaxReallocationsReached,
            AllocError::ExceedsMaxSupportedAlignment => Self::ExceedsMaxSupportedAlignment,
            AllocError::SizeTooLarge => Self::SizeTooLarge,
            AllocError::QuotaExceeded => Self::QuotaExceeded,
        }
    }
}

/// Why a checked deallocation was refused; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DeallocError {
    /// The offset is not a chunk of a live segment of this memory.
    #[error("the offset is not a chunk of a live segment of this memory")]
    InvalidOffset,
    /// The chunk is not allocated (double free).
    #[error("the chunk is not allocated (double free)")]
    NotAllocated,
    /// The memory belongs to a channel publisher, which alone frees its chunks (from its
    /// record of who holds them); a free from outside could let two loans share a chunk.
    #[error("the memory's chunks belong to a channel publisher, which frees them")]
    OwnedByChannel,
}

/// Why `list`, `exists` or `remove` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ManageError {
    /// Invalid name: empty, too long for the OS, or containing `/`, NUL or `..`.
    #[error("invalid name: empty, too long for the OS, or containing '/', NUL or '..'")]
    InvalidName,
    /// Insufficient permissions.
    #[error("insufficient permissions")]
    InsufficientPermissions,
    /// The operating system failed to list or remove shared-memory objects.
    #[error("the operating system failed to list or remove shared-memory objects")]
    InternalError,
}

/// Why a name is invalid, for callers (CLI, host) that want to tell the user precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The OS name would be `len` bytes, more than the `max` the backend allows.
    #[error("the OS name would be {len} bytes, more than the {max} the backend allows")]
    TooLong {
        /// Bytes of the OS name.
        len: usize,
        /// The most the backend allows.
        max: usize,
    },
    /// The name contains `/`.
    #[error("the name contains '/'")]
    ContainsSlash,
    /// The name contains a NUL byte.
    #[error("the name contains a NUL byte")]
    ContainsNul,
    /// The name contains `..`.
    #[error("the name contains '..'")]
    ContainsDotDot,
}

impl From<NameError> for CreateError {
    fn from(_: NameError) -> Self {
        Self::InvalidName
    }
}

impl From<NameError> for OpenError {
    fn from(_: NameError) -> Self {
        Self::InvalidName
    }
}

impl From<NameError> for ManageError {
    fn from(_: NameError) -> Self {
        Self::InvalidName
    }
}

pub(crate) fn manage_error(e: &std::io::Error) -> ManageError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => ManageError::InsufficientPermissions,
        _ => ManageError::InternalError,
    }
}
