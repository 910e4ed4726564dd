//! Zero-copy window guest: `window <command> [args]`, one scenario per command.
//!
//! - `produce NAME SIZE SEED`: creates memory NAME, allocates one SIZE-byte chunk, maps it and
//!   fills it in place with `resmem_guest::pattern` SEED; prints
//!   `chunk offset=<u64> len=<n> addr=<guest address>`, then `ready`, and keeps everything
//!   alive until a line (or EOF) arrives on stdin.
//! - `verify NAME OFFSET LEN SEED`: opens NAME read-only, registers OFFSET, maps LEN bytes and
//!   checks them in place; prints `verified len=<n> addr=<a>` or `mismatch at=<i>` (exit 1).
//! - `fill NAME OFFSET LEN SEED`: opens NAME read-write and writes the pattern in place;
//!   prints `written len=<n>`.
//! - `write-readonly NAME OFFSET`: maps OFFSET through a read-only view, prints `writing`
//!   and stores one byte: the guest traps.
//! - `released`: maps a chunk, makes its segment go away (a bigger chunk grows a new segment,
//!   then the first chunk is freed), prints `released addr=<a>` and reads there: a trap.
//! - `reuse`: maps a chunk of one memory, drops the memory, maps a chunk of a second memory;
//!   prints `reuse first=<a> second=<b>`.
//! - `probe ADDR`: prints `probing`, then reads the byte at guest address ADDR and prints
//!   `value=<v>` (or traps).
//! - `hold-map NAME OFFSET LEN`: opens NAME read-only, maps OFFSET, prints `mapped addr=<a>`,
//!   waits for a stdin line, then copies all LEN bytes out in place and prints
//!   `read len=<n> sum=<wrapping byte sum>` (a peer may have truncated the segment meanwhile:
//!   then the guest traps).
//! - `hold-copy NAME OFFSET LEN`: the same through the host's copy (`read`): prints
//!   `registered`, waits, then prints `read len=<n>` or `error=<name>`, then tries `map` and
//!   prints `map error=<name>` or `map ok`.
//! - `fill-window SIZE`: maps SIZE-byte chunks of fresh memories until the window is full;
//!   prints `full after=<n> error=<name>`.

use std::io::BufRead;
use std::process::ExitCode;

use resmem_guest::{
    AccessMode, AllocationStrategy, Error, Layout, Memory, MemoryConfig, Offset, View, pattern,
};

