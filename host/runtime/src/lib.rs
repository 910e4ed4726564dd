//! # resmem-host: resizable shared memory for WebAssembly components
//!
//! A wasmtime host library that implements the WIT interfaces `resmem:memory/resizable-memory`
//! and `resmem:memory/channel` on top of the native [`resmem`] crate, shaped like
//! wasmtime-wasi:
//! - a [`ResmemCtx`] lives in the embedder's own store data next to its `WasiCtx`; it holds
//!   the [`Policy`] the guest runs under (namespace, quotas), its usage and its zero-copy
//!   window, and [`ResmemView`] lends it with the store's resource table;
//! - [`add_to_linker`] puts the host functions on the embedder's own `Linker<T>`;
//!   [`configure`] sets the engine options the zero-copy window (`map`) needs, nothing else;
//! - deadlines ([`EpochTicker`], [`arm_deadline`]) and the SIGBUS handler
//!   ([`sigbus::install`]) are explicit parts an embedder opts into;
//! - [`GuestHost`] is the convenience layer on top (its own engine, linker and store data
//!   [`GuestState`]) that `resmem run` uses.
//!
//! Every argument is validated; violations come back as WIT `error` values, never as host
//! traps or panics. When a store is dropped, every memory, view, publisher and subscriber its
//! guest held goes with it: the OS objects are removed exactly as when a native owner drops.
//!
//! Names a guest uses are relative to its namespace, which is the native `Config` prefix: a
//! guest's memory `frames` under namespace `P` is what a native peer opens with
//! `View::builder("frames").config(&Config::default().prefix("P"))`.

#![warn(missing_docs)]

pub mod bindings;
mod channel;
mod convert;
mod ctx;
mod deadline;
mod engine;
mod error;
// The frames the channel guests send and check (`resmem_guest::frame`): the SDK's own file,
// so native peers check exactly what a guest wrote.
#[path = "../../../guest/sdk/src/frame.rs"]
pub mod frame;
mod host;
mod linker;
mod policy;
mod resources;
pub mod run;
pub mod sigbus;
mod state;
pub mod window;

pub use channel::{GuestPublisher, GuestSubscriber};
pub use ctx::{ResmemCtx, ResmemCtxView, ResmemView, Usage};
pub use deadline::{EpochTicker, TICK as DEADLINE_TICK, arm_deadline, is_deadline_exceeded};
pub use engine::{EngineOptions, new_engine};
pub use error::{BoxError, GuestTrap, HostError};
#[cfg(feature = "bench-support")]
pub use linker::add_bench_support_to_linker;
pub use linker::{add_to_linker, configure};
pub use policy::{DEFAULT_NAMESPACE, Policy, PolicyBuilder, Quotas};
pub use resources::{GuestMemory, GuestView};
pub use run::{GuestHost, Plugin, RunOutcome};
pub use state::GuestState;
pub use window::{Window, WindowCreator};
