//! What can go wrong on a channel.

use thiserror::Error;

use crate::{AllocError, CreateError, ManageError, NameError, OpenError};

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The service name is empty, contains `/`, NUL or `..`, or is too long for the backend.
    #[error("invalid service name")]
    InvalidName,
    /// A publisher of that service exists (alive, or stale without `reclaim_stale`), or the
    /// name is taken by a plain memory.
    #[error("the service already has a publisher")]
    AlreadyExists,
    /// No publisher offers that service (and none appeared within the open timeout).
    #[error("no publisher offers this service")]
    DoesNotExist,
    /// Every subscriber slot of the service is taken by a live subscriber.
    #[error("the service has its maximum number of subscribers")]
    SubscriberLimitReached,
    /// The publisher holds `max_loans` unsent samples.
    #[error("the publisher holds its maximum number of unsent loans")]
    LoanLimitReached,
    /// The subscriber holds `max_borrowed` received samples; drop one first.
    #[error("the subscriber holds its maximum number of received samples")]
    BorrowLimitReached,
    /// The publisher is gone and nothing is queued any more.
    #[error("the publisher is gone")]
    PublisherGone,
    /// A shared object of the service holds values no honest party writes (a header that
    /// does not validate, a queue index or an entry out of range).
    #[error("a shared object of the service is corrupted")]
    Corrupted,
    /// The service was created by an incompatible version of resmem.
    #[error("the service was created by an incompatible version")]
    IncompatibleVersion,
    /// The OS refused access to one of the service's objects.
    #[error("insufficient permissions for the service's shared objects")]
    InsufficientPermissions,
    /// A builder value is out of range (the text says which).
    #[error("invalid channel configuration: {0}")]
    InvalidConfig(&'static str),
    /// The memory's chunk layout or chunk-count hint cannot be met (alignment above the page
    /// size, or a first segment larger than the supported maximum), as
    /// [`CreateError::InvalidHint`] for a plain memory.
    #[error("the chunk layout or chunk count hint is too large or too aligned")]
    InvalidHint,
    /// `SampleMut::set_len` asked for more bytes than were loaned; the sample was not sent.
    #[error("sample length {len} exceeds the loaned {capacity} bytes")]
    InvalidLength {
        /// The length asked for.
        len: usize,
        /// The loaned size.
        capacity: usize,
    },
    /// The memory could not provide a chunk.
    #[error("allocation failed: {0}")]
    Alloc(AllocError),
    /// A detached loan or sample was handed to a publisher or subscriber that did not make it.
    #[error("the loan or sample belongs to another publisher or subscriber")]
    ForeignToken,
    /// An unexpected OS error, with what failed.
    #[error("internal error: {0}")]
    InternalError(String),
}

impl From<AllocError> for ChannelError {
    fn from(e: AllocError) -> Self {
        Self::Alloc(e)
    }
}

impl From<NameError> for ChannelError {
    fn from(_: NameError) -> Self {
        Self::InvalidName
    }
}

impl From<ManageError> for ChannelError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::InvalidName => Self::InvalidName,
            ManageError::InsufficientPermissions => Self::InsufficientPermissions,
            ManageError::InternalError(e) => Self::InternalError(format!("managing objects: {e}")),
        }
    }
}

impl From<CreateError> for ChannelError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::InvalidName => Self::InvalidName,
            CreateError::AlreadyExists => Self::AlreadyExists,
            CreateError::InsufficientPermissions => Self::InsufficientPermissions,
            CreateError::InvalidHint => Self::InvalidHint,
            // The first segment exceeds the memory's budget, as a later one would.
            CreateError::QuotaExceeded => Self::Alloc(AllocError::QuotaExceeded),
            other => Self::InternalError(format!("creating the memory: {other}")),
        }
    }
}

impl From<OpenError> for ChannelError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::InvalidName => Self::InvalidName,
            OpenError::DoesNotExist => Self::DoesNotExist,
            OpenError::OwnerDead => Self::PublisherGone,
            OpenError::InsufficientPermissions => Self::InsufficientPermissions,
            OpenError::IncompatibleVersion => Self::IncompatibleVersion,
            OpenError::Corrupted | OpenError::InvalidOffset | OpenError::SegmentReplaced => {
                Self::Corrupted
            }
            other => Self::InternalError(format!("opening the memory: {other}")),
        }
    }
}

/// An OS error while creating or opening a service object.
pub(crate) fn io_error(e: &std::io::Error, what: &str) -> ChannelError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ChannelError::DoesNotExist,
        std::io::ErrorKind::AlreadyExists => ChannelError::AlreadyExists,
        std::io::ErrorKind::PermissionDenied => ChannelError::InsufficientPermissions,
        std::io::ErrorKind::InvalidData => ChannelError::Corrupted,
        _ => ChannelError::InternalError(format!("{what}: {e}")),
    }
}
