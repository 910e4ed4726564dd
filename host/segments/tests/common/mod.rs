//! Helpers shared by the integration tests.
//!
//! Every test gets its own [`Env`]: a [`Config`] with a prefix unique to this process and test
//! (`t<pid>_<n>_`), so tests run in parallel, and in parallel with other test binaries, without
//! seeing each other's objects. Dropping an `Env` removes whatever the test left behind and
//! fails the test if there was anything: every test must clean up its OS objects.
//!
//! [`backend_tests!`] follows iceoryx2-cal's conformance pattern: one test body, a generic
//! function taking `&Env`, instantiated once per backend (`mod posix`, `mod file`,
//! `mod process_local`).

#![allow(dead_code, unused_macros, unused_imports)]

use std::alloc::Layout;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use resmem::backend::{Backend, CreateOptions, Mapping};
use resmem::{
    AccessMode, AllocationStrategy, Config, FileBacked, Memory, MemoryBuilder, PosixShm,
    ProcessLocal, SegmentId,
};

/// The backends every conformance body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Posix,
    File,
    ProcessLocal,
}

/// A per-test namespace: unique prefix, its backend, and (for `File`) a fresh directory.
pub struct Env {
    pub kind: BackendKind,
    pub config: Config,
    dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A prefix no other test (in this or another process) uses.
pub fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}_{n}_", std::process::id())
}

impl Env {
    pub fn new(kind: BackendKind) -> Self {
        let prefix = unique_prefix();
        let (config, dir) = match kind {
            BackendKind::Posix => (Config::default().prefix(&prefix).backend(PosixShm), None),
            BackendKind::File => {
                let dir = tempfile::tempdir().expect("a temporary directory for FileBacked");
                let config = Config::default()
                    .prefix(&prefix)
                    .backend(FileBacked::new(dir.path()));
                (config, Some(dir))
            }
            BackendKind::ProcessLocal => (
                Config::default().prefix(&prefix).backend(ProcessLocal),
                None,
            ),
        };
        Self { kind, config, dir }
    }

    pub fn posix() -> Self {
        Self::new(BackendKind::Posix)
    }

    pub fn backend(&self) -> &dyn Backend {
        self.config.get_backend()
    }

    pub fn prefix(&self) -> &str {
        self.config.get_prefix()
    }

    /// OS name of the management segment of memory `name` (see `name.rs`).
    pub fn mgmt_name(&self, name: &str) -> String {
        format!("{}{name}__mgmt{}", self.prefix(), self.config.get_suffix())
    }

    /// OS name of data segment `id` of memory `name`.
    pub fn segment_name(&self, name: &str, id: u8) -> String {
        format!("{}{name}__{id}{}", self.prefix(), self.config.get_suffix())
    }

    /// Where the object lives in the file system, for the backends that have one.
    pub fn object_path(&self, os_name: &str) -> Option<PathBuf> {
        match self.kind {
            BackendKind::Posix => Some(PathBuf::from("/dev/shm").join(os_name)),
            BackendKind::File => Some(
                self.dir
                    .as_ref()
                    .expect("file env has a dir")
                    .path()
                    .join(os_name),
            ),
            BackendKind::ProcessLocal => None,
        }
    }

    /// Every object of this test's namespace, sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .backend()
            .list()
            .expect("listing the backend")
            .into_iter()
            .filter(|n| n.starts_with(self.prefix()))
            .collect();
        names.sort();
        names
    }

    /// A builder for memory `name` in this namespace.
    pub fn builder(&self, name: &str) -> MemoryBuilder {
        Memory::builder(name).config(&self.config)
    }

    /// A memory whose segment 0 holds `chunks` buckets of `size` bytes aligned to 8.
    pub fn memory(
        &self,
        name: &str,
        size: usize,
        chunks: usize,
        strategy: AllocationStrategy,
    ) -> Memory {
        self.builder(name)
            .max_chunk_layout_hint(layout(size, 8))
            .max_number_of_chunks_hint(chunks)
            .allocation_strategy(strategy)
            .create()
            .expect("creating a memory in a fresh namespace")
    }

    /// Creates an object through the backend with the default options.
    pub fn create_object(&self, os_name: &str, size: usize) -> Mapping {
        self.backend()
            .create(os_name, size, &options(0o600))
            .expect("creating a raw backend object")
    }

    /// Creates an object holding its owner lock, as a live owner's management object does
    /// (the lock goes with the returned mapping).
    pub fn create_locked_object(&self, os_name: &str, size: usize) -> Mapping {
        self.backend()
            .create(
                os_name,
                size,
                &CreateOptions {
                    lock_exclusive: true,
                    ..options(0o600)
                },
            )
            .expect("creating a locked backend object")
    }

    /// Opens an existing object read-write through the backend.
    pub fn open_object(&self, os_name: &str) -> Mapping {
        self.backend()
            .open(os_name, AccessMode::ReadWrite)
            .expect("opening a raw backend object")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let left = self.objects();
        for name in &left {
            let _ = self.backend().remove(name);
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "test left OS objects behind: {left:?}");
        }
    }
}

