//! The link or the importing bridge going away: a killed and restarted importer, a stalled
//! link.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resmem::{ChannelError, Overflow, Publisher};

use crate::harness::*;

/// The importing bridge is killed and restarted mid-stream: the exporter keeps taking and
/// releasing (the local publisher under `Overflow::Block` never waits on it), counts what it
/// could not forward, and forwards again once the new importer is there; the importer's
/// subscribers see `PublisherGone` and reopen.
#[test]
fn the_importer_restarts_mid_stream() {
    let ns = Namespaces::new("rs");
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let publisher = Arc::new(publisher(&ns.a, "cam"));
    let a = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.a,
            "--export",
            "cam",
            "--listen",
            &endpoint,
        ],
    );
    let b_args = [
        "--namespace",
        ns.b.as_str(),
        "--import",
        "cam",
        "--connect",
        endpoint.as_str(),
    ];
    let mut b = Some(BridgeProc::spawn(&[], &b_args));
    {
        let sub = subscriber(&ns.b, "cam");
        publisher.wait_for_subscribers(1, STEP);
        until_linked(&publisher, &sub);
    }
    let stop = AtomicBool::new(false);
    let sent_so_far = AtomicU64::new(0);
    let (sent, longest_send) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            send_until(
                &publisher,
                &stop,
                4096,
                Duration::from_millis(2),
                &sent_so_far,
            )
        });
        // Phase 1: received; kill; phase 2: the importer is gone; restart; phase 3: received.
        let mut got_before = 0u64;
        {
            let sub = subscriber(&ns.b, "cam");
            let until = Instant::now() + Duration::from_millis(600);
            while Instant::now() < until {
                if let Ok(Some(_)) = sub.receive_timeout(Duration::from_millis(50)) {
                    got_before += 1;
                }
            }
            b.take().expect("running").kill();
            // Drained, then gone.
            let deadline = Instant::now() + STEP;
            loop {
                match sub.receive_timeout(Duration::from_millis(50)) {
                    Err(ChannelError::PublisherGone) => break,
                    _ => assert!(
                        Instant::now() < deadline,
                        "the dead importer's service stays"
                    ),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        b = Some(BridgeProc::spawn(&[], &b_args));
        let sub = subscriber(&ns.b, "cam");
        let mut after = Vec::new();
        let deadline = Instant::now() + STEP;
        while after.len() < 50 {
            assert!(
                Instant::now() < deadline,
                "the stream did not resume: {} after",
                after.len()
            );
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(100)) {
                let seq = u64::from_le_bytes(sample.payload()[..8].try_into().unwrap());
                assert_eq!(sample.payload(), &payload(seq, 4096)[..]);
                after.push(seq);
            }
        }
        assert!(after.windows(2).all(|w| w[0] < w[1]), "in order: {after:?}");
        stop.store(true, Ordering::Relaxed);
        assert!(got_before > 50, "{got_before} before the kill");
        drop(sub);
        sender.join().expect("sender")
    });
    assert!(
        longest_send < Duration::from_millis(500),
        "the exporter held the publisher up for {longest_send:?}"
    );
    drop(publisher);
    let (out, forwarded, dropped) = final_export(a, "cam");
    assert!(
        dropped > 0,
        "samples sent while no importer was there are counted: {out}"
    );
    assert!(
        forwarded + dropped >= sent,
        "every sample was forwarded or counted as dropped: {out}, sent {sent}"
    );
    drop(b.take().map(BridgeProc::stop));
    ns.assert_clean();
}

/// A stalled link (the importing bridge frozen with SIGSTOP: its TCP connection stays up
/// but nothing is read, so the exporter's zenoh put waits): the exporter holds the local
/// publisher (`Overflow::Block`) no longer than about `--max-hold-ms`, then drops and counts
/// what arrives, and forwards again, in order and byte for byte, once the importer runs.
#[test]
fn a_stalled_link_holds_the_publisher_at_most_max_hold() {
    stalled_link("st", None);
}

/// The same where subscribers may borrow one sample at a time: the exporter cannot keep the
/// sample of a stuck put and take the next one, so it copies each sample into its message.
#[test]
fn a_stalled_link_holds_the_publisher_at_most_max_hold_with_one_borrow() {
    stalled_link("s1", Some(1));
}

fn stalled_link(tag: &str, max_borrowed: Option<usize>) {
    const LEN: usize = 64 << 10;
    let ns = Namespaces::new(tag);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut builder = Publisher::builder("cam")
        .config(&Namespaces::config(&ns.a))
        .overflow(Overflow::Block);
    if let Some(n) = max_borrowed {
        builder = builder.max_borrowed(n);
    }
    let publisher = builder.create().expect("a native publisher");
    let mut a = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.a,
            "--export",
            "cam",
            "--listen",
            &endpoint,
            "--max-hold-ms",
            "100",
        ],
    );
    let b = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.b,
            "--import",
            "cam",
            "--connect",
            &endpoint,
        ],
    );
    let b_pid = libc::pid_t::try_from(b.child.id()).expect("pid");
    let signal = |sig: libc::c_int| {
        // SAFETY: kill(2) with a pid of our own child process and a constant signal.
        assert_eq!(unsafe { libc::kill(b_pid, sig) }, 0, "kill({b_pid}, {sig})");
    };
    let sub = subscriber(&ns.b, "cam");
    publisher.wait_for_subscribers(1, STEP);
    until_linked(&publisher, &sub);

    let stop = AtomicBool::new(false);
    let sent_so_far = AtomicU64::new(0);
    let (sent, longest, during) = std::thread::scope(|s| {
        let sender = s.spawn(|| send_until(&publisher, &stop, LEN, Duration::ZERO, &sent_so_far));
        // Flowing, then frozen for 2 s, then running again.
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(50)) {
                got.push(u64::from_le_bytes(
                    sample.payload()[..8].try_into().unwrap(),
                ));
            }
        }
        assert!(
            got.len() > 10,
            "only {} samples before the stall",
            got.len()
        );
        signal(libc::SIGSTOP);
        a.until(|l| l.contains("export cam: the link took no sample for"));
        let before = sent_so_far.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));
        let during = sent_so_far.load(Ordering::Relaxed) - before;
        signal(libc::SIGCONT);
        let deadline = Instant::now() + STEP;
        let mut after = 0;
        while after < 50 {
            assert!(Instant::now() < deadline, "the stream did not resume");
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(100)) {
                let seq = u64::from_le_bytes(sample.payload()[..8].try_into().unwrap());
                assert!(
                    sample.payload() == &payload(seq, LEN)[..],
                    "sample {seq} differs"
                );
                assert!(seq > *got.last().unwrap(), "in order: {seq} after {got:?}");
                got.push(seq);
                after += 1;
            }
        }
        a.until(|l| l.contains("export cam: the link moves again"));
        stop.store(true, Ordering::Relaxed);
        let (sent, longest) = sender.join().expect("sender");
        (sent, longest, during)
    });
    assert!(
        during > 100,
        "the publisher kept sending while the link stalled: {during} samples in 2 s"
    );
    assert!(
        longest < Duration::from_millis(600),
        "the exporter held the publisher up for {longest:?} (max hold 100 ms)"
    );
    drop(sub);
    drop(publisher);
    let (out, forwarded, dropped) = final_export(a, "cam");
    assert!(
        dropped > 0,
        "the stall's samples are counted dropped: {out}"
    );
    assert!(
        forwarded + dropped >= sent,
        "every sample was forwarded or counted as dropped: {out}, sent {sent}"
    );
    drop(b.stop());
    ns.assert_clean();
}
