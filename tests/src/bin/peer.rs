//! `resmem-test-peer`: a native peer (or owner) process for the cross-process tests.
//!
//! ```text
//! resmem-test-peer verify --prefix P --name N [--access read|read-write] [--timeout-ms T]
//!                         [--show-maps] --offset U64:LEN:SEED [U64:LEN:SEED ...] [--offset ...]
//! resmem-test-peer write  --prefix P --name N [--timeout-ms T] --offset U64:LEN:SEED ...
//! resmem-test-peer serve  --prefix P --name N [--access read|read-write] [--timeout-ms T]
//! resmem-test-peer open-loop --prefix P --name N [--access ...] [--timeout-ms T] --count K
//!                         [--duration-ms D] [--stop-on-error]
//! resmem-test-peer owner  --prefix P --name N [--strategy static|best-fit|power-of-two]
//!                         [--sizes B1,B2,...] [--chunk-hint K] [--seed-base S] [--prefault]
//!                         [--permissions OCTAL] [--on-exit drop|abort|hang|abandon]
//! ```
//!
//! `verify` opens a view (read-only by default), registers every offset, checks that its LEN
//! bytes are the pattern of SEED (`resmem_e2e::pattern_byte`), unregisters and prints
//! `verified <bytes> bytes in <k> offsets, active segments <n>, after unregister <m>`.
//! `write` fills the chunks with their patterns through a read-write view. `serve` keeps one
//! view open and answers one line per command read from stdin (see [`serve`]). `owner` creates
//! the memory, allocates one chunk per size (sizes growing past the current bucket force new
//! segments), fills each with the pattern of `seed-base + i`, prints
//! `offset=<u64> len=<n> seed=<s>` per chunk, an `info` line and `ready`, then waits for a line
//! on stdin and exits as `--on-exit` says. Until then it serves `alloc <size> <seed>` lines:
//! allocate (growing if needed), fill, print the chunk's `offset=...` line.
//!
//! Modes that open a view take `--allow-stale` to open a memory whose owner is gone (otherwise
//! the open fails with `OwnerDead`).
//!
//! Every mode takes `--backend-dir DIR` to use the `FileBacked` backend in DIR instead of POSIX
//! shared memory, and `--pattern e2e|guest` to choose the byte pattern it writes and checks:
//! `e2e` (the default, `resmem_e2e::pattern_byte`) or `guest`, the pattern the wasm guests
//! write (`resmem_e2e::guest_pattern`), for verifying chunks a guest filled.
//!
//! Exit codes: see `resmem_e2e::exit`. Every mode exits by itself after `--max-lifetime-s`
//! (default 300) so that a test harness that died cannot leave it running forever.

use std::alloc::Layout;
use std::fmt;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use resmem::{AccessMode, AllocationStrategy, Config, FileBacked, Memory, OpenError, View};
use resmem_e2e::{ChunkSpec, Mismatch, Pattern, READY_LINE, VerifySummary, exit};

/// Why a peer operation failed; decides the exit code (one-shot) or the `err` line (serve).
enum Failure {
    Usage(String),
    Open(String, OpenError),
    Mismatch(ChunkSpec, Mismatch),
    Other(anyhow::Error),
}

