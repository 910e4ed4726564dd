//! `resmem::channel` against crates.io `iceoryx2` 0.10 publish-subscribe, in one run: two
//! processes (this bench re-executes itself with `--channel-child` to become the peer), pinned
//! to different CPUs when the machine has two. Prints each median, the ratio resmem / iceoryx2
//! (lower is better; for throughput the ratio of the time per sample) and the goal.
//!
//! `cargo bench -p resmem --bench channel` (set `RESMEM_BENCH_SCALE=0.3` for a quick pass).

mod harness;
mod iceoryx2_side;
mod resmem_side;

use harness::{CHILD_ARG, Job, cache_line_floor, cpu_for, median, pin_to, scaled, wake_floor};

/// How a figure is shown and which direction is better.
#[derive(Clone, Copy)]
enum Unit {
    /// Nanoseconds, lower is better.
    Time,
    /// Samples per second, higher is better.
    Rate,
    /// Bytes per second shown as GB/s (given: samples per second of this many bytes).
    Bytes(usize),
    /// Percent CPU, lower is better, goal absolute.
    Percent,
}

enum Goal {
    /// Largest acceptable time ratio resmem / iceoryx2.
    Ratio(f64),
    /// Largest acceptable value for resmem, whatever iceoryx2 does.
    Below(f64),
}

struct Row {
    name: String,
    unit: Unit,
    anchor: f64,
    ours: f64,
    goal: Goal,
}

impl Row {
    /// resmem's time over iceoryx2's time (rates are inverted so that lower is better).
    fn ratio(&self) -> f64 {
        match self.unit {
            Unit::Time | Unit::Percent => self.ours / self.anchor,
            Unit::Rate | Unit::Bytes(_) => self.anchor / self.ours,
        }
    }

    fn met(&self) -> bool {
        match self.goal {
            Goal::Ratio(max) => self.ratio() <= max,
            Goal::Below(max) => self.ours < max,
        }
    }
}

fn show(unit: Unit, value: f64) -> String {
    if value.is_nan() {
        return "n/a".to_string();
    }
    match unit {
        Unit::Time if value >= 10_000.0 => format!("{:.0} µs", value / 1000.0),
        Unit::Time if value >= 1000.0 => format!("{:.2} µs", value / 1000.0),
        Unit::Time => format!("{value:.0} ns"),
        Unit::Rate => format!("{:.0}k samples/s", value / 1000.0),
        Unit::Bytes(size) => format!("{:.2} GB/s", value * size as f64 / 1e9),
        Unit::Percent => format!("{value:.4} %"),
    }
}

/// Runs the two sides alternately, `rounds` times each, so that a change in the machine's load
/// during the run falls on both; returns all of each side's samples.
fn interleaved(
    rounds: usize,
    mut anchor: impl FnMut() -> Vec<f64>,
    mut ours: impl FnMut() -> Vec<f64>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut o) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.extend(anchor());
        o.extend(ours());
    }
    (a, o)
}

/// `min..max` of the samples, for the progress lines (how noisy the figure is).
fn spread(unit: Unit, values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}..{}", show(unit, min), show(unit, max))
}

fn row(name: &str, unit: Unit, goal: Goal, (anchor, ours): (Vec<f64>, Vec<f64>)) -> Row {
    eprintln!(
        "  {name}: iceoryx2 {}, resmem {}",
        spread(unit, &anchor),
        spread(unit, &ours)
    );
    let row = Row {
        name: name.to_string(),
        unit,
        anchor: median(&anchor),
        ours: median(&ours),
        goal,
    };
    eprintln!(
        "  {:<46} iceoryx2 {:>18}  resmem {:>18}",
        row.name,
        show(unit, row.anchor),
        show(unit, row.ours)
    );
    row
}

const ROUNDS: usize = 2;

