//! `resmem.Memory` and its `Chunk`s.

use std::alloc::Layout;
use std::ffi::c_int;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use resmem::{AllocationStrategy, PointerOffset};

use crate::buffer::Exports;
use crate::errors::{self, Closed};

/// The native owner, shared with its chunks; `None` once closed.
type Owner = Arc<Mutex<Option<resmem::Memory>>>;

fn strategy(name: &str) -> PyResult<AllocationStrategy> {
    Ok(match name {
        "power-of-two" => AllocationStrategy::PowerOfTwo,
        "best-fit" => AllocationStrategy::BestFit,
        "static" => AllocationStrategy::Static,
        other => {
            return Err(errors::Error::new_err(format!(
                "unknown strategy {other:?}: power-of-two, best-fit or static"
            )));
        }
    })
}

/// Named shared memory this process owns: it allocates chunks and grows into new, larger
/// segments when a chunk does not fit. Peers (other processes, wasm guests) map it from the
/// offsets of its chunks. Closing it (or leaving `with`) removes its OS objects.
#[pyclass(module = "resmem")]
pub struct Memory {
    owner: Owner,
    /// Buffers exported from any of its chunks.
    exports: Arc<Exports>,
    name: String,
}

#[pymethods]
impl Memory {
    #[new]
    #[pyo3(signature = (name, *, namespace=None, chunk_size=4096, chunk_align=8, chunks=1, strategy="power-of-two"))]
    fn new(
        py: Python<'_>,
        name: &str,
        namespace: Option<&str>,
        chunk_size: usize,
        chunk_align: usize,
        chunks: usize,
        strategy: &str,
    ) -> PyResult<Self> {
        let hint = errors::layout(chunk_size, chunk_align)?;
        let strategy = self::strategy(strategy)?;
        let config = crate::config(namespace);
        let memory = py
            .detach(|| {
                resmem::Memory::builder(name)
                    .config(&config)
                    .max_chunk_layout_hint(hint)
                    .max_number_of_chunks_hint(chunks)
                    .allocation_strategy(strategy)
                    .create()
            })
            .map_err(errors::create)?;
        Ok(Self {
            owner: Arc::new(Mutex::new(Some(memory))),
            exports: Arc::default(),
            name: name.to_owned(),
        })
    }

    /// The memory's name (without the namespace).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Allocates a chunk of `size` bytes aligned to `align`; it is a writable buffer.
    #[pyo3(signature = (size, align=8))]
    fn allocate(&self, size: usize, align: usize) -> PyResult<Chunk> {
        let layout = errors::layout(size, align)?;
        let guard = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        let memory = guard
            .as_ref()
            .ok_or_else(|| Closed::new_err("the memory is closed"))?;
        let pointer = memory.allocate(layout).map_err(errors::alloc)?;
        Ok(Chunk {
            owner: Arc::clone(&self.owner),
            memory_exports: Arc::clone(&self.exports),
            exports: Exports::default(),
            offset: pointer.offset,
            ptr: pointer.data_ptr as usize,
            layout,
            freed: false,
        })
    }

    /// Segments the memory maps now.
    fn number_of_active_segments(&self) -> PyResult<usize> {
        let guard = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        let memory = guard
            .as_ref()
            .ok_or_else(|| Closed::new_err("the memory is closed"))?;
        Ok(memory.number_of_active_segments())
    }

    /// Removes the memory's OS objects; its chunks become unusable. Raises `BufferError` while
    /// a buffer of one of its chunks is exported.
    fn close(&self) -> PyResult<()> {
        self.exports.check_none("closing the memory")?;
        let memory = self
            .owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(memory);
        Ok(())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("resmem.Memory({:?}, closed={})", self.name, self.closed())
    }
}

/// A chunk of a `Memory`: a writable buffer of exactly its size. `offset` is the packed u64
/// every process understands. `free()` (or leaving `with`) gives it back; while a buffer of it
/// is exported that raises `BufferError`.
#[pyclass(module = "resmem")]
pub struct Chunk {
    owner: Owner,
    memory_exports: Arc<Exports>,
    exports: Exports,
    offset: PointerOffset,
    /// The chunk's first byte in this process (an address: `Chunk` must be `Send`).
    ptr: usize,
    layout: Layout,
    freed: bool,
}

impl Chunk {
    fn check_live(&self) -> PyResult<()> {
        if self.freed {
            return Err(Closed::new_err("the chunk was freed"));
        }
        if self
            .owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return Err(Closed::new_err("the chunk's memory is closed"));
        }
        Ok(())
    }
}

#[pymethods]
impl Chunk {
    /// The packed offset (`offset << 8 | segment`) a peer maps the chunk from.
    #[getter]
    fn offset(&self) -> u64 {
        self.offset.as_u64()
    }

    /// The chunk's segment id.
    #[getter]
    fn segment(&self) -> u8 {
        self.offset.segment_id().value()
    }

    fn __len__(&self) -> usize {
        self.layout.size()
    }

    /// Gives the chunk back to its memory.
    fn free(&mut self) -> PyResult<()> {
        if self.freed {
            return Ok(());
        }
        self.exports.check_none("freeing the chunk")?;
        self.freed = true;
        let guard = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(memory) = guard.as_ref() {
            // SAFETY: the chunk was allocated by this memory with `layout` and is given back
            // once (`freed` is set above); no buffer of it is exported, and `Chunk` keeps no
            // other pointer that Python could reach.
            unsafe { memory.deallocate(self.offset, self.layout) };
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.free()?;
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
        this.check_live()
            .map_err(|e| PyBufferError::new_err(e.to_string()))?;
        // SAFETY: the chunk is live and stays allocated while exported: `free` and the
        // memory's `close` refuse while `exports` is non-zero.
        unsafe {
            this.exports.export(
                slf.py(),
                slf.as_ptr(),
                view,
                flags,
                this.ptr as *mut u8,
                this.layout.size(),
                false,
            )?;
        }
        this.memory_exports.add();
        Ok(())
    }

    /// # Safety
    /// Called by Python once per buffer `__getbuffer__` exported.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.release();
        self.memory_exports.release();
    }

    fn __repr__(&self) -> String {
        format!(
            "resmem.Chunk(offset={}, len={}, freed={})",
            self.offset.as_u64(),
            self.layout.size(),
            self.freed
        )
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // A chunk nobody freed goes back with its Python object (no buffer can be exported:
        // each holds a reference to the chunk).
        if !self.freed {
            self.freed = true;
            let guard = self.owner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(memory) = guard.as_ref() {
                // SAFETY: as in `free`: allocated here with `layout`, given back once, and no
                // buffer is exported (an exported buffer keeps this object alive).
                unsafe { memory.deallocate(self.offset, self.layout) };
            }
        }
    }
}
