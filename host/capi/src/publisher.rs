//! `resmem_publisher` and its `resmem_loan`s: the sending side of a channel.

use std::alloc::Layout;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

use resmem::Overflow;
use resmem::channel::DetachedLoan;

use crate::ffi_util::{
    call, config, handle, into_handle, layout, millis, optional_str, out, required_str,
    take_handle, value, write_optional,
};
use crate::status::{Failure, resmem_status};

/// What a send does when a subscriber's queue is full.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum resmem_overflow {
    /// The oldest queued sample is dropped to make room (the default, 0).
    RESMEM_OVERFLOW_DROP_OLDEST = 0,
    /// That subscriber does not get the new sample.
    RESMEM_OVERFLOW_DROP_NEWEST = 1,
    /// The send waits (asleep) until the subscriber makes room, or dies.
    RESMEM_OVERFLOW_BLOCK = 2,
}

/// How `resmem_publisher_create` sets up a service. A zero-initialised struct (`= {0}`)
/// means the channel's defaults, as does passing NULL instead of a pointer to it; so does 0
/// in any one field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct resmem_publisher_options {
    /// The namespace (prefix of every OS object name); NULL: resmem's default prefix.
    pub namespace_: *const c_char,
    /// Most subscribers at once; 0: 8.
    pub max_subscribers: usize,
    /// Queue length per subscriber; 0: 16.
    pub buffer_size: usize,
    /// Most unsent loans at once; 0: 16.
    pub max_loans: usize,
    /// Most received samples a subscriber holds at once; 0: 8.
    pub max_borrowed: usize,
    /// What a send does when a subscriber's queue is full; 0 is
    /// `RESMEM_OVERFLOW_DROP_OLDEST`. A value that is no `resmem_overflow` is
    /// `RESMEM_INVALID_ARGUMENT`.
    pub overflow: resmem_overflow,
    /// The largest sample expected, which sizes the first segment; 0: 64 bytes.
    pub chunk_size: usize,
    /// Take over a service whose publisher died (its objects are removed first); a live
    /// publisher's service is never taken.
    pub reclaim_stale: bool,
}

/// `resmem_publisher_options` as read from C: the same layout, with the enum and the bool as
/// plain integers (any bits C put there are valid to read; they are checked afterwards).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawPublisherOptions {
    namespace_: *const c_char,
    max_subscribers: usize,
    buffer_size: usize,
    max_loans: usize,
    max_borrowed: usize,
    overflow: i32,
    chunk_size: usize,
    reclaim_stale: u8,
}

const _: () = {
    assert!(size_of::<RawPublisherOptions>() == size_of::<resmem_publisher_options>());
    assert!(align_of::<RawPublisherOptions>() == align_of::<resmem_publisher_options>());
    assert!(size_of::<resmem_overflow>() == size_of::<i32>());
    assert!(size_of::<bool>() == size_of::<u8>());
};

impl Default for resmem_publisher_options {
    fn default() -> Self {
        Self {
            namespace_: std::ptr::null(),
            max_subscribers: 8,
            buffer_size: 16,
            max_loans: 16,
            max_borrowed: 8,
            overflow: resmem_overflow::RESMEM_OVERFLOW_DROP_OLDEST,
            chunk_size: 64,
            reclaim_stale: false,
        }
    }
}

fn overflow(raw: i32) -> Result<Overflow, Failure> {
    match raw {
        0 => Ok(Overflow::DropOldest),
        1 => Ok(Overflow::DropNewest),
        2 => Ok(Overflow::Block),
        other => Err(Failure::invalid(format!(
            "overflow {other} is no resmem_overflow (0, 1 or 2)"
        ))),
    }
}

/// The sending side of a service (opaque). Made by `resmem_publisher_create`, freed by
/// `resmem_publisher_destroy`. Calls on one handle from several threads at once are allowed
/// (the publisher is thread-safe), except `resmem_publisher_destroy`, the last call.
pub struct resmem_publisher {
    inner: Arc<resmem::Publisher>,
}

/// A loaned, unsent sample (opaque): writable shared memory. Made by
/// `resmem_publisher_loan`; consumed by `resmem_publisher_send` or `resmem_loan_discard`. It
/// holds a reference to its publisher, so it stays valid after `resmem_publisher_destroy`
/// (it can then only be discarded). A loan may move between threads; it is used by one
/// thread at a time.
pub struct resmem_loan {
    publisher: Arc<resmem::Publisher>,
    /// `None` once sent.
    loan: Option<DetachedLoan>,
    len: usize,
}

