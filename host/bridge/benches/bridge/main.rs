//! The bridge against raw zenoh, in one run: the same payloads between two processes over
//! loopback TCP (explicit endpoints, multicast off), once between two plain zenoh processes
//! (a publisher and a subscriber per direction) and once from a native resmem publisher in
//! namespace A through two bridges, one per process, to a native resmem subscriber in
//! namespace B. This bench re-executes itself with `--bridge-child` to become side B; the two
//! processes are pinned to different CPUs when two are allowed (`RESMEM_BENCH_PIN=0`: not
//! pinned), and every thread of a process (zenoh's included) inherits its CPU.
//!
//! Goals (issue 13): throughput >= 0.9 x zenoh's, one-way latency <= zenoh's + 20 µs.
//!
//! `cargo bench -p resmem-bridge --bench bridge` (`RESMEM_BENCH_SCALE=0.3` for a quick pass).

mod bridge_side;
mod harness;
mod workload;
mod zenoh_side;

use harness::{CHILD_ARG, Job, cpu_for, median, pin_to, scaled};

#[derive(Clone, Copy)]
enum Unit {
    /// Nanoseconds, lower is better.
    Time,
    /// Samples per second, higher is better.
    Rate,
    /// Bytes per second shown as GB/s (given: samples per second of this many bytes).
    Bytes(usize),
}

#[derive(Clone, Copy)]
enum Goal {
    /// The bridge's throughput at least this fraction of zenoh's.
    AtLeast(f64),
    /// The bridge's latency at most zenoh's plus this many ns.
    Plus(f64),
}

struct Row {
    name: &'static str,
    method: &'static str,
    unit: Unit,
    zenoh: f64,
    bridge: f64,
    goal: Goal,
}

impl Row {
    /// bridge / zenoh, of the figure as shown.
    fn ratio(&self) -> f64 {
        self.bridge / self.zenoh
    }

    fn met(&self) -> bool {
        match self.goal {
            Goal::AtLeast(min) => self.ratio() >= min,
            Goal::Plus(ns) => self.bridge <= self.zenoh + ns,
        }
    }

    fn goal(&self) -> String {
        match self.goal {
            Goal::AtLeast(min) => format!(">= {min:.1} x zenoh"),
            Goal::Plus(ns) => format!(
                "<= zenoh + {:.0} µs (bridge: +{:.1} µs)",
                ns / 1000.0,
                (self.bridge - self.zenoh) / 1000.0
            ),
        }
    }
}

fn show(unit: Unit, value: f64) -> String {
    if value.is_nan() {
        return "n/a".to_string();
    }
    match unit {
        Unit::Time => format!("{:.1} µs", value / 1000.0),
        Unit::Rate => format!("{:.0}k samples/s", value / 1000.0),
        Unit::Bytes(size) => format!("{:.2} GB/s", value * size as f64 / 1e9),
    }
}

/// `min..max` of the samples, for the progress lines (how noisy the figure is).
fn spread(unit: Unit, values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}..{}", show(unit, min), show(unit, max))
}

/// Runs the two sides alternately, `ROUNDS` times each (a fresh pair of processes each time),
/// so that a change in the machine's load during the run falls on both.
fn interleaved(
    mut zenoh: impl FnMut() -> Vec<f64>,
    mut bridge: impl FnMut() -> Vec<f64>,
) -> (Vec<f64>, Vec<f64>) {
    // `RESMEM_BENCH_SIDE=zenoh` or `bridge`: only that side (e.g. for a profiler).
    let side = std::env::var("RESMEM_BENCH_SIDE").unwrap_or_default();
    let (mut z, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        if side != bridge_side::SIDE {
            z.extend(zenoh());
        }
        if side != zenoh_side::SIDE {
            b.extend(bridge());
        }
    }
    (z, b)
}

const ROUNDS: usize = 2;

fn row(
    name: &'static str,
    method: &'static str,
    unit: Unit,
    goal: Goal,
    (zenoh, bridge): (Vec<f64>, Vec<f64>),
) -> Row {
    eprintln!(
        "  {name}: zenoh {}, bridge {}",
        spread(unit, &zenoh),
        spread(unit, &bridge)
    );
    if std::env::var_os("RESMEM_BENCH_ALL").is_some() {
        eprintln!("  zenoh {zenoh:.0?}\n  bridge {bridge:.0?}");
    }
    let row = Row {
        name,
        method,
        unit,
        zenoh: median(&zenoh),
        bridge: median(&bridge),
        goal,
    };
    eprintln!(
        "  {:<34} zenoh {:>18}  bridge {:>18}",
        row.name,
        show(unit, row.zenoh),
        show(unit, row.bridge)
    );
    row
}

