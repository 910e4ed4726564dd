//! Review of the publish-subscribe channel: each test demonstrates one bug (it fails until the
//! bug is fixed). Real POSIX shm, one process; unique prefixes per test and pid.

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use resmem::channel::layout::{Geometry, offsets};
use resmem::{ChannelError, Config, Overflow, Publisher, Subscriber};

fn config(test: &str) -> Config {
    Config::default().prefix(&format!("rmrv{}_{test}_", std::process::id()))
}

fn byte(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Objects in /dev/shm whose name starts with the config's prefix.
fn leftovers(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(config.get_prefix()))
        .collect();
    names.sort();
    names
}

/// Writes `value` at `at` in the service's control object, as a hostile peer would.
fn scribble(config: &Config, service: &str, at: usize, value: u64) {
    let name = format!("{}{service}__svc", config.get_prefix());
    let control = config
        .get_backend()
        .open(&name, resmem::AccessMode::ReadWrite)
        .unwrap();
    assert!(at + 8 <= control.len());
    // SAFETY: in bounds (checked above) and 8-aligned; the mapping lives until the end of
    // this function; the channel reads these words atomically.
    unsafe { (control.as_ptr().add(at) as *mut u64).write_volatile(value) };
}

/// Reads the u64 at `at` in the service's control object.
fn peek(config: &Config, service: &str, at: usize) -> u64 {
    let name = format!("{}{service}__svc", config.get_prefix());
    let control = config
        .get_backend()
        .open(&name, resmem::AccessMode::Read)
        .unwrap();
    // SAFETY: in bounds of the header, 8-aligned, mapped for the duration of the read.
    unsafe { (control.as_ptr().add(at) as *const u64).read_volatile() }
}

/// Byte offset of the publisher's epoch in the control object's header (`ServiceHeader`:
/// magic, version, overflow, max_subscribers, buffer_size, completion_size, max_borrowed,
/// slot_stride, total_size, prefix_hash, memory_id, epoch).
const EPOCH_AT: usize = 64;

/// UNSOUND: `Publisher::memory()` hands safe code the `&Memory` the samples are chunks of,
/// and `Memory::try_deallocate` is safe. Freeing a loaned chunk through it
/// (publisher.rs:290 `memory`) makes the next `loan` hand out the same chunk, so two live
/// `SampleMut`s give out `&mut [u8]` over the same bytes (`payload_mut`, publisher.rs:538) -
/// undefined behaviour from safe code only. Freeing a *sent* sample's chunk the same way makes
/// the publisher later free it a second time; release builds do that through the unchecked
/// `deallocate_bucket` (publisher.rs:432), i.e. a double free of a chunk a new loan may own.
#[test]
fn publisher_memory_lets_safe_code_alias_two_loans() {
    let config = config("alias");
    let publisher = Publisher::builder("svc").config(&config).create().unwrap();
    let first = publisher.loan(byte(64)).unwrap();
    // Entirely safe code:
    let freed = publisher.memory().try_deallocate(first.offset()).is_ok();
    let second = publisher.loan(byte(64)).unwrap();
    let aliased = first.offset() == second.offset();
    // Dropping both would free the chunk twice (a debug assertion in `cancel`): leak them.
    std::mem::forget(first);
    std::mem::forget(second);
    assert!(
        !(freed && aliased),
        "safe code freed a loaned chunk and the next loan aliases it: two &mut [u8] over one chunk"
    );
}

