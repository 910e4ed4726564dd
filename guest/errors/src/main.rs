//! Error guest: `errors` provokes every error case a single guest can reach and prints one
//! line per case on stdout, `case <name>: <observed>`, where `<observed>` is the WIT name of
//! the error (`invalid-name`, ...) or `ok` if the call unexpectedly succeeded. The expected
//! case is in [`CASES`]; a difference is also noted on stderr with the host's message. Exits 0
//! once every case ran, whatever was observed: the host test decides.
//!
//! Not reachable from one guest: `timeout` (needs an owner that stays initialising) and `io`.

use std::collections::HashMap;
use std::time::Duration;

use resmem_guest::{
    AccessMode, AllocationStrategy, Chunk, ContentPlacement, Error, Layout, Memory, MemoryConfig,
    Offset, View, exists, remove,
};

/// Every case, in output order, with the error it should produce.
const CASES: &[(&str, &str)] = &[
    ("name-empty", "invalid-name"),
    ("name-slash", "invalid-name"),
    ("name-dotdot", "invalid-name"),
    ("name-nul", "invalid-name"),
    ("name-10k", "invalid-name"),
    ("view-name-empty", "invalid-name"),
    ("exists-name-slash", "invalid-name"),
    ("remove-name-nul", "invalid-name"),
    ("layout-align-3", "invalid-layout"),
    ("layout-align-0", "invalid-layout"),
    ("layout-size-overflow", "invalid-layout"),
    ("hint-align-3", "invalid-layout"),
    ("grow-shrink", "invalid-layout"),
    ("offset-forged-deallocate", "invalid-offset"),
    ("offset-forged-read", "invalid-offset"),
    ("offset-forged-grow", "invalid-offset"),
    ("offset-freed-deallocate", "invalid-offset"),
    ("offset-freed-write", "invalid-offset"),
    ("read-past-chunk", "invalid-offset"),
    ("write-past-chunk", "invalid-offset"),
    ("view-register-forged", "invalid-offset"),
    ("view-read-unregistered", "invalid-offset"),
    ("already-exists", "already-exists"),
    ("view-does-not-exist", "does-not-exist"),
    ("view-write-read-only", "permission-denied"),
    ("quota-huge-allocation", "quota-exceeded"),
    ("quota-too-many-memories", "quota-exceeded"),
    ("quota-read-4gib", "quota-exceeded"),
    ("static-full", "out-of-memory"),
    ("max-reallocations", "max-reallocations-reached"),
    ("batch-deallocate-twice", "invalid-offset"),
    ("batch-deallocate-forged", "invalid-offset"),
    ("batch-quota", "quota-exceeded"),
    ("batch-static-full", "out-of-memory"),
];

/// Upper bound of the memories `quota-too-many-memories` creates before giving up.
const MAX_MEMORIES: usize = 1024;
/// Upper bound of the chunks `static-full` allocates.
const MAX_STATIC_CHUNKS: usize = 100_000;
/// Upper bound of the chunks `max-reallocations` allocates (256 live segments are the limit).
const MAX_SEGMENT_ATTEMPTS: u64 = 300;

struct Report {
    expected: HashMap<&'static str, &'static str>,
    ran: Vec<&'static str>,
}

impl Report {
    fn case<T>(&mut self, name: &'static str, result: Result<T, Error>) {
        let expected = self.expected.get(name).copied().unwrap_or("?");
        let observed = match &result {
            Ok(_) => "ok",
            Err(e) => e.name(),
        };
        println!("case {name}: {observed}");
        if observed != expected {
            let detail = result.err().map(|e| e.to_string()).unwrap_or_default();
            eprintln!("case {name}: expected {expected}, got {observed} {detail}");
        }
        self.ran.push(name);
    }
}

fn small_config() -> MemoryConfig {
    MemoryConfig::new(Layout::new(64, 8), 4, AllocationStrategy::PowerOfTwo)
}

