//! Configuring and creating a memory: the management object, its header and segment 0.

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::allocator::AllocatorKind;
use crate::backend::{CreateOptions, page_size};
use crate::error::OsError;
use crate::header::{MAX_SEGMENTS, MGMT_SIZE};
use crate::slot::SlotCell;
use crate::{AllocError, AllocationStrategy, Config, CreateError, SegmentBudget, SegmentId, name};

use super::segment::SegmentError;
use super::{GrowState, Memory};

/// Configures and creates a [`Memory`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct MemoryBuilder {
    name: String,
    config: Config,
    chunk_layout: Layout,
    chunks: usize,
    strategy: AllocationStrategy,
    allocator: AllocatorKind,
    budget: Option<Arc<dyn SegmentBudget>>,
    reclaim_stale: bool,
    eager: bool,
}

/// How often `create` with `reclaim_stale` removes a stale memory and tries again before it
/// gives up (each round means another process recreated the name in between).
const RECLAIM_ATTEMPTS: usize = 4;

impl MemoryBuilder {
    /// The defaults, for a memory called `name`.
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            config: Config::default(),
            chunk_layout: Layout::new::<u8>(),
            chunks: 1,
            strategy: AllocationStrategy::default(),
            allocator: AllocatorKind::default(),
            budget: None,
            reclaim_stale: false,
            eager: false,
        }
    }

    /// Where the objects live and how they are named (prefix, suffix, backend, permissions).
    pub fn config(mut self, config: &Config) -> Self {
        self.config = config.clone();
        self
    }

    /// The largest chunk expected; sizes the buckets of segment 0. Default: 1 byte.
    pub fn max_chunk_layout_hint(mut self, layout: Layout) -> Self {
        self.chunk_layout = layout;
        self
    }

    /// How many chunks are expected at once; sizes segment 0. Default: 1.
    pub fn max_number_of_chunks_hint(mut self, chunks: usize) -> Self {
        self.chunks = chunks;
        self
    }

    /// How a new segment is sized when a chunk does not fit. Default: power of two.
    pub fn allocation_strategy(mut self, strategy: AllocationStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The allocator of every segment. Default: [`AllocatorKind::Pool`].
    pub fn allocator(mut self, allocator: AllocatorKind) -> Self {
        self.allocator = allocator;
        self
    }

    /// Caps the bytes of all data segments (shared with other memories if the same budget is
    /// given to them). Default: unlimited.
    pub fn budget(mut self, budget: Arc<dyn SegmentBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Makes segment 0's OS object in `create` instead of in the first allocation, so that an
    /// OS failure (e.g. `/dev/shm` full) surfaces there. Hints and the budget are checked by
    /// `create` either way, and [`Config::prefault`] always makes it eagerly. Default: off.
    pub fn eager_first_segment(mut self, eager: bool) -> Self {
        self.eager = eager;
        self
    }

    /// When the name is taken by a *stale* memory (its owner died without removing it),
    /// remove that memory and create this one in its place. A live owner's name is never
    /// taken: the owner lock decides (see [`remove_stale`](crate::remove_stale)), so of two
    /// processes reclaiming the same name at once exactly one succeeds. Default: off (a stale
    /// name fails with `AlreadyExists`).
    pub fn reclaim_stale(mut self, reclaim: bool) -> Self {
        self.reclaim_stale = reclaim;
        self
    }

    /// Creates the management segment and plans segment 0: its layout is checked and its
    /// bytes are reserved from the budget now, its OS object is made by the first allocation
    /// (or now, see [`MemoryBuilder::eager_first_segment`]). Fails with `AlreadyExists` if the
    /// name is taken, also by a crashed owner's leftovers unless
    /// [`MemoryBuilder::reclaim_stale`] is set.
    pub fn create(self) -> Result<Memory, CreateError> {
        if !self.reclaim_stale {
            return self.create_once();
        }
        for _ in 0..RECLAIM_ATTEMPTS {
            match self.clone().create_once() {
                Err(CreateError::AlreadyExists) => {}
                other => return other,
            }
            match crate::remove_stale(&self.name, &self.config) {
                // Gone (by us or by another remover): try again.
                Ok(crate::StaleRemoval::Removed | crate::StaleRemoval::NotFound) => {}
                Ok(crate::StaleRemoval::OwnerAlive) => return Err(CreateError::AlreadyExists),
                Err(crate::ManageError::InvalidName) => return Err(CreateError::InvalidName),
                Err(crate::ManageError::InsufficientPermissions) => {
                    return Err(CreateError::InsufficientPermissions);
                }
                Err(crate::ManageError::InternalError(e)) => {
                    return Err(CreateError::InternalError(e));
                }
            }
        }
        Err(CreateError::AlreadyExists)
    }

    fn create_once(self) -> Result<Memory, CreateError> {
        name::validate(&self.name, &self.config)?;
        let layout = self
            .allocator
            .initial_layout(self.chunk_layout, self.chunks)
            .map_err(|_| CreateError::InvalidHint)?;
        let page = page_size();
        let mgmt_size = MGMT_SIZE.next_multiple_of(page);
        let backend = self.config.get_backend();
        let mgmt = backend
            .create(
                &name::mgmt_name(&self.name, &self.config),
                mgmt_size,
                &CreateOptions {
                    lock_exclusive: true,
                    ..create_options(&self.config)
                },
            )
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => CreateError::AlreadyExists,
                std::io::ErrorKind::PermissionDenied => CreateError::InsufficientPermissions,
                _ => CreateError::InternalError(OsError::from_io(
                    "creating the management object",
                    &e,
                )),
            })?;
        // One getpid for the id and the header (glibc does not cache it).
        let pid = std::process::id();
        let memory = Memory {
            memory_id: fresh_memory_id(pid),
            name: self.name,
            config: self.config,
            mgmt,
            slots: (0..MAX_SEGMENTS).map(|_| SlotCell::default()).collect(),
            current: AtomicU32::new(0),
            grow: Mutex::new(GrowState {
                next_sequence: 1,
                newest: SegmentId::new(0),
                first: None,
            }),
            first_planned: AtomicBool::new(false),
            strategy: self.strategy,
            allocator: self.allocator,
            budget: self.budget,
            abandoned: false,
            channel_owned: false,
        };
        // From here on, dropping `memory` removes whatever was created. The management
        // object was locked at creation: the lock says "owner alive" to every process.
        let header = memory.header();
        header.init(
            memory.memory_id,
            memory.config.get_prefix(),
            pid,
            memory.allocator,
            memory.strategy,
        );
        // Segment 0 is checked and paid for now; its OS object is made now only when its
        // pages are to be prefaulted, otherwise by the first allocation (see `first`).
        let planned = memory.plan_segment(layout).map_err(create_error)?;
        let id = SegmentId::new(0);
        // Published now either way: a view validates the current segment's record at open.
        // Until the object exists no offset in it has been handed out.
        header.slot(id).publish(0, &layout);
        if memory.config.get_prefault() || self.eager {
            let (mapping, os_name) = match memory.map_planned(id, 0, &planned) {
                Ok(made) => made,
                Err(e) => {
                    memory.release_budget(planned.total);
                    return Err(create_error(e));
                }
            };
            let segment = planned.into_segment(id, 0, mapping, os_name);
            memory.install_first(segment).map_err(|_| {
                CreateError::InternalError(OsError::unexplained("installing segment 0"))
            })?;
        } else {
            memory
                .grow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .first = Some(planned);
            memory.first_planned.store(true, Ordering::Release);
        }
        header.set_current(id);
        header.set_ready();
        Ok(memory)
    }
}

/// What `create` reports for a segment 0 that could not be planned or made.
fn create_error(e: SegmentError) -> CreateError {
    match e {
        SegmentError::Alloc(
            AllocError::SizeTooLarge | AllocError::ExceedsMaxSupportedAlignment,
        ) => CreateError::InvalidHint,
        SegmentError::Alloc(AllocError::QuotaExceeded) => CreateError::QuotaExceeded,
        SegmentError::Os(e) => CreateError::InternalError(e),
        // Segment 0's name now belongs to another memory (`remove` handed ours on).
        SegmentError::Alloc(_) => {
            CreateError::InternalError(OsError::unexplained("creating segment 0"))
        }
    }
}

/// A random, non-zero id for a new memory. std's `RandomState` is seeded from the OS's
/// randomness once per process; mixing in the time and pid separates processes that fork.
fn fresh_memory_id(pid: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(pid);
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish().max(1)
}

pub(super) fn create_options(config: &Config) -> CreateOptions {
    CreateOptions {
        permissions: config.get_permissions(),
        prefault: config.get_prefault(),
        lock_exclusive: false,
    }
}
