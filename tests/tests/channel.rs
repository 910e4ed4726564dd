//! End-to-end tests of the channel (`resmem::channel`) across real processes and real POSIX
//! shared memory: the other side is `resmem-channel-peer` (tests/src/bin/channel_peer.rs), an
//! honest or hostile publisher or subscriber. Every sample carries the checkable content of
//! `resmem_e2e::sample`, and every receiver checks every byte of it. Checked here: delivery
//! and release across growth, the overflow policies, the limits as typed errors, reclaim of a
//! SIGKILLed subscriber, a SIGKILLed publisher's leftovers, hostile peers on either side, many
//! processes and threads at once, wake-up latency and idle CPU.
//!
//! Each test has its own namespace ([`Scope`]: prefix with pid and test tag) and fails if it
//! leaves objects in `/dev/shm`; every child is killed and reaped when its [`Peer`] drops, on
//! panics too.

mod channel_support;
#[path = "channel/crash.rs"]
mod crash;
#[path = "channel/hostile.rs"]
mod hostile;
#[path = "channel/join.rs"]
mod join;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use channel_support::*;
use resmem::{ChannelError, Overflow, PointerOffset};
use resmem_e2e::exit;
use resmem_e2e::sample::now_ns;
use support::{Peer, STEP, Scope};

/// Seed of every honest publisher.
const SEED: u64 = 0x5EED;
const SEED_ARG: &str = "24301";

#[test]
fn seed_arg_is_the_seed() {
    assert_eq!(SEED_ARG.parse::<u64>(), Ok(SEED));
}

/// Samples doubling from 128 B to 16 MiB: each grows the memory into a new segment, the
/// subscriber process checks every byte, and once it gave every sample back, the publisher
/// holds no chunk and only the current segment is left. A subscriber verifying with the wrong
/// seed, or a sample with one flipped byte at its end, fails the check.
#[test]
fn growing_samples_arrive_intact_in_another_process_and_are_released() {
    let scope = Scope::new("chgrow");
    let publisher = builder(&scope)
        .max_chunk_layout_hint(layout(128))
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let view = memory_view(&scope);
    let (mut sub, slot) = subscriber(
        &scope,
        "subscribe",
        &["--count", "18", "--verify", SEED_ARG],
        "subscriber",
    );
    assert_eq!(slot, 0);
    wait_subscribers(&publisher, 1);
    let mut segments = BTreeSet::new();
    let mut bytes = 0;
    for i in 0..18u64 {
        let len = 128usize << i;
        let (offset, reached) = send(&publisher, SEED, i, len);
        assert_eq!(reached, 1);
        assert_eq!(next_got(&mut sub), Got { id: i, len, offset });
        segments.insert(PointerOffset::from_u64(offset).segment_id());
        bytes += len;
    }
    assert_eq!(segments.len(), 18, "each doubling grew into a new segment");
    expect(&mut sub, &format!("done samples=18 bytes={bytes}"));
    expect(&mut sub, "left");
    exits_with(&mut sub, exit::OK);

    // The publisher takes the returns at its next call.
    assert_eq!(publisher.number_of_subscribers(), 0);
    assert_eq!(chunks_in_use(&view), 0);
    assert_eq!(publisher.memory().number_of_active_segments(), 1);
    let current = publisher.memory().current_segment();
    let mut expected = vec![
        scope.segment_object(SVC, current),
        scope.mgmt_object(SVC),
        format!("{}{SVC}__svc", scope.prefix()),
    ];
    expected.sort();
    assert_eq!(scope.objects(), expected, "old segments are unlinked");

    // A wrong seed fails at the first sample.
    let (mut wrong, _) = subscriber(
        &scope,
        "subscribe",
        &["--count", "1", "--verify", "24302"],
        "wrong-seed subscriber",
    );
    wait_subscribers(&publisher, 1);
    assert_eq!(send(&publisher, SEED, 99, 4096).1, 1);
    expect(&mut wrong, "error mismatch");
    exits_with(&mut wrong, exit::MISMATCH);
    assert!(
        wrong.stderr().contains("header of sample 99"),
        "{}",
        wrong.stderr()
    );

    // One flipped byte at the very end of a 1 MiB sample fails it too.
    let (mut gated, _) = subscriber(
        &scope,
        "subscribe",
        &["--count", "1", "--verify", SEED_ARG, "--gate"],
        "gated subscriber",
    );
    wait_subscribers(&publisher, 1);
    let len = 1 << 20;
    let (offset, _) = send(&publisher, SEED, 100, len);
    let ptr = publisher
        .memory()
        .translate(PointerOffset::from_u64(offset))
        .unwrap();
    // SAFETY: the last byte of a chunk of `len` bytes just sent; the publisher's mapping is
    // writable and the subscriber reads nothing before the gate opens below.
    unsafe { *ptr.add(len - 1) ^= 0x40 };
    gated.send("go");
    expect(&mut gated, "error mismatch");
    exits_with(&mut gated, exit::MISMATCH);
    let at = format!("(offset {} into the sample)", len - 1);
    assert!(gated.stderr().contains(&at), "{}", gated.stderr());

    assert_eq!(publisher.number_of_subscribers(), 0);
    assert_eq!(chunks_in_use(&view), 0, "failed subscribers gave back too");
    drop((view, publisher));
    scope.assert_clean();
}

