//! The stress mode, `fuzz churn <name> <seed> <ops>` (see the crate documentation).

use super::*;

/// The stress mode (see the crate documentation).
pub(super) fn churn(name: &str, seed: u64, ops: u64) {
    use resmem_guest::pattern;
    use std::io::{BufRead, Write};

    let fail = |what: String| -> ! {
        eprintln!("churn {name}: {what}");
        exit(1)
    };
    let config = wit::MemoryConfig {
        max_chunk_layout_hint: Layout {
            size: 4096,
            align: 8,
        },
        max_number_of_chunks_hint: 8,
        allocation_strategy: AllocationStrategy::PowerOfTwo,
    };
    let memory = wit::Memory::create(name, config).unwrap_or_else(|e| fail(format!("{e:?}")));
    let mut pinned = Vec::new();
    let mut out = std::io::stdout().lock();
    for (i, size) in [4096u64, 20_000, 70_000, 300_000].into_iter().enumerate() {
        let offset = memory
            .allocate(Layout { size, align: 8 })
            .unwrap_or_else(|e| fail(format!("pinned allocate: {e:?}")));
        let mut data = vec![0; size as usize];
        pattern::fill(seed + i as u64, 0, &mut data);
        memory
            .write(offset, 0, &data)
            .unwrap_or_else(|e| fail(format!("pinned write: {e:?}")));
        writeln!(
            out,
            "chunk offset={} len={size} seed={}",
            pack(offset),
            seed + i as u64
        )
        .and_then(|()| out.flush())
        .unwrap_or_else(|e| fail(format!("stdout: {e}")));
        pinned.push((offset, data));
    }
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .unwrap_or_else(|e| fail(format!("stdout: {e}")));

    let mut rng = Rng(seed.wrapping_mul(31) ^ 0xC0FFEE);
    // Packed offset -> (segment, start, contents); pinned chunks take part in overlap checks.
    let mut live: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut peak, mut max_segments, mut grown) = (0, 0, 0u64);
    let overlaps = |live: &BTreeMap<u64, Vec<u8>>, at: PointerOffset, size: u64| {
        live.iter()
            .map(|(&p, d)| (unpack(p), d.len() as u64))
            .chain(pinned.iter().map(|(o, d)| (*o, d.len() as u64)))
            .any(|(o, len)| {
                o.segment == at.segment
                    && o.offset < at.offset + size.max(1)
                    && at.offset < o.offset + len.max(1)
            })
    };
    for op in 0..ops {
        match rng.below(10) {
            0..=4 if live.len() < 64 => {
                let bits = rng.below(17);
                let size = rng.below(1 << bits) + 1;
                let offset = memory
                    .allocate(Layout { size, align: 8 })
                    .unwrap_or_else(|e| fail(format!("allocate {size}: {e:?}")));
                if overlaps(&live, offset, size) {
                    fail(format!("{offset:?} ({size} bytes) overlaps a live chunk"));
                }
                let data = rng.bytes(size as usize);
                memory
                    .write(offset, 0, &data)
                    .unwrap_or_else(|e| fail(format!("write: {e:?}")));
                live.insert(pack(offset), data);
            }
            5..=6 if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                let packed = *live.keys().nth(k).expect("k < len");
                let data = live.remove(&packed).expect("live");
                let size = data.len() as u64 + rng.below(8192) + 1;
                let grown_at = memory
                    .grow(
                        unpack(packed),
                        Layout { size, align: 8 },
                        ContentPlacement::Front,
                    )
                    .unwrap_or_else(|e| fail(format!("grow to {size}: {e:?}")));
                if overlaps(&live, grown_at, size) {
                    fail(format!("grown {grown_at:?} overlaps a live chunk"));
                }
                let back = memory
                    .read(grown_at, 0, data.len() as u64)
                    .unwrap_or_else(|e| fail(format!("read: {e:?}")));
                if back != data {
                    fail(format!("grow lost the contents of {:?}", unpack(packed)));
                }
                let mut data = data;
                data.resize(size as usize, 0);
                let tail = rng.bytes(size as usize - back.len());
                memory
                    .write(grown_at, back.len() as u64, &tail)
                    .unwrap_or_else(|e| fail(format!("write: {e:?}")));
                data[back.len()..].copy_from_slice(&tail);
                live.insert(pack(grown_at), data);
                grown += 1;
            }
            _ if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                let packed = *live.keys().nth(k).expect("k < len");
                let data = live.remove(&packed).expect("live");
                let back = memory
                    .read(unpack(packed), 0, data.len() as u64)
                    .unwrap_or_else(|e| fail(format!("read: {e:?}")));
                if back != data {
                    fail(format!(
                        "chunk {:?} changed behind our back",
                        unpack(packed)
                    ));
                }
                memory
                    .deallocate(unpack(packed))
                    .unwrap_or_else(|e| fail(format!("deallocate: {e:?}")));
            }
            _ => {}
        }
        peak = peak.max(live.len());
        max_segments = max_segments.max(memory.number_of_active_segments());
        if op.is_multiple_of(256) {
            for (offset, data) in &pinned {
                let back = memory
                    .read(*offset, 0, data.len() as u64)
                    .unwrap_or_else(|e| fail(format!("read pinned: {e:?}")));
                if &back != data {
                    fail(format!("pinned chunk {offset:?} changed"));
                }
            }
        }
    }
    writeln!(
        out,
        "churned {ops} ops, {grown} grows, peak {peak} chunks, up to {max_segments} segments"
    )
    .and_then(|()| out.flush())
    .unwrap_or_else(|e| fail(format!("stdout: {e}")));
    drop(out);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
