//! `resmem.View` and its `Registration`s.

use std::ffi::c_int;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use resmem::{AccessMode, PointerOffset};

use crate::buffer::Exports;
use crate::errors::{self, Closed, InvalidOffset};

/// A view of a memory another process (or a guest) owns: `register(offset)` maps the segment
/// of an offset and gives its bytes as a buffer, read-only for mode `"r"`.
#[pyclass(module = "resmem")]
pub struct View {
    view: Arc<resmem::View>,
    name: String,
}

#[pymethods]
impl View {
    /// `mode`: `"r"` or `"rw"`. `timeout`: seconds to wait for an owner still initialising;
    /// a memory that does not exist raises `DoesNotExist` at once.
    #[new]
    #[pyo3(signature = (name, *, namespace=None, mode="r", timeout=None))]
    fn new(
        py: Python<'_>,
        name: &str,
        namespace: Option<&str>,
        mode: &str,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        let mode = match mode {
            "r" => AccessMode::Read,
            "rw" => AccessMode::ReadWrite,
            other => {
                return Err(errors::Error::new_err(format!(
                    "unknown mode {other:?}: \"r\" or \"rw\""
                )));
            }
        };
        let timeout = seconds(timeout.unwrap_or(0.0))?;
        let config = crate::config(namespace);
        let view = py
            .detach(|| {
                resmem::View::builder(name)
                    .config(&config)
                    .timeout(timeout)
                    .open(mode)
            })
            .map_err(errors::open)?;
        Ok(Self {
            view: Arc::new(view),
            name: name.to_owned(),
        })
    }

    /// The memory's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Maps the segment of `offset` (a packed u64) and returns its bytes from there: `length`
    /// bytes, or to the end of the segment's payload when `length` is None. A `length` past
    /// the payload raises `InvalidOffset`.
    #[pyo3(signature = (offset, length=None))]
    fn register(&self, offset: u64, length: Option<usize>) -> PyResult<Registration> {
        let offset = PointerOffset::from_u64(offset);
        // SAFETY: every successful registration is owned by the returned `Registration`, which
        // unregisters it exactly once.
        let ptr =
            unsafe { self.view.register_and_translate_offset(offset) }.map_err(errors::open)?;
        let registration = Registration {
            view: Arc::clone(&self.view),
            exports: Exports::default(),
            offset,
            ptr: ptr as usize,
            len: 0,
            readonly: self.view.access_mode() == AccessMode::Read,
            registered: true,
        };
        let available = self
            .view
            .segment_payload_size(offset.segment_id())
            .map_or(0, |size| (size as u64).saturating_sub(offset.offset()));
        let available = usize::try_from(available).unwrap_or(usize::MAX);
        let len = length.unwrap_or(available);
        if len > available {
            // `registration` drops here and unregisters.
            return Err(InvalidOffset::new_err(format!(
                "{len} bytes from {offset}: only {available} bytes of the segment's payload follow"
            )));
        }
        let mut registration = registration;
        registration.len = len;
        Ok(registration)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        format!("resmem.View({:?})", self.name)
    }
}

/// Seconds as a `Duration`, refusing negative, NaN and absurd values.
pub(crate) fn seconds(s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| errors::Error::new_err(format!("{s} is not a timeout in seconds")))
}

/// The bytes of a registered offset, a buffer (read-only for a `"r"` view); `unregister()` (or
/// leaving `with`) ends it, and raises `BufferError` while a buffer is exported.
#[pyclass(module = "resmem")]
pub struct Registration {
    view: Arc<resmem::View>,
    exports: Exports,
    offset: PointerOffset,
    ptr: usize,
    len: usize,
    readonly: bool,
    registered: bool,
}

#[pymethods]
impl Registration {
    /// The registered offset.
    #[getter]
    fn offset(&self) -> u64 {
        self.offset.as_u64()
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// Ends the registration (the segment may be unmapped afterwards).
    fn unregister(&mut self) -> PyResult<()> {
        if !self.registered {
            return Ok(());
        }
        self.exports.check_none("unregistering")?;
        self.registered = false;
        // SAFETY: registered by this object's `register` and unregistered once (flag above);
        // no buffer of it is exported.
        unsafe { self.view.unregister_offset(self.offset) };
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.unregister()?;
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
        if !this.registered {
            return Err(PyBufferError::new_err(
                Closed::new_err("the registration ended").to_string(),
            ));
        }
        // SAFETY: the offset stays registered (its segment mapped) while exported:
        // `unregister` refuses while `exports` is non-zero; `len` lies in the payload.
        unsafe {
            this.exports.export(
                slf.py(),
                slf.as_ptr(),
                view,
                flags,
                this.ptr as *mut u8,
                this.len,
                this.readonly,
            )
        }
    }

    /// # Safety
    /// Called by Python once per buffer `__getbuffer__` exported.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.release();
    }

    fn __repr__(&self) -> String {
        format!(
            "resmem.Registration(offset={}, len={}, registered={})",
            self.offset.as_u64(),
            self.len,
            self.registered
        )
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.registered {
            self.registered = false;
            // SAFETY: registered by `View::register` and not unregistered (flag); no buffer is
            // exported (each would keep this object alive).
            unsafe { self.view.unregister_offset(self.offset) };
        }
    }
}
