//! Replays the committed corpus of the `host_interface` fuzz target (`fuzz/corpus/`) through
//! the same driver the fuzzer runs (included by path), on the stable toolchain: every input
//! the fuzzer kept must still pass every invariant, and nothing may be left in `/dev/shm`.
//! `RESMEM_FUZZ_CORPUS=DIR` replays another directory (e.g. a crash artifact's).

#[path = "../../fuzz/src/host_interface.rs"]
mod host_interface;

use std::path::{Path, PathBuf};

#[test]
fn host_interface_corpus_replays_cleanly() {
    let dir = std::env::var_os("RESMEM_FUZZ_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/host_interface"),
        PathBuf::from,
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 16, "only {} corpus inputs", files.len());
    let mut total = host_interface::Stats::default();
    for file in &files {
        let data = std::fs::read(file).expect("read a corpus input");
        let stats = host_interface::run(&data);
        total.calls += stats.calls;
        total.ok += stats.ok;
        total.errors += stats.errors;
    }
    println!("{} inputs: {total:?}", files.len());
    // The corpus exercises both sides of the interface.
    assert!(total.ok >= 100 && total.errors >= 100, "{total:?}");
}
