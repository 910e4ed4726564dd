//! What both sides of the bridge comparison share: scaling and medians, CPU pinning, the second
//! process (this bench re-executed with `--bridge-child`), the message format, free ports.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The argument that turns this bench binary into the second process of a workload.
pub const CHILD_ARG: &str = "--bridge-child";
/// Sequence number that tells the peer to stop.
pub const QUIT: u64 = u64::MAX;
/// Sequence number that ends one streaming round.
pub const END: u64 = u64::MAX - 1;
/// Sequence number of the probes sent until the path from one end to the other is up.
pub const PROBE: u64 = u64::MAX - 2;
/// How long either process waits for the other before the bench gives up.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// `n` scaled by `RESMEM_BENCH_SCALE` (default 1), at least 3.
pub fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("RESMEM_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(3)
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A unique tag per workload run: this process's id and a counter.
pub fn unique_tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free TCP port on loopback (bound, then let go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The CPUs this process may run on, read once before the main thread pins itself.
pub fn cpus() -> &'static [usize] {
    static CPUS: OnceLock<Vec<usize>> = OnceLock::new();
    CPUS.get_or_init(|| {
        // SAFETY: an all-zero `cpu_set_t` is a valid, empty CPU set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a writable `cpu_set_t` of exactly the size passed; pid 0 is the
        // calling thread.
        let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below `CPU_SETSIZE`, the number of CPUs a `cpu_set_t` holds.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    })
}

/// Whether processes are pinned: two CPUs or more, and `RESMEM_BENCH_PIN` is not `0`.
fn pinning() -> bool {
    cpus().len() >= 2 && std::env::var("RESMEM_BENCH_PIN").map_or(true, |v| v != "0")
}

/// The CPU for side `index` (0: the measuring process, side A; 1: its peer, side B).
pub fn cpu_for(index: usize) -> Option<usize> {
    pinning().then(|| cpus()[index])
}

/// Pins the calling thread, and every thread it starts afterwards, to `cpu`.
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: an all-zero `cpu_set_t` is a valid, empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t` and `cpu` is one of the CPUs `cpus()` read from the
    // kernel, so it is below `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of exactly the size passed; pid 0 is the calling
    // thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Writes a message: every byte is the sequence number's low byte, then the first 8 bytes
/// carry the whole sequence number.
pub fn stamp(buf: &mut [u8], seq: u64) {
    buf.fill(seq as u8);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// A new message of `size` bytes, as [`stamp`] writes it (one pass over the bytes).
pub fn stamped(size: usize, seq: u64) -> Vec<u8> {
    let mut buf = vec![seq as u8; size];
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf
}

/// Reads every byte of a message written by [`stamp`], checks it and returns its sequence
/// number (8 bytes at a time, a wrapping word sum, so that reading costs about what writing
/// does).
pub fn check(buf: &[u8]) -> u64 {
    let (head, body) = buf.split_at(8);
    let seq = u64::from_le_bytes(head.try_into().expect("messages are at least 8 bytes"));
    let byte = seq as u8;
    let words = body.chunks_exact(8);
    let tail_ok = words.remainder().iter().all(|&b| b == byte);
    let sum = words.fold(0u64, |sum, word| {
        sum.wrapping_add(u64::from_le_bytes(word.try_into().expect("8 bytes")))
    });
    let expected = u64::from(byte).wrapping_mul(0x0101_0101_0101_0101);
    assert!(
        tail_ok && sum == expected.wrapping_mul((body.len() / 8) as u64),
        "message {seq} arrived corrupted"
    );
    seq
}

/// One two-process workload as the peer process is told it on its command line.
#[derive(Debug, Clone)]
pub struct Job {
    /// `zenoh` or `bridge`.
    pub side: String,
    /// `echo` or `stream`.
    pub workload: String,
    /// Process id of the measuring process: every name of this run carries it.
    pub run: u32,
    /// Unique per workload run: every key and service name carries it.
    pub tag: String,
    /// Payload bytes.
    pub size: usize,
    /// The TCP port side A listens on (127.0.0.1).
    pub port: u16,
    /// The CPU the peer pins itself to.
    pub cpu: Option<usize>,
}

impl Job {
    pub fn new(side: &str, workload: &str, size: usize) -> Job {
        Job {
            side: side.to_string(),
            workload: workload.to_string(),
            run: std::process::id(),
            tag: unique_tag(),
            size,
            port: free_port(),
            cpu: cpu_for(1),
        }
    }

    /// Side A listens here, side B connects here.
    pub fn endpoint(&self) -> String {
        format!("tcp/127.0.0.1:{}", self.port)
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.side.clone(),
            self.workload.clone(),
            self.run.to_string(),
            self.tag.clone(),
            self.size.to_string(),
            self.port.to_string(),
            self.cpu.map_or("-".to_string(), |cpu| cpu.to_string()),
        ]
    }

    /// The job from the arguments after [`CHILD_ARG`].
    pub fn parse(args: &[String]) -> Job {
        let [side, workload, run, tag, size, port, cpu] = args else {
            panic!("peer arguments: {args:?}");
        };
        Job {
            side: side.clone(),
            workload: workload.clone(),
            run: run.parse().expect("run"),
            tag: tag.clone(),
            size: size.parse().expect("size"),
            port: port.parse().expect("port"),
            cpu: cpu.parse().ok(),
        }
    }
}

/// The second process of a workload (side B): this bench binary re-executed with
/// [`CHILD_ARG`]. Its stdout lines arrive through a thread, so that the parent can wait for
/// one with a timeout while it keeps sending.
pub struct Peer {
    child: Child,
    lines: Receiver<String>,
}

impl Peer {
    /// Starts the peer for `job` and waits until it prints `ready`.
    pub fn spawn(job: &Job) -> Peer {
        let exe = std::env::current_exe().expect("current_exe");
        let args = job.args();
        let mut child = Command::new(exe)
            .arg(CHILD_ARG)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the peer process failed");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let peer = Peer { child, lines };
        let line = peer.line();
        assert_eq!(line, "ready", "peer {args:?} did not start");
        peer
    }

    /// The next line the peer prints; panics after [`PEER_TIMEOUT`].
    pub fn line(&self) -> String {
        self.line_within(PEER_TIMEOUT)
            .expect("the peer said nothing in time")
    }

    /// The next line the peer prints within `timeout`, if any.
    pub fn line_within(&self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the peer exited early"),
        }
    }

    /// Calls `send` every `period` until the peer prints a line; returns the line.
    pub fn send_until_line(&self, period: Duration, mut send: impl FnMut()) -> String {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < PEER_TIMEOUT, "the peer never answered");
            send();
            if let Some(line) = self.line_within(period) {
                return line;
            }
        }
    }

    /// Waits for the peer to exit (it was told to) and checks that it succeeded.
    pub fn finish(mut self) {
        let status = self.child.wait().expect("waiting for the peer failed");
        assert!(status.success(), "peer failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Only when `finish` did not run (a panic on our side): never leave the peer behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In the peer: a line for the parent.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("writing to the parent failed");
    out.flush().expect("flushing to the parent failed");
}

/// Removes every /dev/shm object whose name starts with `prefix`; returns the names there were.
pub fn remove_shm(prefix: &str) -> Vec<String> {
    let names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    for name in &names {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
    names
}