/// A subscriber process that receives only after 10 sends into a queue of 4: DropOldest
/// delivers all 10 and it sees the newest four, DropNewest delivers 4 and it sees the oldest;
/// the dropped samples are freed at once either way.
#[test]
fn drop_oldest_and_drop_newest_across_processes() {
    for (policy, tag) in [(Overflow::DropOldest, "old"), (Overflow::DropNewest, "new")] {
        let scope = Scope::new(&format!("chpol{tag}"));
        let publisher = builder(&scope)
            .buffer_size(4)
            .overflow(policy)
            .create()
            .unwrap();
        let view = memory_view(&scope);
        let (mut sub, _) = subscriber(
            &scope,
            "subscribe",
            &["--verify", SEED_ARG, "--gate", "--until-empty"],
            "slow subscriber",
        );
        wait_subscribers(&publisher, 1);
        let reached: Vec<usize> = (0..10).map(|i| send(&publisher, SEED, i, 256).1).collect();
        assert_eq!(
            chunks_in_use(&view),
            4,
            "{policy:?}: only the queued four are held"
        );
        sub.send("go");
        let ids: Vec<u64> = (0..4).map(|_| next_got(&mut sub).id).collect();
        expect(&mut sub, "done samples=4 bytes=1024");
        expect(&mut sub, "left");
        exits_with(&mut sub, exit::OK);
        if policy == Overflow::DropOldest {
            assert_eq!(reached, [1; 10]);
            assert_eq!(ids, [6, 7, 8, 9]);
        } else {
            assert_eq!(reached, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
            assert_eq!(ids, [0, 1, 2, 3]);
        }
        assert_eq!(publisher.number_of_subscribers(), 0);
        assert_eq!(chunks_in_use(&view), 0);
        drop((view, publisher));
        scope.assert_clean();
    }
}

/// Block: with the subscriber's queue full, `send` waits until the subscriber process
/// (which sleeps 300 ms before it receives) takes a sample; then every sample arrives in order.
/// A send waiting for a subscriber that is SIGKILLed returns within 200 ms, delivered to none.
#[test]
fn block_makes_send_wait_for_the_subscriber_process() {
    let scope = Scope::new("chblock");
    let publisher = builder(&scope)
        .buffer_size(2)
        .overflow(Overflow::Block)
        .create()
        .unwrap();
    let (mut sub, _) = subscriber(
        &scope,
        "subscribe",
        &[
            "--count",
            "3",
            "--verify",
            SEED_ARG,
            "--gate",
            "--delay-ms",
            "300",
        ],
        "slow subscriber",
    );
    wait_subscribers(&publisher, 1);
    assert_eq!(send(&publisher, SEED, 0, 256).1, 1);
    assert_eq!(send(&publisher, SEED, 1, 256).1, 1);
    sub.send("go");
    let start = Instant::now();
    assert_eq!(send(&publisher, SEED, 2, 256).1, 1);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "send waited {waited:?} for a subscriber that receives after 300 ms"
    );
    let ids: Vec<u64> = (0..3).map(|_| next_got(&mut sub).id).collect();
    assert_eq!(ids, [0, 1, 2]);
    expect(&mut sub, "done samples=3 bytes=768");
    expect(&mut sub, "left");
    exits_with(&mut sub, exit::OK);

    // A full subscriber that never receives is SIGKILLed while send waits for it.
    let (mut stuck, _) = subscriber(
        &scope,
        "subscribe",
        &["--count", "1", "--verify", SEED_ARG, "--gate"],
        "stuck subscriber",
    );
    wait_subscribers(&publisher, 1);
    assert_eq!(send(&publisher, SEED, 10, 256).1, 1);
    assert_eq!(send(&publisher, SEED, 11, 256).1, 1);
    let (reached, after_kill) = std::thread::scope(|s| {
        let blocked = s.spawn(|| send(&publisher, SEED, 12, 256).1);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!blocked.is_finished(), "send waits for the full subscriber");
        let killed = Instant::now();
        stuck.kill();
        (blocked.join().unwrap(), killed.elapsed())
    });
    eprintln!("a send blocked on a SIGKILLed subscriber returned {after_kill:?} after the kill");
    assert_eq!(reached, 0, "the dead subscriber did not get it");
    assert!(after_kill < Duration::from_millis(200), "{after_kill:?}");
    assert_eq!(publisher.number_of_subscribers(), 0);
    drop(publisher);
    scope.assert_clean();
}

