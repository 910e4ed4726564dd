//! Publishers, subscribers, loans and samples through the C entry points.

mod common;

use std::ptr;
use std::time::{Duration, Instant};

use common::*;
use resmem_c::*;
use resmem_status as S;

#[test]
fn a_loan_written_in_place_is_received_in_place_and_send_copy_too() {
    let ns = Ns::new("roundtrip");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);

    let loan = loan(publisher, 100).expect("loan");
    // SAFETY: a live loan.
    let (len, capacity, offset) = unsafe {
        (
            resmem_loan_len(loan),
            resmem_loan_capacity(loan),
            resmem_loan_offset(loan),
        )
    };
    assert_eq!((len, capacity), (100, 100));
    assert_ne!(offset, RESMEM_NO_OFFSET);
    for (i, b) in loan_bytes(loan).iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(send(publisher, loan), Ok(1));

    let sample = receive(subscriber, 1000)
        .expect("receive")
        .expect("a sample");
    assert_eq!(
        sample_bytes(sample),
        (0..100).map(|i| i as u8).collect::<Vec<_>>()
    );
    // SAFETY: a live sample.
    let sample_offset = unsafe { resmem_sample_offset(sample) };
    assert_eq!(sample_offset, offset, "read in place");
    assert_eq!(release(subscriber, sample), S::RESMEM_OK);

    assert_eq!(send_copy(publisher, b"hello"), Ok(1));
    let sample = receive(subscriber, -1).expect("receive").expect("a sample");
    assert_eq!(sample_bytes(sample), b"hello");
    assert_eq!(release(subscriber, sample), S::RESMEM_OK);

    destroy_subscriber(subscriber);
    destroy_publisher(publisher);
    ns.assert_empty();
}

#[test]
fn set_len_sends_fewer_bytes_and_more_than_loaned_is_refused() {
    let ns = Ns::new("setlen");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);
    let loan = loan(publisher, 64).expect("loan");
    loan_bytes(loan).fill(7);
    // SAFETY: a live loan, used by this thread alone.
    unsafe {
        assert_eq!(resmem_loan_set_len(loan, 65), S::RESMEM_INVALID_ARGUMENT);
        assert_eq!(resmem_loan_len(loan), 64, "unchanged");
        assert_eq!(resmem_loan_set_len(loan, 10), S::RESMEM_OK);
        assert_eq!(resmem_loan_len(loan), 10);
    }
    assert_eq!(send(publisher, loan), Ok(1));
    let sample = receive(subscriber, 1000)
        .expect("receive")
        .expect("a sample");
    assert_eq!(sample_bytes(sample), [7; 10]);
    assert_eq!(release(subscriber, sample), S::RESMEM_OK);
    destroy_subscriber(subscriber);
    destroy_publisher(publisher);
    ns.assert_empty();
}

#[test]
fn a_receive_that_times_out_is_ok_with_no_sample() {
    let ns = Ns::new("timeout");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(receive(subscriber, 0), Ok(None), "a poll");
    let start = Instant::now();
    assert_eq!(receive(subscriber, 80), Ok(None));
    assert!(
        start.elapsed() >= Duration::from_millis(80),
        "{:?}",
        start.elapsed()
    );
    destroy_subscriber(subscriber);
    destroy_publisher(publisher);
    ns.assert_empty();
}

#[test]
fn once_the_publisher_is_gone_the_queue_drains_and_then_publisher_gone() {
    let ns = Ns::new("gone");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);
    assert_eq!(send_copy(publisher, b"last words"), Ok(1));
    destroy_publisher(publisher);
    let sample = receive(subscriber, -1)
        .expect("drained first")
        .expect("a sample");
    assert_eq!(sample_bytes(sample), b"last words");
    assert_eq!(release(subscriber, sample), S::RESMEM_OK);
    // Waiting forever returns: the publisher is gone.
    assert_eq!(receive(subscriber, -1), Err(S::RESMEM_PUBLISHER_GONE));
    assert_eq!(
        last_error(),
        "resmem_subscriber_receive: the publisher is gone"
    );
    assert_eq!(receive(subscriber, 0), Err(S::RESMEM_PUBLISHER_GONE));
    destroy_subscriber(subscriber);
    ns.assert_empty();
}

