//! The channel side of the bench guest: the echo peer of the guest-channel bench
//! (`host/runtime/benches/guest_channel`) and the one-guest channel workloads.
//!
//! Messages have the native channel bench's format (host/segments/benches/channel/harness.rs):
//! every byte is the sequence number's low byte, then the first 8 bytes carry the whole
//! sequence number. The receiver reads every byte; sequence number `u64::MAX` ends an echo.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resmem_guest::channel::{ChannelConfig, Publisher, Sample, Subscriber};
use resmem_guest::{AllocationStrategy, Layout, MemoryConfig, Window, WindowMut};

/// Sequence number that ends an echo (echoed back too).
pub const QUIT: u64 = u64::MAX;
/// How long a receive waits for the peer before the guest gives up.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// Stamps per output line at the end of an echo.
const STAMPS_PER_LINE: usize = 256;

/// The native publisher's defaults for a `size`-byte payload: 8 subscribers, buffer 16,
/// 16 loans, 8 borrowed, drop-oldest, and a first segment for the chunks that can be in
/// flight at once (16 + 8 * (16 + 8), as `resmem::Publisher` hints it).
pub fn config(size: u64) -> ChannelConfig {
    ChannelConfig::new(MemoryConfig::new(
        Layout::new(size, 8),
        208,
        AllocationStrategy::PowerOfTwo,
    ))
}

/// Wall-clock nanoseconds (CLOCK_REALTIME in the host, the clock native peers stamp with).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes a message into heap memory.
pub fn stamp(buf: &mut [u8], seq: u64) {
    buf.fill(seq as u8);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Writes a message in place, through the window.
pub fn stamp_in_place(window: &mut WindowMut<'_>, seq: u64) {
    let len = window.len();
    window.fill_range(0, len, seq as u8);
    window.copy_from(0, &seq.to_le_bytes());
}

/// Reads every byte of a message in heap memory, checks it, returns its sequence number (the
/// native `check`: a wrapping sum of 8-byte words).
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

/// [`check`] in place: volatile loads through the window (no reference into it), 16 bytes at
/// a time where aligned.
pub fn check_in_place(window: &Window<'_>) -> u64 {
    let len = window.len();
    assert!(len >= 8, "messages are at least 8 bytes");
    let mut head = [0u8; 8];
    window.copy_to(0, &mut head);
    let seq = u64::from_le_bytes(head);
    let byte = seq as u8;
    let base = window.as_ptr();
    // Bytes up to the first 16-aligned address one by one, then aligned vectors, then the tail.
    let start = (8 + ((base as usize + 8).wrapping_neg() & 15)).min(len);
    let wide_end = start + (len - start) / 16 * 16;
    let mut ok = (8..start).all(|i| window.get(i) == byte);
    ok &= (wide_end..len).all(|i| window.get(i) == byte);
    let sum = sum_words(base, start, wide_end);
    let expected = u64::from(byte).wrapping_mul(0x0101_0101_0101_0101);
    assert!(
        ok && sum == expected.wrapping_mul(((wide_end - start) / 8) as u64),
        "message {seq} arrived corrupted"
    );
    seq
}

/// Wrapping sum of the 8-byte words of `base[start..end]` (16-aligned, a multiple of 16 long).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn sum_words(base: *const u8, start: usize, end: usize) -> u64 {
    use core::arch::wasm32::{i64x2_add, i64x2_extract_lane, i64x2_splat, v128};
    let (mut a, mut b) = (i64x2_splat(0), i64x2_splat(0));
    let mut i = start;
    // SAFETY: `start..end` lies inside the window's mapped bytes (the caller's ranges), every
    // address is 16-aligned, and only volatile loads touch it (no reference is formed).
    unsafe {
        while i + 32 <= end {
            let p = base.add(i) as *const v128;
            a = i64x2_add(a, p.read_volatile());
            b = i64x2_add(b, p.add(1).read_volatile());
            i += 32;
        }
        if i < end {
            a = i64x2_add(a, (base.add(i) as *const v128).read_volatile());
        }
    }
    let s = i64x2_add(a, b);
    (i64x2_extract_lane::<0>(s) as u64).wrapping_add(i64x2_extract_lane::<1>(s) as u64)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn sum_words(base: *const u8, start: usize, end: usize) -> u64 {
    (start..end).step_by(8).fold(0u64, |sum, i| {
        // SAFETY: as above; 8-aligned addresses inside the mapped range, volatile loads.
        sum.wrapping_add(unsafe { (base.add(i) as *const u64).read_volatile() })
    })
}

/// Reads every byte of a received message, by copy (`read`) or in place (`map`).
fn check_sample(sample: &Sample<'_>, map: bool) -> u64 {
    if map {
        check_in_place(&sample.map().expect("map the sample"))
    } else {
        check(&sample.read_all().expect("read the sample"))
    }
}

/// Loans `size` bytes, writes message `seq` by copy (`write`, from `buf`) or in place (`map`)
/// and sends it.
fn send(publisher: &Publisher, size: u64, seq: u64, map: bool, buf: &mut [u8]) {
    let mut loan = publisher.loan_bytes(size).expect("loan");
    if map {
        stamp_in_place(&mut loan.map().expect("map the loan"), seq);
    } else {
        stamp(buf, seq);
        loan.write_at(0, buf).expect("write");
    }
    loan.send().expect("send");
}

/// The next sample: spinning on `receive` (`poll` false) or asleep in `wasi:io/poll` through
/// `receive_timeout`.
fn receive(subscriber: &Subscriber, poll: bool) -> Sample<'_> {
    let start = Instant::now();
    if poll {
        loop {
            if let Some(sample) = subscriber.receive_timeout(PEER_TIMEOUT).expect("receive") {
                return sample;
            }
            assert!(start.elapsed() < PEER_TIMEOUT, "the peer stopped sending");
        }
    }
    let mut spins = 0u32;
    loop {
        if let Some(sample) = subscriber.receive().expect("receive") {
            return sample;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            assert!(start.elapsed() < PEER_TIMEOUT, "the peer stopped sending");
        }
    }
}

