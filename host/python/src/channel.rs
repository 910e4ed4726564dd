//! `resmem.Publisher`, `Loan`, `Subscriber` and `Sample` on the native channel.

use std::ffi::c_int;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use resmem::channel::{DetachedLoan, DetachedSample};
use resmem::{ChannelError, Overflow};

use crate::buffer::Exports;
use crate::errors::{self, Closed};
use crate::view::seconds;

/// How long one wait without a timeout sleeps between checks for Ctrl-C.
const SLICE: Duration = Duration::from_millis(100);

fn overflow(name: &str) -> PyResult<Overflow> {
    Ok(match name {
        "drop-oldest" => Overflow::DropOldest,
        "drop-newest" => Overflow::DropNewest,
        "block" => Overflow::Block,
        other => {
            return Err(errors::Error::new_err(format!(
                "unknown overflow {other:?}: drop-oldest, drop-newest or block"
            )));
        }
    })
}

/// The sending side of a service: `loan(size)` a writable sample in shared memory, fill it in
/// place and `send(loan)`, or `send_copy(bytes)`. Subscribers in any process (and wasm
/// guests) read the bytes in place.
#[pyclass(module = "resmem")]
pub struct Publisher {
    /// `None` once closed; unsent loans hold their own reference, so the native publisher
    /// (and its service) goes when the last of them does.
    publisher: Option<Arc<resmem::Publisher>>,
}

impl Publisher {
    fn inner(&self) -> PyResult<&Arc<resmem::Publisher>> {
        self.publisher
            .as_ref()
            .ok_or_else(|| Closed::new_err("the publisher is closed"))
    }
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (service, *, namespace=None, max_subscribers=8, buffer_size=16, max_loans=16, max_borrowed=8, overflow="drop-oldest", chunk_size=4096, reclaim_stale=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        service: &str,
        namespace: Option<&str>,
        max_subscribers: usize,
        buffer_size: usize,
        max_loans: usize,
        max_borrowed: usize,
        overflow: &str,
        chunk_size: usize,
        reclaim_stale: bool,
    ) -> PyResult<Self> {
        let overflow = self::overflow(overflow)?;
        let hint = errors::layout(chunk_size.max(1), 8)?;
        let config = crate::config(namespace);
        let publisher = py
            .detach(|| {
                resmem::Publisher::builder(service)
                    .config(&config)
                    .max_subscribers(max_subscribers)
                    .buffer_size(buffer_size)
                    .max_loans(max_loans)
                    .max_borrowed(max_borrowed)
                    .overflow(overflow)
                    .max_chunk_layout_hint(hint)
                    .reclaim_stale(reclaim_stale)
                    .create()
            })
            .map_err(errors::channel)?;
        Ok(Self {
            publisher: Some(Arc::new(publisher)),
        })
    }

    /// The service's name.
    #[getter]
    fn service(&self) -> PyResult<&str> {
        Ok(self.inner()?.service())
    }

    /// Subscribers connected now.
    fn number_of_subscribers(&self) -> PyResult<usize> {
        Ok(self.inner()?.number_of_subscribers())
    }

    /// Waits (GIL released) up to `timeout` seconds until `count` subscribers are connected;
    /// returns how many are.
    #[pyo3(signature = (count, timeout))]
    fn wait_for_subscribers(&self, py: Python<'_>, count: usize, timeout: f64) -> PyResult<usize> {
        let timeout = seconds(timeout)?;
        let publisher = Arc::clone(self.inner()?);
        Ok(py.detach(move || publisher.wait_for_subscribers(count, timeout)))
    }

    /// A writable sample of `size` bytes in shared memory; `send` it, or drop it unsent.
    fn loan(&self, size: usize) -> PyResult<Loan> {
        let layout = errors::layout(size.max(1), 8)?;
        let publisher = self.inner()?;
        let mut sample = publisher.loan(layout).map_err(errors::channel)?;
        sample.set_len(size);
        Ok(Loan {
            loan: Some((Arc::clone(publisher), sample.detach())),
            len: size,
            exports: Exports::default(),
        })
    }