/// WRONG OVERFLOW SEMANTICS: `send` takes in no returned samples (`maintain(.., false)`,
/// publisher.rs:446, links.rs:88), so a subscriber's returns that arrived after the `loan`
/// still count as held. Under `DropOldest`/`DropNewest` `push` (links.rs:270, 287-292) then
/// finds `records.is_full(k)` with an *empty* queue and skips an honest subscriber that has
/// room: the sample is lost although nothing was queued (DropOldest is documented as
/// "the oldest queued sample is dropped to make room"). Input: buffer_size 1, max_borrowed 1;
/// send 0, receive it, send 1, loan, drop sample 0, receive 1, send the loan.
#[test]
fn an_honest_subscriber_with_an_empty_queue_is_skipped_by_send() {
    for policy in [Overflow::DropNewest, Overflow::DropOldest] {
        let config = config(&format!("skip{policy:?}"));
        let publisher = Publisher::builder("svc")
            .config(&config)
            .buffer_size(1)
            .max_borrowed(1)
            .overflow(policy)
            .create()
            .unwrap();
        let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
        assert_eq!(publisher.send_copy(&[0]).unwrap(), 1);
        let s0 = subscriber.receive().unwrap().expect("sample 0");
        assert_eq!(publisher.send_copy(&[1]).unwrap(), 1);
        let mut loan = publisher.loan(byte(1)).unwrap();
        loan.payload_mut()[0] = 2;
        drop(s0); // returned: the subscriber holds one sample (1, queued) from here on
        let s1 = subscriber.receive().unwrap().expect("sample 1");
        assert!(!subscriber.has_samples(), "the queue is empty");
        let delivered = loan.send().unwrap();
        drop(s1);
        assert_eq!(
            delivered, 1,
            "{policy:?}: an honest subscriber with an empty queue and room did not get the sample"
        );
        assert_eq!(
            subscriber.receive().unwrap().map(|s| s.payload()[0]),
            Some(2)
        );
    }
}

/// PANIC ON HOSTILE INPUT (and a wedged spin lock): a subscriber that takes over a slot left
/// normally (`SLOT_LEFT`) starts its private completion index from the shared `comp_write`
/// (subscriber.rs:220). A hostile previous occupant (or any peer) that set `comp_write` and
/// `comp_read` to `u64::MAX` makes the next occupant's `give_back` pass `observed_read` and
/// `push` at `u64::MAX`: `write + 1` overflows (queue.rs:133 and subscriber.rs:462), a panic in
/// `Sample::drop` in debug builds. The panic also leaves `completion_busy` set, so every later
/// `give_back` of that subscriber spins forever. (Release builds wrap instead; every return
/// after that is refused and the publisher believes the victim holds everything.)
#[test]
fn a_scribbled_completion_index_in_a_left_slot_panics_the_next_occupant() {
    let config = config("ovf");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .max_subscribers(1)
        .create()
        .unwrap();
    let slot = Geometry::new(1, 16, 8).unwrap().slot_offset(0);
    // The hostile occupant scribbles its own slot, then leaves normally.
    let hostile = Subscriber::builder("svc").config(&config).open().unwrap();
    scribble(&config, "svc", slot + offsets::COMP_WRITE, u64::MAX);
    scribble(&config, "svc", slot + offsets::COMP_READ, u64::MAX);
    drop(hostile);
    // The victim takes the slot over before the publisher's next call.
    let victim = Subscriber::builder("svc").config(&config).open().unwrap();
    assert_eq!(victim.slot(), 0);
    assert_eq!(publisher.send_copy(b"x").unwrap(), 1);
    let sample = victim.receive().unwrap().expect("delivered");
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(sample)));
    if dropped.is_err() {
        // Its spin lock is stuck: dropping it could hang; leak it (and remove its objects).
        std::mem::forget(victim);
        drop(publisher);
        for name in leftovers(&config) {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
    }
    assert!(
        dropped.is_ok(),
        "dropping a sample panicked on a scribbled completion index"
    );
}

