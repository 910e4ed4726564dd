//! Guests in Python and JavaScript on the same WIT contract as the Rust guests, run by the
//! `resmem` binary against native peer processes, every byte checked natively.
//!
//! - The **Python** guest (`guest/python`, componentize-py) is a command (`resmem run`): it
//!   reads chunks a native owner wrote through a view, computes CRC-32, sum, min and max, and
//!   publishes per chunk a header with those figures plus the inverted bytes in a memory of
//!   its own.
//! - The **Python subscriber** (`guest/python`, world `subscriber`) is a channel subscriber
//!   (`resmem run`): this process publishes samples natively; the guest waits for them in
//!   `wasi:io/poll.poll` on its subscriber's pollable and prints each one's length, CRC-32 and
//!   offset. The **JavaScript subscriber** (`guest/js`, world `subscriber`) does the same.
//! - The **JavaScript** guest (`guest/js`, componentize-js) is a filter plugin (world
//!   `plugin`): `out[i] = rotl8(in[i], 1) ^ (i & 0xff)`, run by `resmem filter`, alone or after
//!   the Rust filter plugin (`guest/filter`, `in[i] ^ 0x5A`).
//!
//! The components are built once per test binary by the guests' own build scripts
//! (`guest/python/build.sh`, `guest/js/build.sh`), which install the tools into a
//! project-local virtualenv / `node_modules` at pinned versions, into the target directory.
//! When a tool cannot be installed, that language's tests print `SKIPPED` with the reason and
//! pass — unless `RESMEM_REQUIRE_POLYGLOT=1` (set by `.ci/run`), which makes that a failure.
//!
//! The `resmem` binary is the one cargo built next to this test (`cargo test --workspace`
//! builds it; alone: `cargo build -p resmem-cli && cargo test -p resmem-e2e --test
//! polyglot`), or `$RESMEM_BIN`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use resmem::{AccessMode, Overflow, PointerOffset, Publisher, View};
use resmem_e2e::{ChunkSpec, fill_pattern};
use support::*;

/// The Rust filter plugin XORs every byte with this (guest/filter).
const RUST_FILTER_KEY: u8 = 0x5A;
/// Longest a `resmem` child may take: the first run of a component compiles it (6-9 s for
/// these ~15 MB components on an idle machine, far more on a loaded one); later runs load it
/// from the cache.
const GUEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Size of the header the Python guest writes before each chunk's payload.
const PY_HEADER: usize = 32;

/// Chunk sizes of the native producer: odd sizes, one past a 1 MiB read piece, and growth
/// through several segments.
const SIZES: &str = "1000,4096,65537,1048589,1500000";

/// Sample sizes the native publisher sends a subscriber guest one at a time, then in a
/// burst: growing from a first segment laid out for the first, so the memory adds segments
/// while the subscriber is connected; one past a 1 MiB read piece, then several pieces.
const PACED: [usize; 4] = [1000, 4096, 65_537, 1_048_589];
const BURST: [usize; 4] = [1_500_000, 2_097_153, 3_000_000, 4_194_311];
/// Seed of the first sample's pattern; sample `i` has seed `SAMPLE_SEED + i`.
const SAMPLE_SEED: u64 = 60;

// ---------------------------------------------------------------------------------------------
// Building the components, once per test binary
// ---------------------------------------------------------------------------------------------

/// Why a component is not there.
#[derive(Debug, Clone)]
enum Missing {
    /// The tool could not be installed on this machine (build script exit code 2).
    Unavailable(String),
    /// The build failed: always a test failure.
    Broken(String),
}

struct Components {
    python: Result<PathBuf, Missing>,
    python_subscriber: Result<PathBuf, Missing>,
    js_filter: Result<PathBuf, Missing>,
    js_subscriber: Result<PathBuf, Missing>,
}

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("polyglot")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `guest/<lang>/build.sh OUT_DIR [extra]` and returns the component path it prints.
fn build(lang: &str, extra: &[&str]) -> Result<PathBuf, Missing> {
    let script = repo().join("guest").join(lang).join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(out_dir())
        .args(extra)
        .output()
        .map_err(|e| Missing::Unavailable(format!("cannot run bash {}: {e}", script.display())))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
            if path.is_file() {
                Ok(path)
            } else {
                Err(Missing::Broken(format!(
                    "{} printed {stdout:?}, not a component",
                    script.display()
                )))
            }
        }
        Some(2) => Err(Missing::Unavailable(stderr)),
        _ => Err(Missing::Broken(format!(
            "{} failed ({}):\n{stderr}",
            script.display(),
            output.status
        ))),
    }
}

fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        // The two builds are independent: run them side by side.
        let js = std::thread::spawn(|| (build("js", &["filter"]), build("js", &["js-subscriber"])));
        // One after the other: both set up the same virtualenv.
        let python = build("python", &["stats"]);
        let python_subscriber = build("python", &["subscriber"]);
        let (js_filter, js_subscriber) = js.join().expect("the js build thread");
        Components {
            python,
            python_subscriber,
            js_filter,
            js_subscriber,
        }
    })
}

fn required() -> bool {
    std::env::var("RESMEM_REQUIRE_POLYGLOT").is_ok_and(|v| v == "1")
}

/// The component, or `None` (after printing why) when its tool is unavailable and not
/// required.
fn component(what: &str, built: &Result<PathBuf, Missing>) -> Option<PathBuf> {
    match built {
        Ok(path) => Some(path.clone()),
        Err(Missing::Broken(why)) => panic!("building the {what} guest: {why}"),
        Err(Missing::Unavailable(why)) if required() => {
            panic!("RESMEM_REQUIRE_POLYGLOT=1 but the {what} toolchain is unavailable: {why}")
        }
        Err(Missing::Unavailable(why)) => {
            eprintln!("SKIPPED: the {what} toolchain cannot be installed here: {why}");
            None
        }
    }
}

fn python() -> Option<PathBuf> {
    component("Python", &components().python)
}

/// A channel subscriber guest; the Python and the JavaScript one keep the same contract.
struct SubscriberGuest {
    component: PathBuf,
    /// For failure messages.
    what: &'static str,
    /// How it prints the host's `does-not-exist` error.
    does_not_exist: &'static str,
}

fn python_subscriber() -> Option<SubscriberGuest> {
    Some(SubscriberGuest {
        component: component("Python subscriber", &components().python_subscriber)?,
        what: "python subscriber",
        does_not_exist: "DoesNotExist",
    })
}

fn js_subscriber() -> Option<SubscriberGuest> {
    Some(SubscriberGuest {
        component: component("JavaScript subscriber", &components().js_subscriber)?,
        what: "javascript subscriber",
        does_not_exist: "does-not-exist",
    })
}

fn js_filter() -> Option<PathBuf> {
    component("JavaScript", &components().js_filter)
}

/// The `resmem` binary: `$RESMEM_BIN`, else the one cargo built beside this test.
fn resmem_bin() -> PathBuf {
    let path = std::env::var_os("RESMEM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("the test's path");
            // target/<profile>/deps/polyglot-<hash> -> target/<profile>/resmem
            exe.parent()
                .and_then(Path::parent)
                .expect("the test runs from target/<profile>/deps")
                .join("resmem")
        });
    assert!(
        path.is_file(),
        "no resmem binary at {}: run `cargo build -p resmem-cli` first (cargo test \
         --workspace builds it) or set RESMEM_BIN",
        path.display()
    );
    path
}

/// `resmem <args>` in the scope's namespace, with compiled components cached in the target
/// directory (nothing written to the user's home).
fn resmem(scope: &Scope, args: &[&str]) -> Command {
    let (subcommand, rest) = args.split_first().expect("a subcommand");
    let mut command = Command::new(resmem_bin());
    // Before the rest: `run` hands everything after `--` to the guest.
    command
        .arg(subcommand)
        .args(["--namespace", scope.prefix()])
        .args(rest)
        .env(
            "RESMEM_CACHE_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("resmem-cwasm"),
        );
    command
}

// ---------------------------------------------------------------------------------------------
// What each stage must produce, computed natively
// ---------------------------------------------------------------------------------------------

/// CRC-32 (IEEE, reflected, as zlib's `crc32`).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn pattern(spec: &ChunkSpec) -> Vec<u8> {
    let mut bytes = vec![0; spec.len];
    fill_pattern(&mut bytes, spec.seed);
    bytes
}

/// The figures the Python guest computes over one input chunk.
#[derive(Debug, PartialEq, Eq)]
struct Stats {
    len: u64,
    crc32: u32,
    sum: u64,
    min: u8,
    max: u8,
}

