//! The host side of `resmem:memory/channel`: a guest's publishers and subscribers are native
//! [`resmem::Publisher`]s and [`resmem::Subscriber`]s, so guests and native processes share
//! services. The host keeps every loan and received sample of a guest in its own records
//! (detached tokens keyed by offset), so a guest can only pass back what it was given, and
//! returns all of them when the resource (or the whole store) goes.

mod state;

pub use state::{GuestPublisher, GuestSubscriber};

use resmem::ChannelError;

use crate::bindings::channel_api::Overflow as WitOverflow;
use crate::bindings::types::Error;

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
        ChannelError::InvalidHint => crate::convert::create_error(resmem::CreateError::InvalidHint),
        ChannelError::InvalidLength { len, capacity } => {
            Error::InvalidLayout(format!("length {len} exceeds the loan's {capacity} bytes"))
        }
        ChannelError::Alloc(e) => crate::convert::alloc_error(e),
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
