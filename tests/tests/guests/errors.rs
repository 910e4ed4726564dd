//! Every error variant a guest can reach, including timeouts and I/O errors on a guest view.

use super::*;

/// The errors guest's cases and the WIT error each must produce (the host decides; the order
/// is the guest's output order). Validation order: quotas (chunk and I/O size) before bounds;
/// sizes that overflow are invalid layouts; forged offsets are invalid offsets.
pub(crate) const ERROR_CASES: &[(&str, &str)] = &[
    ("name-empty", "invalid-name"),
    ("name-slash", "invalid-name"),
    ("name-dotdot", "invalid-name"),
    ("name-nul", "invalid-name"),
    ("name-10k", "invalid-name"),
    ("view-name-empty", "invalid-name"),
    ("exists-name-slash", "invalid-name"),
    ("remove-name-nul", "invalid-name"),
    ("layout-align-3", "invalid-layout"),
    ("layout-align-0", "invalid-layout"),
    ("layout-size-overflow", "invalid-layout"),
    ("hint-align-3", "invalid-layout"),
    ("grow-shrink", "invalid-layout"),
    ("offset-forged-deallocate", "invalid-offset"),
    ("offset-forged-read", "invalid-offset"),
    ("offset-forged-grow", "invalid-offset"),
    ("offset-freed-deallocate", "invalid-offset"),
    ("offset-freed-write", "invalid-offset"),
    ("read-past-chunk", "invalid-offset"),
    ("write-past-chunk", "invalid-offset"),
    ("view-register-forged", "invalid-offset"),
    ("view-read-unregistered", "invalid-offset"),
    ("already-exists", "already-exists"),
    ("view-does-not-exist", "does-not-exist"),
    ("view-write-read-only", "permission-denied"),
    ("quota-huge-allocation", "quota-exceeded"),
    ("quota-too-many-memories", "quota-exceeded"),
    ("quota-read-4gib", "quota-exceeded"),
    ("static-full", "out-of-memory"),
    ("max-reallocations", "max-reallocations-reached"),
    ("batch-deallocate-twice", "invalid-offset"),
    ("batch-deallocate-forged", "invalid-offset"),
    ("batch-quota", "quota-exceeded"),
    ("batch-static-full", "out-of-memory"),
];

/// Every case of the WIT `error` variant.
const WIT_ERRORS: &[&str] = &[
    "invalid-name",
    "invalid-layout",
    "invalid-offset",
    "already-exists",
    "does-not-exist",
    "permission-denied",
    "out-of-memory",
    "max-reallocations-reached",
    "quota-exceeded",
    "timeout",
    "io",
];

/// The errors guest provokes each error; every `case <name>: <variant>` line must name the
/// expected variant, the guest must agree (it reports disagreements on stderr) and survive
/// every one of them, and it must leave nothing behind.
#[test]
fn errors_guest_reaches_every_error_with_the_expected_variant() {
    let scope = Scope::new("gerr");
    let host = host(&scope);
    let errors = load(&host, resmem_guests::ERRORS_WASM);
    let end = run(&host, &errors, &["errors"]);
    assert_eq!(end.outcome, RunOutcome::Exited(0), "{end:?}");
    let observed: Vec<(&str, &str)> = end
        .stdout
        .iter()
        .map(|line| {
            line.strip_prefix("case ")
                .and_then(|rest| rest.split_once(": "))
                .unwrap_or_else(|| panic!("not a case line: {line:?}"))
        })
        .collect();
    for (i, (name, variant)) in observed.iter().enumerate() {
        let expected = ERROR_CASES.get(i).copied();
        assert_eq!(
            Some((*name, *variant)),
            expected,
            "case {i} (stderr: {})",
            end.stderr
        );
    }
    assert_eq!(observed.len(), ERROR_CASES.len(), "{:?}", end.stdout);
    assert_eq!(end.stderr, "", "the guest expected something else");
    // Every variant but timeout and io (see the next test) comes up.
    let reached: std::collections::BTreeSet<&str> = observed.iter().map(|(_, v)| *v).collect();
    let missing: Vec<&&str> = WIT_ERRORS
        .iter()
        .filter(|v| !reached.contains(**v))
        .collect();
    assert_eq!(missing, [&"timeout", &"io"]);
    assert_empty(&scope);
}

/// `timeout` and `io`, which one guest cannot provoke by itself, reach a guest view through
/// memories this test fakes: an empty management object (an owner still initialising) and one
/// holding garbage. The wait is bounded by the `open-timeout` quota, not the guest's 5 s.
#[test]
fn timeout_and_io_errors_reach_a_guest_view() {
    let scope = Scope::new("gtio");
    let host = host_with(&scope, {
        let mut quotas = Quotas::default();
        quotas.open_timeout = Duration::from_millis(300);
        quotas
    });
    let consumer = load(&host, resmem_guests::CONSUMER_WASM);
    let stuck = scope.object_path(&scope.mgmt_object("stuck"));
    let garbage = scope.object_path(&scope.mgmt_object("garbage"));
    std::fs::write(&stuck, b"").unwrap();
    std::fs::write(&garbage, [0xA5u8; 100]).unwrap();
    // Their (fake) owners hold the owner lock, as a live owner does: without it the memories
    // would be stale (`OwnerDead`, also an `io` error) instead.
    let owners: Vec<std::fs::File> = [&stuck, &garbage]
        .into_iter()
        .map(|path| {
            let file = std::fs::File::open(path).unwrap();
            file.try_lock().unwrap();
            file
        })
        .collect();

    let started = Instant::now();
    let end = run(&host, &consumer, &["consumer", "stuck", "1:8:1"]);
    let waited = started.elapsed();
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("open \"stuck\": timed out"),
        "{}",
        end.stderr
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(4500),
        "waited {waited:?}: not the open-timeout quota"
    );

    let end = run(&host, &consumer, &["consumer", "garbage", "1:8:1"]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("open \"garbage\": I/O error"),
        "{}",
        end.stderr
    );

    // Its owner gone, the memory is stale: still `io`, with a message that says so.
    drop(owners);
    let end = run(&host, &consumer, &["consumer", "garbage", "1:8:1"]);
    assert_eq!(end.outcome, RunOutcome::Exited(1), "{end:?}");
    assert!(
        end.stderr.contains("open \"garbage\": I/O error") && end.stderr.contains("owner is gone"),
        "{}",
        end.stderr
    );

    std::fs::remove_file(stuck).unwrap();
    std::fs::remove_file(garbage).unwrap();
    assert_empty(&scope);
}
