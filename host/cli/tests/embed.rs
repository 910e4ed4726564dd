//! The `embed` example (`examples/embed.rs`, built by `cargo test` like every example) runs:
//! the plugin XORs three native buffers, and nothing is left once its store is dropped.

use std::path::PathBuf;
use std::process::Command;

/// target/<profile>/deps/embed-<hash> -> target/<profile>/examples/embed
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    profile.join("examples").join("embed")
}

#[test]
fn embed_example_filters_native_buffers_and_leaves_nothing() {
    let path = example();
    assert!(path.is_file(), "no example at {}", path.display());
    let out = Command::new(&path).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for round in 0..3 {
        assert!(
            stdout.contains(&format!("round {round}: 4096 bytes in place at ")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("memories: 1, views: 1, chunks: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("left in the namespace: []"), "{stdout}");
}
