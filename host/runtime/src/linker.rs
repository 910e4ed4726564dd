//! What an embedder adds to its own wasmtime setup: the host functions on its linker, and the
//! engine settings the zero-copy window needs.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::bindings::guest::resmem::memory::{channel, resizable_memory, types};
use crate::ctx::{ResmemCtxView, ResmemView};
use crate::window::{self, WindowCreator};

/// Selects [`ResmemView::resmem`] as the host functions' data (wasmtime-wasi's `HasWasi`).
struct HasResmem;

impl HasData for HasResmem {
    type Data<'a> = ResmemCtxView<'a>;
}

/// Adds `resmem:memory/types`, `resizable-memory` and `channel` to `linker`. The channel's
/// pollables are wasmtime-wasi's, so the linker also needs WASI's `wasi:io/poll`
/// (`wasmtime_wasi::p2::add_to_linker_sync` adds it) before a guest that imports `channel` is
/// instantiated.
pub fn add_to_linker<T: ResmemView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    types::add_to_linker::<T, HasResmem>(linker, T::resmem)?;
    resizable_memory::add_to_linker::<T, HasResmem>(linker, T::resmem)?;
    channel::add_to_linker::<T, HasResmem>(linker, T::resmem)?;
    Ok(())
}

/// Adds the bridge benchmark's `bench-support` (one no-op host call) to `linker`.
#[cfg(feature = "bench-support")]
pub fn add_bench_support_to_linker<T: ResmemView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    crate::bindings::bench::resmem::memory::bench_support::add_to_linker::<T, HasResmem>(
        linker,
        T::resmem,
    )
}

/// Sets exactly what the zero-copy window (`memory.map`, `view.map`, loans and samples in
/// place) needs, and nothing else:
/// - linear memories from [`WindowCreator`]: each a full 4 GiB reservation (so no bounds
///   checks) that never moves, with the heap capped below the window;
/// - no copy-on-write memory images (wasmtime 48 panics combining them with a custom memory
///   creator), so data segments are copied in eagerly;
/// - signal-based traps, so a guest access to an unmapped window page is a trap of that guest.
///
/// The pooling allocator bypasses the creator: keep wasmtime's on-demand allocator. Without
/// this call (wasmtime's defaults) every host function works and `map` returns a clear error.
/// A peer that truncates a mapped segment raises SIGBUS: [`crate::sigbus::install`] contains
/// it.
pub fn configure(config: &mut wasmtime::Config) -> &mut wasmtime::Config {
    config
        .with_host_memory(Arc::new(WindowCreator))
        .memory_reservation(window::ADDRESS_SPACE)
        .memory_reservation_for_growth(0)
        .memory_may_move(false)
        .memory_init_cow(false)
        .signals_based_traps(true)
}
