//! Crashes across processes: a subscriber process SIGKILLed while it holds and has queued
//! samples (reclaimed by publisher activity, at once when the publisher runs short of memory
//! or slots), and a publisher process SIGKILLed with samples queued (they still arrive, then
//! `PublisherGone`; its stale service is removed or taken over).

use std::time::{Duration, Instant};

use resmem::channel::remove_stale_service;
use resmem::{AllocError, AllocationStrategy, ChannelError, StaleRemoval, Subscriber};
use resmem_e2e::exit;
use resmem_e2e::sample::check_sample;

use super::channel_support::*;
use super::support::{STEP, Scope};
use super::{SEED, SEED_ARG};

/// A subscriber SIGKILLed while it holds 3 samples and has 4 queued: loan calls reclaim all
/// 7 within 100 ms (the probe interval is 50 ms), the subscriber count drops, its lock object
/// is gone, and the only slot is free for the next subscriber.
#[test]
fn a_killed_subscriber_is_reclaimed_within_100_ms_of_publisher_activity() {
    let scope = Scope::new("chkill");
    let publisher = builder(&scope)
        .max_subscribers(1)
        .buffer_size(8)
        .max_borrowed(4)
        .create()
        .unwrap();
    let view = memory_view(&scope);
    let (mut holder, _) = subscriber(
        &scope,
        "hold",
        &["--take", "3", "--verify", SEED_ARG],
        "holder",
    );
    wait_subscribers(&publisher, 1);
    for i in 0..7 {
        assert_eq!(send(&publisher, SEED, i, 1000).1, 1);
    }
    for i in 0..3 {
        assert_eq!(next_got(&mut holder).id, i);
    }
    expect(&mut holder, "holding");
    assert_eq!(chunks_in_use(&view), 7);
    publisher.update_connections();
    holder.kill();
    let start = Instant::now();
    let mut calls = 0;
    while chunks_in_use(&view) != 0 {
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "{} chunks still held 100 ms after the kill ({calls} loan calls)",
            chunks_in_use(&view)
        );
        drop(publisher.loan(layout(1000)).unwrap());
        calls += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!(
        "reclaimed 7 chunks {:?} after SIGKILL ({calls} loan calls)",
        start.elapsed()
    );
    assert_eq!(publisher.number_of_subscribers(), 0);
    assert!(
        !scope.objects().iter().any(|o| o.contains("__sub")),
        "{:?}",
        scope.objects()
    );
    let (mut next, slot) = subscriber(
        &scope,
        "subscribe",
        &["--count", "1", "--verify", SEED_ARG],
        "next",
    );
    assert_eq!(slot, 0);
    wait_subscribers(&publisher, 1);
    let (offset, reached) = send(&publisher, SEED, 7, 1000);
    assert_eq!(reached, 1);
    assert_eq!(
        next_got(&mut next),
        Got {
            id: 7,
            len: 1000,
            offset
        }
    );
    expect(&mut next, "done samples=1 bytes=1000");
    expect(&mut next, "left");
    exits_with(&mut next, exit::OK);
    drop((view, publisher));
    scope.assert_clean();
}

