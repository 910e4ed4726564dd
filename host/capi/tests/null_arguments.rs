//! Every required pointer of every entry point, passed as NULL: `RESMEM_NULL_ARGUMENT`, the
//! argument named in the last error, nothing created and no out-parameter written.

mod common;

use std::ffi::c_void;
use std::ptr::{null, null_mut};

use common::*;
use resmem_c::*;
use resmem_status as S;

/// Asserts that `status` is `RESMEM_NULL_ARGUMENT` and the message names `function` and
/// `argument`.
fn assert_null(status: resmem_status, function: &str, argument: &str) {
    assert_eq!(status, S::RESMEM_NULL_ARGUMENT, "{function}({argument})");
    assert_eq!(last_error(), format!("{function}: `{argument}` is NULL"));
}

#[test]
fn memory_and_view_functions() {
    let ns = Ns::new("nullmem");
    let name = c("m");
    let opts = resmem_memory_options {
        namespace_: ns.ptr(),
        ..Default::default()
    };
    let mut memory = std::ptr::dangling_mut();
    // SAFETY: every pointer is NULL or valid.
    unsafe {
        assert_null(
            resmem_memory_create(null(), &opts, &mut memory),
            "resmem_memory_create",
            "name",
        );
        assert_null(
            resmem_memory_create(name.as_ptr(), &opts, null_mut()),
            "resmem_memory_create",
            "out",
        );
    }
    assert_eq!(memory, std::ptr::dangling_mut(), "not written");
    assert!(!exists("m", &ns), "nothing was created");

    let memory = create_memory("m", &ns);
    let (mut offset, mut ptr) = (7u64, null_mut::<c_void>());
    // SAFETY: every pointer is NULL, valid or a live handle.
    unsafe {
        let f = "resmem_memory_allocate";
        assert_null(
            resmem_memory_allocate(null_mut(), 8, 8, &mut offset, &mut ptr),
            f,
            "memory",
        );
        assert_null(
            resmem_memory_allocate(memory, 8, 8, null_mut(), &mut ptr),
            f,
            "out_offset",
        );
        assert_null(
            resmem_memory_allocate(memory, 8, 8, &mut offset, null_mut()),
            f,
            "out_ptr",
        );
        assert_eq!((offset, ptr), (7, null_mut()), "not written");
        assert_null(
            resmem_memory_deallocate(null_mut(), 0, 8, 8),
            "resmem_memory_deallocate",
            "memory",
        );
        resmem_memory_close(null_mut());
    }

    let (chunk, _) = allocate(memory, 8, 8).expect("allocate");
    let mut view = std::ptr::dangling_mut();
    // SAFETY: every pointer is NULL, valid or a live handle.
    unsafe {
        let f = "resmem_view_open";
        assert_null(
            resmem_view_open(null(), ns.ptr(), 0, 0, &mut view),
            f,
            "name",
        );
        assert_null(
            resmem_view_open(name.as_ptr(), ns.ptr(), 0, 0, null_mut()),
            f,
            "out",
        );
        assert_eq!(view, std::ptr::dangling_mut(), "not written");
    }
    let view = open_view("m", &ns, 0).expect("open");
    let mut seen = null::<c_void>();
    // SAFETY: every pointer is NULL, valid or a live handle.
    unsafe {
        let f = "resmem_view_register";
        assert_null(
            resmem_view_register(null_mut(), chunk, 8, &mut seen),
            f,
            "view",
        );
        assert_null(
            resmem_view_register(view, chunk, 8, null_mut()),
            f,
            "out_ptr",
        );
        assert!(seen.is_null());
        assert_null(
            resmem_view_unregister(null_mut(), chunk),
            "resmem_view_unregister",
            "view",
        );
        resmem_view_close(null_mut());
    }
    // Nothing was registered by the refused calls.
    assert_eq!(unregister(view, chunk), S::RESMEM_INVALID_OFFSET);
    close_view(view);
    assert_eq!(deallocate(memory, chunk, 8, 8), S::RESMEM_OK);
    close_memory(memory);
    ns.assert_empty();
}

