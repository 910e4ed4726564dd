//! `read` and `write` of memories and views: one bounded copy between the guest and shared
//! memory, guarded against a peer that truncates the segment meanwhile.

use resmem::SegmentId;
use wasmtime::component::Resource;

use super::Outcome;
use crate::bindings::types::Error;
use crate::ctx::ResmemCtxView;
use crate::sigbus;
use crate::window::Segmented;

impl ResmemCtxView<'_> {
    /// `read` of a memory or a view: the size quota, then `locate` (which checks the range
    /// against the guest's own records and returns it with its segment), then one copy out of
    /// shared memory, guarded against a peer that truncated the segment.
    pub(crate) fn read_from<T: Segmented>(
        &mut self,
        this: &Resource<T>,
        len: u64,
        locate: impl FnOnce(&T) -> Result<(*const u8, SegmentId), Error>,
    ) -> Outcome<Vec<u8>> {
        if let Err(e) = self.check_io(len) {
            return Ok(Err(e));
        }
        let guest = self.table.get_mut(this)?;
        let (source, id) = match locate(guest) {
            Ok(located) => located,
            Err(e) => return Ok(Err(e)),
        };
        // SAFETY: `locate` returned the start of `len` bytes inside mapped shared memory that
        // the guest owns (a chunk) or registered (a view's segment payload).
        let copied = sigbus::guarded(source as usize, len as usize, || unsafe {
            copy_out(source, len)
        });
        Ok(copied.unwrap_or_else(|_| Err(guest.mark_broken(id).into())))
    }

    /// `write` of a memory or a view, like `read_from`.
    pub(crate) fn write_to<T: Segmented>(
        &mut self,
        this: &Resource<T>,
        data: &[u8],
        locate: impl FnOnce(&T) -> Result<(*mut u8, SegmentId), Error>,
    ) -> Outcome<()> {
        if let Err(e) = self.check_io(data.len() as u64) {
            return Ok(Err(e));
        }
        let guest = self.table.get_mut(this)?;
        let (target, id) = match locate(guest) {
            Ok(located) => located,
            Err(e) => return Ok(Err(e)),
        };
        // SAFETY: `locate` returned the start of `data.len()` writable bytes inside shared
        // memory the guest owns or registered read-write; `data` is host memory.
        let copied = sigbus::guarded(target as usize, data.len(), || unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), target, data.len())
        });
        Ok(copied.map_err(|_| guest.mark_broken(id).into()))
    }
}

/// Copies `len` bytes from shared memory into a new vector, failing politely if the host
/// cannot allocate it.
///
/// # Safety
/// `source..source + len` must be mapped and readable.
unsafe fn copy_out(source: *const u8, len: u64) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(len).map_err(|_| Error::QuotaExceeded("read too large".into()))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| Error::QuotaExceeded(format!("the host cannot allocate {len} bytes")))?;
    // SAFETY: the caller guarantees the source range; `out` has capacity for len bytes and
    // does not overlap shared memory; set_len follows the initialising copy.
    unsafe {
        std::ptr::copy_nonoverlapping(source, out.as_mut_ptr(), len);
        out.set_len(len);
    }
    Ok(out)
}