impl Drop for resmem_loan {
    fn drop(&mut self) {
        if let Some(loan) = self.loan.take() {
            // Unsent: back to its own publisher (which made it, so this cannot fail).
            drop(self.publisher.reattach(loan));
        }
    }
}

/// The defaults `resmem_publisher_create` uses for a NULL options pointer: no namespace, 8
/// subscribers, queues of 16, 16 loans, 8 borrowed samples per subscriber,
/// `RESMEM_OVERFLOW_DROP_OLDEST`, 64-byte chunk hint, no reclaiming.
#[unsafe(no_mangle)]
pub extern "C" fn resmem_publisher_options_default() -> resmem_publisher_options {
    resmem_publisher_options::default()
}

/// Creates service `service` (its control object and memory) and returns its publisher in
/// `*out`, to be freed with `resmem_publisher_destroy`; `opts` may be NULL for the defaults.
/// On failure `*out` is not written.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`service` or `out` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a string that is not UTF-8, an unknown overflow, a setting out
/// of range), `RESMEM_INVALID_NAME`, `RESMEM_INVALID_LAYOUT` (the chunk size is too large),
/// `RESMEM_ALREADY_EXISTS` (the service has a publisher, or a stale one without
/// `reclaim_stale`), `RESMEM_PERMISSION_DENIED`, `RESMEM_OUT_OF_MEMORY` or
/// `RESMEM_INTERNAL`.
///
/// # Safety
/// Non-null pointers must be valid: `service` and `opts->namespace_` NUL-terminated
/// strings, `opts` a readable `resmem_publisher_options`, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_publisher_create(
    service: *const c_char,
    opts: *const resmem_publisher_options,
    out: *mut *mut resmem_publisher,
) -> resmem_status {
    call("resmem_publisher_create", || {
        let out = self::out(out, "out")?;
        // SAFETY: a valid string or NULL (the caller's contract).
        let service = unsafe { required_str(service, "service") }?;
        let opts = if opts.is_null() {
            RawPublisherOptions {
                namespace_: std::ptr::null(),
                max_subscribers: 0,
                buffer_size: 0,
                max_loans: 0,
                max_borrowed: 0,
                overflow: 0,
                chunk_size: 0,
                reclaim_stale: 0,
            }
        } else {
            // SAFETY: non-null and readable (the caller's contract); the raw struct has the
            // same layout with integers where the public one has an enum and a bool.
            unsafe { opts.cast::<RawPublisherOptions>().read() }
        };
        // SAFETY: a valid string or NULL, as for `service`.
        let namespace = unsafe { optional_str(opts.namespace_, "opts->namespace_") }?;
        let mut builder = resmem::Publisher::builder(service)
            .config(&config(namespace))
            .overflow(overflow(opts.overflow)?)
            .reclaim_stale(opts.reclaim_stale != 0);
        if opts.max_subscribers != 0 {
            builder = builder.max_subscribers(opts.max_subscribers);
        }
        if opts.buffer_size != 0 {
            builder = builder.buffer_size(opts.buffer_size);
        }
        if opts.max_loans != 0 {
            builder = builder.max_loans(opts.max_loans);
        }
        if opts.max_borrowed != 0 {
            builder = builder.max_borrowed(opts.max_borrowed);
        }
        if opts.chunk_size != 0 {
            builder = builder.max_chunk_layout_hint(layout(opts.chunk_size, 8)?);
        }
        let publisher = builder.create()?;
        let handle = into_handle(resmem_publisher {
            inner: Arc::new(publisher),
        });
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Loans a writable sample of `size` bytes (8-aligned) in shared memory; the memory grows
/// when it does not fit. Fill it through `resmem_loan_data`, then `resmem_publisher_send` it
/// or `resmem_loan_discard` it. On success `*out` is the new loan; on failure it is not
/// written.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`publisher` or `out` NULL),
/// `RESMEM_LIMIT_REACHED` (`max_loans` unsent loans), `RESMEM_INVALID_LAYOUT` (too large),
/// `RESMEM_OUT_OF_MEMORY` or `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `publisher` is NULL or a live handle; a non-null `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_publisher_loan(
    publisher: *mut resmem_publisher,
    size: usize,
    out: *mut *mut resmem_loan,
) -> resmem_status {
    call("resmem_publisher_loan", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(publisher, "publisher") }?;
        let out = self::out(out, "out")?;
        let layout: Layout = layout(size, 8)?;
        let sample = this.inner.loan(layout)?;
        let handle = into_handle(resmem_loan {
            publisher: Arc::clone(&this.inner),
            loan: Some(sample.detach()),
            len: size,
        });
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// The loan's bytes in this process: `resmem_loan_capacity(loan)` of them, writable until
/// the loan is sent or discarded. NULL for a NULL loan.
///
/// # Safety
/// `loan` is NULL or a live loan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_loan_data(loan: *mut resmem_loan) -> *mut c_void {
    value("resmem_loan_data", std::ptr::null_mut(), || {
        // SAFETY: NULL or a live loan (the caller's contract).
        unsafe { loan.as_ref() }
            .and_then(|l| l.loan.as_ref())
            .map_or(std::ptr::null_mut(), |l| l.as_ptr().cast())
    })
}

/// Bytes the send will deliver: the size loaned, unless `resmem_loan_set_len` made it
/// fewer. 0 for a NULL loan.
///
/// # Safety
/// `loan` is NULL or a live loan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_loan_len(loan: *const resmem_loan) -> usize {
    value("resmem_loan_len", 0, || {
        // SAFETY: NULL or a live loan (the caller's contract).
        unsafe { loan.as_ref() }.map_or(0, |l| l.len)
    })
}

/// Bytes loaned (the size asked of `resmem_publisher_loan`). 0 for a NULL loan.
///
/// # Safety
/// `loan` is NULL or a live loan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_loan_capacity(loan: *const resmem_loan) -> usize {
    value("resmem_loan_capacity", 0, || {
        // SAFETY: NULL or a live loan (the caller's contract).
        unsafe { loan.as_ref() }
            .and_then(|l| l.loan.as_ref())
            .map_or(0, DetachedLoan::capacity)
    })
}

