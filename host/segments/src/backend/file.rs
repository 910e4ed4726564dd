//! Plain files in a directory, mapped shared: inspectable with ordinary tools, and usable on
//! hugetlbfs or any other file system that supports shared mappings.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::mapping::{is_locked_by_other, lost_to_remover, not_a_memory_object, require_regular};
use super::posix::list_dir;
use super::{Backend, CreateOptions, Mapping, ObjectLock};
use crate::AccessMode;

/// Objects are files in `dir`; two processes share a memory when they use the same directory.
#[derive(Debug, Clone)]
pub struct FileBacked {
    dir: PathBuf,
}

impl FileBacked {
    /// Uses `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding the objects.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Opens the existing object at `path` without following a symbolic link in its last
/// component and without blocking (an ordinary open of a FIFO planted under a memory's name
/// waits for a writer forever), and refuses anything but a regular file with
/// `ErrorKind::InvalidData`.
fn open_existing(path: &Path, write: bool) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                not_a_memory_object("a symbolic link")
            } else {
                e
            }
        })?;
    require_regular(file)
}

impl Backend for FileBacked {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn max_name_len(&self) -> usize {
        255
    }

    fn create(&self, name: &str, size: usize, options: &CreateOptions) -> io::Result<Mapping> {
        let path = self.dir.join(name);
        // `create_new` is O_CREAT | O_EXCL, which never follows a symbolic link (not even a
        // dangling one) and never opens an existing FIFO; O_NOFOLLOW says so once more.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(options.permissions)
            .open(&path)?;
        let sized = Mapping::create_file(file, size, options);
        if let Err(e) = &sized
            && !lost_to_remover(e)
        {
            let _ = std::fs::remove_file(&path);
        }
        sized
    }

    fn open(&self, name: &str, access: AccessMode) -> io::Result<Mapping> {
        let (file, meta) = open_existing(&self.dir.join(name), access == AccessMode::ReadWrite)?;
        Mapping::open_file(file, &meta, access)
    }

    fn is_same_object(&self, name: &str, mapping: &Mapping) -> io::Result<bool> {
        // The name itself, not what a symbolic link under it points to.
        Ok(mapping.has_identity(&std::fs::symlink_metadata(self.dir.join(name))?))
    }

    fn remove(&self, name: &str) -> io::Result<bool> {
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        // Whatever occupies the name (also a dangling symbolic link) makes `create` fail.
        match std::fs::symlink_metadata(self.dir.join(name)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        list_dir(&self.dir)
    }

    fn is_locked(&self, name: &str) -> io::Result<bool> {
        is_locked_by_other(&open_existing(&self.dir.join(name), false)?.0)
    }

    fn try_lock(&self, name: &str) -> io::Result<Option<ObjectLock>> {
        ObjectLock::file(open_existing(&self.dir.join(name), false)?.0)
    }
}