impl Failure {
    fn code(&self) -> i32 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Open(..) => exit::OPEN,
            Self::Mismatch(..) => exit::MISMATCH,
            Self::Other(_) => exit::FAILURE,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(msg) => write!(f, "usage: {msg}"),
            // Debug of the error is its variant name, which the tests match on.
            Self::Open(what, e) => write!(f, "{what}: {e:?} ({e})"),
            Self::Mismatch(spec, m) => write!(
                f,
                "chunk {spec} (segment {}): {m}",
                spec.offset.segment_id()
            ),
            Self::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

/// Command-line options of every mode (each mode reads the ones it needs).
struct Options {
    prefix: Option<String>,
    name: Option<String>,
    access: AccessMode,
    timeout: Duration,
    show_maps: bool,
    offsets: Vec<ChunkSpec>,
    strategy: AllocationStrategy,
    sizes: Vec<usize>,
    chunk_hint: usize,
    seed_base: u64,
    prefault: bool,
    permissions: Option<u32>,
    on_exit: OnExit,
    max_lifetime: Duration,
    count: usize,
    backend_dir: Option<String>,
    duration: Option<Duration>,
    stop_on_error: bool,
    pattern: Pattern,
    allow_stale: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OnExit {
    Drop,
    Abort,
    Hang,
    Abandon,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let usage = |msg: String| Failure::Usage(msg);
    let mut o = Options {
        prefix: None,
        name: None,
        access: AccessMode::Read,
        timeout: Duration::from_secs(5),
        show_maps: false,
        offsets: Vec::new(),
        strategy: AllocationStrategy::PowerOfTwo,
        sizes: vec![4096, 8192, 16384, 32768, 65536],
        chunk_hint: 1,
        seed_base: 1,
        prefault: false,
        permissions: None,
        on_exit: OnExit::Drop,
        max_lifetime: Duration::from_secs(300),
        count: 1,
        backend_dir: None,
        duration: None,
        stop_on_error: false,
        pattern: Pattern::E2e,
        allow_stale: false,
    };
    let mut i = 0;
    let value = |i: &mut usize, flag: &str| -> Result<String> {
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| usage(format!("{flag} needs a value")))
    };
    let number = |text: String, flag: &str| -> Result<u64> {
        text.parse::<u64>()
            .map_err(|_| usage(format!("{flag}: not a number: {text:?}")))
    };
    while i < args.len() {
        let flag = args[i].as_str();
        match flag {
            "--prefix" => o.prefix = Some(value(&mut i, flag)?),
            "--name" => o.name = Some(value(&mut i, flag)?),
            "--access" => {
                o.access = match value(&mut i, flag)?.as_str() {
                    "read" => AccessMode::Read,
                    "read-write" => AccessMode::ReadWrite,
                    other => return Err(usage(format!("--access: {other:?}"))),
                }
            }
            "--timeout-ms" => {
                o.timeout = Duration::from_millis(number(value(&mut i, flag)?, flag)?)
            }
            "--show-maps" => o.show_maps = true,
            "--offset" => {
                // One or more specs, up to the next flag.
                let before = o.offsets.len();
                while args.get(i + 1).is_some_and(|a| !a.starts_with("--")) {
                    i += 1;
                    o.offsets.push(args[i].parse().map_err(usage)?);
                }
                if o.offsets.len() == before {
                    return Err(usage("--offset needs at least one U64:LEN:SEED".into()));
                }
            }
            "--strategy" => {
                o.strategy = match value(&mut i, flag)?.as_str() {
                    "static" => AllocationStrategy::Static,
                    "best-fit" => AllocationStrategy::BestFit,
                    "power-of-two" => AllocationStrategy::PowerOfTwo,
                    other => return Err(usage(format!("--strategy: {other:?}"))),
                }
            }
            "--sizes" => {
                o.sizes = value(&mut i, flag)?
                    .split(',')
                    .map(|s| number(s.to_owned(), flag).map(|n| n as usize))
                    .collect::<Result<_>>()?;
                if o.sizes.is_empty() || o.sizes.contains(&0) {
                    return Err(usage("--sizes: need at least one non-zero size".into()));
                }
            }
            "--backend-dir" => o.backend_dir = Some(value(&mut i, flag)?),
            "--duration-ms" => {
                o.duration = Some(Duration::from_millis(number(value(&mut i, flag)?, flag)?))
            }
            "--stop-on-error" => o.stop_on_error = true,
            "--allow-stale" => o.allow_stale = true,
            "--pattern" => {
                let text = value(&mut i, flag)?;
                o.pattern = text
                    .parse()
                    .map_err(|e: String| usage(format!("--pattern: {e}")))?;
            }
            "--count" => o.count = number(value(&mut i, flag)?, flag)? as usize,
            "--chunk-hint" => o.chunk_hint = number(value(&mut i, flag)?, flag)? as usize,
            "--seed-base" => o.seed_base = number(value(&mut i, flag)?, flag)?,
            "--prefault" => o.prefault = true,
            "--permissions" => {
                let text = value(&mut i, flag)?;
                o.permissions = Some(
                    u32::from_str_radix(&text, 8)
                        .map_err(|_| usage(format!("--permissions: not octal: {text:?}")))?,
                );
            }
            "--on-exit" => {
                o.on_exit = match value(&mut i, flag)?.as_str() {
                    "drop" => OnExit::Drop,
                    "abort" => OnExit::Abort,
                    "hang" => OnExit::Hang,
                    "abandon" => OnExit::Abandon,
                    other => return Err(usage(format!("--on-exit: {other:?}"))),
                }
            }
            "--max-lifetime-s" => {
                o.max_lifetime = Duration::from_secs(number(value(&mut i, flag)?, flag)?)
            }
            other => return Err(usage(format!("unknown argument {other:?}"))),
        }
        i += 1;
    }
    Ok(o)
}

impl Options {
    fn config(&self) -> Result<Config> {
        let prefix = self
            .prefix
            .as_deref()
            .ok_or_else(|| Failure::Usage("--prefix is required".into()))?;
        let mut config = Config::default().prefix(prefix).prefault(self.prefault);
        if let Some(mode) = self.permissions {
            config = config.permissions(mode);
        }
        if let Some(dir) = &self.backend_dir {
            config = config.backend(FileBacked::new(dir));
        }
        Ok(config)
    }

