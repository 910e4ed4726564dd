//! Crashed owners: a memory whose owner is gone (its lock on the management object is free)
//! is *stale*. Views refuse it with `OwnerDead` unless they ask for a forensic open,
//! `remove_stale` removes it and nothing live, and `create` reclaims its name on request; the
//! lock, not the header, decides, and removers and creators racing for one name never hurt a
//! live memory.

mod common;

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{BackendKind, Env, backend_tests, layout, sid};
use resmem::{AccessMode, AllocationStrategy, CreateError, OpenError, StaleRemoval, View};

use AllocationStrategy::BestFit;

backend_tests!(
    all: [
        stale_open_is_owner_dead_and_a_forensic_open_reads,
        stale_is_decided_by_the_lock_not_the_header,
        remove_stale_removes_only_dead_memories,
        reclaim_is_off_by_default_and_replaces_a_stale_memory,
        reclaim_never_takes_a_live_name,
        racing_reclaimers_exactly_one_wins,
        removers_racing_a_creator_never_touch_the_live_memory,
        owner_that_died_before_ready_is_stale,
    ],
    os: [
        empty_unlocked_management_object_is_stale,
    ],
);

fn open(env: &Env, name: &str) -> Result<View, OpenError> {
    View::builder(name)
        .config(&env.config)
        .open(AccessMode::Read)
}

fn open_stale(env: &Env, name: &str) -> Result<View, OpenError> {
    View::builder(name)
        .config(&env.config)
        .allow_stale(true)
        .open(AccessMode::Read)
}

/// A memory grown to three segments (four chunks) with a known value in the last one, then abandoned (its
/// objects stay, its lock is released, as after a crash). Returns the last chunk's offset.
fn abandoned(env: &Env, name: &str) -> resmem::PointerOffset {
    let memory = env.memory(name, 8, 1, BestFit);
    let mut last = None;
    for value in 0..4_u64 {
        let chunk = memory.allocate(layout(8, 8)).expect("allocate");
        // SAFETY: ours, 8 bytes, aligned.
        unsafe { common::write_u64(chunk.data_ptr, 0xC0DE + value) };
        last = Some(chunk.offset);
    }
    assert_eq!(memory.number_of_active_segments(), 3);
    memory.abandon();
    last.expect("three chunks")
}