/// `bench echo <in> <out> <size> copy|map spin|poll`: creates `out`, subscribes to `in`,
/// prints `ready`, then answers every message of `in` with the same sequence number on `out`
/// (`size` bytes), reading and writing by copy (`read`/`write`) or in place (`map`), waiting
/// by spinning on `receive` or in `wasi:io/poll`. After echoing [`QUIT`] it prints one
/// wall-clock stamp (ns) per message, taken after the received sample was released and
/// before the answer was loaned, as `stamps <ns> <ns> ...` lines, then `done`.
pub fn echo(args: &[String]) {
    let [input, output, size, access, wait] = args else {
        panic!("usage: bench echo <in> <out> <size> copy|map spin|poll");
    };
    let size: u64 = size.parse().expect("size: a number");
    assert!(size >= 8, "messages are at least 8 bytes");
    let map = match access.as_str() {
        "copy" => false,
        "map" => true,
        other => panic!("{other}: copy or map"),
    };
    let poll = match wait.as_str() {
        "spin" => false,
        "poll" => true,
        other => panic!("{other}: spin or poll"),
    };
    let publisher = Publisher::create(output, config(size)).expect("create the publisher");
    let subscriber = Subscriber::open(input, PEER_TIMEOUT).expect("open the subscriber");
    println!("ready");
    let mut buf = vec![0u8; if map { 0 } else { size as usize }];
    let mut stamps = Vec::new();
    loop {
        let sample = receive(&subscriber, poll);
        let seq = check_sample(&sample, map);
        drop(sample);
        stamps.push(now_ns());
        send(&publisher, size, seq, map, &mut buf);
        if seq == QUIT {
            break;
        }
    }
    for line in stamps.chunks(STAMPS_PER_LINE) {
        let mut text = String::from("stamps");
        for stamp in line {
            text.push(' ');
            text.push_str(&stamp.to_string());
        }
        println!("{text}");
    }
    println!("done");
}

/// The one-guest channel workloads: a publisher and a subscriber of one service in this guest.
pub struct Local {
    // The subscriber first: it closes before its publisher.
    subscriber: Subscriber,
    publisher: Publisher,
    buf: Vec<u8>,
    seq: u64,
}

impl Local {
    pub fn new(service: &str) -> Self {
        let publisher = Publisher::create(service, config(64)).expect("create the publisher");
        let subscriber =
            Subscriber::open(service, Duration::from_secs(1)).expect("open the subscriber");
        Self {
            subscriber,
            publisher,
            buf: vec![0u8; 64],
            seq: 0,
        }
    }

    /// Loan 64 B, write, send, receive, read every byte, release (the native bench's
    /// `in_process`), by copy or in place.
    pub fn cycle(&mut self, map: bool) {
        send(&self.publisher, 64, self.seq, map, &mut self.buf);
        let sample = self
            .subscriber
            .receive()
            .expect("receive")
            .expect("the sample just sent");
        assert_eq!(check_sample(&sample, map), self.seq);
        drop(sample);
        self.seq += 1;
    }

    /// One `receive` with nothing queued: what each turn of a spinning receiver costs.
    pub fn receive_nothing(&self) {
        assert!(self.subscriber.receive().expect("receive").is_none());
    }
}