impl Stats {
    fn of(bytes: &[u8]) -> Self {
        Self {
            len: bytes.len() as u64,
            crc32: crc32(bytes),
            sum: bytes.iter().map(|&b| u64::from(b)).sum(),
            min: bytes.iter().copied().min().unwrap_or(0),
            max: bytes.iter().copied().max().unwrap_or(0),
        }
    }

    /// From the 32-byte header the Python guest writes (see guest/python/src/stats.py).
    fn from_header(header: &[u8]) -> Self {
        assert_eq!(&header[..8], b"RMPYSTAT", "magic of {header:?}");
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
        assert_eq!(&header[22..24], &[0, 0], "padding of {header:?}");
        Self {
            len: u64_at(8),
            crc32: u32::from_le_bytes(header[16..20].try_into().unwrap()),
            min: header[20],
            max: header[21],
            sum: u64_at(24),
        }
    }

    /// The Python guest's line for the chunk.
    fn line(&self, offset: u64) -> String {
        format!(
            "chunk {offset} {} crc32={:08x} sum={} min={} max={}",
            self.len as usize + PY_HEADER,
            self.crc32,
            self.sum,
            self.min,
            self.max
        )
    }
}

/// The JavaScript filter's transform of byte `i` of a buffer.
fn js_byte(b: u8, i: usize) -> u8 {
    b.rotate_left(1) ^ (i as u8)
}

/// Index and values of the first difference, for a readable failure.
fn first_difference(found: &[u8], expected: &[u8]) -> Option<(usize, u8, u8)> {
    if found.len() != expected.len() {
        return Some((found.len().min(expected.len()), 0, 0));
    }
    found
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .map(|i| (i, found[i], expected[i]))
}

/// Copies `len` bytes at `offset` out of `view`.
fn read_view(view: &View, offset: PointerOffset, len: usize) -> Vec<u8> {
    // SAFETY: unregistered below, after the copy; the chunk is at least `len` bytes (the
    // guest said so and the test checks the content) and nobody writes it meanwhile (its owner
    // waits for the test).
    let ptr = unsafe { view.register_and_translate_offset(offset) }
        .unwrap_or_else(|e| panic!("register {offset}: {e:?}"));
    let payload = view
        .segment_payload_size(offset.segment_id())
        .expect("a registered segment has a payload size");
    assert!(
        offset.offset() as usize + len <= payload,
        "{len} bytes at {offset} run past the segment's {payload} payload bytes"
    );
    // SAFETY: inside the mapped payload (checked above), mapped while registered.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    // SAFETY: registered above; `ptr` is not used after this.
    unsafe { view.unregister_offset(offset) };
    bytes
}

/// `resmem-test-peer owner`: a native process owning memory `name` with chunks of [`SIZES`],
/// filled with the pattern of seeds 40, 41, ...
fn native_producer(scope: &Scope, name: &str) -> (Peer, Vec<ChunkSpec>) {
    let mut args = scope.peer_args("owner", name);
    args.extend(["--sizes", SIZES, "--seed-base", "40"].map(str::to_owned));
    let mut owner = Peer::spawn_peer(&args, "native producer");
    let specs: Vec<ChunkSpec> = owner
        .until_ready()
        .iter()
        .filter_map(|l| ChunkSpec::parse_owner_line(l))
        .collect();
    assert_eq!(specs.len(), SIZES.split(',').count(), "{specs:?}");
    assert!(segments_of(&specs).len() >= 3, "{specs:?}");
    (owner, specs)
}

fn release(mut peer: Peer, what: &str) {
    peer.send("");
    let status = peer.wait(STEP);
    assert!(
        status.success(),
        "{what} exited with {status:?}: {}",
        peer.stderr()
    );
}

