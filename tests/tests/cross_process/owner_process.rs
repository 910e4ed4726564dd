//! An owner in another process: a clean exit, a crash or an abandoned memory, and views opened
//! while it is still initialising.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use resmem::{AccessMode, AllocationStrategy, CreateError, Memory, OpenError, View};

use super::*;

/// The owner is another process. This process opens a view, reads every byte, tells the owner
/// to exit, and then nothing of the memory is left, while the address it still had registered
/// keeps reading the same bytes.
#[test]
fn owner_in_other_process_drop_removes_everything() {
    let scope = Scope::new("own");
    let name = "remote";
    let config = scope.config();
    let (mut owner, specs) = start_owner(&scope, name, &["--strategy", "power-of-two"]);
    assert!(segments_of(&specs).len() >= 3, "{specs:?}");
    assert_eq!(scope.objects().len(), segments_of(&specs).len() + 1);
    assert_eq!(resmem::list(&config).unwrap(), vec![name.to_owned()]);
    assert!(resmem::exists(name, &config).unwrap());

    let view = View::builder(name)
        .config(&config)
        .timeout(Duration::from_secs(5))
        .open(AccessMode::Read)
        .unwrap();
    assert!(view.is_owner_alive());
    assert_eq!(view.header_info().owner_pid, owner.pid());
    assert_eq!(view.header_info().strategy, AllocationStrategy::PowerOfTwo);
    for &spec in &specs {
        view_check(&view, spec).unwrap();
    }
    let last = *specs.last().unwrap();
    // SAFETY: unregistered below, after the last read through `kept`.
    let kept = unsafe { view.register_and_translate_offset(last.offset) }.unwrap();

    owner.send("");
    let status = owner.wait(STEP);
    assert!(status.success(), "{status:?}: {}", owner.stderr());
    assert_eq!(owner.rest(), vec!["dropped".to_owned()]);

    assert!(!view.is_owner_alive());
    assert!(!resmem::exists(name, &config).unwrap());
    assert!(resmem::list(&config).unwrap().is_empty());
    scope.assert_clean();
    // SAFETY: still registered; the mapping outlives the unlinked object.
    let bytes = unsafe { std::slice::from_raw_parts(kept, last.len) };
    resmem_e2e::check_pattern(bytes, last.seed).unwrap();
    // SAFETY: registered above; `kept` is not used after this.
    unsafe { view.unregister_offset(last.offset) };
    assert_eq!(
        View::builder(name)
            .config(&config)
            .open(AccessMode::Read)
            .err(),
        Some(OpenError::DoesNotExist)
    );
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    Sigkill,
    Abort,
    Abandon,
}

/// The owner process dies without dropping its memory (SIGKILL, `abort()`) or abandons it.
/// Its objects remain and are listed; a view opened afterwards reads every byte and knows the
/// owner is dead; the name cannot be created again until `remove` cleans everything, after
/// which a new owner creates it. A view of the dead memory keeps reading its old bytes and
/// does not mistake the new owner for the old one.
fn owner_dies(crash: Crash, tag: &str) {
    let scope = Scope::new(tag);
    let name = "crash";
    let config = scope.config();
    let on_exit = match crash {
        Crash::Sigkill => "hang",
        Crash::Abort => "abort",
        Crash::Abandon => "abandon",
    };
    let mut args = scope.peer_args("owner", name);
    args.extend(["--on-exit".to_owned(), on_exit.to_owned()]);
    args.extend(["--strategy".to_owned(), "best-fit".to_owned()]);
    let mut command = if matches!(crash, Crash::Abort) {
        // No core file for the deliberate abort, whatever the limits are.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("ulimit -c 0; exec \"$0\" \"$@\"")
            .arg(PEER);
        command
    } else {
        Command::new(PEER)
    };
    command.args(&args);
    let mut owner = Peer::spawn(command, "owner peer");
    let lines = owner.until_ready();
    let specs: Vec<ChunkSpec> = lines
        .iter()
        .filter_map(|l| ChunkSpec::parse_owner_line(l))
        .collect();
    let pid = owner.pid();
    assert!(segments_of(&specs).len() >= 3, "{lines:?}");

    let status = match crash {
        Crash::Sigkill => {
            let status = owner.kill();
            assert_eq!(status.signal(), Some(9), "{status:?}");
            status
        }
        Crash::Abort => {
            owner.send("");
            let status = owner.wait(STEP);
            assert_eq!(status.signal(), Some(6), "{status:?}");
            status
        }
        Crash::Abandon => {
            owner.send("");
            let status = owner.wait(STEP);
            assert!(status.success(), "{status:?}");
            assert_eq!(owner.rest(), vec!["abandoned".to_owned()]);
            status
        }
    };
    drop(owner);

    // Everything is still there.
    assert_eq!(
        resmem::list(&config).unwrap(),
        vec![name.to_owned()],
        "{status:?}"
    );
    assert!(resmem::exists(name, &config).unwrap());
    assert_eq!(scope.objects().len(), segments_of(&specs).len() + 1);

    // A plain open tells a dead owner apart from every other failure; a forensic one reads.
    assert_eq!(
        View::builder(name)
            .config(&config)
            .open(AccessMode::Read)
            .err(),
        Some(OpenError::OwnerDead)
    );
    let old_view = View::builder(name)
        .config(&config)
        .timeout(Duration::from_secs(5))
        .allow_stale(true)
        .open(AccessMode::Read)
        .unwrap();
    assert!(!old_view.is_owner_alive());
    assert_eq!(old_view.header_info().owner_pid, pid);
    for &spec in &specs {
        view_check(&old_view, spec).unwrap();
    }
    let last = *specs.last().unwrap();
    // SAFETY: unregistered at the end of the test, after the last read through `kept`.
    let kept = unsafe { old_view.register_and_translate_offset(last.offset) }.unwrap();

    // A peer process is refused with the same distinct error, or reads it when it asks to.
    let out = run_peer(&verify_args(&scope, name, &specs), STEP);
    assert!(out.stderr.contains("OwnerDead"), "{out:?}");
    let mut args = verify_args(&scope, name, &specs);
    args.push("--allow-stale".to_owned());
    let out = run_peer(&args, STEP);
    let got = out.summary();
    assert_eq!((got.bytes, got.offsets), (total(&specs), specs.len()));
    assert!(out.stdout.contains("owner_alive=false"), "{}", out.stdout);

    // The name is taken until the leftovers are removed.
    assert_eq!(
        Memory::builder(name).config(&config).create().err(),
        Some(CreateError::AlreadyExists)
    );
    // SAFETY: the owner process is dead and reaped; only this test uses this namespace.
    assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(true));
    scope.assert_clean();
    assert!(!resmem::exists(name, &config).unwrap());
    assert!(resmem::list(&config).unwrap().is_empty());
    // SAFETY: as above; nothing is left to remove.
    assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(false));

    // A new owner under the same name, read by a new view and a peer process.
    let fresh = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(last.len))
        .create()
        .unwrap();
    let chunk = alloc_filled(&fresh, last.len, 9_999);
    let new_view = View::builder(name)
        .config(&config)
        .open(AccessMode::Read)
        .unwrap();
    assert!(new_view.is_owner_alive());
    assert_eq!(new_view.header_info().owner_pid, std::process::id());
    view_check(&new_view, chunk.spec).unwrap();
    let out = run_peer(&verify_args(&scope, name, &[chunk.spec]), STEP);
    assert_eq!(out.summary(), summary(last.len as u64, 1, 1, 1));

    // The old view still reads the dead memory and still finds its owner dead.
    assert!(!old_view.is_owner_alive());
    // SAFETY: still registered with `old_view`; its mapping outlives the removed object.
    let bytes = unsafe { std::slice::from_raw_parts(kept, last.len) };
    resmem_e2e::check_pattern(bytes, last.seed).unwrap();
    // SAFETY: registered above; `kept` is not used after this.
    unsafe { old_view.unregister_offset(last.offset) };

    drop((old_view, new_view, fresh));
    scope.assert_clean();
}

