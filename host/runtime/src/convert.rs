//! Validation of guest arguments and translation between WIT values and native `resmem` ones.

use std::alloc::Layout;

use resmem::{
    AccessMode, AllocError, AllocationStrategy, ChannelError, ContentPlacement, CreateError,
    GrowError, OpenError, PointerOffset, SegmentId,
};

use crate::bindings::channel_api::Overflow as WitOverflow;
use crate::bindings::types as wit;
use crate::bindings::types::Error;

/// A guest layout as a native one: the alignment must be a non-zero power of two and the size,
/// rounded up to it, must fit `isize`.
pub fn layout(layout: wit::Layout) -> Result<Layout, Error> {
    let align = usize::try_from(layout.align)
        .ok()
        .filter(|a| a.is_power_of_two())
        .ok_or_else(|| {
            Error::InvalidLayout(format!("alignment {} is not a power of two", layout.align))
        })?;
    let size = usize::try_from(layout.size)
        .map_err(|_| Error::InvalidLayout(format!("size {} does not fit", layout.size)))?;
    Layout::from_size_align(size, align).map_err(|_| {
        Error::InvalidLayout(format!(
            "size {} with alignment {align} overflows",
            layout.size
        ))
    })
}

pub fn offset(offset: wit::PointerOffset) -> Result<PointerOffset, Error> {
    PointerOffset::try_new(SegmentId::new(offset.segment), offset.offset).ok_or_else(|| {
        Error::InvalidOffset(format!("offset {} does not fit in 56 bits", offset.offset))
    })
}

pub fn to_wit_offset(offset: PointerOffset) -> wit::PointerOffset {
    wit::PointerOffset {
        segment: offset.segment_id().value(),
        offset: offset.offset(),
    }
}

pub fn strategy(strategy: wit::AllocationStrategy) -> AllocationStrategy {
    match strategy {
        wit::AllocationStrategy::Static => AllocationStrategy::Static,
        wit::AllocationStrategy::BestFit => AllocationStrategy::BestFit,
        wit::AllocationStrategy::PowerOfTwo => AllocationStrategy::PowerOfTwo,
    }
}

pub fn to_wit_strategy(strategy: AllocationStrategy) -> wit::AllocationStrategy {
    match strategy {
        AllocationStrategy::Static => wit::AllocationStrategy::Static,
        AllocationStrategy::BestFit => wit::AllocationStrategy::BestFit,
        AllocationStrategy::PowerOfTwo => wit::AllocationStrategy::PowerOfTwo,
        // A strategy WIT cannot name (guests only create the three above): report the default.
        _ => wit::AllocationStrategy::PowerOfTwo,
    }
}

pub fn access(mode: wit::AccessMode) -> AccessMode {
    match mode {
        wit::AccessMode::Read => AccessMode::Read,
        wit::AccessMode::ReadWrite => AccessMode::ReadWrite,
    }
}

pub fn placement(placement: wit::ContentPlacement) -> ContentPlacement {
    match placement {
        wit::ContentPlacement::Front => ContentPlacement::Front,
        wit::ContentPlacement::Back => ContentPlacement::Back,
    }
}

pub fn alloc_error(e: AllocError) -> Error {
    match e {
        AllocError::OutOfMemory => Error::OutOfMemory,
        AllocError::MaxReallocationsReached => Error::MaxReallocationsReached,
        AllocError::ExceedsMaxSupportedAlignment => {
            Error::InvalidLayout("alignment exceeds the page size".into())
        }
        AllocError::SizeTooLarge => Error::InvalidLayout("size too large for a segment".into()),
        AllocError::QuotaExceeded => {
            Error::QuotaExceeded("shared-memory bytes of this guest".into())
        }
        other => Error::Io(other.to_string()),
    }
}

pub fn grow_error(e: GrowError) -> Error {
    match e {
        GrowError::GrowWouldShrink => {
            Error::InvalidLayout("the new layout is smaller than the chunk".into())
        }
        GrowError::OutOfMemory => Error::OutOfMemory,
        GrowError::MaxReallocationsReached => Error::MaxReallocationsReached,
        GrowError::ExceedsMaxSupportedAlignment => {
            Error::InvalidLayout("alignment exceeds the page size".into())
        }
        GrowError::SizeTooLarge => Error::InvalidLayout("size too large for a segment".into()),
        GrowError::InvalidOffset => Error::InvalidOffset("not a chunk of this memory".into()),
        GrowError::QuotaExceeded => {
            Error::QuotaExceeded("shared-memory bytes of this guest".into())
        }
        other => Error::Io(other.to_string()),
    }
}

pub fn create_error(e: CreateError) -> Error {
    match e {
        CreateError::AlreadyExists => Error::AlreadyExists,
        CreateError::InsufficientPermissions => {
            Error::PermissionDenied("cannot create the shared-memory objects".into())
        }
        CreateError::InvalidName => Error::InvalidName("invalid name".into()),
        CreateError::InvalidHint => {
            Error::InvalidLayout("the chunk layout or chunk count hint is too large".into())
        }
        CreateError::InternalError(os) => {
            Error::Io(format!("the OS failed to create a segment: {os}"))
        }
        CreateError::QuotaExceeded => {
            Error::QuotaExceeded("shared-memory bytes of this guest".into())
        }
        other => Error::Io(other.to_string()),
    }
}