/// max_subscribers, max_borrowed and max_loans across processes: a third subscriber process
/// gets `SubscriberLimitReached`, a subscriber holding `max_borrowed` samples gets
/// `BorrowLimitReached` until it drops one, samples held by subscribers do not count as the
/// publisher's loans, and a slot left by a subscriber is taken by the next.
#[test]
fn limits_are_typed_errors_across_processes() {
    let scope = Scope::new("chlim");
    let publisher = builder(&scope)
        .max_subscribers(2)
        .max_loans(2)
        .max_borrowed(2)
        .create()
        .unwrap();
    let (mut a, slot_a) = subscriber(&scope, "hold", &["--take", "0", "--verify", SEED_ARG], "a");
    expect(&mut a, "holding");
    let args = [
        "--count",
        "4",
        "--hold",
        "2",
        "--probe-borrow",
        "--then-wait",
    ];
    let (mut b, _) = subscriber(
        &scope,
        "subscribe",
        &[&args[..], &["--verify", SEED_ARG]].concat(),
        "b",
    );
    wait_subscribers(&publisher, 2);

    let mut c = spawn(
        &scope,
        "subscribe",
        &["--count", "1", "--verify", SEED_ARG],
        "c",
    );
    expect(&mut c, "opening");
    expect(&mut c, &error_line(ChannelError::SubscriberLimitReached));
    exits_with(&mut c, exit::CHANNEL);

    for i in 0..4 {
        assert_eq!(send(&publisher, SEED, i, 512).1, 2);
    }
    let lines: Vec<String> = (0..7).map(|_| b.line(STEP)).collect();
    let got = |i: u64| format!("got {i} 512 ");
    assert!(
        lines[0].starts_with(&got(0)) && lines[1].starts_with(&got(1)),
        "{lines:?}"
    );
    assert_eq!(lines[2], "limit borrowed=2");
    assert!(lines[3].starts_with(&got(2)), "{lines:?}");
    assert_eq!(lines[4], "limit borrowed=2");
    assert!(lines[5].starts_with(&got(3)), "{lines:?}");
    assert_eq!(lines[6], "done samples=4 bytes=2048");

    // b holds two samples: the publisher still has both its loans.
    let l1 = publisher.loan(layout(64)).unwrap();
    let l2 = publisher.loan(layout(64)).unwrap();
    assert_eq!(
        publisher.loan(layout(64)).err(),
        Some(ChannelError::LoanLimitReached)
    );
    drop(l1);
    let l3 = publisher.loan(layout(64)).unwrap();
    drop((l2, l3));

    // a leaves normally; the next subscriber takes its slot.
    a.close_stdin();
    expect(&mut a, "done samples=0 bytes=0");
    expect(&mut a, "left");
    exits_with(&mut a, exit::OK);
    let (mut d, slot_d) = subscriber(&scope, "hold", &["--take", "0", "--verify", SEED_ARG], "d");
    assert_eq!(slot_d, slot_a);
    wait_subscribers(&publisher, 2);
    for peer in [&mut b, &mut d] {
        peer.close_stdin();
        exits_with(peer, exit::OK);
    }
    drop(publisher);
    scope.assert_clean();
}