pub fn options(permissions: u32) -> CreateOptions {
    CreateOptions {
        permissions,
        prefault: false,
        lock_exclusive: false,
    }
}

pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("a valid test layout")
}

pub fn page() -> usize {
    resmem::backend::page_size()
}

/// Reads 8 bytes from a chunk address (owner or view side).
///
/// # Safety
/// `ptr` must be valid for 8 bytes and 8-byte aligned.
pub unsafe fn read_u64(ptr: *const u8) -> u64 {
    // SAFETY: the caller's promise; atomics tolerate concurrent access by other threads.
    unsafe { AtomicU64::from_ptr(ptr as *mut u64) }.load(Ordering::Acquire)
}

/// Writes 8 bytes to a chunk address.
///
/// # Safety
/// `ptr` must be valid for writes of 8 bytes and 8-byte aligned.
pub unsafe fn write_u64(ptr: *mut u8, value: u64) {
    // SAFETY: the caller's promise.
    unsafe { AtomicU64::from_ptr(ptr as *mut u64) }.store(value, Ordering::Release);
}

/// Fills `len` bytes at `ptr` with a pattern derived from `seed`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes that nobody else accesses meanwhile.
pub unsafe fn fill(ptr: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: i < len.
        unsafe { ptr.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

/// Copies `len` bytes starting at `ptr`.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes that nobody writes meanwhile.
pub unsafe fn bytes(ptr: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec()
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// Byte offsets of the management header's fields (`header.rs`, `#[repr(C)]`). The tests
/// check them against a real header before relying on them.
pub mod mgmt {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const STATE: usize = 16;
    pub const OWNER_PID: usize = 20;
    pub const ALLOCATOR: usize = 24;
    pub const STRATEGY: usize = 28;
    pub const MAX_SEGMENTS: usize = 32;
    pub const CURRENT: usize = 36;
    pub const MEMORY_ID: usize = 40;
    pub const CHECKSUM: usize = 48;
    pub const PREFIX_HASH: usize = 56;
    pub const SLOTS: usize = 64;
    pub const SLOT_STRIDE: usize = 64;
    // Within one slot record.
    pub const SLOT_STATE: usize = 0;
    pub const SLOT_SEQUENCE: usize = 8;
    pub const SLOT_PAYLOAD: usize = 16;
    pub const SLOT_CHUNK_SIZE: usize = 24;
    pub const SLOT_CHUNK_ALIGN: usize = 32;

    pub const fn slot(id: u8, field: usize) -> usize {
        SLOTS + id as usize * SLOT_STRIDE + field
    }
}

/// Byte offsets of a segment trailer's fields.
pub mod trailer {
    pub const MAGIC: usize = 0;
    pub const MEMORY_ID: usize = 8;
    pub const SEQUENCE: usize = 16;
    pub const PAYLOAD: usize = 24;
    pub const SEGMENT_ID: usize = 32;
}

/// Atomic 32-bit store into a mapping (the other side reads it with atomics too).
pub fn poke_u32(mapping: &Mapping, at: usize, value: u32) {
    assert!(at + 4 <= mapping.len() && at.is_multiple_of(4));
    // SAFETY: in bounds (checked) and aligned (mapping is page aligned, `at` a multiple of 4).
    unsafe { AtomicU32::from_ptr(mapping.as_ptr().add(at) as *mut u32) }
        .store(value, Ordering::SeqCst);
}

pub fn poke_u64(mapping: &Mapping, at: usize, value: u64) {
    assert!(at + 8 <= mapping.len() && at.is_multiple_of(8));
    // SAFETY: in bounds (checked) and aligned (mapping is page aligned, `at` a multiple of 8).
    unsafe { AtomicU64::from_ptr(mapping.as_ptr().add(at) as *mut u64) }
        .store(value, Ordering::SeqCst);
}

pub fn peek_u32(mapping: &Mapping, at: usize) -> u32 {
    assert!(at + 4 <= mapping.len() && at.is_multiple_of(4));
    // SAFETY: in bounds (checked) and aligned.
    unsafe { AtomicU32::from_ptr(mapping.as_ptr().add(at) as *mut u32) }.load(Ordering::SeqCst)
}

pub fn peek_u64(mapping: &Mapping, at: usize) -> u64 {
    assert!(at + 8 <= mapping.len() && at.is_multiple_of(8));
    // SAFETY: in bounds (checked) and aligned.
    unsafe { AtomicU64::from_ptr(mapping.as_ptr().add(at) as *mut u64) }.load(Ordering::SeqCst)
}

/// Where the trailer of a segment with `payload_size` payload bytes starts.
pub fn trailer_at(payload_size: usize) -> usize {
    resmem::header::segment_geometry(payload_size, page())
        .expect("a representable payload")
        .0
}

/// A tiny deterministic PRNG (xorshift64*), so hostile inputs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Segment id shorthand.
pub fn sid(id: u8) -> SegmentId {
    SegmentId::new(id)
}

/// Instantiates generic test bodies `fn body(env: &Env)` once per backend:
/// `all: [..]` for every backend, `os: [..]` only for the backends with file-system objects
/// (POSIX shm and FileBacked), whose bytes and metadata the test inspects directly.
macro_rules! backend_tests {
    (all: [$($all:ident),* $(,)?] $(, os: [$($os:ident),* $(,)?])? $(,)?) => {
        // Miri cannot call shm_open or mmap files: only the process-local instances run there.
        mod posix {
            $(
                #[test]
                #[cfg_attr(miri, ignore = "shm_open/mmap: not supported by Miri")]
                fn $all() {
                    super::$all(&crate::common::Env::new(crate::common::BackendKind::Posix));
                }
            )*
            $($(
                #[test]
                #[cfg_attr(miri, ignore = "shm_open/mmap: not supported by Miri")]
                fn $os() {
                    super::$os(&crate::common::Env::new(crate::common::BackendKind::Posix));
                }
            )*)?
        }
        mod file {
            $(
                #[test]
                #[cfg_attr(miri, ignore = "mmap of files: not supported by Miri")]
                fn $all() {
                    super::$all(&crate::common::Env::new(crate::common::BackendKind::File));
                }
            )*
            $($(
                #[test]
                #[cfg_attr(miri, ignore = "mmap of files: not supported by Miri")]
                fn $os() {
                    super::$os(&crate::common::Env::new(crate::common::BackendKind::File));
                }
            )*)?
        }
        mod process_local {
            $(
                #[test]
                fn $all() {
                    super::$all(&crate::common::Env::new(crate::common::BackendKind::ProcessLocal));
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// The permission string ("rw-s", "r--s", ...) of the mapping that contains `addr`, from
/// `/proc/self/maps`.
pub fn mapping_perms(addr: *const u8) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let addr = addr as usize;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start <= addr && addr < end).then(|| fields.next().map(str::to_owned))?
    })
}

/// This test binary run again as a helper process: only the ignored test `test`, with
/// `prefix` in the environment variable `env`, returned once it printed `ready` (see
/// [`helper_publisher`]). Killed and reaped when dropped, also when the test fails first.
pub struct HelperProcess {
    child: std::process::Child,
    // Kept open: the helper may print more.
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl HelperProcess {
    pub fn start(test: &str, env: &str, prefix: &str) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--ignored", "--nocapture"])
            .env(env, prefix)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut helper = Self { child, stdout };
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            let read = helper.stdout.read_line(&mut line).unwrap();
            assert_ne!(read, 0, "{test} ended before it was ready");
        }
        helper
    }

    /// Kills it now (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The helper side of [`HelperProcess`]: the publisher of `service` under the prefix in `env`,
/// announced with `ready`; `None` when the test runs on its own (not as a helper).
pub fn helper_publisher(env: &str, service: &str) -> Option<resmem::Publisher> {
    let prefix = std::env::var(env).ok()?;
    let config = Config::default().prefix(&prefix);
    let publisher = resmem::Publisher::builder(service)
        .config(&config)
        .create()
        .unwrap();
    println!("ready");
    Some(publisher)
}
