//! `resmem_memory`: the owner of a named memory, and its chunks.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::{Mutex, PoisonError};

use resmem::{AllocationStrategy, PointerOffset};

use crate::ffi_util::{
    call, config, handle, into_handle, layout, optional_str, out, required_str, take_handle,
};
use crate::status::{Failure, resmem_status};

/// How the owner sizes a new segment when a chunk does not fit into the current one.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum resmem_strategy {
    /// Round bucket count and bucket size up to powers of two (the default, 0).
    RESMEM_STRATEGY_POWER_OF_TWO = 0,
    /// Grow just enough: one more bucket, or exactly the larger layout.
    RESMEM_STRATEGY_BEST_FIT = 1,
    /// Never create a new segment: a chunk that does not fit is `RESMEM_OUT_OF_MEMORY`.
    RESMEM_STRATEGY_STATIC = 2,
}

/// How `resmem_memory_create` sizes and names a memory. A zero-initialised struct (`= {0}`)
/// means the defaults, as does passing NULL instead of a pointer to it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct resmem_memory_options {
    /// The namespace (the prefix of every OS object name, the string `resmem run
    /// --namespace` and Python's `namespace=` take); NULL: resmem's default prefix.
    pub namespace_: *const c_char,
    /// The largest chunk expected, which sizes the buckets of the first segment; 0: 4096.
    pub chunk_size: usize,
    /// Its alignment, a power of two; 0: 8.
    pub chunk_align: usize,
    /// How many chunks are expected at once, which sizes the first segment; 0: 1.
    pub chunks: usize,
    /// How new segments are sized; 0 is `RESMEM_STRATEGY_POWER_OF_TWO`. A value that is no
    /// `resmem_strategy` is `RESMEM_INVALID_ARGUMENT`.
    pub strategy: resmem_strategy,
}

/// `resmem_memory_options` as the library reads it: the same layout, the strategy as the
/// plain integer C may have put there (reading an unknown value as the enum would be
/// undefined behaviour, so it is checked first).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawMemoryOptions {
    namespace_: *const c_char,
    chunk_size: usize,
    chunk_align: usize,
    chunks: usize,
    strategy: i32,
}

const _: () = {
    assert!(size_of::<RawMemoryOptions>() == size_of::<resmem_memory_options>());
    assert!(align_of::<RawMemoryOptions>() == align_of::<resmem_memory_options>());
    assert!(size_of::<resmem_strategy>() == size_of::<i32>());
};

impl Default for resmem_memory_options {
    fn default() -> Self {
        Self {
            namespace_: std::ptr::null(),
            chunk_size: 4096,
            chunk_align: 8,
            chunks: 1,
            strategy: resmem_strategy::RESMEM_STRATEGY_POWER_OF_TWO,
        }
    }
}

fn strategy(raw: i32) -> Result<AllocationStrategy, Failure> {
    match raw {
        0 => Ok(AllocationStrategy::PowerOfTwo),
        1 => Ok(AllocationStrategy::BestFit),
        2 => Ok(AllocationStrategy::Static),
        other => Err(Failure::invalid(format!(
            "strategy {other} is no resmem_strategy (0, 1 or 2)"
        ))),
    }
}

/// A memory this process owns (opaque). Made by `resmem_memory_create`, freed by
/// `resmem_memory_close`. Calls on one handle from several threads at once are allowed
/// (the owner is thread-safe), except `resmem_memory_close`, which must be the last call.
pub struct resmem_memory {
    memory: resmem::Memory,
    /// Chunks allocated through this handle and not freed, by packed offset: what
    /// `resmem_memory_deallocate` checks an offset and layout against.
    chunks: Mutex<HashMap<u64, Layout>>,
}

/// The defaults `resmem_memory_create` uses for a NULL options pointer (and for zero
/// fields): no namespace (resmem's default prefix), chunk size 4096, alignment 8, one chunk,
/// `RESMEM_STRATEGY_POWER_OF_TWO`.
#[unsafe(no_mangle)]
pub extern "C" fn resmem_memory_options_default() -> resmem_memory_options {
    resmem_memory_options::default()
}

