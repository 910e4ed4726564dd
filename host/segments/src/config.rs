//! Configuration shared by owners, views and the name-based management functions.

use std::fmt;
use std::sync::Arc;

use crate::backend::{Backend, PosixShm};

/// How the owner sizes a new segment when a chunk no longer fits into the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AllocationStrategy {
    /// Never create a new segment: a chunk that does not fit fails with `OutOfMemory`.
    Static,
    /// Grow just enough: one more bucket, or exactly the larger layout.
    BestFit,
    /// Round bucket count and bucket size up to powers of two.
    #[default]
    PowerOfTwo,
}

impl AllocationStrategy {
    pub(crate) const fn to_raw(self) -> u32 {
        match self {
            Self::Static => 0,
            Self::BestFit => 1,
            Self::PowerOfTwo => 2,
        }
    }

    pub(crate) const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Static),
            1 => Some(Self::BestFit),
            2 => Some(Self::PowerOfTwo),
            _ => None,
        }
    }
}

/// Access a view requests to the segments it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccessMode {
    /// Map read-only: the view can read chunks but not write them.
    Read,
    /// Map read-write.
    ReadWrite,
}

/// Where `grow` places the old content inside a larger chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ContentPlacement {
    /// Keep the old bytes at the start; the new bytes follow them.
    #[default]
    Front,
    /// Move the old bytes to the end; the new bytes precede them.
    Back,
}

/// Where and how the OS objects of a memory live. Two processes see the same memory only when
/// their `Config`s agree on backend, prefix and suffix; tests use a unique prefix to isolate
/// themselves.
#[derive(Clone)]
pub struct Config {
    prefix: String,
    suffix: String,
    backend: Arc<dyn Backend>,
    permissions: u32,
    prefault: bool,
}

impl Config {
    /// The prefix used when none is set.
    pub const DEFAULT_PREFIX: &'static str = "resmem_";
    /// The mode new OS objects are created with when none is set.
    pub const DEFAULT_PERMISSIONS: u32 = 0o600;

    /// Prepended to every OS object name (the namespace).
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Appended to every OS object name.
    #[must_use]
    pub fn suffix(mut self, suffix: &str) -> Self {
        self.suffix = suffix.to_owned();
        self
    }

    /// Where segments live: POSIX shared memory (default), a directory, or the process heap.
    #[must_use]
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Arc::new(backend);
        self
    }

    /// Permission bits of created objects (exactly these, the umask does not apply).
    #[must_use]
    pub fn permissions(mut self, mode: u32) -> Self {
        self.permissions = mode & 0o777;
        self
    }

    /// Pre-fault the pages of newly created segments (`MAP_POPULATE`), so the first write pass
    /// runs at warm speed at the price of a slower segment creation.
    #[must_use]
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// The prefix set by [`Self::prefix`].
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// The suffix set by [`Self::suffix`].
    pub fn get_suffix(&self) -> &str {
        &self.suffix
    }

    /// The backend set by [`Self::backend`].
    pub fn get_backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// The permission bits set by [`Self::permissions`].
    pub fn get_permissions(&self) -> u32 {
        self.permissions
    }

    /// Whether new segments are pre-faulted, see [`Self::prefault`].
    pub fn get_prefault(&self) -> bool {
        self.prefault
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            suffix: String::new(),
            backend: Arc::new(PosixShm),
            permissions: Self::DEFAULT_PERMISSIONS,
            prefault: false,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .field("backend", &self.backend)
            .field("permissions", &format_args!("{:o}", self.permissions))
            .field("prefault", &self.prefault)
            .finish()
    }
}
