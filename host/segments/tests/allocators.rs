//! Property tests of the chunk allocators against simple models: random sequences of
//! allocate / deallocate (valid, bogus, double) / grow in place, checking after every step
//! that offsets are in bounds and aligned, live chunks never overlap, errors are the exact
//! ones the model predicts, and `chunks_in_use` matches.

use std::alloc::Layout;
use std::collections::BTreeMap;

use proptest::prelude::*;
use resmem::allocator::{BumpAllocator, ChunkAllocator, Exhausted, PoolAllocator, SegmentLayout};
use resmem::{AllocationStrategy, AllocatorKind, DeallocError};

#[derive(Debug, Clone)]
enum Op {
    /// Allocate `size` bytes aligned to `1 << align_log2`.
    Alloc { size: usize, align_log2: u32 },
    /// Free the `pick % live`-th live chunk.
    Free { pick: usize },
    /// Free an arbitrary offset.
    FreeBogus { offset: u64 },
    /// Free the `pick % freed`-th chunk freed earlier.
    DoubleFree { pick: usize },
    /// Grow the `pick % live`-th live chunk by `extra` bytes to alignment `1 << align_log2`.
    Grow {
        pick: usize,
        extra: usize,
        align_log2: u32,
    },
}

fn op(max_size: usize, max_offset: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=max_size, 0..=7u32).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => prop_oneof![0..=max_offset, any::<u64>()].prop_map(|offset| Op::FreeBogus { offset }),
        1 => any::<usize>().prop_map(|pick| Op::DoubleFree { pick }),
        1 => (any::<usize>(), 0..=64usize, 0..=4u32)
            .prop_map(|(pick, extra, align_log2)| Op::Grow { pick, extra, align_log2 }),
    ]
}

/// A segment layout as `MemoryBuilder` would make it from its hints.
fn segment(kind: AllocatorKind) -> impl Strategy<Value = SegmentLayout> {
    (1..=256usize, 0..=6u32, 1..=48usize).prop_map(move |(size, align_log2, chunks)| {
        let hint = Layout::from_size_align(size, 1 << align_log2).expect("valid");
        kind.initial_layout(hint, chunks)
            .expect("small hints are representable")
    })
}

fn layout(size: usize, align_log2: u32) -> Layout {
    Layout::from_size_align(size, 1 << align_log2).expect("valid test layout")
}

/// Live chunks by offset, with the number of bytes each occupies.
#[derive(Debug, Default)]
struct Live(BTreeMap<u64, u64>);

impl Live {
    /// Inserts a chunk, asserting it is in bounds and overlaps no live chunk.
    fn insert(&mut self, offset: u64, len: u64, payload: u64) -> Result<(), TestCaseError> {
        prop_assert!(
            offset + len <= payload,
            "chunk {offset}+{len} beyond payload {payload}"
        );
        if let Some((&before, &before_len)) = self.0.range(..=offset).next_back() {
            prop_assert!(
                before + before_len <= offset,
                "{offset} overlaps {before}+{before_len}"
            );
        }
        if let Some((&after, _)) = self.0.range(offset..).next() {
            prop_assert!(offset + len <= after, "{offset}+{len} overlaps {after}");
        }
        self.0.insert(offset, len);
        Ok(())
    }

    fn nth(&self, pick: usize) -> Option<u64> {
        (!self.0.is_empty()).then(|| *self.0.keys().nth(pick % self.0.len()).expect("in range"))
    }
}

