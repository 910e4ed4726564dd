//! A trapping guest: the run is `Trapped` and its memory, segments and view are gone.

use super::*;

/// The trap guest allocates in two segments, keeps a view with a registered offset, then
/// executes `unreachable`: the run is `Trapped` with the reason, and the memory, its segments
/// and the view are gone.
#[test]
fn trapping_guest_leaves_nothing_behind() {
    let scope = Scope::new("gtrap");
    let host = host(&scope);
    let trap = load(&host, resmem_guests::TRAP_WASM);
    let mut guest = Running::start(&host, &trap, &["trap", "crash"]);
    assert_eq!(guest.line(), "allocated crash");
    let end = guest.finish();
    let RunOutcome::Trapped(trap) = &end.outcome else {
        panic!("a trap expected: {end:?}");
    };
    assert!(trap.message.contains("unreachable"), "{trap}");
    // The trap code and the guest's frames are kept, not only the text.
    assert_eq!(
        trap.code,
        Some(wasmtime::Trap::UnreachableCodeReached),
        "{trap}"
    );
    assert!(!trap.backtrace.is_empty(), "{trap:?}");
    assert_eq!(end.outcome.exit_code(), 101);
    assert!(end.stdout.is_empty(), "{end:?}");
    assert!(
        !resmem::exists("crash", &scope.config()).unwrap(),
        "the trapped guest's memory"
    );
    assert_empty(&scope);

    // The host is not poisoned: the next guest runs.
    let producer = load(&host, resmem_guests::PRODUCER_WASM);
    let end = run(
        &host,
        &producer,
        &["producer", "after", "2", "64", "--no-wait"],
    );
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    assert_empty(&scope);
}
