//! Guests on the channel: a guest publisher to a native subscriber and a native publisher to
//! a guest subscriber, 64 B and 1 MiB, by copy (`write` / `read`) and in place (`map`), in one
//! run with the native channel bench's anchor rows (crates.io `iceoryx2` 0.10 and
//! `resmem::channel`, native to native).
//!
//! `cargo bench -p resmem-host --features bench-support --bench guest_channel` (set `RESMEM_BENCH_SCALE=0.3` for a
//! quick pass; `RESMEM_BENCH_ONLY=64`, `=MiB` or `=thread` runs only the 64 B rows, the 1 MiB
//! rows or the one-thread table).
//!
//! Every row is a ping-pong between two processes, this bench re-executed with
//! `--channel-child` as the peer, pinned to different CPUs when the machine has two, with the
//! native channel bench's code and settings (its harness and both its sides are compiled in
//! from host/segments/benches/channel/): messages of the given size, every byte written by the
//! sender and read by the receiver, `min(iters, 1000)` untimed round trips, then samples of
//! `iters` round trips each, two rounds of every row interleaved, medians of the samples.
//!
//! - `RTT/2` rows: the native bench's figure, a sample's round-trip time / 2.
//! - Guest rows: the measuring process is the native resmem side (publisher of `a2b`,
//!   spinning subscriber of `b2a`); the peer runs the bench guest's echo (`guest/bench`,
//!   `bench echo`): it receives from `a2b` (`read` or `map`, spinning on `receive` or asleep
//!   in `wasi:io/poll` through `receive_timeout`), releases, and answers on `b2a` (`write` or
//!   `map`). Both sides stamp each message with the wall clock, so every round trip splits
//!   into its native → guest and guest → native legs (see `guest_side.rs`); a row's figure
//!   is the median over samples of the sample's mean leg, which is comparable with RTT/2 (the
//!   two legs' means add up to the round trip). The same stamped echo in native code, on
//!   resmem and on iceoryx2, gives the calibration rows.
//!
//! Goal (issue 12): guest → native 64 B latency <= iceoryx2's native 64 B latency + 1 µs,
//! checked on the medians (against iceoryx2's RTT/2) and on single messages (the legs' p50
//! against iceoryx2's stamped leg p50): on a busy machine a preempted sample's mean is worth
//! little, the p50 of single messages much more.

#[path = "../../../segments/benches/channel/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../../../segments/benches/channel/iceoryx2_side.rs"]
#[allow(dead_code)]
mod iceoryx2_side;
#[path = "../../../segments/benches/channel/resmem_side.rs"]
#[allow(dead_code)]
mod resmem_side;

mod guest_side;

use guest_side::Legs;
use harness::{CHILD_ARG, Job, cpu_for, median, pin_to, scaled};

const ROUNDS: usize = 2;
/// Goal: guest → native 64 B at most this much over iceoryx2's native 64 B latency.
const GOAL_NS: f64 = 1000.0;

fn show(ns: f64) -> String {
    if ns.is_nan() {
        "n/a".to_string()
    } else if ns >= 10_000.0 {
        format!("{:.0} µs", ns / 1000.0)
    } else if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The median and the 99th percentile of single values.
fn percentiles(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.99)))
}

/// `min..max` of the samples, for the progress lines (how noisy the figure is).
fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{}..{}", show(min), show(max))
}

struct Row {
    name: String,
    method: &'static str,
    median: f64,
    /// Median and p99 of single messages (stamped rows only).
    each: Option<(f64, f64)>,
    /// iceoryx2 native → native busy-poll, same size.
    anchor: f64,
    /// Goal rows: the largest median that meets it.
    limit: Option<f64>,
    /// Goal rows, on single messages: iceoryx2's stamped p50 and the largest p50 that meets
    /// the goal.
    limit_p50: Option<(f64, f64)>,
}

impl Row {
    fn new(name: String, method: &'static str, samples: &[f64], each: &[f64]) -> Row {
        let median = median(samples);
        eprintln!("  {name:<60} {:>9}  ({})", show(median), spread(samples));
        Row {
            name,
            method,
            median,
            each: percentiles(each),
            anchor: f64::NAN,
            limit: None,
            limit_p50: None,
        }
    }
}

