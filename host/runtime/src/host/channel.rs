//! `resmem:memory/channel` calls. As for memories: look the handle up, check every argument
//! against the guest's own records and quotas, then touch shared memory (SIGBUS contained).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use resmem::channel::layout::Geometry;
use resmem::{Publisher, SegmentBudget, SegmentId, Subscriber};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynPollable;

use super::{Outcome, shield, truncated, window_address};
use crate::bindings::channel_api::{ChannelConfig, Host, HostPublisher, HostSubscriber, Sample};
use crate::bindings::types::{Error, Layout as WitLayout, PointerOffset as WitOffset};
use crate::channel::{GuestPublisher, GuestSubscriber};
use crate::convert::{self, channel_error, overflow, range};
use crate::ctx::ResmemCtxView;
use crate::sigbus;
use crate::window::GuestSegments;

impl Host for ResmemCtxView<'_> {}

/// Page size the control object is rounded to when charged (the native one rounds the same).
const CHARGE_PAGE: u64 = 4096;

impl ResmemCtxView<'_> {
    fn create_publisher(
        &mut self,
        service: &str,
        config: ChannelConfig,
    ) -> Result<GuestPublisher, Error> {
        self.check_name(service)?;
        let quotas = self.ctx.policy.quotas();
        if self.ctx.usage.publishers >= quotas.publishers {
            return Err(Error::QuotaExceeded(format!(
                "{} publishers at once",
                quotas.publishers
            )));
        }
        let limit = quotas.channel_config;
        for (what, value) in [
            ("max-subscribers", config.max_subscribers),
            ("buffer-size", config.buffer_size),
            ("max-loans", config.max_loans),
            ("max-borrowed", config.max_borrowed),
        ] {
            if value > limit {
                return Err(Error::QuotaExceeded(format!(
                    "{what} {value}, at most {limit}"
                )));
            }
        }
        let hint = self.check_chunk_layout(config.memory.max_chunk_layout_hint)?;
        let chunks = usize::try_from(config.memory.max_number_of_chunks_hint)
            .ok()
            .filter(|&n| n as u64 <= quotas.live_chunks)
            .ok_or_else(|| {
                Error::QuotaExceeded(format!(
                    "{} chunks hinted, at most {}",
                    config.memory.max_number_of_chunks_hint, quotas.live_chunks
                ))
            })?;
        let geometry = Geometry::new(
            config.max_subscribers as usize,
            config.buffer_size as usize,
            config.max_borrowed as usize,
        )
        .map_err(channel_error)?;
        let control_bytes = (geometry.total_size as u64).next_multiple_of(CHARGE_PAGE);
        if !self.ctx.budget.reserve(control_bytes) {
            return Err(Error::QuotaExceeded(format!(
                "the channel's control object needs {control_bytes} bytes of the {}-byte \
                 shared-memory quota",
                quotas.shm_bytes
            )));
        }
        let created = shield(|| {
            Publisher::builder(service)
                .config(self.ctx.policy.config())
                .max_subscribers(config.max_subscribers as usize)
                .buffer_size(config.buffer_size as usize)
                .max_loans(config.max_loans as usize)
                .max_borrowed(config.max_borrowed as usize)
                .overflow(overflow(config.overflow))
                .max_chunk_layout_hint(hint)
                .max_number_of_chunks_hint(chunks.max(1))
                .allocation_strategy(convert::strategy(config.memory.allocation_strategy))
                .budget(Arc::clone(&self.ctx.budget) as Arc<dyn SegmentBudget>)
                .create()
                .map_err(channel_error)
        });
        match created {
            Ok(publisher) => Ok(GuestPublisher {
                segments: GuestSegments::new(Arc::clone(&self.ctx.window)),
                loans: HashMap::new(),
                control_bytes,
                budget: Arc::clone(&self.ctx.budget),
                publisher,
            }),
            Err(e) => {
                self.ctx.budget.release(control_bytes);
                Err(e)
            }
        }
    }

    fn open_subscriber(
        &mut self,
        service: &str,
        timeout_ms: u32,
    ) -> Result<GuestSubscriber, Error> {
        self.check_name(service)?;
        let quotas = self.ctx.policy.quotas();
        if self.ctx.usage.subscribers >= quotas.subscribers {
            return Err(Error::QuotaExceeded(format!(
                "{} subscribers at once",
                quotas.subscribers
            )));
        }
        let timeout = self
            .ctx
            .deadline
            .left(Duration::from_millis(u64::from(timeout_ms)).min(quotas.open_timeout));
        let subscriber = shield(|| {
            Subscriber::builder(service)
                .config(self.ctx.policy.config())
                .timeout(timeout)
                .open()
                .map_err(channel_error)
        })?;
        Ok(GuestSubscriber {
            segments: GuestSegments::new(Arc::clone(&self.ctx.window)),
            held: HashMap::new(),
            deadline: self.ctx.deadline.clone(),
            subscriber,
        })
    }
}