fn main() {
    let mut r = Report {
        expected: CASES.iter().copied().collect(),
        ran: Vec::new(),
    };

    // invalid-name
    r.case("name-empty", Memory::create("", small_config()));
    r.case("name-slash", Memory::create("a/b", small_config()));
    r.case("name-dotdot", Memory::create("..", small_config()));
    r.case("name-nul", Memory::create("a\0b", small_config()));
    r.case(
        "name-10k",
        Memory::create(&"n".repeat(10 * 1024), small_config()),
    );
    r.case(
        "view-name-empty",
        View::open("", AccessMode::Read, Duration::ZERO),
    );
    r.case("exists-name-slash", exists("a/b"));
    r.case("remove-name-nul", remove("a\0b"));

    let memory = Memory::create("errors-main", small_config()).expect("create errors-main");

    // invalid-layout
    r.case("layout-align-3", memory.allocate(Layout::new(8, 3)));
    r.case("layout-align-0", memory.allocate(Layout::new(8, 0)));
    r.case(
        "layout-size-overflow",
        memory.allocate(Layout::new(u64::MAX, 8)),
    );
    r.case(
        "hint-align-3",
        Memory::create(
            "errors-hint",
            MemoryConfig::new(Layout::new(64, 3), 4, AllocationStrategy::PowerOfTwo),
        ),
    );
    let mut chunk = memory
        .allocate(Layout::new(64, 8))
        .expect("allocate 64 bytes");
    r.case(
        "grow-shrink",
        chunk.grow(Layout::new(8, 8), ContentPlacement::Front),
    );

    // invalid-offset
    let forged = Offset::new(200, 12_345);
    r.case("offset-forged-deallocate", memory.deallocate(forged));
    r.case(
        "offset-forged-read",
        memory
            .as_raw()
            .read(forged.into(), 0, 1)
            .map_err(Error::from),
    );
    r.case(
        "offset-forged-grow",
        memory
            .as_raw()
            .grow(forged.into(), Layout::new(128, 8), ContentPlacement::Front)
            .map_err(Error::from),
    );
    let freed = memory
        .allocate(Layout::new(64, 8))
        .expect("allocate")
        .into_offset();
    memory.deallocate(freed).expect("free a chunk once");
    r.case("offset-freed-deallocate", memory.deallocate(freed));
    r.case(
        "offset-freed-write",
        memory
            .as_raw()
            .write(freed.into(), 0, &[1])
            .map_err(Error::from),
    );
    r.case("read-past-chunk", chunk.read_at(60, 8));
    r.case("write-past-chunk", chunk.write_at(64, &[1]));
    let view = View::open("errors-main", AccessMode::Read, Duration::ZERO).expect("open a view");
    r.case("view-register-forged", view.register(forged));
    r.case(
        "view-read-unregistered",
        view.as_raw()
            .read(chunk.offset().into(), 0, 1)
            .map_err(Error::from),
    );

    // already-exists, does-not-exist
    r.case(
        "already-exists",
        Memory::create("errors-main", small_config()),
    );
    let _ = remove("errors-missing");
    r.case(
        "view-does-not-exist",
        View::open("errors-missing", AccessMode::Read, Duration::ZERO),
    );

    // permission-denied
    let result = view
        .register(chunk.offset())
        .and_then(|mut registered| registered.write_at(0, &[1]));
    r.case("view-write-read-only", result);

    // quota-exceeded
    r.case(
        "quota-huge-allocation",
        memory.allocate(Layout::new(1 << 40, 8)),
    );
    r.case("quota-too-many-memories", too_many_memories());
    r.case("quota-read-4gib", chunk.read_at(0, 1 << 32));

    // out-of-memory
    let fixed = Memory::create(
        "errors-static",
        MemoryConfig::new(Layout::new(64, 8), 2, AllocationStrategy::Static),
    )
    .expect("create errors-static");
    r.case("static-full", fill(&fixed));

    // max-reallocations-reached
    r.case("max-reallocations", max_reallocations());

    // batches: refused as a whole, and then nothing changed
    r.case(
        "batch-deallocate-twice",
        batch_refused(&memory, |offsets| vec![offsets[0], offsets[1], offsets[0]]),
    );
    r.case(
        "batch-deallocate-forged",
        batch_refused(&memory, |offsets| vec![offsets[0], forged, offsets[1]]),
    );
    r.case(
        "batch-quota",
        memory.allocate_many(Layout::new(64, 8), u32::MAX),
    );
    r.case("batch-static-full", batch_static_full());

    for (name, _) in CASES {
        assert!(r.ran.contains(name), "case {name} did not run");
    }
}

