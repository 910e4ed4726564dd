//! The channel in one process (real POSIX shm; publisher and subscribers are separate
//! objects with their own mappings): delivery, release, growth, limits, overflow policies.

use std::alloc::Layout;
use std::sync::Arc;
use std::time::{Duration, Instant};

use resmem::{
    AllocError, ByteBudget, ChannelError, Config, Overflow, Publisher, SegmentBudget, Subscriber,
};

fn config(test: &str) -> Config {
    Config::default().prefix(&format!("rmch{}_{test}_", std::process::id()))
}

#[test]
fn a_sample_reaches_every_subscriber_and_is_freed_after_the_last_release() {
    let config = config("basic");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let a = Subscriber::builder("svc").config(&config).open().unwrap();
    let b = Subscriber::builder("svc").config(&config).open().unwrap();
    assert_eq!(publisher.number_of_subscribers(), 2);
    assert_eq!(publisher.send_copy(b"hello").unwrap(), 2);
    let sa = a.receive().unwrap().expect("queued for a");
    let sb = b.receive().unwrap().expect("queued for b");
    assert_eq!(sa.payload(), b"hello");
    assert_eq!(sb.payload(), b"hello");
    assert_eq!(sa.offset(), sb.offset());
    let offset = sa.offset();
    drop(sa);
    // b still holds it: a new loan must not get the same chunk.
    let loan = publisher
        .loan(Layout::from_size_align(5, 8).unwrap())
        .unwrap();
    assert_ne!(loan.offset(), offset);
    drop(loan);
    drop(sb);
    // Now the publisher takes the returns and the chunk is reused.
    let mut reused = false;
    for _ in 0..4 {
        let loan = publisher
            .loan(Layout::from_size_align(5, 8).unwrap())
            .unwrap();
        reused |= loan.offset() == offset;
    }
    assert!(reused || publisher.memory().number_of_active_segments() == 1);
    assert!(a.receive().unwrap().is_none());
}

#[test]
fn samples_larger_than_the_segment_grow_the_memory_and_arrive_intact() {
    let config = config("grow");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .max_chunk_layout_hint(Layout::from_size_align(128, 8).unwrap())
        .max_number_of_chunks_hint(2)
        .create()
        .unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    let mut size = 128;
    while size <= 8 << 20 {
        let mut sample = publisher
            .loan(Layout::from_size_align(size, 8).unwrap())
            .unwrap();
        for (i, byte) in sample.payload_mut().iter_mut().enumerate() {
            *byte = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ size as u8;
        }
        assert_eq!(sample.send().unwrap(), 1);
        let got = subscriber.receive().unwrap().expect("sent");
        assert_eq!(got.len(), size);
        for (i, byte) in got.payload().iter().enumerate() {
            let want = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ size as u8;
            assert_eq!(*byte, want, "byte {i} of {size}");
        }
        size *= 2;
    }
    assert!(publisher.memory().current_segment().value() >= 10);
}

#[test]
fn set_len_sends_fewer_bytes_and_refuses_more_than_loaned() {
    let config = config("setlen");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    let mut sample = publisher
        .loan(Layout::from_size_align(64, 8).unwrap())
        .unwrap();
    assert_eq!(sample.len(), 64);
    sample.payload_mut()[..3].copy_from_slice(b"abc");
    sample.set_len(3);
    assert_eq!(sample.len(), 3);
    assert_eq!(sample.send().unwrap(), 1);
    assert_eq!(subscriber.receive().unwrap().unwrap().payload(), b"abc");
    let mut sample = publisher
        .loan(Layout::from_size_align(64, 8).unwrap())
        .unwrap();
    sample.set_len(65);
    assert_eq!(sample.len(), 64);
    assert_eq!(
        sample.send(),
        Err(ChannelError::InvalidLength {
            len: 65,
            capacity: 64
        })
    );
    assert!(subscriber.receive().unwrap().is_none());
}

