//! Hostile peers of `resmem-channel-peer`: each joins through the real API and then writes,
//! with `pwrite` on `/dev/shm/<prefix><svc>__svc` (`resmem_e2e::control`), what no honest
//! party writes. Both read one command per stdin line and answer one line.
//!
//! ```text
//! scribble SVC          a subscriber; prints `joined slot=<k>`
//!   receive             -> receives one sample and keeps it: `got <id> <len> <offset> idx=<i>`
//!   forge O1 O2 ...     -> writes completion entries: the last received sample (valid), the
//!                          same again, three forged offsets/indices, and every sample index
//!                          0..8 with each Oi (samples it never got): `forged entries=<n>`
//!   indices             -> its submission `read` past `write`, its completion `write` past
//!                          the capacity: `scribbled`
//! hostile-publish SVC --seed S [--len L]    a publisher; waits for one subscriber
//!   valid               -> sends sample n: `sent <n> <offset>`
//!   forge KIND          -> sends sample n, then overwrites its queued entry: KIND segment
//!                          (no such segment), offset (past the payload), far (2^55), len
//!                          (2^40 - 1 bytes), straddle (crosses the payload's end), index
//!                          (sample index 2^24 - 1, offset and bytes valid): `forged <KIND>`
//!   indices ahead|behind|huge -> submission `write` impossible: `scribbled <how>`
//!   restore             -> the true `write` back: `restored`
//!   violations          -> `violations <n>` (after taking in the returns)
//! ```

use std::io::BufRead;
use std::time::Duration;

use anyhow::anyhow;
use resmem::{PointerOffset, SegmentId};
use resmem_e2e::control::{ControlFile, LEN_BITS};

use super::{Args, Failure, Result, ch, say, send_sample, wait_subscribers};

/// Sample indices the forged returns guess for each offset the scribbler never got.
const GUESSES: u64 = 8;

pub fn control(a: &Args) -> Result<ControlFile> {
    ControlFile::open(&a.need::<String>("--prefix")?, &a.service)
        .map_err(|e| Failure::Other(anyhow!("opening the control object: {e}")))
}

fn commands() -> impl Iterator<Item = Vec<String>> {
    std::io::stdin()
        .lock()
        .lines()
        .map_while(|line| line.ok())
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
}

pub fn scribble(a: &Args) -> Result<()> {
    let subscriber = a.subscriber()?;
    let k = subscriber.slot() as u64;
    let ctl = control(a)?;
    say(format!("joined slot={k}"));
    let mut kept = Vec::new();
    let mut last = None;
    for words in commands() {
        match words[0].as_str() {
            "receive" => {
                let sample = subscriber
                    .receive_timeout(Duration::from_secs(5))
                    .map_err(ch("receive"))?
                    .ok_or_else(|| anyhow!("nothing to receive"))?;
                // The entry we just took tells the sample index the publisher used.
                let read = ctl.read_u64(ctl.sub_read(k))?;
                let idx = ctl.read_u64(ctl.sub_entry(k, read - 1) + 8)? >> LEN_BITS;
                let id = u64::from_le_bytes(sample.payload()[..8].try_into().expect("8 bytes"));
                let offset = sample.offset().as_u64();
                say(format!("got {id} {} {offset} idx={idx}", sample.len()));
                last = Some((offset, idx));
                kept.push(sample);
            }
            "forge" => {
                let (offset, idx) = last.ok_or_else(|| anyhow!("forge before receive"))?;
                let mut entries = vec![
                    (offset, idx),             // valid: we hold it
                    (offset, idx),             // the same offset twice
                    (offset + 64, idx),        // inside the chunk, not its start
                    (u64::MAX, idx),           // no such segment or offset
                    (offset, 0xdead_beef_u64), // no such sample index
                ];
                for other in &words[1..] {
                    let other: u64 = other
                        .parse()
                        .map_err(|_| Failure::Usage(format!("forge: bad offset {other:?}")))?;
                    entries.extend((0..GUESSES).map(|g| (other, g)));
                }
                let write = ctl.read_u64(ctl.comp_write(k))?;
                let read = ctl.read_u64(ctl.comp_read(k))?;
                if write - read + entries.len() as u64 > ctl.completion_size {
                    return Err(anyhow!(
                        "{} entries do not fit the completion queue",
                        entries.len()
                    )
                    .into());
                }
                for (i, &(a, b)) in entries.iter().enumerate() {
                    let at = ctl.comp_entry(k, write + i as u64);
                    ctl.write_u64(at, a)?;
                    ctl.write_u64(at + 8, b)?;
                }
                ctl.write_u64(ctl.comp_write(k), write + entries.len() as u64)?;
                say(format!("forged entries={}", entries.len()));
            }
            "indices" => {
                let write = ctl.read_u64(ctl.sub_write(k))?;
                ctl.write_u64(ctl.sub_read(k), write + 1000)?;
                let read = ctl.read_u64(ctl.comp_read(k))?;
                ctl.write_u64(ctl.comp_write(k), read + ctl.completion_size + 100)?;
                say("scribbled");
            }
            other => {
                return Err(Failure::Usage(format!(
                    "scribble: unknown command {other:?}"
                )));
            }
        }
    }
    // End of input: vanish without giving anything back, as a crash would.
    std::process::exit(0);
}