#[test]
fn owner_sigkilled_leaves_objects_remove_cleans_and_name_is_reusable() {
    owner_dies(Crash::Sigkill, "kil");
}

#[test]
fn owner_aborted_leaves_objects_remove_cleans_and_name_is_reusable() {
    owner_dies(Crash::Abort, "abo");
}

#[test]
fn owner_abandoned_leaves_objects_remove_cleans_and_name_is_reusable() {
    owner_dies(Crash::Abandon, "aba");
}

/// A view starts opening before the owner process exists. While the owner has not created the
/// memory, `open` reports `DoesNotExist` (the view's timeout only covers an owner that has
/// started initialising, so the caller retries); once the management object exists but is
/// not ready, a zero-timeout open reports `InitializationNotYetFinalized` and an open with a
/// timeout waits and succeeds. No other error may ever be seen. The owner pre-faults a large
/// first segment, which keeps it initialising for a while; the whole scenario is retried a few
/// times in case the opening thread never got to run inside that window.
#[test]
fn view_opened_while_owner_process_is_still_initialising() {
    let scope = Scope::new("ini");
    let mut observed_window = false;
    for attempt in 0..4 {
        let name = format!("init{attempt}");
        let config = scope.config();
        let (started_tx, started) = channel();
        let opener = {
            let name = name.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + STEP;
                let mut does_not_exist = 0;
                loop {
                    match View::builder(&name).config(&config).open(AccessMode::Read) {
                        Ok(view) => return (view, false, does_not_exist),
                        Err(OpenError::InitializationNotYetFinalized) => {
                            let view = View::builder(&name)
                                .config(&config)
                                .timeout(Duration::from_secs(20))
                                .open(AccessMode::Read)
                                .expect("an open with a timeout waits for the owner to finish");
                            return (view, true, does_not_exist);
                        }
                        Err(OpenError::DoesNotExist) => {
                            does_not_exist += 1;
                            if does_not_exist == 1 {
                                started_tx.send(()).unwrap();
                            }
                            assert!(Instant::now() < deadline, "the owner never appeared");
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err(e) => panic!("opening while the owner initialises: {e:?}"),
                    }
                }
            })
        };
        started.recv_timeout(STEP).expect("the opener started");
        let (mut owner, specs) = start_owner(
            &scope,
            &name,
            &["--prefault", "--sizes", &(128 * MIB).to_string()],
        );
        let (view, waited, does_not_exist) = opener.join().expect("opener thread");
        assert!(does_not_exist >= 1);
        assert_eq!(view.header_info().owner_pid, owner.pid());
        assert!(view.is_owner_alive());
        // The owner fills its chunk after `create`; it has printed `ready`, so it is done.
        for &spec in &specs {
            view_check(&view, spec).unwrap();
        }
        drop(view);
        owner.send("");
        assert!(owner.wait(STEP).success(), "{}", owner.stderr());
        eprintln!(
            "attempt {attempt}: {does_not_exist} DoesNotExist before the owner appeared, \
             waited for initialisation: {waited}"
        );
        if waited {
            observed_window = true;
            break;
        }
    }
    assert!(
        observed_window,
        "no attempt saw the owner initialising; the timeout path was not exercised"
    );
    scope.assert_clean();
}