/// A guest offset as the key of its records.
fn key(offset: WitOffset) -> Result<(resmem::PointerOffset, u64), Error> {
    let offset = convert::offset(offset)?;
    Ok((offset, offset.as_u64()))
}

fn not_a_loan(offset: resmem::PointerOffset) -> Error {
    Error::InvalidOffset(format!("{offset} is not an unsent loan of this publisher"))
}

fn not_a_sample(offset: resmem::PointerOffset) -> Error {
    Error::InvalidOffset(format!("{offset} is not a sample this subscriber holds"))
}

/// Address of byte `at` of a loan, after checking `[at, at + len)` is inside it.
fn loan_address(
    guest: &GuestPublisher,
    offset: WitOffset,
    at: u64,
    len: u64,
) -> Result<(*mut u8, SegmentId), Error> {
    let (offset, packed) = key(offset)?;
    let loan = guest.loans.get(&packed).ok_or_else(|| not_a_loan(offset))?;
    range(at, len, loan.capacity() as u64, "loan")?;
    let id = offset.segment_id();
    if let Some(region) = guest.publisher.memory().segment_region(id) {
        guest.segments.check(id.value(), region.sequence())?;
    }
    Ok((loan.as_ptr().wrapping_add(at as usize), id))
}

/// Address of byte `at` of a held sample, after checking `[at, at + len)` is inside it.
fn sample_address(
    guest: &GuestSubscriber,
    offset: WitOffset,
    at: u64,
    len: u64,
) -> Result<(*const u8, SegmentId), Error> {
    let (offset, packed) = key(offset)?;
    let sample = guest.sample(packed).ok_or_else(|| not_a_sample(offset))?;
    range(at, len, sample.len() as u64, "sample")?;
    let id = offset.segment_id();
    if let Some(region) = guest.subscriber.segment_region(id) {
        guest.segments.check(id.value(), region.sequence())?;
    }
    Ok((sample.as_ptr().wrapping_add(at as usize), id))
}

