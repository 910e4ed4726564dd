//! # resmem: resizable shared memory
//!
//! One process, the **owner** ([`Memory`]), creates a named memory and allocates chunks from
//! it. Chunks come from the *current* data segment; when a chunk does not fit (no bucket left,
//! too large, too aligned) the owner creates a new, larger segment, sized by the
//! [`AllocationStrategy`], and makes it current. Older segments stay mapped while they hold
//! chunks and are removed with their last one.
//!
//! Every chunk has a [`PointerOffset`]: segment id and offset packed into a `u64` that means
//! the same in every process. **Peers** ([`View`]) open the memory by name and map a segment
//! the first time they see an offset into it.
//!
//! ```text
//!  <prefix><name>__mgmt<suffix>   management segment: versioned, validated header
//!  <prefix><name>__0<suffix>      data segment 0     (payload | trailer)
//!  <prefix><name>__1<suffix>      data segment 1, created when 0 could not serve a request
//! ```
//!
//! Where the objects live is a [`Backend`](backend::Backend) (POSIX shm by default, a
//! directory, or the process heap); how a segment's payload is carved is a
//! [`ChunkAllocator`](allocator::ChunkAllocator) (pool of buckets by default, or bump).
//! Both [`Memory`] and [`View`] are `Send + Sync`.
//!
//! ```
//! use std::alloc::Layout;
//! use resmem::{AccessMode, Config, Memory, View};
//!
//! let config = Config::default().prefix(&format!("doc{}_", std::process::id()));
//! let memory = Memory::builder("frames")
//!     .config(&config)
//!     .max_chunk_layout_hint(Layout::new::<u64>())
//!     .max_number_of_chunks_hint(2)
//!     .create()?;
//! let chunk = memory.allocate(Layout::new::<u64>())?;
//! // SAFETY: the chunk is 8 bytes, aligned for u64, and ours.
//! unsafe { (chunk.data_ptr as *mut u64).write(42) };
//!
//! // Any process: open by name and translate the offset it was sent.
//! let view = View::builder("frames").config(&config).open(AccessMode::Read)?;
//! // SAFETY: unregistered below, after the last read.
//! let ptr = unsafe { view.register_and_translate_offset(chunk.offset)? };
//! assert_eq!(unsafe { (ptr as *const u64).read() }, 42);
//! unsafe { view.unregister_offset(chunk.offset) };
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod allocator;
pub mod backend;
mod budget;
pub mod channel;
mod config;
mod error;
pub mod header;
mod memory;
mod name;
mod offset;
mod region;
mod slot;
mod sync;
mod view;

pub use allocator::AllocatorKind;
pub use backend::{FileBacked, PosixShm, ProcessLocal};
pub use budget::{ByteBudget, SegmentBudget};
pub use channel::{
    ChannelError, Overflow, Publisher, PublisherBuilder, Sample, SampleMut, Subscriber,
    SubscriberBuilder,
};
pub use config::{AccessMode, AllocationStrategy, Config, ContentPlacement};
pub use error::{
    AllocError, CreateError, DeallocError, GrowError, ManageError, NameError, OpenError,
};
pub use memory::{Memory, MemoryBuilder};
pub use name::validate as validate_name;
pub use offset::{PointerOffset, SegmentId, ShmPointer};
pub use region::SegmentRegion;
pub use view::{View, ViewBuilder};

use error::manage_error;

/// Names of all memories under `config` (those whose management segment exists), sorted.
/// Memories created under a longer prefix that merely starts with this one (`P` and
/// `Pinner_`) are not listed: they belong to that other namespace.
pub fn list(config: &Config) -> Result<Vec<String>, ManageError> {
    let objects = config.get_backend().list().map_err(|e| manage_error(&e))?;
    let mut names: Vec<String> = objects
        .iter()
        .filter_map(|os| name::parse_mgmt(os, config))
        .filter(|name| created_under(name, config) != Some(false))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether a memory called `name` exists under `config` (and was created under its prefix).
pub fn exists(name: &str, config: &Config) -> Result<bool, ManageError> {
    name::validate(name, config)?;
    let found = config
        .get_backend()
        .exists(&name::mgmt_name(name, config))
        .map_err(|e| manage_error(&e))?;
    Ok(found && created_under(name, config) != Some(false))
}

/// Whether the owner of memory `name` is alive (or still creating it): it holds the lock on the
/// management object from before the object has a size until it is dropped, and the OS drops
/// the lock when the process dies, even if its pid is reused. Decided without reading the
/// header, so garbage written into it by a peer cannot make a live owner look dead.
pub fn is_owner_alive(name: &str, config: &Config) -> Result<bool, ManageError> {
    name::validate(name, config)?;
    match config
        .get_backend()
        .is_locked(&name::mgmt_name(name, config))
    {
        Ok(locked) => Ok(locked),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(manage_error(&e)),
    }
}

/// What [`remove_stale`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum StaleRemoval {
    /// The owner was gone; every object of the memory was removed.
    Removed,
    /// The owner holds its lock (alive, or still creating the memory): nothing was touched.
    OwnerAlive,
    /// There is no management object of that name (in this namespace): nothing was touched.
    NotFound,
}