/// The bump model's side of a successful free of `offset`.
fn bump_model_free(
    live: &mut Live,
    freed: &mut Vec<u64>,
    last: &mut Option<u64>,
    cursor: &mut u64,
    offset: u64,
) {
    live.0.remove(&offset);
    freed.push(offset);
    if *last == Some(offset) {
        *last = None;
    }
    if live.0.is_empty() {
        // Last chunk back: the segment starts over.
        *cursor = 0;
        *last = None;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 1024 },
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_matches_its_model(
        seg in segment(AllocatorKind::Pool),
        ops in prop::collection::vec(op(300, 300 * 48), 1..if cfg!(miri) { 24 } else { 200 }),
    ) {
        let pool = PoolAllocator::new(seg).expect("pool");
        prop_assert_eq!(pool.layout(), seg);
        prop_assert_eq!(pool.bucket_size(), seg.chunk_size);
        prop_assert_eq!(pool.number_of_buckets(), seg.chunks);
        prop_assert_eq!(pool.max_chunk_size(), seg.chunk_size);
        let size = seg.chunk_size as u64;
        let payload = seg.payload_size as u64;
        prop_assert_eq!(payload, size * seg.chunks as u64);
        let mut live = Live::default();
        let mut freed: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { size: want, align_log2 } => {
                    let l = layout(want, align_log2);
                    let got = pool.allocate(l);
                    let expected = if want > seg.chunk_size {
                        Err(Exhausted::TooLarge)
                    } else if l.align() > seg.chunk_align {
                        Err(Exhausted::TooAligned)
                    } else if live.0.len() == seg.chunks {
                        Err(Exhausted::NoChunkLeft)
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(got.map(|_| ()), expected, "{:?}", l);
                    if let Ok(offset) = got {
                        prop_assert_eq!(offset % size, 0, "bucket start");
                        prop_assert_eq!(offset % l.align() as u64, 0, "aligned");
                        live.insert(offset, size, payload)?;
                    }
                }
                Op::Free { pick } => {
                    if let Some(offset) = live.nth(pick) {
                        prop_assert_eq!(pool.deallocate(offset), Ok(()));
                        live.0.remove(&offset);
                        freed.push(offset);
                    }
                }
                Op::FreeBogus { offset } => {
                    let expected = if offset % size != 0 || offset / size >= seg.chunks as u64 {
                        Err(DeallocError::InvalidOffset)
                    } else if live.0.contains_key(&offset) {
                        // Happens to be a live chunk: a legitimate free.
                        Ok(())
                    } else {
                        Err(DeallocError::NotAllocated)
                    };
                    prop_assert_eq!(pool.deallocate(offset), expected, "offset {}", offset);
                    if expected.is_ok() {
                        live.0.remove(&offset);
                        freed.push(offset);
                    }
                }
                Op::DoubleFree { pick } => {
                    if !freed.is_empty() {
                        let offset = freed[pick % freed.len()];
                        if live.0.contains_key(&offset) {
                            // Handed out again since: this is its owner's free.
                            prop_assert_eq!(pool.deallocate(offset), Ok(()));
                            live.0.remove(&offset);
                        } else {
                            prop_assert_eq!(pool.deallocate(offset), Err(DeallocError::NotAllocated));
                        }
                    }
                }
                Op::Grow { pick, extra, align_log2 } => {
                    if let Some(offset) = live.nth(pick) {
                        let old = layout(1, 0);
                        let new = layout(1 + extra, align_log2);
                        let expected = new.size() <= seg.chunk_size
                            && new.align() <= seg.chunk_align
                            && offset % new.align() as u64 == 0;
                        prop_assert_eq!(pool.grow_in_place(offset, old, new), expected);
                    }
                }
            }
            prop_assert_eq!(pool.chunks_in_use(), live.0.len());
        }
        // Everything handed back: every bucket can be handed out again, once.
        for offset in live.0.keys().copied().collect::<Vec<_>>() {
            prop_assert_eq!(pool.deallocate(offset), Ok(()));
        }
        prop_assert_eq!(pool.chunks_in_use(), 0);
        let mut again = Live::default();
        for _ in 0..seg.chunks {
            let offset = pool.allocate(layout(1, 0)).expect("a free bucket");
            again.insert(offset, size, payload)?;
        }
        prop_assert_eq!(pool.allocate(layout(1, 0)), Err(Exhausted::NoChunkLeft));
    }

    #[test]
    fn bump_matches_its_model(
        seg in segment(AllocatorKind::Bump),
        ops in prop::collection::vec(op(200, 256 * 48), 1..if cfg!(miri) { 24 } else { 200 }),
    ) {
        let bump = BumpAllocator::new(seg);
        let capacity = seg.payload_size as u64;
        prop_assert_eq!(bump.max_chunk_size(), seg.payload_size);
        // The model: the implementation's documented state.
        let mut cursor = 0u64;
        let mut last: Option<u64> = None;
        let mut live = Live::default();
        let mut freed: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { size, align_log2 } => {
                    let l = layout(size, align_log2);
                    let start = cursor.next_multiple_of(l.align() as u64);
                    let end = start + (size as u64).max(1);
                    let expected = if size as u64 > capacity {
                        Err(Exhausted::TooLarge)
                    } else if end > capacity {
                        Err(Exhausted::NoChunkLeft)
                    } else {
                        Ok(start)
                    };
                    let got = bump.allocate(l);
                    prop_assert_eq!(got, expected, "{:?} at cursor {}", l, cursor);
                    if let Ok(offset) = got {
                        prop_assert_eq!(offset % l.align() as u64, 0);
                        live.insert(offset, end - start, capacity)?;
                        cursor = end;
                        last = Some(start);
                    }
                }
                Op::Free { pick } => {
                    if let Some(offset) = live.nth(pick) {
                        prop_assert_eq!(bump.deallocate(offset), Ok(()));
                        bump_model_free(&mut live, &mut freed, &mut last, &mut cursor, offset);
                    }
                }
                Op::FreeBogus { .. } | Op::DoubleFree { .. } => {}
                Op::Grow { pick, extra, align_log2 } => {
                    if let Some(offset) = live.nth(pick) {
                        let len = live.0[&offset];
                        let old = layout(len as usize, 0);
                        let new = layout(len as usize + extra, align_log2);
                        let end = offset + (new.size() as u64).max(1);
                        let expected = last == Some(offset)
                            && offset % new.align() as u64 == 0
                            && end <= capacity;
                        prop_assert_eq!(bump.grow_in_place(offset, old, new), expected);
                        if expected {
                            cursor = cursor.max(end);
                            live.0.remove(&offset);
                            live.insert(offset, end - offset, capacity)?;
                        }
                    }
                }
            }
            // A bogus offset, or one freed earlier (maybe handed out again since).
            let checked = match op {
                Op::FreeBogus { offset } => Some(offset),
                Op::DoubleFree { pick } if !freed.is_empty() => Some(freed[pick % freed.len()]),
                _ => None,
            };
            if let Some(offset) = checked {
                let containing = live.0.range(..=offset).next_back().map(|(&s, &l)| (s, l));
                let expected = if offset >= cursor {
                    Err(DeallocError::InvalidOffset)
                } else {
                    match containing {
                        // Happens to be a live chunk: a legitimate free.
                        Some((start, _)) if start == offset => Ok(()),
                        // Inside a live chunk: no chunk start.
                        Some((start, len)) if offset < start + len => Err(DeallocError::InvalidOffset),
                        // Below the cursor, outside every live chunk: returned already.
                        _ => Err(DeallocError::NotAllocated),
                    }
                };
                prop_assert_eq!(bump.deallocate(offset), expected, "offset {} at cursor {}", offset, cursor);
                if expected.is_ok() {
                    bump_model_free(&mut live, &mut freed, &mut last, &mut cursor, offset);
                }
            }
            prop_assert_eq!(bump.chunks_in_use(), live.0.len());
        }
    }

    /// The layout `resize_hint` proposes always serves the request that triggered it, and
    /// never shrinks the segment it replaces.
    #[test]
    fn resize_hint_serves_the_request(
        kind in prop_oneof![Just(AllocatorKind::Pool), Just(AllocatorKind::Bump)],
        strategy in prop_oneof![Just(AllocationStrategy::BestFit), Just(AllocationStrategy::PowerOfTwo)],
        hint_size in 1..=512usize,
        hint_align_log2 in 0..=6u32,
        chunks in 1..=64usize,
        used in 0..=64usize,
        size in 0..=8192usize,
        align_log2 in 0..=12u32,
    ) {
        let current = kind
            .initial_layout(layout(hint_size, hint_align_log2), chunks)
            .expect("small hints are representable");
        let allocator = kind.build(current).expect("build");
        let in_use = used.min(chunks);
        let request = layout(size, align_log2.min(resmem::backend::page_size().trailing_zeros()));
        let next = allocator.resize_hint(request, strategy, in_use).expect("small requests grow");
        prop_assert!(next.payload_size >= current.payload_size, "{:?} -> {:?}", current, next);
        prop_assert!(next.chunk_size >= current.chunk_size);
        prop_assert!(next.chunk_align >= current.chunk_align);
        if kind == AllocatorKind::Pool {
            prop_assert!(next.chunks >= current.chunks);
            if in_use >= current.chunks {
                prop_assert!(next.chunks > current.chunks, "a full pool grows its count");
            }
            prop_assert_eq!(next.payload_size, next.chunk_size * next.chunks);
        }
        let grown = kind.build(next).expect("build the next segment");
        let offset = grown.allocate(request);
        prop_assert!(offset.is_ok(), "{:?} does not serve {:?}: {:?}", next, request, offset);
    }
}

#[test]
fn build_and_new_agree() {
    let seg = AllocatorKind::Pool
        .initial_layout(layout(24, 3), 5)
        .expect("layout");
    assert_eq!(
        (
            seg.chunk_size,
            seg.chunk_align,
            seg.chunks,
            seg.payload_size
        ),
        (24, 8, 5, 120)
    );
    let built = AllocatorKind::Pool.build(seg).expect("build");
    let direct = PoolAllocator::new(seg).expect("new");
    for _ in 0..5 {
        assert_eq!(
            built.allocate(layout(24, 3)),
            direct.allocate(layout(24, 3))
        );
    }
    assert_eq!(built.allocate(layout(1, 0)), Err(Exhausted::NoChunkLeft));
    let bump = AllocatorKind::Bump.build(seg).expect("build");
    assert_eq!(bump.max_chunk_size(), 120);
    assert_eq!(bump.allocate(layout(120, 0)), Ok(0));
}