#[test]
fn limits_are_typed_errors() {
    let config = config("limits");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .max_subscribers(1)
        .max_loans(2)
        .max_borrowed(2)
        .create()
        .unwrap();
    assert_eq!(
        Publisher::builder("svc").config(&config).create().err(),
        Some(ChannelError::AlreadyExists)
    );
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    assert_eq!(
        Subscriber::builder("svc").config(&config).open().err(),
        Some(ChannelError::SubscriberLimitReached)
    );
    let layout = Layout::new::<u64>();
    let l1 = publisher.loan(layout).unwrap();
    let l2 = publisher.loan(layout).unwrap();
    assert_eq!(
        publisher.loan(layout).err(),
        Some(ChannelError::LoanLimitReached)
    );
    drop(l1);
    let l3 = publisher.loan(layout).unwrap();
    l2.send().unwrap();
    l3.send().unwrap();
    publisher.send_copy(b"x").unwrap();
    let s1 = subscriber.receive().unwrap().unwrap();
    let s2 = subscriber.receive().unwrap().unwrap();
    assert_eq!(
        subscriber.receive().err(),
        Some(ChannelError::BorrowLimitReached)
    );
    drop(s1);
    assert_eq!(subscriber.receive().unwrap().unwrap().payload(), b"x");
    drop(s2);
    assert_eq!(
        Subscriber::builder("nope").config(&config).open().err(),
        Some(ChannelError::DoesNotExist)
    );
    assert_eq!(
        Publisher::builder("a/b").config(&config).create().err(),
        Some(ChannelError::InvalidName)
    );
    // A departed subscriber's slot is free again for the next one.
    drop(subscriber);
    let again = Subscriber::builder("svc").config(&config).open().unwrap();
    assert_eq!(publisher.number_of_subscribers(), 1);
    drop(again);
}

/// The memory's hints fail as a plain memory's do: aligned beyond a page is `InvalidHint`, a
/// first segment beyond the budget is the allocation's `QuotaExceeded` (not an internal
/// error), and nothing of the service is left.
#[test]
fn memory_hints_fail_as_for_a_plain_memory() {
    let config = config("hints");
    let aligned = Publisher::builder("svc")
        .config(&config)
        .max_chunk_layout_hint(Layout::from_size_align(64, 1 << 20).unwrap())
        .create();
    assert_eq!(aligned.err(), Some(ChannelError::InvalidHint));
    let budget = Arc::new(ByteBudget::new(1 << 20));
    let over = Publisher::builder("svc")
        .config(&config)
        .max_chunk_layout_hint(Layout::from_size_align(1 << 20, 8).unwrap())
        .max_number_of_chunks_hint(4)
        .budget(Arc::clone(&budget) as Arc<dyn SegmentBudget>)
        .create();
    assert_eq!(
        over.err(),
        Some(ChannelError::Alloc(AllocError::QuotaExceeded))
    );
    assert_eq!(budget.used(), 0);
    assert_eq!(resmem::list(&config).unwrap(), Vec::<String>::new());
    assert_eq!(
        Subscriber::builder("svc").config(&config).open().err(),
        Some(ChannelError::DoesNotExist)
    );
}

#[test]
fn drop_oldest_keeps_the_newest_and_drop_newest_the_oldest() {
    for (policy, want) in [
        (Overflow::DropOldest, [6u8, 7, 8, 9]),
        (Overflow::DropNewest, [0u8, 1, 2, 3]),
    ] {
        let config = config(&format!("{policy:?}"));
        let publisher = Publisher::builder("svc")
            .config(&config)
            .buffer_size(4)
            .overflow(policy)
            .create()
            .unwrap();
        let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
        let mut delivered = 0;
        for i in 0..10u8 {
            delivered += publisher.send_copy(&[i]).unwrap();
        }
        assert_eq!(
            delivered,
            if policy == Overflow::DropOldest {
                10
            } else {
                4
            }
        );
        let got: Vec<u8> =
            std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| s.payload()[0])).collect();
        assert_eq!(got, want, "{policy:?}");
    }
}

#[test]
fn block_waits_until_the_subscriber_makes_room() {
    let config = config("block");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .buffer_size(2)
        .overflow(Overflow::Block)
        .create()
        .unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    publisher.send_copy(&[0]).unwrap();
    publisher.send_copy(&[1]).unwrap();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            subscriber.receive().unwrap().unwrap().payload()[0]
        });
        let start = Instant::now();
        assert_eq!(publisher.send_copy(&[2]).unwrap(), 1);
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "send did not block"
        );
        assert_eq!(reader.join().unwrap(), 0);
    });
    let rest: Vec<u8> =
        std::iter::from_fn(|| subscriber.receive().unwrap().map(|s| s.payload()[0])).collect();
    assert_eq!(rest, [1, 2]);
}

#[test]
fn receive_timeout_wakes_on_send_and_times_out_otherwise() {
    let config = config("wake");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    let start = Instant::now();
    assert!(
        subscriber
            .receive_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none()
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            publisher.send_copy(b"late").unwrap();
        });
        let sample = subscriber
            .receive_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("woken by the send");
        assert_eq!(sample.payload(), b"late");
    });
    drop(publisher);
    assert_eq!(
        subscriber.receive().err(),
        Some(ChannelError::PublisherGone)
    );
    assert!(!subscriber.is_publisher_alive());
}