/// The rows, and notes to print below the table. `RESMEM_BENCH_ONLY=text` runs only the rows
/// whose name contains `text` (e.g. for a profiler).
fn measure(notes: &mut Vec<String>) -> Vec<Row> {
    // Samples per round (each round runs both sides once).
    let per_round = |n: usize| scaled(n).div_ceil(ROUNDS).max(2);
    let only = std::env::var("RESMEM_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    let mut rows = Vec::new();

    // name, blocking waits, resmem's spin before sleeping (µs), payload bytes, round trips per
    // sample, samples, goal
    let pingpongs = [
        (
            "64 B one-way latency, busy-poll",
            false,
            0,
            64,
            20_000,
            11,
            1.0,
        ),
        (
            "64 B one-way latency, blocking waits",
            true,
            0,
            64,
            2_000,
            9,
            0.5,
        ),
        (
            "64 B one-way, blocking waits, resmem spins 50 us first",
            true,
            50,
            64,
            2_000,
            9,
            0.5,
        ),
        (
            "4 KiB one-way, fill + read every byte",
            false,
            0,
            4096,
            10_000,
            11,
            1.0,
        ),
        (
            "1 MiB one-way, fill + read every byte",
            false,
            0,
            1 << 20,
            200,
            9,
            1.0,
        ),
    ];
    for (name, blocking, spin_us, size, iters, samples, goal) in pingpongs {
        if wanted(name) {
            let s = per_round(samples);
            let samples = interleaved(
                ROUNDS,
                || iceoryx2_side::pingpong(blocking, size, iters, s),
                || resmem_side::pingpong(blocking, spin_us, size, iters, s),
            );
            rows.push(row(name, Unit::Time, Goal::Ratio(goal), samples));
        }
    }

    // name, payload bytes, samples sent per round, unit
    let streams = [
        (
            "4 KiB streaming (fill, read, release)",
            4096,
            50_000,
            Unit::Rate,
        ),
        (
            "1 MiB streaming (fill, read, release)",
            1 << 20,
            500,
            Unit::Bytes(1 << 20),
        ),
    ];
    for (name, size, count, unit) in streams {
        if !wanted(name) {
            continue;
        }
        let s = per_round(9);
        let (mut anchor_got, mut ours_got) = (Vec::new(), Vec::new());
        let samples = interleaved(
            ROUNDS,
            || {
                let stream = iceoryx2_side::stream(size, count, s);
                anchor_got.extend(stream.delivered);
                stream.rates
            },
            || {
                let stream = resmem_side::stream(size, count, s);
                ours_got.extend(stream.delivered);
                stream.rates
            },
        );
        rows.push(row(name, unit, Goal::Ratio(1.0), samples));
        notes.push(format!(
            "{name}: delivered {:.0} % (iceoryx2) and {:.0} % (resmem) of the samples sent",
            100.0 * median(&anchor_got),
            100.0 * median(&ours_got)
        ));
    }

    let name = "loan+send+receive+release, 1 thread, 64 B";
    if wanted(name) {
        let s = per_round(31);
        let samples = interleaved(
            ROUNDS,
            || iceoryx2_side::in_process(s, 20_000),
            || resmem_side::in_process(s, 20_000),
        );
        rows.push(row(name, Unit::Time, Goal::Ratio(0.5), samples));
    }
    let name = "loan that grows the memory (2 KiB..256 KiB)";
    if wanted(name) {
        let s = per_round(15);
        let samples = interleaved(
            ROUNDS,
            || iceoryx2_side::growing_loan(s),
            || resmem_side::growing_loan(s),
        );
        rows.push(row(name, Unit::Time, Goal::Ratio(1.0), samples));
    }
    let name = "idle waiting subscriber, CPU / wall (3 x 2 s)";
    if wanted(name) {
        // Both idle subscribers wait at the same time: they use next to no CPU, and the run
        // is 6 s shorter.
        let anchor = iceoryx2_side::idle_start();
        let ours = resmem_side::idle_start(0);
        let spinning = resmem_side::idle_start(50);
        let anchor = anchor.finish();
        let samples = (anchor.clone(), ours.finish());
        rows.push(row(name, Unit::Percent, Goal::Below(1.0), samples));
        let spun = (anchor, spinning.finish());
        rows.push(row(
            "idle waiting subscriber, resmem spins 50 us per wait",
            Unit::Percent,
            Goal::Below(1.0),
            spun,
        ));
    }
    rows
}

/// Reference rows: what the hardware and the kernel allow, whatever the channel.
struct Floors {
    cache_line: f64,
    socket: f64,
    futex: f64,
}

fn print_table(rows: &[Row], floors: Option<&Floors>) {
    println!("\n| workload | iceoryx2 | resmem | ratio | goal | met |");
    println!("| --- | ---: | ---: | ---: | --- | --- |");
    for r in rows {
        let goal = match r.goal {
            Goal::Ratio(max) => format!("<= {max:.1}"),
            Goal::Below(max) => format!("< {max} %"),
        };
        println!(
            "| {} | {} | {} | {:.2} | {} | {} |",
            r.name,
            show(r.unit, r.anchor),
            show(r.unit, r.ours),
            r.ratio(),
            goal,
            if r.met() { "yes" } else { "**no**" }
        );
    }
    let floors = floors.map_or(Vec::new(), |floors| {
        vec![
            (
                "floor: 2 threads bouncing one cache line",
                floors.cache_line,
            ),
            (
                "reference: 2 threads waking each other, unix datagram",
                floors.socket,
            ),
            (
                "reference: 2 threads waking each other, futex",
                floors.futex,
            ),
        ]
    });
    for (name, value) in floors {
        let value = show(Unit::Time, value);
        println!("| {name}, one-way | {value} | {value} | - | reference | - |");
    }
    println!(
        "\nratio = resmem / iceoryx2 time (throughput rows: iceoryx2 rate / resmem rate); \
         medians of the samples; {}",
        match (cpu_for(0), cpu_for(1)) {
            (Some(a), Some(b)) => format!("processes pinned to CPUs {a} and {b}"),
            _ => "not pinned (fewer than 2 CPUs allowed)".to_string(),
        }
    );
}

/// Removes whatever this run left in /dev/shm and the iceoryx2 root directory, and says what.
/// iceoryx2 keeps one `global_mgmt` object per prefix by design (shared by all its nodes);
/// anything else left over would be a leak.
struct Cleanup(u32);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = self.0;
        for (side, prefix) in [
            ("iceoryx2", iceoryx2_side::shm_prefix(run)),
            ("resmem", resmem_side::shm_prefix(run)),
        ] {
            let leaks: Vec<String> = harness::remove_shm(&prefix)
                .into_iter()
                .filter(|name| !(side == "iceoryx2" && name.ends_with(".global_mgmt")))
                .collect();
            if !leaks.is_empty() {
                eprintln!("cleanup: {side} left {leaks:?} in /dev/shm (removed)");
            }
        }
        let _ = std::fs::remove_dir_all(iceoryx2_side::root_dir(run));
    }
}

