//! How often a waiting subscriber sleeps. A wake-up costs tens of µs on a VM, so a subscriber
//! that shares its CPU with its publisher (a bridge importer on zenoh's receive thread, a pinned
//! pipeline) must let the publisher fill a batch instead of being woken for every sample; and
//! one that shares its CPU with somebody else must not queue behind them.

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use resmem::{Config, Overflow, Publisher, Subscriber};

mod common;
use common::unique_prefix;

const SAMPLES: u64 = 8_000;
const BURST: u64 = 32;

/// The tests pin threads to one CPU: one at a time, or each would see the other's threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `sched_getaffinity`, so it is below `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of exactly the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// The first CPU this thread may run on.
fn some_cpu() -> usize {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable `cpu_set_t` of exactly the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below `CPU_SETSIZE`.
        .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .expect("some CPU")
}

/// Times the calling thread went to sleep (voluntary context switches; a yield is not one).
fn sleeps() -> i64 {
    // SAFETY: an all-zero `rusage` is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a writable `rusage`; RUSAGE_THREAD is this thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage.ru_nvcsw
}

/// Sends a 64-byte sample that starts with `value`.
fn send_stamp(publisher: &Publisher, value: u64) {
    let layout = Layout::from_size_align(64, 8).expect("layout");
    let mut sample = publisher.loan(layout).expect("loan");
    sample.payload_mut()[..8].copy_from_slice(&value.to_le_bytes());
    sample.send().expect("send");
}

/// The value the next sample starts with (waiting up to 10 s for it).
fn receive_stamp(subscriber: &Subscriber) -> u64 {
    let sample = subscriber
        .receive_timeout(Duration::from_secs(10))
        .expect("receive")
        .expect("a sample within 10 s");
    u64::from_le_bytes(sample.payload()[..8].try_into().expect("8 bytes"))
}

#[test]
fn a_subscriber_sharing_its_cpu_with_the_publisher_is_not_woken_per_sample() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let config = Config::default().prefix(&unique_prefix());
    let cpu = some_cpu();
    let publisher = Publisher::builder("cpu-shared")
        .config(&config)
        .overflow(Overflow::Block)
        .buffer_size(256)
        .create()
        .expect("publisher");
    let subscriber = Subscriber::builder("cpu-shared")
        .config(&config)
        .open()
        .expect("subscriber");
    let receiver = std::thread::spawn(move || {
        pin(cpu);
        let mut slept = 0;
        let mut expected = 0u64;
        while expected < SAMPLES {
            let before = sleeps();
            let seq = receive_stamp(&subscriber);
            // The first wait is an idle one (on the socket), before the stream runs.
            if expected > 0 {
                slept += sleeps() - before;
            }
            assert_eq!(seq, expected, "samples out of order");
            expected += 1;
        }
        slept
    });
    pin(cpu);
    for seq in 0..SAMPLES {
        send_stamp(&publisher, seq);
        // Samples come in bursts, as from a network: the publisher sleeps between them.
        if seq % BURST == BURST - 1 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    let slept = receiver.join().expect("receiver");
    // Once per burst is the floor; woken per sample, it sleeps for about a third of them.
    assert!(
        slept < (2 * SAMPLES / BURST) as i64,
        "the subscriber slept {slept} times for {SAMPLES} samples"
    );
}

#[test]
fn a_subscriber_sharing_its_cpu_with_a_hog_is_still_woken_at_once() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let config = Config::default().prefix(&unique_prefix());
    let cpu = some_cpu();
    let publisher = Publisher::builder("cpu-hogged")
        .config(&config)
        .create()
        .expect("publisher");
    let subscriber = Subscriber::builder("cpu-hogged")
        .config(&config)
        .open()
        .expect("subscriber");
    let stop = Arc::new(AtomicBool::new(false));
    let hog = std::thread::spawn({
        let stop = stop.clone();
        move || {
            pin(cpu);
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    });
    let base = Instant::now();
    const SENT: u64 = 300;
    let receiver = std::thread::spawn(move || {
        pin(cpu);
        let mut delays = Vec::new();
        for _ in 0..SENT {
            let sent = receive_stamp(&subscriber);
            delays.push(base.elapsed().as_nanos() as u64 - sent);
        }
        delays
    });
    pin(cpu);
    for _ in 0..SENT {
        send_stamp(&publisher, base.elapsed().as_nanos() as u64);
        // Often enough to keep the subscriber hot, rarely enough that each sample waits.
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut delays = receiver.join().expect("receiver");
    stop.store(true, Ordering::Relaxed);
    hog.join().expect("hog");
    delays.sort_unstable();
    let p90 = Duration::from_nanos(delays[delays.len() * 9 / 10]);
    // Woken, the subscriber preempts the hog within µs; yielding to it, it waits for the
    // hog's time slice (about 1 ms here) after most samples.
    assert!(
        p90 < Duration::from_micros(500),
        "90th percentile delay {p90:?} behind a CPU hog"
    );
}