#[test]
fn a_closed_publisher_leaves_queued_samples_for_the_subscriber_and_it_cleans_up() {
    let config = config("drain");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .max_chunk_layout_hint(Layout::from_size_align(64, 8).unwrap())
        .max_number_of_chunks_hint(1)
        .create()
        .unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    // Later samples grow the memory into segments the subscriber has never mapped.
    for size in [64usize, 4096, 1 << 20] {
        let mut sample = publisher
            .loan(Layout::from_size_align(size, 8).unwrap())
            .unwrap();
        sample.payload_mut().fill(size as u8 ^ 0x5a);
        sample.send().unwrap();
    }
    assert!(publisher.memory().current_segment().value() >= 2);
    drop(publisher);
    assert!(!subscriber.is_publisher_alive());
    for size in [64usize, 4096, 1 << 20] {
        let sample = subscriber.receive().unwrap().expect("still queued");
        assert_eq!(sample.len(), size);
        assert!(sample.payload().iter().all(|&b| b == size as u8 ^ 0x5a));
    }
    assert_eq!(
        subscriber.receive().err(),
        Some(ChannelError::PublisherGone)
    );
    drop(subscriber);
    let left = resmem::list(&config).unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(resmem::channel::list_services(&config).unwrap().is_empty());
}

#[test]
fn wait_for_subscribers_wakes_when_one_joins_and_forever_timeouts_do_not_overflow() {
    let config = config("join");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let start = Instant::now();
    assert_eq!(
        publisher.wait_for_subscribers(1, Duration::from_millis(30)),
        0
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    std::thread::scope(|s| {
        let joiner = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            Subscriber::builder("svc")
                .config(&config)
                .timeout(Duration::MAX)
                .open()
                .unwrap()
        });
        let start = Instant::now();
        assert_eq!(
            publisher.wait_for_subscribers(1, Duration::from_secs(20)),
            1
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        let subscriber = joiner.join().unwrap();
        publisher.send_copy(b"x").unwrap();
        assert_eq!(
            subscriber
                .receive_timeout(Duration::MAX)
                .unwrap()
                .unwrap()
                .payload(),
            b"x"
        );
    });
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Publisher>();
    send_sync::<Subscriber>();
    send_sync::<resmem::Sample<'_>>();
    send_sync::<resmem::SampleMut<'_>>();
}

/// Writes `value` at `at` in the service's control object, as a hostile peer would.
fn scribble(config: &Config, service: &str, at: usize, value: u64) {
    let name = format!("{}{service}__svc", config.get_prefix());
    let control = config
        .get_backend()
        .open(&name, resmem::AccessMode::ReadWrite)
        .unwrap();
    assert!(at + 8 <= control.len());
    // SAFETY: in bounds (checked above) and 8-aligned; the mapping lives until the end of this
    // function. The channel reads these words atomically, so a plain write is a hostile
    // peer's write, nothing worse.
    unsafe { (control.as_ptr().add(at) as *mut u64).write_volatile(value) };
}

#[test]
fn scribbled_queue_indices_are_put_back_and_counted() {
    use resmem::channel::layout::{Geometry, offsets};
    let config = config("repair");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .buffer_size(4)
        .max_borrowed(2)
        .create()
        .unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    let slot = Geometry::new(8, 4, 2)
        .unwrap()
        .slot_offset(subscriber.slot());
    for (index, value) in [(offsets::COMP_READ, u64::MAX), (offsets::SUB_READ, 1 << 60)] {
        let before = publisher.violations();
        scribble(&config, "svc", slot + index, value);
        let mut received = 0;
        for i in 0..12u8 {
            publisher.send_copy(&[i; 8]).unwrap();
            if let Ok(Some(sample)) = subscriber.receive() {
                assert_eq!(sample.payload(), &[i; 8]);
                received += 1;
            }
        }
        // One send or return is lost to the repair at most; the stream goes on.
        assert!(received >= 10, "{index}: received {received} of 12");
        assert!(publisher.violations() > before, "{index}: not counted");
    }
}

#[test]
fn send_timeout_gives_up_on_a_full_subscriber_under_block() {
    let config = config("sendtimeout");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .buffer_size(1)
        .overflow(Overflow::Block)
        .create()
        .unwrap();
    let stalled = Subscriber::builder("svc").config(&config).open().unwrap();
    let layout = Layout::from_size_align(1, 1).unwrap();
    let mut first = publisher.loan(layout).unwrap();
    first.payload_mut()[0] = 1;
    assert_eq!(first.send_timeout(Duration::from_millis(50)).unwrap(), 1);
    let start = Instant::now();
    let mut second = publisher.loan(layout).unwrap();
    second.payload_mut()[0] = 2;
    assert_eq!(
        second.send_timeout(Duration::from_millis(50)).unwrap(),
        0,
        "still full"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(stalled.receive().unwrap().unwrap().payload(), [1]);
    assert!(
        stalled.receive().unwrap().is_none(),
        "the second was not delivered"
    );
}
