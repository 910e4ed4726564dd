//! `resizable-memory.view`: a guest's views of memories (its own, other guests', native
//! owners') and the offsets it registered in them.

use std::sync::Arc;
use std::time::Duration;

use resmem::{AccessMode, SegmentId, SegmentRegion, View};
use wasmtime::component::Resource;

use super::{Outcome, shield, truncated, window_address};
use crate::bindings::api::HostView;
use crate::bindings::types::{AccessMode as WitAccess, Error, PointerOffset as WitOffset};
use crate::convert::{self, range};
use crate::ctx::ResmemCtxView;
use crate::resources::{GuestView, Registration};
use crate::sigbus;
use crate::window::{GuestSegments, Segmented};

impl ResmemCtxView<'_> {
    fn open_view(
        &mut self,
        name: &str,
        mode: WitAccess,
        timeout_ms: u32,
    ) -> Result<GuestView, Error> {
        self.check_name(name)?;
        let quotas = self.ctx.policy.quotas();
        if self.ctx.usage.views >= quotas.views {
            return Err(Error::QuotaExceeded(format!(
                "{} views at once",
                quotas.views
            )));
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(quotas.open_timeout);
        let view = shield(|| {
            View::builder(name)
                .config(self.ctx.policy.config())
                .timeout(timeout)
                .open(convert::access(mode))
                .map_err(convert::open_error)
        })?;
        Ok(GuestView {
            segments: GuestSegments::new(Arc::clone(&self.ctx.window)),
            view,
            registered: Default::default(),
            per_segment: Box::new([0; 256]),
        })
    }
}

impl HostView for ResmemCtxView<'_> {
    fn open(
        &mut self,
        name: String,
        mode: WitAccess,
        timeout_ms: u32,
    ) -> Outcome<Resource<GuestView>> {
        let view = match self.open_view(&name, mode, timeout_ms) {
            Ok(view) => view,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(view)?;
        self.ctx.usage.views += 1;
        Ok(Ok(handle))
    }

    fn register(&mut self, this: Resource<GuestView>, offset: WitOffset) -> Outcome<()> {
        let offset = match convert::offset(offset) {
            Ok(offset) => offset,
            Err(e) => return Ok(Err(e)),
        };
        let max = self.ctx.policy.quotas().registrations;
        if self.ctx.usage.registrations >= max {
            return Ok(Err(Error::QuotaExceeded(format!(
                "{max} registered offsets"
            ))));
        }
        let guest = self.table.get_mut(&this)?;
        // SAFETY: every successful registration is recorded below and unregistered exactly
        // once, by `unregister` or when the view is dropped.
        let (registered, faulted) =
            sigbus::shielded(|| unsafe { guest.view.register_and_translate_offset(offset) });
        let address = match registered {
            Ok(address) => address,
            Err(e) => return Ok(Err(convert::open_error(e))),
        };
        if faulted {
            // SAFETY: registered just above; the address was never handed out.
            unsafe { guest.view.unregister_offset(offset) };
            return Ok(Err(truncated()));
        }
        let payload = guest
            .view
            .segment_payload_size(offset.segment_id())
            .unwrap_or(0) as u64;
        let entry = guest
            .registered
            .entry(offset.as_u64())
            .or_insert(Registration {
                address: address as usize,
                available: payload.saturating_sub(offset.offset()),
                count: 0,
            });
        entry.count += 1;
        guest.per_segment[usize::from(offset.segment_id().value())] += 1;
        self.ctx.usage.registrations += 1;
        Ok(Ok(()))
    }

    fn unregister(&mut self, this: Resource<GuestView>, offset: WitOffset) -> Outcome<()> {
        let offset = match convert::offset(offset) {
            Ok(offset) => offset,
            Err(e) => return Ok(Err(e)),
        };
        let guest = self.table.get_mut(&this)?;
        let key = offset.as_u64();
        let Some(entry) = guest.registered.get_mut(&key) else {
            return Ok(Err(Error::InvalidOffset(format!(
                "{offset} is not registered"
            ))));
        };
        entry.count -= 1;
        if entry.count == 0 {
            guest.registered.remove(&key);
        }
        let id = offset.segment_id();
        let count = &mut guest.per_segment[usize::from(id.value())];
        *count = count.saturating_sub(1);
        if *count == 0 {
            // Its last registration goes: the segment leaves the window before the view may
            // unmap it.
            guest.segments.unmap(id.value());
        }
        // SAFETY: this offset was registered by this view (the records say so) and the guest
        // has no way to use the address after this.
        let ((), _) = sigbus::shielded(|| unsafe { guest.view.unregister_offset(offset) });
        self.ctx.usage.registrations -= 1;
        Ok(Ok(()))
    }

    fn read(
        &mut self,
        this: Resource<GuestView>,
        offset: WitOffset,
        at: u64,
        len: u64,
    ) -> Outcome<Vec<u8>> {
        self.read_from(&this, len, |guest| {
            registered_address(guest, offset, at, len)
        })
    }

    fn write(
        &mut self,
        this: Resource<GuestView>,
        offset: WitOffset,
        at: u64,
        data: Vec<u8>,
    ) -> Outcome<()> {
        let len = data.len() as u64;
        self.write_to(&this, &data, |guest| {
            if guest.view.access_mode() != AccessMode::ReadWrite {
                return Err(Error::PermissionDenied("the view is read-only".into()));
            }
            // The view maps its segments read-write (its access mode), so writing is allowed.
            registered_address(guest, offset, at, len).map(|(p, id)| (p as *mut u8, id))
        })
    }

    fn number_of_active_segments(&mut self, this: Resource<GuestView>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&this)?.view.number_of_active_segments() as u32)
    }

    fn map(&mut self, this: Resource<GuestView>, offset: WitOffset) -> Outcome<u32> {
        Ok(self.table.get_mut(&this)?.map(offset))
    }

    fn drop(&mut self, this: Resource<GuestView>) -> wasmtime::Result<()> {
        let guest = self.table.delete(this)?;
        self.ctx.usage.views -= 1;
        self.ctx.usage.registrations -= guest
            .registered
            .values()
            .map(|r| u64::from(r.count))
            .sum::<u64>();
        let ((), _) = sigbus::shielded(|| drop(guest));
        Ok(())
    }
}

