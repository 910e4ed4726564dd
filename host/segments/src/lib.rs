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
//!
//! The same without `unsafe`: [`Memory::allocate_chunk`] gives a [`Chunk`] that frees itself
//! when dropped, [`View::register`] a [`Registration`] that unregisters itself and hands out
//! bounds-checked slices.
//!
//! ```
//! use std::alloc::Layout;
//! use resmem::{AccessMode, Config, Memory, View};
//!
//! let config = Config::default().prefix(&format!("docraii{}_", std::process::id()));
//! let memory = Memory::builder("frames").config(&config).create()?;
//! let mut chunk = memory.allocate_chunk(Layout::new::<[u8; 4]>())?;
//! chunk.as_mut_slice().copy_from_slice(b"ping");
//!
//! let view = View::builder("frames").config(&config).open(AccessMode::Read)?;
//! let registration = view.register(chunk.offset())?;
//! assert_eq!(registration.as_slice(4)?, b"ping");
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
mod manage;
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
    AllocError, CreateError, DeallocError, Errno, GrowError, ManageError, NameError, OpenError,
    OsError,
};
pub use manage::{StaleRemoval, exists, is_owner_alive, list, remove, remove_stale};
pub use memory::{Chunk, Memory, MemoryBuilder};
pub use name::validate as validate_name;
pub use offset::{PointerOffset, SegmentId, ShmPointer};
pub use region::SegmentRegion;
pub use view::{Registration, View, ViewBuilder};
