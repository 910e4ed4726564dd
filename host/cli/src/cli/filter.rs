//! `resmem filter`: hands buffers of a memory to a chain of filter plugins (world `plugin`)
//! and copies what the last one returns out of shared memory, natively.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use resmem::{AccessMode, Config, PointerOffset, SegmentId, View};
use resmem_host::bindings::types::PointerOffset as WitOffset;
use resmem_host::run::Buffer;
use resmem_host::{EngineOptions, GuestHost, Plugin, Policy};
use wasmtime_wasi::WasiCtxBuilder;

use super::peer::{parse_offset, with_bytes};
use super::{NamespaceArgs, parse_quotas};

#[derive(Args)]
pub struct FilterArgs {
    /// The memory the input buffers are in (without the namespace prefix).
    memory: String,
    /// Input buffers, OFFSET/LEN: OFFSET a packed u64 (as printed by guests) or
    /// SEGMENT:OFFSET, LEN in bytes.
    #[arg(required = true)]
    buffers: Vec<String>,
    /// A filter plugin component (.wasm); repeat to chain them: each plugin's output buffer is
    /// the next one's input. They share the namespace, so their output memories need distinct
    /// names.
    #[arg(long = "plugin", required = true, value_name = "WASM")]
    plugins: Vec<PathBuf>,
    /// Write the last plugin's output bytes, one buffer after the other, to this file (`-`:
    /// stdout). The per-buffer summary goes to stderr.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Raise or lower a quota of every plugin, NAME=VALUE (repeatable), as for `resmem run`.
    #[arg(long = "quota", value_name = "NAME=VALUE")]
    quotas: Vec<String>,
    /// Do not cache the compiled components.
    #[arg(long)]
    no_cache: bool,
}

fn parse_buffer(text: &str) -> Result<(PointerOffset, u64)> {
    let (offset, len) = text
        .split_once('/')
        .with_context(|| format!("a buffer is OFFSET/LEN, got {text:?}"))?;
    let len = len
        .parse()
        .with_context(|| format!("bad length in {text:?}"))?;
    Ok((parse_offset(offset)?, len))
}

fn to_wit(offset: PointerOffset) -> WitOffset {
    WitOffset {
        segment: offset.segment_id().value(),
        offset: offset.offset(),
    }
}

fn from_wit(offset: WitOffset) -> PointerOffset {
    PointerOffset::new(SegmentId::new(offset.segment), offset.offset)
}

pub fn filter(args: &FilterArgs) -> Result<i32> {
    let buffers = args
        .buffers
        .iter()
        .map(|b| parse_buffer(b))
        .collect::<Result<Vec<_>>>()?;
    let (namespace, config) = args.namespace.resolve();
    let policy = Policy::builder()
        .quotas(parse_quotas(&args.quotas)?)
        .config(config.clone())
        .namespace(&namespace)
        .build();
    let options = if args.no_cache {
        EngineOptions::default()
    } else {
        EngineOptions::with_default_cache()
    };
    let host = GuestHost::new(policy, options)?;
    let mut chain = Vec::with_capacity(args.plugins.len());
    for path in &args.plugins {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let component = host.load(&bytes)?;
        // Plugins may log to stderr; stdout may carry the output bytes.
        let plugin = host
            .plugin(&component, WasiCtxBuilder::new().inherit_stderr())
            .with_context(|| path.display().to_string())?;
        chain.push((path.display().to_string(), plugin));
    }
    let mut output: Box<dyn Write> = match &args.output {
        None => Box::new(std::io::sink()),
        Some(path) if path.as_os_str() == "-" => Box::new(std::io::stdout().lock()),
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
    };
    let mut views = OutputViews::new(config);
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    for (i, &(offset, len)) in buffers.iter().enumerate() {
        let input = Buffer {
            memory: args.memory.clone(),
            offset: to_wit(offset),
            len,
        };
        bytes_in += len;
        let Some(out) = run_chain(&mut chain, input, i)? else {
            eprintln!("buffer {i}: {len} B at {offset}: no output");
            continue;
        };
        // The last plugin keeps its output chunk until its next call: copy it out now.
        let view = views.get(&out.memory)?;
        with_bytes(view, from_wit(out.offset), out.len, |bytes| {
            output.write_all(bytes)
        })
        .and_then(|written| Ok(written?))
        .with_context(|| {
            format!(
                "copying the output of buffer {i} ({} B at {} in '{}')",
                out.len,
                from_wit(out.offset),
                out.memory
            )
        })?;
        bytes_out += out.len;
        eprintln!(
            "buffer {i}: {len} B at {offset} -> {} B at {} in '{}'",
            out.len,
            from_wit(out.offset),
            out.memory
        );
    }
    output.flush().context("writing the output")?;
    eprintln!(
        "filter: {} buffers through {} plugin(s), {bytes_in} B in, {bytes_out} B out",
        buffers.len(),
        chain.len()
    );
    Ok(0)
}

/// Hands `input` to every plugin in turn; `None` when one of them returns no output.
fn run_chain(
    chain: &mut [(String, Plugin)],
    mut input: Buffer,
    index: usize,
) -> Result<Option<Buffer>> {
    for (name, plugin) in chain.iter_mut() {
        match plugin
            .process(&input)
            .with_context(|| format!("{name} trapped on buffer {index}"))?
        {
            Ok(Some(out)) => input = out,
            Ok(None) => return Ok(None),
            Err(message) => bail!("{name} refused buffer {index}: {message}"),
        }
    }
    Ok(Some(input))
}

/// Native read-only views of the plugins' output memories, opened on first use.
struct OutputViews {
    config: Config,
    views: HashMap<String, View>,
}

impl OutputViews {
    fn new(config: Config) -> Self {
        Self {
            config,
            views: HashMap::new(),
        }
    }

    fn get(&mut self, memory: &str) -> Result<&View> {
        ensure!(!memory.is_empty(), "a plugin named no output memory");
        if !self.views.contains_key(memory) {
            let view = View::builder(memory)
                .config(&self.config)
                .open(AccessMode::Read)
                .with_context(|| format!("opening the plugin output memory '{memory}'"))?;
            self.views.insert(memory.to_owned(), view);
        }
        Ok(&self.views[memory])
    }
}
