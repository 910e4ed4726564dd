//! Plugin guest (world `plugin`) for deadline tests: `filter.process` answers an empty input
//! at once (`none`); for any other input it creates the memory `stall-<len>` with a chunk in
//! it, then loops forever. The host must stop the call at its deadline; dropping the plugin
//! then removes the memory.

use std::hint::black_box;

use resmem_guest::{AllocationStrategy, Layout, Memory, MemoryConfig};

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

struct Stall;

impl Guest for Stall {
    fn process(input: Buffer) -> Result<Option<Buffer>, String> {
        if input.len == 0 {
            return Ok(None);
        }
        let config = MemoryConfig::new(Layout::new(64, 8), 1, AllocationStrategy::PowerOfTwo);
        let memory =
            Memory::create(&format!("stall-{}", input.len), config).map_err(|e| e.to_string())?;
        let chunk = memory
            .allocate(Layout::new(64, 8))
            .map_err(|e| e.to_string())?;
        // Neither is ever returned or dropped: only the host can release them.
        let _ = chunk.into_offset();
        std::mem::forget(memory);
        let mut x = 0u64;
        loop {
            x = black_box(x.wrapping_add(1));
        }
    }
}

export!(Stall);
