//! Running guests: command components (`wasi:cli/run`) and filter plugins.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::bindings::{bench, guest, plugin};
use crate::deadline::{self, Ticker};
use crate::engine::{self, EngineOptions};
use crate::{GuestState, Policy};

pub use crate::bindings::plugin::exports::resmem::memory::filter::Buffer;

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// `main` returned or the guest called `exit`: its exit code.
    Exited(i32),
    /// The guest trapped; the message says where and why.
    Trapped(String),
    /// The guest was still running at the policy's deadline (shown) and was stopped.
    DeadlineExceeded(Duration),
}

impl RunOutcome {
    /// The process exit code `resmem run` ends with: the guest's, 101 after a trap (the
    /// code of a panicking native Rust program), 124 after the deadline (the code of
    /// `timeout(1)`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Exited(code) => *code,
            Self::Trapped(_) => 101,
            Self::DeadlineExceeded(_) => 124,
        }
    }
}

/// An engine, a linker with WASI and `resizable-memory`, and the policy guests run under.
/// Cheap to share between threads; every guest gets its own store.
pub struct GuestHost {
    engine: Engine,
    linker: Linker<GuestState>,
    policy: Arc<Policy>,
    options: EngineOptions,
    /// Advances the epoch the guests' deadlines are counted in; stops with the host.
    _ticker: Ticker,
}

impl GuestHost {
    /// A host whose guests run under `policy`, on an engine built with `options`.
    pub fn new(policy: Policy, options: EngineOptions) -> Result<Self> {
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Interface by interface: the worlds also import `wasi:io/poll`, which WASI's linker
        // above already serves (a subscriber's pollable is one of its pollables). Every world
        // imports the same interfaces, so this one linker serves them all.
        guest::resmem::memory::types::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )?;
        guest::resmem::memory::resizable_memory::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )?;
        guest::resmem::memory::channel::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )?;
        // The no-op host call of the bridge benchmark (world `bench`); any guest may import it.
        bench::resmem::memory::bench_support::add_to_linker::<GuestState, HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )?;
        let ticker = Ticker::start(&engine).context("starting the epoch thread")?;
        Ok(Self {
            engine,
            linker,
            policy: Arc::new(policy),
            options,
            _ticker: ticker,
        })
    }

    /// The policy every guest of this host runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The engine the guests are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from the cache) a component.
    pub fn load(&self, bytes: &[u8]) -> Result<Component> {
        engine::load_component(&self.engine, bytes, &self.options)
    }

    /// A fresh store for one guest with the given WASI context, its linear memories limited
    /// and its deadline (if the policy has one) counting from now.
    pub fn store(&self, wasi: &mut WasiCtxBuilder) -> Store<GuestState> {
        let mut store = Store::new(
            &self.engine,
            GuestState::new(wasi.build(), Arc::clone(&self.policy)),
        );
        store.limiter(|state| &mut state.limits);
        arm(&mut store, self.policy.deadline());
        store
    }

    /// Instantiates a command component in `store` (made by [`GuestHost::store`]) with this
    /// host's imports; its linear memories attach to the store's zero-copy window.
    pub fn instantiate_command(
        &self,
        store: &mut Store<GuestState>,
        component: &Component,
    ) -> wasmtime::Result<Command> {
        let window = Arc::clone(store.data().window());
        window.bind(|| Command::instantiate(&mut *store, component, &self.linker))
    }

    /// Runs a command component to completion, or until the policy's deadline. Its memories
    /// are released when its store is dropped, whether it returned, exited, trapped or was
    /// stopped.
    pub fn run_command(
        &self,
        component: &Component,
        wasi: &mut WasiCtxBuilder,
    ) -> Result<RunOutcome> {
        let mut store = self.store(wasi);
        let command = match self.instantiate_command(&mut store, component) {
            Ok(command) => command,
            // A start function that never returns.
            Err(e) if deadline::interrupted(&e) => {
                return Ok(RunOutcome::DeadlineExceeded(
                    self.policy.deadline().unwrap_or_default(),
                ));
            }
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context("instantiating the component (is it a wasi:cli command?)"));
            }
        };
        let outcome = match command.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => RunOutcome::Exited(0),
            Ok(Err(())) => RunOutcome::Exited(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => RunOutcome::Exited(exit.0),
                None if deadline::interrupted(&e) => {
                    RunOutcome::DeadlineExceeded(self.policy.deadline().unwrap_or_default())
                }
                None => RunOutcome::Trapped(format!("{e:?}")),
            },
        };
        // Dropping the store drops every memory and view the guest held, which writes headers a
        // peer may have truncated.
        let ((), _) = crate::sigbus::shielded(|| drop(store));
        Ok(outcome)
    }

    /// Instantiates a filter plugin; it lives (with its memories) as long as the `Plugin`.
    pub fn plugin(&self, component: &Component, wasi: &mut WasiCtxBuilder) -> Result<Plugin> {
        let mut store = self.store(wasi);
        let window = Arc::clone(store.data().window());
        let bindings = window
            .bind(|| plugin::Plugin::instantiate(&mut store, component, &self.linker))
            .map_err(anyhow::Error::from)
            .map_err(|e| deadline_context(e, self.policy.deadline()))
            .context("instantiating the plugin (does it export resmem:memory/filter?)")?;
        Ok(Plugin {
            store: std::mem::ManuallyDrop::new(store),
            bindings,
            deadline: self.policy.deadline(),
        })
    }
}

/// A running filter plugin.
pub struct Plugin {
    store: std::mem::ManuallyDrop<Store<GuestState>>,
    bindings: plugin::Plugin,
    deadline: Option<Duration>,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; nothing uses the store afterwards.
        let ((), _) =
            crate::sigbus::shielded(|| unsafe { std::mem::ManuallyDrop::drop(&mut self.store) });
    }
}

impl Plugin {
    /// Hands one buffer to the plugin, which has the policy's deadline for this call. `Err`
    /// is a trap or the deadline ([`crate::is_deadline_exceeded`] tells): the plugin is unusable
    /// afterwards, and dropping it releases its memories. `Ok(Err(message))` is the plugin's
    /// own refusal.
    pub fn process(&mut self, input: &Buffer) -> Result<Result<Option<Buffer>, String>> {
        arm(&mut self.store, self.deadline);
        self.bindings
            .resmem_memory_filter()
            .call_process(&mut *self.store, input)
            .map_err(|e| deadline_context(e.into(), self.deadline))
    }

    /// The plugin's store data: its memories, views and usage.
    pub fn state(&self) -> &GuestState {
        self.store.data()
    }
}

/// Arms the deadline of the next entry into the guest, for compiled code (the epoch) and for
/// host calls that wait (the guest's pollables).
fn arm(store: &mut Store<GuestState>, limit: Option<Duration>) {
    deadline::arm(store, limit);
    let at = limit.and_then(|d| std::time::Instant::now().checked_add(d));
    store.data().deadline.set(at);
}

/// Says which deadline a guest overran, keeping the trap inspectable.
fn deadline_context(error: anyhow::Error, limit: Option<Duration>) -> anyhow::Error {
    match limit {
        Some(limit) if deadline::is_deadline_exceeded(&error) => error.context(format!(
            "the guest ran longer than its deadline of {limit:?}"
        )),
        _ => error,
    }
}
