//! `resmem_view`: a peer's window onto a memory another process owns.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Mutex, PoisonError};

use resmem::{AccessMode, PointerOffset};

use crate::ffi_util::{
    call, config, handle, into_handle, millis, optional_str, out, required_str, take_handle,
};
use crate::status::{Failure, resmem_status};

/// A view of a memory (opaque). Made by `resmem_view_open`, freed by `resmem_view_close`.
/// Calls on one handle from several threads at once are allowed (the view is thread-safe),
/// except `resmem_view_close`, which must be the last call.
pub struct resmem_view {
    view: resmem::View,
    /// Registrations made through this handle and not undone, per packed offset: the core's
    /// unregister may only be called for an offset it registered, so this is checked first.
    registered: Mutex<HashMap<u64, usize>>,
}

impl resmem_view {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, usize>> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens a view of memory `name` in `namespace_` (NULL: resmem's default prefix), mapping
/// its segments read-only (`writable` 0) or read-write (`writable` 1). Waits up to
/// `timeout_ms` for an owner that is still initialising the memory; a memory that does not
/// exist is `RESMEM_DOES_NOT_EXIST` at once. Data segments are mapped later, by
/// `resmem_view_register`. On success `*out` is a new handle, to be freed with
/// `resmem_view_close`; on failure it is not written.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`name` or `out` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a string that is not UTF-8, `writable` neither 0 nor 1),
/// `RESMEM_INVALID_NAME`, `RESMEM_DOES_NOT_EXIST`, `RESMEM_TIMEOUT` (still initialising),
/// `RESMEM_OWNER_DEAD`, `RESMEM_PERMISSION_DENIED`, `RESMEM_CORRUPTED` or `RESMEM_INTERNAL`.
///
/// # Safety
/// Non-null strings are NUL-terminated; a non-null `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_view_open(
    name: *const c_char,
    namespace_: *const c_char,
    writable: c_int,
    timeout_ms: u32,
    out: *mut *mut resmem_view,
) -> resmem_status {
    call("resmem_view_open", || {
        let out = self::out(out, "out")?;
        // SAFETY: valid strings or NULL (the caller's contract).
        let (name, namespace) = unsafe {
            (
                required_str(name, "name")?,
                optional_str(namespace_, "namespace_")?,
            )
        };
        let access = match writable {
            0 => AccessMode::Read,
            1 => AccessMode::ReadWrite,
            other => {
                return Err(Failure::invalid(format!(
                    "writable is {other}: 0 (read-only) or 1 (read-write)"
                )));
            }
        };
        let view = resmem::View::builder(name)
            .config(&config(namespace))
            .timeout(millis(timeout_ms))
            .open(access)?;
        let handle = into_handle(resmem_view {
            view,
            registered: Mutex::default(),
        });
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Maps the segment of `offset` (a packed offset another process got from its owner) if
/// needed, registers the offset and returns in `*out_ptr` its address in this process: `len`
/// bytes from there lie inside the segment's payload (checked: a range past the payload, or
/// an offset into no live segment, is `RESMEM_INVALID_OFFSET`). Read-only views give memory
/// that must not be written. The address stays valid until the matching
/// `resmem_view_unregister` (each successful register needs one) or `resmem_view_close`.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`view` or `out_ptr` NULL),
/// `RESMEM_INVALID_OFFSET`, `RESMEM_DOES_NOT_EXIST` (the segment is gone),
/// `RESMEM_CORRUPTED`, `RESMEM_PERMISSION_DENIED` or `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `view` is NULL or a live handle; a non-null `out_ptr` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_view_register(
    view: *mut resmem_view,
    offset: u64,
    len: usize,
    out_ptr: *mut *const c_void,
) -> resmem_status {
    call("resmem_view_register", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(view, "view") }?;
        let out_ptr = out(out_ptr, "out_ptr")?;
        let len = u64::try_from(len).map_err(|_| Failure::invalid("len exceeds 64 bits"))?;
        // SAFETY: unregistered exactly once: `resmem_view_unregister` undoes a registration
        // only when the table below counts one for the offset; registrations still counted
        // when the handle closes go with the view itself.
        let ptr = unsafe {
            this.view
                .register_and_translate_range(PointerOffset::from_u64(offset), len)
        }?;
        *this.lock().entry(offset).or_insert(0) += 1;
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out_ptr.write(ptr.cast()) };
        Ok(())
    })
}

/// Undoes one successful `resmem_view_register` of `offset`; the segment may be unmapped
/// once its last registration is gone and a newer segment is mapped. An offset with no
/// registration left on this handle is `RESMEM_INVALID_OFFSET` and changes nothing. The
/// address the registration gave must not be used afterwards.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`view` NULL), `RESMEM_INVALID_OFFSET` or
/// `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `view` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_view_unregister(
    view: *mut resmem_view,
    offset: u64,
) -> resmem_status {
    call("resmem_view_unregister", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(view, "view") }?;
        let mut registered = this.lock();
        match registered.get(&offset).copied().unwrap_or(0) {
            0 => {
                return Err(Failure::new(
                    resmem_status::RESMEM_INVALID_OFFSET,
                    format!("offset {offset} is not registered with this view"),
                ));
            }
            1 => {
                registered.remove(&offset);
            }
            n => {
                registered.insert(offset, n - 1);
            }
        }
        // SAFETY: the table counted a registration of `offset` made through this view and
        // not undone yet, and it is dropped from the count here (under the lock, so no two
        // calls undo the same one); the caller no longer uses its address.
        unsafe { this.view.unregister_offset(PointerOffset::from_u64(offset)) };
        Ok(())
    })
}

/// Closes the view: unmaps every segment it mapped (addresses from registrations not undone
/// become invalid) and frees the handle. Never removes anything. NULL is a no-op. No other
/// call on this handle may run at the same time or follow.
///
/// # Safety
/// `view` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_view_close(view: *mut resmem_view) {
    // SAFETY: NULL or a handle from resmem_view_open, not used again (the contract).
    let view = unsafe { take_handle(view) };
    let _ = call("resmem_view_close", move || {
        drop(view);
        Ok(())
    });
}
