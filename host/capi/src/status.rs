//! The status codes, the conversion of resmem's errors into them, and the thread-local
//! message of the last failing call.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};

use resmem::{AllocError, ChannelError, CreateError, DeallocError, ManageError, OpenError};

/// What a call did: `RESMEM_OK` (0) or one negative code per kind of failure, the same kinds
/// as the Python bindings' exceptions. On failure, `resmem_last_error_message()` says what
/// happened, and no out-parameter was written.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum resmem_status {
    /// Success.
    RESMEM_OK = 0,
    /// No memory or service of that name (in that namespace).
    RESMEM_DOES_NOT_EXIST = -1,
    /// A memory or service of that name exists already.
    RESMEM_ALREADY_EXISTS = -2,
    /// The name is empty, too long for the OS, or contains `/`, NUL or `..`.
    RESMEM_INVALID_NAME = -3,
    /// A size or alignment the memory cannot serve (not a power of two, overflowing, above
    /// the page size, larger than a segment can be).
    RESMEM_INVALID_LAYOUT = -4,
    /// An offset (or a length after it) outside what it may name: not a chunk of this memory,
    /// not registered with this view, past the end of a segment's payload.
    RESMEM_INVALID_OFFSET = -5,
    /// No room for the chunk, and the memory may not grow (strategy, segment ids, budget).
    RESMEM_OUT_OF_MEMORY = -6,
    /// The OS refused access to the shared objects, or a live owner's memory was asked to be
    /// removed.
    RESMEM_PERMISSION_DENIED = -7,
    /// The owner of a memory did not finish initialising within the open timeout. (A receive
    /// that times out is no error: it returns `RESMEM_OK` and no sample.)
    RESMEM_TIMEOUT = -8,
    /// The memory's owner is gone (a stale memory).
    RESMEM_OWNER_DEAD = -9,
    /// A shared header, segment or queue holds values no honest party writes, or was written
    /// by an incompatible version of resmem.
    RESMEM_CORRUPTED = -10,
    /// A subscriber, loan or borrow limit of the service is reached.
    RESMEM_LIMIT_REACHED = -11,
    /// The publisher is gone and nothing is queued any more.
    RESMEM_PUBLISHER_GONE = -12,
    /// A required pointer argument was NULL.
    RESMEM_NULL_ARGUMENT = -13,
    /// An argument is out of range: a string that is not UTF-8, an unknown enum value, a loan
    /// or sample handed to a publisher or subscriber that did not make it, a channel setting
    /// out of range.
    RESMEM_INVALID_ARGUMENT = -14,
    /// Anything else: an unexpected OS error, or a panic inside the library (caught: it never
    /// unwinds into C).
    RESMEM_INTERNAL = -15,
}

use resmem_status as S;

impl resmem_status {
    /// Every status, in code order (`RESMEM_OK` first).
    pub const ALL: [resmem_status; 16] = [
        S::RESMEM_OK,
        S::RESMEM_DOES_NOT_EXIST,
        S::RESMEM_ALREADY_EXISTS,
        S::RESMEM_INVALID_NAME,
        S::RESMEM_INVALID_LAYOUT,
        S::RESMEM_INVALID_OFFSET,
        S::RESMEM_OUT_OF_MEMORY,
        S::RESMEM_PERMISSION_DENIED,
        S::RESMEM_TIMEOUT,
        S::RESMEM_OWNER_DEAD,
        S::RESMEM_CORRUPTED,
        S::RESMEM_LIMIT_REACHED,
        S::RESMEM_PUBLISHER_GONE,
        S::RESMEM_NULL_ARGUMENT,
        S::RESMEM_INVALID_ARGUMENT,
        S::RESMEM_INTERNAL,
    ];

