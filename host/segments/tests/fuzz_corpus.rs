//! Replays the committed corpus of the `header_parse` fuzz target (fuzz/corpus/header_parse)
//! through the same driver (fuzz/drivers/header_parse.rs) on stable, so `cargo test` keeps
//! every input the fuzzer found interesting passing: typed errors only, translations inside
//! mapped payloads, no panic. Also checks that the corpus still reaches the error kinds the
//! hostile-peer model promises to detect.

#[path = "../../../fuzz/drivers/header_parse.rs"]
mod header_parse;

use std::collections::BTreeSet;
use std::path::Path;

use resmem::OpenError;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/header_parse");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("a corpus file"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn header_parse_corpus_replays_with_typed_errors_only() {
    let files = corpus();
    assert!(
        files.len() >= 10,
        "the corpus has only {} inputs",
        files.len()
    );
    // Under Miri, a sample (every input costs seconds there).
    let step = if cfg!(miri) { files.len() / 8 } else { 1 };
    let mut open_errors = BTreeSet::new();
    let mut translate_errors = BTreeSet::new();
    let (mut opens, mut translations, mut patches) = (0, 0, 0);
    for (name, data) in files.iter().step_by(step.max(1)) {
        let outcome = std::panic::catch_unwind(|| header_parse::run(data))
            .unwrap_or_else(|_| panic!("corpus input {name} panicked"));
        opens += outcome.opens_ok;
        translations += outcome.translations_ok;
        patches += outcome.patches;
        open_errors.extend(outcome.open_errors.iter().map(|e| format!("{e:?}")));
        translate_errors.extend(outcome.translate_errors.iter().map(|e| format!("{e:?}")));
    }
    eprintln!(
        "{} inputs: {opens} opens, {translations} translations, {patches} hostile writes; \
         open errors {open_errors:?}; translate errors {translate_errors:?}",
        files.len()
    );
    assert!(opens > 0 && translations > 0 && patches > 0);
    if cfg!(miri) {
        return;
    }
    for expected in [OpenError::Corrupted, OpenError::IncompatibleVersion] {
        assert!(
            open_errors.contains(&format!("{expected:?}")),
            "no input reaches {expected:?} at open: {open_errors:?}"
        );
    }
    for expected in [OpenError::InvalidOffset, OpenError::Corrupted] {
        assert!(
            translate_errors.contains(&format!("{expected:?}")),
            "no input reaches {expected:?} at translation: {translate_errors:?}"
        );
    }
}