#[test]
fn loans_outlive_their_publisher_handle_and_samples_their_subscriber_handle() {
    let ns = Ns::new("outlive");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);
    assert_eq!(send_copy(publisher, b"kept"), Ok(1));
    let sample = receive(subscriber, 1000)
        .expect("receive")
        .expect("a sample");
    let loan = loan(publisher, 32).expect("loan");

    destroy_publisher(publisher);
    destroy_subscriber(subscriber);
    // Both still map their bytes.
    loan_bytes(loan).fill(1);
    assert_eq!(sample_bytes(sample), b"kept");
    // SAFETY: a live loan, discarded once (NULL: its own publisher).
    let status = unsafe { resmem_loan_discard(ptr::null_mut(), loan) };
    assert_eq!(status, S::RESMEM_OK);
    assert_eq!(release(ptr::null_mut(), sample), S::RESMEM_OK);
    // With the last loan and sample gone, so is the service.
    ns.assert_empty();
}

#[test]
fn a_loan_sent_through_another_publisher_is_refused_and_returned_to_its_own() {
    let ns = Ns::new("foreign");
    let opts = resmem_publisher_options {
        max_loans: 1,
        ..publisher_options(&ns)
    };
    let (p1, p2) = (
        create_publisher("one", &opts).expect("publisher one"),
        create_publisher("two", &opts).expect("publisher two"),
    );
    let first = loan(p1, 16).expect("loan");
    assert_eq!(
        loan(p1, 16).err(),
        Some(S::RESMEM_LIMIT_REACHED),
        "max_loans 1"
    );
    assert_eq!(send(p2, first), Err(S::RESMEM_INVALID_ARGUMENT));
    assert!(
        last_error().contains("another publisher"),
        "{}",
        last_error()
    );
    // The loan went back to p1: it may loan again.
    let again = loan(p1, 16).expect("the loan was returned");
    // SAFETY: a live loan, discarded once, with the wrong publisher named.
    let status = unsafe { resmem_loan_discard(p2, again) };
    assert_eq!(status, S::RESMEM_INVALID_ARGUMENT);
    let third = loan(p1, 16).expect("returned by the refused discard as well");
    // SAFETY: a live loan, discarded once.
    assert_eq!(unsafe { resmem_loan_discard(p1, third) }, S::RESMEM_OK);
    destroy_publisher(p1);
    destroy_publisher(p2);
    ns.assert_empty();
}

#[test]
fn a_sample_released_to_another_subscriber_is_refused_and_released_to_its_own() {
    let ns = Ns::new("foreignsample");
    let opts = resmem_publisher_options {
        max_borrowed: 1,
        ..publisher_options(&ns)
    };
    let publisher = create_publisher("svc", &opts).expect("publisher");
    let (s1, s2) = (
        create_subscriber("svc", &ns, 1000).expect("subscriber one"),
        create_subscriber("svc", &ns, 1000).expect("subscriber two"),
    );
    assert_eq!(wait_for_subscribers(publisher, 2), 2);
    assert_eq!(send_copy(publisher, b"a"), Ok(2));
    assert_eq!(send_copy(publisher, b"b"), Ok(2));
    let held = receive(s1, 1000).expect("receive").expect("a sample");
    assert_eq!(
        receive(s1, 0),
        Err(S::RESMEM_LIMIT_REACHED),
        "max_borrowed 1"
    );
    assert_eq!(release(s2, held), S::RESMEM_INVALID_ARGUMENT);
    let next = receive(s1, 1000)
        .expect("the sample was released")
        .expect("a sample");
    assert_eq!(sample_bytes(next), b"b");
    assert_eq!(release(s1, next), S::RESMEM_OK);
    destroy_subscriber(s1);
    destroy_subscriber(s2);
    destroy_publisher(publisher);
    ns.assert_empty();
}

/// `resmem_publisher_options` as C may fill it: any integer in the overflow field.
#[repr(C)]
struct CPublisherOptions {
    namespace_: *const std::ffi::c_char,
    max_subscribers: usize,
    buffer_size: usize,
    max_loans: usize,
    max_borrowed: usize,
    overflow: i32,
    chunk_size: usize,
    reclaim_stale: u8,
}

