//! The processes, namespaces and payloads every bridge test uses.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use resmem::{Config, Overflow, Publisher, Subscriber};

pub(crate) const BRIDGE: &str = env!("CARGO_BIN_EXE_resmem-bridge");
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// A namespace pair unique to one test; leftovers in /dev/shm fail it.
pub(crate) struct Namespaces {
    pub(crate) a: String,
    pub(crate) b: String,
}

impl Namespaces {
    pub(crate) fn new(tag: &str) -> Self {
        let pid = std::process::id();
        Self {
            a: format!("rmbr{pid}{tag}A_"),
            b: format!("rmbr{pid}{tag}B_"),
        }
    }

    pub(crate) fn config(prefix: &str) -> Config {
        Config::default().prefix(prefix)
    }

    pub(crate) fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir("/dev/shm")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&self.a) || n.starts_with(&self.b))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn assert_clean(&self) {
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
pub(crate) fn free_port() -> u16 {
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
pub(crate) struct BridgeProc {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl BridgeProc {
    pub(crate) fn spawn(prefix: &[&str], args: &[&str]) -> Self {
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
    pub(crate) fn until(&mut self, want: impl Fn(&str) -> bool) -> String {
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
    pub(crate) fn stop(mut self) -> Vec<String> {
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

    pub(crate) fn kill(mut self) {
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
pub(crate) fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Sample `seq` of `len` bytes: its sequence number, then a seeded pattern.
pub(crate) fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9) ^ seq.wrapping_mul(0x51)) as u8 >> 1)
        .collect();
    if len >= 8 {
        bytes[..8].copy_from_slice(&seq.to_le_bytes());
    }
    bytes
}

pub(crate) fn publisher(prefix: &str, service: &str) -> Publisher {
    Publisher::builder(service)
        .config(&Namespaces::config(prefix))
        .overflow(Overflow::Block)
        .create()
        .expect("a native publisher")
}

pub(crate) fn subscriber(prefix: &str, service: &str) -> Subscriber {
    Subscriber::builder(service)
        .config(&Namespaces::config(prefix))
        .timeout(STEP)
        .open()
        .expect("a native subscriber")
}

/// Sends a 16-byte probe every 50 ms until the subscriber gets one: the zenoh link and the
/// remote interest are up. Probes carry sequence numbers from `u64::MAX` down.
pub(crate) fn until_linked(publisher: &Publisher, subscriber: &Subscriber) {
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
pub(crate) fn carry(publisher: &Publisher, subscriber: &Subscriber, sizes: &[usize]) {
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

pub(crate) const SIZES: &[usize] = &[0, 1, 64, 4096, 65_536, 1 << 20, 4 << 20, 16 << 20, 64 << 20];

/// Sends samples `payload(seq, len)` until `stop`, pausing `pause` after each, keeping the
/// count in `sent`; returns how many it sent and the longest `send` took.
pub(crate) fn send_until(
    publisher: &Publisher,
    stop: &AtomicBool,
    len: usize,
    pause: Duration,
    sent: &AtomicU64,
) -> (u64, Duration) {
    let (mut seq, mut longest) = (0u64, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        publisher.send_copy(&payload(seq, len)).expect("send");
        longest = longest.max(t.elapsed());
        seq += 1;
        sent.store(seq, Ordering::Relaxed);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    (seq, longest)
}

/// Stops an exporting bridge once its local publisher of `service` is gone (so that it has
/// forwarded or dropped everything queued for it) and reads its final status of `service`:
/// the line, samples forwarded, samples dropped.
pub(crate) fn final_export(mut bridge: BridgeProc, service: &str) -> (String, u64, u64) {
    bridge.until(|l| l.contains(&format!("export {service}: the local publisher is gone")));
    let status = format!("status export {service} ");
    let line = bridge
        .stop()
        .into_iter()
        .rev()
        .find(|l| l.starts_with(&status))
        .expect("export status");
    let (forwarded, dropped) = (field(&line, "samples"), field(&line, "dropped"));
    (line, forwarded, dropped)
}