impl HostPublisher for ResmemCtxView<'_> {
    fn create(
        &mut self,
        service: String,
        config: ChannelConfig,
    ) -> Outcome<Resource<GuestPublisher>> {
        let publisher = match self.create_publisher(&service, config) {
            Ok(publisher) => publisher,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(publisher)?;
        self.ctx.usage.publishers += 1;
        Ok(Ok(handle))
    }

    fn loan(&mut self, this: Resource<GuestPublisher>, layout: WitLayout) -> Outcome<WitOffset> {
        let layout = match self.check_chunk_layout(layout) {
            Ok(layout) => layout,
            Err(e) => return Ok(Err(e)),
        };
        let max = self.ctx.policy.quotas().loans;
        if self.ctx.usage.loans >= max {
            return Ok(Err(Error::QuotaExceeded(format!("{max} unsent loans"))));
        }
        let guest = self.table.get_mut(&this)?;
        let (loaned, faulted) =
            sigbus::shielded(|| guest.publisher.loan(layout).map(|s| s.detach()));
        let loan = match loaned {
            Ok(loan) => loan,
            Err(e) => return Ok(Err(channel_error(e))),
        };
        let offset = loan.offset();
        // Recorded even after a fault, so it is returned with the publisher.
        if let Some(stale) = guest.loans.insert(offset.as_u64(), loan) {
            // Two live loans never share a chunk; keep the books straight regardless.
            drop(guest.publisher.reattach(stale));
            self.ctx.usage.loans -= 1;
        }
        guest.sweep_window();
        self.ctx.usage.loans += 1;
        if faulted {
            return Ok(Err(truncated()));
        }
        Ok(Ok(convert::to_wit_offset(offset)))
    }

    fn write(
        &mut self,
        this: Resource<GuestPublisher>,
        offset: WitOffset,
        at: u64,
        data: Vec<u8>,
    ) -> Outcome<()> {
        let len = data.len() as u64;
        self.write_to(&this, &data, |guest| loan_address(guest, offset, at, len))
    }

    fn map(&mut self, this: Resource<GuestPublisher>, offset: WitOffset) -> Outcome<u32> {
        let guest = self.table.get_mut(&this)?;
        Ok(map_loan(guest, offset))
    }

    fn send(
        &mut self,
        this: Resource<GuestPublisher>,
        offset: WitOffset,
        len: u64,
    ) -> Outcome<u32> {
        let block = self
            .ctx
            .deadline
            .left(self.ctx.policy.quotas().block_timeout);
        let guest = self.table.get_mut(&this)?;
        let (offset, packed) = match key(offset) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let Some(loan) = guest.loans.get(&packed) else {
            return Ok(Err(not_a_loan(offset)));
        };
        // Checked before the loan is taken out: a refused send keeps it.
        let capacity = loan.capacity();
        let Some(len) = usize::try_from(len).ok().filter(|&l| l <= capacity) else {
            return Ok(Err(Error::InvalidLayout(format!(
                "length {len} exceeds the loan's {capacity} bytes"
            ))));
        };
        let Some(loan) = guest.loans.remove(&packed) else {
            return Ok(Err(not_a_loan(offset)));
        };
        self.ctx.usage.loans -= 1;
        let blocks = guest.publisher.overflow() == resmem::Overflow::Block;
        let (sent, faulted) = sigbus::shielded(|| {
            let mut sample = guest.publisher.reattach(loan)?;
            sample.set_len(len);
            if blocks {
                sample.send_timeout(block)
            } else {
                sample.send()
            }
        });
        guest.sweep_window();
        if faulted {
            return Ok(Err(truncated()));
        }
        Ok(sent
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(channel_error))
    }

    fn discard(&mut self, this: Resource<GuestPublisher>, offset: WitOffset) -> Outcome<()> {
        let guest = self.table.get_mut(&this)?;
        let (offset, packed) = match key(offset) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let Some(loan) = guest.loans.remove(&packed) else {
            return Ok(Err(not_a_loan(offset)));
        };
        let ((), faulted) = sigbus::shielded(|| drop(guest.publisher.reattach(loan)));
        guest.sweep_window();
        self.ctx.usage.loans -= 1;
        Ok(if faulted { Err(truncated()) } else { Ok(()) })
    }

    fn number_of_subscribers(&mut self, this: Resource<GuestPublisher>) -> wasmtime::Result<u32> {
        let guest = self.table.get(&this)?;
        let (count, _) = sigbus::shielded(|| guest.publisher.number_of_subscribers());
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn drop(&mut self, this: Resource<GuestPublisher>) -> wasmtime::Result<()> {
        let guest = self.table.delete(this)?;
        self.ctx.usage.publishers -= 1;
        self.ctx.usage.loans -= guest.loans.len() as u64;
        let ((), _) = sigbus::shielded(|| drop(guest));
        Ok(())
    }
}

/// `publisher.map`: the loan's guest address in the window.
fn map_loan(guest: &mut GuestPublisher, offset: WitOffset) -> Result<u32, Error> {
    let (offset, packed) = key(offset)?;
    if !guest.loans.contains_key(&packed) {
        return Err(not_a_loan(offset));
    }
    let id = offset.segment_id();
    let region = guest
        .publisher
        .memory()
        .segment_region(id)
        .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not in a live segment")))?;
    let start = guest.segments.map(id.value(), &region)?;
    window_address(start, offset.offset())
}

/// `subscriber.map`: the held sample's guest address in the window.
fn map_sample(guest: &mut GuestSubscriber, offset: WitOffset) -> Result<u32, Error> {
    let (offset, packed) = key(offset)?;
    if guest.sample(packed).is_none() {
        return Err(not_a_sample(offset));
    }
    let id = offset.segment_id();
    let region = guest
        .subscriber
        .segment_region(id)
        .ok_or_else(|| Error::InvalidOffset(format!("{offset} is not in a mapped segment")))?;
    let start = guest.segments.map(id.value(), &region)?;
    window_address(start, offset.offset())
}

impl HostSubscriber for ResmemCtxView<'_> {
    fn open(&mut self, service: String, timeout_ms: u32) -> Outcome<Resource<GuestSubscriber>> {
        let subscriber = match self.open_subscriber(&service, timeout_ms) {
            Ok(subscriber) => subscriber,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(subscriber)?;
        self.ctx.usage.subscribers += 1;
        Ok(Ok(handle))
    }

    fn receive(&mut self, this: Resource<GuestSubscriber>) -> Outcome<Option<Sample>> {
        let max = self.ctx.policy.quotas().borrowed;
        if self.ctx.usage.borrowed >= max {
            return Ok(Err(Error::QuotaExceeded(format!(
                "{max} received samples held at once"
            ))));
        }
        let guest = self.table.get_mut(&this)?;
        let (received, faulted) = sigbus::shielded(|| {
            guest
                .subscriber
                .receive()
                .map(|sample| sample.map(|s| s.detach()))
        });
        let sample = match received {
            Ok(Some(sample)) => sample,
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(channel_error(e))),
        };
        let offset = sample.offset();
        let len = sample.len() as u64;
        guest.held.entry(offset.as_u64()).or_default().push(sample);
        self.ctx.usage.borrowed += 1;
        guest.sweep_window();
        if faulted {
            return Ok(Err(truncated()));
        }
        Ok(Ok(Some(Sample {
            offset: convert::to_wit_offset(offset),
            len,
        })))
    }

    fn read(
        &mut self,
        this: Resource<GuestSubscriber>,
        offset: WitOffset,
        at: u64,
        len: u64,
    ) -> Outcome<Vec<u8>> {
        self.read_from(&this, len, |guest| sample_address(guest, offset, at, len))
    }

    fn map(&mut self, this: Resource<GuestSubscriber>, offset: WitOffset) -> Outcome<u32> {
        let guest = self.table.get_mut(&this)?;
        Ok(map_sample(guest, offset))
    }

    fn release(&mut self, this: Resource<GuestSubscriber>, offset: WitOffset) -> Outcome<()> {
        let guest = self.table.get_mut(&this)?;
        let (offset, packed) = match key(offset) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let Some(samples) = guest.held.get_mut(&packed) else {
            return Ok(Err(not_a_sample(offset)));
        };
        let Some(sample) = samples.pop() else {
            return Ok(Err(not_a_sample(offset)));
        };
        if samples.is_empty() {
            guest.held.remove(&packed);
        }
        self.ctx.usage.borrowed -= 1;
        let ((), faulted) = sigbus::shielded(|| drop(guest.subscriber.reattach(sample)));
        Ok(if faulted { Err(truncated()) } else { Ok(()) })
    }

    fn subscribe(
        &mut self,
        this: Resource<GuestSubscriber>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(self.table, this)
    }

    fn is_publisher_alive(&mut self, this: Resource<GuestSubscriber>) -> wasmtime::Result<bool> {
        let guest = self.table.get(&this)?;
        let (alive, _) = sigbus::shielded(|| guest.subscriber.is_publisher_alive());
        Ok(alive)
    }

    fn drop(&mut self, this: Resource<GuestSubscriber>) -> wasmtime::Result<()> {
        let guest = self.table.delete(this)?;
        self.ctx.usage.subscribers -= 1;
        self.ctx.usage.borrowed -= guest.held.values().map(|v| v.len() as u64).sum::<u64>();
        let ((), _) = sigbus::shielded(|| drop(guest));
        Ok(())
    }
}