pub fn publish(a: &Args) -> Result<()> {
    let publisher = a.publisher()?;
    say("created");
    wait_subscribers(&publisher, 1, a.ms("--open-timeout-ms", 20_000)?)?;
    let ctl = control(a)?;
    // The one subscriber's slot: the only active one.
    let k = (0..ctl.max_subscribers)
        .find(|&k| ctl.read_u64(ctl.state(k)).is_ok_and(|w| w & 0xff == 2))
        .ok_or_else(|| anyhow!("no active subscriber slot"))?;
    let (seed, len): (u64, usize) = (a.need("--seed")?, a.or("--len", 4096)?);
    let mut n = 0u64;
    let mut saved_write = None;
    for words in commands() {
        let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        match word(0) {
            "valid" => {
                let (offset, delivered) = send_sample(&publisher, seed, n, len)?;
                if delivered != 1 {
                    return Err(anyhow!("sample {n} reached {delivered} subscribers").into());
                }
                say(format!("sent {n} {offset}"));
                n += 1;
            }
            "forge" => {
                let (_, delivered) = send_sample(&publisher, seed, n, len)?;
                if delivered != 1 {
                    return Err(anyhow!("sample {n} reached {delivered} subscribers").into());
                }
                n += 1;
                let write = ctl.read_u64(ctl.sub_write(k))?;
                let at = ctl.sub_entry(k, write - 1);
                let (a0, b0) = (ctl.read_u64(at)?, ctl.read_u64(at + 8)?);
                let mask = (1u64 << LEN_BITS) - 1;
                let (real_len, idx) = (b0 & mask, b0 >> LEN_BITS);
                let offset = PointerOffset::from_u64(a0);
                let segment = offset.segment_id();
                let payload = publisher
                    .memory()
                    .segment_region(segment)
                    .ok_or_else(|| anyhow!("segment {segment} of a sample is not alive"))?
                    .payload_size() as u64;
                let pack = |len: u64, idx: u64| (len & mask) | (idx << LEN_BITS);
                let (a1, b1) = match word(1) {
                    "segment" => (PointerOffset::new(SegmentId::new(201), 0).as_u64(), b0),
                    "offset" => (PointerOffset::new(segment, payload + 4096).as_u64(), b0),
                    "far" => (PointerOffset::new(segment, 1 << 55).as_u64(), b0),
                    "len" => (a0, pack(mask, idx)),
                    "straddle" => (
                        PointerOffset::new(segment, payload - 8).as_u64(),
                        pack(64, idx),
                    ),
                    "index" => (a0, pack(real_len, (1 << 24) - 1)),
                    other => return Err(Failure::Usage(format!("forge: unknown kind {other:?}"))),
                };
                ctl.write_u64(at, a1)?;
                ctl.write_u64(at + 8, b1)?;
                say(format!("forged {}", word(1)));
            }
            "indices" => {
                let write = ctl.read_u64(ctl.sub_write(k))?;
                let read = ctl.read_u64(ctl.sub_read(k))?;
                let bad = match word(1) {
                    "ahead" => read + ctl.buffer_size + 5,
                    "behind" if read > 0 => read - 1,
                    "huge" => u64::MAX,
                    other => {
                        return Err(Failure::Usage(format!("indices: {other:?} (read {read})")));
                    }
                };
                saved_write.get_or_insert(write);
                ctl.write_u64(ctl.sub_write(k), bad)?;
                say(format!("scribbled {}", word(1)));
            }
            "restore" => {
                let write = saved_write
                    .take()
                    .ok_or_else(|| anyhow!("nothing to restore"))?;
                ctl.write_u64(ctl.sub_write(k), write)?;
                say("restored");
            }
            "violations" => {
                publisher.number_of_subscribers();
                say(format!("violations {}", publisher.violations()));
            }
            "exit" => break,
            other => return Err(Failure::Usage(format!("hostile-publish: {other:?}"))),
        }
    }
    drop(publisher);
    say("dropped");
    Ok(())
}
