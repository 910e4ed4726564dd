//! Replays the committed corpus of the `channel_parse` fuzz target (fuzz/corpus/channel_parse)
//! through the same driver (fuzz/drivers/channel_parse.rs) on stable, so `cargo test` keeps
//! every input passing: typed errors only, samples that hold up, no double free, no leaked
//! chunk or object, an exact model in clean runs. Also checks that the corpus still reaches
//! the outcomes the channel promises to detect.
//!
//! `RESMEM_CHANNEL_CORPUS=<dir>` replays another directory (a libFuzzer run's crashes, say)
//! without the coverage checks. The ignored test `generate_channel_parse_corpus` grows the
//! corpus on stable (cargo-fuzz needs nightly and a sanitizer build): it runs the driver on
//! random and mutated inputs and keeps those that reach a new outcome kind.

#[path = "../../../fuzz/drivers/channel_parse.rs"]
mod channel_parse;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use resmem::ProcessLocal;
use resmem::backend::Backend;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/channel_parse")
}

fn read_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path.file_name().expect("a file name");
            let data = std::fs::read(&path).expect("a corpus file");
            (name.to_string_lossy().into_owned(), data)
        })
        .collect();
    files.sort();
    files
}

/// What the generator counts as new: every outcome kind, alone, under each policy and in a
/// clean run, and how many samples arrived (in powers of two).
fn features(outcome: &channel_parse::Outcome) -> BTreeSet<String> {
    let policy = &outcome.overflow;
    let mut features = BTreeSet::new();
    for kind in &outcome.kinds {
        features.insert(kind.clone());
        features.insert(format!("{policy}/{kind}"));
    }
    for kind in &outcome.clean_kinds {
        features.insert(format!("clean/{kind}"));
        features.insert(format!("clean/{policy}/{kind}"));
    }
    for (what, n) in [("received", outcome.received), ("forged", outcome.forged)] {
        let bucket = n.checked_ilog2().map_or(0, |log| 1u64 << log);
        features.insert(format!("{what}>={bucket}"));
    }
    features
}

fn leftovers() -> Vec<String> {
    let prefix = format!("fc{}_", std::process::id());
    let objects = ProcessLocal
        .list()
        .expect("listing the process-local backend");
    objects
        .into_iter()
        .filter(|o| o.starts_with(&prefix))
        .collect()
}

#[test]
fn channel_parse_corpus_replays_with_typed_errors_only() {
    // The publisher's double-free check is a debug_assert in its free path.
    if !cfg!(debug_assertions) {
        panic!("replay the channel_parse corpus with debug assertions (the test profile)");
    }
    let custom = std::env::var_os("RESMEM_CHANNEL_CORPUS").map(PathBuf::from);
    let files = read_corpus(custom.as_deref().unwrap_or(&corpus_dir()));
    let mut kinds = BTreeSet::new();
    let (mut received, mut forged, mut writes) = (0, 0, 0);
    let start = Instant::now();
    for (name, data) in &files {
        let outcome = std::panic::catch_unwind(|| channel_parse::run(data))
            .unwrap_or_else(|_| panic!("corpus input {name} panicked"));
        received += outcome.received;
        forged += outcome.forged;
        writes += outcome.writes;
        kinds.extend(outcome.kinds);
        kinds.extend(outcome.clean_kinds.iter().map(|k| format!("clean/{k}")));
    }
    eprintln!(
        "{} inputs in {:?}: {received} samples received ({forged} from forged entries), \
         {writes} hostile writes; outcomes {kinds:?}",
        files.len(),
        start.elapsed()
    );
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "objects left in the backend"
    );
    if custom.is_some() {
        return;
    }
    assert!(
        files.len() >= 40,
        "the corpus has only {} inputs",
        files.len()
    );
    assert!(received > 0 && forged > 0 && writes > 0);
    let expected = [
        "run:clean",
        "receive:sent",
        "receive:forged",
        "receive:none",
        "receive:BorrowLimitReached",
        "receive:after-limit",
        "receive:Corrupted",
        "receive:PublisherGone",
        "loan:LoanLimitReached",
        "loan:Alloc",
        "send_copy:LoanLimitReached",
        "send:InvalidLength",
        "open:ok",
        "open:ok-forged-geometry",
        "open:Corrupted",
        "open:IncompatibleVersion",
        "open:DoesNotExist",
        "open:SubscriberLimitReached",
        "validate:ready",
        "validate:Corrupted",
        "inspect:clean",
        "block:rescued",
        "publisher:restarted",
        // Checked against the exact model (runs without hostile writes).
        "clean/receive:sent",
        "clean/receive:BorrowLimitReached",
        "clean/receive:PublisherGone",
        "clean/send_copy:full-queue-DropOldest",
        "clean/send_copy:full-queue-DropNewest",
        "clean/loan:LoanLimitReached",
        "clean/open:SubscriberLimitReached",
        "clean/publisher:restarted",
        "clean/block:made-room",
        "clean/inspect:clean",
    ];
    let missing: Vec<&str> = expected
        .into_iter()
        .filter(|k| !kinds.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "the corpus no longer reaches {missing:?}"
    );
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn mutate(rng: &mut Rng, kept: &[Vec<u8>]) -> Vec<u8> {
    let mut data = kept[rng.below(kept.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let at = at.min(data.len() - 1);
                data[at] = rng.next() as u8;
            }
            1 => {
                let n = 1 + rng.below(12);
                let insert = rng.bytes(n);
                data.splice(at..at, insert);
            }
            2 if at < data.len() => drop(data.drain(at..(at + 1 + rng.below(8)).min(data.len()))),
            3 => {
                let other = &kept[rng.below(kept.len())];
                let from = rng.below(other.len());
                let piece = other[from..(from + 1 + rng.below(24)).min(other.len())].to_vec();
                data.splice(at..at, piece);
            }
            _ => {
                let n = 1 + rng.below(16);
                data.extend(rng.bytes(n));
            }
        }
    }
    data.truncate(400);
    data
}

