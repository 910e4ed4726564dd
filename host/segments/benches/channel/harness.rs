//! What both sides of the channel comparison share: scaling and medians, CPU pinning, the
//! second process (this bench re-executed with `--channel-child`), the message format, CPU-time
//! reads, the shared-memory name scans and the cache-line floor.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::mem::MaybeUninit;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The argument that turns this bench binary into the second process of a workload.
pub const CHILD_ARG: &str = "--channel-child";
/// Sequence number that tells the echoing or streaming peer to stop.
pub const QUIT: u64 = u64::MAX;
/// Sequence number of the last sample of one streaming round.
pub const END: u64 = u64::MAX - 1;
/// How long a spin or a blocking receive waits for the peer before the bench gives up.
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

pub fn ns_per(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// `samples` timings of `iters` back-to-back calls of `op`, after an untimed warm-up; ns per call.
pub fn per_call(samples: usize, iters: u64, mut op: impl FnMut()) -> Vec<f64> {
    for _ in 0..iters.min(1000) {
        op();
    }
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            ns_per(start.elapsed(), iters)
        })
        .collect()
}

/// A unique tag per workload run: this process's id and a counter. Names built from it never
/// collide with another run's or with another workload's.
pub fn unique_tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
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

/// The CPU for side `index` (0: the measuring process, 1: its peer), when there are two.
pub fn cpu_for(index: usize) -> Option<usize> {
    let cpus = cpus();
    (cpus.len() >= 2).then(|| cpus[index])
}

/// Pins the calling thread to `cpu`; false when the kernel refuses.
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

/// CPU time this whole process has used so far.
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; CLOCK_PROCESS_CPUTIME_ID always exists on
    // Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Polls `poll` in a tight loop (no pause instruction, as both sides' receivers spin) until it
/// yields a value; panics when the peer has not answered within [`PEER_TIMEOUT`].
pub fn spin<T>(mut poll: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(value) = poll() {
            return value;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) && start.elapsed() > PEER_TIMEOUT {
            panic!("the peer did not answer within {PEER_TIMEOUT:?}");
        }
    }
}

/// Writes a message: every byte is the sequence number's low byte, then the first 8 bytes
/// carry the whole sequence number.
pub fn stamp(buf: &mut [u8], seq: u64) {
    buf.fill(seq as u8);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// [`stamp`] for a not yet initialised payload; afterwards every element is initialised.
pub fn stamp_uninit(buf: &mut [MaybeUninit<u8>], seq: u64) {
    buf.fill(MaybeUninit::new(seq as u8));
    for (dst, src) in buf[..8].iter_mut().zip(seq.to_le_bytes()) {
        dst.write(src);
    }
}

/// Reads every byte of a message written by [`stamp`], checks it and returns its sequence
/// number. Reads 8 bytes at a time (a wrapping word sum), so that reading costs about what
/// writing does.
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

/// One streaming workload's rounds.
pub struct Stream {
    /// Samples received per second.
    pub rates: Vec<f64>,
    /// Fraction of the samples sent that the receiver got.
    pub delivered: Vec<f64>,
}

/// One two-process workload as the peer process is told it on its command line.
#[derive(Debug)]
pub struct Job {
    /// `iceoryx2` or `resmem`.
    pub side: String,
    /// `echo`, `stream` or `idle`.
    pub workload: String,
    /// Process id of the measuring process: every name of this run carries it.
    pub run: u32,
    /// Unique per workload run: every service name carries it.
    pub tag: String,
    /// Wait without spinning (blocking receives) instead of busy-polling.
    pub blocking: bool,
    /// Bounded busy spin (µs) of a blocking receive before it sleeps (resmem's
    /// `SubscriberBuilder::spin`; iceoryx2 has none).
    pub spin_us: u64,
    /// Payload bytes the peer sends.
    pub size: usize,
    /// Samples per streaming round.
    pub count: u64,
    /// The CPU the peer pins itself to.
    pub cpu: Option<usize>,
}

impl Job {
    pub fn new(side: &str, workload: &str, blocking: bool, size: usize, count: u64) -> Job {
        Job {
            side: side.to_string(),
            workload: workload.to_string(),
            run: std::process::id(),
            tag: unique_tag(),
            blocking,
            spin_us: 0,
            size,
            count,
            cpu: cpu_for(1),
        }
    }

    /// The same job with a spin before each blocking wait.
    pub fn with_spin(mut self, spin_us: u64) -> Job {
        self.spin_us = spin_us;
        self
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.side.clone(),
            self.workload.clone(),
            self.run.to_string(),
            self.tag.clone(),
            u8::from(self.blocking).to_string(),
            self.spin_us.to_string(),
            self.size.to_string(),
            self.count.to_string(),
            self.cpu.map_or("-".to_string(), |cpu| cpu.to_string()),
        ]
    }

    /// The job from the arguments after [`CHILD_ARG`].
    pub fn parse(args: &[String]) -> Job {
        let [
            side,
            workload,
            run,
            tag,
            blocking,
            spin_us,
            size,
            count,
            cpu,
        ] = args
        else {
            panic!("peer arguments: {args:?}");
        };
        Job {
            side: side.clone(),
            workload: workload.clone(),
            run: run.parse().expect("run"),
            tag: tag.clone(),
            blocking: blocking == "1",
            spin_us: spin_us.parse().expect("spin"),
            size: size.parse().expect("size"),
            count: count.parse().expect("count"),
            cpu: cpu.parse().ok(),
        }
    }
}

