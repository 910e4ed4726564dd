//! Guests in Rust, Python and JavaScript on the same contract, measured in one run: component
//! size, start-up (compile, load from the compiled-component cache, instantiate) and what one
//! `allocate`/`write`/`read` costs from inside each guest, with the Rust guest as the anchor.
//!
//! `cargo bench -p resmem-e2e --bench polyglot` (`RESMEM_BENCH_SCALE=0.2` for a quick pass,
//! `RESMEM_BENCH_ROUNDS` for more or fewer rounds than 3). The guests are `guest/bench`
//! (Rust, world `bench`), `guest/python/src/stats.py bench` (componentize-py) and
//! `guest/js/src/bench.js` (componentize-js), built by their build scripts into the target
//! directory. Each times itself with the WASI monotonic clock over the same loops (warm-up,
//! then 15 samples; median ns per operation) and prints `bench <name> <ns>`:
//!
//! - `pair-64`: `memory.allocate` + `memory.deallocate` of 64 B;
//! - `pair-64-batch`: the same in batches of 64 (`allocate-many`, `deallocate-many`), per chunk;
//! - `write-<n>` / `read-<n>`: `memory.write` / `memory.read` of `n` bytes into / out of a
//!   1 MiB chunk (a read includes the guest receiving the returned list).
//!
//! The guests run in rounds (Rust, Python, JavaScript, Rust, ...) so that a slow phase of a
//! busy machine hits every language alike; each figure is the median over the rounds.
//! Start-up: `compile` is Cranelift compiling the component (and serialising it into an empty
//! cache directory), `cached` loading the same bytes again from that cache, `instantiate` a
//! fresh store and instance (median of 5), as `resmem run` does before calling `run`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome};
use wasmtime::component::Component;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::OutputFile;

const SAMPLES: usize = 15;
const WORKLOADS: [&str; 8] = [
    "pair-64",
    "pair-64-batch",
    "write-64",
    "read-64",
    "write-4096",
    "read-4096",
    "write-1048576",
    "read-1048576",
];

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Guest {
    language: &'static str,
    /// Where the component comes from, for the table.
    what: &'static str,
    bytes: Vec<u8>,
    /// `args` for the bench run; `{scale}` and `{samples}` are filled in.
    args: Vec<&'static str>,
}

/// Runs `guest/<lang>/build.sh OUT_DIR [names]` and returns the component paths it prints.
fn build(lang: &str, names: &[&str]) -> Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("polyglot");
    let script = root.join("guest").join(lang).join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&out_dir)
        .args(names)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .collect())
}

struct Startup {
    compile_ms: f64,
    cached_ms: f64,
    instantiate_ms: f64,
}

