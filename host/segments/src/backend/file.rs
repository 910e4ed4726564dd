//! Plain files in a directory, mapped shared: inspectable with ordinary tools, and usable on
//! hugetlbfs or any other file system that supports shared mappings.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::mapping::{is_locked_by_other, lost_to_remover};
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
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
        let file: File = OpenOptions::new()
            .read(true)
            .write(access == AccessMode::ReadWrite)
            .open(self.dir.join(name))?;
        Mapping::open_file(file, access)
    }

    fn is_same_object(&self, name: &str, mapping: &Mapping) -> io::Result<bool> {
        Ok(mapping.has_identity(&std::fs::metadata(self.dir.join(name))?))
    }

    fn remove(&self, name: &str) -> io::Result<bool> {
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.dir.join(name).try_exists()
    }

    fn list(&self) -> io::Result<Vec<String>> {
        list_dir(&self.dir)
    }

    fn is_locked(&self, name: &str) -> io::Result<bool> {
        is_locked_by_other(&File::open(self.dir.join(name))?)
    }

    fn try_lock(&self, name: &str) -> io::Result<Option<ObjectLock>> {
        ObjectLock::file(File::open(self.dir.join(name))?)
    }
}