/// The second process of a workload: this bench binary re-executed with [`CHILD_ARG`].
pub struct Peer {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts the peer for `job` and waits until it prints `ready` (its ports exist).
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
        let mut peer = Peer { child, stdout };
        let line = peer.line();
        assert_eq!(line, "ready", "peer {args:?} did not start");
        peer
    }

    /// The next line the peer prints, without its newline.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading from the peer failed");
        line.trim_end().to_string()
    }

    /// Waits for the peer to exit (it was told to) and checks that it succeeded.
    pub fn finish(mut self) {
        let status = self.child.wait().expect("waiting for the peer failed");
        assert!(status.success(), "peer failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Only when `finish` did not run (a panic on our side): never leave the peer spinning.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In the peer: tells the parent that this side is set up.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("writing to the parent failed");
    out.flush().expect("flushing to the parent failed");
}

/// Names in /dev/shm starting with `prefix`.
pub fn shm_names(prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every /dev/shm object whose name starts with `prefix`; returns the names there were.
pub fn remove_shm(prefix: &str) -> BTreeSet<String> {
    let names = shm_names(prefix);
    for name in &names {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
    names
}

/// The floor of any cross-core hand-over: two threads on two cores bouncing one cache line.
/// One-way ns (round trip / 2) per sample.
pub fn cache_line_floor(samples: usize, iters: u64) -> Vec<f64> {
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let rounds = iters * (samples as u64 + 1);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Some(cpu) = cpu_for(1) {
                pin_to(cpu);
            }
            for i in 0..rounds {
                while line.0.load(Ordering::Acquire) != 2 * i + 1 {}
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        let mut next = 0u64;
        let mut bounce = |n: u64| {
            for _ in 0..n {
                line.0.store(2 * next + 1, Ordering::Release);
                while line.0.load(Ordering::Acquire) != 2 * next + 2 {}
                next += 1;
            }
        };
        bounce(iters); // warm-up
        (0..samples)
            .map(|_| {
                let start = Instant::now();
                bounce(iters);
                ns_per(start.elapsed(), 2 * iters)
            })
            .collect()
    })
}

/// Slice length (bytes) a growing-loan publisher starts with.
pub const GROW_INITIAL: usize = 1024;

/// Loan sizes of the growing-loan workload: each is larger than the segment before it.
pub fn grow_sizes() -> impl Iterator<Item = usize> {
    (11..=18).map(|shift| 1usize << shift)
}

/// Checks (untimed) that a loan of `size` created a shared-memory object that was not there.
pub fn assert_grew(before: &BTreeSet<String>, prefix: &str, size: usize) {
    let after = shm_names(prefix);
    assert!(
        after.difference(before).next().is_some(),
        "the loan of {size} B did not create a segment"
    );
}

const IDLE_WINDOWS: usize = 3;
const IDLE_WINDOW: Duration = Duration::from_secs(2);

/// In the peer: blocks in `wait` (given the time left) for [`IDLE_WINDOWS`] windows of
/// [`IDLE_WINDOW`] with nothing sent, and reports each window's CPU and wall time.
pub fn idle_windows(mut wait: impl FnMut(Duration)) {
    for _ in 0..IDLE_WINDOWS {
        let cpu = process_cpu_time();
        let start = Instant::now();
        loop {
            let left = IDLE_WINDOW.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            wait(left);
        }
        let wall = start.elapsed();
        let cpu = process_cpu_time() - cpu;
        say(&format!("idle {} {}", cpu.as_nanos(), wall.as_nanos()));
    }
}

/// The idle peer's windows: CPU time / wall time in percent.
pub fn read_idle(peer: &mut Peer) -> Vec<f64> {
    (0..IDLE_WINDOWS)
        .map(|_| {
            let line = peer.line();
            let fields: Vec<f64> = line
                .strip_prefix("idle ")
                .unwrap_or_else(|| panic!("idle peer said {line:?}"))
                .split(' ')
                .map(|field| field.parse().expect("idle figures"))
                .collect();
            100.0 * fields[0] / fields[1]
        })
        .collect()
}

/// The floor of a blocking hand-over: two threads on two cores, each sleeping until the other
/// wakes it, through a unix datagram socket pair (`socket`, what both channels use) or a
/// futex (`std::thread::park`/`unpark`). One-way ns (round trip / 2) per sample.
pub fn wake_floor(socket: bool, samples: usize, iters: u64) -> Vec<f64> {
    use std::os::unix::net::UnixDatagram;
    let rounds = iters * (samples as u64 + 1);
    let (near, far) = UnixDatagram::pair().expect("socket pair");
    let turn = AtomicU64::new(0);
    let main = std::thread::current();
    std::thread::scope(|scope| {
        let peer = scope.spawn(|| {
            if let Some(cpu) = cpu_for(1) {
                pin_to(cpu);
            }
            let mut byte = [0u8; 1];
            for i in 0..rounds {
                if socket {
                    far.recv(&mut byte).expect("recv");
                    far.send(&byte).expect("send");
                } else {
                    while turn.load(Ordering::Acquire) != 2 * i + 1 {
                        std::thread::park();
                    }
                    turn.store(2 * i + 2, Ordering::Release);
                    main.unpark();
                }
            }
        });
        let mut next = 0u64;
        let mut bounce = |n: u64| {
            let mut byte = [0u8; 1];
            for _ in 0..n {
                if socket {
                    near.send(&byte).expect("send");
                    near.recv(&mut byte).expect("recv");
                } else {
                    turn.store(2 * next + 1, Ordering::Release);
                    peer.thread().unpark();
                    while turn.load(Ordering::Acquire) != 2 * next + 2 {
                        std::thread::park();
                    }
                }
                next += 1;
            }
        };
        bounce(iters); // warm-up
        (0..samples)
            .map(|_| {
                let start = Instant::now();
                bounce(iters);
                ns_per(start.elapsed(), 2 * iters)
            })
            .collect()
    })
}