/// Hand-written programs (see the op codes in the driver's `run`).
fn seeds() -> Vec<Vec<u8>> {
    let copy = |tag: u8| [6u8, 0, 5, tag];
    let mut seeds = vec![
        // Send, receive, inspect, give back: a clean run.
        [&[0u8][..], &copy(1), &[7, 0, 14, 9, 0, 14]].concat(),
        // Three sends, receive past the borrow limit, then again after dropping one.
        [
            &[9u8][..],
            &copy(1),
            &copy(2),
            &copy(3),
            &[8, 0, 8, 0, 8, 0, 14],
        ]
        .concat(),
        // Five loans (the fifth refused), a send_copy refused, sends with set_len.
        [
            &[
                0u8, 3, 0, 8, 1, 3, 0, 8, 2, 3, 0, 8, 3, 3, 0, 8, 4, 3, 0, 8, 5,
            ][..],
            &copy(6),
        ]
        .concat()
        .into_iter()
        .chain([4, 0, 1, 3, 4, 0, 2, 0, 4, 0, 3, 0, 5, 0, 14])
        .collect(),
        // sub_read of slot 0 set to u64::MAX, then a receive.
        [&[0u8][..], &copy(1), &[0, 3, 0, 1, 2, 15, 7, 0, 7, 0]].concat(),
        // Version 3, then magic 0: opens refused.
        vec![0, 0, 0, 1, 2, 3, 10, 0, 0, 0, 0, 2, 0, 10],
        // sub_write one ahead of the publisher: a forged entry received.
        [
            &[0u8][..],
            &copy(1),
            &[0, 3, 0, 0, 5, 8, 7, 0, 7, 0, 13, 14],
        ]
        .concat(),
        // Block: a dirty run that fills the queue and blocks.
        [
            &[2u8, 0, 3, 0, 1, 2, 0][..],
            &copy(1),
            &copy(2),
            &copy(3),
            &copy(4),
            &copy(5),
        ]
        .concat(),
        // Drop oldest: more sends than the queue holds, then the counts.
        [
            &[0u8][..],
            &copy(1),
            &copy(2),
            &copy(3),
            &copy(4),
            &copy(5),
            &[14, 7, 0, 14],
        ]
        .concat(),
        // Drop newest: more sends than the queue holds.
        [
            &[1u8][..],
            &copy(1),
            &copy(2),
            &copy(3),
            &copy(4),
            &copy(5),
            &[13, 13, 13, 14],
        ]
        .concat(),
        // The publisher goes away and comes back.
        [
            &[0u8][..],
            &copy(1),
            &[15, 0, 7, 0, 7, 0, 14, 15, 0, 10],
            &copy(2),
            &[7, 0, 14],
        ]
        .concat(),
        // A forged geometry (2 slots, queues of 2), then an open.
        [&[0u8, 0, 9, 1, 9, 10][..], &copy(1), &[7, 1, 7, 2, 13]].concat(),
        // Four opens: the last finds every slot taken.
        vec![9, 10, 10, 14, 11, 0, 10, 14],
        // validate on the control object with a patched header, then on raw bytes.
        [
            &[0u8, 12, 1, 16, 8][..],
            &[3, 0, 0, 0, 4, 0, 0, 0],
            &[12, 2, 3, 4, 12, 0, 40],
        ]
        .concat(),
        // Block, and completion read index u64::MAX: every return is refused, so the blocked
        // send waits until its subscriber is dropped.
        [
            &[2u8, 0, 3, 0, 3, 2, 15][..],
            &copy(1),
            &copy(2),
            &copy(3),
            &copy(4),
            &copy(5),
        ]
        .concat()
        .into_iter()
        .chain([6, 0, 5, 6, 6, 0, 5, 7, 6, 0, 5, 8])
        .collect(),
        // A submission entry's length set to 4096, past its segment: refused as Corrupted.
        [&[0u8][..], &copy(1), &[0, 4, 0, 1, 4, 11, 7, 0, 14]].concat(),
        // A large loan that grows the memory, under the static strategy (refused).
        vec![6, 3, 7, 200, 1, 4, 0, 0, 0, 7, 0, 14],
    ];
    let mut rng = Rng(0x5eed);
    seeds.extend((0..8).map(|_| rng.bytes(40)));
    seeds
}