fn measure(notes: &mut Vec<String>) -> Vec<Row> {
    // Samples per round (each round runs both sides once, each in a fresh pair of processes).
    let per_round = |n: usize| scaled(n).div_ceil(ROUNDS).max(2);
    let only = std::env::var("RESMEM_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    let mut rows = Vec::new();

    // name, payload bytes, messages per round, unit
    let streams = [
        ("4 KiB throughput", 4096, 50_000, Unit::Rate),
        ("1 MiB throughput", 1 << 20, 500, Unit::Bytes(1 << 20)),
    ];
    for (name, size, count, unit) in streams {
        if !wanted(name) {
            continue;
        }
        let s = per_round(9);
        let (mut zenoh_got, mut bridge_got) = (Vec::new(), Vec::new());
        let (mut sent, mut dropped) = (0u64, 0u64);
        let samples = interleaved(
            || {
                let stream = zenoh_side::stream(size, count, s);
                zenoh_got.extend(stream.delivered);
                stream.rates
            },
            || {
                let (stream, exported) = bridge_side::stream(size, count, s);
                bridge_got.extend(stream.delivered);
                if let Some(e) = exported {
                    sent += e.samples;
                    dropped += e.dropped;
                }
                stream.rates
            },
        );
        rows.push(row(
            name,
            "A sends as fast as it can, B reads every byte; (received - 1) / (last - first arrival)",
            unit,
            Goal::AtLeast(0.9),
            samples,
        ));
        notes.push(format!(
            "{name}: B received {:.0} % (zenoh) and {:.0} % (bridge) of the samples A sent; \
             side A's exporter forwarded {sent} and dropped {dropped} (probes before the importer \
             matched, or a link stalled past max-hold)",
            100.0 * median(&zenoh_got),
            100.0 * median(&bridge_got),
        ));
    }

    let name = "64 B one-way latency";
    if wanted(name) {
        let (iters, s) = (2_000, per_round(11));
        let samples = interleaved(
            || zenoh_side::pingpong(64, iters, s),
            || bridge_side::pingpong(64, iters, s),
        );
        rows.push(row(
            name,
            "ping-pong A -> B -> A, blocking receives; round trip / 2",
            Unit::Time,
            Goal::Plus(20_000.0),
            samples,
        ));
    }
    rows
}

fn print_table(rows: &[Row]) {
    println!("\n| workload | zenoh | bridge | bridge / zenoh | goal | result |");
    println!("| --- | ---: | ---: | ---: | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} | {} | {} |",
            r.name,
            show(r.unit, r.zenoh),
            show(r.unit, r.bridge),
            r.ratio(),
            r.goal(),
            if r.met() { "PASS" } else { "**MISS**" }
        );
    }
    println!();
    for r in rows {
        println!("{}: {}", r.name, r.method);
    }
    println!(
        "medians of {} rounds x 2 sides, interleaved; {}",
        ROUNDS,
        match (cpu_for(0), cpu_for(1)) {
            (Some(a), Some(b)) => format!("side A pinned to CPU {a}, side B to CPU {b}"),
            _ => "not pinned".to_string(),
        }
    );
}

fn child(args: &[String]) {
    let job = Job::parse(args);
    if let Some(cpu) = job.cpu {
        pin_to(cpu);
    }
    match job.side.as_str() {
        zenoh_side::SIDE => zenoh_side::child(&job),
        bridge_side::SIDE => bridge_side::child(&job),
        other => panic!("unknown side {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == CHILD_ARG) {
        child(&args[at + 1..]);
        return;
    }
    // Before zenoh starts any thread: they all inherit this CPU.
    if let Some(cpu) = cpu_for(0) {
        pin_to(cpu);
    }
    let load_before = load_average();
    eprintln!("bridge bench (medians so far):");
    let mut notes = Vec::new();
    let rows = measure(&mut notes);
    let leaks = harness::remove_shm(&bridge_side::shm_prefix(std::process::id()));
    if !leaks.is_empty() {
        eprintln!("cleanup: left in /dev/shm (removed): {leaks:?}");
    }
    print_table(&rows);
    for note in &notes {
        println!("{note}");
    }
    println!(
        "load average (1 min) before the run: {load_before}, after it: {}",
        load_average()
    );
}

/// The 1-minute load average, as /proc/loadavg says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