/// Allocates from a static memory until it is full (the page-rounded segment 0 may hold more
/// chunks than the hint asked for).
fn fill(memory: &Memory) -> Result<(), Error> {
    let mut chunks = Vec::new();
    for _ in 0..MAX_STATIC_CHUNKS {
        chunks.push(memory.allocate(Layout::new(64, 8))?);
    }
    Ok(())
}

/// Allocates 3 chunks in one batch, writes each, and asks to return the list `pick` makes of
/// their offsets in one batch: the host's refusal, if it refused and then every chunk is still
/// allocated with its bytes; otherwise an `io` error saying what went wrong.
fn batch_refused(memory: &Memory, pick: impl Fn(&[Offset]) -> Vec<Offset>) -> Result<(), Error> {
    let offsets = memory.allocate_many(Layout::new(64, 8), 3)?.into_offsets();
    let broken = |what: String| Err(Error::Io(format!("after a refused batch: {what}")));
    for (i, &offset) in offsets.iter().enumerate() {
        memory.as_raw().write(offset.into(), 0, &[i as u8 + 1])?;
    }
    let refusal = match memory.deallocate_many(&pick(&offsets)) {
        Ok(()) => return broken("the batch was accepted".to_owned()),
        Err(e) => e,
    };
    for (i, &offset) in offsets.iter().enumerate() {
        match memory.as_raw().read(offset.into(), 0, 1) {
            Ok(byte) if byte == [i as u8 + 1] => {}
            other => return broken(format!("chunk {i} reads {other:?}")),
        }
    }
    if let Err(e) = memory.deallocate_many(&offsets) {
        return broken(format!("returning the chunks failed: {e}"));
    }
    Err(refusal)
}

/// Asks a static memory for more chunks than it holds in one batch: the host's refusal, if it
/// refused and left the memory empty (a full batch of what fits succeeds afterwards).
fn batch_static_full() -> Result<(), Error> {
    let memory = Memory::create(
        "errors-static-batch",
        MemoryConfig::new(Layout::new(64, 8), 2, AllocationStrategy::Static),
    )?;
    let refusal = match memory.allocate_many(Layout::new(64, 8), 10_000) {
        Ok(_) => {
            return Err(Error::Io(
                "10000 chunks from a static memory of 2".to_owned(),
            ));
        }
        Err(e) => e,
    };
    let mut fits = 0;
    while memory
        .allocate(Layout::new(64, 8))
        .map(Chunk::into_offset)
        .is_ok()
    {
        fits += 1;
    }
    // Everything the loop took is given back with the memory; a fresh one must serve a batch
    // of exactly that many.
    drop(memory);
    let memory = Memory::create(
        "errors-static-batch",
        MemoryConfig::new(Layout::new(64, 8), 2, AllocationStrategy::Static),
    )?;
    match memory.allocate_many(Layout::new(64, 8), fits) {
        Ok(chunks) if chunks.len() == fits as usize && fits >= 2 => Err(refusal),
        Ok(chunks) => Err(Error::Io(format!("{} of {fits} chunks", chunks.len()))),
        Err(e) => Err(Error::Io(format!("a batch of the {fits} that fit: {e}"))),
    }
}

/// Creates memories until the host refuses one; all of them are removed on return.
fn too_many_memories() -> Result<(), Error> {
    let mut memories = Vec::new();
    for i in 0..MAX_MEMORIES {
        memories.push(Memory::create(&format!("errors-many-{i}"), small_config())?);
    }
    Ok(())
}

/// Keeps every chunk alive while each one is a little larger than the last, so best-fit
/// growth needs a new segment for every chunk, until the 257th live segment is refused.
fn max_reallocations() -> Result<(), Error> {
    let memory = Memory::create(
        "errors-segments",
        MemoryConfig::new(Layout::new(8, 8), 1, AllocationStrategy::BestFit),
    )?;
    let mut chunks = Vec::new();
    for i in 1..=MAX_SEGMENT_ATTEMPTS {
        chunks.push(memory.allocate(Layout::new(8 * i, 8))?);
    }
    Ok(())
}
