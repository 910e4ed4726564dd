//! What the host keeps per guest, shaped like wasmtime-wasi's `WasiCtx`: a [`ResmemCtx`] lives
//! in the embedder's store data, and [`ResmemView`] lends it, with the store's resource table,
//! to the host functions.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use resmem::ByteBudget;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::Policy;
use crate::window::Window;

/// One guest's resmem state: the policy it runs under (namespace, quotas), what it uses of
/// its quotas now, its shared-memory budget and its zero-copy window. Its memories, views,
/// publishers and subscribers are resources in the store's [`ResourceTable`]; dropping the
/// store drops them, which removes their OS objects as a native owner's drop does.
#[derive(Debug)]
pub struct ResmemCtx {
    pub(crate) policy: Arc<Policy>,
    pub(crate) budget: Arc<ByteBudget>,
    pub(crate) usage: Usage,
    pub(crate) window: Arc<Window>,
    /// Bounds the guest's linear memories once installed as the store's limiter.
    limits: StoreLimits,
    /// When the current entry into the guest must end; host calls that wait (a subscriber's
    /// pollable) return by then.
    pub(crate) deadline: Deadline,
}

impl ResmemCtx {
    /// The state of a new guest under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self::with_policy(Arc::new(policy))
    }

    /// [`ResmemCtx::new`] with a policy shared between many guests.
    pub fn with_policy(policy: Arc<Policy>) -> Self {
        let quotas = policy.quotas();
        let budget = Arc::new(ByteBudget::new(quotas.shm_bytes));
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(quotas.wasm_memory_bytes).unwrap_or(usize::MAX))
            .build();
        Self {
            window: Window::new(quotas.window_bytes),
            budget,
            usage: Usage::default(),
            limits,
            deadline: Deadline::default(),
            policy,
        }
    }

    /// What the guest holds now.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Bytes of shared memory the guest's memories and channels map now.
    pub fn shm_bytes(&self) -> u64 {
        self.budget.used()
    }

    /// The policy the guest runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The guest's zero-copy window. Its instance's linear memories attach to it when the
    /// instance is created inside [`Window::bind`] on an engine made with
    /// [`crate::configure`]; otherwise `map` fails with a clear error.
    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }

    /// The limiter of the `wasm_memory_bytes` quota, for the embedder's one call
    /// `store.limiter(|data| data.resmem.limiter())` (wasmtime's hook needs the store).
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// Tells the host calls that wait on the guest's behalf (a subscriber's pollable) when
    /// the current entry into the guest ends: `None` for never. [`crate::arm_deadline`] sets
    /// it together with the epoch deadline.
    pub fn set_deadline(&self, at: Option<Instant>) {
        self.deadline.set(at);
    }
}

/// A [`ResmemCtx`] and the store's resource table, lent to the host functions (wasmtime-wasi's
/// `WasiCtxView`).
pub struct ResmemCtxView<'a> {
    /// The guest's resmem state.
    pub ctx: &'a mut ResmemCtx,
    /// The store's resource table (shared with WASI and the embedder's own resources).
    pub table: &'a mut ResourceTable,
}

/// Store data that holds a [`ResmemCtx`]: what [`crate::add_to_linker`] needs of `T`.
///
/// ```
/// use resmem_host::{ResmemCtx, ResmemCtxView, ResmemView};
/// use wasmtime::component::ResourceTable;
///
/// struct MyState {
///     resmem: ResmemCtx,
///     table: ResourceTable,
/// }
///
/// impl ResmemView for MyState {
///     fn resmem(&mut self) -> ResmemCtxView<'_> {
///         ResmemCtxView { ctx: &mut self.resmem, table: &mut self.table }
///     }
/// }
/// ```
pub trait ResmemView: Send {
    /// The guest's resmem state and the store's resource table.
    fn resmem(&mut self) -> ResmemCtxView<'_>;
}

/// What a guest holds right now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Memories the guest owns.
    pub memories: u32,
    /// Views the guest has open.
    pub views: u32,
    /// Chunks the guest holds in its memories.
    pub chunks: u64,
    /// Offsets the guest has registered in its views.
    pub registrations: u64,
    /// Channel publishers the guest holds.
    pub publishers: u32,
    /// Channel subscribers the guest holds.
    pub subscribers: u32,
    /// Unsent loans over all its publishers.
    pub loans: u64,
    /// Received samples it holds over all its subscribers.
    pub borrowed: u64,
}

/// The wall-clock end of the current entry into a guest, shared with the resources that wait
/// on its behalf.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadline(Arc<Mutex<Option<Instant>>>);

impl Deadline {
    pub(crate) fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is left of it from now, at most `cap`.
    pub(crate) fn left(&self, cap: Duration) -> Duration {
        self.get().map_or(cap, |at| {
            at.saturating_duration_since(Instant::now()).min(cap)
        })
    }
}
