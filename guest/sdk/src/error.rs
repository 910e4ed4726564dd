//! The one error type: the WIT `error` variant as a Rust error.

use std::fmt;

use crate::bindings::resmem::memory::types::Error as WitError;

/// Why a call failed; one case per case of the WIT `error` variant. The host never traps on
/// bad arguments, it answers with one of these. The strings are the host's explanation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Error {
    /// Empty, too long, or containing `/`, NUL or `..`.
    InvalidName(String),
    /// Alignment not a power of two, or a size the host cannot represent.
    InvalidLayout(String),
    /// Not a chunk of this memory, already freed, or a range outside the chunk or segment.
    InvalidOffset(String),
    AlreadyExists,
    DoesNotExist,
    /// E.g. writing through a read-only view.
    PermissionDenied(String),
    /// No chunk free and the strategy (`static`) or the system allows no new segment.
    OutOfMemory,
    /// A new segment is needed but 256 segments are alive.
    MaxReallocationsReached,
    /// A limit the host sets for this guest (bytes, memories, size of one transfer).
    QuotaExceeded(String),
    /// `View::open` waited for an initialising owner in vain.
    Timeout,
    /// The operating system failed.
    Io(String),
    /// A channel's subscriber, loan or borrow limit (the string says which).
    LimitReached(String),
    /// The channel's publisher is gone and nothing is queued any more.
    Disconnected,
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The WIT name of the case, e.g. `"invalid-name"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "invalid-name",
            Self::InvalidLayout(_) => "invalid-layout",
            Self::InvalidOffset(_) => "invalid-offset",
            Self::AlreadyExists => "already-exists",
            Self::DoesNotExist => "does-not-exist",
            Self::PermissionDenied(_) => "permission-denied",
            Self::OutOfMemory => "out-of-memory",
            Self::MaxReallocationsReached => "max-reallocations-reached",
            Self::QuotaExceeded(_) => "quota-exceeded",
            Self::Timeout => "timeout",
            Self::Io(_) => "io",
            Self::LimitReached(_) => "limit-reached",
            Self::Disconnected => "disconnected",
        }
    }

    /// The host's explanation, for the cases that carry one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::InvalidName(s)
            | Self::InvalidLayout(s)
            | Self::InvalidOffset(s)
            | Self::PermissionDenied(s)
            | Self::QuotaExceeded(s)
            | Self::Io(s)
            | Self::LimitReached(s) => Some(s),
            Self::AlreadyExists
            | Self::DoesNotExist
            | Self::OutOfMemory
            | Self::MaxReallocationsReached
            | Self::Timeout
            | Self::Disconnected => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::InvalidName(_) => "invalid name",
            Self::InvalidLayout(_) => "invalid layout",
            Self::InvalidOffset(_) => "invalid offset",
            Self::AlreadyExists => "a memory with this name already exists",
            Self::DoesNotExist => "no memory with this name exists",
            Self::PermissionDenied(_) => "permission denied",
            Self::OutOfMemory => "out of memory",
            Self::MaxReallocationsReached => {
                "a new segment is needed but the maximum of 256 live segments is reached"
            }
            Self::QuotaExceeded(_) => "quota exceeded",
            Self::Timeout => "timed out",
            Self::Io(_) => "I/O error",
            Self::LimitReached(_) => "limit reached",
            Self::Disconnected => "the publisher is gone",
        };
        match self.detail() {
            Some(detail) if !detail.is_empty() => write!(f, "{what}: {detail}"),
            _ => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {}

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::InvalidName(s) => Self::InvalidName(s),
            WitError::InvalidLayout(s) => Self::InvalidLayout(s),
            WitError::InvalidOffset(s) => Self::InvalidOffset(s),
            WitError::AlreadyExists => Self::AlreadyExists,
            WitError::DoesNotExist => Self::DoesNotExist,
            WitError::PermissionDenied(s) => Self::PermissionDenied(s),
            WitError::OutOfMemory => Self::OutOfMemory,
            WitError::MaxReallocationsReached => Self::MaxReallocationsReached,
            WitError::QuotaExceeded(s) => Self::QuotaExceeded(s),
            WitError::Timeout => Self::Timeout,
            WitError::Io(s) => Self::Io(s),
            WitError::LimitReached(s) => Self::LimitReached(s),
            WitError::Disconnected => Self::Disconnected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wit_case_converts_with_its_wit_name() {
        let s = || "why".to_owned();
        let cases = [
            (WitError::InvalidName(s()), "invalid-name"),
            (WitError::InvalidLayout(s()), "invalid-layout"),
            (WitError::InvalidOffset(s()), "invalid-offset"),
            (WitError::AlreadyExists, "already-exists"),
            (WitError::DoesNotExist, "does-not-exist"),
            (WitError::PermissionDenied(s()), "permission-denied"),
            (WitError::OutOfMemory, "out-of-memory"),
            (
                WitError::MaxReallocationsReached,
                "max-reallocations-reached",
            ),
            (WitError::QuotaExceeded(s()), "quota-exceeded"),
            (WitError::Timeout, "timeout"),
            (WitError::Io(s()), "io"),
            (WitError::LimitReached(s()), "limit-reached"),
            (WitError::Disconnected, "disconnected"),
        ];
        for (wit, name) in cases {
            let e = Error::from(wit);
            assert_eq!(e.name(), name);
            assert!(!e.to_string().is_empty());
            if let Some(detail) = e.detail() {
                assert_eq!(detail, "why");
                assert!(e.to_string().ends_with(": why"), "{e}");
            }
        }
    }

    #[test]
    fn is_a_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(Error::Timeout);
        assert_eq!(e.to_string(), "timed out");
    }
}