fn child(args: &[String]) {
    let job = Job::parse(args);
    if let Some(cpu) = job.cpu {
        pin_to(cpu);
    }
    match job.side.as_str() {
        iceoryx2_side::SIDE => iceoryx2_side::child(&job),
        resmem_side::SIDE => resmem_side::child(&job),
        other => panic!("unknown side {other}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == CHILD_ARG) {
        child(&args[at + 1..]);
        return;
    }
    // Read the allowed CPUs before pinning this thread narrows them.
    if let Some(cpu) = cpu_for(0) {
        pin_to(cpu);
    }
    let load_before = load_average();
    let cleanup = Cleanup(std::process::id());
    eprintln!("channel bench (medians so far):");
    // The floors only with the whole table (not for a profiler's single row).
    let full = std::env::var_os("RESMEM_BENCH_ONLY").is_none();
    let cache_line = || median(&cache_line_floor(scaled(11), 200_000));
    let floor_before = if full { cache_line() } else { f64::NAN };
    let mut notes = Vec::new();
    let rows = measure(&mut notes);
    let floors = full.then(|| {
        let floor_after = cache_line();
        notes.push(format!(
            "cache-line floor before the rows {}, after them {}",
            show(Unit::Time, floor_before),
            show(Unit::Time, floor_after)
        ));
        Floors {
            cache_line: floor_before.min(floor_after),
            socket: median(&wake_floor(true, scaled(7), 2_000)),
            futex: median(&wake_floor(false, scaled(7), 2_000)),
        }
    });
    drop(cleanup);
    print_table(&rows, floors.as_ref());
    for note in &notes {
        println!("{note}");
    }
    println!(
        "load average (1 min) before the run: {load_before}; other work on these CPUs \
         inflates every figure (the floor row shows by how much)"
    );
}

/// The 1-minute load average, as /proc/loadavg says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
