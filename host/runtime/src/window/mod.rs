//! The zero-copy window: shared-memory segments mapped straight into a guest's linear memory.
//!
//! Every linear memory is created here (`Config::with_host_memory`). It reserves the whole
//! wasm32 address space plus wasmtime's guard as PROT_NONE, so compiled code needs no bounds
//! checks, and lets the guest heap grow only up to a cap. Above the cap lies the window: the
//! host maps segments there with `MAP_FIXED`, in 64 KiB-aligned slots, and guests reach them
//! with their own loads and stores. A released slot gets PROT_NONE mapped back over it (never a
//! plain `munmap`, or an unrelated host mapping could land where the guest can reach it) and
//! is reused.
//!
//! A store's [`Window`] learns the bases of the memories its instance creates: the host binds
//! the window to the instantiating thread ([`Window::bind`]) and the creator, which wasmtime
//! calls synchronously on that thread, attaches each new memory to it. A component with
//! several memories (an interpreter-based guest) gets every segment mapped into all of them.
//!
//! Mapping and unmapping are crate-internal: they take raw address ranges, and only the
//! host's own records of live segments may feed them.
//!
//! ```compile_fail
//! let window = resmem_host::Window::new(64 << 20);
//! // `map` and `unmap` are crate-internal, and a `Slot` cannot be forged:
//! window.unmap(resmem_host::window::Slot { start: 0, len: 1 << 20 });
//! ```

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};

use resmem::SegmentRegion;
#[cfg(test)]
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use crate::sigbus;

mod creator;
mod segments;

pub use creator::WindowCreator;
pub(crate) use segments::{GuestSegments, Segmented, SegmentsError};

/// The wasm32 address space.
pub const ADDRESS_SPACE: u64 = 1 << 32;
/// Window slots start on wasm page boundaries.
pub const SLOT_ALIGN: u64 = 64 << 10;
/// The least heap a guest keeps, whatever window it asks for.
pub const MIN_HEAP: u64 = 64 << 20;
/// Window bytes per guest by default: the upper half of the address space.
pub const DEFAULT_WINDOW: u64 = 2 << 30;

/// Why a segment could not be mapped into the window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// No free slot is large enough.
    #[error("the window has no {needed} free bytes left (window size {window} bytes)")]
    Full {
        /// Bytes the segment needs, rounded to slots.
        needed: u64,
        /// The window's size.
        window: u64,
    },
    /// The store's instance created no linear memory through this window.
    #[error("the guest has no 32-bit linear memory to map into")]
    NoLinearMemory,
    /// `mremap` failed; what the OS said.
    #[error("mapping into the window failed: {0}")]
    Map(String),
    /// A peer truncated the segment: its pages are gone.
    #[error(transparent)]
    Truncated(#[from] sigbus::Truncated),
}

/// A segment mapped into a window: guest addresses `[start, start + len)`. Only
/// [`Window`]'s crate-internal `map` makes one, so a slot always names a range of the window
/// that this crate mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    start: u32,
    len: u64,
}

impl Slot {
    /// The guest address of the segment's first byte.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// The segment's mapping length rounded up to `SLOT_ALIGN`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the slot is empty (never: a slot holds at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One store's window: the bases of its linear memories and the slots in use.
#[derive(Debug)]
pub struct Window {
    heap_cap: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    bases: Vec<usize>,
    /// Free guest ranges `(start, len)`, sorted by start, coalesced.
    free: Vec<(u64, u64)>,
}

thread_local! {
    /// The window of the store whose instance this thread is instantiating.
    static BINDING: RefCell<Option<Arc<Window>>> = const { RefCell::new(None) };
}

impl Window {
    /// A window of `window_bytes` (rounded down to 64 KiB, leaving at least `MIN_HEAP` of heap)
    /// at the top of the wasm32 address space.
    pub fn new(window_bytes: u64) -> Arc<Self> {
        let window = (window_bytes / SLOT_ALIGN * SLOT_ALIGN).min(ADDRESS_SPACE - MIN_HEAP);
        let heap_cap = ADDRESS_SPACE - window;
        let free = if window > 0 {
            vec![(heap_cap, window)]
        } else {
            Vec::new()
        };
        Arc::new(Self {
            heap_cap,
            inner: Mutex::new(Inner {
                bases: Vec::new(),
                free,
            }),
        })
    }

    /// The most the guest heap may grow to; the window starts here.
    pub fn heap_cap(&self) -> u64 {
        self.heap_cap
    }

    /// Bytes of the wasm32 address space above the heap cap, for segments.
    pub fn window_bytes(&self) -> u64 {
        ADDRESS_SPACE - self.heap_cap
    }

    /// Free window bytes now.
    pub fn free_bytes(&self) -> u64 {
        self.lock().free.iter().map(|&(_, len)| len).sum()
    }

