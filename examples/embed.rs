//! An embedder of `resmem-host`: its own engine, linker and store data, WASI, resmem and one
//! host import of its own on one linker, the filter plugin instantiated with wasmtime's own
//! bindings, and native buffers handed to it by offset.
//!
//! `cargo run --release --example embed`

use std::alloc::Layout;

use anyhow::{Context, Result, anyhow};
use resmem::{AccessMode, Config, Memory, PointerOffset, SegmentId, View};
use resmem_host::bindings::plugin::{Plugin, exports::resmem::memory::filter::Buffer};
use resmem_host::{Policy, ResmemCtx, ResmemCtxView, ResmemView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The embedder's store data: WASI, resmem, the shared table, and its own state.
struct App {
    wasi: WasiCtx,
    resmem: ResmemCtx,
    table: ResourceTable,
    logged: Vec<String>,
}

impl WasiView for App {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResmemView for App {
    fn resmem(&mut self) -> ResmemCtxView<'_> {
        ResmemCtxView {
            ctx: &mut self.resmem,
            table: &mut self.table,
        }
    }
}

fn main() -> Result<()> {
    let mut config = wasmtime::Config::new();
    resmem_host::configure(&mut config);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::<App>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    resmem_host::add_to_linker(&mut linker)?;
    linker
        .instance("example:app/log")?
        .func_wrap("log", |mut store, (line,): (String,)| {
            store.data_mut().logged.push(line);
            Ok(())
        })?;

    let namespace = format!("embed{}_", std::process::id());
    let app = App {
        wasi: WasiCtx::builder().inherit_stderr().build(),
        resmem: ResmemCtx::new(Policy::builder().namespace(&namespace).build()),
        table: ResourceTable::new(),
        logged: Vec::new(),
    };
    let mut store = Store::new(&engine, app);
    store.limiter(|app| app.resmem.limiter());
    let component = Component::from_file(&engine, resmem_guests::FILTER)?;
    // The window attaches to the linear memories the instance creates inside `bind`.
    let window = store.data().resmem.window().clone();
    let plugin = window.bind(|| Plugin::instantiate(&mut store, &component, &linker))?;

    // A native memory in the plugin's namespace: the plugin reads it through a view.
    let config = Config::default().prefix(&namespace);
    let frames = Memory::builder("frames").config(&config).create()?;
    for round in 0..3u8 {
        let mut chunk = frames.allocate_chunk(Layout::from_size_align(4096, 8)?)?;
        chunk.as_mut_slice().fill(round);
        let input = Buffer {
            memory: "frames".into(),
            offset: chunk.offset().into(),
            len: 4096,
        };
        let output = plugin
            .resmem_memory_filter()
            .call_process(&mut store, &input)?
            .map_err(|e| anyhow!("the plugin refused: {e}"))?
            .context("the plugin returned no buffer")?;
        // The output lives in the plugin's own memory: read it in place with a native view.
        let view = View::builder(&output.memory)
            .config(&config)
            .open(AccessMode::Read)?;
        let at = PointerOffset::new(SegmentId::new(output.offset.segment), output.offset.offset);
        let registration = view.register(at)?;
        let bytes = registration.as_slice(output.len as usize)?;
        assert!(
            bytes.iter().all(|&b| b == round ^ 0x5A),
            "round {round}: wrong bytes"
        );
        println!(
            "round {round}: 4096 bytes in place at {at} in '{}', each {round} ^ 0x5A",
            output.memory
        );
    }
    println!("usage: {:?}", store.data().resmem.usage());
    // Dropping the store releases the plugin's memory (its OS objects go with it).
    drop((store, frames));
    println!("left in the namespace: {:?}", resmem::list(&config)?);
    Ok(())
}
