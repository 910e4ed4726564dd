//! The owner/peer life cycle on the `FileBacked` backend.

use std::os::unix::process::ExitStatusExt;

use resmem::{AccessMode, View};

use super::*;

/// The same owner/peer life cycle on the `FileBacked` backend (files in a directory): an owner
/// process that is SIGKILLed leaves its files, which a view still reads and `remove` deletes;
/// an owner process that exits normally deletes them itself.
#[test]
fn file_backed_owner_process_crash_and_clean_exit() {
    let scope = Scope::new("fil");
    let dir = TempDir::new("files");
    let config = scope.config().backend(resmem::FileBacked::new(&dir.0));
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    let backend_dir = dir.0.to_str().unwrap().to_owned();
    for (name, crash) in [("crashed", true), ("clean", false)] {
        let on_exit = if crash { "hang" } else { "drop" };
        let (mut owner, specs) = start_owner(
            &scope,
            name,
            &["--backend-dir", &backend_dir, "--on-exit", on_exit],
        );
        let segments = segments_of(&specs).len();
        assert!(segments >= 3);
        assert_eq!(files().len(), segments + 1, "{:?}", files());
        let mut args = verify_args(&scope, name, &specs);
        args.extend(["--backend-dir".to_owned(), backend_dir.clone()]);
        let out = run_peer(&args, STEP);
        assert_eq!(out.summary().bytes, total(&specs));

        if crash {
            assert_eq!(owner.kill().signal(), Some(9));
            assert_eq!(files().len(), segments + 1, "{:?}", files());
            assert_eq!(resmem::list(&config).unwrap(), vec![name.to_owned()]);
            let view = View::builder(name)
                .config(&config)
                .allow_stale(true)
                .open(AccessMode::Read)
                .unwrap();
            assert!(!view.is_owner_alive());
            for &spec in &specs {
                view_check(&view, spec).unwrap();
            }
            // SAFETY: the owner process is dead and reaped.
            assert_eq!(unsafe { resmem::remove(name, &config) }, Ok(true));
        } else {
            owner.send("");
            assert!(owner.wait(STEP).success());
            assert_eq!(owner.rest(), vec!["dropped".to_owned()]);
        }
        assert!(files().is_empty(), "{:?}", files());
        assert!(!resmem::exists(name, &config).unwrap());
    }
    // Nothing of this test went to /dev/shm.
    scope.assert_clean();
}
