//! `resmem_subscriber` and its `resmem_sample`s: the receiving side of a channel.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use resmem::channel::DetachedSample;

use crate::ffi_util::{
    call, config, handle, into_handle, millis, optional_str, out, required_str, take_handle, value,
};
use crate::status::{Failure, resmem_status};

/// The receiving side of a service (opaque). Made by `resmem_subscriber_create`, freed by
/// `resmem_subscriber_destroy`. Calls on one handle from several threads at once are
/// allowed (the subscriber is thread-safe), except `resmem_subscriber_destroy`, the last
/// call.
pub struct resmem_subscriber {
    inner: Arc<resmem::Subscriber>,
}

/// A received sample (opaque): read-only shared memory, read in place. Made by
/// `resmem_subscriber_receive`, consumed by `resmem_subscriber_release`. It holds a
/// reference to its subscriber, so it stays valid (and must still be released) after
/// `resmem_subscriber_destroy`. A sample may move between threads; its accessors may be
/// called from several threads at once.
pub struct resmem_sample {
    subscriber: Arc<resmem::Subscriber>,
    /// `None` once released.
    sample: Option<DetachedSample>,
}

impl Drop for resmem_sample {
    fn drop(&mut self) {
        if let Some(sample) = self.sample.take() {
            // Back to its own subscriber (which made it, so this cannot fail).
            drop(self.subscriber.reattach(sample));
        }
    }
}

/// Opens service `service` in `namespace_` (NULL: resmem's default prefix) and takes a free
/// subscriber slot, waiting up to `open_timeout_ms` for a publisher that does not exist yet
/// (or is still creating the service). On success `*out` is a new handle, to be freed with
/// `resmem_subscriber_destroy`; on failure it is not written.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`service` or `out` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a string that is not UTF-8), `RESMEM_INVALID_NAME`,
/// `RESMEM_DOES_NOT_EXIST` (no publisher within the timeout), `RESMEM_PUBLISHER_GONE`,
/// `RESMEM_LIMIT_REACHED` (every subscriber slot taken), `RESMEM_PERMISSION_DENIED`,
/// `RESMEM_CORRUPTED` or `RESMEM_INTERNAL`.
///
/// # Safety
/// Non-null strings are NUL-terminated; a non-null `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_subscriber_create(
    service: *const c_char,
    namespace_: *const c_char,
    open_timeout_ms: u32,
    out: *mut *mut resmem_subscriber,
) -> resmem_status {
    call("resmem_subscriber_create", || {
        let out = self::out(out, "out")?;
        // SAFETY: valid strings or NULL (the caller's contract).
        let (service, namespace) = unsafe {
            (
                required_str(service, "service")?,
                optional_str(namespace_, "namespace_")?,
            )
        };
        let subscriber = resmem::Subscriber::builder(service)
            .config(&config(namespace))
            .timeout(millis(open_timeout_ms))
            .open()?;
        let handle = into_handle(resmem_subscriber {
            inner: Arc::new(subscriber),
        });
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Takes the oldest queued sample, waiting up to `timeout_ms` for one: a negative timeout
/// waits until a sample arrives or the publisher is gone, 0 only looks. The wait sleeps; a
/// send wakes it.
///
/// - `RESMEM_OK` with `*out` a sample: release it with `resmem_subscriber_release`.
/// - `RESMEM_OK` with `*out` NULL: the timeout passed and nothing arrived (no error).
/// - `RESMEM_PUBLISHER_GONE`: the publisher is gone and every queued sample was taken;
///   `*out` is not written (nor on the other failures).
///
/// Other statuses: `RESMEM_NULL_ARGUMENT` (`subscriber` or `out` NULL),
/// `RESMEM_LIMIT_REACHED` (this subscriber holds `max_borrowed` samples: release one first),
/// `RESMEM_CORRUPTED` or `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `subscriber` is NULL or a live handle; a non-null `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_subscriber_receive(
    subscriber: *mut resmem_subscriber,
    timeout_ms: i64,
    out: *mut *mut resmem_sample,
) -> resmem_status {
    call("resmem_subscriber_receive", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(subscriber, "subscriber") }?;
        let out = self::out(out, "out")?;
        let received = match u64::try_from(timeout_ms) {
            Ok(0) => this.inner.receive()?,
            Ok(ms) => this.inner.receive_timeout(Duration::from_millis(ms))?,
            Err(_) => this.inner.receive_timeout(Duration::MAX)?,
        };
        let handle = received.map_or(std::ptr::null_mut(), |sample| {
            into_handle(resmem_sample {
                subscriber: Arc::clone(&this.inner),
                sample: Some(sample.detach()),
            })
        });
        // SAFETY: non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// The sample's bytes in this process (`resmem_sample_len` of them), read-only, valid until
/// it is released. NULL for a NULL sample.
///
/// # Safety
/// `sample` is NULL or a live sample.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_sample_data(sample: *const resmem_sample) -> *const c_void {
    value("resmem_sample_data", std::ptr::null(), || {
        // SAFETY: NULL or a live sample (the caller's contract).
        unsafe { sample.as_ref() }
            .and_then(|s| s.sample.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr().cast())
    })
}

/// Bytes in the sample; 0 for a NULL sample.
///
/// # Safety
/// `sample` is NULL or a live sample.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_sample_len(sample: *const resmem_sample) -> usize {
    value("resmem_sample_len", 0, || {
        // SAFETY: NULL or a live sample (the caller's contract).
        unsafe { sample.as_ref() }
            .and_then(|s| s.sample.as_ref())
            .map_or(0, DetachedSample::len)
    })
}

/// The packed offset of the sample's chunk in the publisher's memory; `RESMEM_NO_OFFSET`
/// for a NULL sample.
///
/// # Safety
/// `sample` is NULL or a live sample.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_sample_offset(sample: *const resmem_sample) -> u64 {
    value("resmem_sample_offset", crate::RESMEM_NO_OFFSET, || {
        // SAFETY: NULL or a live sample (the caller's contract).
        unsafe { sample.as_ref() }
            .and_then(|s| s.sample.as_ref())
            .map_or(crate::RESMEM_NO_OFFSET, |s| s.offset().as_u64())
    })
}