/// The Python guest, started on `input`'s chunks and run until `ready`: the chunks it
/// published (offset and length, header included) and the lines it printed.
fn start_python(
    scope: &Scope,
    component: &Path,
    input: &str,
    specs: &[ChunkSpec],
) -> (Peer, Vec<(PointerOffset, usize)>, Vec<String>) {
    let mut args = vec!["run".to_owned(), component.display().to_string()];
    args.extend(
        ["--", input, "py-stats"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain(
                specs
                    .iter()
                    .map(|s| format!("{}:{}", s.offset.as_u64(), s.len)),
            ),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut guest = Peer::spawn(resmem(scope, &args), "python guest");
    // The first line may wait for the component to compile.
    let lines: Vec<String> =
        std::iter::from_fn(|| Some(guest.line(GUEST_TIMEOUT)).filter(|line| line != "ready"))
            .collect();
    let published = lines
        .iter()
        .filter_map(|l| {
            let mut words = l.strip_prefix("chunk ")?.split(' ');
            let offset = words.next()?.parse().ok()?;
            let len = words.next()?.parse().ok()?;
            Some((PointerOffset::from_u64(offset), len))
        })
        .collect();
    (guest, published, lines)
}

/// Runs `resmem filter` on `buffers` of `memory` through `plugins`; returns the output bytes.
fn run_filter(
    scope: &Scope,
    memory: &str,
    buffers: &[(PointerOffset, usize)],
    plugins: &[&Path],
    out: &Path,
) -> Outcome {
    let mut args = vec!["filter".to_owned(), memory.to_owned()];
    args.extend(
        buffers
            .iter()
            .map(|(offset, len)| format!("{}/{len}", offset.as_u64())),
    );
    for plugin in plugins {
        args.extend(["--plugin".to_owned(), plugin.display().to_string()]);
    }
    args.extend(["--output".to_owned(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(resmem(scope, &args), "resmem filter", GUEST_TIMEOUT)
}

/// A native publisher of `service` in the scope's namespace (the prefix `resmem run
/// --namespace` gives the guest), its first segment laid out for four samples of `first`
/// bytes; `send` waits for a full subscriber rather than drop a sample.
fn native_publisher(scope: &Scope, service: &str, first: usize) -> Publisher {
    Publisher::builder(service)
        .config(&scope.config())
        .overflow(Overflow::Block)
        .max_chunk_layout_hint(layout(first))
        .max_number_of_chunks_hint(4)
        .create()
        .unwrap_or_else(|e| panic!("a native publisher of {service:?}: {e:?}"))
}

/// A sample the native publisher sent.
struct Sent {
    offset: PointerOffset,
    len: usize,
    crc32: u32,
}

impl Sent {
    /// Loans `len` bytes, fills them in place with the pattern of `seed` and sends them to
    /// the one subscriber.
    fn pattern(publisher: &Publisher, len: usize, seed: u64) -> Self {
        let mut sample = publisher
            .loan(layout(len))
            .unwrap_or_else(|e| panic!("a loan of {len} bytes: {e:?}"));
        fill_pattern(sample.payload_mut(), seed);
        let sent = Self {
            offset: sample.offset(),
            len,
            crc32: crc32(sample.payload()),
        };
        let delivered = sample
            .send()
            .unwrap_or_else(|e| panic!("sending {len} bytes: {e:?}"));
        assert_eq!(
            delivered, 1,
            "the sample of {len} bytes reached one subscriber"
        );
        sent
    }

    /// A subscriber guest's line for it, as sample `index`.
    fn line(&self, index: usize) -> String {
        format!(
            "sample {index} len={} crc32={:08x} segment={} offset={}",
            self.len,
            self.crc32,
            self.offset.segment_id().value(),
            self.offset.as_u64()
        )
    }
}

/// A subscriber guest's last line: `end <reason> samples=<n> bytes=<n> polls=<n>
/// empty=<n>`.
#[derive(Debug, PartialEq, Eq)]
struct End {
    reason: String,
    samples: usize,
    bytes: u64,
    polls: usize,
    empty: usize,
}

impl End {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix("end ")?.split(' ');
        let reason = words.next()?.to_owned();
        let mut field = |name: &str| -> Option<u64> {
            words
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let end = Self {
            reason,
            samples: field("samples")? as usize,
            bytes: field("bytes")?,
            polls: field("polls")? as usize,
            empty: field("empty")? as usize,
        };
        words.next().is_none().then_some(end)
    }
}

/// `resmem run <subscriber component> -- <args>`; `extra` goes to `resmem run` itself.
fn subscriber_command(
    scope: &Scope,
    guest: &SubscriberGuest,
    extra: &[&str],
    args: &[&str],
) -> Command {
    let component = guest.component.display().to_string();
    let mut all = vec!["run"];
    all.extend(extra);
    all.extend([component.as_str(), "--"]);
    all.extend(args);
    resmem(scope, &all)
}

fn start_subscriber(scope: &Scope, guest: &SubscriberGuest, args: &[&str]) -> Peer {
    Peer::spawn(subscriber_command(scope, guest, &[], args), guest.what)
}

/// Reads a subscriber guest's lines up to its `end` line, checking each `sample` line against
/// `sent` from sample `first` on; returns how many `waiting` lines came and the end.
fn subscriber_until_end(guest: &mut Peer, sent: &[Sent], first: usize) -> (usize, End) {
    let mut index = first;
    let mut waits = 0;
    loop {
        let line = guest.line(STEP);
        if line == "waiting" {
            waits += 1;
        } else if let Some(end) = End::parse(&line) {
            return (waits, end);
        } else {
            let expected = sent.get(index).map(|s| s.line(index));
            assert_eq!(Some(line), expected, "sample {index}");
            index += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// native → Python → Rust → JavaScript → native: a native producer process writes chunks; the
/// Python guest (`resmem run`) reads them through a view and publishes statistics plus the
/// inverted bytes in its own memory, which this process checks through a native view; then
/// `resmem filter` runs Python's chunks through the Rust filter plugin and the JavaScript
/// filter plugin in a chain and writes the result, which this process checks byte by byte.
#[test]
fn native_python_rust_js_native_pipeline() {
    let (Some(python), Some(js)) = (python(), js_filter()) else {
        return;
    };
    let scope = Scope::new("poly");
    let (producer, specs) = native_producer(&scope, "frames");

    // Python: statistics over the producer's chunks, published in `py-stats`.
    let (guest, published, lines) = start_python(&scope, &python, "frames", &specs);
    assert_eq!(published.len(), specs.len(), "{lines:?}");
    let total: usize = specs.iter().map(|s| s.len).sum();
    assert_eq!(
        lines.last().map(String::as_str),
        Some(
            format!(
                "published {} chunks, {total} bytes in 'py-stats'",
                specs.len()
            )
            .as_str()
        ),
        "{lines:?}"
    );
    let view = View::builder("py-stats")
        .config(&scope.config())
        .open(AccessMode::Read)
        .expect("a native view of the Python guest's memory");
    let mut python_chunks = Vec::new();
    for (i, (spec, &(offset, len))) in specs.iter().zip(&published).enumerate() {
        let input = pattern(spec);
        let stats = Stats::of(&input);
        assert_eq!(lines[i], stats.line(offset.as_u64()), "chunk {i}");
        assert_eq!(len, spec.len + PY_HEADER, "chunk {i}");
        let chunk = read_view(&view, offset, len);
        assert_eq!(Stats::from_header(&chunk[..PY_HEADER]), stats, "header {i}");
        let inverted: Vec<u8> = input.iter().map(|b| !b).collect();
        assert_eq!(
            first_difference(&chunk[PY_HEADER..], &inverted),
            None,
            "payload of chunk {i} (found, expected)"
        );
        python_chunks.push(chunk);
    }
    drop(view);

    // Rust filter, then JavaScript filter, over Python's chunks, in one `resmem filter`.
    let dir = TempDir::new("poly");
    let out = dir.0.join("out.bin");
    let rust = Path::new(resmem_guests::FILTER);
    let outcome = run_filter(&scope, "py-stats", &published, &[rust, &js], &out);
    assert!(
        outcome.status.success(),
        "resmem filter: {:?}\n{}",
        outcome.status,
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains(&format!("{} buffers through 2 plugin(s)", specs.len())),
        "{}",
        outcome.stderr
    );
    let output = std::fs::read(&out).expect("the filter output");
    let expected: Vec<u8> = python_chunks
        .iter()
        .flat_map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, &b)| js_byte(b ^ RUST_FILTER_KEY, i))
        })
        .collect();
    assert_eq!(output.len(), expected.len());
    assert_eq!(
        first_difference(&output, &expected),
        None,
        "filter chain output (found, expected)"
    );

    release(guest, "the Python guest");
    release(producer, "the native producer");
    scope.assert_clean();
}

/// native → JavaScript → native, and an empty buffer: the JavaScript plugin alone over the
/// native producer's chunks; an empty buffer gives no output (`none`).
#[test]
fn js_filter_transforms_native_chunks() {
    let Some(js) = js_filter() else { return };
    let scope = Scope::new("polyjs");
    let (producer, specs) = native_producer(&scope, "frames");
    let mut buffers: Vec<(PointerOffset, usize)> =
        specs.iter().map(|s| (s.offset, s.len)).collect();
    buffers.insert(2, (specs[0].offset, 0));
    let dir = TempDir::new("polyjs");
    let out = dir.0.join("out.bin");
    let outcome = run_filter(&scope, "frames", &buffers, &[&js], &out);
    assert!(
        outcome.status.success(),
        "{:?}\n{}",
        outcome.status,
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("buffer 2: 0 B at"),
        "{}",
        outcome.stderr
    );
    let output = std::fs::read(&out).expect("the filter output");
    let expected: Vec<u8> = specs
        .iter()
        .flat_map(|spec| {
            pattern(spec)
                .into_iter()
                .enumerate()
                .map(|(i, b)| js_byte(b, i))
        })
        .collect();
    assert_eq!(
        first_difference(&output, &expected),
        None,
        "JavaScript filter output (found, expected)"
    );
    release(producer, "the native producer");
    scope.assert_clean();
}

/// A buffer the input memory does not hold: the JavaScript plugin refuses it with the host's
/// typed error in its message, and `resmem filter` fails naming the buffer.
#[test]
fn js_filter_refuses_an_offset_outside_the_memory() {
    let Some(js) = js_filter() else { return };
    let scope = Scope::new("polyjsbad");
    let (producer, specs) = native_producer(&scope, "frames");
    // Segment 200 was never created.
    let bad = PointerOffset::from_u64(200);
    let dir = TempDir::new("polyjsbad");
    let out = dir.0.join("out.bin");
    let outcome = run_filter(
        &scope,
        "frames",
        &[(specs[0].offset, 16), (bad, 16)],
        &[&js],
        &out,
    );
    assert_eq!(outcome.code(), Some(1), "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("refused buffer 1: register input 200:0"),
        "{}",
        outcome.stderr
    );
    // The first buffer went through before the refusal.
    let output = std::fs::read(&out).expect("the filter output");
    let first: Vec<u8> = pattern(&specs[0])[..16]
        .iter()
        .enumerate()
        .map(|(i, &b)| js_byte(b, i))
        .collect();
    assert_eq!(output, first);
    release(producer, "the native producer");
    scope.assert_clean();
}

/// The Python guest on bad input: the host refuses with typed errors the guest reports (the
/// WIT error case and its message), exit code 1, and the guest's own memory is gone.
#[test]
fn python_guest_reports_host_errors() {
    let Some(python) = python() else { return };
    let scope = Scope::new("polypybad");
    let (producer, specs) = native_producer(&scope, "frames");
    let python = python.display().to_string();
    let offset = specs[0].offset.as_u64();
    let cases = [
        // Past every segment the producer created: the view's read is refused.
        (
            format!("{offset}:{}", 1u64 << 26),
            "frames",
            "stats: InvalidOffset(",
        ),
        // An output chunk over the default 256 MiB chunk quota.
        (
            format!("{offset}:{}", 1u64 << 40),
            "frames",
            "stats: QuotaExceeded(",
        ),
        ("0:8".to_owned(), "nothing", "stats: DoesNotExist"),
    ];
    for (chunk, input, expected) in &cases {
        let outcome = run(
            resmem(&scope, &["run", &python, "--", input, "py-stats", chunk]),
            "python guest",
            GUEST_TIMEOUT,
        );
        assert_eq!(outcome.code(), Some(1), "{chunk}: {outcome:?}");
        assert!(
            outcome.stderr.contains(expected),
            "{chunk}: expected {expected:?} in {}",
            outcome.stderr
        );
        assert!(!resmem::exists("py-stats", &scope.config()).unwrap());
    }
    release(producer, "the native producer");
    scope.assert_clean();
}

/// `resmem filter` with the Rust plugin only (runs wherever the Rust guests build): every
/// byte XORed with 0x5A. Plugins of one chain share the namespace, so the same plugin twice
/// is refused (its output memory exists), as is a buffer without a length.
#[test]
fn resmem_filter_runs_the_rust_plugin() {
    let scope = Scope::new("polyrs");
    let (producer, specs) = native_producer(&scope, "frames");
    let buffers: Vec<(PointerOffset, usize)> = specs.iter().map(|s| (s.offset, s.len)).collect();
    let rust = Path::new(resmem_guests::FILTER);
    let dir = TempDir::new("polyrs");
    let out = dir.0.join("out.bin");
    let outcome = run_filter(&scope, "frames", &buffers, &[rust], &out);
    assert!(
        outcome.status.success(),
        "{:?}\n{}",
        outcome.status,
        outcome.stderr
    );
    let output = std::fs::read(&out).expect("the filter output");
    let expected: Vec<u8> = specs
        .iter()
        .flat_map(|spec| pattern(spec).into_iter().map(|b| b ^ RUST_FILTER_KEY))
        .collect();
    assert_eq!(
        first_difference(&output, &expected),
        None,
        "output (found, expected)"
    );

    let twice = run_filter(&scope, "frames", &buffers, &[rust, rust], &out);
    assert_eq!(twice.code(), Some(1), "{twice:?}");
    assert!(
        twice.stderr.contains(
            "refused buffer 0: create the output memory \"filter-out\": a memory with this name \
             already exists"
        ),
        "{}",
        twice.stderr
    );
    let rust = rust.display().to_string();
    let bad = run(
        resmem(&scope, &["filter", "frames", "12", "--plugin", &rust]),
        "resmem filter",
        GUEST_TIMEOUT,
    );
    assert_eq!(bad.code(), Some(1), "{bad:?}");
    assert!(
        bad.stderr.contains("a buffer is OFFSET/LEN, got \"12\""),
        "{}",
        bad.stderr
    );
    release(producer, "the native producer");
    scope.assert_clean();
}

/// native → Python over a channel: the test process publishes samples of growing size (the
/// memory adds segments while the subscriber is connected); the Python subscriber (`resmem
/// run`, another process) waits in `wasi:io/poll.poll` on its subscriber's pollable and prints
/// each sample's length, CRC-32 and offset, all checked against what was sent. One at a time
/// first, each sent only after the guest said it waits in `poll`, so only a wake-up of the
/// pollable can bring it; then a burst; then the publisher goes, which wakes the guest too
/// (`disconnected`). It exits 0 and the namespace is empty.
#[test]
fn native_publisher_python_subscriber_woken_by_its_pollable() {
    if let Some(guest) = python_subscriber() {
        publisher_to_subscriber(&Scope::new("polysub"), &guest);
    }
}

/// The same with the JavaScript subscriber (componentize-js).
#[test]
fn native_publisher_js_subscriber_woken_by_its_pollable() {
    if let Some(guest) = js_subscriber() {
        publisher_to_subscriber(&Scope::new("polyjssub"), &guest);
    }
}

fn publisher_to_subscriber(scope: &Scope, subscriber: &SubscriberGuest) {
    let publisher = native_publisher(scope, "frames", PACED[0]);
    let segments_at_start = publisher.memory().number_of_active_segments();
    let mut guest = start_subscriber(scope, subscriber, &["frames"]);
    // The first line may wait for the component to compile.
    assert_eq!(guest.line(GUEST_TIMEOUT), "subscribed frames");
    assert_eq!(guest.line(STEP), "waiting");
    assert_eq!(publisher.number_of_subscribers(), 1);
    let mut waits = 1;
    let mut sent = Vec::new();
    for (i, &len) in PACED.iter().enumerate() {
        sent.push(Sent::pattern(&publisher, len, SAMPLE_SEED + i as u64));
        assert_eq!(guest.line(STEP), sent[i].line(i));
        // Drained: `receive` found nothing more, and the guest polls again.
        assert_eq!(guest.line(STEP), "waiting", "after sample {i}");
        waits += 1;
    }
    for (j, &len) in BURST.iter().enumerate() {
        let i = PACED.len() + j;
        sent.push(Sent::pattern(&publisher, len, SAMPLE_SEED + i as u64));
    }
    let mut index = PACED.len();
    while index < sent.len() {
        let line = guest.line(STEP);
        if line == "waiting" {
            waits += 1;
        } else {
            assert_eq!(line, sent[index].line(index), "sample {index}");
            index += 1;
        }
    }
    assert_eq!(guest.line(STEP), "waiting", "after the burst");
    waits += 1;

    let segments: std::collections::BTreeSet<u8> =
        sent.iter().map(|s| s.offset.segment_id().value()).collect();
    assert!(
        segments.len() >= 3,
        "the samples grew the memory through {segments:?} only"
    );
    assert!(
        publisher.memory().number_of_active_segments() > segments_at_start,
        "no segment was added while the subscriber was connected"
    );

    // The publisher goes: the pollable is ready for that too.
    drop(publisher);
    let (more_waits, end) = subscriber_until_end(&mut guest, &sent, sent.len());
    assert_eq!(more_waits, 0, "{end:?}");
    let bytes: usize = PACED.iter().chain(&BURST).sum();
    assert_eq!(
        end,
        End {
            reason: "disconnected".into(),
            samples: sent.len(),
            bytes: bytes as u64,
            polls: waits,
            empty: 0,
        }
    );
    let status = guest.wait(STEP);
    assert!(status.success(), "{status:?}: {}", guest.stderr());
    assert_eq!(guest.rest(), Vec::<String>::new());
    scope.assert_clean();
}

/// The Python subscriber's other ends (and the JavaScript one's, below): it stops after
/// `count` samples (exit 0; what it had not taken goes back to the publisher with its
/// subscriber), reports a publisher that goes before `count` samples (exit 1), and the host's
/// typed error for a service that does not exist or arguments it cannot use.
#[test]
fn python_subscriber_stops_at_its_count_or_reports_why_not() {
    if let Some(guest) = python_subscriber() {
        subscriber_ends(&Scope::new("polysubend"), &guest);
    }
}

/// The same with the JavaScript subscriber.
#[test]
fn js_subscriber_stops_at_its_count_or_reports_why_not() {
    if let Some(guest) = js_subscriber() {
        subscriber_ends(&Scope::new("polyjssubend"), &guest);
    }
}

fn subscriber_ends(scope: &Scope, subscriber: &SubscriberGuest) {
    // `count` 2 of 3 samples sent.
    let publisher = native_publisher(scope, "frames", 4096);
    let mut guest = start_subscriber(scope, subscriber, &["frames", "2"]);
    assert_eq!(guest.line(GUEST_TIMEOUT), "subscribed frames");
    assert_eq!(guest.line(STEP), "waiting");
    let sent: Vec<Sent> = (0..3)
        .map(|i| Sent::pattern(&publisher, 4096 + 8 * i, SAMPLE_SEED + i as u64))
        .collect();
    let (waits, end) = subscriber_until_end(&mut guest, &sent, 0);
    assert_eq!(
        end,
        End {
            reason: "count".into(),
            samples: 2,
            bytes: 4096 + 4104,
            polls: 1 + waits,
            empty: 0,
        }
    );
    let status = guest.wait(STEP);
    assert!(status.success(), "{status:?}: {}", guest.stderr());
    assert_eq!(
        publisher.number_of_subscribers(),
        0,
        "the guest's subscriber is gone"
    );
    drop(publisher);
    scope.assert_clean();

    // `count` 5, but the publisher goes after one sample.
    let publisher = native_publisher(scope, "frames", 1000);
    let mut guest = start_subscriber(scope, subscriber, &["frames", "5"]);
    assert_eq!(guest.line(GUEST_TIMEOUT), "subscribed frames");
    assert_eq!(guest.line(STEP), "waiting");
    let sent = [Sent::pattern(&publisher, 1000, SAMPLE_SEED)];
    assert_eq!(guest.line(STEP), sent[0].line(0));
    assert_eq!(guest.line(STEP), "waiting");
    drop(publisher);
    assert_eq!(
        End::parse(&guest.line(STEP)),
        Some(End {
            reason: "disconnected".into(),
            samples: 1,
            bytes: 1000,
            polls: 2,
            empty: 0,
        })
    );
    let status = guest.wait(STEP);
    assert_eq!(status.code(), Some(1), "{status:?}");
    let stderr = guest.stderr_at_exit();
    assert!(
        stderr.contains("subscriber: disconnected after 1 of 5 samples"),
        "{stderr}"
    );
    scope.assert_clean();

    // No such service (the host stops waiting for it after 200 ms), and bad arguments.
    let quota = ["--quota", "open-timeout-ms=200"];
    let missing = format!("subscriber: {}", subscriber.does_not_exist);
    let cases: [(&[&str], &str); 3] = [
        (&["nothing"], &missing),
        (
            &["frames", "many"],
            "subscriber: count 'many' is not a number",
        ),
        (&[], "subscriber: usage: subscriber <service> [count]"),
    ];
    for (args, expected) in cases {
        let command = subscriber_command(scope, subscriber, &quota, args);
        let outcome = run(command, subscriber.what, GUEST_TIMEOUT);
        assert_eq!(outcome.code(), Some(1), "{args:?}: {outcome:?}");
        assert!(
            outcome.stderr.contains(expected),
            "{args:?}: expected {expected:?} in {}",
            outcome.stderr
        );
    }
    scope.assert_clean();
}
