//! # resmem-host: resizable shared memory for WebAssembly components
//!
//! A wasmtime host that implements the WIT interface `resmem:memory/resizable-memory` on top
//! of the native [`resmem`] crate. Each guest runs in its own [`wasmtime::Store`] whose
//! [`GuestState`] holds the guest's memories and views in a resource table, the [`Policy`]
//! it runs under (namespace, quotas) and its usage. Every argument is validated; violations
//! come back as WIT `error` values, never as host traps or panics. When a guest exits or traps
//! its store is dropped and with it every memory it owned: the OS objects are removed exactly
//! as when a native owner is dropped.
//!
//! Names a guest uses are relative to its namespace, which is the native `Config` prefix: a
//! guest's memory `frames` under namespace `P` is what a native peer opens with
//! `View::builder("frames").config(&Config::default().prefix("P"))`.

#![warn(missing_docs)]

pub mod bindings;
mod channel;
mod convert;
mod deadline;
mod engine;
/// The frames the channel guests send and check (`resmem_guest::frame`): the SDK's own file,
/// so native peers check exactly what a guest wrote.
#[path = "../../../guest/sdk/src/frame.rs"]
pub mod frame;
mod host_impl;
pub mod pattern;
mod policy;
pub mod run;
pub mod sigbus;
mod state;
pub mod window;

pub use channel::{GuestPublisher, GuestSubscriber};
pub use deadline::{TICK as DEADLINE_TICK, is_deadline_exceeded};
pub use engine::{EngineOptions, new_engine};
pub use policy::{DEFAULT_NAMESPACE, Policy, PolicyBuilder, Quotas};
pub use run::{GuestHost, Plugin, RunOutcome};
pub use state::{GuestMemory, GuestSegments, GuestState, GuestView, Usage};
pub use window::{Window, WindowCreator};