    /// Sends a loan (which is used up); returns how many subscribers got it. Raises
    /// `BufferError` while a buffer of the loan is exported.
    fn send(&self, py: Python<'_>, loan: &mut Loan) -> PyResult<usize> {
        let this = self.inner()?;
        let (publisher, _) = loan
            .loan
            .as_ref()
            .ok_or_else(|| Closed::new_err("the loan was sent"))?;
        if !Arc::ptr_eq(publisher, this) {
            return Err(errors::Error::new_err("the loan is another publisher's"));
        }
        loan.exports.check_none("sending the loan")?;
        let (publisher, detached) = loan
            .loan
            .take()
            .ok_or_else(|| Closed::new_err("the loan was sent"))?;
        let len = loan.len;
        py.detach(move || {
            let mut sample = publisher.reattach(detached)?;
            sample.set_len(len);
            sample.send()
        })
        .map_err(errors::channel)
    }

    /// Copies `data` into a new sample and sends it; returns how many subscribers got it.
    fn send_copy(&self, py: Python<'_>, data: &[u8]) -> PyResult<usize> {
        let publisher = Arc::clone(self.inner()?);
        py.detach(move || publisher.send_copy(data))
            .map_err(errors::channel)
    }

    /// Lets the publisher go: subscribers see `PublisherGone` once they drained its queue.
    /// Loans not yet sent keep the native publisher until they are dropped.
    fn close(&mut self, py: Python<'_>) {
        if let Some(publisher) = self.publisher.take() {
            py.detach(move || drop(publisher));
        }
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.publisher.is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        match &self.publisher {
            Some(p) => format!("resmem.Publisher({:?})", p.service()),
            None => "resmem.Publisher(closed)".to_owned(),
        }
    }
}

/// A loaned sample: a writable buffer of the size asked for. Send it with `Publisher.send`.
#[pyclass(module = "resmem")]
pub struct Loan {
    /// The publisher and the chunk until sent.
    loan: Option<(Arc<resmem::Publisher>, DetachedLoan)>,
    len: usize,
    exports: Exports,
}

#[pymethods]
impl Loan {
    /// The packed offset of the sample's chunk.
    #[getter]
    fn offset(&self) -> PyResult<u64> {
        let (_, loan) = self
            .loan
            .as_ref()
            .ok_or_else(|| Closed::new_err("the loan was sent"))?;
        Ok(loan.offset().as_u64())
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// # Safety
    /// Called by Python with its own `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.borrow();
        let (_, loan) = this
            .loan
            .as_ref()
            .ok_or_else(|| PyBufferError::new_err("the loan was sent"))?;
        // SAFETY: the loan's chunk stays taken while exported: `send` refuses while `exports`
        // is non-zero, and the loan returns only when this object drops; `len` <= capacity.
        unsafe {
            this.exports.export(
                slf.py(),
                slf.as_ptr(),
                view,
                flags,
                loan.as_ptr(),
                this.len,
                false,
            )
        }
    }

    /// # Safety
    /// Called by Python once per buffer `__getbuffer__` exported.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.release();
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some((publisher, loan)) = self.loan.take() {
            // Unsent: returned to the publisher.
            drop(publisher.reattach(loan));
        }
    }
}

/// The receiving side of a service. `receive(timeout=None)` waits with the GIL released;
/// `for sample in subscriber:` iterates until the publisher is gone.
#[pyclass(module = "resmem")]
pub struct Subscriber {
    /// `None` once closed; samples still held keep the native subscriber (its slot) alive.
    subscriber: Option<Arc<resmem::Subscriber>>,
}

impl Subscriber {
    fn inner(&self) -> PyResult<&Arc<resmem::Subscriber>> {
        self.subscriber
            .as_ref()
            .ok_or_else(|| Closed::new_err("the subscriber is closed"))
    }

