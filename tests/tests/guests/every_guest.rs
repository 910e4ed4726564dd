//! One check per guest that it instantiates and runs as documented.

use super::errors::ERROR_CASES;
use super::fuzz::fuzz_channel_summary;
use super::*;

fn bench(host: &Arc<GuestHost>) {
    let end = run(
        host,
        &load(host, resmem_guests::BENCH_WASM),
        &[
            "bench",
            "0.0001",
            "1",
            "noop",
            "pair-64",
            "pair-64-batch",
            "wall-clock",
            "chan-receive-empty",
            "chan-cycle-64",
            "chan-cycle-map-64",
        ],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let names: Vec<&str> = end
        .stdout
        .iter()
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["bench", name, ns] if ns.parse::<f64>().is_ok_and(|ns| ns >= 0.0) => name,
                ["done"] => "done",
                _ => panic!("unexpected bench output {line:?}"),
            },
        )
        .collect();
    assert_eq!(
        names,
        [
            "noop",
            "wall-clock",
            "chan-receive-empty",
            "chan-cycle-64",
            "chan-cycle-map-64",
            "pair-64",
            "pair-64-batch",
            "done"
        ]
    );
}

fn consumer(host: &Arc<GuestHost>) {
    let end = run(
        host,
        &load(host, resmem_guests::CONSUMER_WASM),
        &["consumer"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(end.stderr.contains("usage: consumer"), "{}", end.stderr);
}

fn errors(host: &Arc<GuestHost>) {
    let end = run(host, &load(host, resmem_guests::ERRORS_WASM), &["errors"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.len(), ERROR_CASES.len(), "{end:?}");
}

/// A plugin's answer to an empty buffer.
fn process_empty(
    host: &Arc<GuestHost>,
    component: &[u8],
) -> anyhow::Result<Result<Option<Buffer>, String>> {
    let mut plugin = host
        .plugin(&load(host, component), &mut WasiCtxBuilder::new())
        .expect("instantiate the plugin");
    let empty = Buffer {
        memory: "nothing".to_owned(),
        offset: WitOffset {
            segment: 0,
            offset: 0,
        },
        len: 0,
    };
    plugin.process(&empty).map_err(anyhow::Error::from)
}

fn filter(host: &Arc<GuestHost>) {
    let none = process_empty(host, resmem_guests::FILTER_WASM).unwrap();
    assert!(matches!(none, Ok(None)), "{}", none.is_ok());
}

fn fuzz(host: &Arc<GuestHost>) {
    let end = run(
        host,
        &load(host, resmem_guests::FUZZ_WASM),
        &["fuzz", "1", "200"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.len(), 1, "{end:?}");
    assert!(end.stdout[0].starts_with("seed 1: 200 ops"), "{end:?}");
    // The channel part ran too (its teardown alone makes hundreds of calls).
    let (counts, outcomes) = fuzz_channel_summary(&end.stdout[0]);
    assert!(counts["calls"] > 0, "{end:?}");
    assert!(outcomes.get("ok").is_some_and(|&n| n > 0), "{end:?}");
    assert!(
        outcomes.get("quota-exceeded").is_some_and(|&n| n > 0),
        "{end:?}"
    );
}

fn producer(host: &Arc<GuestHost>) {
    let end = run(
        host,
        &load(host, resmem_guests::PRODUCER_WASM),
        &["producer", "smoke", "2", "128", "--no-wait"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.len(), 3, "{end:?}");
    assert_eq!(end.stdout[2], "ready");
}

/// Runs forever: only a host with a deadline can run it (hardening.rs tests it fully).
fn spin(host: &Arc<GuestHost>) {
    let deadline = Duration::from_millis(100);
    let policy = Policy::builder()
        .namespace(host.policy().namespace())
        .deadline(Some(deadline))
        .build();
    let bounded = Arc::new(GuestHost::new(policy, engine_options()).expect("a guest host"));
    let end = run(
        &bounded,
        &load(&bounded, resmem_guests::SPIN_WASM),
        &["spin", "loop"],
    );
    assert_eq!(
        end.outcome,
        RunOutcome::DeadlineExceeded(deadline),
        "{end:?}"
    );
    assert_eq!(end.stdout, ["holding spin"]);
}

/// Stalls on any non-empty input: only a host with a deadline can call it (hardening.rs).
fn stall(host: &Arc<GuestHost>) {
    assert!(matches!(
        process_empty(host, resmem_guests::STALL_WASM),
        Ok(Ok(None))
    ));
}

fn trap(host: &Arc<GuestHost>) {
    let end = run(host, &load(host, resmem_guests::TRAP_WASM), &["trap"]);
    assert!(matches!(end.outcome, RunOutcome::Trapped(_)), "{end:?}");
    assert_eq!(end.stdout, ["allocated trap"]);
}

fn channel(host: &Arc<GuestHost>) {
    let end = run(
        host,
        &load(host, resmem_guests::CHANNEL_WASM),
        &["channel", "sub", "nosuch", "1", "--open-ms", "0"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert_eq!(end.stdout.len(), 1, "{end:?}");
    assert!(
        end.stdout[0].starts_with("failed open error=does-not-exist"),
        "{end:?}"
    );
}

fn window(host: &Arc<GuestHost>) {
    let end = run(
        host,
        &load(host, resmem_guests::WINDOW_WASM),
        &["window", "reuse"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_eq!(end.stdout.len(), 1, "{end:?}");
}

/// `foreach_guest!` names every guest: a guest without a function in [`every_guest`] does not
/// compile, and each one must instantiate and behave as its doc comment says.
#[test]
fn every_guest_instantiates_and_runs() {
    let scope = Scope::new("gall");
    let host = host(&scope);
    let mut ran = Vec::new();
    macro_rules! check {
        ($name:ident) => {
            every_guest::$name(&host);
            assert_empty(&scope);
            ran.push(stringify!($name));
        };
    }
    resmem_guests::foreach_guest!(check);
    let all: Vec<&str> = resmem_guests::all().iter().map(|(name, _)| *name).collect();
    assert_eq!(ran, all);
    // The embedded bytes are the files the constants name.
    assert_eq!(
        std::fs::read(resmem_guests::PRODUCER).unwrap(),
        resmem_guests::PRODUCER_WASM
    );
}
