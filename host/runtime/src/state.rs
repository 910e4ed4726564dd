//! The store data [`crate::GuestHost`] gives every guest: WASI, the resource table and the
//! guest's [`ResmemCtx`].

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Policy;
use crate::ctx::{ResmemCtx, ResmemCtxView, ResmemView, Usage};
use crate::window::Window;

/// The data of one guest's store under [`crate::GuestHost`]: what an embedder's own store data
/// holds too (a `WasiCtx`, a `ResourceTable`, a [`ResmemCtx`]).
pub struct GuestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) resmem: ResmemCtx,
}

impl GuestState {
    /// The state of a new guest: its WASI context and the policy it runs under.
    pub fn new(wasi: WasiCtx, policy: Arc<Policy>) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            resmem: ResmemCtx::with_policy(policy),
        }
    }

    /// What the guest holds now.
    pub fn usage(&self) -> Usage {
        self.resmem.usage()
    }

    /// Bytes of shared memory the guest's memories map now.
    pub fn shm_bytes(&self) -> u64 {
        self.resmem.shm_bytes()
    }

    /// The policy the guest runs under.
    pub fn policy(&self) -> &Policy {
        self.resmem.policy()
    }

    /// The guest's zero-copy window.
    pub fn window(&self) -> &Arc<Window> {
        self.resmem.window()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResmemView for GuestState {
    fn resmem(&mut self) -> ResmemCtxView<'_> {
        ResmemCtxView {
            ctx: &mut self.resmem,
            table: &mut self.table,
        }
    }
}
