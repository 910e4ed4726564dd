//! Crash guest: `trap [name]` creates the memory `name` (default `trap`), allocates chunks in
//! two segments, keeps a view with a registered offset, prints `allocated <name>`, then
//! executes `unreachable`. The host must release the memory, its segments and the view
//! although the guest never dropped them.

use std::io::Write;
use std::time::Duration;

use resmem_guest::{AccessMode, AllocationStrategy, Layout, Memory, MemoryConfig, View};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "trap".to_owned());
    let config = MemoryConfig::new(Layout::new(64, 8), 1, AllocationStrategy::PowerOfTwo);
    let memory = Memory::create(&name, config).expect("create the memory");
    let mut small = memory
        .allocate(Layout::new(64, 8))
        .expect("allocate in segment 0");
    small.write_at(0, &[0xAB; 64]).expect("write");
    let large = memory
        .allocate(Layout::new(1 << 16, 8))
        .expect("allocate in a new segment");
    let view = View::open(&name, AccessMode::Read, Duration::ZERO).expect("open a view");
    let _registered = view.register(large.offset()).expect("register");

    let mut out = std::io::stdout().lock();
    writeln!(out, "allocated {name}").expect("write stdout");
    out.flush().expect("flush stdout");

    // Everything above is still alive here: nothing is dropped before the trap.
    trap()
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}
