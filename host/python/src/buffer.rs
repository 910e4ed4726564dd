//! The buffer protocol over shared bytes: every chunk, registration and sample exports its bytes
//! with `PyBuffer_FillInfo` and counts the buffers alive, so that giving the bytes back while
//! one is exported raises `BufferError`.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Buffers exported and not yet released.
#[derive(Debug, Default)]
pub(crate) struct Exports(AtomicUsize);

impl Exports {
    /// Fails with `BufferError` while any buffer is exported.
    pub(crate) fn check_none(&self, what: &str) -> PyResult<()> {
        match self.0.load(Ordering::Acquire) {
            0 => Ok(()),
            n => Err(PyBufferError::new_err(format!(
                "{what}: {n} buffer(s) of it are still exported (release the memoryview or \
                 numpy array first)"
            ))),
        }
    }

    /// Exports `len` bytes at `ptr` as the buffer of `owner`.
    ///
    /// # Safety
    /// `view` is the `Py_buffer` Python passed to `__getbuffer__`; `ptr..ptr + len` stays mapped
    /// (and, unless `readonly`, writable) until `release` is called for this export.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn export(
        &self,
        py: Python<'_>,
        owner: *mut ffi::PyObject,
        view: *mut ffi::Py_buffer,
        flags: c_int,
        ptr: *mut u8,
        len: usize,
        readonly: bool,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no Py_buffer to fill"));
        }
        let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("buffer too large"))?;
        // SAFETY: `view` is Python's, `owner` a live object (it is being asked for a buffer);
        // FillInfo takes a reference to `owner`, which `PyBuffer_Release` gives back, and
        // fails (setting BufferError) when a writable buffer is asked of a read-only one.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(view, owner, ptr.cast(), len, c_int::from(readonly), flags)
        };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        self.0.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Counts a buffer another object exported on this one's behalf (a chunk's, for its
    /// memory).
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// One exported buffer was released.
    pub(crate) fn release(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