/// How the guest reads and writes, and how it waits.
#[derive(Clone, Copy)]
struct Mode {
    map: bool,
    poll: bool,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode {
            map: false,
            poll: false,
        },
        Mode {
            map: true,
            poll: false,
        },
        Mode {
            map: false,
            poll: true,
        },
        Mode {
            map: true,
            poll: true,
        },
    ];

    fn workload(self) -> String {
        format!(
            "echo-{}-{}",
            if self.map { "map" } else { "copy" },
            if self.poll { "poll" } else { "spin" }
        )
    }

    fn wait(self) -> &'static str {
        if self.poll {
            "guest waits in poll"
        } else {
            "guest spins"
        }
    }

    /// How the guest sends (`write`/`map`) and receives (`read`/`map`).
    fn send_access(self) -> &'static str {
        if self.map { "map" } else { "write" }
    }

    fn receive_access(self) -> &'static str {
        if self.map { "map" } else { "read" }
    }
}

struct Size {
    label: &'static str,
    bytes: usize,
    /// Round trips per sample, busy-polling and with the guest in poll.
    iters: u64,
    poll_iters: u64,
    /// Samples of each row (over all rounds) before scaling.
    samples: usize,
}

const SIZES: [Size; 2] = [
    Size {
        label: "64 B",
        bytes: 64,
        iters: 20_000,
        poll_iters: 2_000,
        samples: 11,
    },
    Size {
        label: "1 MiB",
        bytes: 1 << 20,
        iters: 200,
        poll_iters: 200,
        samples: 9,
    },
];

/// Every figure of one size, gathered over the rounds.
#[derive(Default)]
struct Gathered {
    iceoryx2: Vec<f64>,
    resmem: Vec<f64>,
    iceoryx2_blocking: Vec<f64>,
    resmem_blocking: Vec<f64>,
    calibration: Legs,
    calibration_iceoryx2: Legs,
    guest: [Legs; 4],
}

fn measure_size(size: &Size, notes: &mut Vec<String>) -> Vec<Row> {
    let per_round = scaled(size.samples).div_ceil(ROUNDS).max(2);
    let (bytes, iters) = (size.bytes, size.iters);
    let small = bytes == 64;
    let mut got = Gathered::default();
    for round in 0..ROUNDS {
        eprintln!("  {} round {}/{ROUNDS}", size.label, round + 1);
        got.iceoryx2
            .extend(iceoryx2_side::pingpong(false, bytes, iters, per_round));
        got.resmem
            .extend(resmem_side::pingpong(false, 0, bytes, iters, per_round));
        if small {
            // What a sleeping native subscriber costs, next to the guest asleep in poll.
            got.iceoryx2_blocking
                .extend(iceoryx2_side::pingpong(true, bytes, 2_000, per_round));
            got.resmem_blocking
                .extend(resmem_side::pingpong(true, 0, bytes, 2_000, per_round));
        }
        let job = Job::new(guest_side::NATIVE_ICEORYX2, "echo", false, bytes, 0);
        got.calibration_iceoryx2
            .extend(guest_side::pingpong(&job, bytes, iters, per_round));
        let job = Job::new(guest_side::NATIVE, "echo", false, bytes, 0);
        got.calibration
            .extend(guest_side::pingpong(&job, bytes, iters, per_round));
        for (mode, legs) in Mode::ALL.iter().zip(&mut got.guest) {
            let job = Job::new(guest_side::GUEST, &mode.workload(), false, bytes, 0);
            let iters = if mode.poll { size.poll_iters } else { iters };
            legs.extend(guest_side::pingpong(&job, bytes, iters, per_round));
        }
    }

    let label = size.label;
    let mut rows = vec![
        Row::new(
            format!("{label} iceoryx2 native → native (anchor)"),
            "RTT/2",
            &got.iceoryx2,
            &[],
        ),
        Row::new(
            format!("{label} resmem native → native"),
            "RTT/2",
            &got.resmem,
            &[],
        ),
    ];
    if small {
        rows.push(Row::new(
            format!("{label} iceoryx2 native → native, blocking waits"),
            "RTT/2",
            &got.iceoryx2_blocking,
            &[],
        ));
        rows.push(Row::new(
            format!("{label} resmem native → native, blocking waits"),
            "RTT/2",
            &got.resmem_blocking,
            &[],
        ));
    }
    let ice = &got.calibration_iceoryx2;
    let anchor_each = rows_push_leg(
        &mut rows,
        format!("{label} iceoryx2 native → native, stamped echo, one leg"),
        ice,
    );
    let cal = &got.calibration;
    rows.push(Row::new(
        format!("{label} resmem native → native, stamped echo"),
        "RTT/2",
        &cal.half,
        &[],
    ));
    rows_push_leg(
        &mut rows,
        format!("{label} resmem native → native, stamped echo, one leg"),
        cal,
    );
    for (name, legs, plain) in [
        ("iceoryx2", ice, &got.iceoryx2),
        ("resmem", cal, &got.resmem),
    ] {
        notes.push(format!(
            "{label} calibration, {name}: the stamped echo's legs {} (out) and {} (back), its \
             RTT/2 {}, the plain RTT/2 {}: stamping adds one clock read per message on each side",
            show(median(&legs.out)),
            show(median(&legs.back)),
            show(median(&legs.half)),
            show(median(plain))
        ));
    }
    for (mode, legs) in Mode::ALL.iter().zip(&got.guest) {
        let mut to_native = Row::new(
            format!(
                "{label} guest → native, {}, {}",
                mode.send_access(),
                mode.wait()
            ),
            "stamped",
            &legs.back,
            &legs.back_each,
        );
        if small {
            to_native.limit = Some(median(&got.iceoryx2) + GOAL_NS);
            to_native.limit_p50 = anchor_each.map(|p50| (p50, p50 + GOAL_NS));
        }
        rows.push(to_native);
        rows.push(Row::new(
            format!(
                "{label} native → guest, {}, {}",
                mode.receive_access(),
                mode.wait()
            ),
            "stamped",
            &legs.out,
            &legs.out_each,
        ));
        rows.push(Row::new(
            format!(
                "{label} guest echo ({} + {}), {}",
                mode.receive_access(),
                mode.send_access(),
                mode.wait()
            ),
            "RTT/2",
            &legs.half,
            &[],
        ));
    }
    let anchor = median(&got.iceoryx2);
    for row in &mut rows {
        row.anchor = anchor;
    }
    rows
}

