//! The exceptions: `resmem.Error` and one subclass per kind of failure.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use resmem::{AllocError, ChannelError, CreateError, ManageError, OpenError};

pyo3::create_exception!(resmem, Error, PyException, "Every error of resmem.");
pyo3::create_exception!(
    resmem,
    DoesNotExist,
    Error,
    "No memory or service of that name."
);
pyo3::create_exception!(
    resmem,
    AlreadyExists,
    Error,
    "A memory or service of that name exists."
);
pyo3::create_exception!(
    resmem,
    InvalidName,
    Error,
    "The name is empty, too long, or has `/`, NUL or `..`."
);
pyo3::create_exception!(
    resmem,
    InvalidLayout,
    Error,
    "A size or alignment the memory cannot serve."
);
pyo3::create_exception!(
    resmem,
    InvalidOffset,
    Error,
    "An offset (or a length after it) outside what it may name."
);
pyo3::create_exception!(
    resmem,
    OutOfMemory,
    Error,
    "No room for the chunk, and the memory may not grow."
);
pyo3::create_exception!(
    resmem,
    PermissionDenied,
    Error,
    "The OS refused access to the shared objects."
);
pyo3::create_exception!(
    resmem,
    Timeout,
    Error,
    "The owner did not finish initialising in time."
);
pyo3::create_exception!(
    resmem,
    OwnerDead,
    Error,
    "The memory's owner is gone (a stale memory)."
);
pyo3::create_exception!(
    resmem,
    Corrupted,
    Error,
    "A shared header or queue holds garbage."
);
pyo3::create_exception!(
    resmem,
    LimitReached,
    Error,
    "A subscriber, loan or borrow limit of the service."
);
pyo3::create_exception!(
    resmem,
    PublisherGone,
    Error,
    "The publisher is gone and nothing is queued."
);
pyo3::create_exception!(
    resmem,
    Closed,
    Error,
    "The object was closed (freed, released, sent) already."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("DoesNotExist", py.get_type::<DoesNotExist>())?;
    m.add("AlreadyExists", py.get_type::<AlreadyExists>())?;
    m.add("InvalidName", py.get_type::<InvalidName>())?;
    m.add("InvalidLayout", py.get_type::<InvalidLayout>())?;
    m.add("InvalidOffset", py.get_type::<InvalidOffset>())?;
    m.add("OutOfMemory", py.get_type::<OutOfMemory>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("Timeout", py.get_type::<Timeout>())?;
    m.add("OwnerDead", py.get_type::<OwnerDead>())?;
    m.add("Corrupted", py.get_type::<Corrupted>())?;
    m.add("LimitReached", py.get_type::<LimitReached>())?;
    m.add("PublisherGone", py.get_type::<PublisherGone>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    Ok(())
}

pub(crate) fn create(e: CreateError) -> PyErr {
    let text = e.to_string();
    match e {
        CreateError::AlreadyExists => AlreadyExists::new_err(text),
        CreateError::InsufficientPermissions => PermissionDenied::new_err(text),
        CreateError::InvalidName => InvalidName::new_err(text),
        CreateError::InvalidHint => InvalidLayout::new_err(text),
        CreateError::QuotaExceeded => OutOfMemory::new_err(text),
        _ => Error::new_err(text),
    }
}

pub(crate) fn open(e: OpenError) -> PyErr {
    let text = e.to_string();
    match e {
        OpenError::DoesNotExist => DoesNotExist::new_err(text),
        OpenError::InsufficientPermissions => PermissionDenied::new_err(text),
        OpenError::InitializationNotYetFinalized => Timeout::new_err(text),
        OpenError::InvalidName => InvalidName::new_err(text),
        OpenError::Corrupted | OpenError::IncompatibleVersion => Corrupted::new_err(text),
        OpenError::InvalidOffset | OpenError::SegmentReplaced => InvalidOffset::new_err(text),
        OpenError::OwnerDead => OwnerDead::new_err(text),
        _ => Error::new_err(text),
    }
}

pub(crate) fn alloc(e: AllocError) -> PyErr {
    let text = e.to_string();
    match e {
        AllocError::OutOfMemory
        | AllocError::MaxReallocationsReached
        | AllocError::QuotaExceeded => OutOfMemory::new_err(text),
        AllocError::ExceedsMaxSupportedAlignment | AllocError::SizeTooLarge => {
            InvalidLayout::new_err(text)
        }
        _ => Error::new_err(text),
    }
}

pub(crate) fn manage(e: ManageError) -> PyErr {
    let text = e.to_string();
    match e {
        ManageError::InvalidName => InvalidName::new_err(text),
        ManageError::InsufficientPermissions => PermissionDenied::new_err(text),
        _ => Error::new_err(text),
    }
}

pub(crate) fn channel(e: ChannelError) -> PyErr {
    let text = e.to_string();
    match e {
        ChannelError::InvalidName => InvalidName::new_err(text),
        ChannelError::AlreadyExists => AlreadyExists::new_err(text),
        ChannelError::DoesNotExist => DoesNotExist::new_err(text),
        ChannelError::SubscriberLimitReached
        | ChannelError::LoanLimitReached
        | ChannelError::BorrowLimitReached => LimitReached::new_err(text),
        ChannelError::PublisherGone => PublisherGone::new_err(text),
        ChannelError::Corrupted | ChannelError::IncompatibleVersion => Corrupted::new_err(text),
        ChannelError::InsufficientPermissions => PermissionDenied::new_err(text),
        ChannelError::InvalidConfig(_) | ChannelError::InvalidHint => Error::new_err(text),
        ChannelError::Alloc(e) => alloc(e),
        _ => Error::new_err(text),
    }
}

/// `layout` of `size` bytes aligned to `align`, or `InvalidLayout`.
pub(crate) fn layout(size: usize, align: usize) -> PyResult<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(size, align).map_err(|_| {
        InvalidLayout::new_err(format!(
            "size {size} with alignment {align} (a power of two, the size within isize)"
        ))
    })
}
