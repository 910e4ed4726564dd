//! What the C API tests share: unique namespaces that must be empty at the end, C strings,
//! and safe wrappers over the entry points the tests use most.

#![allow(dead_code)]

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use resmem_c::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Where POSIX shared-memory objects appear on Linux.
const SHM_DIR: &str = "/dev/shm";

/// A namespace of its own per test, `capi<pid>_<n><tag>_`. Dropping it fails the test when
/// an object with its prefix is left in /dev/shm (and removes them).
pub struct Ns {
    prefix: String,
    c: CString,
}

impl Ns {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("capi{}_{n}{tag}_", std::process::id());
        Self {
            c: CString::new(prefix.clone()).expect("no NUL"),
            prefix,
        }
    }

    pub fn ptr(&self) -> *const c_char {
        self.c.as_ptr()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Objects in /dev/shm with this prefix, sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)
            .expect("/dev/shm is readable")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }

    /// Fails unless nothing with this prefix is left, waiting a little for objects a
    /// subscriber or publisher removes as it goes.
    pub fn assert_empty(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !self.objects().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(self.objects(), Vec::<String>::new(), "objects left behind");
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let left = self.objects();
        for object in &left {
            let _ = std::fs::remove_file(format!("{SHM_DIR}/{object}"));
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("objects left behind (now removed): {left:?}");
        }
    }
}

pub fn c(text: &str) -> CString {
    CString::new(text).expect("no NUL in a test string")
}

/// This thread's last error message.
pub fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string, valid until the next call on
    // this thread; it is copied at once.
    unsafe { CStr::from_ptr(resmem_last_error_message()) }
        .to_str()
        .expect("UTF-8")
        .to_owned()
}

/// Memory `name` in `ns` with default options.
pub fn create_memory(name: &str, ns: &Ns) -> *mut resmem_memory {
    let opts = resmem_memory_options {
        namespace_: ns.ptr(),
        ..resmem_memory_options_default()
    };
    create_memory_with(name, &opts)
        .unwrap_or_else(|s| panic!("create {name}: {s:?} {}", last_error()))
}

pub fn create_memory_with(
    name: &str,
    opts: &resmem_memory_options,
) -> Result<*mut resmem_memory, resmem_status> {
    let name = c(name);
    let mut memory = ptr::null_mut();
    // SAFETY: a valid string, options and out-pointer.
    let status = unsafe { resmem_memory_create(name.as_ptr(), opts, &mut memory) };
    match status {
        resmem_status::RESMEM_OK => Ok(memory),
        other => Err(other),
    }
}

/// A chunk: its packed offset and its address in this process.
pub fn allocate(
    memory: *mut resmem_memory,
    size: usize,
    align: usize,
) -> Result<(u64, *mut u8), resmem_status> {
    let (mut offset, mut ptr) = (u64::MAX, ptr::null_mut::<c_void>());
    // SAFETY: a live handle and valid out-pointers.
    let status = unsafe { resmem_memory_allocate(memory, size, align, &mut offset, &mut ptr) };
    match status {
        resmem_status::RESMEM_OK => Ok((offset, ptr.cast())),
        other => Err(other),
    }
}

pub fn deallocate(
    memory: *mut resmem_memory,
    offset: u64,
    size: usize,
    align: usize,
) -> resmem_status {
    // SAFETY: a live handle; any offset is checked.
    unsafe { resmem_memory_deallocate(memory, offset, size, align) }
}

pub fn close_memory(memory: *mut resmem_memory) {
    // SAFETY: a live handle, not used afterwards.
    unsafe { resmem_memory_close(memory) }
}

pub fn open_view(name: &str, ns: &Ns, writable: i32) -> Result<*mut resmem_view, resmem_status> {
    let name = c(name);
    let mut view = ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    let status = unsafe { resmem_view_open(name.as_ptr(), ns.ptr(), writable, 0, &mut view) };
    match status {
        resmem_status::RESMEM_OK => Ok(view),
        other => Err(other),
    }
}

pub fn register(
    view: *mut resmem_view,
    offset: u64,
    len: usize,
) -> Result<*const u8, resmem_status> {
    let mut ptr = ptr::null::<c_void>();
    // SAFETY: a live handle and a valid out-pointer.
    let status = unsafe { resmem_view_register(view, offset, len, &mut ptr) };
    match status {
        resmem_status::RESMEM_OK => Ok(ptr.cast()),
        other => Err(other),
    }
}

pub fn unregister(view: *mut resmem_view, offset: u64) -> resmem_status {
    // SAFETY: a live handle; any offset is checked.
    unsafe { resmem_view_unregister(view, offset) }
}

pub fn close_view(view: *mut resmem_view) {
    // SAFETY: a live handle, not used afterwards.
    unsafe { resmem_view_close(view) }
}

pub fn exists(name: &str, ns: &Ns) -> bool {
    let name = c(name);
    let mut found = false;
    // SAFETY: valid strings and out-pointer.
    let status = unsafe { resmem_exists(name.as_ptr(), ns.ptr(), &mut found) };
    assert_eq!(status, resmem_status::RESMEM_OK, "{}", last_error());
    found
}

/// The names `resmem_list` gives for `ns`, freed again with `resmem_list_free`.
pub fn list(ns: &Ns) -> Vec<String> {
    let (mut names, mut count) = (ptr::null_mut::<*mut c_char>(), usize::MAX);
    // SAFETY: a valid string and out-pointers.
    let status = unsafe { resmem_list(ns.ptr(), &mut names, &mut count) };
    assert_eq!(status, resmem_status::RESMEM_OK, "{}", last_error());
    let listed = (0..count)
        .map(|i| {
            // SAFETY: `names` holds `count` NUL-terminated strings until freed below.
            unsafe { CStr::from_ptr(*names.add(i)) }
                .to_str()
                .expect("UTF-8")
                .to_owned()
        })
        .collect();
    if count == 0 {
        assert!(names.is_null(), "an empty list is NULL");
    }
    // SAFETY: what resmem_list returned, freed once.
    unsafe { resmem_list_free(names, count) };
    listed
}

