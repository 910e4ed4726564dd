//! What every entry point shares: the panic barrier that turns a result into a status (and
//! records the message), and the checked reading of C strings, handles and out-pointers.

use std::alloc::Layout;
use std::any::Any;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::time::Duration;

use crate::status::{Failure, resmem_status, set_last_error};

/// Runs the body of entry point `func`: `RESMEM_OK` when it succeeds; otherwise its status,
/// with `func: <message>` as this thread's last error. A panic becomes `RESMEM_INTERNAL`
/// and never unwinds into C.
pub(crate) fn call(func: &str, body: impl FnOnce() -> Result<(), Failure>) -> resmem_status {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return resmem_status::RESMEM_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure::new(
            resmem_status::RESMEM_INTERNAL,
            format!("panic: {}", panic_text(payload.as_ref())),
        ),
    };
    set_last_error(&format!("{func}: {}", failure.message));
    failure.status
}

/// Runs an accessor that returns a value, not a status: `fallback` if it panics (none does;
/// this keeps the no-unwinding promise without relying on that).
pub(crate) fn value<T>(func: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(&format!("{func}: panic: {}", panic_text(payload.as_ref())));
        fallback
    })
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The UTF-8 string `ptr` points to; `RESMEM_NULL_ARGUMENT` when it is NULL.
///
/// # Safety
/// A non-null `ptr` points to a NUL-terminated string that stays valid and unchanged for `'a`.
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null, and the caller guarantees a live NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map_err(|_| Failure::invalid(format!("`{what}` is not valid UTF-8")))
}

/// Like [`required_str`], but NULL is `None`.
///
/// # Safety
/// As for [`required_str`].
pub(crate) unsafe fn optional_str<'a>(
    ptr: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { required_str(ptr, what) }.map(Some)
}

/// The handle `ptr` points to; `RESMEM_NULL_ARGUMENT` when it is NULL.
///
/// # Safety
/// A non-null `ptr` is a live handle of type `T` made by this library, not destroyed during
/// `'a`.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller guarantees that a non-null pointer is a live `T`.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// A required out-parameter: the pointer, checked for NULL (written only on success).
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr).ok_or_else(|| Failure::null(what))
}

/// Writes `value` through an optional out-parameter (nothing when it is NULL).
///
/// # Safety
/// A non-null `ptr` is valid for a write of `T` and aligned.
pub(crate) unsafe fn write_optional<T>(ptr: *mut T, value: T) {
    if let Some(ptr) = NonNull::new(ptr) {
        // SAFETY: non-null; valid and aligned by the caller's contract.
        unsafe { ptr.write(value) };
    }
}

/// A handle moved to the heap, for C to hold.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back a handle made by [`into_handle`]; `None` for NULL.
///
/// # Safety
/// A non-null `ptr` came from [`into_handle`] for this `T` and is not used afterwards.
pub(crate) unsafe fn take_handle<T>(ptr: *mut T) -> Option<Box<T>> {
    // SAFETY: the caller's contract: a box leaked by into_handle, taken back once.
    NonNull::new(ptr).map(|ptr| unsafe { Box::from_raw(ptr.as_ptr()) })
}

/// The configuration of `namespace` (`None`: resmem's default prefix), as Python's
/// `namespace=` and `resmem run --namespace` read it.
pub(crate) fn config(namespace: Option<&str>) -> resmem::Config {
    match namespace {
        Some(ns) => resmem::Config::default().prefix(ns),
        None => resmem::Config::default(),
    }
}

/// `size` bytes aligned to `align`, or `RESMEM_INVALID_LAYOUT`.
pub(crate) fn layout(size: usize, align: usize) -> Result<Layout, Failure> {
    Layout::from_size_align(size, align).map_err(|_| {
        Failure::new(
            resmem_status::RESMEM_INVALID_LAYOUT,
            format!(
                "size {size} with alignment {align} is no layout (the alignment must be a \
                 power of two, the size rounded up to it at most isize::MAX)"
            ),
        )
    })
}

/// `ms` milliseconds.
pub(crate) fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}
