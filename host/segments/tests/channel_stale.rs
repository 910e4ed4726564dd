//! A service whose publisher process was killed is stale, also while a remover (a new
//! publisher taking the name over, or `gc`) holds its lock to take it down: a subscriber must
//! not take that lock for a live publisher's and open the dead service.

use std::time::{Duration, Instant};

use resmem::{ChannelError, Config, Publisher, StaleRemoval, Subscriber};

mod common;
use common::{HelperProcess, helper_publisher};

/// The publisher process of the tests here (run by them, with the prefix in `RMST_PREFIX`):
/// creates the service, says so, and sleeps until killed.
#[test]
#[ignore = "helper process of another test"]
fn publisher_process() {
    if let Some(_publisher) = helper_publisher("RMST_PREFIX", "svc") {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Runs `publisher_process` under `prefix` and kills it once the service exists.
fn killed_publisher(prefix: &str) {
    HelperProcess::start("publisher_process", "RMST_PREFIX", prefix).kill();
}

#[test]
fn a_dead_publishers_service_under_a_removers_lock_does_not_open() {
    let prefix = format!("rmst{}_remover_", std::process::id());
    let config = Config::default().prefix(&prefix);
    killed_publisher(&prefix);
    // A remover's lock, held for a moment as `remove_stale_service` does.
    let lock = config
        .get_backend()
        .try_lock(&format!("{prefix}svc__svc"))
        .unwrap()
        .expect("nobody holds the dead publisher's lock");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(40));
        drop(lock);
    });
    let start = Instant::now();
    let opened = Subscriber::builder("svc")
        .config(&config)
        .timeout(Duration::from_millis(400))
        .open();
    releaser.join().unwrap();
    assert_eq!(opened.err(), Some(ChannelError::PublisherGone));
    assert!(start.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        resmem::channel::remove_stale_service("svc", &config),
        Ok(StaleRemoval::Removed)
    );
    assert!(!resmem::exists("svc", &config).unwrap());
}

#[test]
fn a_new_publisher_taking_over_is_the_one_a_waiting_subscriber_opens() {
    let prefix = format!("rmst{}_takeover_", std::process::id());
    let config = Config::default().prefix(&prefix);
    killed_publisher(&prefix);
    // The subscriber keeps trying to open while the new publisher removes the dead one's
    // objects and creates its own: what it opens is the live publisher.
    let opened = std::thread::scope(|s| {
        let subscriber = s.spawn(|| {
            Subscriber::builder("svc")
                .config(&config)
                .timeout(Duration::from_secs(10))
                .open()
        });
        std::thread::sleep(Duration::from_millis(20));
        let publisher = Publisher::builder("svc")
            .config(&config)
            .reclaim_stale(true)
            .create()
            .unwrap();
        let subscriber = subscriber.join().unwrap().unwrap();
        publisher.send_copy(b"live").unwrap();
        let sample = subscriber
            .receive_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("the live publisher's sample");
        let payload = sample.payload().to_vec();
        drop(sample);
        assert!(subscriber.is_publisher_alive());
        payload
    });
    assert_eq!(opened, b"live");
    assert!(!resmem::exists("svc", &config).unwrap());
}

/// The streaming publisher process of `a_killed_streaming_publisher_is_seen_gone_at_once`:
/// creates the service, waits for a subscriber, then sends a sample every millisecond until
/// killed.
#[test]
#[ignore = "helper process of another test"]
fn streaming_publisher_process() {
    let Some(publisher) = helper_publisher("RMST_PREFIX", "svc") else {
        return;
    };
    assert_eq!(
        publisher.wait_for_subscribers(1, Duration::from_secs(30)),
        1
    );
    // Bounded: an orphan (its test failed before killing it) ends by itself.
    let until = Instant::now() + Duration::from_secs(60);
    for seq in 0u64.. {
        if Instant::now() > until {
            break;
        }
        publisher.send_copy(&seq.to_le_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A subscriber in the middle of a stream waits on its slot's bell (a futex), not next to the
/// publisher's pidfd: when the publisher process is killed, it still sees `PublisherGone`
/// within its liveness re-checks (tens of milliseconds), not at the end of its timeout.
#[test]
fn a_killed_streaming_publisher_is_seen_gone_at_once() {
    let prefix = format!("rmst{}_stream_", std::process::id());
    let config = Config::default().prefix(&prefix);
    let child = HelperProcess::start("streaming_publisher_process", "RMST_PREFIX", &prefix);
    let subscriber = Subscriber::builder("svc")
        .config(&config)
        .timeout(Duration::from_secs(10))
        .open()
        .unwrap();
    let mut last = None;
    for _ in 0..50 {
        let sample = subscriber
            .receive_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("a sample of the stream");
        let seq = u64::from_le_bytes(sample.payload().try_into().unwrap());
        assert!(last < Some(seq), "in order");
        last = Some(seq);
    }
    child.kill();
    let killed = Instant::now();
    loop {
        match subscriber.receive_timeout(Duration::from_secs(10)) {
            Ok(Some(_)) => {} // sent before the kill
            Ok(None) => panic!("timed out: the dead publisher was never noticed"),
            Err(e) => {
                assert_eq!(e, ChannelError::PublisherGone);
                break;
            }
        }
    }
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "PublisherGone {took:?} after the kill"
    );
    drop(subscriber);
    assert_eq!(
        resmem::channel::remove_stale_service("svc", &config),
        Ok(StaleRemoval::Removed)
    );
}
