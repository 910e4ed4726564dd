//! Services as the CLI sees them: listing, inspecting, removing stale ones.

use std::sync::atomic::Ordering;

use super::layout::{Control, Facts, SLOT_FREE, Validated, validate_raw};
use super::{ChannelError, Overflow, names};
use crate::backend::Mapping;
use crate::{AccessMode, Config, ManageError, StaleRemoval, error::manage_error};

/// Names of every service under `config` (those whose control object exists), sorted.
pub fn list_services(config: &Config) -> Result<Vec<String>, ManageError> {
    let objects = config
        .get_backend()
        .list()
        .map_err(|e| manage_error("listing the objects", &e))?;
    let mut services: Vec<String> = objects
        .iter()
        .filter_map(|os| names::parse_control(os, config))
        .map(str::to_owned)
        .collect();
    services.sort();
    services.dedup();
    Ok(services)
}

/// Whether the publisher of `service` lives (holds the control object's lock).
pub fn is_publisher_alive(service: &str, config: &Config) -> Result<bool, ManageError> {
    names::validate(service, config)?;
    match config
        .get_backend()
        .is_locked(&names::control_name(service, config))
    {
        Ok(locked) => Ok(locked),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(manage_error("probing the publisher lock", &e)),
    }
}

/// One occupied subscriber slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Slot index.
    pub slot: usize,
    /// Process id the subscriber recorded (informational).
    pub pid: u32,
    /// Whether it holds its lock object (a dead or departed one awaits reclaim).
    pub alive: bool,
    /// Samples in its queue.
    pub queued: u64,
    /// Samples it received and has not dropped.
    pub borrowed: u32,
}

/// A service's facts and state, as its control object tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Service name.
    pub service: String,
    /// Whether the publisher lives.
    pub publisher_alive: bool,
    /// Process id of the publisher (informational).
    pub publisher_pid: u32,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Most subscribers.
    pub max_subscribers: usize,
    /// Queue length per subscriber.
    pub buffer_size: usize,
    /// Most samples a subscriber may hold.
    pub max_borrowed: usize,
    /// Samples sent so far.
    pub sent: u64,
    /// Returned entries the publisher refused so far.
    pub violations: u64,
    /// Occupied slots.
    pub subscribers: Vec<SubscriberInfo>,
}

/// Maps `service`'s control object read-only and validates it; one still being created is
/// `DoesNotExist`.
fn open_validated(service: &str, config: &Config) -> Result<(Mapping, Facts), ChannelError> {
    let mapping = config
        .get_backend()
        .open(&names::control_name(service, config), AccessMode::Read)
        .map_err(|e| super::error::io_error(&e, "opening the control object"))?;
    // SAFETY: the mapping lives until the end of this function.
    match unsafe { validate_raw(mapping.as_ptr(), mapping.len(), config.get_prefix()) }? {
        Validated::Ready(facts) => Ok((mapping, facts)),
        Validated::NotReady => Err(ChannelError::DoesNotExist),
    }
}

/// Reads `service`'s control object (validated; counters clamped to what is possible).
pub fn service_info(service: &str, config: &Config) -> Result<ServiceInfo, ChannelError> {
    names::validate(service, config)?;
    let backend = config.get_backend();
    let (mapping, facts) = open_validated(service, config)?;
    // SAFETY: validated: the mapping holds total_size bytes; it outlives `control`.
    let control = unsafe { Control::new(mapping.as_ptr(), facts.geometry) };
    let mut subscribers = Vec::new();
    for k in 0..facts.geometry.max_subscribers {
        let slot = &control.slot(k).control;
        if slot.state.load(Ordering::Acquire) == SLOT_FREE {
            continue;
        }
        let lock = names::lock_name(service, facts.epoch, k, config);
        subscribers.push(SubscriberInfo {
            slot: k,
            pid: slot.pid.load(Ordering::Relaxed),
            alive: backend.is_locked(&lock).unwrap_or(false),
            queued: control.submission(k).len_hint(),
            borrowed: control
                .slot(k)
                .sub_read
                .borrowed
                .load(Ordering::Relaxed)
                .min(facts.geometry.max_borrowed as u32),
        });
    }
    let header = control.header();
    Ok(ServiceInfo {
        service: service.to_owned(),
        publisher_alive: header.closed.load(Ordering::Acquire) == 0
            && mapping.is_locked_by_other().unwrap_or(false),
        publisher_pid: facts.publisher_pid,
        overflow: Overflow::from_code(facts.overflow),
        max_subscribers: facts.geometry.max_subscribers,
        buffer_size: facts.geometry.buffer_size,
        max_borrowed: facts.geometry.max_borrowed,
        sent: header.live.sent.load(Ordering::Relaxed),
        violations: header.live.violations.load(Ordering::Relaxed),
        subscribers,
    })
}

/// Whether `service`'s control object says its publisher dropped normally, nobody holds its
/// lock now and no subscriber is still draining it: a new publisher may take the name.
pub(crate) fn closed_and_unattended(service: &str, config: &Config) -> bool {
    let backend = config.get_backend();
    let Ok((mapping, facts)) = open_validated(service, config) else {
        return false;
    };
    // SAFETY: validated: the mapping holds total_size bytes and outlives `control`.
    let control = unsafe { Control::new(mapping.as_ptr(), facts.geometry) };
    let draining = (0..facts.geometry.max_subscribers).any(|k| {
        control.slot(k).control.state.load(Ordering::Acquire) != SLOT_FREE
            && backend
                .is_locked(&names::lock_name(service, facts.epoch, k, config))
                .unwrap_or(true)
    });
    control.header().closed.load(Ordering::Acquire) != 0
        && !mapping.is_locked_by_other().unwrap_or(true)
        && !draining
}

/// Removes `service` if, and only if, its publisher is gone: its control object, its memory
/// and every subscriber lock object nobody holds. Takes the control object's lock first
/// (a live publisher holds it), as [`remove_stale`](crate::remove_stale) does for memories.
/// Lock objects of live subscribers of a dead publisher stay until those subscribers drop.
pub fn remove_stale_service(service: &str, config: &Config) -> Result<StaleRemoval, ManageError> {
    names::validate(service, config)?;
    let backend = config.get_backend();
    let control_name = names::control_name(service, config);
    let lock = match backend.try_lock(&control_name) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => return Ok(StaleRemoval::OwnerAlive),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(manage_error("taking the publisher lock", &e)),
    };
    if let Some(lock) = &lock
        && !lock
            .is_linked()
            .map_err(|e| manage_error("checking the locked object's name", &e))?
    {
        // Another remover took it first.
        return Ok(StaleRemoval::NotFound);
    }
    let memory = crate::remove_stale(service, config)?;
    if memory == StaleRemoval::OwnerAlive && lock.is_some() {
        // A plain memory's live owner (or a publisher being created): not ours.
        return Ok(StaleRemoval::OwnerAlive);
    }
    let mut removed = lock.is_some() || memory == StaleRemoval::Removed;
    if let Ok(objects) = backend.list() {
        for os in objects
            .iter()
            .filter(|os| names::parse_lock(os, config) == Some(service))
        {
            if let Ok(Some(held)) = backend.try_lock(os) {
                removed |= backend.remove(os).unwrap_or(false);
                drop(held);
            }
        }
    }
    if lock.is_some() {
        backend
            .remove(&control_name)
            .map_err(|e| manage_error("removing the control object", &e))?;
    }
    drop(lock);
    Ok(if removed {
        StaleRemoval::Removed
    } else {
        StaleRemoval::NotFound
    })
}