fn stale_open_is_owner_dead_and_a_forensic_open_reads(env: &Env) {
    let last = abandoned(env, "dead");
    assert_eq!(open(env, "dead").err(), Some(OpenError::OwnerDead));
    // A timeout does not turn a dead owner into a wait.
    let started = std::time::Instant::now();
    assert_eq!(
        View::builder("dead")
            .config(&env.config)
            .timeout(std::time::Duration::from_secs(10))
            .open(AccessMode::Read)
            .err(),
        Some(OpenError::OwnerDead)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let view = open_stale(env, "dead").expect("forensic open");
    assert!(!view.is_owner_alive());
    assert_eq!(view.header_info().owner_pid, std::process::id());
    // SAFETY: unregistered right after the read.
    let ptr = unsafe { view.register_and_translate_offset(last) }.expect("translate");
    // SAFETY: 8 bytes, aligned, registered.
    assert_eq!(unsafe { common::read_u64(ptr) }, 0xC0DE + 3);
    // SAFETY: registered above, not used afterwards.
    unsafe { view.unregister_offset(last) };
    drop(view);
    assert_eq!(
        resmem::remove_stale("dead", &env.config),
        Ok(StaleRemoval::Removed)
    );
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn stale_is_decided_by_the_lock_not_the_header(env: &Env) {
    // A live owner whose header a peer wiped: views see corruption, never "owner dead", and
    // no remover touches it.
    let memory = env.memory("wiped", 8, 1, BestFit);
    let header = env.open_object(&env.mgmt_name("wiped"));
    for at in (0..resmem::header::MGMT_SIZE).step_by(8) {
        common::poke_u64(&header, at, 0xFFFF_FFFF_FFFF_FFFF);
    }
    let objects = env.objects();
    assert_eq!(open(env, "wiped").err(), Some(OpenError::Corrupted));
    assert_eq!(
        resmem::remove_stale("wiped", &env.config),
        Ok(StaleRemoval::OwnerAlive)
    );
    assert_eq!(env.objects(), objects);
    // A dead owner with a wiped header is still just stale, and removable.
    memory.abandon();
    assert_eq!(open(env, "wiped").err(), Some(OpenError::OwnerDead));
    assert_eq!(open_stale(env, "wiped").err(), Some(OpenError::Corrupted));
    drop(header);
    assert_eq!(
        resmem::remove_stale("wiped", &env.config),
        Ok(StaleRemoval::Removed)
    );
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn remove_stale_removes_only_dead_memories(env: &Env) {
    let live = env.memory("live", 8, 1, BestFit);
    let chunk = live.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: ours.
    unsafe { common::write_u64(chunk.data_ptr, 77) };
    let _ = abandoned(env, "dead");
    let _ = abandoned(env, "dead2");
    let live_objects: Vec<String> = env
        .objects()
        .into_iter()
        .filter(|o| o.starts_with(&format!("{}live__", env.prefix())))
        .collect();
    assert_eq!(live_objects.len(), 2, "{live_objects:?}");
    assert_eq!(
        resmem::remove_stale("live", &env.config),
        Ok(StaleRemoval::OwnerAlive)
    );
    assert_eq!(
        resmem::remove_stale("dead", &env.config),
        Ok(StaleRemoval::Removed)
    );
    assert_eq!(
        resmem::remove_stale("dead", &env.config),
        Ok(StaleRemoval::NotFound)
    );
    assert_eq!(
        resmem::remove_stale("nothing", &env.config),
        Ok(StaleRemoval::NotFound)
    );
    assert_eq!(
        resmem::remove_stale("bad/name", &env.config),
        Err(resmem::ManageError::InvalidName)
    );
    assert_eq!(
        resmem::remove_stale("dead2", &env.config),
        Ok(StaleRemoval::Removed)
    );
    assert_eq!(env.objects(), live_objects);
    let view = open(env, "live").expect("the live memory still opens");
    // SAFETY: unregistered right after the read.
    let ptr = unsafe { view.register_and_translate_offset(chunk.offset) }.expect("translate");
    // SAFETY: 8 bytes, aligned.
    assert_eq!(unsafe { common::read_u64(ptr) }, 77);
    // SAFETY: registered above.
    unsafe { view.unregister_offset(chunk.offset) };
    drop(view);
    drop(live);
}

fn reclaim_is_off_by_default_and_replaces_a_stale_memory(env: &Env) {
    let last = abandoned(env, "reuse");
    let old_view = open_stale(env, "reuse").expect("forensic open");
    assert_eq!(
        env.builder("reuse").create().err(),
        Some(CreateError::AlreadyExists)
    );
    assert_eq!(
        env.builder("reuse").reclaim_stale(false).create().err(),
        Some(CreateError::AlreadyExists)
    );
    assert_eq!(env.objects().len(), 4, "refused creates change nothing");
    let fresh = env
        .builder("reuse")
        .max_chunk_layout_hint(layout(8, 8))
        .reclaim_stale(true)
        .create()
        .expect("reclaiming a stale name");
    // Only the new memory's management object remains: the stale segments
    // are gone and the new segment 0 waits for the first allocation.
    assert_eq!(env.objects(), vec![env.mgmt_name("reuse")]);
    let view = open(env, "reuse").expect("the new memory opens");
    assert!(view.is_owner_alive());
    assert_ne!(
        view.header_info().memory_id,
        old_view.header_info().memory_id
    );
    // The old view does not mistake the new memory's segments for the dead one's.
    // SAFETY: unregistered if it ever succeeded.
    let old = unsafe { old_view.register_and_translate_offset(last) };
    assert!(old.is_err(), "{old:?}");
    let chunk = fresh.allocate(layout(8, 8)).expect("allocate");
    assert_eq!(chunk.offset.segment_id(), sid(0));
    drop((view, old_view, fresh));
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn reclaim_never_takes_a_live_name(env: &Env) {
    let live = env.memory("mine", 8, 1, BestFit);
    let chunk = live.allocate(layout(8, 8)).expect("allocate");
    // SAFETY: ours.
    unsafe { common::write_u64(chunk.data_ptr, 99) };
    let objects = env.objects();
    for _ in 0..3 {
        assert_eq!(
            env.builder("mine").reclaim_stale(true).create().err(),
            Some(CreateError::AlreadyExists)
        );
    }
    assert_eq!(env.objects(), objects);
    // SAFETY: ours, still allocated.
    assert_eq!(unsafe { common::read_u64(chunk.data_ptr) }, 99);
    assert!(open(env, "mine").expect("still opens").is_owner_alive());
    drop(live);
}

fn racing_reclaimers_exactly_one_wins(env: &Env) {
    const THREADS: usize = 6;
    for round in 0..if cfg!(miri) { 2 } else { 6 } {
        let name = format!("race{round}");
        let _ = abandoned(env, &name);
        let barrier = Barrier::new(THREADS);
        let results: Vec<Result<resmem::Memory, CreateError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        env.builder(&name).reclaim_stale(true).create()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("reclaimer"))
                .collect()
        });
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(*e, CreateError::AlreadyExists, "round {round}");
            }
        }
        let view = open(env, &name).expect("the winner's memory opens");
        assert!(view.is_owner_alive());
        drop(view);
        drop(results);
    }
    assert_eq!(env.objects(), Vec::<String>::new());
}

