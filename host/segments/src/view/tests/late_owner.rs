//! A view that waits for an owner still initialising: a fake owner writes the header, segment
//! 0 and its trailer by hand, with the crate's own (non-public) header writers.

use std::alloc::Layout;
use std::time::{Duration, Instant};

use crate::allocator::AllocatorKind;
use crate::backend::{CreateOptions, page_size};
use crate::header::{MGMT_SIZE, MgmtHeader, SegmentTrailer, segment_geometry};
use crate::{
    AccessMode, AllocationStrategy, Config, FileBacked, PointerOffset, PosixShm, ProcessLocal,
    SegmentId, View, name,
};

const FAKE_PID: u32 = 4_242_424;
const FAKE_MEMORY_ID: u64 = 0x0123_4567_89ab_cdef;

fn options(lock_exclusive: bool) -> CreateOptions {
    CreateOptions {
        permissions: 0o600,
        prefault: false,
        lock_exclusive,
    }
}

fn open_waits_for_initialisation_to_finish(config: &Config) {
    let backend = config.get_backend();
    let id = SegmentId::new(0);
    // Created (and locked) but not yet initialised: all zeros, as a view sees it meanwhile.
    let mgmt = backend
        .create(
            &name::mgmt_name("late", config),
            MGMT_SIZE.next_multiple_of(page_size()),
            &options(true),
        )
        .expect("the management object");
    let delay = Duration::from_millis(200);
    let start = Instant::now();
    let (view, _segment) = std::thread::scope(|s| {
        let owner = s.spawn(|| {
            std::thread::sleep(delay);
            // What MemoryBuilder::create does after creating the management object: write the
            // header, create segment 0 with its trailer, publish, ready.
            // SAFETY: the mapping is page aligned and at least MGMT_SIZE long; it lives
            // until the end of the test.
            let header = unsafe { MgmtHeader::from_ptr(mgmt.as_ptr()) };
            header.init(
                FAKE_MEMORY_ID,
                config.get_prefix(),
                FAKE_PID,
                AllocatorKind::Pool,
                AllocationStrategy::BestFit,
            );
            let layout = AllocatorKind::Pool
                .initial_layout(Layout::from_size_align(8, 8).unwrap(), 2)
                .expect("a valid layout");
            let (trailer_at, total) =
                segment_geometry(layout.payload_size, page_size()).expect("small payload");
            let segment = backend
                .create(
                    &name::segment_name("late", id, config),
                    total,
                    &options(false),
                )
                .expect("segment 0");
            // SAFETY: 64-aligned and inside the `total` bytes of the mapping.
            let trailer = unsafe { SegmentTrailer::from_ptr(segment.as_ptr().add(trailer_at)) };
            trailer.write(FAKE_MEMORY_ID, id, 0, layout.payload_size);
            // SAFETY: offset 8 of the payload: inside the mapping, 8-aligned, and nobody
            // else touches it before the header is ready.
            unsafe { (segment.as_ptr().add(8) as *mut u64).write(0xC0FFEE) };
            header.slot(id).publish(0, &layout);
            header.set_current(id);
            header.set_ready();
            segment
        });
        let view = View::builder("late")
            .config(config)
            .timeout(Duration::from_secs(20))
            .open(AccessMode::Read);
        (view, owner.join().expect("the fake owner"))
    });
    let view = view.expect("the view waited for the owner to finish");
    assert!(
        start.elapsed() >= delay,
        "opened before the header was ready"
    );
    let info = view.header_info();
    assert_eq!(
        (info.owner_pid, info.strategy, info.current_segment),
        (FAKE_PID, AllocationStrategy::BestFit, id)
    );
    assert!(view.is_owner_alive(), "the fake owner holds the lock");
    let registration = view.register(PointerOffset::new(id, 8)).expect("register");
    let bytes = registration.as_slice(8).expect("8 bytes of the payload");
    assert_eq!(u64::from_ne_bytes(bytes.try_into().unwrap()), 0xC0FFEE);
    drop(registration);
    drop(mgmt);
    assert!(
        !view.is_owner_alive(),
        "the lock went with the owner's mapping"
    );
    drop(view);
    // SAFETY: the fake owner is gone.
    assert_eq!(unsafe { crate::remove("late", config) }, Ok(true));
    assert_eq!(crate::list(config), Ok(vec![]));
}

fn prefix(tag: &str) -> String {
    format!("u{}_late_{tag}_", std::process::id())
}

#[test]
fn process_local() {
    open_waits_for_initialisation_to_finish(
        &Config::default()
            .prefix(&prefix("heap"))
            .backend(ProcessLocal),
    );
}

#[test]
fn posix() {
    open_waits_for_initialisation_to_finish(
        &Config::default().prefix(&prefix("posix")).backend(PosixShm),
    );
}

#[test]
fn file() {
    let dir = tempfile::tempdir().expect("a directory for FileBacked");
    open_waits_for_initialisation_to_finish(
        &Config::default()
            .prefix(&prefix("file"))
            .backend(FileBacked::new(dir.path())),
    );
}
