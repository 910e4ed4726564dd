//! `resmem ls`, `resmem inspect`, `resmem rm`, `resmem gc`: read-only looks at memories and
//! services, and clean-up (the services' part is in `services.rs`).

use anyhow::{Context, Result, bail};
use clap::Args;
use resmem::{AccessMode, Config, OpenError, StaleRemoval, View};

use super::{NamespaceArgs, services};

#[derive(Args)]
pub struct InspectArgs {
    /// The memory's or service's name (without the namespace prefix). A service is shown
    /// with its memory, which has the same name.
    name: String,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

#[derive(Args)]
pub struct RmArgs {
    /// The memory's name, or a service's (removed with its memory when its publisher is
    /// gone), without the namespace prefix.
    name: String,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Remove even if the owner is alive (its segments stay mapped in its process only).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct GcArgs {
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Only print what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// Opens a memory for reading, also when its owner is gone: these commands look at leftovers.
fn open(name: &str, config: &Config) -> Result<View, OpenError> {
    View::builder(name)
        .config(config)
        .allow_stale(true)
        .open(AccessMode::Read)
}

/// A memory's state as `ls` shows it: decided by the owner lock, not by the header.
fn state(name: &str, config: &Config, view: &Result<View, OpenError>) -> &'static str {
    match resmem::is_owner_alive(name, config) {
        Ok(false) => "stale",
        Ok(true) => match view {
            Ok(_) => "alive",
            Err(OpenError::InitializationNotYetFinalized) => "init",
            Err(_) => "broken",
        },
        Err(_) => "unknown",
    }
}

pub fn ls(args: &NamespaceArgs) -> Result<()> {
    let (namespace, config) = args.resolve();
    let names = resmem::list(&config).context("listing memories")?;
    println!(
        "{:<32} {:>8} {:>7} {:>9} {:>14} {:>8}",
        "NAME", "OWNER", "STATE", "SEGMENTS", "PAYLOAD BYTES", "CHUNKS"
    );
    for name in &names {
        let view = open(name, &config);
        let state = state(name, &config, &view);
        match view {
            Ok(view) => {
                let records = view.segment_records();
                // Validated sizes, but counts are as written by whoever could write the header:
                // add without overflow.
                let bytes = records.iter().fold(0_usize, |sum, (_, r)| {
                    sum.saturating_add(r.layout.payload_size)
                });
                let chunks = records
                    .iter()
                    .fold(0_u64, |sum, (_, r)| sum.saturating_add(r.chunks_in_use));
                println!(
                    "{:<32} {:>8} {:>7} {:>9} {:>14} {:>8}",
                    name,
                    view.header_info().owner_pid,
                    state,
                    records.len(),
                    bytes,
                    chunks
                );
            }
            Err(e) => println!("{name:<32} {:>8} {:>7}  ({e})", "-", state),
        }
    }
    if names.is_empty() {
        println!("(no memories under namespace '{namespace}')");
    }
    services::ls(&config)
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let (namespace, config) = args.namespace.resolve();
    let service = services::inspect(&args.name, &namespace, &config)?;
    let view = match open(&args.name, &config) {
        Ok(view) => view,
        Err(e) if service => {
            println!("memory      {}{} ({e})", namespace, args.name);
            return Ok(());
        }
        Err(e) => {
            Err(e).with_context(|| format!("opening '{}' in namespace '{namespace}'", args.name))?
        }
    };
    let info = view.header_info();
    println!("memory      {}{}", namespace, args.name);
    println!(
        "owner       pid {} ({})",
        info.owner_pid,
        if view.is_owner_alive() {
            "alive"
        } else {
            "gone: stale, remove with `resmem rm` or `resmem gc`"
        }
    );
    println!(
        "allocator   {:?}, strategy {:?}",
        info.allocator, info.strategy
    );
    match view.owner_current_segment() {
        Some(current) => println!("current     segment {current}"),
        None => println!("current     (header no longer readable)"),
    }
    println!(
        "\n{:>7} {:>9} {:>14} {:>12} {:>6} {:>9} {:>8}",
        "SEGMENT", "CREATION", "PAYLOAD BYTES", "BUCKET SIZE", "ALIGN", "BUCKETS", "IN USE"
    );
    for (id, record) in view.segment_records() {
        println!(
            "{:>7} {:>9} {:>14} {:>12} {:>6} {:>9} {:>8}",
            id.value(),
            record.sequence,
            record.layout.payload_size,
            record.layout.chunk_size,
            record.layout.chunk_align,
            record.layout.chunks,
            record.chunks_in_use
        );
    }
    Ok(())
}

pub fn rm(args: &RmArgs) -> Result<i32> {
    let (namespace, config) = args.namespace.resolve();
    let removed = if let Some(removed) = services::rm(&args.name, &config)? {
        removed
    } else if args.force {
        // SAFETY: the user forced the removal knowing that a live owner keeps only its own
        // mappings.
        unsafe { resmem::remove(&args.name, &config) }.context("removing")?
    } else {
        // The owner's lock decides, not the header, which a peer may have overwritten; it is
        // held while removing, so a live owner (or a concurrent creator) is never touched.
        match resmem::remove_stale(&args.name, &config).context("removing")? {
            StaleRemoval::Removed => true,
            StaleRemoval::NotFound => false,
            StaleRemoval::OwnerAlive => {
                let pid = open(&args.name, &config)
                    .map(|view| view.header_info().owner_pid.to_string())
                    .unwrap_or_else(|_| "unknown".into());
                bail!(
                    "'{}' has a live owner (pid {pid}); it removes the memory when it exits (or use --force)",
                    args.name
                );
            }
            other => bail!("removing '{}': {other:?}", args.name),
        }
    };
    if removed {
        println!("removed '{}' from namespace '{namespace}'", args.name);
        Ok(0)
    } else {
        eprintln!(
            "resmem: no memory '{}' in namespace '{namespace}'",
            args.name
        );
        Ok(1)
    }
}

/// Removes every stale memory of the namespace and names each; a memory whose owner holds its
/// lock is never touched (the lock is taken for the removal, see `resmem::remove_stale`).
pub fn gc(args: &GcArgs) -> Result<i32> {
    let (namespace, config) = args.namespace.resolve();
    // Services first: removing one removes its memory too.
    let services = services::gc(&namespace, &config, args.dry_run)?;
    let names = resmem::list(&config).context("listing memories")?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut count = 0;
    // (With --dry-run, the memories of the services named above are still there.)
    for name in names.iter().filter(|name| !services.contains(name)) {
        if resmem::is_owner_alive(name, &config).with_context(|| format!("checking '{name}'"))? {
            continue;
        }
        let pid = open(name, &config)
            .map(|view| view.header_info().owner_pid.to_string())
            .unwrap_or_else(|_| "unknown".into());
        let gone = args.dry_run
            || match resmem::remove_stale(name, &config)
                .with_context(|| format!("removing '{name}'"))?
            {
                StaleRemoval::Removed => true,
                // Its owner came back to life (a new owner took the name) or another gc won;
                // anything else is no removal either.
                _ => false,
            };
        if gone {
            println!("{verb} '{name}' (owner pid {pid}, gone)");
            count += 1;
        }
    }
    println!(
        "{verb} {count} stale {} from namespace '{namespace}'",
        if count == 1 { "memory" } else { "memories" }
    );
    Ok(0)
}
