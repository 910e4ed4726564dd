//! Two real `resmem-bridge` processes carry channel services between two namespaces: on
//! loopback with explicit endpoints and multicast off, and across two network namespaces
//! (two network stacks, a veth pair between them) when the test runs as root. Native
//! publishers and subscribers live in this process (shared memory does not care about network
//! namespaces); the bridges are separate processes; a guest publisher runs in a wasmtime host
//! here.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use resmem::{ChannelError, Config, Overflow, Publisher, Subscriber};

const BRIDGE: &str = env!("CARGO_BIN_EXE_resmem-bridge");
const STEP: Duration = Duration::from_secs(30);

/// A namespace pair unique to one test; leftovers in /dev/shm fail it.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn new(tag: &str) -> Self {
        let pid = std::process::id();
        Self {
            a: format!("rmbr{pid}{tag}A_"),
            b: format!("rmbr{pid}{tag}B_"),
        }
    }

    fn config(prefix: &str) -> Config {
        Config::default().prefix(prefix)
    }

    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir("/dev/shm")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.a) || n.starts_with(&self.b))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "left in /dev/shm: {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A port for a bridge to listen on. Not one the kernel hands out (`bind(:0)` picks from the
/// ephemeral range, where the outgoing connections of bridges running in parallel tests can
/// take it between this check and the bridge's own bind: a CI flake): ports from 20000 up,
/// a block per test process (by pid), one after another within it (all below 32500), each
/// checked free.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 400) as u16 * 25;
    for _ in 0..2_500 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 2_500;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port from {base} on")
}