/// The packed offset of the loan's chunk (what subscribers' samples report);
/// `RESMEM_NO_OFFSET` for a NULL loan.
///
/// # Safety
/// `loan` is NULL or a live loan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_loan_offset(loan: *const resmem_loan) -> u64 {
    value("resmem_loan_offset", crate::RESMEM_NO_OFFSET, || {
        // SAFETY: NULL or a live loan (the caller's contract).
        unsafe { loan.as_ref() }
            .and_then(|l| l.loan.as_ref())
            .map_or(crate::RESMEM_NO_OFFSET, |l| l.offset().as_u64())
    })
}

/// Makes the send deliver only the first `len` bytes of the loan.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`loan` NULL), `RESMEM_INVALID_ARGUMENT`
/// (`len` above the capacity; the length stays as it was) or `RESMEM_INTERNAL`.
///
/// # Safety
/// `loan` is NULL or a live loan, used by no other thread at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_loan_set_len(loan: *mut resmem_loan, len: usize) -> resmem_status {
    call("resmem_loan_set_len", || {
        // SAFETY: NULL or a live loan that no other thread uses now (the caller's contract).
        let loan = unsafe { loan.as_mut() }.ok_or_else(|| Failure::null("loan"))?;
        let capacity = loan.loan.as_ref().map_or(0, DetachedLoan::capacity);
        if len > capacity {
            return Err(Failure::invalid(format!(
                "length {len} exceeds the loaned {capacity} bytes"
            )));
        }
        loan.len = len;
        Ok(())
    })
}

/// Sends `loan` to every connected subscriber and, if `out_delivered` is not NULL, writes
/// how many got it. The loan is consumed in every case, also when the call fails (then it
/// is returned to its publisher unsent) and when `publisher` is NULL; it must not be used
/// afterwards. With no subscriber, the chunk is freed at once (`*out_delivered` = 0).
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`publisher` or `loan` NULL),
/// `RESMEM_INVALID_ARGUMENT` (the loan is another publisher's) or `RESMEM_INTERNAL`. Under
/// `RESMEM_OVERFLOW_BLOCK` it may wait for full subscribers. Thread-safe.
///
/// # Safety
/// `publisher` is NULL or a live handle; `loan` is NULL or a live loan, not used afterwards;
/// a non-null `out_delivered` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_publisher_send(
    publisher: *mut resmem_publisher,
    loan: *mut resmem_loan,
    out_delivered: *mut usize,
) -> resmem_status {
    // SAFETY: NULL or a loan from resmem_publisher_loan, consumed here (the contract).
    let loan = unsafe { take_handle(loan) };
    call("resmem_publisher_send", move || {
        let mut loan = loan.ok_or_else(|| Failure::null("loan"))?;
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(publisher, "publisher") }?;
        if !Arc::ptr_eq(&this.inner, &loan.publisher) {
            return Err(Failure::invalid(
                "the loan belongs to another publisher (it was returned to it unsent)",
            ));
        }
        let detached = loan
            .loan
            .take()
            .ok_or_else(|| Failure::invalid("the loan was sent already"))?;
        let mut sample = this.inner.reattach(detached)?;
        sample.set_len(loan.len);
        let delivered = sample.send()?;
        // SAFETY: NULL or writable (the caller's contract).
        unsafe { write_optional(out_delivered, delivered) };
        Ok(())
    })
}

