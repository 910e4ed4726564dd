//! `resmem-host` as an embedder uses it: its own engine config, its own `Linker<T>` and store
//! data, `add_to_linker` next to WASI. Memory functions work on wasmtime's defaults; the
//! zero-copy window works after `configure` and `Window::bind`, and without either `map` is a
//! clear WIT error (`io`, "not attached"), never a wrong window. No deadline is armed and no
//! epoch interruption is on: nothing traps.

use resmem::Config;
use resmem_host::{Policy, ResmemCtx, ResmemCtxView, ResmemView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct Embedder {
    wasi: WasiCtx,
    resmem: ResmemCtx,
    table: ResourceTable,
}

impl WasiView for Embedder {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResmemView for Embedder {
    fn resmem(&mut self) -> ResmemCtxView<'_> {
        ResmemCtxView {
            ctx: &mut self.resmem,
            table: &mut self.table,
        }
    }
}

/// What a run of the window guest's `produce frames 65536 3` printed, and whether it succeeded.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn produce(namespace: &str, configured: bool, bound: bool) -> Ran {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    if configured {
        resmem_host::configure(&mut config);
    }
    let engine = Engine::new(&config).unwrap();
    let mut linker = Linker::<Embedder>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    resmem_host::add_to_linker(&mut linker).unwrap();
    let (stdout, stderr) = (
        MemoryOutputPipe::new(1 << 16),
        MemoryOutputPipe::new(1 << 16),
    );
    let wasi = WasiCtx::builder()
        .args(&["window", "produce", "frames", "65536", "3"])
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let policy = Policy::builder().namespace(namespace).build();
    let data = Embedder {
        wasi,
        resmem: ResmemCtx::new(policy),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&engine, data);
    store.limiter(|data| data.resmem.limiter());
    let component = Component::from_file(&engine, resmem_guests::WINDOW).unwrap();
    let window = store.data().resmem.window().clone();
    let command = if bound {
        window.bind(|| Command::instantiate(&mut store, &component, &linker))
    } else {
        Command::instantiate(&mut store, &component, &linker)
    }
    .unwrap();
    let ran = command.wasi_cli_run().call_run(&mut store);
    let ok = matches!(ran, Ok(Ok(())));
    assert!(
        ran.is_ok()
            || ran
                .as_ref()
                .is_err_and(|e| e.downcast_ref::<wasmtime_wasi::I32Exit>().is_some()),
        "the guest must not trap: {ran:?}"
    );
    drop(store);
    let text = |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
    Ran {
        ok,
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

fn leftovers(namespace: &str) -> Vec<String> {
    resmem::list(&Config::default().prefix(namespace)).unwrap()
}

#[test]
fn map_without_configure_is_a_clear_error_and_memories_still_work() {
    let namespace = format!("rmemb{}_default_", std::process::id());
    let ran = produce(&namespace, false, false);
    assert!(!ran.ok, "{}", ran.stdout);
    // The memory was created and the chunk allocated: only `map` failed.
    assert_eq!(ran.stdout.trim(), "error=io", "{}", ran.stderr);
    assert!(
        ran.stderr.contains("not attached") && ran.stderr.contains("resmem_host::configure"),
        "{}",
        ran.stderr
    );
    assert_eq!(leftovers(&namespace), Vec::<String>::new());
}

#[test]
fn map_of_an_instance_made_outside_bind_is_a_clear_error() {
    let namespace = format!("rmemb{}_unbound_", std::process::id());
    let ran = produce(&namespace, true, false);
    assert!(!ran.ok);
    assert_eq!(ran.stdout.trim(), "error=io", "{}", ran.stderr);
    assert!(ran.stderr.contains("Window::bind"), "{}", ran.stderr);
    assert_eq!(leftovers(&namespace), Vec::<String>::new());
}

#[test]
fn configure_and_bind_give_the_guest_its_window() {
    let namespace = format!("rmemb{}_window_", std::process::id());
    let ran = produce(&namespace, true, true);
    assert!(ran.ok, "{}{}", ran.stdout, ran.stderr);
    let chunk = ran.stdout.lines().next().unwrap_or_default();
    assert!(
        chunk.starts_with("chunk offset=") && chunk.contains(" len=65536 addr="),
        "{}",
        ran.stdout
    );
    // The guest address lies in the window, above the heap cap.
    let addr: u64 = chunk.rsplit("addr=").next().unwrap().parse().unwrap();
    assert!(
        addr >= resmem_host::Window::new(resmem_host::Quotas::default().window_bytes).heap_cap()
    );
    assert!(ran.stdout.contains("ready"));
    assert_eq!(leftovers(&namespace), Vec::<String>::new());
}