/// A publisher short of memory (static, 4 chunks, all held or queued by one subscriber)
/// reclaims a SIGKILLed subscriber at its very next loan, without waiting for a probe; one
/// short of subscriber slots gives a killed subscriber's slot to a joiner waiting with a timeout.
#[test]
fn a_publisher_running_short_reclaims_a_killed_subscriber_at_once() {
    let scope = Scope::new("chshort");
    let publisher = builder(&scope)
        .max_subscribers(1)
        .buffer_size(4)
        .max_borrowed(2)
        .max_loans(4)
        .allocation_strategy(AllocationStrategy::Static)
        .max_chunk_layout_hint(layout(4096))
        .max_number_of_chunks_hint(4)
        .create()
        .unwrap();
    let (mut holder, _) = subscriber(
        &scope,
        "hold",
        &["--take", "2", "--verify", SEED_ARG],
        "holder",
    );
    wait_subscribers(&publisher, 1);
    for i in 0..4 {
        assert_eq!(send(&publisher, SEED, i, 4096).1, 1);
    }
    until_prefix(&mut holder, "holding");
    assert_eq!(
        publisher.loan(layout(4096)).err(),
        Some(ChannelError::Alloc(AllocError::OutOfMemory)),
        "a live subscriber's samples are not taken"
    );
    holder.kill();
    let loans: Vec<_> = (0..4)
        .map(|i| {
            publisher
                .loan(layout(4096))
                .unwrap_or_else(|e| panic!("loan {i}: {e:?}"))
        })
        .collect();
    assert_eq!(
        publisher.memory().number_of_active_segments(),
        1,
        "no growth"
    );
    drop(loans);

    // Short of slots: the one slot belongs to a killed subscriber until the publisher looks.
    let (mut second, _) = subscriber(
        &scope,
        "hold",
        &["--take", "1", "--verify", SEED_ARG],
        "second",
    );
    wait_subscribers(&publisher, 1);
    assert_eq!(send(&publisher, SEED, 10, 4096).1, 1);
    until_prefix(&mut second, "holding");
    publisher.update_connections();
    second.kill();
    let mut joiner = spawn(
        &scope,
        "subscribe",
        &[
            "--count",
            "1",
            "--verify",
            SEED_ARG,
            "--open-timeout-ms",
            "5000",
        ],
        "joiner",
    );
    expect(&mut joiner, "opening");
    let start = Instant::now();
    let slot = with_activity(&publisher, || expect_prefix(&mut joiner, "joined slot="));
    assert_eq!(slot, "0");
    eprintln!(
        "a joiner took a killed subscriber's slot {:?} after it started",
        start.elapsed()
    );
    assert_eq!(publisher.number_of_subscribers(), 1);
    assert_eq!(send(&publisher, SEED, 11, 4096).1, 1);
    assert_eq!(next_got(&mut joiner).id, 11);
    expect(&mut joiner, "done samples=1 bytes=4096");
    expect(&mut joiner, "left");
    exits_with(&mut joiner, exit::OK);
    drop(publisher);
    scope.assert_clean();
}

fn sent_offset(line: &str) -> u64 {
    // sent <id> <len> <offset> <delivered>
    line.split_whitespace()
        .nth(3)
        .and_then(|o| o.parse().ok())
        .expect("offset")
}

/// A publisher process SIGKILLed with 4 samples (in 4 segments the subscriber has not mapped
/// yet) still queued: each arrives intact, then `PublisherGone`; the samples received before
/// and after the kill stay readable, also after `remove_stale_service` unlinked everything.
#[test]
fn a_killed_publishers_queued_samples_arrive_then_publisher_gone() {
    let scope = Scope::new("chpubkill");
    let config = scope.config();
    let args = [
        "--count",
        "6",
        "--len",
        "1000",
        "--grow",
        "--chunk-size",
        "1000",
        "--chunk-hint",
        "2",
    ];
    let mut publisher = spawn(
        &scope,
        "publish",
        &[&args[..], &["--seed", SEED_ARG, "--wait-subscribers", "1"]].concat(),
        "publisher",
    );
    expect(&mut publisher, "created");
    let subscriber = Subscriber::builder(SVC)
        .config(&config)
        .timeout(STEP)
        .open()
        .unwrap();
    expect(&mut publisher, "subscribers 1");
    let offsets: Vec<u64> = (0..6).map(|_| sent_offset(&publisher.line(STEP))).collect();
    expect(&mut publisher, "published samples=6 delivered=6");
    let mut held: Vec<_> = (0..2)
        .map(|_| subscriber.receive().unwrap().unwrap())
        .collect();
    publisher.kill();
    assert!(!subscriber.is_publisher_alive());
    for _ in 2..6 {
        held.push(
            subscriber
                .receive()
                .expect("queued samples still arrive")
                .expect("queued"),
        );
    }
    assert_eq!(
        subscriber.receive().err(),
        Some(ChannelError::PublisherGone)
    );
    let start = Instant::now();
    assert_eq!(
        subscriber.receive_timeout(Duration::from_secs(5)).err(),
        Some(ChannelError::PublisherGone)
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no wait for a gone publisher"
    );
    let check = |held: &[resmem::Sample<'_>]| {
        for (i, sample) in held.iter().enumerate() {
            assert_eq!(check_sample(sample.payload(), SEED), Ok(i as u64));
            assert_eq!(sample.len(), 1000 << i);
            assert_eq!(sample.offset().as_u64(), offsets[i]);
        }
    };
    check(&held);

    assert_eq!(
        remove_stale_service(SVC, &config),
        Ok(StaleRemoval::Removed)
    );
    let left = scope.objects();
    assert!(
        left.len() == 1 && left[0].contains("__sub"),
        "only our own lock object stays while we live: {left:?}"
    );
    check(&held);
    drop(held);
    drop(subscriber);
    scope.assert_clean();
    assert_eq!(
        remove_stale_service(SVC, &config),
        Ok(StaleRemoval::NotFound)
    );
}

