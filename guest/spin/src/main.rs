//! Runaway guest: `spin <mode> [name]` takes resources, prints one line saying what it holds,
//! then never returns. The host must stop it at its deadline and release everything it held.
//!
//! - `loop`: a memory `name` with chunks in two segments and a view with a registered offset,
//!   then a pure wasm loop (`holding <name>`);
//! - `calls`: the same, then a loop of host calls (allocate, write, read, deallocate), so
//!   the guest is mostly inside the host when the deadline passes (`calling <name>`);
//! - `shm`: allocates 1 MiB chunks until the host refuses one, prints `refused <error>
//!   after <n> chunks`, then spins holding all of them;
//! - `wasm-memory`: grows its own linear memory by 1 MiB steps, printing `grown <MiB>` each
//!   time, until the allocation fails (which aborts: a trap).

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use resmem_guest::{AccessMode, AllocationStrategy, Layout, Memory, MemoryConfig, View};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "loop".to_owned());
    let name = args.next().unwrap_or_else(|| "spin".to_owned());
    match mode.as_str() {
        "loop" => {
            let _held = hold(&name);
            say(&format!("holding {name}"));
            spin()
        }
        "calls" => {
            let held = hold(&name);
            say(&format!("calling {name}"));
            let mut round = 0u64;
            loop {
                let mut chunk = held.0.allocate(Layout::new(64, 8)).expect("allocate");
                chunk.write_at(0, &round.to_le_bytes()).expect("write");
                let back = chunk.read_at(0, 8).expect("read");
                assert_eq!(back, round.to_le_bytes());
                round = round.wrapping_add(1);
            }
        }
        "shm" => {
            let memory = Memory::create(
                &name,
                MemoryConfig::new(Layout::new(1 << 20, 8), 1, AllocationStrategy::BestFit),
            )
            .expect("create the memory");
            let mut chunks = Vec::new();
            let error = loop {
                match memory.allocate(Layout::new(1 << 20, 8)) {
                    Ok(chunk) => chunks.push(chunk),
                    Err(e) => break e,
                }
            };
            say(&format!(
                "refused {} after {} chunks",
                error.name(),
                chunks.len()
            ));
            spin()
        }
        "wasm-memory" => {
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch the block so it is really allocated.
                blocks.push(vec![1; 1 << 20]);
                say(&format!("grown {}", blocks.len()));
            }
        }
        other => {
            eprintln!("spin: unknown mode {other:?} (loop, calls, shm, wasm-memory)");
            std::process::exit(2)
        }
    }
}

/// A memory with chunks in two segments and a view of it with both offsets registered.
fn hold(name: &str) -> (Memory, View) {
    let config = MemoryConfig::new(Layout::new(64, 8), 1, AllocationStrategy::PowerOfTwo);
    let memory = Memory::create(name, config).expect("create the memory");
    let first = memory
        .allocate(Layout::new(64, 8))
        .expect("allocate")
        .into_offset();
    let second = memory
        .allocate(Layout::new(1 << 16, 8))
        .expect("allocate in a new segment")
        .into_offset();
    let view = View::open(name, AccessMode::Read, Duration::ZERO).expect("open a view");
    // Raw registrations: nothing in the guest unregisters them, the host must.
    view.as_raw().register(first.into()).expect("register");
    view.as_raw().register(second.into()).expect("register");
    (memory, view)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write stdout");
    out.flush().expect("flush stdout");
}

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
