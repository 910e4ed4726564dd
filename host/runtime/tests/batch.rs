//! `memory.allocate-many` / `memory.deallocate-many` on the host's own implementation (the
//! functions a guest's call lands in, without wasm; the errors guest drives them through a real
//! component): all or nothing, across growth, against the live-chunk quota, and with the
//! shared header a native view reads counting exactly the chunks the guest holds.

use resmem::{AccessMode, View};
use resmem_host::bindings::api::{HostMemory, MemoryConfig};
use resmem_host::bindings::types::{
    AllocationStrategy, Error, Layout as WitLayout, PointerOffset as WitOffset,
};
use resmem_host::{GuestMemory, Policy, Quotas, ResmemCtx, ResmemCtxView};
use wasmtime::component::{Resource, ResourceTable};

const SMALL: WitLayout = WitLayout { size: 64, align: 8 };

/// A guest's host state under a namespace of its own.
struct Guest {
    ctx: ResmemCtx,
    table: ResourceTable,
    config: resmem::Config,
}

impl Guest {
    fn new(tag: &str, quotas: Quotas) -> Self {
        let policy = Policy::builder()
            .namespace(&format!("rmbt{tag}{}_", std::process::id()))
            .quotas(quotas)
            .build();
        let config = policy.config().clone();
        Self {
            ctx: ResmemCtx::new(policy),
            table: ResourceTable::new(),
            config,
        }
    }

    fn view(&mut self) -> ResmemCtxView<'_> {
        ResmemCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    fn create(&mut self, name: &str, chunks: u64, strategy: AllocationStrategy) -> Handle {
        let handle = ok(self.view().create(
            name.to_owned(),
            MemoryConfig {
                max_chunk_layout_hint: SMALL,
                max_number_of_chunks_hint: chunks,
                allocation_strategy: strategy,
            },
        ));
        Handle(handle.rep())
    }

    fn allocate_many(&mut self, memory: Handle, count: u32) -> Result<Vec<WitOffset>, Error> {
        HostMemory::allocate_many(&mut self.view(), memory.borrow(), SMALL, count)
            .expect("host bug: a handle is missing")
    }

    fn deallocate_many(&mut self, memory: Handle, offsets: &[WitOffset]) -> Result<(), Error> {
        HostMemory::deallocate_many(&mut self.view(), memory.borrow(), offsets.to_vec())
            .expect("host bug: a handle is missing")
    }

    fn write(&mut self, memory: Handle, offset: WitOffset, byte: u8) -> Result<(), Error> {
        HostMemory::write(&mut self.view(), memory.borrow(), offset, 0, vec![byte; 64])
            .expect("host bug: a handle is missing")
    }

    fn read(&mut self, memory: Handle, offset: WitOffset) -> Result<Vec<u8>, Error> {
        HostMemory::read(&mut self.view(), memory.borrow(), offset, 0, 64)
            .expect("host bug: a handle is missing")
    }

    /// Chunks in use over all segments, as the memory's header tells a native peer.
    fn chunks_in_use(&self, name: &str) -> u64 {
        let view = View::builder(name)
            .config(&self.config)
            .open(AccessMode::Read)
            .expect("a native view of the guest's memory");
        view.segment_records()
            .into_iter()
            .map(|(_, record)| record.chunks_in_use)
            .sum()
    }

    fn drop_memory(&mut self, memory: Handle) {
        HostMemory::drop(&mut self.view(), Resource::new_own(memory.0)).expect("drop the memory");
    }
}

/// A memory's resource handle (its table index), borrowed for each call.
#[derive(Clone, Copy)]
struct Handle(u32);

impl Handle {
    fn borrow(self) -> Resource<GuestMemory> {
        Resource::new_borrow(self.0)
    }
}

fn ok<T>(outcome: wasmtime::Result<Result<T, Error>>) -> T {
    outcome
        .expect("host bug: a handle is missing")
        .expect("the host refused the call")
}

fn key(offset: &WitOffset) -> (u8, u64) {
    (offset.segment, offset.offset)
}

#[test]
fn a_batch_spans_growth_and_comes_back_in_one_call() {
    let mut guest = Guest::new("grow", Quotas::default());
    let memory = guest.create("m", 4, AllocationStrategy::PowerOfTwo);
    let offsets = guest.allocate_many(memory, 300).expect("300 chunks");
    assert_eq!(offsets.len(), 300);
    let mut distinct: Vec<_> = offsets.iter().map(key).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 300, "every chunk handed out once");
    let segments: std::collections::BTreeSet<u8> = offsets.iter().map(|o| o.segment).collect();
    assert!(
        segments.len() > 1,
        "segment 0 (4 chunks) had to grow: {segments:?}"
    );
    assert_eq!(guest.ctx.usage().chunks, 300);
    assert_eq!(guest.chunks_in_use("m"), 300);
    for (i, &offset) in offsets.iter().enumerate() {
        guest
            .write(memory, offset, i as u8)
            .expect("write a batch chunk");
    }
    for (i, &offset) in offsets.iter().enumerate() {
        assert_eq!(
            guest.read(memory, offset).expect("read it back"),
            vec![i as u8; 64]
        );
    }

    guest
        .deallocate_many(memory, &offsets[..100])
        .expect("return 100");
    assert_eq!(guest.ctx.usage().chunks, 200);
    assert_eq!(guest.chunks_in_use("m"), 200);
    assert!(matches!(
        guest.read(memory, offsets[0]),
        Err(Error::InvalidOffset(_))
    ));
    guest
        .deallocate_many(memory, &offsets[100..])
        .expect("return the rest");
    assert_eq!(guest.ctx.usage().chunks, 0);
    assert_eq!(guest.chunks_in_use("m"), 0);
    assert_eq!(guest.allocate_many(memory, 0), Ok(Vec::new()));
    assert_eq!(guest.deallocate_many(memory, &[]), Ok(()));
    guest.drop_memory(memory);
}