/// A SIGKILLed publisher leaves a stale service: a subscriber process blocked in
/// `receive_timeout` gets `PublisherGone` within 500 ms, new subscribers get it at once, a plain
/// create `AlreadyExists`, `reclaim_stale(true)` takes it over, and the new publisher works.
#[test]
fn a_stale_service_is_taken_over_with_reclaim_stale() {
    let scope = Scope::new("chstale");
    let config = scope.config();
    let mut old = spawn(
        &scope,
        "publish",
        &["--count", "1", "--len", "64", "--seed", SEED_ARG],
        "old",
    );
    expect(&mut old, "created");
    expect(&mut old, "subscribers 0");
    until_prefix(&mut old, "published ");
    let args = ["--count", "1", "--verify", SEED_ARG];
    let (mut waiting, _) = subscriber(&scope, "subscribe", &args, "waiting subscriber");
    std::thread::sleep(Duration::from_millis(20));
    let killed = Instant::now();
    old.kill();
    expect(&mut waiting, &error_line(ChannelError::PublisherGone));
    let noticed = killed.elapsed();
    exits_with(&mut waiting, exit::CHANNEL);
    eprintln!(
        "a subscriber blocked in receive_timeout saw PublisherGone {noticed:?} after the kill"
    );
    assert!(noticed < Duration::from_millis(500), "{noticed:?}");
    assert_eq!(
        Subscriber::builder(SVC).config(&config).open().err(),
        Some(ChannelError::PublisherGone)
    );
    assert_eq!(
        builder(&scope).create().err(),
        Some(ChannelError::AlreadyExists)
    );
    let publisher = builder(&scope).reclaim_stale(true).create().unwrap();
    assert_eq!(
        remove_stale_service(SVC, &config),
        Ok(StaleRemoval::OwnerAlive)
    );
    let (mut sub, _) = subscriber(
        &scope,
        "subscribe",
        &["--count", "1", "--verify", SEED_ARG],
        "sub",
    );
    wait_subscribers(&publisher, 1);
    let (offset, reached) = send(&publisher, SEED, 5, 300);
    assert_eq!(reached, 1);
    assert_eq!(
        next_got(&mut sub),
        Got {
            id: 5,
            len: 300,
            offset
        }
    );
    expect(&mut sub, "done samples=1 bytes=300");
    expect(&mut sub, "left");
    exits_with(&mut sub, exit::OK);
    drop(publisher);
    scope.assert_clean();
}

/// A subscriber SIGKILLed with a sample still queued, then the publisher dropped normally
/// before any call of it noticed the death: no live subscriber is left to drain anything, so
/// the publisher's drop must remove the service's objects (nobody else will).
#[test]
fn a_publisher_dropped_after_its_subscriber_died_with_samples_queued_leaves_nothing() {
    let scope = Scope::new("chdropdead");
    let publisher = builder(&scope).create().unwrap();
    let args = ["--take", "1", "--verify", SEED_ARG];
    let (mut holder, _) = subscriber(&scope, "hold", &args, "holder");
    wait_subscribers(&publisher, 1);
    assert_eq!(send(&publisher, SEED, 0, 64).1, 1);
    assert_eq!(send(&publisher, SEED, 1, 64).1, 1);
    until_prefix(&mut holder, "holding");
    holder.kill();
    drop(publisher);
    scope.assert_clean();
}
