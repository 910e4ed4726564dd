//! The host functions of `resmem:memory/*`: every guest call lands here, on a
//! [`ResmemCtxView`] of the guest's store (memories in `memory`, views in `view`, channels in
//! `channel`, the guarded copies of `read`/`write` in `copy`).
//!
//! Order of business in every function: look the handle up, validate every argument against
//! the guest's own records and quotas, and only then touch shared memory. A guest-caused
//! failure is an `Err(Error)` returned to the guest; the outer `wasmtime::Result` only carries
//! host bugs (a handle missing from the table), which trap.

mod channel;
mod copy;
mod memory;
mod view;

use crate::bindings::api::Host;
use crate::bindings::types::{self as wit, Error, Layout as WitLayout};
use crate::convert;
use crate::ctx::ResmemCtxView;
use crate::sigbus;

pub(crate) type Outcome<T> = wasmtime::Result<Result<T, Error>>;

impl wit::Host for ResmemCtxView<'_> {}

impl ResmemCtxView<'_> {
    pub(crate) fn check_name(&self, name: &str) -> Result<(), Error> {
        resmem::validate_name(name, self.ctx.policy.config())
            .map_err(|e| Error::InvalidName(e.to_string()))
    }

    pub(crate) fn check_io(&self, len: u64) -> Result<(), Error> {
        let max = self.ctx.policy.quotas().io_bytes;
        if len > max {
            return Err(Error::QuotaExceeded(format!(
                "{len} bytes in one call, at most {max}"
            )));
        }
        Ok(())
    }

    pub(crate) fn check_chunk_layout(
        &self,
        layout: WitLayout,
    ) -> Result<std::alloc::Layout, Error> {
        let layout = convert::layout(layout)?;
        let max = self.ctx.policy.quotas().chunk_bytes;
        if layout.size() as u64 > max {
            return Err(Error::QuotaExceeded(format!(
                "chunk of {} bytes, at most {max}",
                layout.size()
            )));
        }
        Ok(layout)
    }
}

impl Host for ResmemCtxView<'_> {
    fn exists(&mut self, name: String) -> Outcome<bool> {
        if let Err(e) = self.check_name(&name) {
            return Ok(Err(e));
        }
        Ok(shield(|| {
            resmem::exists(&name, self.ctx.policy.config()).map_err(|e| Error::Io(e.to_string()))
        }))
    }

    fn list(&mut self) -> Outcome<Vec<String>> {
        Ok(shield(|| {
            resmem::list(self.ctx.policy.config()).map_err(|e| Error::Io(e.to_string()))
        }))
    }

    fn remove(&mut self, name: String) -> Outcome<bool> {
        if let Err(e) = self.check_name(&name) {
            return Ok(Err(e));
        }
        let config = self.ctx.policy.config();
        // Only leftovers: a memory whose owner (a guest, or a native process) is alive, or is
        // being created, belongs to that owner, which removes it by dropping it. Decided by
        // the owner's lock (not the header, which a peer may have scribbled over), held while
        // the objects are removed, so an owner cannot appear halfway.
        let removed =
            shield(|| resmem::remove_stale(&name, config).map_err(|e| Error::Io(e.to_string())));
        Ok(match removed {
            Ok(resmem::StaleRemoval::Removed) => Ok(true),
            Ok(resmem::StaleRemoval::NotFound) => Ok(false),
            Ok(resmem::StaleRemoval::OwnerAlive) => Err(Error::PermissionDenied(
                "the memory has a live owner; it is removed when its owner drops it".into(),
            )),
            Ok(other) => Err(Error::Io(format!("removing a stale memory: {other:?}"))),
            Err(e) => Err(e),
        })
    }
}

/// Runs a call into the native core with SIGBUS contained: a fault fails the call with `io`.
pub(crate) fn shield<T>(work: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match sigbus::shielded(work) {
        (result, false) => result,
        (_, true) => Err(truncated()),
    }
}

/// The error of a call during which a shared-memory object turned out truncated.
pub(crate) fn truncated() -> Error {
    Error::Io(sigbus::Truncated.to_string())
}

/// The guest address `offset` bytes into the window slot at `start`.
pub(crate) fn window_address(start: u32, offset: u64) -> Result<u32, Error> {
    u64::from(start)
        .checked_add(offset)
        .and_then(|a| u32::try_from(a).ok())
        .ok_or_else(|| Error::InvalidOffset(format!("offset {offset} is outside the window")))
}

/// `bench-support.noop`: does nothing, so a guest can measure the bare cost of a host call.
#[cfg(feature = "bench-support")]
impl crate::bindings::bench::resmem::memory::bench_support::Host for ResmemCtxView<'_> {
    fn noop(&mut self) -> wasmtime::Result<()> {
        Ok(())
    }
}