/// Returns `loan` to its publisher unsent; the loan is consumed and must not be used
/// afterwards. `publisher` may be NULL (the loan knows its own publisher, which may be
/// destroyed already); when it is not NULL, it must be the loan's.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`loan` NULL), `RESMEM_INVALID_ARGUMENT`
/// (`publisher` is not the loan's; the loan is returned to its own all the same) or
/// `RESMEM_INTERNAL`.
///
/// # Safety
/// `publisher` is NULL or a live handle; `loan` is NULL or a live loan, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_loan_discard(
    publisher: *mut resmem_publisher,
    loan: *mut resmem_loan,
) -> resmem_status {
    // SAFETY: NULL or a loan from resmem_publisher_loan, consumed here (the contract).
    let loan = unsafe { take_handle(loan) };
    call("resmem_loan_discard", move || {
        let loan = loan.ok_or_else(|| Failure::null("loan"))?;
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { publisher.as_ref() };
        if this.is_some_and(|p| !Arc::ptr_eq(&p.inner, &loan.publisher)) {
            return Err(Failure::invalid(
                "the loan belongs to another publisher (it was returned to it)",
            ));
        }
        drop(loan);
        Ok(())
    })
}

/// Copies `len` bytes from `data` into a new sample and sends it; writes how many
/// subscribers got it to `*out_delivered` unless that is NULL. `data` may be NULL when `len`
/// is 0.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`publisher` NULL, or `data` NULL with `len`
/// above 0), `RESMEM_LIMIT_REACHED`, `RESMEM_INVALID_LAYOUT`, `RESMEM_OUT_OF_MEMORY` or
/// `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `publisher` is NULL or a live handle; a non-null `data` is readable for `len` bytes; a
/// non-null `out_delivered` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_publisher_send_copy(
    publisher: *mut resmem_publisher,
    data: *const c_void,
    len: usize,
    out_delivered: *mut usize,
) -> resmem_status {
    call("resmem_publisher_send_copy", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(publisher, "publisher") }?;
        let bytes: &[u8] = match (data.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return Err(Failure::null("data")),
            // SAFETY: non-null and readable for `len` bytes (the caller's contract).
            (false, _) => unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) },
        };
        let delivered = this.inner.send_copy(bytes)?;
        // SAFETY: NULL or writable (the caller's contract).
        unsafe { write_optional(out_delivered, delivered) };
        Ok(())
    })
}

/// Waits (asleep) up to `timeout_ms` until at least `count` subscribers are connected, and
/// writes how many are to `*out_connected` unless that is NULL. Fewer than `count` when the
/// time is up is no error (compare `*out_connected`); `count` 0 just counts them.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`publisher` NULL) or `RESMEM_INTERNAL`.
/// Thread-safe.
///
/// # Safety
/// `publisher` is NULL or a live handle; a non-null `out_connected` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_publisher_wait_for_subscribers(
    publisher: *mut resmem_publisher,
    count: usize,
    timeout_ms: u32,
    out_connected: *mut usize,
) -> resmem_status {
    call("resmem_publisher_wait_for_subscribers", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(publisher, "publisher") }?;
        let connected = this.inner.wait_for_subscribers(count, millis(timeout_ms));
        // SAFETY: NULL or writable (the caller's contract).
        unsafe { write_optional(out_connected, connected) };
        Ok(())
    })
}

/// Frees the publisher handle. The service ends when the native publisher goes: at once,
/// unless loans are outstanding; those keep it (subscribers still see it alive) until each
/// is discarded with `resmem_loan_discard(NULL, loan)`, which stays safe. Subscribers drain
/// what is queued, then get `RESMEM_PUBLISHER_GONE`. NULL is a no-op. No other call on this
/// handle may run at the same time or follow.
///
/// # Safety
/// `publisher` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_publisher_destroy(publisher: *mut resmem_publisher) {
    // SAFETY: NULL or a handle from resmem_publisher_create, not used again (the contract).
    let publisher = unsafe { take_handle(publisher) };
    let _ = call("resmem_publisher_destroy", move || {
        drop(publisher);
        Ok(())
    });
}