/// Pushes the out leg of a native stamped echo; returns its single messages' p50.
fn rows_push_leg(rows: &mut Vec<Row>, name: String, legs: &Legs) -> Option<f64> {
    let row = Row::new(name, "stamped", &legs.out, &legs.out_each);
    let p50 = row.each.map(|(p50, _)| p50);
    rows.push(row);
    p50
}

/// The guest's channel calls in one thread, against the same cycle natively: where a guest
/// message's time goes. Rows: name, ns, ratio base (the iceoryx2 cycle) where one applies.
fn measure_local(run: u32) -> Vec<(String, f64, Option<f64>)> {
    let per_round = scaled(31).div_ceil(ROUNDS).max(2);
    let host = guest_side::host(run);
    let names = [
        "noop",
        "wall-clock",
        "chan-receive-empty",
        "chan-cycle-64",
        "chan-cycle-map-64",
    ];
    let (mut iceoryx2, mut resmem) = (Vec::new(), Vec::new());
    let mut guest: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        iceoryx2.extend(iceoryx2_side::in_process(per_round, 20_000));
        resmem.extend(resmem_side::in_process(per_round, 20_000));
        let results = guest_side::local(&host, per_round, &names);
        for (i, name) in names.iter().enumerate() {
            let ns = results
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("the guest did not report {name}"))
                .1;
            guest[i].push(ns);
        }
    }
    let cycle = median(&iceoryx2);
    let mut rows = vec![
        (
            "iceoryx2 native: loan+write+send+receive+read+release".to_string(),
            cycle,
            Some(cycle),
        ),
        (
            "resmem native: loan+write+send+receive+read+release".to_string(),
            median(&resmem),
            Some(cycle),
        ),
    ];
    let labels = [
        ("guest: no-op host call (floor of every call)", None),
        ("guest: wall-clock now (the echo's stamp)", None),
        ("guest: receive with nothing queued (one spin turn)", None),
        (
            "guest: loan+write+send+receive+read+release (6 calls)",
            Some(cycle),
        ),
        (
            "guest: loan+map+send+receive+map+release (6 calls)",
            Some(cycle),
        ),
    ];
    for ((label, base), values) in labels.into_iter().zip(&guest) {
        rows.push((label.to_string(), median(values), base));
    }
    for (name, ns, _) in &rows {
        eprintln!("  {name:<60} {:>9}", show(*ns));
    }
    rows
}