    fn name(&self) -> Result<&str> {
        self.name
            .as_deref()
            .ok_or_else(|| Failure::Usage("--name is required".into()))
    }

    fn open_view(&self, access: AccessMode) -> Result<View> {
        View::builder(self.name()?)
            .config(&self.config()?)
            .timeout(self.timeout)
            .allow_stale(self.allow_stale)
            .open(access)
            .map_err(|e| Failure::Open("open".into(), e))
    }
}

/// Offsets registered with a view; unregistered on drop, so every early return keeps the
/// register/unregister pairing the view requires.
struct Registered<'v> {
    view: &'v View,
    entries: Vec<(ChunkSpec, *const u8)>,
}

impl<'v> Registered<'v> {
    fn new(view: &'v View) -> Self {
        Self {
            view,
            entries: Vec::new(),
        }
    }

    fn register(&mut self, spec: ChunkSpec) -> Result<*const u8> {
        // SAFETY: every successful registration is pushed to `entries` and unregistered exactly
        // once, in `unregister_all` (also run by drop), after the last use of its address.
        let ptr = unsafe { self.view.register_and_translate_offset(spec.offset) }
            .map_err(|e| Failure::Open(format!("register {spec}"), e))?;
        self.entries.push((spec, ptr));
        Ok(ptr)
    }

    fn unregister_all(&mut self) {
        for (spec, _) in self.entries.drain(..) {
            // SAFETY: registered once by `register`; its address is not used after this.
            unsafe { self.view.unregister_offset(spec.offset) };
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.unregister_all();
    }
}

fn check_chunk(spec: ChunkSpec, ptr: *const u8, pattern: Pattern) -> Result<()> {
    // SAFETY: `ptr` is the registered translation of `spec.offset`, which the test names as a
    // chunk of at least `spec.len` bytes inside its segment's mapping; no process writes these
    // bytes while a peer verifies them (the tests' protocol).
    let bytes = unsafe { std::slice::from_raw_parts(ptr, spec.len) };
    pattern
        .check(bytes, spec.seed)
        .map_err(|m| Failure::Mismatch(spec, m))
}

/// Registers every offset, checks every byte, unregisters.
fn verify(view: &View, specs: &[ChunkSpec], pattern: Pattern) -> Result<VerifySummary> {
    let mut registered = Registered::new(view);
    for &spec in specs {
        registered.register(spec)?;
    }
    for &(spec, ptr) in &registered.entries {
        check_chunk(spec, ptr, pattern)?;
    }
    let active_segments = view.number_of_active_segments();
    registered.unregister_all();
    Ok(VerifySummary {
        bytes: specs.iter().map(|s| s.len as u64).sum(),
        offsets: specs.len(),
        active_segments,
        after_unregister: view.number_of_active_segments(),
    })
}

/// Fills every chunk with its pattern through a read-write view.
fn write(view: &View, specs: &[ChunkSpec], pattern: Pattern) -> Result<u64> {
    if view.access_mode() != AccessMode::ReadWrite {
        return Err(Failure::Other(anyhow!(
            "refusing to write through a {:?} view",
            view.access_mode()
        )));
    }
    let mut registered = Registered::new(view);
    for &spec in specs {
        let ptr = registered.register(spec)?;
        // SAFETY: the view is read-write, so the segment is mapped writable; the chunk has at
        // least `spec.len` bytes (the test's contract) and the owner does not touch it while a
        // peer writes (the tests' protocol).
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast_mut(), spec.len) };
        pattern.fill(bytes, spec.seed);
    }
    Ok(specs.iter().map(|s| s.len as u64).sum())
}