/// Creates the memory `name` (segment 0 and the management segment) and returns its owner
/// handle in `*out`.
///
/// `name` (required) is the memory's name inside the namespace; `opts` may be NULL for the
/// defaults (see `resmem_memory_options`). On success `*out` is a new handle, to be freed
/// with `resmem_memory_close`; on failure `*out` is not written.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`name` or `out` NULL),
/// `RESMEM_INVALID_ARGUMENT` (a string that is not UTF-8, an unknown strategy),
/// `RESMEM_INVALID_NAME`, `RESMEM_INVALID_LAYOUT` (chunk size and alignment are no layout, or
/// a first segment too large), `RESMEM_ALREADY_EXISTS`, `RESMEM_PERMISSION_DENIED`,
/// `RESMEM_OUT_OF_MEMORY` or `RESMEM_INTERNAL`.
///
/// # Safety
/// Non-null pointers must be valid: `name` and `opts->namespace_` NUL-terminated strings,
/// `opts` a readable `resmem_memory_options`, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_memory_create(
    name: *const c_char,
    opts: *const resmem_memory_options,
    out: *mut *mut resmem_memory,
) -> resmem_status {
    call("resmem_memory_create", || {
        let out = self::out(out, "out")?;
        // SAFETY: the caller passes a valid string or NULL.
        let name = unsafe { required_str(name, "name") }?;
        let opts = if opts.is_null() {
            RawMemoryOptions {
                namespace_: std::ptr::null(),
                chunk_size: 0,
                chunk_align: 0,
                chunks: 0,
                strategy: 0,
            }
        } else {
            // SAFETY: non-null and readable (the caller's contract); RawMemoryOptions has the
            // same layout with a plain integer for the enum, so any bits C wrote are valid.
            unsafe { opts.cast::<RawMemoryOptions>().read() }
        };
        // SAFETY: a valid string or NULL, as for `name`.
        let namespace = unsafe { optional_str(opts.namespace_, "opts->namespace_") }?;
        let strategy = strategy(opts.strategy)?;
        let nonzero = |v: usize, default: usize| if v == 0 { default } else { v };
        let hint = layout(nonzero(opts.chunk_size, 4096), nonzero(opts.chunk_align, 8))?;
        let memory = resmem::Memory::builder(name)
            .config(&config(namespace))
            .max_chunk_layout_hint(hint)
            .max_number_of_chunks_hint(nonzero(opts.chunks, 1))
            .allocation_strategy(strategy)
            .create()?;
        let handle = into_handle(resmem_memory {
            memory,
            chunks: Mutex::default(),
        });
        // SAFETY: `out` is non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Allocates a chunk of `size` bytes aligned to `align` (a power of two, at most the page
/// size); the memory grows into a new segment when the current one cannot serve it (unless
/// its strategy is static). On success `*out_offset` is the chunk's packed offset, the
/// number any process maps it from (`resmem_view_register`), and `*out_ptr` its address in
/// this process, writable until `resmem_memory_deallocate` or `resmem_memory_close`.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`memory`, `out_offset` or `out_ptr` NULL),
/// `RESMEM_INVALID_LAYOUT` (not a layout, alignment above the page size, larger than a
/// segment can be), `RESMEM_OUT_OF_MEMORY` or `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `memory` is NULL or a live handle; non-null out-pointers are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_memory_allocate(
    memory: *mut resmem_memory,
    size: usize,
    align: usize,
    out_offset: *mut u64,
    out_ptr: *mut *mut c_void,
) -> resmem_status {
    call("resmem_memory_allocate", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(memory, "memory") }?;
        let (out_offset, out_ptr) = (out(out_offset, "out_offset")?, out(out_ptr, "out_ptr")?);
        let layout = layout(size, align)?;
        let chunk = this.memory.allocate(layout)?;
        this.lock().insert(chunk.offset.as_u64(), layout);
        // SAFETY: both non-null and writable (the caller's contract).
        unsafe {
            out_offset.write(chunk.offset.as_u64());
            out_ptr.write(chunk.data_ptr.cast());
        }
        Ok(())
    })
}

/// Gives back the chunk at `offset`, allocated by `resmem_memory_allocate` on this handle
/// with the same `size` and `align`. Checked: an offset that is no chunk of this handle's
/// (never allocated, freed already) or a size or alignment other than the allocation's is
/// `RESMEM_INVALID_OFFSET` and changes nothing. The chunk's address must not be used
/// afterwards.
///
/// Returns `RESMEM_OK`, `RESMEM_NULL_ARGUMENT` (`memory` NULL), `RESMEM_INVALID_OFFSET` or
/// `RESMEM_INTERNAL`. Thread-safe.
///
/// # Safety
/// `memory` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_memory_deallocate(
    memory: *mut resmem_memory,
    offset: u64,
    size: usize,
    align: usize,
) -> resmem_status {
    call("resmem_memory_deallocate", || {
        // SAFETY: NULL or a live handle (the caller's contract).
        let this = unsafe { handle(memory, "memory") }?;
        {
            let mut chunks = this.lock();
            match chunks.get(&offset).copied() {
                None => {
                    return Err(Failure::new(
                        resmem_status::RESMEM_INVALID_OFFSET,
                        format!(
                            "offset {offset} is no chunk allocated by this memory handle (or \
                             it was freed already)"
                        ),
                    ));
                }
                Some(l) if (l.size(), l.align()) != (size, align) => {
                    return Err(Failure::new(
                        resmem_status::RESMEM_INVALID_OFFSET,
                        format!(
                            "the chunk at offset {offset} was allocated with size {} and \
                             alignment {}, not {size} and {align}",
                            l.size(),
                            l.align()
                        ),
                    ));
                }
                Some(_) => chunks.remove(&offset),
            };
        }
        // Checked by the allocator as well: any offset is safe here.
        this.memory
            .try_deallocate(PointerOffset::from_u64(offset))
            .map_err(Failure::from)
    })
}

/// Closes the memory: removes its OS objects (views that mapped it keep their mappings) and
/// frees the handle. Every chunk's address becomes invalid. NULL is a no-op. No other call
/// on this handle may run at the same time or follow.
///
/// # Safety
/// `memory` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn resmem_memory_close(memory: *mut resmem_memory) {
    // SAFETY: NULL or a handle from resmem_memory_create, not used again (the contract).
    let memory = unsafe { take_handle(memory) };
    let _ = call("resmem_memory_close", move || {
        drop(memory);
        Ok(())
    });
}

impl resmem_memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Layout>> {
        self.chunks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
