//! The registration guard: the RAII face of [`View::register_and_translate_offset`] and
//! [`View::unregister_offset`].

use std::fmt;

use crate::{OpenError, PointerOffset};

use super::View;

/// A registered offset of a [`View`]: its segment stays mapped until the guard is dropped,
/// which unregisters it exactly once. Borrows the view, so it cannot outlive it.
///
/// The bytes are shared memory that the owner (and read-write peers) may change at any time:
/// treat what they contain as untrusted input.
#[must_use = "dropping a registration unregisters it at once"]
pub struct Registration<'v> {
    view: &'v View,
    offset: PointerOffset,
    ptr: *const u8,
    /// Bytes from `ptr` to the end of the segment's payload.
    available: u64,
}

// SAFETY: a registration is a borrow of a `Sync` view plus the address of bytes that its
// reference keeps mapped; `&Registration` only gives `&[u8]` and the raw address.
unsafe impl Send for Registration<'_> {}
// SAFETY: as above.
unsafe impl Sync for Registration<'_> {}

impl View {
    /// Maps the segment of `offset` if needed and registers the offset, as
    /// [`View::register_and_translate_offset`] does; dropping the guard unregisters it.
    pub fn register(&self, offset: PointerOffset) -> Result<Registration<'_>, OpenError> {
        // SAFETY: unregistered exactly once, by the guard's drop, which also ends every use
        // of the address (the slices it hands out borrow the guard).
        let ptr = unsafe { self.register_and_translate_offset(offset) }?;
        let slot = &self.slots[offset.segment_id().index()];
        // SAFETY: the registration just made holds a reference to the slot, so its value
        // (the segment it translated against) stays in place until the guard drops it.
        let payload_size = unsafe { slot.get() }.payload_size;
        Ok(Registration {
            view: self,
            offset,
            ptr,
            // The registration checked offset < payload_size.
            available: payload_size - offset.offset(),
        })
    }
}

impl<'v> Registration<'v> {
    /// The registered offset.
    pub fn offset(&self) -> PointerOffset {
        self.offset
    }

    /// This process's address of the offset; valid while the guard lives, for
    /// [`Registration::available`] bytes.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Bytes from the offset to the end of its segment's payload: the most
    /// [`Registration::as_slice`] gives.
    pub fn available(&self) -> usize {
        // Payloads are at most MAX_SEGMENT_SIZE, which fits usize where segments can be mapped.
        usize::try_from(self.available).unwrap_or(usize::MAX)
    }

    /// The `len` bytes from the offset: [`OpenError::InvalidOffset`] when they run past the
    /// segment's payload. Says nothing about which chunk they belong to.
    pub fn as_slice(&self, len: usize) -> Result<&[u8], OpenError> {
        if len as u64 > self.available {
            return Err(OpenError::InvalidOffset);
        }
        // SAFETY: `len` bytes from `ptr` lie inside the segment's payload (checked above),
        // which the registration keeps mapped while `self` is borrowed; `ptr` is non-null
        // and u8 has no alignment.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr, len) })
    }

    /// The view it was registered with.
    pub fn view(&self) -> &'v View {
        self.view
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // SAFETY: registered by `View::register` and unregistered only here; the slices
        // handed out borrowed `self`, so none outlives this.
        unsafe { self.view.unregister_offset(self.offset) };
    }
}

impl fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("offset", &self.offset)
            .field("available", &self.available)
            .finish()
    }
}
