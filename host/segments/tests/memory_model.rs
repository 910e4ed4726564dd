//! Property test of a whole `Memory` (segments, growth, strategies, both allocators) against a
//! model of the chunks it handed out, on the process-local backend (so it also runs under
//! Miri): random sequences of allocate / grow (front or back) / checked deallocate (valid,
//! double, bogus). After every step: live chunks never overlap, each still holds the bytes
//! written into it (moved by grow as the placement says), errors are the ones the model allows,
//! and once everything is returned only the current segment is left.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use resmem::{
    AllocError, AllocationStrategy, AllocatorKind, Config, ContentPlacement, DeallocError,
    GrowError, Memory, PointerOffset, ProcessLocal,
};

#[derive(Debug, Clone)]
enum Op {
    Alloc {
        size_log2: u32,
        align_log2: u32,
    },
    Grow {
        pick: usize,
        factor: usize,
        back: bool,
    },
    Free {
        pick: usize,
    },
    DoubleFree {
        pick: usize,
    },
    FreeBogus {
        raw: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=12u32, 0..=6u32).prop_map(|(size_log2, align_log2)| Op::Alloc { size_log2, align_log2 }),
        2 => (any::<usize>(), 1..=4usize, any::<bool>()).prop_map(|(pick, factor, back)| Op::Grow { pick, factor, back }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => any::<usize>().prop_map(|pick| Op::DoubleFree { pick }),
        1 => any::<u64>().prop_map(|raw| Op::FreeBogus { raw }),
    ]
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("valid layout")
}

/// A chunk as the model knows it: size, its owner address and the fill byte.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    size: usize,
    align: usize,
    ptr: *mut u8,
    fill: u8,
}

/// Fills a chunk with `fill`.
fn write(chunk: &Chunk) {
    // SAFETY: the chunk is live, ours, `size` bytes long.
    unsafe { chunk.ptr.write_bytes(chunk.fill, chunk.size) };
}

/// Whether `len` bytes at `at` of the chunk are all `fill`.
fn holds(chunk: &Chunk, at: usize, len: usize, fill: u8) -> bool {
    // SAFETY: `at + len <= size` (callers) and the chunk is live and ours.
    unsafe { std::slice::from_raw_parts(chunk.ptr.add(at), len) }
        .iter()
        .all(|&b| b == fill)
}

