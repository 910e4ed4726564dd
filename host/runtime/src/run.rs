//! Running guests: command components (`wasi:cli/run`) and filter plugins.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::bindings::plugin;
use crate::deadline::{self, EpochTicker};
use crate::engine::{self, EngineOptions};
use crate::error::{GuestTrap, HostError};
use crate::{GuestState, Policy};

pub use crate::bindings::plugin::exports::resmem::memory::filter::Buffer;

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// `main` returned or the guest called `exit`: its exit code.
    Exited(i32),
    /// The guest trapped: wasmtime's trap code and the guest's backtrace.
    Trapped(GuestTrap),
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
    _ticker: EpochTicker,
}

impl GuestHost {
    /// A host whose guests run under `policy`, on an engine built with `options`. Being the
    /// convenience layer, it opts into both process-wide parts an embedder chooses itself:
    /// the SIGBUS handler ([`crate::sigbus::install`]) and an [`EpochTicker`] for deadlines.
    pub fn new(policy: Policy, options: EngineOptions) -> Result<Self, HostError> {
        crate::sigbus::install();
        let engine = engine::new_engine()?;
        let mut linker = Linker::new(&engine);
        let linked = wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| crate::add_to_linker(&mut linker));
        #[cfg(feature = "bench-support")]
        let linked = linked.and_then(|()| crate::add_bench_support_to_linker(&mut linker));
        linked.map_err(|e| HostError::Linker(e.into()))?;
        let ticker = EpochTicker::start(&engine).map_err(HostError::Ticker)?;
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
    pub fn load(&self, bytes: &[u8]) -> Result<Component, HostError> {
        engine::load_component(&self.engine, bytes, &self.options)
            .map_err(|e| HostError::Compile(e.into()))
    }

    /// A fresh store for one guest with the given WASI context, its linear memories limited
    /// and its deadline (if the policy has one) counting from now.
    pub fn store(&self, wasi: &mut WasiCtxBuilder) -> Store<GuestState> {
        let mut store = Store::new(
            &self.engine,
            GuestState::new(wasi.build(), Arc::clone(&self.policy)),
        );
        store.limiter(|state| state.resmem.limiter());
        crate::arm_deadline(&mut store, self.policy.deadline());
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
    ) -> Result<RunOutcome, HostError> {
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
                return Err(HostError::Instantiate {
                    expected: "wasi:cli command",
                    source: e.into(),
                });
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
                None => RunOutcome::Trapped(GuestTrap::new(&e)),
            },
        };
        // Dropping the store drops every memory and view the guest held, which writes headers a
        // peer may have truncated.
        let ((), _) = crate::sigbus::shielded(|| drop(store));
        Ok(outcome)
    }

    /// Instantiates a filter plugin; it lives (with its memories) as long as the `Plugin`.
    pub fn plugin(
        &self,
        component: &Component,
        wasi: &mut WasiCtxBuilder,
    ) -> Result<Plugin, HostError> {
        let mut store = self.store(wasi);
        let window = Arc::clone(store.data().window());
        let bindings = window
            .bind(|| plugin::Plugin::instantiate(&mut store, component, &self.linker))
            .map_err(|e| match self.policy.deadline() {
                Some(limit) if deadline::interrupted(&e) => HostError::DeadlineExceeded(limit),
                _ => HostError::Instantiate {
                    expected: "plugin exporting resmem:memory/filter",
                    source: e.into(),
                },
            })?;
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
    /// is a trap ([`HostError::Trapped`]) or the deadline ([`HostError::DeadlineExceeded`]):
    /// the plugin is unusable afterwards, and dropping it releases its memories.
    /// `Ok(Err(message))` is the plugin's own refusal.
    pub fn process(&mut self, input: &Buffer) -> Result<Result<Option<Buffer>, String>, HostError> {
        crate::arm_deadline(&mut self.store, self.deadline);
        self.bindings
            .resmem_memory_filter()
            .call_process(&mut *self.store, input)
            .map_err(|e| match self.deadline {
                Some(limit) if deadline::interrupted(&e) => HostError::DeadlineExceeded(limit),
                _ => HostError::Trapped(GuestTrap::new(&e)),
            })
    }

    /// The plugin's store data: its memories, views and usage.
    pub fn state(&self) -> &GuestState {
        self.store.data()
    }
}
