//! The host's own errors: why a guest could not be compiled, instantiated or called, and how
//! a guest trapped.

use std::time::Duration;

use wasmtime::{Trap, WasmBacktrace};

/// An error of wasmtime or of the OS, kept with its whole chain of causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`crate::GuestHost`] or a [`crate::Plugin`] could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Wasmtime refused the engine configuration.
    #[error("creating the engine")]
    Engine(#[source] BoxError),
    /// The epoch thread of the deadlines could not be started.
    #[error("starting the epoch thread")]
    Ticker(#[source] std::io::Error),
    /// Wasmtime or WASI refused to add the host functions to the linker.
    #[error("setting up the linker")]
    Linker(#[source] BoxError),
    /// The component could not be compiled (or loaded from the cache).
    #[error("compiling the component")]
    Compile(#[source] BoxError),
    /// The component could not be instantiated: not of the expected world, or its
    /// initialisation failed.
    #[error("instantiating the component (is it a {expected}?)")]
    Instantiate {
        /// What the component should have been.
        expected: &'static str,
        /// What wasmtime said.
        #[source]
        source: BoxError,
    },
    /// The guest was still running at its deadline and was stopped.
    #[error("the guest ran longer than its deadline of {0:?}")]
    DeadlineExceeded(Duration),
    /// The guest trapped.
    #[error("the guest trapped")]
    Trapped(#[source] GuestTrap),
}

/// How a guest trapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GuestTrap {
    /// Wasmtime's trap code (`None` for a host error that ended the guest, e.g. a failed
    /// host call).
    pub code: Option<Trap>,
    /// The guest's stack when it trapped, innermost frame first (empty without frames).
    pub backtrace: String,
    /// The whole error chain, the backtrace included.
    pub message: String,
}

impl GuestTrap {
    pub(crate) fn new(error: &wasmtime::Error) -> Self {
        Self {
            code: error.downcast_ref::<Trap>().copied(),
            backtrace: error
                .downcast_ref::<WasmBacktrace>()
                .map(|b| b.to_string())
                .unwrap_or_default(),
            message: format!("{error:?}"),
        }
    }
}