/// Gives `sample` back (the publisher frees its chunk once every subscriber that got it
/// did). The sample is consumed in every case and must not be used afterwards.
/// `subscriber` may be NULL (the sample knows its own subscriber, which may be destroyed
/// already); when it is not NULL, it must be the sample's.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`sample` NULL), `RESMEM_INVALID_ARGUMENT`
/// (`subscriber` is not the sample's; the sample is released to its own all the same) or
/// `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `subscriber` is NULL or a live handle; `sample` is NULL or a live sample, not used
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_subscriber_release(
    subscriber: *mut resmem_subscriber,
    sample: *mut resmem_sample,
) -> resmem_status {
    // SAFETY: NULL or a sample from resmem_subscriber_receive, consumed here (the contract).
    let sample = unsafe { take_handle(sample) };
    call("resmem_subscriber_release", move || {
        let sample = sample.ok_or_else(|| Failure::null("sample"))?;
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { subscriber.as_ref() };
        if this.is_some_and(|s| !Arc::ptr_eq(&s.inner, &sample.subscriber)) {
            return Err(Failure::invalid(
                "the sample belongs to another subscriber (it was released to it)",
            ));
        }
        drop(sample);
        Ok(())
    })
}

/// Frees the subscriber handle; it leaves the service once every sample it received is
/// released (samples still held stay valid). NULL is a no-op. No other call on this handle
/// may run at the same time or follow.
///
/// # Safety
/// `subscriber` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_subscriber_destroy(subscriber: *mut resmem_subscriber) {
    // SAFETY: NULL or a handle from resmem_subscriber_create, not used again (the contract).
    let subscriber = unsafe { take_handle(subscriber) };
    let _ = call("resmem_subscriber_destroy", move || {
        drop(subscriber);
        Ok(())
    });
}
