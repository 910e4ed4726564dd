//! End-to-end tests of resmem across real, separate processes.
//!
//! The other process is `resmem-test-peer` (tests/src/bin/peer.rs): a one-shot verifier or
//! writer, a long-lived `serve` peer that keeps one view across the owner's resizes, or an
//! owner. Every byte is checked against the seeded pattern of `resmem_e2e`, so a peer reading
//! a stale mapping, the wrong segment or the wrong offset fails, not only one reading zeroes.
//! Each test works in its own namespace (a [`Scope`] prefix) and fails if it leaves objects in
//! `/dev/shm`; every child is reaped, and killed if a step takes longer than [`STEP`].

#[path = "../support/mod.rs"]
mod support;

mod access;
mod churn;
mod file_backed;
mod growth;
mod owner_process;
mod removal;
mod verify;

use resmem_e2e::{ChunkSpec, VerifySummary};
use support::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn summary(bytes: u64, offsets: usize, active: usize, after: usize) -> VerifySummary {
    VerifySummary {
        bytes,
        offsets,
        active_segments: active,
        after_unregister: after,
    }
}

fn total(specs: &[ChunkSpec]) -> u64 {
    specs.iter().map(|s| s.len as u64).sum()
}

/// Starts `resmem-test-peer owner` and reads its chunks up to `ready`.
fn start_owner(scope: &Scope, name: &str, extra: &[&str]) -> (Peer, Vec<ChunkSpec>) {
    let mut args = scope.peer_args("owner", name);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut owner = Peer::spawn_peer(&args, "owner peer");
    let lines = owner.until_ready();
    let specs: Vec<ChunkSpec> = lines
        .iter()
        .filter_map(|l| ChunkSpec::parse_owner_line(l))
        .collect();
    assert!(!specs.is_empty(), "owner printed no chunks: {lines:?}");
    let info = lines.iter().find(|l| l.starts_with("info ")).unwrap();
    assert!(
        info.contains(&format!("owner_pid={} ", owner.pid())),
        "{info}"
    );
    (owner, specs)
}
