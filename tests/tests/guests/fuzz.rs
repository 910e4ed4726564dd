//! The fuzz guest on both interfaces, checked against its model.

use super::*;

/// The channel part of a fuzz summary line: its counts (`sent`, `received`, ...) and its
/// outcomes (`ok` and WIT error names).
pub(crate) fn fuzz_channel_summary(
    line: &str,
) -> (
    std::collections::HashMap<String, u64>,
    std::collections::HashMap<String, u64>,
) {
    let (_, channel) = line
        .split_once("; channel: ")
        .unwrap_or_else(|| panic!("no channel part in {line:?}"));
    let (counts, outcomes) = channel
        .split_once("; ")
        .unwrap_or_else(|| panic!("no channel outcomes in {line:?}"));
    let counts = counts
        .split(", ")
        .map(|field| {
            let (number, name) = field
                .trim_start_matches("peak ")
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad count {field:?} in {line:?}"));
            let number = number
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {field:?}"));
            (name.to_owned(), number)
        })
        .collect();
    let outcomes = outcomes
        .split_whitespace()
        .map(|field| {
            let (name, number) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("bad outcome {field:?} in {line:?}"));
            let number = number
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {field:?}"));
            (name.to_owned(), number)
        })
        .collect();
    (counts, outcomes)
}

/// Several seeds of the fuzz guest, one after the other in one host: each checks every
/// channel function (and the memory interface) against its model, valid and hostile, and
/// exits 0. Together they sent, received, dropped (drop-oldest), missed (drop-newest), polled
/// and drained to `disconnected`, and were refused with every error a hostile channel call
/// can earn. Afterwards the namespace is empty. `RESMEM_FUZZ_SEEDS=<first>..<end>` and
/// `RESMEM_FUZZ_OPS=<n>` run other seeds.
#[test]
fn fuzz_guest_checks_every_channel_function_against_its_model() {
    let seeds = std::env::var("RESMEM_FUZZ_SEEDS").map_or(100..116, |range| {
        let (first, end) = range
            .split_once("..")
            .expect("RESMEM_FUZZ_SEEDS=<first>..<end>");
        first.parse().expect("a first seed")..end.parse().expect("an end seed")
    });
    let ops = std::env::var("RESMEM_FUZZ_OPS").unwrap_or_else(|_| "800".to_owned());
    let scope = Scope::new("gfuzz");
    let host = host(&scope);
    let fuzz = load(&host, resmem_guests::FUZZ_WASM);
    let mut counts = std::collections::HashMap::<String, u64>::new();
    let mut outcomes = std::collections::HashMap::<String, u64>::new();
    let started = Instant::now();
    let mut runs = 0;
    for seed in seeds {
        let seed = seed.to_string();
        let end = run(&host, &fuzz, &["fuzz", &seed, &ops]);
        assert_eq!(
            end.outcome,
            RunOutcome::Exited(0),
            "seed {seed}: {}",
            end.stderr
        );
        assert_eq!(end.stdout.len(), 1, "{end:?}");
        let line = &end.stdout[0];
        assert!(
            line.starts_with(&format!("seed {seed}: {ops} ops")),
            "{line}"
        );
        let (seed_counts, seed_outcomes) = fuzz_channel_summary(line);
        assert!(seed_counts["calls"] > 0, "{line}");
        assert!(seed_outcomes.get("ok").is_some_and(|&n| n > 0), "{line}");
        for (name, n) in seed_counts {
            *counts.entry(name).or_default() += n;
        }
        for (name, n) in seed_outcomes {
            *outcomes.entry(name).or_default() += n;
        }
        runs += 1;
        assert_empty(&scope);
    }
    println!(
        "fuzz guest: {runs} seeds x {ops} ops in {:?}; channel {counts:?}; {outcomes:?}",
        started.elapsed()
    );
    if runs >= 4 {
        for count in [
            "sent",
            "delivered",
            "received",
            "dropped",
            "missed",
            "disconnected",
            "polls",
        ] {
            assert!(counts[count] > 0, "no {count}: {counts:?}");
        }
        for outcome in [
            "ok",
            "invalid-name",
            "invalid-layout",
            "invalid-offset",
            "already-exists",
            "does-not-exist",
            "permission-denied",
            "quota-exceeded",
            "limit-reached",
            "disconnected",
        ] {
            assert!(
                outcomes.get(outcome).is_some_and(|&n| n > 0),
                "no channel call ended {outcome}: {outcomes:?}"
            );
        }
    }
}