    /// Linear memories attached so far.
    pub fn memories(&self) -> usize {
        self.lock().bases.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `instantiate` with this window bound to the thread, so the memories it creates
    /// attach to it.
    pub fn bind<T>(self: &Arc<Self>, instantiate: impl FnOnce() -> T) -> T {
        let previous = BINDING.with(|b| b.replace(Some(Arc::clone(self))));
        let value = instantiate();
        BINDING.with(|b| *b.borrow_mut() = previous);
        value
    }

    fn attach(&self, base: usize) {
        self.lock().bases.push(base);
    }

    fn detach(&self, base: usize) {
        self.lock().bases.retain(|&b| b != base);
    }

    /// Maps `region` (a segment mapped in this process) into the window of every attached
    /// memory; returns its slot.
    ///
    /// Crate-internal, and sound only under a contract the callers (`GuestSegments`) keep:
    /// `region` comes from a `Memory` or `View` that keeps the segment mapped until the slot
    /// is unmapped again (it probes, and maps from, `region`'s address range).
    pub(crate) fn map(&self, region: &SegmentRegion) -> Result<Slot, WindowError> {
        // A peer may have truncated the object: check it is backed to its end before the guest
        // can touch it (a later truncation still faults, and the fault is contained).
        sigbus::probe(region.address(), region.len())?;
        let mut inner = self.lock();
        if inner.bases.is_empty() {
            return Err(WindowError::NoLinearMemory);
        }
        let needed = (region.len() as u64).div_ceil(SLOT_ALIGN) * SLOT_ALIGN;
        let index = inner
            .free
            .iter()
            .position(|&(_, len)| len >= needed)
            .ok_or(WindowError::Full {
                needed,
                window: self.window_bytes(),
            })?;
        let (start, len) = inner.free[index];
        let slot = Slot {
            start: start as u32,
            len: needed,
        };
        for (done, &base) in inner.bases.iter().enumerate() {
            let target = base + start as usize;
            // SAFETY: `region` is a live shared mapping of this process (the caller holds it
            // alive); the target lies inside the window of a reservation this module made,
            // below 4 GiB, which only guest code and this module touch.
            let duplicated = unsafe { duplicate(region.address(), region.len(), target) };
            if let Err(e) = duplicated {
                for &undo in &inner.bases[..done] {
                    // SAFETY: as above; this undoes the mapping just made.
                    unsafe { seal(undo + start as usize, slot.len as usize) };
                }
                return Err(WindowError::Map(e.to_string()));
            }
        }
        if len == needed {
            inner.free.remove(index);
        } else {
            inner.free[index] = (start + needed, len - needed);
        }
        Ok(slot)
    }

    /// Makes a slot unreachable (PROT_NONE) in every attached memory and frees it.
    ///
    /// Crate-internal: `slot` must come from this window's `map` and not be unmapped since
    /// (it maps over the slot's range with `MAP_FIXED`).
    pub(crate) fn unmap(&self, slot: Slot) {
        let mut inner = self.lock();
        for &base in &inner.bases {
            // SAFETY: the slot lies in the window of this reservation; replacing it with
            // PROT_NONE only takes the segment away from the guest.
            unsafe { seal(base + slot.start as usize, slot.len as usize) };
        }
        let start = u64::from(slot.start);
        let at = inner.free.partition_point(|&(s, _)| s < start);
        inner.free.insert(at, (start, slot.len));
        // Coalesce with the neighbours.
        if at + 1 < inner.free.len() && inner.free[at].0 + inner.free[at].1 == inner.free[at + 1].0
        {
            inner.free[at].1 += inner.free[at + 1].1;
            inner.free.remove(at + 1);
        }
        if at > 0 && inner.free[at - 1].0 + inner.free[at - 1].1 == inner.free[at].0 {
            inner.free[at - 1].1 += inner.free[at].1;
            inner.free.remove(at);
        }
    }
}

/// Maps the pages of the shared mapping at `source` a second time at `target`.
///
/// `mremap` with an old size of 0 duplicates a shared mapping: same object, same protection,
/// no file descriptor needed, and MREMAP_FIXED replaces whatever was at `target` atomically.
///
/// # Safety
/// `source..source + len` must be a shared mapping; `target..target + len` must be ours to
/// replace.
unsafe fn duplicate(source: usize, len: usize, target: usize) -> std::io::Result<()> {
    // SAFETY: forwarded contract.
    let result = unsafe {
        libc::mremap(
            source as *mut libc::c_void,
            0,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target as *mut libc::c_void,
        )
    };
    if result == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Maps inaccessible anonymous memory over `[addr, addr + len)`.
///
/// # Safety
/// The range must be ours to replace.
unsafe fn seal(addr: usize, len: usize) {
    // SAFETY: forwarded contract; MAP_FIXED replaces exactly this range.
    unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        );
    }
}

/// A linear memory made by the creator and attached to `window`, as an instantiation makes it.
#[cfg(test)]
pub(crate) fn linear_memory(window: &Arc<Window>) -> Box<dyn LinearMemory> {
    window
        .bind(|| {
            WindowCreator.new_memory(
                MemoryType::new(1, None),
                64 << 10,
                None,
                Some(ADDRESS_SPACE as usize),
                32 << 20,
            )
        })
        .expect("a linear memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_size_is_rounded_and_leaves_a_heap() {
        let w = Window::new(3 * SLOT_ALIGN + 5);
        assert_eq!(w.window_bytes(), 3 * SLOT_ALIGN);
        assert_eq!(w.heap_cap(), ADDRESS_SPACE - 3 * SLOT_ALIGN);
        let w = Window::new(u64::MAX);
        assert_eq!(w.heap_cap(), MIN_HEAP);
        assert_eq!(Window::new(0).free_bytes(), 0);
    }

    /// The mechanism without wasm: a memory from the creator, bound to a window; a shared
    /// file mapping shows up in the window, leaves it on unmap, and the heap stops at the cap.
    #[test]
    fn segments_appear_in_the_window_and_the_heap_stops_at_the_cap() {
        let window = Window::new(4 << 20);
        let mut memory = linear_memory(&window);
        assert_eq!(window.memories(), 1);
        let cap = window.heap_cap() as usize;
        assert_eq!(memory.byte_capacity(), cap);
        assert!(memory.grow_to(cap + (64 << 10)).is_err());
        memory.grow_to(128 << 10).expect("grow below the cap");
        assert_eq!(memory.byte_size(), 128 << 10);

        // A real segment of a real memory: only resmem makes regions.
        let config = resmem::Config::default().prefix(&format!("winunit{}_", std::process::id()));
        let owner = resmem::Memory::builder("window")
            .config(&config)
            .max_chunk_layout_hint(std::alloc::Layout::from_size_align(8000, 8).unwrap())
            .create()
            .expect("a memory");
        let chunk = owner
            .allocate(std::alloc::Layout::from_size_align(8000, 8).unwrap())
            .expect("a chunk");
        let region = owner
            .segment_region(chunk.offset.segment_id())
            .expect("a live segment");
        assert!(region.len() as u64 <= SLOT_ALIGN, "{region:?}");
        let last = region.len() - 1;
        let base = region.address() as *mut u8;
        // The memory is this test's: nobody else touches it, and the test only writes inside
        // its chunk (the first 4 bytes) and reads the rest.
        // SAFETY: the mapping is `region.len()` bytes, read-write, mapped while the chunk lives.
        let shared = unsafe { std::slice::from_raw_parts_mut(base, region.len()) };
        shared[..4].copy_from_slice(b"shm!");
        let trailer_byte = shared[last];
        let slot = window.map(&region).expect("mapped");
        assert_eq!(u64::from(slot.start), window.heap_cap());
        assert_eq!(slot.len, SLOT_ALIGN);
        assert_eq!(window.free_bytes(), (4 << 20) - SLOT_ALIGN);
        let base = memory.as_ptr() as usize + slot.start as usize;
        // SAFETY: the slot maps the segment's `region.len()` bytes.
        let seen = unsafe { std::slice::from_raw_parts(base as *const u8, region.len()) };
        assert_eq!(&seen[..4], b"shm!");
        assert_eq!(seen[last], trailer_byte);
        // Writes through the window reach the file's pages.
        // SAFETY: as above, mapped read-write (the source mapping is).
        unsafe { (base as *mut u8).add(4).write(b'?') };
        assert_eq!(shared[4], b'?');

        window.unmap(slot);
        assert_eq!(window.free_bytes(), 4 << 20);
        // The slot is reused.
        let again = window.map(&region).expect("mapped again");
        assert_eq!(again.start, slot.start);
        window.unmap(again);
        drop(memory);
        assert_eq!(window.memories(), 0);
    }

    #[test]
    fn map_without_a_memory_is_an_error() {
        let w = Window::new(DEFAULT_WINDOW);
        let config = resmem::Config::default().prefix(&format!("winnomem{}_", std::process::id()));
        let owner = resmem::Memory::builder("window")
            .config(&config)
            .create()
            .expect("a memory");
        let chunk = owner
            .allocate(std::alloc::Layout::new::<u64>())
            .expect("a chunk");
        let region = owner
            .segment_region(chunk.offset.segment_id())
            .expect("live");
        assert_eq!(w.map(&region), Err(WindowError::NoLinearMemory));
    }
}
