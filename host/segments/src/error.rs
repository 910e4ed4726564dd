//! Typed errors of every fallible operation. Unit variants keep them cheap to match and compare;
//! an `InternalError` carries an [`OsError`], plain data, so every enum stays `Copy + PartialEq`.

use std::fmt;
use std::io;

use thiserror::Error;

/// A raw OS error number (`errno`), as the failing call reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// The number itself (`libc::ENOENT`, ...).
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The OS's description, followed by "(os error N)".
        io::Error::from_raw_os_error(self.0).fmt(f)
    }
}

impl std::error::Error for Errno {}

/// What the operating system said when an operation failed, and what was being done: kept
/// as plain data (not an `io::Error`) so that the errors holding it stay comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError {
    action: &'static str,
    errno: Option<Errno>,
    kind: io::ErrorKind,
}

impl OsError {
    /// `error`, met while doing `action` ("creating the management object").
    pub(crate) fn from_io(action: &'static str, error: &io::Error) -> Self {
        Self {
            action,
            errno: error.raw_os_error().map(Errno),
            kind: error.kind(),
        }
    }

    /// A failure of `action` that no OS call reported (an invariant the OS objects broke).
    pub(crate) fn unexplained(action: &'static str) -> Self {
        Self {
            action,
            errno: None,
            kind: io::ErrorKind::Other,
        }
    }

    /// What was being done.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The OS's error number, when the failure came from a system call.
    pub fn errno(&self) -> Option<Errno> {
        self.errno
    }

    /// The raw error number, as [`io::Error::raw_os_error`] gives it.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno.map(Errno::raw)
    }

    /// The kind of the failure, as [`io::Error::kind`] gives it.
    pub fn kind(&self) -> io::ErrorKind {
        self.kind
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(errno) => write!(f, "{}: {errno}", self.action),
            None => write!(f, "{}: {}", self.action, self.kind),
        }
    }
}

impl std::error::Error for OsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errno.as_ref().map(|e| e as _)
    }
}

/// Why a memory or view could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
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
    #[error("the operating system failed to create or map a segment: {0}")]
    InternalError(#[source] OsError),
    /// Segment 0 would exceed the memory's [`SegmentBudget`](crate::SegmentBudget).
    #[error("the first segment exceeds the shared-memory budget")]
    QuotaExceeded,
}

/// Why a view could not be opened, or an offset could not be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
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
    /// The offset (or the range asked for from it) lies outside the payload of its segment,
    /// or its segment is not alive.
    #[error("the offset does not point into a live segment's payload")]
    InvalidOffset,
    /// The owner released the segment and created a new one under the same id while this view
    /// still has offsets of the old one registered.
    #[error("the segment id was reused while offsets of its previous segment are still registered")]
    SegmentReplaced,
    /// The operating system failed to open or map a segment.
    #[error("the operating system failed to open or map a segment: {0}")]
    InternalError(#[source] OsError),
    /// The owner process is gone (its lock on the management object is free): the memory is
    /// stale. Remove it (`resmem gc`), reclaim the name
    /// ([`MemoryBuilder::reclaim_stale`](crate::MemoryBuilder::reclaim_stale)), or open it
    /// with [`ViewBuilder::allow_stale`](crate::ViewBuilder::allow_stale) to read what it left.
    #[error("the memory's owner is gone (stale memory): remove it or reclaim its name")]
    OwnerDead,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum ManageError {
    /// Invalid name: empty, too long for the OS, or containing `/`, NUL or `..`.
    #[error("invalid name: empty, too long for the OS, or containing '/', NUL or '..'")]
    InvalidName,
    /// Insufficient permissions.
    #[error("insufficient permissions")]
    InsufficientPermissions,
    /// The operating system failed to list or remove shared-memory objects.
    #[error("the operating system failed to list or remove shared-memory objects: {0}")]
    InternalError(#[source] OsError),
}

/// Why a name is invalid, for callers (CLI, host) that want to tell the user precisely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
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

/// How a backend failure while doing `action` reads to `list`, `exists` and `remove`.
pub(crate) fn manage_error(action: &'static str, e: &io::Error) -> ManageError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => ManageError::InsufficientPermissions,
        _ => ManageError::InternalError(OsError::from_io(action, e)),
    }
}