/// A bridge process; killed when dropped.
struct BridgeProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl BridgeProc {
    fn spawn(prefix: &[&str], args: &[&str]) -> Self {
        let mut command = if prefix.is_empty() {
            Command::new(BRIDGE)
        } else {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..]).arg(BRIDGE);
            c
        };
        command
            .args([
                "run",
                "--no-multicast",
                "--status-ms",
                "100",
                "--stdin-stop",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("spawn resmem-bridge");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut bridge = Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        };
        bridge.until(|l| l.ends_with(" ready"));
        bridge
    }

    /// Reads lines until one satisfies `want`; returns it.
    fn until(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("bridge: no such line; saw {:?}", self.seen),
            }
        }
    }

    /// Stops it (end of stdin) and returns its final status lines.
    fn stop(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let mut finals = Vec::new();
        loop {
            let line = self.until(|_| true);
            if line == "stopped" {
                break;
            }
            if line.starts_with("status ") {
                finals.push(line);
            }
        }
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "bridge exit {status}");
        finals
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` of a status line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Sample `seq` of `len` bytes: its sequence number, then a seeded pattern.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9) ^ seq.wrapping_mul(0x51)) as u8 >> 1)
        .collect();
    if len >= 8 {
        bytes[..8].copy_from_slice(&seq.to_le_bytes());
    }
    bytes
}

fn publisher(prefix: &str, service: &str) -> Publisher {
    Publisher::builder(service)
        .config(&Namespaces::config(prefix))
        .overflow(Overflow::Block)
        .create()
        .expect("a native publisher")
}

fn subscriber(prefix: &str, service: &str) -> Subscriber {
    Subscriber::builder(service)
        .config(&Namespaces::config(prefix))
        .timeout(STEP)
        .open()
        .expect("a native subscriber")
}

/// Sends a 16-byte probe every 50 ms until the subscriber gets one: the zenoh link and the
/// remote interest are up. Probes carry sequence numbers from `u64::MAX` down.
fn until_linked(publisher: &Publisher, subscriber: &Subscriber) {
    let deadline = Instant::now() + STEP;
    let mut probe = u64::MAX;
    loop {
        assert!(Instant::now() < deadline, "the bridges never linked");
        publisher
            .send_copy(&payload(probe, 16))
            .expect("send a probe");
        probe -= 1;
        if let Ok(Some(sample)) = subscriber.receive_timeout(Duration::from_millis(50)) {
            assert_eq!(sample.len(), 16);
            // Drain the probes still on the way.
            std::thread::sleep(Duration::from_millis(100));
            while let Ok(Some(_)) = subscriber.receive() {}
            return;
        }
    }
}

/// Sends each sample and waits until it arrives, byte for byte.
fn carry(publisher: &Publisher, subscriber: &Subscriber, sizes: &[usize]) {
    for (seq, &len) in sizes.iter().enumerate() {
        let bytes = payload(seq as u64, len);
        let mut loan = publisher
            .loan(std::alloc::Layout::from_size_align(len, 8).unwrap())
            .expect("loan");
        loan.payload_mut().copy_from_slice(&bytes);
        assert_eq!(loan.send().expect("send"), 1, "the exporter is subscribed");
        let sample = subscriber
            .receive_timeout(STEP)
            .expect("receive")
            .unwrap_or_else(|| panic!("sample {seq} ({len} B) did not cross"));
        assert_eq!(sample.len(), len, "sample {seq}");
        assert!(
            sample.payload() == &bytes[..],
            "sample {seq} ({len} B) differs"
        );
    }
}

const SIZES: &[usize] = &[0, 1, 64, 4096, 65_536, 1 << 20, 4 << 20, 16 << 20, 64 << 20];

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

/// The importing bridge is killed and restarted mid-stream: the exporter keeps taking and
/// releasing (the local publisher under `Overflow::Block` never waits on it), counts what it
/// could not forward, and forwards again once the new importer is there; the importer's
/// subscribers see `PublisherGone` and reopen.
#[test]
fn the_importer_restarts_mid_stream() {
    let ns = Namespaces::new("rs");
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let publisher = Arc::new(publisher(&ns.a, "cam"));
    let mut a = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.a,
            "--export",
            "cam",
            "--listen",
            &endpoint,
        ],
    );
    let b_args = [
        "--namespace",
        ns.b.as_str(),
        "--import",
        "cam",
        "--connect",
        endpoint.as_str(),
    ];
    let mut b = Some(BridgeProc::spawn(&[], &b_args));
    {
        let sub = subscriber(&ns.b, "cam");
        publisher.wait_for_subscribers(1, STEP);
        until_linked(&publisher, &sub);
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent, longest_send) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let (mut seq, mut longest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                publisher.send_copy(&payload(seq, 4096)).expect("send");
                longest = longest.max(t.elapsed());
                seq += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (seq, longest)
        });
        // Phase 1: received; kill; phase 2: the importer is gone; restart; phase 3: received.
        let mut got_before = 0u64;
        {
            let sub = subscriber(&ns.b, "cam");
            let until = Instant::now() + Duration::from_millis(600);
            while Instant::now() < until {
                if let Ok(Some(_)) = sub.receive_timeout(Duration::from_millis(50)) {
                    got_before += 1;
                }
            }
            b.take().expect("running").kill();
            // Drained, then gone.
            let deadline = Instant::now() + STEP;
            loop {
                match sub.receive_timeout(Duration::from_millis(50)) {
                    Err(ChannelError::PublisherGone) => break,
                    _ => assert!(
                        Instant::now() < deadline,
                        "the dead importer's service stays"
                    ),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        b = Some(BridgeProc::spawn(&[], &b_args));
        let sub = subscriber(&ns.b, "cam");
        let mut after = Vec::new();
        let deadline = Instant::now() + STEP;
        while after.len() < 50 {
            assert!(
                Instant::now() < deadline,
                "the stream did not resume: {} after",
                after.len()
            );
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(100)) {
                let seq = u64::from_le_bytes(sample.payload()[..8].try_into().unwrap());
                assert_eq!(sample.payload(), &payload(seq, 4096)[..]);
                after.push(seq);
            }
        }
        assert!(after.windows(2).all(|w| w[0] < w[1]), "in order: {after:?}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(got_before > 50, "{got_before} before the kill");
        drop(sub);
        sender.join().expect("sender")
    });
    assert!(
        longest_send < Duration::from_millis(500),
        "the exporter held the publisher up for {longest_send:?}"
    );
    drop(publisher);
    a.until(|l| l.contains("export cam: the local publisher is gone"));
    let a_final = a.stop();
    let out = a_final
        .iter()
        .rev()
        .find(|l| l.starts_with("status export cam "))
        .expect("export status");
    let (forwarded, dropped) = (field(out, "samples"), field(out, "dropped"));
    assert!(
        dropped > 0,
        "samples sent while no importer was there are counted: {out}"
    );
    assert!(
        forwarded + dropped >= sent,
        "every sample was forwarded or counted as dropped: {out}, sent {sent}"
    );
    drop(b.take().map(BridgeProc::stop));
    ns.assert_clean();
}

/// A stalled link (the importing bridge frozen with SIGSTOP: its TCP connection stays up
/// but nothing is read, so the exporter's zenoh put waits): the exporter holds the local
/// publisher (`Overflow::Block`) no longer than about `--max-hold-ms`, then drops and counts
/// what arrives, and forwards again, in order and byte for byte, once the importer runs.
#[test]
fn a_stalled_link_holds_the_publisher_at_most_max_hold() {
    stalled_link("st", None);
}

/// The same where subscribers may borrow one sample at a time: the exporter cannot keep the
/// sample of a stuck put and take the next one, so it copies each sample into its message.
#[test]
fn a_stalled_link_holds_the_publisher_at_most_max_hold_with_one_borrow() {
    stalled_link("s1", Some(1));
}

fn stalled_link(tag: &str, max_borrowed: Option<usize>) {
    const LEN: usize = 64 << 10;
    let ns = Namespaces::new(tag);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut builder = Publisher::builder("cam")
        .config(&Namespaces::config(&ns.a))
        .overflow(Overflow::Block);
    if let Some(n) = max_borrowed {
        builder = builder.max_borrowed(n);
    }
    let publisher = builder.create().expect("a native publisher");
    let mut a = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.a,
            "--export",
            "cam",
            "--listen",
            &endpoint,
            "--max-hold-ms",
            "100",
        ],
    );
    let b = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.b,
            "--import",
            "cam",
            "--connect",
            &endpoint,
        ],
    );
    let b_pid = libc::pid_t::try_from(b.child.id()).expect("pid");
    let signal = |sig: libc::c_int| {
        // SAFETY: kill(2) with a pid of our own child process and a constant signal.
        assert_eq!(unsafe { libc::kill(b_pid, sig) }, 0, "kill({b_pid}, {sig})");
    };
    let sub = subscriber(&ns.b, "cam");
    publisher.wait_for_subscribers(1, STEP);
    until_linked(&publisher, &sub);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent_so_far = std::sync::atomic::AtomicU64::new(0);
    let (sent, longest, during) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let (mut seq, mut longest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                publisher.send_copy(&payload(seq, LEN)).expect("send");
                longest = longest.max(t.elapsed());
                seq += 1;
                sent_so_far.store(seq, Ordering::Relaxed);
            }
            (seq, longest)
        });
        // Flowing, then frozen for 2 s, then running again.
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(50)) {
                got.push(u64::from_le_bytes(
                    sample.payload()[..8].try_into().unwrap(),
                ));
            }
        }
        assert!(
            got.len() > 10,
            "only {} samples before the stall",
            got.len()
        );
        signal(libc::SIGSTOP);
        a.until(|l| l.contains("export cam: the link took no sample for"));
        let before = sent_so_far.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));
        let during = sent_so_far.load(Ordering::Relaxed) - before;
        signal(libc::SIGCONT);
        let deadline = Instant::now() + STEP;
        let mut after = 0;
        while after < 50 {
            assert!(Instant::now() < deadline, "the stream did not resume");
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(100)) {
                let seq = u64::from_le_bytes(sample.payload()[..8].try_into().unwrap());
                assert!(
                    sample.payload() == &payload(seq, LEN)[..],
                    "sample {seq} differs"
                );
                assert!(seq > *got.last().unwrap(), "in order: {seq} after {got:?}");
                got.push(seq);
                after += 1;
            }
        }
        a.until(|l| l.contains("export cam: the link moves again"));
        stop.store(true, Ordering::Relaxed);
        let (sent, longest) = sender.join().expect("sender");
        (sent, longest, during)
    });
    assert!(
        during > 100,
        "the publisher kept sending while the link stalled: {during} samples in 2 s"
    );
    assert!(
        longest < Duration::from_millis(600),
        "the exporter held the publisher up for {longest:?} (max hold 100 ms)"
    );
    drop(sub);
    drop(publisher);
    // Everything queued for the exporter is forwarded (or dropped) before it says so, and
    // its final status counts it.
    a.until(|l| l.contains("export cam: the local publisher is gone"));
    let finals = a.stop();
    let out = finals
        .iter()
        .rev()
        .find(|l| l.starts_with("status export cam "))
        .expect("export status");
    let (forwarded, dropped) = (field(out, "samples"), field(out, "dropped"));
    assert!(
        dropped > 0,
        "the stall's samples are counted dropped: {out}"
    );
    assert!(
        forwarded + dropped >= sent,
        "every sample was forwarded or counted as dropped: {out}, sent {sent}"
    );
    drop(b.stop());
    ns.assert_clean();
}

/// A hostile zenoh peer puts garbage on an imported key: short messages, a wrong magic, a
/// length that disagrees with the message, the importer's own origin. Each is counted and
/// refused; well-formed messages from foreign origins (one larger than a zenoh batch, so
/// fragmented on the way; one with the largest sequence number) arrive byte for byte.
#[test]
fn an_importer_refuses_malformed_messages() {
    use resmem_bridge::wire::{HEADER, Header};
    use resmem_bridge::{Bridge, Direction};
    use zenoh::Wait;

    let ns = Namespaces::new("mf");
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let bridge = Bridge::builder()
        .config(&Namespaces::config(&ns.b))
        .import("cam")
        .listen(&endpoint)
        .multicast(false)
        .on_log(|_| {})
        .start()
        .expect("bridge");
    let own: [u8; 16] = {
        let zid = bridge.zid();
        let mut id = [0u8; 16];
        let n = u128::from_str_radix(&zid, 16).expect("hex zid");
        id.copy_from_slice(&n.to_le_bytes());
        id
    };
    let sub = subscriber(&ns.b, "cam");
    let mut config = zenoh::Config::default();
    for (key, value) in [
        ("mode", "\"peer\"".to_owned()),
        ("connect/endpoints", format!("[\"{endpoint}\"]")),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        config.insert_json5(key, &value).expect("zenoh config");
    }
    let session = zenoh::open(config).wait().expect("zenoh session");
    let put = |bytes: Vec<u8>| {
        session.put("resmem/cam", bytes).wait().expect("put");
    };
    let good = payload(3, 100_000);
    let header = |origin: [u8; 16], len: u64| Header {
        seq: 0,
        len,
        origin,
    };
    let last_seq = |origin: [u8; 16], len: u64| Header {
        seq: u64::MAX,
        ..header(origin, len)
    };
    // Until the bridge's subscription reaches us, puts go nowhere: send good ones until one
    // arrives.
    let deadline = Instant::now() + STEP;
    loop {
        assert!(
            Instant::now() < deadline,
            "the importer never got a message"
        );
        put(header([7; 16], good.len() as u64).encode(&good));
        if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(50)) {
            assert!(
                sample.payload() == &good[..],
                "the well-formed message differs"
            );
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(Some(_)) = sub.receive() {}
    let stats = || {
        bridge
            .stats()
            .into_iter()
            .find(|s| s.direction == Direction::Import)
            .expect("import stats")
    };
    let before = stats();
    let mut wrong_magic = header([7; 16], 4).encode(b"abcd");
    wrong_magic[0] ^= 0xff;
    // The largest sequence number is a valid one (the next expected wraps).
    put(last_seq([9; 16], 4).encode(b"wxyz"));
    put(Vec::new());
    put(vec![0x52; HEADER - 1]);
    put(wrong_magic);
    put(header([7; 16], 5).encode(b"abcd"));
    put(header([7; 16], u64::MAX).encode(b"abcd"));
    put(header(own, 4).encode(b"abcd"));
    // Then one well-formed message: everything before it was handled when it arrives.
    put(header([8; 16], good.len() as u64).encode(&good));
    let sample = sub
        .receive_timeout(STEP)
        .expect("receive")
        .expect("the message with the largest sequence number");
    assert_eq!(sample.payload(), b"wxyz");
    drop(sample);
    let sample = sub
        .receive_timeout(STEP)
        .expect("receive")
        .expect("the last well-formed message");
    assert!(
        sample.payload() == &good[..],
        "the well-formed message differs"
    );
    drop(sample);
    assert!(
        sub.receive_timeout(Duration::from_millis(200))
            .expect("receive")
            .is_none(),
        "a malformed message was published"
    );
    let after = stats();
    assert_eq!(after.malformed - before.malformed, 5, "{after:?}");
    assert_eq!(after.looped - before.looped, 1, "{after:?}");
    assert_eq!(after.samples - before.samples, 2, "{after:?}");
    drop(sub);
    drop(session);
    drop(bridge);
    ns.assert_clean();
}

/// A guest publisher (the `channel` guest in a wasmtime host, namespace A) reaches a native
/// subscriber in namespace B through both bridges: every frame checked byte for byte, in
/// order, the guest's memory growing on the way.
#[test]
fn a_guest_publisher_reaches_a_native_subscriber_on_the_other_host() {
    use resmem_host::{EngineOptions, GuestHost, Policy, RunOutcome, frame};
    let ns = Namespaces::new("gu");
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let a = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.a,
            "--export",
            "cam",
            "--export",
            "probe",
            "--listen",
            &endpoint,
        ],
    );
    let b = BridgeProc::spawn(
        &[],
        &[
            "--namespace",
            &ns.b,
            "--import",
            "cam",
            "--import",
            "probe",
            "--connect",
            &endpoint,
        ],
    );
    {
        let probe = publisher(&ns.a, "probe");
        let sub = subscriber(&ns.b, "probe");
        probe.wait_for_subscribers(1, STEP);
        until_linked(&probe, &sub);
    }
    let policy = Policy::builder().namespace(&ns.a).build();
    let host = GuestHost::new(policy, EngineOptions::default()).expect("a guest host");
    let component = host
        .load(resmem_guests::CHANNEL_WASM)
        .expect("the channel guest");
    let sub = subscriber(&ns.b, "cam");
    let count = 40u64;
    let outcome = std::thread::scope(|s| {
        let guest = s.spawn(|| {
            host.run_command(
                &component,
                wasmtime_wasi::WasiCtxBuilder::new()
                    .inherit_stderr()
                    .args(&[
                        "channel",
                        "pub",
                        "cam",
                        "40",
                        "1024",
                        "--grow-every",
                        "8",
                        "--max-size",
                        "65536",
                        "--interval-us",
                        "10000",
                        "--subscribers",
                        "1",
                        "--seed",
                        "5",
                        "--map",
                        "--linger-ms",
                        "500",
                    ]),
            )
        });
        let mut seqs = Vec::new();
        let deadline = Instant::now() + STEP;
        while seqs.last() != Some(&(count - 1)) {
            assert!(Instant::now() < deadline, "frames so far: {seqs:?}");
            if let Ok(Some(sample)) = sub.receive_timeout(Duration::from_millis(100)) {
                let checked = frame::check(sample.payload(), 5, 0)
                    .unwrap_or_else(|e| panic!("frame after {seqs:?}: {e}"));
                let expected_len = (1024u64 << (checked.seq / 8)).min(65536);
                assert_eq!(sample.len() as u64, expected_len, "frame {}", checked.seq);
                seqs.push(checked.seq);
            }
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        assert!(
            seqs.len() as u64 >= count - 2,
            "few lost on the way: {seqs:?}"
        );
        guest.join().expect("the guest thread")
    });
    assert_eq!(outcome.expect("run"), RunOutcome::Exited(0));
    drop(sub);
    drop(host);
    let b_final = b.stop();
    let cam = b_final
        .iter()
        .rev()
        .find(|l| l.starts_with("status import cam "))
        .expect("import status");
    assert_eq!(field(cam, "gaps"), 0, "{cam}");
    a.stop();
    ns.assert_clean();
}
