//! A mapped object: an address range plus whatever keeps it alive.

use std::fs::{File, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::CreateOptions;
use super::process_local::HeapRegion;
use crate::AccessMode;

/// The error for a name that is occupied by something other than a memory object (a FIFO,
/// a directory, a symbolic link, a device): `ErrorKind::InvalidData`, which views report as
/// [`OpenError::Corrupted`](crate::OpenError::Corrupted).
pub(crate) fn not_a_memory_object(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} occupies the name, not a memory object"),
    )
}

/// `file` and its metadata (one fstat) if it is a regular file, else [`not_a_memory_object`].
pub(crate) fn require_regular(file: File) -> io::Result<(File, Metadata)> {
    let meta = file.metadata()?;
    let file_type = meta.file_type();
    if file_type.is_file() {
        Ok((file, meta))
    } else {
        Err(not_a_memory_object(if file_type.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        }))
    }
}

enum Keep {
    Mmap {
        _map: MmapRaw,
        /// The open object, kept only where its lock is needed (management segments); data
        /// segments close it after mapping so that hundreds of segments cost no descriptors.
        file: Option<File>,
        /// Device and inode, to recognise the object after the handle is closed.
        identity: (u64, u64),
    },
    Heap {
        region: Arc<HeapRegion>,
        holds_lock: AtomicBool,
    },
}

/// A mapped memory object. Unmapped (or released) on drop; the OS object itself is not removed.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    keep: Keep,
}