#[test]
fn a_refused_return_frees_nothing() {
    let mut guest = Guest::new("ref", Quotas::default());
    let memory = guest.create("m", 64, AllocationStrategy::PowerOfTwo);
    let mut offsets = guest.allocate_many(memory, 9).expect("9 chunks");
    let freed = offsets.pop().expect("the 9th");
    guest
        .deallocate_many(memory, &[freed])
        .expect("return the 9th");
    for (i, &offset) in offsets.iter().enumerate() {
        guest.write(memory, offset, i as u8 + 1).expect("write");
    }
    let twice = [offsets[0], offsets[1], offsets[0]];
    let not_ours = [offsets[2], offsets[3], freed];
    let forged = [
        offsets[4],
        WitOffset {
            segment: 0,
            offset: 1 << 60,
        },
    ];
    let unaligned = [
        offsets[5],
        WitOffset {
            segment: offsets[6].segment,
            offset: offsets[6].offset + 1,
        },
    ];
    // All eight and one of them again: longer than what the guest holds.
    let too_many: Vec<WitOffset> = offsets.iter().copied().chain([offsets[7]]).collect();
    for refused in [&twice[..], &not_ours, &forged, &unaligned, &too_many] {
        assert!(
            matches!(
                guest.deallocate_many(memory, refused),
                Err(Error::InvalidOffset(_))
            ),
            "{refused:?}"
        );
        assert_eq!(guest.ctx.usage().chunks, 8, "{refused:?}");
        assert_eq!(guest.chunks_in_use("m"), 8, "{refused:?}");
    }
    for (i, &offset) in offsets.iter().enumerate() {
        assert_eq!(
            guest.read(memory, offset).expect("still ours"),
            vec![i as u8 + 1; 64]
        );
    }
    guest.deallocate_many(memory, &offsets).expect("all 8 back");
    assert_eq!(guest.chunks_in_use("m"), 0);
    guest.drop_memory(memory);
    assert_eq!(guest.ctx.usage().chunks, 0);
}

#[test]
fn a_batch_over_the_quota_or_the_memory_takes_nothing() {
    let mut quotas = Quotas::default();
    quotas.live_chunks = 10;
    let mut guest = Guest::new("quota", quotas);
    let memory = guest.create("m", 4, AllocationStrategy::PowerOfTwo);
    let held = guest.allocate_many(memory, 3).expect("3 chunks");
    assert!(matches!(
        guest.allocate_many(memory, 8),
        Err(Error::QuotaExceeded(_))
    ));
    assert!(matches!(
        guest.allocate_many(memory, u32::MAX),
        Err(Error::QuotaExceeded(_))
    ));
    assert_eq!(guest.ctx.usage().chunks, 3);
    assert_eq!(guest.chunks_in_use("m"), 3);
    let rest = guest
        .allocate_many(memory, 7)
        .expect("exactly up to the quota");
    assert_eq!(guest.ctx.usage().chunks, 10);
    guest.deallocate_many(memory, &rest).expect("back");
    guest.deallocate_many(memory, &held).expect("back");

    guest.drop_memory(memory);
    assert_eq!(guest.ctx.usage().chunks, 0);
}

#[test]
fn a_batch_larger_than_a_static_memory_takes_nothing() {
    let mut guest = Guest::new("static", Quotas::default());
    let fixed = guest.create("fixed", 4, AllocationStrategy::Static);
    // Segment 0 is page-rounded: count what it really holds.
    let fits = std::iter::from_fn(|| guest.allocate_many(fixed, 1).ok())
        .take(10_000)
        .flatten()
        .collect::<Vec<_>>();
    assert!((4..10_000).contains(&fits.len()), "{} chunks", fits.len());
    let fits_count = fits.len() as u32;
    guest.deallocate_many(fixed, &fits).expect("back");
    assert_eq!(
        guest.allocate_many(fixed, fits_count + 1),
        Err(Error::OutOfMemory)
    );
    assert_eq!(
        guest.chunks_in_use("fixed"),
        0,
        "the failed batch gave its chunks back"
    );
    assert_eq!(guest.ctx.usage().chunks, 0);
    let full = guest
        .allocate_many(fixed, fits_count)
        .expect("what fits, in one batch");
    assert_eq!(full.len(), fits.len());
    assert_eq!(guest.chunks_in_use("fixed"), u64::from(fits_count));
    guest.drop_memory(fixed);
    assert_eq!(guest.ctx.usage().chunks, 0);
}
