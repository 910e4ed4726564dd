//! POSIX shared memory: `shm_open` objects under `/dev/shm`.

use std::fs::{File, Metadata};
use std::io;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;

use super::mapping::{is_locked_by_other, lost_to_remover, not_a_memory_object, require_regular};
use super::{Backend, CreateOptions, Mapping, ObjectLock};
use crate::AccessMode;

/// The default backend: POSIX shared memory objects, visible to every process of the user.
#[derive(Debug, Clone, Copy, Default)]
pub struct PosixShm;

/// Where Linux exposes the shm namespace; only `list` needs it.
const SHM_DIR: &str = "/dev/shm";

fn os_name(name: &str) -> String {
    format!("/{name}")
}

/// `shm_open` of an existing object. glibc adds `O_NOFOLLOW`; `O_NONBLOCK` keeps a FIFO
/// planted in the shm directory from blocking the open forever, and the result must be a
/// regular file (what `shm_open` creates).
fn open_existing(name: &str, flags: OFlag) -> io::Result<(File, Metadata)> {
    let fd = shm_open(
        os_name(name).as_str(),
        flags | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP => not_a_memory_object("a symbolic link"),
        e => e.into(),
    })?;
    require_regular(File::from(fd))
}

impl Backend for PosixShm {
    fn kind(&self) -> &'static str {
        "posix"
    }

    fn max_name_len(&self) -> usize {
        // NAME_MAX of the tmpfs that backs the namespace.
        255
    }

    fn create(&self, name: &str, size: usize, options: &CreateOptions) -> io::Result<Mapping> {
        let path = os_name(name);
        let mode = Mode::from_bits_truncate(options.permissions as nix::libc::mode_t);
        let fd = shm_open(
            path.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            mode,
        )?;
        let file = File::from(fd);
        let sized = Mapping::create_file(file, size, options);
        if let Err(e) = &sized
            && !lost_to_remover(e)
        {
            let _ = shm_unlink(path.as_str());
        }
        sized
    }

    fn open(&self, name: &str, access: AccessMode) -> io::Result<Mapping> {
        let flags = match access {
            AccessMode::Read => OFlag::O_RDONLY,
            AccessMode::ReadWrite => OFlag::O_RDWR,
        };
        let (file, meta) = open_existing(name, flags)?;
        Mapping::open_file(file, &meta, access)
    }

    fn is_same_object(&self, name: &str, mapping: &Mapping) -> io::Result<bool> {
        let (_file, meta) = open_existing(name, OFlag::O_RDONLY)?;
        Ok(mapping.has_identity(&meta))
    }

    fn remove(&self, name: &str) -> io::Result<bool> {
        match shm_unlink(os_name(name).as_str()) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        match shm_open(
            os_name(name).as_str(),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            // Whatever occupies the name (also a symbolic link or a FIFO) makes `create` fail.
            Ok(_) | Err(Errno::EACCES | Errno::ELOOP) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        list_dir(std::path::Path::new(SHM_DIR))
    }

    fn is_locked(&self, name: &str) -> io::Result<bool> {
        is_locked_by_other(&open_existing(name, OFlag::O_RDONLY)?.0)
    }

    fn try_lock(&self, name: &str) -> io::Result<Option<ObjectLock>> {
        ObjectLock::file(open_existing(name, OFlag::O_RDONLY)?.0)
    }
}

pub(super) fn list_dir(dir: &std::path::Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        // Entries vanish while we iterate when other processes remove objects.
        let Ok(entry) = entry else { continue };
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}