#[test]
fn bad_settings_names_and_duplicates_are_refused() {
    let ns = Ns::new("badpub");
    let raw = CPublisherOptions {
        namespace_: ns.ptr(),
        max_subscribers: 0,
        buffer_size: 0,
        max_loans: 0,
        max_borrowed: 0,
        overflow: -1,
        chunk_size: 0,
        reclaim_stale: 0,
    };
    let service = c("svc");
    let mut publisher = ptr::null_mut();
    // SAFETY: the struct has resmem_publisher_options' layout (integers for enum and bool).
    let status = unsafe {
        resmem_publisher_create(service.as_ptr(), ptr::from_ref(&raw).cast(), &mut publisher)
    };
    assert_eq!(status, S::RESMEM_INVALID_ARGUMENT);
    assert!(last_error().contains("overflow -1"), "{}", last_error());
    assert!(publisher.is_null());

    let huge = resmem_publisher_options {
        max_subscribers: 1 << 30,
        ..publisher_options(&ns)
    };
    assert_eq!(
        create_publisher("svc", &huge).err(),
        Some(S::RESMEM_INVALID_ARGUMENT)
    );
    for bad in ["", "a/b", ".."] {
        assert_eq!(
            create_publisher(bad, &publisher_options(&ns)).err(),
            Some(S::RESMEM_INVALID_NAME)
        );
        assert_eq!(
            create_subscriber(bad, &ns, 0).err(),
            Some(S::RESMEM_INVALID_NAME)
        );
    }
    assert_eq!(
        create_subscriber("svc", &ns, 0).err(),
        Some(S::RESMEM_DOES_NOT_EXIST)
    );

    let block = resmem_publisher_options {
        overflow: resmem_overflow::RESMEM_OVERFLOW_BLOCK,
        reclaim_stale: true,
        ..publisher_options(&ns)
    };
    let publisher = create_publisher("svc", &block).expect("publisher");
    assert_eq!(
        create_publisher("svc", &publisher_options(&ns)).err(),
        Some(S::RESMEM_ALREADY_EXISTS)
    );
    let opts = resmem_publisher_options {
        chunk_size: usize::MAX,
        ..publisher_options(&ns)
    };
    assert_eq!(
        create_publisher("other", &opts).err(),
        Some(S::RESMEM_INVALID_LAYOUT)
    );
    assert_eq!(
        loan(publisher, usize::MAX).err(),
        Some(S::RESMEM_INVALID_LAYOUT)
    );
    assert_eq!(
        loan(publisher, 1 << 40).err(),
        Some(S::RESMEM_INVALID_LAYOUT)
    );
    destroy_publisher(publisher);
    ns.assert_empty();
}

#[test]
fn send_copy_of_nothing_needs_no_data_pointer_and_accessors_of_null_are_inert() {
    let ns = Ns::new("empty");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);
    let mut delivered = 0;
    // SAFETY: a live handle; no data is read for length 0.
    let status = unsafe { resmem_publisher_send_copy(publisher, ptr::null(), 0, &mut delivered) };
    assert_eq!((status, delivered), (S::RESMEM_OK, 1));
    let sample = receive(subscriber, 1000)
        .expect("receive")
        .expect("a sample");
    // SAFETY: a live sample.
    assert_eq!(unsafe { resmem_sample_len(sample) }, 0);
    assert_eq!(release(subscriber, sample), S::RESMEM_OK);
    // SAFETY: NULL loans and samples are accepted by the accessors.
    unsafe {
        assert!(resmem_loan_data(ptr::null_mut()).is_null());
        assert_eq!(resmem_loan_len(ptr::null()), 0);
        assert_eq!(resmem_loan_capacity(ptr::null()), 0);
        assert_eq!(resmem_loan_offset(ptr::null()), RESMEM_NO_OFFSET);
        assert!(resmem_sample_data(ptr::null()).is_null());
        assert_eq!(resmem_sample_len(ptr::null()), 0);
        assert_eq!(resmem_sample_offset(ptr::null()), RESMEM_NO_OFFSET);
    }
    destroy_subscriber(subscriber);
    destroy_publisher(publisher);
    ns.assert_empty();
}

#[test]
fn handles_move_between_threads_and_take_calls_from_several_at_once() {
    let ns = Ns::new("threads");
    let publisher = create_publisher("svc", &publisher_options(&ns)).expect("publisher");
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);
    // Raw pointers are not Send; the handles are, by contract: carry their addresses.
    let (p, s) = (publisher as usize, subscriber as usize);
    std::thread::scope(|scope| {
        for t in 0..2u8 {
            scope.spawn(move || {
                for i in 0..4u8 {
                    let publisher = p as *mut resmem_publisher;
                    assert_eq!(send_copy(publisher, &[t, i]), Ok(1));
                }
            });
        }
    });
    let got = std::thread::spawn(move || {
        let subscriber = s as *mut resmem_subscriber;
        let mut got = Vec::new();
        while let Some(sample) = receive(subscriber, 0).expect("receive") {
            got.push(sample_bytes(sample));
            assert_eq!(release(subscriber, sample), S::RESMEM_OK);
        }
        got
    })
    .join()
    .expect("the receiving thread");
    let mut got = got;
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..2u8)
        .flat_map(|t| (0..4u8).map(move |i| vec![t, i]))
        .collect();
    want.sort();
    assert_eq!(got, want);
    destroy_subscriber(subscriber);
    destroy_publisher(publisher);
    ns.assert_empty();
}
