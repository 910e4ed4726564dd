//! `resmem run`: a command component with the host's stdio, args and exit code.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome};
use wasmtime_wasi::WasiCtxBuilder;

use super::{NamespaceArgs, parse_duration, parse_quotas, window_size};

#[derive(Args)]
pub struct RunArgs {
    /// The component (.wasm) to run.
    component: PathBuf,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Raise or lower a quota, NAME=VALUE (repeatable): shm-bytes, chunk-bytes, io-bytes,
    /// live-chunks, registrations, memories, views, open-timeout-ms, window-bytes, wasm-memory.
    #[arg(long = "quota", value_name = "NAME=VALUE")]
    quotas: Vec<String>,
    /// Size of the guest's zero-copy window (`map`) at the top of its 4 GiB address space, in
    /// whole 64 KiB pages; the heap may grow to the rest [default: 2GiB].
    #[arg(long, value_name = "SIZE")]
    window: Option<String>,
    /// Stop the guest if it still runs after this long (`30s`, `500ms`, `2m`; plain number =
    /// seconds): it is stopped, its memories are removed, and resmem exits with code 124.
    /// No limit by default.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Do not cache the compiled component.
    #[arg(long)]
    no_cache: bool,
    /// Arguments for the guest (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<i32> {
    let (namespace, config) = args.namespace.resolve();
    let mut quotas = parse_quotas(&args.quotas)?;
    if let Some(window) = &args.window {
        quotas.window_bytes = window_size(window)?;
    }
    let policy = Policy::builder()
        .quotas(quotas)
        .deadline(args.timeout)
        .config(config)
        .namespace(&namespace)
        .build();
    let options = if args.no_cache {
        EngineOptions::default()
    } else {
        EngineOptions::with_default_cache()
    };
    let host = GuestHost::new(policy, options)?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    let component = host.load(&bytes)?;
    let name = args
        .component
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut guest_args = vec![name];
    guest_args.extend(args.args);
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().args(&guest_args);
    let outcome = host.run_command(&component, &mut wasi)?;
    match &outcome {
        RunOutcome::Trapped(message) => eprintln!("resmem: guest trapped: {message}"),
        RunOutcome::DeadlineExceeded(limit) => eprintln!(
            "resmem: guest stopped: still running after its deadline of {limit:?} (--timeout); \
             its memories were removed"
        ),
        RunOutcome::Exited(_) => {}
    }
    Ok(outcome.exit_code())
}