fn prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "mm{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn memory_matches_its_model(
        strategy in prop_oneof![
            Just(AllocationStrategy::Static),
            Just(AllocationStrategy::BestFit),
            Just(AllocationStrategy::PowerOfTwo),
        ],
        allocator in prop_oneof![Just(AllocatorKind::Pool), Just(AllocatorKind::Bump)],
        hint_log2 in 3..=8u32,
        chunks in 1..=8usize,
        ops in prop::collection::vec(op(), 1..if cfg!(miri) { 20 } else { 150 }),
    ) {
        let config = Config::default().prefix(&prefix()).backend(ProcessLocal);
        let memory = Memory::builder("model")
            .config(&config)
            .max_chunk_layout_hint(layout(1 << hint_log2, 8))
            .max_number_of_chunks_hint(chunks)
            .allocation_strategy(strategy)
            .allocator(allocator)
            .create()
            .expect("create");
        let mut live: BTreeMap<u64, Chunk> = BTreeMap::new();
        let mut freed: Vec<PointerOffset> = Vec::new();
        let mut fill = 0u8;
        for op in ops {
            match op {
                Op::Alloc { size_log2, align_log2 } => {
                    let l = layout(1 << size_log2, 1 << align_log2);
                    match memory.allocate(l) {
                        Ok(p) => {
                            prop_assert_eq!(p.data_ptr as usize % l.align(), 0, "aligned");
                            prop_assert!(!live.contains_key(&p.offset.as_u64()), "handed out twice");
                            fill = fill.wrapping_add(1);
                            let chunk = Chunk { size: l.size(), align: l.align(), ptr: p.data_ptr, fill };
                            write(&chunk);
                            live.insert(p.offset.as_u64(), chunk);
                        }
                        // Static never grows; the others only fail at the 256-segment limit.
                        Err(AllocError::OutOfMemory) => prop_assert_eq!(strategy, AllocationStrategy::Static),
                        Err(e) => prop_assert_eq!(e, AllocError::MaxReallocationsReached),
                    }
                }
                Op::Grow { pick, factor, back } => {
                    if live.is_empty() {
                        continue;
                    }
                    let key = *live.keys().nth(pick % live.len()).expect("in range");
                    let old = live[&key];
                    let new = layout(old.size * factor, old.align);
                    let placement = if back { ContentPlacement::Back } else { ContentPlacement::Front };
                    // SAFETY: a live chunk of ours, allocated with `layout(old.size, old.align)`.
                    match unsafe { memory.grow(PointerOffset::from_u64(key), layout(old.size, old.align), new, placement) } {
                        Ok(p) => {
                            let grown = Chunk { size: new.size(), ptr: p.data_ptr, ..old };
                            let at = if back { new.size() - old.size } else { 0 };
                            prop_assert!(holds(&grown, at, old.size, old.fill), "grow moved the bytes wrongly");
                            live.remove(&key);
                            prop_assert!(!live.contains_key(&p.offset.as_u64()), "grown into a live chunk");
                            write(&grown);
                            live.insert(p.offset.as_u64(), grown);
                        }
                        Err(GrowError::OutOfMemory) => prop_assert_eq!(strategy, AllocationStrategy::Static),
                        Err(e) => prop_assert_eq!(e, GrowError::MaxReallocationsReached),
                    }
                }
                Op::Free { pick } => {
                    if live.is_empty() {
                        continue;
                    }
                    let key = *live.keys().nth(pick % live.len()).expect("in range");
                    let chunk = live.remove(&key).expect("live");
                    prop_assert!(holds(&chunk, 0, chunk.size, chunk.fill), "chunk overwritten before free");
                    prop_assert_eq!(memory.try_deallocate(PointerOffset::from_u64(key)), Ok(()));
                    freed.push(PointerOffset::from_u64(key));
                }
                Op::DoubleFree { pick } => {
                    if freed.is_empty() {
                        continue;
                    }
                    let offset = freed[pick % freed.len()];
                    if live.contains_key(&offset.as_u64()) {
                        continue;
                    }
                    let r = memory.try_deallocate(offset);
                    prop_assert!(
                        matches!(r, Err(DeallocError::NotAllocated | DeallocError::InvalidOffset)),
                        "double free of {:?} gave {:?}", offset, r
                    );
                }
                Op::FreeBogus { raw } => {
                    let offset = PointerOffset::from_u64(raw);
                    if live.contains_key(&raw) {
                        continue;
                    }
                    // Unless it happens to be a live chunk's offset, it is refused.
                    prop_assert!(memory.try_deallocate(offset).is_err(), "freed bogus {:?}", offset);
                }
            }
            // Live chunks do not overlap: compare addresses (each segment is one mapping).
            let mut spans: Vec<(usize, usize)> = live.values().map(|c| (c.ptr as usize, c.size)).collect();
            spans.sort_unstable();
            for pair in spans.windows(2) {
                prop_assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlapping chunks {:?}", pair);
            }
        }
        for (key, chunk) in std::mem::take(&mut live) {
            prop_assert!(holds(&chunk, 0, chunk.size, chunk.fill), "chunk overwritten");
            prop_assert_eq!(memory.try_deallocate(PointerOffset::from_u64(key)), Ok(()));
        }
        prop_assert_eq!(memory.number_of_active_segments(), 1, "only the current segment is left");
        drop(memory);
        prop_assert_eq!(resmem::list(&config), Ok(vec![]));
    }
}
