//! The peer side: a view of a memory someone else owns.

use std::fmt;
use std::time::Duration;

use crate::bindings::resmem::memory::resizable_memory as wit;
use crate::{AccessMode, Error, Offset, Result, Window, WindowMut};

/// A window onto a memory created by another guest or a native process. Segments are mapped
/// when an offset into them is [registered](View::register) and unmapped when their last
/// registered offset is gone.
pub struct View {
    raw: wit::View,
    mode: AccessMode,
}

impl View {
    /// Opens the memory `name`, waiting up to `timeout` (whole milliseconds, at most
    /// `u32::MAX`) for an owner that is still initialising.
    pub fn open(name: &str, mode: AccessMode, timeout: Duration) -> Result<Self> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let raw = wit::View::open(name, mode, timeout_ms)?;
        Ok(Self { raw, mode })
    }

    /// Registers `offset` (mapping its segment if needed). The guard reads and writes at the
    /// offset and unregisters it when dropped.
    pub fn register(&self, offset: Offset) -> Result<Registered<'_>> {
        self.raw.register(offset.into())?;
        Ok(Registered { view: self, offset })
    }

    /// Segments this view currently has mapped.
    pub fn number_of_active_segments(&self) -> u32 {
        self.raw.number_of_active_segments()
    }

    pub fn access_mode(&self) -> AccessMode {
        self.mode
    }

    /// The WIT resource, for calls the safe API does not offer.
    pub fn as_raw(&self) -> &wit::View {
        &self.raw
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View").finish_non_exhaustive()
    }
}

/// An offset registered with a [`View`]; unregistered when dropped. Reads and writes copy
/// bytes and must stay inside the payload of the offset's segment (the view does not know
/// chunk sizes: the owner sends them along with the offset).
pub struct Registered<'v> {
    view: &'v View,
    offset: Offset,
}

impl Registered<'_> {
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// Copies `len` bytes starting `at` bytes past the offset.
    pub fn read_at(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        Ok(self.view.raw.read(self.offset.into(), at, len)?)
    }

    /// Copies `data` to `at` bytes past the offset; `PermissionDenied` on a read-only view.
    pub fn write_at(&mut self, at: u64, data: &[u8]) -> Result<()> {
        Ok(self.view.raw.write(self.offset.into(), at, data)?)
    }

    /// The `len` bytes at the offset, in place in the guest's zero-copy window (see
    /// [`crate::window`]). The view does not know chunk sizes: bytes past the segment trap.
    pub fn map(&self, len: u64) -> Result<Window<'_>> {
        let addr = self.view.raw.map(self.offset.into())?;
        // SAFETY: the host mapped the offset's segment at `addr`; the registration is
        // borrowed for the window's lifetime, so the segment stays in the window.
        unsafe { Window::new(addr, len) }
    }

    /// As [`Registered::map`], writable; `PermissionDenied` on a read-only view (whose
    /// segments are mapped read-only: a store would trap).
    pub fn map_mut(&mut self, len: u64) -> Result<WindowMut<'_>> {
        if self.view.mode != AccessMode::ReadWrite {
            return Err(Error::PermissionDenied("the view is read-only".into()));
        }
        let addr = self.view.raw.map(self.offset.into())?;
        // SAFETY: as in `map`; a read-write view maps its segments read-write.
        unsafe { WindowMut::new(addr, len) }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // The host only refuses offsets that are not registered, and this one is.
        let _ = self.view.raw.unregister(self.offset.into());
    }
}

impl fmt::Debug for Registered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("offset", &self.offset)
            .finish()
    }
}
