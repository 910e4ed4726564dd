//! Heap memory in a process-wide registry: the same names and semantics as shared memory,
//! without OS objects. For tests (also under Miri) and for peers inside one process.

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use super::{Backend, CreateOptions, Mapping, ObjectLock, page_size};
use crate::AccessMode;

/// Objects live on this process's heap, keyed by name in a global registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessLocal;

/// One zero-initialised, page-aligned heap block.
pub(crate) struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
    locked: AtomicBool,
}

// SAFETY: the region is plain memory owned by this value; the bytes are accessed by callers
// under the same rules as shared memory (atomics or raw copies), never through references.
unsafe impl Send for HeapRegion {}
// SAFETY: as for Send; HeapRegion's own state is the atomic `locked`.
unsafe impl Sync for HeapRegion {}

impl HeapRegion {
    fn new(len: usize) -> io::Result<Self> {
        let layout = Layout::from_size_align(len.max(1), page_size())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Self {
            ptr,
            layout,
            locked: AtomicBool::new(false),
        })
    }

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    pub(crate) fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Whether `name` still names `region` in the registry.
pub(crate) fn names(name: &str, region: &Arc<HeapRegion>) -> bool {
    registry()
        .get(name)
        .is_some_and(|current| Arc::ptr_eq(current, region))
}

fn registry() -> MutexGuard<'static, HashMap<String, Arc<HeapRegion>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<HeapRegion>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Backend for ProcessLocal {
    fn kind(&self) -> &'static str {
        "process-local"
    }

    fn max_name_len(&self) -> usize {
        255
    }

    fn create(&self, name: &str, size: usize, options: &CreateOptions) -> io::Result<Mapping> {
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero size"));
        }
        let mut objects = registry();
        if objects.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let region = Arc::new(HeapRegion::new(size)?);
        objects.insert(name.to_owned(), Arc::clone(&region));
        let mapping = Mapping::heap(region, AccessMode::ReadWrite);
        if options.lock_exclusive {
            // A fresh region is unlocked, so this cannot fail.
            mapping.try_lock_exclusive()?;
        }
        Ok(mapping)
    }

    fn open(&self, name: &str, access: AccessMode) -> io::Result<Mapping> {
        let region = registry()
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Mapping::heap(region, access))
    }

    fn remove(&self, name: &str) -> io::Result<bool> {
        Ok(registry().remove(name).is_some())
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        Ok(registry().contains_key(name))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(registry().keys().cloned().collect())
    }

    fn is_locked(&self, name: &str) -> io::Result<bool> {
        registry()
            .get(name)
            .map(|region| region.is_locked())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn try_lock(&self, name: &str) -> io::Result<Option<ObjectLock>> {
        let region = registry()
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(ObjectLock::heap(name, region))
    }
}
