//! An `InternalError` keeps what the OS said and what was being done, in `Display` and in
//! `source()`, and stays comparable.

mod common;

use std::error::Error;

use resmem::{Config, CreateError, Errno, FileBacked, ManageError, Memory, OsError};

/// A namespace whose directory does not exist: every OS call on it fails with ENOENT.
fn missing_dir(dir: &tempfile::TempDir) -> Config {
    Config::default()
        .prefix(&common::unique_prefix())
        .backend(FileBacked::new(dir.path().join("missing")))
}

fn os_error_of(error: &dyn Error) -> &OsError {
    error
        .source()
        .and_then(|s| s.downcast_ref::<OsError>())
        .expect("the OS error is the source")
}

#[test]
fn a_failed_create_says_what_it_did_and_what_the_os_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = missing_dir(&dir);
    let error = Memory::builder("m")
        .config(&config)
        .create()
        .map(|_| ())
        .expect_err("no directory to create in");
    let CreateError::InternalError(os) = error else {
        panic!("not an internal error: {error:?}");
    };
    assert_eq!(os.action(), "creating the management object");
    assert_eq!(os.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(os.errno().map(Errno::raw), Some(libc::ENOENT));
    assert_eq!(os.kind(), std::io::ErrorKind::NotFound);

    let shown = error.to_string();
    let said = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
    assert!(shown.contains("creating the management object"), "{shown}");
    assert!(shown.contains(&said), "{shown}");
    assert!(
        shown.contains(&format!("os error {}", libc::ENOENT)),
        "{shown}"
    );

    assert_eq!(os_error_of(&error), &os);
    let errno = os
        .source()
        .and_then(|s| s.downcast_ref::<Errno>())
        .expect("the errno is the OS error's source");
    assert_eq!(errno.raw(), libc::ENOENT);
    assert_eq!(errno.to_string(), said);
    // Plain data: the same failure compares equal.
    let again = Memory::builder("m").config(&config).create().map(|_| ());
    assert_eq!(again, Err(error));
}

#[test]
fn a_failed_listing_says_what_it_did_and_what_the_os_said() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = resmem::list(&missing_dir(&dir)).expect_err("no directory to list");
    let ManageError::InternalError(os) = error else {
        panic!("not an internal error: {error:?}");
    };
    assert_eq!(os.action(), "listing the objects");
    assert_eq!(os.raw_os_error(), Some(libc::ENOENT));
    let shown = error.to_string();
    assert!(shown.contains("listing the objects"), "{shown}");
    assert!(
        shown.contains(&format!("os error {}", libc::ENOENT)),
        "{shown}"
    );
    assert_eq!(os_error_of(&error), &os);
}
