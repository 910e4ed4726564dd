//! Memories by name, without owning them: `resmem_list`, `resmem_exists`, `resmem_remove`.

use std::ffi::{CString, c_char};

use resmem::StaleRemoval;

use crate::ffi_util::{call, config, optional_str, out, required_str};
use crate::status::{Failure, resmem_status};

/// Lists the memories of `namespace_` (NULL: resmem's default prefix), sorted, by name
/// without the namespace. On success `*out_names` is an array of `*out_count`
/// NUL-terminated names (NULL when there are none), to be freed with one
/// `resmem_list_free(*out_names, *out_count)`; on failure neither is written. A channel's
/// service is listed too (its memory has the service's name).
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`out_names` or `out_count` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a namespace that is not UTF-8), `RESMEM_PERMISSION_DENIED` or
/// `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// A non-null `namespace_` is NUL-terminated; non-null out-pointers are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_list(
    namespace_: *const c_char,
    out_names: *mut *mut *mut c_char,
    out_count: *mut usize,
) -> resmem_status {
    call("resmem_list", || {
        let (out_names, out_count) = (out(out_names, "out_names")?, out(out_count, "out_count")?);
        // SAFETY: a valid string or NULL (the caller's contract).
        let namespace = unsafe { optional_str(namespace_, "namespace_") }?;
        let names = resmem::list(&config(namespace))?;
        let names = names
            .into_iter()
            .map(|name| CString::new(name).map(CString::into_raw))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Failure::new(resmem_status::RESMEM_INTERNAL, "a name holds NUL"))?;
        let count = names.len();
        let array = if count == 0 {
            std::ptr::null_mut()
        } else {
            Box::into_raw(names.into_boxed_slice()).cast::<*mut c_char>()
        };
        // SAFETY: both non-null and writable (the caller's contract).
        unsafe {
            out_names.write(array);
            out_count.write(count);
        }
        Ok(())
    })
}

/// Frees what `resmem_list` returned: the array `names` of `count` names, and each name.
/// NULL `names` is a no-op.
///
/// # Safety
/// `names` is NULL or an array from `resmem_list` with the `count` it returned, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_list_free(names: *mut *mut c_char, count: usize) {
    if names.is_null() {
        return;
    }
    // SAFETY: a boxed slice of `count` pointers leaked by resmem_list (the contract).
    let names = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(names, count)) };
    for name in names.iter().copied() {
        // SAFETY: each name came from CString::into_raw in resmem_list, freed once here.
        drop(unsafe { CString::from_raw(name) });
    }
}

/// Writes to `*out` whether a memory (or a channel's service) called `name` exists in
/// `namespace_` (NULL: resmem's default prefix).
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`name` or `out` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a string that is not UTF-8), `RESMEM_INVALID_NAME`,
/// `RESMEM_PERMISSION_DENIED` or `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// Non-null strings are NUL-terminated; a non-null `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_exists(
    name: *const c_char,
    namespace_: *const c_char,
    out: *mut bool,
) -> resmem_status {
    call("resmem_exists", || {
        let out = self::out(out, "out")?;
        // SAFETY: valid strings or NULL (the caller's contract).
        let (name, namespace) = unsafe {
            (
                required_str(name, "name")?,
                optional_str(namespace_, "namespace_")?,
            )
        };
        let found = resmem::exists(name, &config(namespace))?;
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(found) };
        Ok(())
    })
}

/// Removes memory `name` of `namespace_` (NULL: resmem's default prefix) if its owner is
/// gone (a stale memory), and writes to `*out_removed` whether anything was removed (false:
/// there was no such memory). A live owner's memory is never touched: that is
/// `RESMEM_PERMISSION_DENIED` (it goes when its owner closes it).
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`name` or `out_removed` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a string that is not UTF-8), `RESMEM_INVALID_NAME`,
/// `RESMEM_PERMISSION_DENIED` or `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// Non-null strings are NUL-terminated; a non-null `out_removed` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_remove(
    name: *const c_char,
    namespace_: *const c_char,
    out_removed: *mut bool,
) -> resmem_status {
    call("resmem_remove", || {
        let out_removed = out(out_removed, "out_removed")?;
        // SAFETY: valid strings or NULL (the caller's contract).
        let (name, namespace) = unsafe {
            (
                required_str(name, "name")?,
                optional_str(namespace_, "namespace_")?,
            )
        };
        let removed = match resmem::remove_stale(name, &config(namespace))? {
            StaleRemoval::Removed => true,
            StaleRemoval::NotFound => false,
            StaleRemoval::OwnerAlive => {
                return Err(Failure::new(
                    resmem_status::RESMEM_PERMISSION_DENIED,
                    format!("{name}: its owner is alive; it is removed when the owner closes it"),
                ));
            }
            other => {
                return Err(Failure::new(
                    resmem_status::RESMEM_INTERNAL,
                    format!("removing {name}: {other:?}"),
                ));
            }
        };
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out_removed.write(removed) };
        Ok(())
    })
}
