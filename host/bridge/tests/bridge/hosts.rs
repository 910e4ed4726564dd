//! Two hosts: bridges on loopback, and across two network namespaces.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn both_directions(
    ns: &Namespaces,
    a_prefix: &[&str],
    b_prefix: &[&str],
    listen: &str,
    connect: &str,
) {
    let up_pub = publisher(&ns.a, "up");
    let down_pub = publisher(&ns.b, "down");
    let a = BridgeProc::spawn(
        a_prefix,
        &[
            "--namespace",
            &ns.a,
            "--export",
            "up",
            "--import",
            "down",
            "--listen",
            listen,
        ],
    );
    // B also exports `up`, which its own importer publishes: it must not loop it back.
    let b = BridgeProc::spawn(
        b_prefix,
        &[
            "--namespace",
            &ns.b,
            "--import",
            "up",
            "--export",
            "up",
            "--export",
            "down",
            "--connect",
            connect,
        ],
    );
    let up_sub = subscriber(&ns.b, "up");
    let down_sub = subscriber(&ns.a, "down");
    up_pub.wait_for_subscribers(1, STEP);
    down_pub.wait_for_subscribers(1, STEP);
    until_linked(&up_pub, &up_sub);
    until_linked(&down_pub, &down_sub);
    // Both directions at once.
    std::thread::scope(|s| {
        s.spawn(|| carry(&up_pub, &up_sub, SIZES));
        carry(&down_pub, &down_sub, &SIZES[..7]);
    });
    // Nothing more arrives: no duplicate, no loop.
    assert!(matches!(
        up_sub.receive_timeout(Duration::from_millis(300)),
        Ok(None)
    ));
    assert!(matches!(
        down_sub.receive_timeout(Duration::from_millis(100)),
        Ok(None)
    ));
    drop((up_sub, down_sub));
    drop((up_pub, down_pub));
    let a_final = a.stop();
    let b_final = b.stop();
    let line = |lines: &[String], what: &str| -> String {
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with(what))
            .cloned()
            .unwrap_or_else(|| panic!("no {what:?} in {lines:?}"))
    };
    let up_in = line(&b_final, "status import up ");
    assert_eq!(field(&up_in, "gaps"), 0, "{up_in}");
    assert_eq!(field(&up_in, "looped"), 0, "{up_in}");
    assert!(field(&up_in, "samples") >= SIZES.len() as u64, "{up_in}");
    let up_out = line(&b_final, "status export up ");
    assert_eq!(
        field(&up_out, "samples"),
        0,
        "B never re-exports what it imports: {up_out}"
    );
    let sent: u64 = SIZES.iter().map(|&s| s as u64).sum();
    let up_bytes = field(&line(&a_final, "status export up "), "bytes");
    assert!(up_bytes >= sent, "{up_bytes} < {sent}");
    ns.assert_clean();
}

/// A native publisher in namespace A reaches a native subscriber in namespace B through two
/// bridge processes on loopback, samples of 0 B to 64 MiB byte for byte (the imported
/// service's memory grows), both directions at once, and B does not loop `up` back.
#[test]
fn loopback_both_directions_every_byte_up_to_64_mib() {
    let ns = Namespaces::new("lo");
    let port = free_port();
    both_directions(
        &ns,
        &[],
        &[],
        &format!("tcp/127.0.0.1:{port}"),
        &format!("tcp/127.0.0.1:{port}"),
    );
}

/// Two network namespaces joined by a veth pair: each bridge has its own network stack.
struct NetNs {
    a: String,
    b: String,
}

impl NetNs {
    fn create(tag: &str) -> Result<Self, String> {
        let pid = std::process::id() % 100_000;
        let ns = Self {
            a: format!("rmb{pid}{tag}a"),
            b: format!("rmb{pid}{tag}b"),
        };
        let veth_a = format!("vb{pid}a");
        let veth_b = format!("vb{pid}b");
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&["netns", "add", &ns.a])?;
        ip(&["netns", "add", &ns.b])?;
        ip(&[
            "link", "add", &veth_a, "type", "veth", "peer", "name", &veth_b,
        ])?;
        ip(&["link", "set", &veth_a, "netns", &ns.a])?;
        ip(&["link", "set", &veth_b, "netns", &ns.b])?;
        for (netns, dev, addr) in [
            (&ns.a, &veth_a, "10.77.0.1/24"),
            (&ns.b, &veth_b, "10.77.0.2/24"),
        ] {
            ip(&["-n", netns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", netns, "link", "set", dev, "up"])?;
            ip(&["-n", netns, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The same across two network namespaces (as root). Skipped with a message where they
/// cannot be made, except when `RESMEM_REQUIRE_NETNS` is set (CI sets it).
#[test]
fn across_two_network_namespaces() {
    let netns = match NetNs::create("x") {
        Ok(netns) => netns,
        Err(why) => {
            assert!(
                std::env::var_os("RESMEM_REQUIRE_NETNS").is_none(),
                "network namespaces are required here: {why}"
            );
            eprintln!("SKIPPED: cannot create network namespaces: {why}");
            return;
        }
    };
    let ns = Namespaces::new("nn");
    both_directions(
        &ns,
        &["ip", "netns", "exec", &netns.a],
        &["ip", "netns", "exec", &netns.b],
        "tcp/10.77.0.1:7447",
        "tcp/10.77.0.1:7447",
    );
}
