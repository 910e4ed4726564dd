//! Access modes: a peer writing through a read-write view, and read-only permissions.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use resmem::{AccessMode, Memory, OpenError, View};
use resmem_e2e::exit;

use super::*;

/// A peer writes through a read-write view into chunks of three segments; the owner sees
/// the writes exactly where they belong, and the chunk in between is untouched. A read-write
/// view maps its objects writable, a read-only one read-only.
#[test]
fn peer_writes_through_read_write_view_owner_verifies() {
    let scope = Scope::new("wri");
    let name = "write";
    let memory = Memory::builder(name)
        .config(&scope.config())
        .max_chunk_layout_hint(layout(4 * KIB))
        .create()
        .unwrap();
    let a = alloc_filled(&memory, 4 * KIB, 1);
    let b = alloc_filled(&memory, 4 * KIB, 2);
    let c = alloc_filled(&memory, 50_000, 3);
    assert_eq!(segments_of(&[a.spec, b.spec, c.spec]).len(), 3);

    let targets = [
        ChunkSpec {
            seed: 101,
            ..a.spec
        },
        ChunkSpec {
            seed: 103,
            ..c.spec
        },
    ];
    let out = run_peer(&write_args(&scope, name, &targets), STEP);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("wrote 54096 bytes in 2 offsets"),
        "{}",
        out.stdout
    );
    a.check(101).unwrap();
    b.check(2).unwrap();
    c.check(103).unwrap();

    // A long-lived read-write peer: writes again, and its mappings are writable.
    let mut rw = serve(&scope, name, "read-write");
    assert!(rw.ok("info").ends_with("access=read-write"));
    let reply = rw.ok(&format!(
        "write {}",
        ChunkSpec {
            seed: 202,
            ..b.spec
        }
    ));
    assert_eq!(reply, "wrote 4096 bytes in 1 offsets");
    b.check(202).unwrap();
    a.check(101).unwrap();
    rw.ok(&format!("hold {} {}", targets[0], targets[1]));
    let maps = rw.ok("maps");
    let perms: Vec<&str> = maps.split_whitespace().skip(1).collect();
    assert!(perms.len() >= 3, "{maps}");
    assert!(perms.iter().all(|p| p.starts_with("rw-s=")), "{maps}");

    // A read-only peer: access mode Read, read-only mappings, and it refuses to write.
    let mut ro = serve(&scope, name, "read");
    assert!(ro.ok("info").ends_with("access=read"));
    ro.ok(&format!("hold {} {}", targets[0], targets[1]));
    let maps = ro.ok("maps");
    let perms: Vec<&str> = maps.split_whitespace().skip(1).collect();
    assert!(perms.len() >= 3, "{maps}");
    assert!(perms.iter().all(|p| p.starts_with("r--s=")), "{maps}");
    let reply = ro.request(&format!("write {}", ChunkSpec { seed: 9, ..a.spec }));
    assert!(
        reply.starts_with("err ") && reply.contains("Read view"),
        "{reply}"
    );
    a.check(101).unwrap();

    for mut peer in [rw, ro] {
        peer.ok("quit");
        assert!(peer.wait(STEP).success());
    }
    drop(memory);
    scope.assert_clean();
}

/// A memory created with permissions 0400: its objects have exactly that mode, a read-only view
/// opens it and reads it, a read-write view is refused with `InsufficientPermissions`.
///
/// We run as root in CI, and root bypasses permission checks: there the in-process read-write
/// open succeeds (asserted as such), and the refusal is checked with peer processes that drop
/// to `nobody` after the test hands the objects to `nobody` (mode 0400 for their owner).
#[test]
fn read_only_permissions_allow_read_views_and_refuse_read_write() {
    let scope = Scope::new("prm");
    let name = "perm";
    let config = scope.config().permissions(0o400);
    let memory = Memory::builder(name)
        .config(&config)
        .max_chunk_layout_hint(layout(4 * KIB))
        .create()
        .unwrap();
    let chunk = alloc_filled(&memory, 4 * KIB, 40);
    let objects = scope.objects();
    assert_eq!(objects.len(), 2, "{objects:?}");
    for object in &objects {
        let mode = std::fs::metadata(scope.object_path(object))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "{object}");
    }

    let view = View::builder(name)
        .config(&config)
        .open(AccessMode::Read)
        .unwrap();
    assert_eq!(view.access_mode(), AccessMode::Read);
    view_check(&view, chunk.spec).unwrap();
    drop(view);

    let rw = View::builder(name)
        .config(&config)
        .open(AccessMode::ReadWrite);
    let root = euid() == 0;
    if root {
        // Root bypasses the mode bits (CAP_DAC_OVERRIDE), so this succeeds; the refusal is
        // checked below with peers running as `nobody`.
        assert_eq!(rw.unwrap().access_mode(), AccessMode::ReadWrite);
    } else {
        assert_eq!(rw.err(), Some(OpenError::InsufficientPermissions));
    }

    // The peer runs as `nobody` when we are root: hand it the objects (still mode 0400) and a
    // copy of the peer binary it can execute wherever the build directory lives.
    const NOBODY: u32 = 65534;
    let bin_dir = TempDir::new("bin");
    let peer_path = bin_dir.0.join("resmem-test-peer");
    if root {
        std::fs::set_permissions(&bin_dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(PEER, &peer_path).unwrap();
        std::fs::set_permissions(&peer_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for object in &objects {
            std::os::unix::fs::chown(scope.object_path(object), Some(NOBODY), Some(NOBODY))
                .unwrap();
        }
    }
    let peer_command = |args: Vec<String>| {
        let mut command = Command::new(if root {
            peer_path.as_path()
        } else {
            Path::new(PEER)
        });
        command.args(args);
        if root {
            command.uid(NOBODY).gid(NOBODY);
        }
        command
    };

    let out = run(
        peer_command(verify_args(&scope, name, &[chunk.spec])),
        "read-only peer",
        STEP,
    );
    assert_eq!(out.summary(), summary(4 * KIB as u64, 1, 1, 1));

    let out = run(
        peer_command(write_args(
            &scope,
            name,
            &[ChunkSpec {
                seed: 41,
                ..chunk.spec
            }],
        )),
        "read-write peer",
        STEP,
    );
    assert_eq!(out.code(), Some(exit::OPEN), "{out:?}");
    assert!(
        out.stderr.contains("InsufficientPermissions"),
        "{}",
        out.stderr
    );
    chunk.check(40).unwrap();

    drop(memory);
    scope.assert_clean();
}