#[test]
fn channel_functions() {
    let ns = Ns::new("nullch");
    let service = c("svc");
    let opts = publisher_options(&ns);
    let mut publisher = std::ptr::dangling_mut();
    // SAFETY: every pointer is NULL or valid.
    unsafe {
        let f = "resmem_publisher_create";
        assert_null(
            resmem_publisher_create(null(), &opts, &mut publisher),
            f,
            "service",
        );
        assert_null(
            resmem_publisher_create(service.as_ptr(), &opts, null_mut()),
            f,
            "out",
        );
    }
    assert_eq!(publisher, std::ptr::dangling_mut(), "not written");
    assert!(!exists("svc", &ns), "nothing was created");

    let publisher = create_publisher("svc", &opts).expect("publisher");
    let mut subscriber = std::ptr::dangling_mut();
    // SAFETY: every pointer is NULL, valid or a live handle.
    unsafe {
        let f = "resmem_subscriber_create";
        assert_null(
            resmem_subscriber_create(null(), ns.ptr(), 0, &mut subscriber),
            f,
            "service",
        );
        assert_null(
            resmem_subscriber_create(service.as_ptr(), ns.ptr(), 0, null_mut()),
            f,
            "out",
        );
        assert_eq!(subscriber, std::ptr::dangling_mut(), "not written");
    }
    let subscriber = create_subscriber("svc", &ns, 1000).expect("subscriber");
    assert_eq!(wait_for_subscribers(publisher, 1), 1);

    let mut loan = std::ptr::dangling_mut();
    let mut delivered = 99usize;
    let data = [1u8; 4];
    // SAFETY: every pointer is NULL, valid or a live handle.
    unsafe {
        let f = "resmem_publisher_loan";
        assert_null(
            resmem_publisher_loan(null_mut(), 8, &mut loan),
            f,
            "publisher",
        );
        assert_null(resmem_publisher_loan(publisher, 8, null_mut()), f, "out");
        assert_eq!(loan, std::ptr::dangling_mut(), "not written");
        assert_null(
            resmem_loan_set_len(null_mut(), 0),
            "resmem_loan_set_len",
            "loan",
        );
        let f = "resmem_publisher_send";
        assert_null(
            resmem_publisher_send(publisher, null_mut(), &mut delivered),
            f,
            "loan",
        );
        assert_null(
            resmem_loan_discard(publisher, null_mut()),
            "resmem_loan_discard",
            "loan",
        );
        let f = "resmem_publisher_send_copy";
        let ok = data.as_ptr().cast();
        assert_null(
            resmem_publisher_send_copy(null_mut(), ok, 4, &mut delivered),
            f,
            "publisher",
        );
        assert_null(
            resmem_publisher_send_copy(publisher, null(), 4, &mut delivered),
            f,
            "data",
        );
        assert_null(
            resmem_publisher_wait_for_subscribers(null_mut(), 1, 0, &mut delivered),
            "resmem_publisher_wait_for_subscribers",
            "publisher",
        );
        assert_eq!(delivered, 99, "not written");
        resmem_publisher_destroy(null_mut());
    }
    // A loan handed to a NULL publisher is consumed all the same (returned unsent): with
    // max_loans 16, 17 such round trips only work if each loan came back.
    for _ in 0..17 {
        let loan = common::loan(publisher, 8).expect("loan");
        // SAFETY: a live loan, consumed by the call.
        let status = unsafe { resmem_publisher_send(null_mut(), loan, null_mut()) };
        assert_null(status, "resmem_publisher_send", "publisher");
    }
    // Optional out-parameters may be NULL.
    // SAFETY: a live handle and readable data.
    let status =
        unsafe { resmem_publisher_send_copy(publisher, data.as_ptr().cast(), 4, null_mut()) };
    assert_eq!(status, S::RESMEM_OK);
    // SAFETY: a live handle.
    let status = unsafe { resmem_publisher_wait_for_subscribers(publisher, 1, 0, null_mut()) };
    assert_eq!(status, S::RESMEM_OK);

    let mut sample = std::ptr::dangling_mut();
    // SAFETY: every pointer is NULL, valid or a live handle.
    unsafe {
        let f = "resmem_subscriber_receive";
        assert_null(
            resmem_subscriber_receive(null_mut(), 0, &mut sample),
            f,
            "subscriber",
        );
        assert_null(
            resmem_subscriber_receive(subscriber, 0, null_mut()),
            f,
            "out",
        );
        assert_eq!(sample, std::ptr::dangling_mut(), "not written");
        let f = "resmem_subscriber_release";
        assert_null(
            resmem_subscriber_release(subscriber, null_mut()),
            f,
            "sample",
        );
        resmem_subscriber_destroy(null_mut());
    }
    // The refused receives took nothing: the one sample sent is still queued.
    let got = receive(subscriber, 1000)
        .expect("receive")
        .expect("the sample");
    assert_eq!(sample_bytes(got), data);
    assert_eq!(release(subscriber, got), S::RESMEM_OK);
    destroy_subscriber(subscriber);
    destroy_publisher(publisher);
    ns.assert_empty();
}

#[test]
fn name_functions() {
    let ns = Ns::new("nullname");
    let name = c("m");
    let (mut names, mut count) = (std::ptr::dangling_mut(), 5usize);
    let mut flag = true;
    // SAFETY: every pointer is NULL or valid.
    unsafe {
        assert_null(
            resmem_list(ns.ptr(), null_mut(), &mut count),
            "resmem_list",
            "out_names",
        );
        assert_null(
            resmem_list(ns.ptr(), &mut names, null_mut()),
            "resmem_list",
            "out_count",
        );
        assert_eq!((names, count), (std::ptr::dangling_mut(), 5), "not written");
        resmem_list_free(null_mut(), 3);
        assert_null(
            resmem_exists(null(), ns.ptr(), &mut flag),
            "resmem_exists",
            "name",
        );
        assert_null(
            resmem_exists(name.as_ptr(), ns.ptr(), null_mut()),
            "resmem_exists",
            "out",
        );
        assert_null(
            resmem_remove(null(), ns.ptr(), &mut flag),
            "resmem_remove",
            "name",
        );
        assert_null(
            resmem_remove(name.as_ptr(), ns.ptr(), null_mut()),
            "resmem_remove",
            "out_removed",
        );
    }
    assert!(flag, "not written");
    ns.assert_empty();
}
