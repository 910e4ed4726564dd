//! Plugin guest (world `plugin`): `filter.process` XORs every input byte with [`KEY`] (0x5A).
//!
//! For each call it reads the input buffer through a view of `input.memory` (views are cached
//! per memory name), writes `input[i] ^ 0x5A` into a chunk of its own memory [`OUTPUT`]
//! (created on first use) and returns that chunk as the output buffer. The previous output
//! chunk is freed at the start of the next call, so the host must read an output before
//! calling again. An empty input gives no output (`none`). Applying the filter twice gives the
//! input back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use resmem_guest::{
    AccessMode, AllocationStrategy, Layout, Memory, MemoryConfig, Offset, Registered, View,
};

resmem_guest::wit_bindgen::generate!({
    world: "plugin",
    path: "../../wit",
    runtime_path: "resmem_guest::wit_bindgen::rt",
    with: {
        "resmem:memory/types@0.1.0": resmem_guest::bindings::resmem::memory::types,
        "resmem:memory/resizable-memory@0.1.0": resmem_guest::bindings::resmem::memory::resizable_memory,
        "resmem:memory/channel@0.1.0": resmem_guest::bindings::resmem::memory::channel,
        "wasi:io/poll@0.2.12": resmem_guest::bindings::wasi::io::poll,
    },
});

use exports::resmem::memory::filter::{Buffer, Guest};

/// Every output byte is the input byte XOR this.
pub const KEY: u8 = 0x5A;
/// The plugin's own memory the outputs live in.
pub const OUTPUT: &str = "filter-out";
/// Bytes copied per host call.
const PIECE: u64 = 1 << 20;
/// How long to wait for an input memory whose owner is still initialising.
const OPEN_TIMEOUT: Duration = Duration::from_millis(5000);

#[derive(Default)]
struct State {
    views: HashMap<String, View>,
    output: Option<Memory>,
    previous: Option<Offset>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct Filter;

impl Guest for Filter {
    fn process(input: Buffer) -> Result<Option<Buffer>, String> {
        STATE.with_borrow_mut(|state| state.process(&input))
    }
}

export!(Filter);

impl State {
    fn process(&mut self, input: &Buffer) -> Result<Option<Buffer>, String> {
        let State {
            views,
            output,
            previous,
        } = self;
        if let (Some(memory), Some(offset)) = (&*output, previous.take()) {
            memory
                .deallocate(offset)
                .map_err(|e| format!("free the previous output {offset}: {e}"))?;
        }
        if input.len == 0 {
            return Ok(None);
        }
        let name = input.memory.as_str();
        let offset = Offset::from(input.offset);
        // A cached view may belong to an earlier memory of the same name: reopen it once.
        let mut cached = views.contains_key(name);
        loop {
            let view = match views.entry(name.to_owned()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(
                    View::open(name, AccessMode::Read, OPEN_TIMEOUT)
                        .map_err(|e| format!("open input memory {name:?}: {e}"))?,
                ),
            };
            let error = match view.register(offset) {
                Ok(source) => {
                    let out = transform(&source, input.len, output)?;
                    *previous = Some(out);
                    return Ok(Some(Buffer {
                        memory: OUTPUT.to_owned(),
                        offset: out.into(),
                        len: input.len,
                    }));
                }
                Err(e) => e,
            };
            if !cached {
                return Err(format!("register input {offset} in {name:?}: {error}"));
            }
            views.remove(name);
            cached = false;
        }
    }
}

/// Writes `source[i] ^ KEY` for `i < len` into a new chunk of the output memory (created on
/// first use) and hands that chunk off.
fn transform(
    source: &Registered<'_>,
    len: u64,
    output: &mut Option<Memory>,
) -> Result<Offset, String> {
    let memory = match output {
        Some(memory) => memory,
        slot => slot.insert(
            Memory::create(
                OUTPUT,
                MemoryConfig::new(Layout::new(4096, 8), 4, AllocationStrategy::PowerOfTwo),
            )
            .map_err(|e| format!("create the output memory {OUTPUT:?}: {e}"))?,
        ),
    };
    let mut chunk = memory
        .allocate(Layout::new(len, 8))
        .map_err(|e| format!("allocate {len} output bytes: {e}"))?;
    let mut at = 0;
    while at < len {
        let n = PIECE.min(len - at);
        let mut bytes = source
            .read_at(at, n)
            .map_err(|e| format!("read {n} input bytes at {at}: {e}"))?;
        if bytes.len() as u64 != n {
            return Err(format!("asked for {n} input bytes, got {}", bytes.len()));
        }
        for b in &mut bytes {
            *b ^= KEY;
        }
        chunk
            .write_at(at, &bytes)
            .map_err(|e| format!("write {n} output bytes at {at}: {e}"))?;
        at += n;
    }
    Ok(chunk.into_offset())
}