    /// The status of code `code`, if there is one.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == code)
    }

    /// The constant's name, as the header spells it.
    pub fn name(self) -> &'static CStr {
        match self {
            S::RESMEM_OK => c"RESMEM_OK",
            S::RESMEM_DOES_NOT_EXIST => c"RESMEM_DOES_NOT_EXIST",
            S::RESMEM_ALREADY_EXISTS => c"RESMEM_ALREADY_EXISTS",
            S::RESMEM_INVALID_NAME => c"RESMEM_INVALID_NAME",
            S::RESMEM_INVALID_LAYOUT => c"RESMEM_INVALID_LAYOUT",
            S::RESMEM_INVALID_OFFSET => c"RESMEM_INVALID_OFFSET",
            S::RESMEM_OUT_OF_MEMORY => c"RESMEM_OUT_OF_MEMORY",
            S::RESMEM_PERMISSION_DENIED => c"RESMEM_PERMISSION_DENIED",
            S::RESMEM_TIMEOUT => c"RESMEM_TIMEOUT",
            S::RESMEM_OWNER_DEAD => c"RESMEM_OWNER_DEAD",
            S::RESMEM_CORRUPTED => c"RESMEM_CORRUPTED",
            S::RESMEM_LIMIT_REACHED => c"RESMEM_LIMIT_REACHED",
            S::RESMEM_PUBLISHER_GONE => c"RESMEM_PUBLISHER_GONE",
            S::RESMEM_NULL_ARGUMENT => c"RESMEM_NULL_ARGUMENT",
            S::RESMEM_INVALID_ARGUMENT => c"RESMEM_INVALID_ARGUMENT",
            S::RESMEM_INTERNAL => c"RESMEM_INTERNAL",
        }
    }
}

/// A failed call: its status and the text `resmem_last_error_message` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: resmem_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: resmem_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(argument: &str) -> Self {
        Self::new(S::RESMEM_NULL_ARGUMENT, format!("`{argument}` is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(S::RESMEM_INVALID_ARGUMENT, message)
    }
}

/// `Failure` from one of resmem's errors: the kind by the table below, the text its Display.
fn failure(status: resmem_status, error: &impl std::fmt::Display) -> Failure {
    Failure::new(status, error.to_string())
}

impl From<CreateError> for Failure {
    fn from(e: CreateError) -> Self {
        let status = match e {
            CreateError::AlreadyExists => S::RESMEM_ALREADY_EXISTS,
            CreateError::InsufficientPermissions => S::RESMEM_PERMISSION_DENIED,
            CreateError::InvalidName => S::RESMEM_INVALID_NAME,
            CreateError::InvalidHint => S::RESMEM_INVALID_LAYOUT,
            CreateError::QuotaExceeded => S::RESMEM_OUT_OF_MEMORY,
            _ => S::RESMEM_INTERNAL,
        };
        failure(status, &e)
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        let status = match e {
            OpenError::DoesNotExist => S::RESMEM_DOES_NOT_EXIST,
            OpenError::InsufficientPermissions => S::RESMEM_PERMISSION_DENIED,
            OpenError::InitializationNotYetFinalized => S::RESMEM_TIMEOUT,
            OpenError::InvalidName => S::RESMEM_INVALID_NAME,
            OpenError::Corrupted | OpenError::IncompatibleVersion => S::RESMEM_CORRUPTED,
            OpenError::InvalidOffset | OpenError::SegmentReplaced => S::RESMEM_INVALID_OFFSET,
            OpenError::OwnerDead => S::RESMEM_OWNER_DEAD,
            _ => S::RESMEM_INTERNAL,
        };
        failure(status, &e)
    }
}

fn alloc_status(e: AllocError) -> resmem_status {
    match e {
        AllocError::OutOfMemory
        | AllocError::MaxReallocationsReached
        | AllocError::QuotaExceeded => S::RESMEM_OUT_OF_MEMORY,
        AllocError::ExceedsMaxSupportedAlignment | AllocError::SizeTooLarge => {
            S::RESMEM_INVALID_LAYOUT
        }
        _ => S::RESMEM_INTERNAL,
    }
}