pub fn open_error(e: OpenError) -> Error {
    match e {
        OpenError::DoesNotExist => Error::DoesNotExist,
        OpenError::InsufficientPermissions => {
            Error::PermissionDenied("cannot open the shared-memory objects".into())
        }
        OpenError::InitializationNotYetFinalized => Error::Timeout,
        OpenError::InvalidName => Error::InvalidName("invalid name".into()),
        OpenError::IncompatibleVersion => {
            Error::Io("the memory was created by an incompatible resmem".into())
        }
        OpenError::Corrupted => Error::Io("the memory's header or segment is corrupted".into()),
        OpenError::InvalidOffset => {
            Error::InvalidOffset("not inside a live segment's payload".into())
        }
        OpenError::SegmentReplaced => Error::InvalidOffset(
            "the segment was replaced while offsets of it are registered".into(),
        ),
        OpenError::InternalError(os) => Error::Io(format!("the OS failed to open a segment: {os}")),
        OpenError::OwnerDead => Error::Io(
            "the memory's owner is gone (stale memory); it can only be removed or its name reclaimed"
                .into(),
        ),
        other => Error::Io(other.to_string()),
    }
}

/// `[at, at + len)` inside `[0, limit)`, without overflow.
pub fn range(at: u64, len: u64, limit: u64, what: &str) -> Result<(), Error> {
    match at.checked_add(len) {
        Some(end) if end <= limit => Ok(()),
        _ => Err(Error::InvalidOffset(format!(
            "{len} bytes at {at} exceed the {limit} bytes of the {what}"
        ))),
    }
}

impl From<crate::window::SegmentsError> for Error {
    fn from(e: crate::window::SegmentsError) -> Self {
        use crate::window::SegmentsError;
        match e {
            SegmentsError::Full { .. } => Self::QuotaExceeded(e.to_string()),
            SegmentsError::Broken(_) | SegmentsError::NotAttached | SegmentsError::Map(_) => {
                Self::Io(e.to_string())
            }
        }
    }
}

impl From<PointerOffset> for wit::PointerOffset {
    fn from(offset: PointerOffset) -> Self {
        to_wit_offset(offset)
    }
}

/// A native channel error as the guest's.
pub(crate) fn channel_error(e: ChannelError) -> Error {
    match e {
        ChannelError::InvalidName => Error::InvalidName("invalid service name".into()),
        ChannelError::AlreadyExists => Error::AlreadyExists,
        ChannelError::DoesNotExist => Error::DoesNotExist,
        ChannelError::SubscriberLimitReached => {
            Error::LimitReached("subscribers: every subscriber slot of the service is taken".into())
        }
        ChannelError::LoanLimitReached => {
            Error::LimitReached("loans: the publisher holds its max-loans unsent loans".into())
        }
        ChannelError::BorrowLimitReached => Error::LimitReached(
            "borrowed: the subscriber holds its max-borrowed samples; release one".into(),
        ),
        ChannelError::PublisherGone => Error::Disconnected,
        ChannelError::InsufficientPermissions => {
            Error::PermissionDenied("the service's shared objects".into())
        }
        ChannelError::InvalidConfig(why) => {
            Error::QuotaExceeded(format!("invalid channel configuration: {why}"))
        }
        // The memory's hint: the error `memory.create` gives for the same hint.
        ChannelError::InvalidHint => create_error(resmem::CreateError::InvalidHint),
        ChannelError::InvalidLength { len, capacity } => {
            Error::InvalidLayout(format!("length {len} exceeds the loan's {capacity} bytes"))
        }
        ChannelError::Alloc(e) => alloc_error(e),
        e @ (ChannelError::Corrupted | ChannelError::IncompatibleVersion) => {
            Error::Io(e.to_string())
        }
        e => Error::Io(e.to_string()),
    }
}

pub(crate) fn overflow(overflow: WitOverflow) -> resmem::Overflow {
    match overflow {
        WitOverflow::DropOldest => resmem::Overflow::DropOldest,
        WitOverflow::DropNewest => resmem::Overflow::DropNewest,
        WitOverflow::Block => resmem::Overflow::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_validated() {
        let ok = layout(wit::Layout { size: 10, align: 8 }).unwrap();
        assert_eq!((ok.size(), ok.align()), (10, 8));
        for (size, align) in [
            (8, 0),
            (8, 3),
            (8, 1 << 63 | 1),
            (u64::MAX, 8),
            (1 << 63, 1 << 62),
        ] {
            assert!(
                matches!(
                    layout(wit::Layout { size, align }),
                    Err(Error::InvalidLayout(_))
                ),
                "size {size} align {align}"
            );
        }
    }

    #[test]
    fn offsets_pack_like_native() {
        let native = offset(wit::PointerOffset {
            segment: 7,
            offset: 4096,
        })
        .unwrap();
        assert_eq!(native.as_u64(), (4096 << 8) | 7);
        assert_eq!(to_wit_offset(native).offset, 4096);
        assert!(
            offset(wit::PointerOffset {
                segment: 0,
                offset: 1 << 56
            })
            .is_err()
        );
    }

    #[test]
    fn a_dead_owner_is_an_io_error_that_says_so() {
        match open_error(OpenError::OwnerDead) {
            Error::Io(message) => assert!(message.contains("owner is gone"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ranges_never_overflow() {
        assert!(range(0, 10, 10, "chunk").is_ok());
        assert!(range(1, 10, 10, "chunk").is_err());
        assert!(range(u64::MAX, 2, u64::MAX, "chunk").is_err());
        assert!(range(10, 0, 10, "chunk").is_ok());
    }
}
