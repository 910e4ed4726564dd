//! `Subscriber::receive_async` (feature `tokio`) on a current-thread runtime: it wakes on a
//! send from another thread without blocking the runtime (a ticker task keeps running while it
//! waits), reports `PublisherGone` after draining, and a cancelled wait leaves the subscriber
//! usable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resmem::{ChannelError, Config, Publisher, Subscriber};

mod common;
use common::{HelperProcess, helper_publisher};

fn config(test: &str) -> Config {
    Config::default().prefix(&format!("rmas{}_{test}_", std::process::id()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn receive_async_wakes_on_send_without_blocking_the_runtime() {
    let config = config("wake");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    let ticks = Arc::new(AtomicU32::new(0));
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            publisher.send_copy(b"async").unwrap();
        });
        runtime().block_on(async {
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            let sample = tokio::time::timeout(Duration::from_secs(10), subscriber.receive_async())
                .await
                .expect("woken well within the timeout")
                .unwrap();
            ticker.abort();
            sample.payload().to_vec()
        })
    });
    assert_eq!(got, b"async");
    // The runtime's only thread kept ticking while the subscriber waited ~200 ms.
    assert!(ticks.load(Ordering::Relaxed) >= 5, "ticks: {ticks:?}");
}

#[test]
fn a_cancelled_wait_leaves_the_subscriber_usable_and_gone_is_reported() {
    let config = config("cancel");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let waited =
            tokio::time::timeout(Duration::from_millis(30), subscriber.receive_async()).await;
        assert!(waited.is_err(), "nothing was sent");
    });
    publisher.send_copy(b"one").unwrap();
    publisher.send_copy(b"two").unwrap();
    drop(publisher);
    rt.block_on(async {
        // Queued samples are drained first, then the publisher is gone.
        assert_eq!(subscriber.receive_async().await.unwrap().payload(), b"one");
        assert_eq!(subscriber.receive_async().await.unwrap().payload(), b"two");
        assert_eq!(
            subscriber.receive_async().await.err(),
            Some(ChannelError::PublisherGone)
        );
    });
}

/// The publisher process of `receive_async_wakes_when_the_publisher_process_dies` (run by it,
/// with the prefix in `RMAS_PREFIX`).
#[test]
#[ignore = "helper process of another test"]
fn publisher_process() {
    let Some(publisher) = helper_publisher("RMAS_PREFIX", "svc") else {
        return;
    };
    publisher.wait_for_subscribers(1, Duration::from_secs(30));
    publisher.send_copy(b"before").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn receive_async_wakes_when_the_publisher_process_dies() {
    let prefix = format!("rmas{}_dies_", std::process::id());
    let child = HelperProcess::start("publisher_process", "RMAS_PREFIX", &prefix);
    let config = Config::default().prefix(&prefix);
    let subscriber = Subscriber::builder("svc")
        .config(&config)
        .timeout(Duration::from_secs(10))
        .open()
        .unwrap();
    let (gone_after, first) = runtime().block_on(async {
        let first = tokio::time::timeout(Duration::from_secs(10), subscriber.receive_async())
            .await
            .expect("the first sample")
            .unwrap()
            .payload()
            .to_vec();
        let killed = std::time::Instant::now();
        child.kill();
        let gone = tokio::time::timeout(Duration::from_secs(10), subscriber.receive_async())
            .await
            .expect("woken by the death, not the 10 s timeout");
        assert_eq!(gone.err(), Some(ChannelError::PublisherGone));
        (killed.elapsed(), first)
    });
    assert_eq!(first, b"before");
    // The pidfd wakes it; without one the re-check comes within 100 ms.
    assert!(gone_after < Duration::from_millis(500), "{gone_after:?}");
    drop(subscriber);
    assert_eq!(
        resmem::channel::remove_stale_service("svc", &config),
        Ok(resmem::StaleRemoval::Removed)
    );
    println!("PublisherGone {gone_after:?} after the kill");
}