impl From<AllocError> for Failure {
    fn from(e: AllocError) -> Self {
        failure(alloc_status(e), &e)
    }
}

impl From<DeallocError> for Failure {
    fn from(e: DeallocError) -> Self {
        failure(S::RESMEM_INVALID_OFFSET, &e)
    }
}

impl From<ManageError> for Failure {
    fn from(e: ManageError) -> Self {
        let status = match e {
            ManageError::InvalidName => S::RESMEM_INVALID_NAME,
            ManageError::InsufficientPermissions => S::RESMEM_PERMISSION_DENIED,
            _ => S::RESMEM_INTERNAL,
        };
        failure(status, &e)
    }
}

impl From<ChannelError> for Failure {
    fn from(e: ChannelError) -> Self {
        let status = match &e {
            ChannelError::InvalidName => S::RESMEM_INVALID_NAME,
            ChannelError::AlreadyExists => S::RESMEM_ALREADY_EXISTS,
            ChannelError::DoesNotExist => S::RESMEM_DOES_NOT_EXIST,
            ChannelError::SubscriberLimitReached
            | ChannelError::LoanLimitReached
            | ChannelError::BorrowLimitReached => S::RESMEM_LIMIT_REACHED,
            ChannelError::PublisherGone => S::RESMEM_PUBLISHER_GONE,
            ChannelError::Corrupted | ChannelError::IncompatibleVersion => S::RESMEM_CORRUPTED,
            ChannelError::InsufficientPermissions => S::RESMEM_PERMISSION_DENIED,
            // Python raises its base `Error` for these two; C has no base code, and both are
            // arguments out of range (as CreateError::InvalidHint is an InvalidLayout).
            ChannelError::InvalidConfig(_) | ChannelError::InvalidLength { .. } => {
                S::RESMEM_INVALID_ARGUMENT
            }
            ChannelError::InvalidHint => S::RESMEM_INVALID_LAYOUT,
            ChannelError::ForeignToken => S::RESMEM_INVALID_ARGUMENT,
            ChannelError::Alloc(e) => alloc_status(*e),
            _ => S::RESMEM_INTERNAL,
        };
        failure(status, &e)
    }
}

thread_local! {
    /// The message of the last failing call on this thread.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `message` as this thread's last error (NUL bytes in it become spaces).
pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // A thread being torn down has no slot any more: the message is dropped then.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = Some(text));
}

/// This thread's last error message, as a C string that lives in the thread-local slot.
fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_deref().map_or(c"".as_ptr(), CStr::as_ptr))
        .unwrap_or(c"".as_ptr())
}

/// The message of the last call on this thread that failed: the name of the function and
/// what went wrong (e.g. `resmem_memory_create: a memory with this name already exists`).
///
/// Never NULL: `""` when no call failed on this thread yet. Calls that succeed leave the
/// message as it was; a call that fails replaces it. The string belongs to the library: do
/// not free it, and do not use it after the next resmem call on this thread (in fact it
/// changes only when a call fails, and it is freed when the thread exits).
#[unsafe(no_mangle)]
pub extern "C" fn resmem_last_error_message() -> *const c_char {
    last_error_ptr()
}

/// The name of status code `status` (`"RESMEM_OK"`, `"RESMEM_DOES_NOT_EXIST"`, ...), a static
/// string (never NULL, never to be freed); `"RESMEM_UNKNOWN_STATUS"` for a code that is no
/// `resmem_status`. Takes the code as an `int32_t` (what `resmem_status` is in C) so that any
/// value is safe to pass.
#[unsafe(no_mangle)]
pub extern "C" fn resmem_status_name(status: i32) -> *const c_char {
    resmem_status::from_code(status)
        .map_or(c"RESMEM_UNKNOWN_STATUS", resmem_status::name)
        .as_ptr()
}