// SAFETY: a Mapping is an address range of shared memory plus owned handles (MmapRaw, File,
// Arc); none is tied to a thread. Concurrent access to the bytes is governed by the callers,
// which only use atomics or raw-pointer copies on it.
unsafe impl Send for Mapping {}
// SAFETY: see Send; &Mapping only hands out the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Sizes a freshly created `file` to `size` bytes with exactly `permissions` (the umask
    /// may have removed bits) and maps it read-write.
    pub(crate) fn create_file(
        file: File,
        size: usize,
        options: &CreateOptions,
    ) -> io::Result<Self> {
        if options.lock_exclusive && !try_lock(&file)? {
            // A remover of stale memories may have locked (and be unlinking) the object
            // between our create and our lock; it is theirs to remove, not ours to use.
            return Err(locked_by_remover());
        }
        // After the lock: a remover that unlinked the object before it shows no links.
        let meta = file.metadata()?;
        if options.lock_exclusive && meta.nlink() == 0 {
            return Err(locked_by_remover());
        }
        let permissions = options.permissions;
        let prefault = options.prefault;
        if meta.mode() & 0o777 != permissions {
            file.set_permissions(Permissions::from_mode(permissions))?;
        }
        file.set_len(size as u64)?;
        Self::map_file(file, &meta, size, AccessMode::ReadWrite, prefault)
    }

    /// Maps all of an existing `file`, whose metadata is `meta`.
    pub(crate) fn open_file(file: File, meta: &Metadata, access: AccessMode) -> io::Result<Self> {
        let len = usize::try_from(meta.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "object too large"))?;
        Self::map_file(file, meta, len, access, false)
    }

    /// Maps `len` bytes of `file` shared; `meta` is the file's metadata.
    fn map_file(
        file: File,
        meta: &Metadata,
        len: usize,
        access: AccessMode,
        prefault: bool,
    ) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object has no size yet",
            ));
        }
        let mut options = MmapOptions::new();
        options.len(len);
        if prefault {
            options.populate();
        }
        let map = match access {
            AccessMode::Read => options.map_raw_read_only(&file)?,
            AccessMode::ReadWrite => options.map_raw(&file)?,
        };
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Self {
            ptr,
            len,
            writable: access == AccessMode::ReadWrite,
            keep: Keep::Mmap {
                _map: map,
                identity: (meta.dev(), meta.ino()),
                file: Some(file),
            },
        })
    }

    pub(crate) fn heap(region: Arc<HeapRegion>, access: AccessMode) -> Self {
        Self {
            ptr: region.ptr(),
            len: region.len(),
            writable: access == AccessMode::ReadWrite,
            keep: Keep::Heap {
                region,
                holds_lock: AtomicBool::new(false),
            },
        }
    }

    /// Start address of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping has no bytes; never true for objects the backends map, since an
    /// object without a size is refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping was made read-write ([`AccessMode::ReadWrite`]).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Takes the exclusive advisory lock on the underlying object without blocking. The owner
    /// holds it for its lifetime, so "lock taken" means "owner alive" even after pid reuse.
    /// Returns `Ok(false)` when another handle holds it.
    pub fn try_lock_exclusive(&self) -> io::Result<bool> {
        match &self.keep {
            Keep::Mmap { file: None, .. } => Err(closed()),
            Keep::Mmap {
                file: Some(file), ..
            } => try_lock(file),
            Keep::Heap { region, holds_lock } => {
                if holds_lock.load(Ordering::Acquire) {
                    return Ok(true);
                }
                let taken = region.try_lock();
                holds_lock.store(taken, Ordering::Release);
                Ok(taken)
            }
        }
    }

    /// Whether both mappings are of the same object (the same inode, or the same heap region),
    /// whatever name it has now and whatever its bytes say: an owner recognises its own
    /// objects by identity, which no peer writing into them can fake.
    pub fn same_object(&self, other: &Mapping) -> bool {
        match (&self.keep, &other.keep) {
            (Keep::Mmap { identity: a, .. }, Keep::Mmap { identity: b, .. }) => a == b,
            (Keep::Heap { region: a, .. }, Keep::Heap { region: b, .. }) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether `meta` (of an open object) describes the object this mapping maps.
    pub(crate) fn has_identity(&self, meta: &Metadata) -> bool {
        matches!(&self.keep, Keep::Mmap { identity, .. } if *identity == (meta.dev(), meta.ino()))
    }

    /// Closes the object's handle; the mapping stays valid, but the lock functions fail.
    pub fn close_handle(&mut self) {
        if let Keep::Mmap { file, .. } = &mut self.keep {
            *file = None;
        }
    }

    /// Whether some other handle holds the exclusive lock (the owner is alive).
    pub fn is_locked_by_other(&self) -> io::Result<bool> {
        match &self.keep {
            Keep::Mmap { file: None, .. } => Err(closed()),
            Keep::Mmap {
                file: Some(file), ..
            } => is_locked_by_other(file),
            Keep::Heap { region, holds_lock } => {
                Ok(region.is_locked() && !holds_lock.load(Ordering::Acquire))
            }
        }
    }
}

/// Takes the exclusive lock without blocking; `false` when another handle holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether another handle holds the exclusive lock of `file`.
pub(crate) fn is_locked_by_other(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => {
            file.unlock()?;
            Ok(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The error of a create that lost its fresh object to a remover; `create` must not unlink the
/// name then (it may already name someone else's object).
pub(crate) fn locked_by_remover() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "a new object was locked or removed by a remover of stale memories",
    )
}

/// Whether `e` is [`locked_by_remover`]'s: the name is not ours to unlink.
pub(crate) fn lost_to_remover(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists
}

/// The exclusive lock of an object, held by a remover (see [`Backend::try_lock`]). Released on
/// drop.
///
/// [`Backend::try_lock`]: super::Backend::try_lock
pub struct ObjectLock {
    keep: LockKeep,
}

enum LockKeep {
    /// flock(2) lock of this open file description; the OS releases it on close.
    File(File),
    Heap {
        name: String,
        region: Arc<HeapRegion>,
    },
}

impl ObjectLock {
    /// Takes the lock of an open object; `None` when another handle holds it.
    pub(crate) fn file(file: File) -> io::Result<Option<Self>> {
        Ok(try_lock(&file)?.then_some(Self {
            keep: LockKeep::File(file),
        }))
    }

    pub(crate) fn heap(name: &str, region: Arc<HeapRegion>) -> Option<Self> {
        region.try_lock().then(|| Self {
            keep: LockKeep::Heap {
                name: name.to_owned(),
                region,
            },
        })
    }

    /// Whether the locked object still has its name: `false` once somebody unlinked it (its
    /// name may then belong to a new object, which the holder must not touch).
    pub fn is_linked(&self) -> io::Result<bool> {
        match &self.keep {
            LockKeep::File(file) => Ok(file.metadata()?.nlink() > 0),
            LockKeep::Heap { name, region } => Ok(super::process_local::names(name, region)),
        }
    }

    /// Bytes of the locked object now.
    pub fn len(&self) -> io::Result<u64> {
        match &self.keep {
            LockKeep::File(file) => Ok(file.metadata()?.len()),
            LockKeep::Heap { region, .. } => Ok(region.len() as u64),
        }
    }

    /// Whether the locked object has no bytes now (created but not sized, or truncated).
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        if let LockKeep::Heap { region, .. } = &self.keep {
            region.unlock();
        }
    }
}

impl std::fmt::Debug for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLock").finish_non_exhaustive()
    }
}

fn closed() -> io::Error {
    io::Error::other("the mapping's handle was closed")
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Keep::Heap { region, holds_lock } = &self.keep
            && holds_lock.load(Ordering::Acquire)
        {
            region.unlock();
        }
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("writable", &self.writable)
            .finish()
    }
}