    /// Takes one sample, waiting up to `timeout` (`None`: until one arrives or the publisher
    /// is gone), checking for Ctrl-C between slices.
    fn take(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Sample>> {
        let inner = self.inner()?;
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            let slice = match deadline {
                Some(deadline) => {
                    SLICE.min(deadline.saturating_duration_since(std::time::Instant::now()))
                }
                None => SLICE,
            };
            let subscriber = Arc::clone(inner);
            let got = py.detach(move || -> Result<Option<DetachedSample>, ChannelError> {
                Ok(subscriber.receive_timeout(slice)?.map(|s| s.detach()))
            });
            match got.map_err(errors::channel)? {
                Some(sample) => {
                    return Ok(Some(Sample {
                        subscriber: Arc::clone(inner),
                        sample: Some(sample),
                        exports: Exports::default(),
                    }));
                }
                None => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

#[pymethods]
impl Subscriber {
    /// `timeout`: seconds to wait for a publisher that does not exist yet.
    #[new]
    #[pyo3(signature = (service, *, namespace=None, timeout=None))]
    fn new(
        py: Python<'_>,
        service: &str,
        namespace: Option<&str>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let timeout = seconds(timeout.unwrap_or(0.0))?;
        let config = crate::config(namespace);
        let subscriber = py
            .detach(|| {
                resmem::Subscriber::builder(service)
                    .config(&config)
                    .timeout(timeout)
                    .open()
            })
            .map_err(errors::channel)?;
        Ok(Self {
            subscriber: Some(Arc::new(subscriber)),
        })
    }

    /// The service's name.
    #[getter]
    fn service(&self) -> PyResult<&str> {
        Ok(self.inner()?.service())
    }

    /// The next sample: waits up to `timeout` seconds (`None`: until a sample arrives or the
    /// publisher is gone) and returns `None` when it passes. Raises `PublisherGone` once the
    /// publisher is gone and the queue is drained.
    #[pyo3(signature = (timeout=None))]
    fn receive(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Sample>> {
        let timeout = timeout.map(seconds).transpose()?;
        self.take(py, timeout)
    }

    /// Whether the publisher still lives.
    fn is_publisher_alive(&self) -> PyResult<bool> {
        Ok(self.inner()?.is_publisher_alive())
    }

    /// Leaves the service (its slot is freed once samples still held are released).
    fn close(&mut self, py: Python<'_>) {
        if let Some(subscriber) = self.subscriber.take() {
            py.detach(move || drop(subscriber));
        }
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.subscriber.is_none()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Sample>> {
        match self.take(py, None) {
            Err(e) if e.is_instance_of::<errors::PublisherGone>(py) => Ok(None),
            other => other,
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        match &self.subscriber {
            Some(s) => format!("resmem.Subscriber({:?})", s.service()),
            None => "resmem.Subscriber(closed)".to_owned(),
        }
    }
}

/// A received sample: a read-only buffer of exactly its payload, read in place. `release()`
/// (or leaving `with`, or dropping it) returns it to the publisher; while a buffer of it is
/// exported that raises `BufferError`.
#[pyclass(module = "resmem")]
pub struct Sample {
    subscriber: Arc<resmem::Subscriber>,
    sample: Option<DetachedSample>,
    exports: Exports,
}

#[pymethods]
impl Sample {
    /// The packed offset of the sample's chunk.
    #[getter]
    fn offset(&self) -> PyResult<u64> {
        let sample = self
            .sample
            .as_ref()
            .ok_or_else(|| Closed::new_err("the sample was released"))?;
        Ok(sample.offset().as_u64())
    }

    fn __len__(&self) -> usize {
        self.sample.as_ref().map_or(0, DetachedSample::len)
    }

    /// Returns the sample to the publisher.
    fn release(&mut self) -> PyResult<()> {
        self.exports.check_none("releasing the sample")?;
        if let Some(sample) = self.sample.take() {
            drop(self.subscriber.reattach(sample));
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    /// # Safety
    /// Called by Python with its own `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.borrow();
        let sample = this
            .sample
            .as_ref()
            .ok_or_else(|| PyBufferError::new_err("the sample was released"))?;
        // SAFETY: the sample stays held (its segment mapped) while exported: `release` refuses
        // while `exports` is non-zero and the sample returns only when this object drops.
        unsafe {
            this.exports.export(
                slf.py(),
                slf.as_ptr(),
                view,
                flags,
                sample.as_ptr().cast_mut(),
                sample.len(),
                true,
            )
        }
    }

    /// # Safety
    /// Called by Python once per buffer `__getbuffer__` exported.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.release();
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        if let Some(sample) = self.sample.take() {
            drop(self.subscriber.reattach(sample));
        }
    }
}