/// 8 subscriber processes and one publisher process sending from 4 threads under Block:
/// every subscriber gets all 600 samples, each thread's in order, every byte checked; every
/// send reached all 8.
#[test]
fn eight_subscriber_processes_get_every_sample_of_four_publisher_threads() {
    let scope = Scope::new("chscale");
    let args = [
        "--threads",
        "4",
        "--count",
        "150",
        "--len",
        "64",
        "--len-max",
        "16384",
    ];
    let more = [
        "--policy",
        "block",
        "--max-subscribers",
        "8",
        "--wait-subscribers",
        "8",
    ];
    let mut publisher = spawn(
        &scope,
        "publish",
        &[&args[..], &more, &["--quiet", "--seed", SEED_ARG]].concat(),
        "publisher",
    );
    expect(&mut publisher, "created");
    let sub_args = [
        "--count",
        "600",
        "--threads",
        "4",
        "--quiet",
        "--verify",
        SEED_ARG,
    ];
    let mut subs: Vec<Peer> = (0..8)
        .map(|j| subscriber(&scope, "subscribe", &sub_args, &format!("subscriber {j}")).0)
        .collect();
    expect(&mut publisher, "subscribers 8");
    expect(&mut publisher, "published samples=600 delivered=4800");
    for sub in &mut subs {
        let done = expect_prefix(sub, "done ");
        assert_eq!(field::<u64>(&done, "samples"), 600, "{done}");
        assert!(done.ends_with(" per-thread=150,150,150,150"), "{done}");
        expect(sub, "left");
        exits_with(sub, exit::OK);
    }
    publisher.close_stdin();
    expect(&mut publisher, "dropped");
    exits_with(&mut publisher, exit::OK);
    scope.assert_clean();
}

/// A subscriber process asleep in `receive_timeout` is woken by each `send` of this process:
/// the median latency (send stamp to the return of `receive_timeout`) is below 1 ms.
#[test]
fn receive_timeout_in_another_process_wakes_within_a_millisecond() {
    const SENDS: usize = 200;
    let scope = Scope::new("chwake");
    let publisher = builder(&scope).create().unwrap();
    let (mut sub, _) = subscriber(
        &scope,
        "latency",
        &["--count", &SENDS.to_string()],
        "latency",
    );
    wait_subscribers(&publisher, 1);
    let mut latencies = Vec::new();
    for _ in 0..SENDS {
        // Long enough for the subscriber to be asleep in poll again.
        std::thread::sleep(Duration::from_millis(2));
        let mut sample = publisher.loan(layout(64)).unwrap();
        sample.payload_mut()[..8].copy_from_slice(&now_ns().to_le_bytes());
        assert_eq!(sample.send().unwrap(), 1);
        latencies.push(expect_prefix(&mut sub, "lat ").parse::<u64>().unwrap());
    }
    expect(&mut sub, "done");
    exits_with(&mut sub, exit::OK);
    let (median, max) = median_max(&mut latencies);
    eprintln!(
        "wake-up latency over {SENDS} sends: median {:.1} us, max {:.1} us",
        median as f64 / 1e3,
        max as f64 / 1e3
    );
    assert!(median < 1_000_000, "median wake-up latency {median} ns");
    drop(publisher);
    scope.assert_clean();
}

/// A subscriber process blocked in `receive_timeout` for 2 s uses less than 1 % of a CPU
/// (utime + stime from /proc/<pid>/stat), and the call times out, not earlier.
#[test]
fn an_idle_subscriber_process_uses_no_cpu() {
    let scope = Scope::new("chidle");
    let publisher = builder(&scope).create().unwrap();
    let mut idle = spawn(&scope, "idle", &["--ms", "2000"], "idle subscriber");
    expect(&mut idle, "opening");
    expect(&mut idle, "waiting");
    let before = (cpu_ticks(idle.pid()), main_thread_cpu_ns(idle.pid()));
    let start = Instant::now();
    let done = expect_prefix(&mut idle, "idle done ");
    let ticks = cpu_ticks(idle.pid()) - before.0;
    let wall = start.elapsed();
    let cpu = Duration::from_millis(ticks * 1000 / USER_HZ);
    let exact = main_thread_cpu_ns(idle.pid())
        .zip(before.1)
        .map(|(after, before)| Duration::from_nanos(after - before));
    eprintln!(
        "idle subscriber: utime+stime {cpu:?} in {wall:?} ({done}); waiting thread on CPU {exact:?}"
    );
    assert!(field::<u64>(&done, "elapsed_ms") >= 2000, "{done}");
    assert!(
        cpu.as_secs_f64() < 0.01 * wall.as_secs_f64(),
        "{cpu:?} of CPU in {wall:?}"
    );
    assert_eq!(publisher.number_of_subscribers(), 1);
    idle.close_stdin();
    exits_with(&mut idle, exit::OK);
    drop(publisher);
    scope.assert_clean();
}
