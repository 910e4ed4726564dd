//! Where segments live. A [`Backend`] creates, opens, lists and removes named memory objects
//! and maps them; the rest of the crate never touches the OS directly.
//!
//! Three implementations: [`PosixShm`] (`shm_open`, the default), [`FileBacked`] (plain files
//! in a directory, e.g. on hugetlbfs or for inspection) and [`ProcessLocal`] (heap memory in
//! a process-wide registry, for tests and in-process peers). One conformance suite in
//! `tests/backends.rs` runs against each.

mod file;
mod mapping;
mod posix;
mod process_local;

use std::fmt::Debug;
use std::io;

pub use file::FileBacked;
pub use mapping::{Mapping, ObjectLock};
pub use posix::PosixShm;
pub use process_local::ProcessLocal;

use crate::AccessMode;

/// How a new object is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Permission bits, applied exactly (not filtered by the umask).
    pub permissions: u32,
    /// Fault all pages in at map time.
    pub prefault: bool,
    /// Take the exclusive advisory lock right after the object is created, before it is
    /// sized, so that no moment exists where the object is visible and unowned.
    pub lock_exclusive: bool,
}

/// A namespace of named, mappable memory objects.
///
/// Contract every implementation keeps (checked by the conformance suite):
/// - `create` is exclusive: an existing name fails with `ErrorKind::AlreadyExists`; the new
///   object is zero-filled and exactly `size` bytes long.
/// - `open` of a missing name fails with `ErrorKind::NotFound`, of an object that exists but
///   has no size yet with `ErrorKind::UnexpectedEof`.
/// - `remove` unlinks the name; mappings that exist stay valid. It returns whether the name
///   existed.
/// - `list` returns every name in the namespace, in no particular order.
pub trait Backend: Send + Sync + Debug + 'static {
    /// A short, stable identifier ("posix", "file", "process-local").
    fn kind(&self) -> &'static str;

    /// The longest name an object may have.
    fn max_name_len(&self) -> usize;

    /// Creates object `name`, zero-filled and `size` bytes long, and maps it read-write.
    fn create(&self, name: &str, size: usize, options: &CreateOptions) -> io::Result<Mapping>;

    /// Opens and maps all of the existing object `name`.
    fn open(&self, name: &str, access: AccessMode) -> io::Result<Mapping>;

    /// Unlinks `name`; `Ok(false)` if there was no such object.
    fn remove(&self, name: &str) -> io::Result<bool>;

    /// Whether an object `name` exists (even one this process may not open).
    fn exists(&self, name: &str) -> io::Result<bool>;

    /// Every object name in the namespace, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;

    /// Whether some handle holds the exclusive lock of object `name` (its owner is alive).
    /// `ErrorKind::NotFound` if there is no such object.
    fn is_locked(&self, name: &str) -> io::Result<bool>;

    /// Takes the exclusive lock of object `name` without blocking, whatever its size:
    /// `Ok(None)` when another handle holds it (its owner is alive), `ErrorKind::NotFound` if
    /// there is no such object. Removers of stale memories hold it while they remove, so two
    /// of them (or a remover and a creator) never act on the same object at once.
    fn try_lock(&self, name: &str) -> io::Result<Option<ObjectLock>>;

    /// Whether `name` is the object `mapping` maps, whatever its size now: an owner must
    /// recognise (and remove) its objects even after a peer truncated them.
    fn is_same_object(&self, name: &str, mapping: &Mapping) -> io::Result<bool> {
        self.open(name, AccessMode::Read)
            .map(|other| other.same_object(mapping))
    }
}

/// The page size, which is also the largest alignment a chunk can have: segment payloads start
/// at a page boundary in every process.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| v.is_power_of_two())
            .unwrap_or(4096)
    })
}