fn print_table(rows: &[Row]) {
    println!(
        "\n| workload | method | iceoryx2 anchor | median | 1 msg: p50 | p99 | ratio | goal | met | \
         met on 1-msg p50 |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |");
    for r in rows {
        let (goal, met) = match r.limit {
            Some(limit) => (
                format!("<= {} ({} + 1 µs)", show(limit), show(r.anchor)),
                if r.median <= limit {
                    "PASS"
                } else {
                    "**MISS**"
                },
            ),
            None => ("-".to_string(), "-"),
        };
        let met_p50 = match (r.limit_p50, r.each) {
            (Some((anchor, limit)), Some((p50, _))) => format!(
                "{} (<= {} + 1 µs)",
                if p50 <= limit { "PASS" } else { "**MISS**" },
                show(anchor)
            ),
            _ => "-".to_string(),
        };
        let (p50, p99) = r
            .each
            .map_or(("-".to_string(), "-".to_string()), |(p50, p99)| {
                (show(p50), show(p99))
            });
        println!(
            "| {} | {} | {} | {} | {p50} | {p99} | {:.2} | {} | {} | {met_p50} |",
            r.name,
            r.method,
            show(r.anchor),
            show(r.median),
            r.median / r.anchor,
            goal,
            met
        );
    }
}

fn print_local(rows: &[(String, f64, Option<f64>)]) {
    println!("\n| 64 B in one thread (where a guest message's time goes) | median | ratio |");
    println!("| --- | ---: | ---: |");
    for (name, ns, base) in rows {
        let ratio = base.map_or("-".to_string(), |b| format!("{:.2}", ns / b));
        println!("| {name} | {} | {ratio} |", show(*ns));
    }
}

/// Removes whatever this run left in /dev/shm and the iceoryx2 root directory, and says what.
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
        guest_side::GUEST => guest_side::guest_child(&job),
        guest_side::NATIVE | guest_side::NATIVE_ICEORYX2 => guest_side::native_child(&job),
        other => panic!("unknown side {other}"),
    }
}

/// The 1-minute load average, as /proc/loadavg says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
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
    let run = std::process::id();
    let cleanup = Cleanup(run);
    // Compile the guest once (into the cache every peer process loads it from).
    guest_side::host(run)
        .load(resmem_guests::BENCH_WASM)
        .expect("compile the bench guest");
    let only = std::env::var("RESMEM_BENCH_ONLY").unwrap_or_default();
    eprintln!("guest channel bench (medians, min..max of the samples):");
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for size in &SIZES {
        if size.label.contains(only.as_str()) {
            rows.extend(measure_size(size, &mut notes));
        }
    }
    let local = "in one thread"
        .contains(only.as_str())
        .then(|| measure_local(run));
    let seconds = started.elapsed().as_secs_f64();
    drop(cleanup);
    print_table(&rows);
    if let Some(local) = &local {
        print_local(local);
    }
    println!(
        "\nratio = median / the iceoryx2 anchor of the same size (native → native, busy-poll, \
         RTT/2). stamped = the mean of one leg per sample (wall clock on both sides; the two \
         legs add up to the round trip), RTT/2 = round trip / 2 as in the native channel \
         bench; medians of the samples; 1 msg = percentiles of the single messages' legs \
         (a preempted message weighs in a sample's mean, not here); the native side always spins; {}; {seconds:.0} s",
        match (cpu_for(0), cpu_for(1)) {
            (Some(a), Some(b)) => format!("processes pinned to CPUs {a} and {b}"),
            _ => "not pinned (fewer than 2 CPUs allowed)".to_string(),
        }
    );
    for note in &notes {
        println!("{note}");
    }
    println!(
        "load average (1 min) before the run: {load_before}, after: {}; other work on these \
         CPUs inflates every figure",
        load_average()
    );
}