pub fn publisher_options(ns: &Ns) -> resmem_publisher_options {
    resmem_publisher_options {
        namespace_: ns.ptr(),
        ..resmem_publisher_options_default()
    }
}

pub fn create_publisher(
    service: &str,
    opts: &resmem_publisher_options,
) -> Result<*mut resmem_publisher, resmem_status> {
    let service = c(service);
    let mut publisher = ptr::null_mut();
    // SAFETY: valid strings, options and out-pointer.
    let status = unsafe { resmem_publisher_create(service.as_ptr(), opts, &mut publisher) };
    match status {
        resmem_status::RESMEM_OK => Ok(publisher),
        other => Err(other),
    }
}

pub fn create_subscriber(
    service: &str,
    ns: &Ns,
    timeout_ms: u32,
) -> Result<*mut resmem_subscriber, resmem_status> {
    let service = c(service);
    let mut subscriber = ptr::null_mut();
    // SAFETY: valid strings and out-pointer.
    let status = unsafe {
        resmem_subscriber_create(service.as_ptr(), ns.ptr(), timeout_ms, &mut subscriber)
    };
    match status {
        resmem_status::RESMEM_OK => Ok(subscriber),
        other => Err(other),
    }
}

pub fn loan(
    publisher: *mut resmem_publisher,
    size: usize,
) -> Result<*mut resmem_loan, resmem_status> {
    let mut loan = ptr::null_mut();
    // SAFETY: a live handle and a valid out-pointer.
    let status = unsafe { resmem_publisher_loan(publisher, size, &mut loan) };
    match status {
        resmem_status::RESMEM_OK => Ok(loan),
        other => Err(other),
    }
}

/// The loan's bytes (a live loan's, used by this thread alone).
pub fn loan_bytes<'a>(loan: *mut resmem_loan) -> &'a mut [u8] {
    // SAFETY: a live loan: `resmem_loan_capacity` writable bytes at `resmem_loan_data`.
    unsafe {
        std::slice::from_raw_parts_mut(resmem_loan_data(loan).cast(), resmem_loan_capacity(loan))
    }
}

/// Sends `loan` (consumed); how many subscribers got it.
pub fn send(
    publisher: *mut resmem_publisher,
    loan: *mut resmem_loan,
) -> Result<usize, resmem_status> {
    let mut delivered = usize::MAX;
    // SAFETY: live handles; the loan is not used afterwards.
    let status = unsafe { resmem_publisher_send(publisher, loan, &mut delivered) };
    match status {
        resmem_status::RESMEM_OK => Ok(delivered),
        other => Err(other),
    }
}

pub fn send_copy(publisher: *mut resmem_publisher, data: &[u8]) -> Result<usize, resmem_status> {
    let mut delivered = usize::MAX;
    // SAFETY: a live handle; `data` is readable for its length.
    let status = unsafe {
        resmem_publisher_send_copy(publisher, data.as_ptr().cast(), data.len(), &mut delivered)
    };
    match status {
        resmem_status::RESMEM_OK => Ok(delivered),
        other => Err(other),
    }
}

pub fn wait_for_subscribers(publisher: *mut resmem_publisher, count: usize) -> usize {
    let mut connected = usize::MAX;
    // SAFETY: a live handle and a valid out-pointer.
    let status =
        unsafe { resmem_publisher_wait_for_subscribers(publisher, count, 10_000, &mut connected) };
    assert_eq!(status, resmem_status::RESMEM_OK, "{}", last_error());
    connected
}

pub fn destroy_publisher(publisher: *mut resmem_publisher) {
    // SAFETY: a live handle, not used afterwards.
    unsafe { resmem_publisher_destroy(publisher) }
}

/// `Ok(None)`: the timeout passed with nothing.
pub fn receive(
    subscriber: *mut resmem_subscriber,
    timeout_ms: i64,
) -> Result<Option<*mut resmem_sample>, resmem_status> {
    // A sentinel that must be overwritten on success.
    let mut sample = ptr::dangling_mut::<resmem_sample>();
    // SAFETY: a live handle and a valid out-pointer.
    let status = unsafe { resmem_subscriber_receive(subscriber, timeout_ms, &mut sample) };
    match status {
        resmem_status::RESMEM_OK => Ok((!sample.is_null()).then_some(sample)),
        other => {
            assert_eq!(sample, ptr::dangling_mut(), "out written on failure");
            Err(other)
        }
    }
}

/// The sample's bytes, copied.
pub fn sample_bytes(sample: *const resmem_sample) -> Vec<u8> {
    // SAFETY: a live sample: `resmem_sample_len` readable bytes at `resmem_sample_data`.
    unsafe {
        std::slice::from_raw_parts(
            resmem_sample_data(sample).cast::<u8>(),
            resmem_sample_len(sample),
        )
    }
    .to_vec()
}

pub fn release(subscriber: *mut resmem_subscriber, sample: *mut resmem_sample) -> resmem_status {
    // SAFETY: live handles (or NULL subscriber); the sample is not used afterwards.
    unsafe { resmem_subscriber_release(subscriber, sample) }
}

pub fn destroy_subscriber(subscriber: *mut resmem_subscriber) {
    // SAFETY: a live handle, not used afterwards.
    unsafe { resmem_subscriber_destroy(subscriber) }
}
