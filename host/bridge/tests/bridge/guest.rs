//! A guest publisher on host A, a native subscriber on host B.

use std::time::{Duration, Instant};

use crate::harness::*;

/// A guest publisher (the `channel` guest in a wasmtime host, namespace A) reaches a native
/// subscriber in namespace B through both bridges: every frame checked byte for byte, in
/// order, the guest's memory growing on the way.
#[test]
fn a_guest_publisher_reaches_a_native_subscriber_on_the_other_host() {
    use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome, frame};
    let ns = Namespaces::new("gu");
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let a = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.a,
            "--export",
            "cam",
            "--export",
            "probe",
            "--listen",
            &endpoint,
        ],
    );
    let b = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.b,
            "--import",
            "cam",
            "--import",
            "probe",
            "--connect",
            &endpoint,
        ],
    );
    {
        let probe = publisher(&ns.a, "probe");
        let sub = subscriber(&ns.b, "probe");
        probe.wait_for_subscribers(1, STEP);
        until_linked(&probe, &sub);
    }
    let policy = Policy::builder().namespace(&ns.a).build();
    let host = GuestHost::new(policy, EngineOptions::default()).expect("a guest host");
    let component = host
        .load(resmem_guests::CHANNEL_WASM)
        .expect("the channel guest");
    let sub = subscriber(&ns.b, "cam");
    let count = 40u64;
    let outcome = std::thread::scope(|s| {
        let guest = s.spawn(|| {
            host.run_command(
                &component,
                wasmtime_wasi::WasiCtxBuilder::new()
                    .inherit_stderr()
                    .args(&[
                        "channel",
                        "pub",
                        "cam",
                        "40",
                        "1024",
                        "--grow-every",
                        "8",
                        "--max-size",
                        "65536",
                        "--interval-us",
                        "10000",
                        "--subscribers",
                        "1",
                        "--seed",
                        "5",
                        "--map",
                        "--linger-ms",
                        "500",
                    ]),
            )
        });
        let mut seqs = Vec::new();
        let deadline = Instant::now() + STEP;
        while seqs.last() != Some(&(count - 1)) {
            assert!(Instant::now() < deadline, "frames so far: {seqs:?}");
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(100)) {
                let checked = frame::check(sample.payload(), 5, 0)
                    .unwrap_or_else(|e| panic!("frame after {seqs:?}: {e}"));
                let expected_len = (1024u64 << (checked.seq / 8)).min(65536);
                assert_eq!(sample.len() as u64, expected_len, "frame {}", checked.seq);
                seqs.push(checked.seq);
            }
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        assert!(
            seqs.len() as u64 >= count - 2,
            "few lost on the way: {seqs:?}"
        );
        guest.join().expect("the guest thread")
    });
    assert_eq!(outcome.expect("run"), RunOutcome::Exited(0));
    drop(sub);
    drop(host);
    let b_final = b.stop();
    let cam = b_final
        .iter()
        .rev()
        .find(|l| l.starts_with("status import cam "))
        .expect("import status");
    assert_eq!(field(cam, "gaps"), 0, "{cam}");
    a.stop();
    ns.assert_clean();
}
