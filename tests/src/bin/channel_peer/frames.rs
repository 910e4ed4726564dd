//! The guests' frames (`resmem_guest::frame`) from and to a native process.

use std::alloc::Layout;
use std::time::Duration;

use anyhow::anyhow;
use resmem::ChannelError;
use resmem_e2e::guest_frame as frame;
use resmem_e2e::sample::now_ns;

use super::{Args, Failure, Result, ch, say, wait_eof, wait_subscribers};

/// `frames`: receives and checks frames until `--count` or the publisher's end.
pub fn receive(a: &Args) -> Result<()> {
    let subscriber = a.subscriber()?;
    say(format!("joined slot={}", subscriber.slot()));
    let (count, seed): (u64, u64) = (a.need("--count")?, a.need("--seed")?);
    let key: u8 = a.or("--key", 0)?;
    let hold_after: u64 = a.or("--hold-after", u64::MAX)?;
    let timeout = a.ms("--timeout-ms", 10_000)?;
    let mut held = Vec::new();
    let mut n = 0;
    while n < count {
        let sample = match subscriber.receive_timeout(timeout) {
            Ok(Some(sample)) => sample,
            Ok(None) => return Err(anyhow!("frame {n} did not arrive within {timeout:?}").into()),
            Err(ChannelError::PublisherGone) => break,
            Err(e) => return Err(ch("receive_timeout")(e)),
        };
        let checked = frame::check(sample.payload(), seed, key)
            .map_err(|e| Failure::Mismatch(format!("frame {n}: {e}")))?;
        let latency = now_ns().saturating_sub(checked.stamp_ns);
        n += 1;
        if n > hold_after {
            say(format!("holding {}", checked.seq));
            held.push(sample);
        } else {
            say(format!("frame {} {} {latency}", checked.seq, sample.len()));
        }
    }
    say(format!("frames done count={n}"));
    drop(held);
    Ok(())
}

/// `send-frames`: sends frames of doubling length.
pub fn send(a: &Args) -> Result<()> {
    let publisher = a.publisher()?;
    say("created");
    wait_subscribers(
        &publisher,
        a.or("--wait-subscribers", 0)?,
        a.ms("--open-timeout-ms", 20_000)?,
    )?;
    let (count, len, seed): (u64, usize, u64) =
        (a.need("--count")?, a.need("--len")?, a.need("--seed")?);
    let len = len.max(frame::HEADER);
    let len_max: usize = a.or("--len-max", usize::MAX)?;
    let interval = Duration::from_micros(a.or("--interval-us", 0)?);
    for seq in 0..count {
        let this = len
            .saturating_mul(1 << seq.min(40))
            .min(len_max)
            .max(frame::HEADER);
        let layout = Layout::from_size_align(this, 8).map_err(|e| anyhow!("{e}"))?;
        let mut sample = publisher.loan(layout).map_err(ch("loan"))?;
        frame::fill(sample.payload_mut(), seed, seq, now_ns(), 0);
        let delivered = sample.send().map_err(ch("send"))?;
        say(format!("sent {seq} {this} {delivered}"));
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    say("sent done");
    wait_eof();
    Ok(())
}
