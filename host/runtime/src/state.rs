//! Per-guest state kept in the store: WASI, the resource table of memories and views, and
//! what the guest currently uses of its quotas.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::Arc;

use resmem::{ByteBudget, Memory, View};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::Policy;

/// A memory owned by a guest, with every chunk it holds (packed offset → layout): the host
/// bounds `read`/`write` to a chunk and frees chunks without trusting the guest's layout.
#[derive(Debug)]
pub struct GuestMemory {
    pub(crate) memory: Memory,
    pub(crate) chunks: HashMap<u64, Layout>,
}

/// One registered offset of a view: where it maps and how many bytes follow it in its
/// segment's payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registration {
    pub(crate) address: usize,
    pub(crate) available: u64,
    pub(crate) count: u32,
}

/// A view opened by a guest, with its registered offsets (packed offset → registration).
#[derive(Debug)]
pub struct GuestView {
    pub(crate) view: View,
    pub(crate) registered: HashMap<u64, Registration>,
}

impl Drop for GuestView {
    fn drop(&mut self) {
        for (packed, registration) in self.registered.drain() {
            for _ in 0..registration.count {
                // SAFETY: every registration was made by this view and is dropped once; the
                // guest cannot reach the address any more (its handle is gone).
                unsafe {
                    self.view
                        .unregister_offset(resmem::PointerOffset::from_u64(packed))
                };
            }
        }
    }
}

/// What a guest holds right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub memories: u32,
    pub views: u32,
    pub chunks: u64,
    pub registrations: u64,
}

/// The data of one guest's store.
pub struct GuestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) policy: Arc<Policy>,
    pub(crate) budget: Arc<ByteBudget>,
    pub(crate) usage: Usage,
    /// Bounds the guest's linear memories (installed as the store's limiter).
    pub(crate) limits: StoreLimits,
}

impl GuestState {
    pub fn new(wasi: WasiCtx, policy: Arc<Policy>) -> Self {
        let budget = Arc::new(ByteBudget::new(policy.quotas().shm_bytes));
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(policy.quotas().wasm_memory_bytes).unwrap_or(usize::MAX))
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            policy,
            budget,
            usage: Usage::default(),
            limits,
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Bytes of shared memory the guest's memories map now.
    pub fn shm_bytes(&self) -> u64 {
        self.budget.used()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
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