/// `perms=object` for every mapping of this memory's objects in this process.
fn maps(options: &Options) -> Result<Vec<String>> {
    let needle = format!(
        "/dev/shm/{}{}__",
        options.config()?.get_prefix(),
        options.name()?
    );
    let text = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let at = line.find(&needle)?;
            let perms = line.split_whitespace().nth(1)?;
            let object = line[at + "/dev/shm/".len()..].split_whitespace().next()?;
            Some(format!("{perms}={object}"))
        })
        .collect())
}

fn print_maps(options: &Options) -> Result<()> {
    for entry in maps(options)? {
        println!("map {entry}");
    }
    Ok(())
}

/// Answers one line per command until `quit` or end of input:
///
/// ```text
/// verify SPEC...      -> ok verified ... | err ...
/// write SPEC...       -> ok wrote <bytes> bytes in <k> offsets
/// hold SPEC...        -> registers and verifies, keeps them registered: ok held <k>
/// check-held          -> re-verifies the held chunks: ok verified ...
/// release             -> unregisters the held chunks: ok released <k> segments <n>
/// repeat N SPEC...    -> verify N times: ok repeated <N> <summary of the last>
/// info                -> ok segments=<n> current=<id|none> owner_alive=<b> owner_pid=<p> access=<a>
/// maps                -> ok maps <perms>=<object> ...
/// quit                -> ok bye
/// ```
fn serve(options: &Options) -> Result<()> {
    let view = options.open_view(options.access)?;
    let mut held = Registered::new(&view);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{READY_LINE}").context("stdout")?;
    stdout.flush().context("stdout")?;
    for line in stdin.lock().lines() {
        let line = line.context("stdin")?;
        let mut words = line.split_whitespace();
        let Some(command) = words.next() else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        let specs = || -> Result<Vec<ChunkSpec>> {
            rest.iter()
                .map(|w| w.parse().map_err(Failure::Usage))
                .collect()
        };
        let reply: Result<String> = match command {
            "verify" => specs()
                .and_then(|s| verify(&view, &s, options.pattern))
                .map(|s| s.to_string()),
            "write" => specs().and_then(|s| {
                write(&view, &s, options.pattern)
                    .map(|bytes| format!("wrote {bytes} bytes in {} offsets", s.len()))
            }),
            "hold" => specs().and_then(|s| {
                for spec in s {
                    let ptr = held.register(spec)?;
                    check_chunk(spec, ptr, options.pattern)?;
                }
                Ok(format!("held {}", held.entries.len()))
            }),
            "check-held" => held
                .entries
                .iter()
                .try_for_each(|&(spec, ptr)| check_chunk(spec, ptr, options.pattern))
                .map(|()| {
                    VerifySummary {
                        bytes: held.entries.iter().map(|(s, _)| s.len as u64).sum(),
                        offsets: held.entries.len(),
                        active_segments: view.number_of_active_segments(),
                        after_unregister: view.number_of_active_segments(),
                    }
                    .to_string()
                }),
            "release" => {
                let n = held.entries.len();
                held.unregister_all();
                Ok(format!(
                    "released {n} segments {}",
                    view.number_of_active_segments()
                ))
            }
            "repeat" => (|| {
                let (count, spec_words) = rest
                    .split_first()
                    .ok_or_else(|| Failure::Usage("repeat N SPEC...".into()))?;
                let count: usize = count
                    .parse()
                    .map_err(|_| Failure::Usage(format!("repeat: bad count {count:?}")))?;
                let specs: Vec<ChunkSpec> = spec_words
                    .iter()
                    .map(|w| w.parse().map_err(Failure::Usage))
                    .collect::<Result<_>>()?;
                let mut last = None;
                for _ in 0..count {
                    last = Some(verify(&view, &specs, options.pattern)?);
                }
                let last = last.ok_or_else(|| Failure::Usage("repeat 0".into()))?;
                Ok(format!("repeated {count} {last}"))
            })(),
            "info" => Ok(format!(
                "segments={} current={} owner_alive={} owner_pid={} access={}",
                view.number_of_active_segments(),
                view.owner_current_segment()
                    .map_or_else(|| "none".to_owned(), |id| id.to_string()),
                view.is_owner_alive(),
                view.header_info().owner_pid,
                match view.access_mode() {
                    AccessMode::Read => "read",
                    AccessMode::ReadWrite => "read-write",
                    _ => "unknown",
                }
            )),
            "maps" => maps(options).map(|m| format!("maps {}", m.join(" "))),
            "quit" => {
                writeln!(stdout, "ok bye").context("stdout")?;
                stdout.flush().context("stdout")?;
                return Ok(());
            }
            other => Err(Failure::Usage(format!("unknown command {other:?}"))),
        };
        match reply {
            Ok(text) => writeln!(stdout, "ok {text}"),
            Err(e) => writeln!(stdout, "err {e}"),
        }
        .context("stdout")?;
        stdout.flush().context("stdout")?;
    }
    Ok(())
}