fn sha1(data: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i / 20 {
                0 => ((b & c) | (!b & d), 0x5a82_7999),
                1 => (b ^ c ^ d, 0x6ed9_eba1),
                2 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e);
            (e, d, c, b) = (d, c, b.rotate_left(30), a);
            a = t.wrapping_add(k).wrapping_add(wi);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha1_names_match_the_corpus_convention() {
    assert_eq!(sha1(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(sha1(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    let long = vec![b'a'; 1000];
    assert_eq!(sha1(&long), "291e9a6c66994949b57ba5e650361e98fc36b1ba");
}

/// Grows fuzz/corpus/channel_parse (`RESMEM_GEN_SECS`, default 60 s; `RESMEM_GEN_SEED`):
/// writes the hand-written seeds and each random or mutated input that reaches a feature no
/// committed or kept input reaches, cut to the shortest prefix that still does.
/// Inputs that panic go to fuzz/artifacts/channel_parse/crash-<sha1>.
#[test]
#[ignore = "generates the corpus; run with --ignored"]
fn generate_channel_parse_corpus() {
    let budget = std::env::var("RESMEM_GEN_SECS").map_or(60, |s| s.parse().expect("seconds"));
    let seed = std::env::var("RESMEM_GEN_SEED").map_or(1, |s| s.parse().expect("a number"));
    let mut rng = Rng(seed | 1);
    let run = |data: &[u8]| std::panic::catch_unwind(|| channel_parse::run(data)).ok();
    let artifacts = corpus_dir().join("../../artifacts/channel_parse");
    std::fs::create_dir_all(corpus_dir()).expect("the corpus directory");
    let mut seen = BTreeSet::new();
    // The committed inputs count as seen; the hand-written seeds are always kept.
    let mut pool: Vec<Vec<u8>> = read_corpus(&corpus_dir())
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    for data in &pool {
        seen.extend(run(data).map(|o| features(&o)).unwrap_or_default());
    }
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for data in seeds() {
        let outcome = run(&data).unwrap_or_else(|| panic!("seed {data:?} panics"));
        seen.extend(features(&outcome));
        kept.push(data);
    }
    pool.extend(kept.iter().cloned());
    let (start, mut runs, mut crashes) = (Instant::now(), 0u64, 0);
    while start.elapsed() < Duration::from_secs(budget) {
        let data = if rng.below(4) == 0 {
            let n = 8 + rng.below(120);
            rng.bytes(n)
        } else {
            mutate(&mut rng, &pool)
        };
        runs += 1;
        let Some(outcome) = run(&data) else {
            crashes += 1;
            std::fs::create_dir_all(&artifacts).expect("the artifacts directory");
            let path = artifacts.join(format!("crash-{}", sha1(&data)));
            std::fs::write(&path, &data).expect("writing a crash input");
            eprintln!("crash: {}", path.display());
            continue;
        };
        let new: BTreeSet<String> = features(&outcome).difference(&seen).cloned().collect();
        if new.is_empty() {
            continue;
        }
        // The shortest prefix that still reaches every new feature.
        let mut best = data.clone();
        for cut in [data.len() / 4, data.len() / 2, data.len() * 3 / 4] {
            if cut > 0 && run(&data[..cut]).is_some_and(|o| features(&o).is_superset(&new)) {
                best = data[..cut].to_vec();
                break;
            }
        }
        eprintln!("kept {} bytes for {new:?}", best.len());
        seen.extend(new);
        pool.push(best.clone());
        kept.push(best);
    }
    for data in &kept {
        std::fs::write(corpus_dir().join(sha1(data)), data).expect("writing a corpus input");
    }
    eprintln!(
        "{runs} runs in {:?}, {crashes} crashes; kept {} inputs, {} features",
        start.elapsed(),
        kept.len(),
        seen.len()
    );
    if crashes == 0 {
        assert_eq!(leftovers(), Vec::<String>::new());
    }
}