/// How often [`remove_stale`] starts over when the object it locked lost its name meanwhile.
const STALE_ATTEMPTS: usize = 8;

/// Removes memory `name` if, and only if, its owner is gone: safe against live owners and
/// against concurrent removers and creators, because it *takes* the owner lock of the
/// management object (which a live owner holds, and a creator takes before sizing it) and
/// keeps it until everything is removed, management object last, so no new memory can be
/// created under the name before its old data segments are gone.
pub fn remove_stale(name: &str, config: &Config) -> Result<StaleRemoval, ManageError> {
    name::validate(name, config)?;
    if created_under(name, config) == Some(false) {
        return Ok(StaleRemoval::NotFound);
    }
    let backend = config.get_backend();
    let mgmt = name::mgmt_name(name, config);
    for _ in 0..STALE_ATTEMPTS {
        let lock = match backend.try_lock(&mgmt) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Ok(StaleRemoval::OwnerAlive),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StaleRemoval::NotFound);
            }
            Err(e) => return Err(manage_error(&e)),
        };
        if !lock.is_linked().map_err(|e| manage_error(&e))? {
            // Another remover took it first; the name may now be a new memory's.
            continue;
        }
        for target in segment_names(name, config) {
            backend.remove(&target).map_err(|e| manage_error(&e))?;
        }
        backend.remove(&mgmt).map_err(|e| manage_error(&e))?;
        drop(lock);
        return Ok(StaleRemoval::Removed);
    }
    Err(ManageError::InternalError)
}

/// OS names of memory `name`'s data segments that exist (every possible one when the
/// backend cannot list).
fn segment_names(name: &str, config: &Config) -> Vec<String> {
    match config.get_backend().list() {
        Ok(objects) => objects
            .into_iter()
            .filter(|os| name::parse_segment(os, config).is_some_and(|(n, _)| n == name))
            .collect(),
        Err(_) => (0..=u8::MAX)
            .map(|id| name::segment_name(name, SegmentId::new(id), config))
            .collect(),
    }
}

/// Whether memory `name`'s header says it was created under `config`'s prefix; `None` when the
/// header cannot be read.
fn created_under(name: &str, config: &Config) -> Option<bool> {
    let mgmt = config
        .get_backend()
        .open(&name::mgmt_name(name, config), AccessMode::Read)
        .ok()?;
    if mgmt.len() < header::MGMT_SIZE {
        return None;
    }
    // SAFETY: a mapping is page aligned and this one is at least MGMT_SIZE long; it lives
    // until the end of this function.
    let header = unsafe { header::MgmtHeader::from_ptr(mgmt.as_ptr()) };
    header.raw_created_under(config.get_prefix())
}

/// Removes every OS object of the memory `name` (management segment and any data segment,
/// whichever still exist). Returns whether anything was removed.
///
/// # Safety
/// A live owner of that memory keeps working on its mappings but can no longer be opened by
/// new views, and its later segments collide with nothing; views of it fail to map segments.
/// Call this for memories whose owner is gone.
pub unsafe fn remove(name: &str, config: &Config) -> Result<bool, ManageError> {
    name::validate(name, config)?;
    if created_under(name, config) == Some(false) {
        // Another namespace's memory seen through a nested prefix: not ours to remove.
        return Ok(false);
    }
    let backend = config.get_backend();
    let targets: Vec<String> = match backend.list() {
        Ok(objects) => objects
            .into_iter()
            .filter(|os| {
                name::parse_mgmt(os, config) == Some(name)
                    || name::parse_segment(os, config).is_some_and(|(n, _)| n == name)
            })
            .collect(),
        // Without a listing, try every name the memory can have.
        Err(_) => std::iter::once(name::mgmt_name(name, config))
            .chain((0..=u8::MAX).map(|id| name::segment_name(name, SegmentId::new(id), config)))
            .collect(),
    };
    let mut removed = false;
    for target in targets {
        removed |= backend.remove(&target).map_err(|e| manage_error(&e))?;
    }
    Ok(removed)
}