/// Opens (and drops) up to `--count` views one after the other (for at most `--duration-ms`,
/// and only up to the first failure with `--stop-on-error`), also reading the owner's current
/// segment through each; prints `opened <n>: ok=<k> current_none=<c> errors=<Kind>:<count>,...`
/// and fails (`exit::FAILURE`) if any open failed or any current segment was unreadable.
fn open_loop(options: &Options) -> Result<()> {
    let config = options.config()?;
    let name = options.name()?;
    let mut ok = 0usize;
    let mut current_none = 0usize;
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    let deadline = options.duration.map(|d| std::time::Instant::now() + d);
    let mut attempts = 0usize;
    while attempts < options.count && deadline.is_none_or(|d| std::time::Instant::now() < d) {
        if options.stop_on_error && (!errors.is_empty() || current_none > 0) {
            break;
        }
        attempts += 1;
        match View::builder(name)
            .config(&config)
            .timeout(options.timeout)
            .open(options.access)
        {
            Ok(view) => {
                ok += 1;
                if view.owner_current_segment().is_none() {
                    current_none += 1;
                }
            }
            Err(e) => *errors.entry(format!("{e:?}")).or_default() += 1,
        }
    }
    let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    println!(
        "opened {attempts}: ok={ok} current_none={current_none} errors={}",
        list.join(",")
    );
    if errors.is_empty() && current_none == 0 {
        Ok(())
    } else {
        Err(Failure::Other(anyhow!(
            "{} of {attempts} opens failed ({}), {current_none} views could not read the current segment",
            attempts - ok,
            list.join(",")
        )))
    }
}

/// Serves `alloc <size> <seed>` lines (allocate, fill, print the chunk's owner line, or
/// `err ...`) until any other line or the end of input, which it returns (`None` at the end).
fn owner_commands(memory: &Memory, pattern: Pattern) -> Result<Option<String>> {
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("stdin")?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["alloc", size, seed] = words.as_slice() else {
            return Ok(Some(line));
        };
        let reply = match (size.parse::<usize>(), seed.parse::<u64>()) {
            (Ok(size), Ok(seed)) => alloc_filled(memory, size, seed, pattern)
                .map(|spec| spec.owner_line())
                .unwrap_or_else(|e| format!("err {e}")),
            _ => format!("err bad alloc line {line:?}"),
        };
        writeln!(stdout, "{reply}").context("stdout")?;
        stdout.flush().context("stdout")?;
    }
    Ok(None)
}

