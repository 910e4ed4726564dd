//! `Subscriber::receive_async` (feature `tokio`) on a current-thread runtime: it wakes on a
//! send from another thread without blocking the runtime (a ticker task keeps running while it
//! waits), reports `PublisherGone` after draining, and a cancelled wait leaves the subscriber
//! usable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use resmem::{ChannelError, Config, Publisher, Subscriber};

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
