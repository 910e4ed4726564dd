//! Crashed owners end to end: owner processes are SIGKILLed while their threads allocate,
//! grow and free, then views, `resmem ls`, `resmem gc` (the real binary) and a reclaiming
//! `create` are checked against their leftovers, next to a live memory that nothing may touch.
//! Also: `ls`, `inspect` and `gc` on headers a peer scribbled over.
//!
//! The owner processes are this test binary again, running the ignored test
//! [`crash_owner_child`] (selected by name, configured through the environment).

use std::alloc::Layout;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resmem::{
    AccessMode, AllocationStrategy, Config, ContentPlacement, CreateError, Memory, OpenError, View,
};

const RESMEM: &str = env!("CARGO_BIN_EXE_resmem");
const SHM_DIR: &str = "/dev/shm";
const CHILD_PREFIX: &str = "RESMEM_CRASH_CHILD_PREFIX";
const CHILD_NAME: &str = "RESMEM_CRASH_CHILD_NAME";

fn objects(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)
        .expect("/dev/shm is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Removes whatever a failed test left under `prefix`.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for object in objects(&self.0) {
            let _ = std::fs::remove_file(Path::new(SHM_DIR).join(object));
        }
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// The owner process: four threads allocate, grow and free chunks of changing sizes (so the
/// memory keeps creating and releasing segments) until the process is killed. Prints `ready`
/// once the memory has grown.
#[test]
#[ignore = "runs only as the child process of owners_killed_mid_allocation_are_stale_gc_and_reclaim"]
fn crash_owner_child() {
    let (Ok(prefix), Ok(name)) = (std::env::var(CHILD_PREFIX), std::env::var(CHILD_NAME)) else {
        return;
    };
    let memory = Memory::builder(&name)
        .config(&Config::default().prefix(&prefix))
        .max_chunk_layout_hint(layout(64))
        .max_number_of_chunks_hint(8)
        .allocation_strategy(AllocationStrategy::PowerOfTwo)
        .create()
        .expect("create");
    let grown = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4_usize {
            let (memory, grown, ops) = (&memory, &grown, &ops);
            s.spawn(move || {
                let mut held = Vec::new();
                let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ t as u64;
                loop {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = 8 << (x % 12);
                    match x % 4 {
                        0 | 1 if held.len() < 64 => {
                            if let Ok(chunk) = memory.allocate(layout(size)) {
                                held.push((chunk.offset, size));
                            }
                        }
                        2 if !held.is_empty() => {
                            let (offset, old) = held.swap_remove(x as usize % held.len());
                            // SAFETY: a chunk of ours, allocated with `layout(old)`.
                            match unsafe {
                                memory.grow(
                                    offset,
                                    layout(old),
                                    layout(old * 2),
                                    ContentPlacement::Front,
                                )
                            } {
                                Ok(chunk) => held.push((chunk.offset, old * 2)),
                                Err(_) => held.push((offset, old)),
                            }
                        }
                        _ => {
                            if let Some((offset, size)) = held.pop() {
                                // SAFETY: ours, not used afterwards.
                                unsafe { memory.deallocate(offset, layout(size)) };
                            }
                        }
                    }
                    if memory.number_of_active_segments() > 2 {
                        grown.store(true, Ordering::Release);
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while !grown.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        println!("ready");
        loop {
            std::thread::sleep(Duration::from_millis(50));
            println!("ops {}", ops.load(Ordering::Relaxed));
        }
    });
}

/// Starts an owner process for `name` and waits until it has grown its memory and is
/// allocating; returns the child and a reader of its further output.
fn spawn_owner(prefix: &str, name: &str) -> (Child, impl Iterator<Item = String>) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["crash_owner_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_PREFIX, prefix)
        .env(CHILD_NAME, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the owner process");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(
        lines.by_ref().any(|l| l == "ready"),
        "the owner process never became ready"
    );
    (child, lines)
}

/// Lets the owner run for a while, then SIGKILLs it in the middle of its allocations.
fn kill_mid_allocation(mut child: Child, mut lines: impl Iterator<Item = String>) -> u32 {
    // Two progress lines: its threads are allocating right now.
    let progress: Vec<u64> = lines
        .by_ref()
        .filter_map(|l| l.strip_prefix("ops ")?.parse().ok())
        .take(2)
        .collect();
    assert!(
        progress.len() == 2 && progress[1] > progress[0],
        "the owner is not allocating: {progress:?}"
    );
    let pid = child.id();
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaping the owner");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    pid
}

struct Output {
    code: Option<i32>,
    stdout: String,
}

fn resmem(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = Command::new(RESMEM)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning resmem");
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("resmem {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code(),
        stdout: reader.join().expect("stdout reader"),
    }
}

/// The `ls` row of memory `name`, split into columns.
fn ls_row(prefix: &str, name: &str) -> Vec<String> {
    let out = resmem(&["ls", "-n", prefix]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    out.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}: {}", out.stdout))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn open(config: &Config, name: &str) -> Result<View, OpenError> {
    View::builder(name).config(config).open(AccessMode::Read)
}

#[test]
fn owners_killed_mid_allocation_are_stale_gc_and_reclaim() {
    let prefix = format!("rmcrash{}_", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let config = Config::default().prefix(&prefix);

    // A live memory of this process, which nothing below may touch.
    let live = Memory::builder("live")
        .config(&config)
        .max_chunk_layout_hint(layout(64))
        .create()
        .expect("create the live memory");
    let kept = live.allocate(layout(64)).expect("allocate");
    // SAFETY: ours, 64 bytes.
    unsafe { kept.data_ptr.write_bytes(0x5A, 64) };

    let (a, a_lines) = spawn_owner(&prefix, "a");
    let (b, b_lines) = spawn_owner(&prefix, "b");
    let pid_a = kill_mid_allocation(a, a_lines);
    let pid_b = kill_mid_allocation(b, b_lines);
    let live_objects: Vec<String> = objects(&format!("{prefix}live__"));

    // Views: a distinct error, and a forensic open that reads the dead owner's header.
    for (name, pid) in [("a", pid_a), ("b", pid_b)] {
        assert_eq!(
            open(&config, name).err(),
            Some(OpenError::OwnerDead),
            "{name}"
        );
        let view = View::builder(name)
            .config(&config)
            .allow_stale(true)
            .open(AccessMode::Read)
            .unwrap_or_else(|e| panic!("forensic open of {name}: {e:?}"));
        assert_eq!(view.header_info().owner_pid, pid);
        assert!(!view.is_owner_alive());
        assert!(!view.segment_records().is_empty());
        assert_eq!(resmem::is_owner_alive(name, &config), Ok(false));
    }

    // `ls` tells stale from live.
    assert_eq!(
        ls_row(&prefix, "a")[..3],
        ["a", &pid_a.to_string(), "stale"]
    );
    assert_eq!(
        ls_row(&prefix, "b")[..3],
        ["b", &pid_b.to_string(), "stale"]
    );
    assert_eq!(ls_row(&prefix, "live")[2], "alive");

    // `gc --dry-run` names both and removes nothing.
    let before = objects(&prefix);
    let out = resmem(&["gc", "-n", &prefix, "--dry-run"]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("would remove 'a' (owner pid {pid_a}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("would remove 'b' (owner pid {pid_b}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("would remove 2 stale memories"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("'live'"), "{}", out.stdout);
    assert_eq!(objects(&prefix), before);

    // The name is taken unless reclaimed; a live name is never reclaimed.
    assert_eq!(
        Memory::builder("a").config(&config).create().err(),
        Some(CreateError::AlreadyExists)
    );
    assert_eq!(
        Memory::builder("live")
            .config(&config)
            .reclaim_stale(true)
            .create()
            .err(),
        Some(CreateError::AlreadyExists)
    );
    let reclaimed = Memory::builder("a")
        .config(&config)
        .reclaim_stale(true)
        .create()
        .expect("reclaiming a stale name");
    let view = open(&config, "a").expect("the reclaimed memory opens");
    assert_eq!(view.header_info().owner_pid, std::process::id());
    assert!(view.is_owner_alive());
    drop(view);
    // Segment 0 comes with the first allocation: nothing of the stale memory's is left.
    assert_eq!(
        objects(&format!("{prefix}a__")),
        [format!("{prefix}a__mgmt")],
        "only the new memory's objects"
    );
    let first = reclaimed
        .allocate(std::alloc::Layout::new::<u8>())
        .expect("the reclaimed memory allocates");
    assert_eq!(first.offset.segment_id().value(), 0);
    assert_eq!(
        objects(&format!("{prefix}a__")),
        [format!("{prefix}a__0"), format!("{prefix}a__mgmt")],
        "a fresh segment 0"
    );

    // `gc` removes the one stale memory left, and names it.
    let out = resmem(&["gc", "-n", &prefix]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("removed 'b' (owner pid {pid_b}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("removed 1 stale memory"),
        "{}",
        out.stdout
    );
    assert!(objects(&format!("{prefix}b__")).is_empty());
    assert_eq!(objects(&format!("{prefix}live__")), live_objects);
    assert_eq!(open(&config, "live").map(|v| v.is_owner_alive()), Ok(true));
    // SAFETY: ours, still allocated.
    let bytes = unsafe { std::slice::from_raw_parts(kept.data_ptr, 64) };
    assert!(bytes.iter().all(|&b| b == 0x5A));
    let out = resmem(&["gc", "-n", &prefix]);
    assert!(
        out.stdout.contains("removed 0 stale memories"),
        "{}",
        out.stdout
    );
    let out = resmem(&["ls", "-n", &prefix]);
    assert!(!out.stdout.contains(" stale "), "{}", out.stdout);

    drop((reclaimed, live));
    assert_eq!(objects(&prefix), Vec::<String>::new());
}

/// A peer wrote extreme counts into the slot records of a live memory (what `ls` sums) and
/// then garbage over the whole header: `ls`, `inspect` and `gc` report, exit normally and
/// remove nothing. Next to it, a memory still being created is `init` until its creator dies.
#[test]
fn ls_inspect_gc_survive_hostile_header_values() {
    use std::os::unix::fs::FileExt;
    let prefix = format!("rmhostile{}_", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let config = Config::default().prefix(&prefix);
    let memory = Memory::builder("victim")
        .config(&config)
        .max_chunk_layout_hint(layout(64))
        .allocation_strategy(AllocationStrategy::BestFit)
        .create()
        .expect("create");
    let a = memory.allocate(layout(64)).expect("allocate");
    let b = memory.allocate(layout(64)).expect("allocate");
    assert_eq!(memory.number_of_active_segments(), 2);
    let mgmt = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new(SHM_DIR).join(format!("{prefix}victim__mgmt")))
        .expect("the management object");
    // `chunks_in_use` of slot records 0 and 1 (header 64 bytes, records 64 bytes, field at 48).
    for slot in 0..2_u64 {
        mgmt.write_all_at(&u64::MAX.to_le_bytes(), 64 + slot * 64 + 48)
            .expect("scribble");
    }
    let objects_before = objects(&prefix);
    let row = ls_row(&prefix, "victim");
    assert_eq!(row[2], "alive");
    assert_eq!(
        row[5],
        u64::MAX.to_string(),
        "saturated, not wrapped: {row:?}"
    );
    let out = resmem(&["inspect", "victim", "-n", &prefix]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    // Garbage over everything: the owner lock still says "alive".
    mgmt.write_all_at(&[0xA5; 4096], 0).expect("scribble");
    let row = ls_row(&prefix, "victim");
    assert_eq!(row[..3], ["victim", "-", "broken"], "{row:?}");
    let out = resmem(&["inspect", "victim", "-n", &prefix]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let out = resmem(&["gc", "-n", &prefix]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout.contains("removed 0 stale memories"),
        "{}",
        out.stdout
    );
    assert_eq!(objects(&prefix), objects_before);
    for chunk in [a, b] {
        // SAFETY: ours, not used afterwards.
        unsafe { memory.deallocate(chunk.offset, layout(64)) };
    }
    drop(memory);
    assert_eq!(objects(&prefix), Vec::<String>::new());
}