fn alloc_filled(memory: &Memory, size: usize, seed: u64, pattern: Pattern) -> Result<ChunkSpec> {
    let layout = Layout::from_size_align(size, 8)
        .map_err(|e| Failure::Other(anyhow!("layout {size}: {e}")))?;
    let chunk = memory
        .allocate(layout)
        .map_err(|e| Failure::Other(anyhow!("allocate {size}: {e:?} ({e})")))?;
    // SAFETY: a fresh chunk of at least `size` bytes that only this process uses until it has
    // printed its offset.
    pattern.fill(
        unsafe { std::slice::from_raw_parts_mut(chunk.data_ptr, size) },
        seed,
    );
    Ok(ChunkSpec::new(chunk.offset, size, seed))
}

fn owner(options: &Options) -> Result<()> {
    let config = options.config()?;
    let name = options.name()?;
    let layout = |size: usize| {
        Layout::from_size_align(size, 8).map_err(|e| Failure::Other(anyhow!("layout {size}: {e}")))
    };
    let memory = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(options.sizes[0])?)
        .max_number_of_chunks_hint(options.chunk_hint)
        .allocation_strategy(options.strategy)
        .create()
        .map_err(|e| Failure::Other(anyhow!("create {name}: {e:?} ({e})")))?;
    let mut stdout = std::io::stdout();
    for (i, &size) in options.sizes.iter().enumerate() {
        let spec = alloc_filled(&memory, size, options.seed_base + i as u64, options.pattern)?;
        writeln!(stdout, "{}", spec.owner_line()).context("stdout")?;
    }
    writeln!(
        stdout,
        "info owner_pid={} segments={} current={}",
        std::process::id(),
        memory.number_of_active_segments(),
        memory.current_segment()
    )
    .context("stdout")?;
    writeln!(stdout, "{READY_LINE}").context("stdout")?;
    stdout.flush().context("stdout")?;
    match options.on_exit {
        OnExit::Drop => {
            owner_commands(&memory, options.pattern)?;
            drop(memory);
            println!("dropped");
        }
        OnExit::Abandon => {
            owner_commands(&memory, options.pattern)?;
            memory.abandon();
            println!("abandoned");
        }
        OnExit::Abort => {
            owner_commands(&memory, options.pattern)?;
            std::process::abort();
        }
        OnExit::Hang => {
            // Ignore every other line; only the end of input (the test harness is gone) ends
            // the wait, and then we clean up rather than leak. A test SIGKILLs us before that.
            while owner_commands(&memory, options.pattern)?.is_some() {}
            drop(memory);
            println!("dropped");
        }
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let (mode, rest) = args
        .split_first()
        .ok_or_else(|| Failure::Usage("missing mode: verify|write|serve|owner".into()))?;
    let options = parse_options(rest)?;
    let lifetime = options.max_lifetime;
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!("resmem-test-peer: max lifetime of {lifetime:?} exceeded, exiting");
        std::process::exit(exit::FAILURE);
    });
    match mode.as_str() {
        "verify" => {
            if options.offsets.is_empty() {
                return Err(Failure::Usage("verify needs --offset".into()));
            }
            let view = options.open_view(options.access)?;
            let summary = if options.show_maps {
                // Print the mappings while every offset is registered.
                let mut registered = Registered::new(&view);
                for &spec in &options.offsets {
                    registered.register(spec)?;
                }
                print_maps(&options)?;
                drop(registered);
                verify(&view, &options.offsets, options.pattern)?
            } else {
                verify(&view, &options.offsets, options.pattern)?
            };
            println!("{summary}");
            println!("owner_alive={}", view.is_owner_alive());
        }
        "write" => {
            let view = options.open_view(AccessMode::ReadWrite)?;
            let bytes = write(&view, &options.offsets, options.pattern)?;
            println!("wrote {bytes} bytes in {} offsets", options.offsets.len());
        }
        "serve" => serve(&options)?,
        "open-loop" => open_loop(&options)?,
        "owner" => owner(&options)?,
        other => return Err(Failure::Usage(format!("unknown mode {other:?}"))),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("resmem-test-peer: error: {failure}");
            let _ = std::io::stdout().flush();
            ExitCode::from(failure.code() as u8)
        }
    }
}
