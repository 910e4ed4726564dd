//! `resmem ls`, `resmem inspect`, `resmem rm`: read-only looks at memories, and clean-up.

use anyhow::{Context, Result, bail};
use clap::Args;
use resmem::{AccessMode, Config, OpenError, View};

use super::NamespaceArgs;

#[derive(Args)]
pub struct InspectArgs {
    /// The memory's name (without the namespace prefix).
    name: String,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

#[derive(Args)]
pub struct RmArgs {
    /// The memory's name (without the namespace prefix).
    name: String,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Remove even if the owner is alive (its segments stay mapped in its process only).
    #[arg(long)]
    force: bool,
}

fn open(name: &str, config: &Config) -> Result<View, OpenError> {
    View::builder(name).config(config).open(AccessMode::Read)
}

pub fn ls(args: &NamespaceArgs) -> Result<()> {
    let (namespace, config) = args.resolve();
    let names = resmem::list(&config).context("listing memories")?;
    println!(
        "{:<32} {:>8} {:>7} {:>9} {:>14} {:>8}",
        "NAME", "OWNER", "STATE", "SEGMENTS", "PAYLOAD BYTES", "CHUNKS"
    );
    for name in &names {
        match open(name, &config) {
            Ok(view) => {
                let records = view.segment_records();
                let bytes: usize = records.iter().map(|(_, r)| r.layout.payload_size).sum();
                let chunks: u64 = records.iter().map(|(_, r)| r.chunks_in_use).sum();
                println!(
                    "{:<32} {:>8} {:>7} {:>9} {:>14} {:>8}",
                    name,
                    view.header_info().owner_pid,
                    if view.is_owner_alive() {
                        "alive"
                    } else {
                        "stale"
                    },
                    records.len(),
                    bytes,
                    chunks
                );
            }
            Err(e) => println!("{name:<32} {:>8} {:>7}  ({e})", "-", "broken"),
        }
    }
    if names.is_empty() {
        println!("(no memories under namespace '{namespace}')");
    }
    Ok(())
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let (namespace, config) = args.namespace.resolve();
    let view = open(&args.name, &config)
        .with_context(|| format!("opening '{}' in namespace '{namespace}'", args.name))?;
    let info = view.header_info();
    println!("memory      {}{}", namespace, args.name);
    println!(
        "owner       pid {} ({})",
        info.owner_pid,
        if view.is_owner_alive() {
            "alive"
        } else {
            "gone: stale, remove with `resmem rm`"
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
    // The owner's lock decides, not the header, which a peer may have overwritten.
    if !args.force && resmem::is_owner_alive(&args.name, &config)? {
        let pid = open(&args.name, &config)
            .map(|view| view.header_info().owner_pid.to_string())
            .unwrap_or_else(|_| "unknown".into());
        bail!(
            "'{}' has a live owner (pid {pid}); it removes the memory when it exits (or use --force)",
            args.name
        );
    }
    // SAFETY: the owner is gone (its lock is free) or the user forced the removal knowing that
    // the live owner keeps only its own mappings.
    let removed = unsafe { resmem::remove(&args.name, &config) }.context("removing")?;
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