fn startup(host_policy: &Policy, guest: &Guest, cache: &Path) -> Result<Startup> {
    let _ = std::fs::remove_dir_all(cache);
    let options = EngineOptions {
        cache_dir: Some(cache.to_path_buf()),
    };
    let host = GuestHost::new(host_policy.clone(), options)?;
    let started = Instant::now();
    host.load(&guest.bytes)?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let component = host.load(&guest.bytes)?;
    let cached_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut store = host.store(&mut WasiCtxBuilder::new());
        let started = Instant::now();
        let instance = host
            .instantiate_command(&mut store, &component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("instantiating the {} guest", guest.language))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        drop((instance, store));
    }
    let _ = std::fs::remove_dir_all(cache);
    Ok(Startup {
        compile_ms,
        cached_ms,
        instantiate_ms: median(&mut times),
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One bench run of `guest`: ns per operation by workload name.
fn run_guest(
    host: &GuestHost,
    component: &Component,
    guest: &Guest,
    scale: f64,
) -> Result<BTreeMap<String, f64>> {
    let args: Vec<String> = guest
        .args
        .iter()
        .map(|a| {
            a.replace("{scale}", &scale.to_string())
                .replace("{samples}", &SAMPLES.to_string())
        })
        .collect();
    let (reader, writer) = std::io::pipe()?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(OutputFile::new(File::from(OwnedFd::from(writer))))
        .inherit_stderr()
        .args(&args);
    let (outcome, lines) = std::thread::scope(|scope| -> Result<_> {
        // Ends at EOF, when the store (and with it the pipe's write end) is dropped.
        let collector = scope.spawn(|| BufReader::new(reader).lines().collect::<Vec<_>>());
        let outcome = host.run_command(component, &mut wasi);
        drop(wasi);
        let lines = collector
            .join()
            .map_err(|_| anyhow::anyhow!("the output reader panicked"))?;
        Ok((outcome?, lines))
    })?;
    ensure!(
        outcome == RunOutcome::Exited(0),
        "the {} bench guest ended with {outcome:?}",
        guest.language
    );
    let mut results = BTreeMap::new();
    let mut done = false;
    for line in lines {
        let line = line.context("reading the guest's output")?;
        if line == "done" {
            done = true;
        } else if let Some((name, ns)) = line
            .strip_prefix("bench ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(name, ns)| Some((name.to_owned(), ns.parse::<f64>().ok()?)))
        {
            results.insert(name, ns);
        } else {
            bail!("unexpected {} guest output: {line}", guest.language);
        }
    }
    ensure!(done, "the {} guest did not finish", guest.language);
    let leftovers = resmem::list(host.policy().config())?;
    ensure!(
        leftovers.is_empty(),
        "guest memories left behind: {leftovers:?}"
    );
    Ok(results)
}

fn ns(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} µs", value / 1e3)
    } else {
        format!("{value:.0} ns")
    }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let scale: f64 = env_or("RESMEM_BENCH_SCALE", 1.0);
    let rounds: usize = env_or("RESMEM_BENCH_ROUNDS", 3usize).max(1);
    ensure!(scale > 0.0, "RESMEM_BENCH_SCALE must be > 0");

    let python = build("python", &["stats"])?;
    let js = build("js", &["bench", "filter"])?;
    let read = |p: &Path| std::fs::read(p).with_context(|| p.display().to_string());
    let guests = [
        Guest {
            language: "Rust",
            what: "guest/bench",
            bytes: resmem_guests::BENCH_WASM.to_vec(),
            // Only the workloads compared here: the guest's others (64 MiB copies, the
            // window) need more than the default quotas.
            args: ["bench", "{scale}", "{samples}"]
                .into_iter()
                .chain(WORKLOADS)
                .collect(),
        },
        Guest {
            language: "Python",
            what: "guest/python (stats.py)",
            bytes: read(&python[0])?,
            args: vec!["stats", "bench", "{scale}", "{samples}"],
        },
        Guest {
            language: "JavaScript",
            what: "guest/js (bench.js)",
            bytes: read(&js[0])?,
            args: vec!["bench.js", "bench", "{scale}", "{samples}"],
        },
    ];
    let js_filter_size = std::fs::metadata(&js[1])?.len();

    let namespace = format!("rmpolybench{}_", std::process::id());
    let policy = Policy::builder().namespace(&namespace).build();
    let cache = std::env::temp_dir().join(format!("{namespace}cwasm"));

    println!("start-up (compile: Cranelift + serialise into an empty cache; cached: load again)");
    println!();
    println!("| guest | component | size | compile | cached | instantiate |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for guest in &guests {
        let s = startup(&policy, guest, &cache)?;
        println!(
            "| {} | {} | {:.1} MB | {:.0} ms | {:.1} ms | {:.2} ms |",
            guest.language,
            guest.what,
            guest.bytes.len() as f64 / 1e6,
            s.compile_ms,
            s.cached_ms,
            s.instantiate_ms
        );
    }
    println!(
        "(the JavaScript filter plugin, guest/js/src/filter.js: {:.1} MB)",
        js_filter_size as f64 / 1e6
    );

    let host = GuestHost::new(policy.clone(), EngineOptions::default())?;
    let components = guests
        .iter()
        .map(|g| host.load(&g.bytes).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let mut samples: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); guests.len()];
    for round in 0..rounds {
        for (i, guest) in guests.iter().enumerate() {
            let results = run_guest(&host, &components[i], guest, scale)
                .with_context(|| format!("round {round}, {}", guest.language))?;
            for (name, value) in results {
                samples[i].entry(name).or_default().push(value);
            }
        }
    }
    let medians: Vec<BTreeMap<String, f64>> = samples
        .into_iter()
        .map(|by_name| {
            by_name
                .into_iter()
                .map(|(name, mut values)| (name, median(&mut values)))
                .collect()
        })
        .collect();

    println!();
    println!(
        "per call, from inside the guest (median over {rounds} rounds of medians of {SAMPLES} \
         samples; ratio = language / Rust)"
    );
    println!();
    println!("| workload | Rust | Python | ratio | JavaScript | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for workload in WORKLOADS {
        let get = |i: usize| -> Result<f64> {
            medians[i]
                .get(workload)
                .copied()
                .with_context(|| format!("{} did not report {workload}", guests[i].language))
        };
        let (rust, py, js) = (get(0)?, get(1)?, get(2)?);
        println!(
            "| {workload} | {} | {} | {:.1}x | {} | {:.1}x |",
            ns(rust),
            ns(py),
            py / rust,
            ns(js),
            js / rust
        );
    }
    Ok(())
}
