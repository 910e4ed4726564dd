//! # resmem-c: the C API of resmem
//!
//! `include/resmem.h` (generated from this crate by cbindgen) declares everything; link
//! `libresmem_c.so` or `libresmem_c.a` (with `-lpthread -ldl -lm -lrt`).
//!
//! - **Opaque handles.** `resmem_memory`, `resmem_view`, `resmem_publisher`,
//!   `resmem_subscriber`, `resmem_loan` and `resmem_sample` are seen from C only as
//!   pointers. A `*_create` / `*_open` / `*_loan` / `*_receive` call makes one and writes it
//!   to an out-parameter; one `*_close` / `*_destroy` / `*_send` / `*_discard` / `*_release`
//!   call consumes it (a NULL handle is a no-op for close and destroy).
//! - **Status codes.** Every call that can fail returns a `resmem_status`: `RESMEM_OK` (0) or
//!   a negative code per kind of failure. A required pointer that is NULL is
//!   `RESMEM_NULL_ARGUMENT`, never a crash; a panic inside is caught and is
//!   `RESMEM_INTERNAL`. Out-parameters are written only on success.
//! - **Last error.** A failing call records its message in a thread-local slot:
//!   `resmem_last_error_message()` reads it (never NULL; `""` before any failure).
//! - **Ownership.** Strings passed in are borrowed for the call; strings and arrays handed
//!   out are the library's (`resmem_list` names are freed with `resmem_list_free`). Loans
//!   and samples hold a reference to their publisher or subscriber, so destroying that
//!   first is memory safe. Every handle may move between threads and the long-lived ones
//!   take calls from several threads at once (the core types are `Send + Sync`), except
//!   their close or destroy, which must be the last call. Non-null pointers must be valid:
//!   C cannot check that, and neither can this library.

#![allow(non_camel_case_types)]
#![warn(missing_docs)]

mod ffi_util;
pub mod manage;
pub mod memory;
pub mod publisher;
pub mod status;
pub mod subscriber;
pub mod view;

use std::ffi::{CStr, c_char};

pub use manage::{resmem_exists, resmem_list, resmem_list_free, resmem_remove};
pub use memory::{
    resmem_memory, resmem_memory_allocate, resmem_memory_close, resmem_memory_create,
    resmem_memory_deallocate, resmem_memory_options, resmem_memory_options_default,
    resmem_strategy,
};
pub use publisher::{
    resmem_loan, resmem_loan_capacity, resmem_loan_data, resmem_loan_discard, resmem_loan_len,
    resmem_loan_offset, resmem_loan_set_len, resmem_overflow, resmem_publisher,
    resmem_publisher_create, resmem_publisher_destroy, resmem_publisher_loan,
    resmem_publisher_options, resmem_publisher_options_default, resmem_publisher_send,
    resmem_publisher_send_copy, resmem_publisher_wait_for_subscribers,
};
pub use status::{resmem_last_error_message, resmem_status, resmem_status_name};
pub use subscriber::{
    resmem_sample, resmem_sample_data, resmem_sample_len, resmem_sample_offset, resmem_subscriber,
    resmem_subscriber_create, resmem_subscriber_destroy, resmem_subscriber_receive,
    resmem_subscriber_release,
};
pub use view::{
    resmem_view, resmem_view_close, resmem_view_open, resmem_view_register, resmem_view_unregister,
};

/// What the offset accessors return for a NULL loan or sample (no chunk has this offset).
pub const RESMEM_NO_OFFSET: u64 = u64::MAX;

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the package version holds no NUL"),
    };

/// The library's version (`"0.1.0"`), a static string: never NULL, never to be freed.
#[unsafe(no_mangle)]
pub extern "C" fn resmem_version() -> *const c_char {
    VERSION.as_ptr()
}