/// SLOT LOST FOREVER (and leaked lock object): a joiner creates slot k's lock object, then
/// CASes the state word from FREE (subscriber.rs:196-237). Killed in between (or its
/// exclusive `flock` losing to another party's transient shared probe in `is_locked`,
/// mapping.rs:243, which leaves the object linked: posix.rs:61 `lost_to_remover`), the slot is
/// FREE with an unlocked lock object. Joiners then see `AlreadyExists`, call it stale and ask
/// for a reclaim, but the publisher's `scan` reclaims only non-FREE slots (links.rs:126):
/// nothing ever removes the object, the slot never becomes usable again, and the object stays
/// in /dev/shm after the publisher is dropped.
#[test]
fn a_joiner_killed_after_creating_its_lock_object_wedges_the_slot() {
    let config = config("wedge");
    let publisher = Publisher::builder("svc")
        .config(&config)
        .max_subscribers(1)
        .create()
        .unwrap();
    let epoch = peek(&config, "svc", EPOCH_AT);
    // What a joiner killed right after `backend.create` of its lock object leaves behind: the
    // object, unlocked (the OS released the dead process's lock); the slot is still FREE.
    let lock = format!("{}svc__sub{epoch:016x}_0", config.get_prefix());
    std::fs::File::create(format!("/dev/shm/{lock}")).unwrap();
    let done = AtomicBool::new(false);
    let opened = std::thread::scope(|s| {
        // An active publisher (it probes and reclaims as it runs).
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                publisher.update_connections();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let opened = Subscriber::builder("svc")
            .config(&config)
            .timeout(Duration::from_secs(2))
            .open();
        done.store(true, Ordering::Relaxed);
        opened
    });
    let opened = opened.map(|_| ());
    drop(publisher);
    let left = leftovers(&config);
    let _ = std::fs::remove_file(format!("/dev/shm/{lock}"));
    assert_eq!(
        opened,
        Ok(()),
        "the only slot is lost for good to a dead joiner's lock object"
    );
    assert!(
        left.is_empty(),
        "left behind after everything dropped: {left:?}"
    );
}

/// DOCS VS BEHAVIOUR (samples lost): README "Crashes": "When the publisher is gone,
/// subscribers drain what is queued"; "A publisher that drops with samples still queued
/// leaves its objects for the subscribers". But `PublisherBuilder::create` treats such a
/// closed service as free to take over (publisher.rs:131-138) and removes the old memory's
/// segments while a subscriber still has samples queued in segments it has not mapped yet:
/// the draining subscriber loses them.
#[test]
fn a_new_publisher_destroys_samples_a_subscriber_of_the_closed_one_still_drains() {
    let config = config("takeover");
    let old = Publisher::builder("svc")
        .config(&config)
        .max_chunk_layout_hint(byte(64))
        .max_number_of_chunks_hint(1)
        .create()
        .unwrap();
    let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
    for size in [64usize, 4096, 1 << 20] {
        let mut sample = old.loan(byte(size)).unwrap();
        sample.payload_mut().fill(0x5a);
        sample.send().unwrap();
    }
    drop(old);
    let new = Publisher::builder("svc").config(&config).create();
    let mut drained = Vec::new();
    loop {
        match subscriber.receive() {
            Ok(Some(sample)) => drained.push(Ok(sample.len())),
            Ok(None) | Err(ChannelError::PublisherGone) => break,
            Err(e) => drained.push(Err(e)),
        }
        if drained.len() > 3 {
            break;
        }
    }
    drop(subscriber);
    drop(new);
    assert_eq!(
        drained,
        vec![Ok(64), Ok(4096), Ok(1 << 20)],
        "queued samples of the closed publisher were lost to the new one"
    );
}

/// LEAK (race): the publisher's drop finds a sample still queued, so it abandons its objects
/// for the subscriber (publisher.rs:505-509) and only then releases the control object's lock
/// (when its fields drop). A subscriber dropping at the same time sees `closed` and calls
/// `remove_stale_service` (subscriber.rs:588), whose `try_lock` still finds the publisher's
/// lock held: `OwnerAlive`, nothing removed. Nobody is left to remove the control object and
/// the memory: they stay in /dev/shm after everything was dropped.
#[test]
fn publisher_and_subscriber_dropping_together_leak_the_service() {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut leaked = Vec::new();
    let mut rounds = 0;
    while Instant::now() < deadline && leaked.is_empty() && rounds < 400 {
        let config = config(&format!("race{rounds}"));
        rounds += 1;
        let publisher = Publisher::builder("svc").config(&config).create().unwrap();
        let subscriber = Subscriber::builder("svc").config(&config).open().unwrap();
        publisher.send_copy(b"queued").unwrap();
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(publisher);
            });
            barrier.wait();
            drop(subscriber);
        });
        leaked = leftovers(&config);
        if !leaked.is_empty() {
            let _ = resmem::channel::remove_stale_service("svc", &config);
        }
    }
    assert!(
        leaked.is_empty(),
        "round {rounds}: left behind after both dropped: {leaked:?}"
    );
}