/// One thread keeps creating (reclaiming) a memory, checking it while it lives, then leaving
/// it stale; others keep removing stale memories under the same name. A remover must never
/// remove the memory while its owner lives.
fn removers_racing_a_creator_never_touch_the_live_memory(env: &Env) {
    let rounds = if cfg!(miri) {
        6
    } else if env.kind == BackendKind::ProcessLocal {
        300
    } else {
        150
    };
    let done = AtomicBool::new(false);
    let removed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    if resmem::remove_stale("contested", &env.config) == Ok(StaleRemoval::Removed) {
                        removed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let mut created = 0;
        for round in 0..rounds {
            // Odd rounds do not reclaim: they wait for a remover to clear the name.
            let reclaim = round % 2 == 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let memory = loop {
                match env
                    .builder("contested")
                    .max_chunk_layout_hint(layout(8, 8))
                    .reclaim_stale(reclaim)
                    .create()
                {
                    Ok(memory) => break Some(memory),
                    // Reclaiming: a remover held the old object's lock at that moment.
                    Err(CreateError::AlreadyExists) if reclaim => break None,
                    Err(CreateError::AlreadyExists) => {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "round {round}: no remover cleared the stale name"
                        );
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("round {round}: {e:?}"),
                }
            };
            let Some(memory) = memory else { continue };
            created += 1;
            let chunk = memory.allocate(layout(8, 8)).expect("allocate");
            // SAFETY: ours.
            unsafe { common::write_u64(chunk.data_ptr, round) };
            let view = open(env, "contested")
                .unwrap_or_else(|e| panic!("round {round}: live memory not openable: {e:?}"));
            assert_eq!(view.header_info().owner_pid, std::process::id());
            // SAFETY: unregistered right after the read.
            let ptr = unsafe { view.register_and_translate_offset(chunk.offset) }
                .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            // SAFETY: 8 bytes, aligned.
            assert_eq!(unsafe { common::read_u64(ptr) }, round);
            // SAFETY: registered above.
            unsafe { view.unregister_offset(chunk.offset) };
            assert_eq!(resmem::exists("contested", &env.config), Ok(true));
            drop(view);
            memory.abandon();
        }
        done.store(true, Ordering::Release);
        assert!(
            created >= rounds as usize / 4,
            "only {created} of {rounds} creates"
        );
    });
    let _ = resmem::remove_stale("contested", &env.config);
    assert!(
        removed.load(Ordering::Relaxed) > 0,
        "the removers never removed anything"
    );
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn owner_that_died_before_ready_is_stale(env: &Env) {
    // A sized, unlocked management object whose state never became "ready": a creator that
    // died during initialisation. Not "initialising" (that would make views wait forever).
    drop(env.create_object(&env.mgmt_name("half"), resmem::header::MGMT_SIZE));
    drop(env.create_object(&env.segment_name("half", 0), 4096));
    assert_eq!(open(env, "half").err(), Some(OpenError::OwnerDead));
    assert_eq!(
        open_stale(env, "half").err(),
        Some(OpenError::OwnerDead),
        "nothing to read, and no owner to wait for"
    );
    assert_eq!(resmem::is_owner_alive("half", &env.config), Ok(false));
    assert_eq!(
        resmem::remove_stale("half", &env.config),
        Ok(StaleRemoval::Removed)
    );
    assert_eq!(env.objects(), Vec::<String>::new());
}

fn empty_unlocked_management_object_is_stale(env: &Env) {
    // The creator died between creating the object and sizing (and locking) it.
    let path = env
        .object_path(&env.mgmt_name("empty"))
        .expect("an OS backend");
    std::fs::File::create_new(&path).expect("an empty object");
    assert_eq!(open(env, "empty").err(), Some(OpenError::OwnerDead));
    assert_eq!(resmem::list(&env.config), Ok(vec!["empty".to_owned()]));
    assert_eq!(
        resmem::remove_stale("empty", &env.config),
        Ok(StaleRemoval::Removed)
    );
    let memory = env
        .builder("empty")
        .create()
        .expect("the name is free again");
    drop(memory);
    assert_eq!(env.objects(), Vec::<String>::new());
}
