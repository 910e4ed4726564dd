//! Managing memories by name without owning them: listing, probing the owner, and removing
//! stale ones (re-exported at the crate root).

use crate::error::{OsError, manage_error};
use crate::{AccessMode, Config, ManageError, SegmentId, header, name};

/// Names of all memories under `config` (those whose management segment exists), sorted.
/// Memories created under a longer prefix that merely starts with this one (`P` and
/// `Pinner_`) are not listed: they belong to that other namespace.
pub fn list(config: &Config) -> Result<Vec<String>, ManageError> {
    let objects = config
        .get_backend()
        .list()
        .map_err(|e| manage_error("listing the objects", &e))?;
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
        .map_err(|e| manage_error("probing the management object", &e))?;
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
        Err(e) => Err(manage_error("probing the owner lock", &e)),
    }
}

/// What [`remove_stale`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
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
            Err(e) => return Err(manage_error("taking the owner lock", &e)),
        };
        if !lock
            .is_linked()
            .map_err(|e| manage_error("checking the locked object's name", &e))?
        {
            // Another remover took it first; the name may now be a new memory's.
            continue;
        }
        for target in segment_names(name, config) {
            backend
                .remove(&target)
                .map_err(|e| manage_error("removing a data segment", &e))?;
        }
        backend
            .remove(&mgmt)
            .map_err(|e| manage_error("removing the management object", &e))?;
        drop(lock);
        return Ok(StaleRemoval::Removed);
    }
    Err(ManageError::InternalError(OsError::unexplained(
        "removing a stale memory: its management object kept being replaced",
    )))
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
        removed |= backend
            .remove(&target)
            .map_err(|e| manage_error("removing an object", &e))?;
    }
    Ok(removed)
}
