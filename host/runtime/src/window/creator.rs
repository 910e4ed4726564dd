//! The engine's memory creator: every linear memory a full wasm32 reservation, its heap capped
//! below the window, attached to the window bound to the instantiating thread.

use std::sync::Arc;

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use super::{ADDRESS_SPACE, BINDING, DEFAULT_WINDOW, Window};
use crate::sigbus;

/// Creates every linear memory of the engine: a full wasm32 reservation with the heap capped
/// below the window.
#[derive(Debug, Default)]
pub struct WindowCreator;

// SAFETY: the memories honour wasmtime's contract: the reservation is at least
// `reserved_size_in_bytes` plus `guard_size_in_bytes`, all PROT_NONE except the heap, which is
// zero-filled on creation; the base never moves; only the window above the heap cap is mapped
// by the host, and wasmtime's bounds (`byte_size`) never include it.
unsafe impl MemoryCreator for WindowCreator {
    fn new_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let window = BINDING.with(|b| b.borrow().clone());
        let reservation = reserved_size_in_bytes
            .unwrap_or(0)
            .max(ADDRESS_SPACE as usize);
        let heap_cap = window
            .as_ref()
            .map_or(ADDRESS_SPACE - DEFAULT_WINDOW, |w| w.heap_cap())
            as usize;
        let limit = maximum.unwrap_or(usize::MAX).min(heap_cap);
        if minimum > limit {
            return Err(format!(
                "the memory needs {minimum} bytes, more than the guest heap cap of {limit}"
            ));
        }
        let total = reservation
            .checked_add(guard_size_in_bytes)
            .ok_or("reservation overflows")?;
        // SAFETY: a fresh anonymous reservation; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "reserving {total} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut memory = WindowedMemory {
            base: base as usize,
            total,
            size: 0,
            limit,
            window: None,
            _guard: sigbus::register_window(base as usize, base as usize + total),
        };
        memory.grow_to(minimum).map_err(|e| e.to_string())?;
        // Only 32-bit memories have the window: wasmtime bounds-checks 64-bit ones explicitly.
        if !ty.is_64()
            && let Some(window) = window
        {
            window.attach(memory.base);
            memory.window = Some(window);
        }
        Ok(Box::new(memory))
    }
}

/// A linear memory in a full wasm32 reservation.
struct WindowedMemory {
    base: usize,
    total: usize,
    size: usize,
    limit: usize,
    window: Option<Arc<Window>>,
    _guard: sigbus::WindowGuard,
}

// SAFETY: `as_ptr` is the base of a reservation that lives (unmoved) until drop; `byte_size`
// bytes from it are readable and writable; growth only changes protections in place.
unsafe impl LinearMemory for WindowedMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.limit
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.limit {
            wasmtime::bail!(
                "the guest heap is capped at {} bytes (the zero-copy window lies above)",
                self.limit
            );
        }
        if new_size > self.size {
            // SAFETY: `[size, new_size)` lies inside our reservation, below the window.
            let rc = unsafe {
                libc::mprotect(
                    (self.base + self.size) as *mut libc::c_void,
                    new_size - self.size,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                wasmtime::bail!(
                    "growing the guest heap: {}",
                    std::io::Error::last_os_error()
                );
            }
            self.size = new_size;
        }
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base as *mut u8
    }
}

impl Drop for WindowedMemory {
    fn drop(&mut self) {
        if let Some(window) = &self.window {
            window.detach(self.base);
        }
        // SAFETY: the reservation (window mappings included) is ours and wasmtime no longer
        // uses the memory.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.total) };
    }
}