/// Address of byte `at` after a registered offset, after checking `[at, at + len)` stays in
/// its segment's payload.
fn registered_address(
    guest: &GuestView,
    offset: WitOffset,
    at: u64,
    len: u64,
) -> Result<(*const u8, SegmentId), Error> {
    let offset = convert::offset(offset)?;
    let registration = guest
        .registered
        .get(&offset.as_u64())
        .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not registered")))?;
    range(
        at,
        len,
        registration.available,
        "segment payload after the offset",
    )?;
    let id = offset.segment_id();
    if guest.segments.has_broken()
        && let Some(region) = guest.view.segment_region(id)
    {
        guest.segments.check(id.value(), region.sequence())?;
    }
    Ok((
        (registration.address as *const u8).wrapping_add(at as usize),
        id,
    ))
}

impl Segmented for GuestView {
    fn region(&self, id: SegmentId) -> Option<SegmentRegion> {
        self.view.segment_region(id)
    }

    fn segments_mut(&mut self) -> &mut GuestSegments {
        &mut self.segments
    }
}

impl GuestView {
    /// `view.map`: the registered offset's guest address in the window.
    fn map(&mut self, offset: WitOffset) -> Result<u32, Error> {
        let offset = convert::offset(offset)?;
        if !self.registered.contains_key(&offset.as_u64()) {
            return Err(Error::InvalidOffset(format!("{offset} is not registered")));
        }
        let region = self
            .view
            .segment_region(offset.segment_id())
            .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not in a mapped segment")))?;
        let start = self.segments.map(offset.segment_id().value(), &region)?;
        window_address(start, offset.offset())
    }
}