/// Bytes per in-place pattern step: the pattern is produced on the heap, then copied in.
const PIECE: usize = 64 << 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["produce", name, size, seed] => produce(name, num(size), num(seed)),
        ["verify", name, offset, len, seed] => verify(name, num(offset), num(len), num(seed)),
        ["fill", name, offset, len, seed] => fill(name, num(offset), num(len), num(seed)),
        ["write-readonly", name, offset] => write_readonly(name, num(offset)),
        ["released"] => released(),
        ["reuse"] => reuse(),
        ["probe", addr] => probe(num(addr)),
        ["hold-map", name, offset, len] => hold_map(name, num(offset), num(len)),
        ["hold-copy", name, offset, len] => hold_copy(name, num(offset), num(len)),
        ["fill-window", size] => fill_window(num(size)),
        _ => {
            eprintln!("usage: see the module docs of guest/window");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            println!("error={}", e.name());
            eprintln!("window: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num(text: &str) -> u64 {
    text.parse()
        .unwrap_or_else(|_| panic!("not a number: {text}"))
}

fn wait_for_line() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn config(size: u64) -> MemoryConfig {
    MemoryConfig::new(Layout::new(size, 64), 1, AllocationStrategy::PowerOfTwo)
}

fn produce(name: &str, size: u64, seed: u64) -> Result<ExitCode, Error> {
    let memory = Memory::create(name, config(size))?;
    let mut chunk = memory.allocate(Layout::new(size, 64))?;
    let offset = chunk.offset();
    let mut window = chunk.map()?;
    let mut buf = vec![0; PIECE];
    let mut at = 0;
    while at < window.len() {
        let n = PIECE.min(window.len() - at);
        pattern::fill(seed, at as u64, &mut buf[..n]);
        window.copy_from(at, &buf[..n]);
        at += n;
    }
    println!(
        "chunk offset={} len={size} addr={}",
        offset.to_u64(),
        window.addr()
    );
    println!("ready");
    wait_for_line();
    Ok(ExitCode::SUCCESS)
}

fn verify(name: &str, offset: u64, len: u64, seed: u64) -> Result<ExitCode, Error> {
    let view = View::open(name, AccessMode::Read, std::time::Duration::from_secs(5))?;
    let registered = view.register(Offset::from_u64(offset))?;
    let window = registered.map(len)?;
    let mut buf = vec![0; PIECE];
    let mut at = 0;
    while at < window.len() {
        let n = PIECE.min(window.len() - at);
        window.copy_to(at, &mut buf[..n]);
        if let Some(index) = pattern::first_mismatch(seed, at as u64, &buf[..n]) {
            println!("mismatch at={index}");
            return Ok(ExitCode::FAILURE);
        }
        at += n;
    }
    println!("verified len={len} addr={}", window.addr());
    Ok(ExitCode::SUCCESS)
}

fn fill(name: &str, offset: u64, len: u64, seed: u64) -> Result<ExitCode, Error> {
    let view = View::open(
        name,
        AccessMode::ReadWrite,
        std::time::Duration::from_secs(5),
    )?;
    let mut registered = view.register(Offset::from_u64(offset))?;
    let mut window = registered.map_mut(len)?;
    let mut buf = vec![0; PIECE];
    let mut at = 0;
    while at < window.len() {
        let n = PIECE.min(window.len() - at);
        pattern::fill(seed, at as u64, &mut buf[..n]);
        window.copy_from(at, &buf[..n]);
        at += n;
    }
    println!("written len={len}");
    Ok(ExitCode::SUCCESS)
}

fn write_readonly(name: &str, offset: u64) -> Result<ExitCode, Error> {
    let view = View::open(name, AccessMode::Read, std::time::Duration::from_secs(5))?;
    let registered = view.register(Offset::from_u64(offset))?;
    let window = registered.map(1)?;
    // The safe API refuses a writable map of a read-only view; go around it on purpose.
    println!("writing");
    flush();
    // SAFETY: deliberately wrong: the page is mapped read-only, so the store traps the guest
    // (a wasm trap, not undefined behaviour: wasm memory accesses are defined to trap).
    unsafe { std::ptr::write_volatile(window.as_ptr() as *mut u8, 1) };
    println!("wrote");
    Ok(ExitCode::SUCCESS)
}

fn released() -> Result<ExitCode, Error> {
    let memory = Memory::create("released", config(64 << 10))?;
    let mut first = memory.allocate(Layout::new(64 << 10, 64))?;
    let addr = first.map()?.addr();
    let first_segment = first.offset().segment();
    // A chunk that cannot fit segment 0 grows a new segment; freeing the only chunk of the
    // old one releases it.
    let second = memory.allocate(Layout::new(1 << 20, 64))?;
    assert_ne!(second.offset().segment(), first_segment);
    drop(first);
    println!(
        "released addr={addr} segments={}",
        memory.number_of_active_segments()
    );
    flush();
    // SAFETY: deliberately wrong: the segment left the window, so the load traps the guest.
    let value = unsafe { std::ptr::read_volatile(addr as usize as *const u8) };
    println!("value={value}");
    Ok(ExitCode::SUCCESS)
}

fn reuse() -> Result<ExitCode, Error> {
    let first = {
        let memory = Memory::create("reuse-a", config(64 << 10))?;
        let mut chunk = memory.allocate(Layout::new(64 << 10, 64))?;
        let addr = chunk.map()?.addr();
        drop(chunk);
        addr
    };
    let memory = Memory::create("reuse-b", config(64 << 10))?;
    let mut chunk = memory.allocate(Layout::new(64 << 10, 64))?;
    let mut window = chunk.map()?;
    window.fill(0x77);
    let second = window.addr();
    assert_eq!(window.get(window.len() - 1), 0x77);
    println!("reuse first={first} second={second}");
    Ok(ExitCode::SUCCESS)
}

fn probe(addr: u64) -> Result<ExitCode, Error> {
    println!("probing");
    flush();
    // SAFETY: deliberately arbitrary: any guest address is either mapped or traps.
    let value = unsafe { std::ptr::read_volatile(addr as usize as *const u8) };
    println!("value={value}");
    Ok(ExitCode::SUCCESS)
}

fn hold_map(name: &str, offset: u64, len: u64) -> Result<ExitCode, Error> {
    let view = View::open(name, AccessMode::Read, std::time::Duration::from_secs(5))?;
    let registered = view.register(Offset::from_u64(offset))?;
    let window = registered.map(len)?;
    println!("mapped addr={}", window.addr());
    flush();
    wait_for_line();
    let bytes = window.to_vec(0, window.len());
    let sum = bytes
        .iter()
        .fold(0u64, |s, &b| s.wrapping_add(u64::from(b)));
    println!("read len={} sum={sum}", bytes.len());
    Ok(ExitCode::SUCCESS)
}

fn hold_copy(name: &str, offset: u64, len: u64) -> Result<ExitCode, Error> {
    let view = View::open(name, AccessMode::Read, std::time::Duration::from_secs(5))?;
    let registered = view.register(Offset::from_u64(offset))?;
    println!("registered");
    flush();
    wait_for_line();
    match registered.read_at(0, len) {
        Ok(bytes) => println!("read len={}", bytes.len()),
        Err(e) => println!("error={}", e.name()),
    }
    match registered.map(len) {
        Ok(_) => println!("map ok"),
        Err(e) => println!("map error={}", e.name()),
    }
    Ok(ExitCode::SUCCESS)
}

fn fill_window(size: u64) -> Result<ExitCode, Error> {
    let mut memories = Vec::new();
    for n in 0.. {
        let memory = Memory::create(&format!("fill-{n}"), config(size))?;
        // Handed off: the memory frees it when dropped at the end.
        let offset = memory.allocate(Layout::new(size, 64))?.into_offset();
        if let Err(e) = memory.as_raw().map(offset.into()) {
            println!("full after={n} error={}", Error::from(e).name());
            return Ok(ExitCode::SUCCESS);
        }
        memories.push(memory);
    }
    unreachable!()
}

fn flush() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
