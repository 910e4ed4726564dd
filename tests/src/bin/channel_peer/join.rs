//! `slow-join SVC`: a subscriber joining in the core's order (subscriber.rs `join` and
//! `try_open`), done by hand with std only, that stops where preemption can stop a real one:
//! after it took the slot (lock object created and locked, state `SLOT_ACTIVE`), before it
//! published its wake-up nonce and bumped `joins`.
//!
//! ```text
//! -> claimed              slot 0 taken; waits for a stdin line
//! <- go
//! -> joined               nonce, pid published, joins bumped
//! -> waiting              waiter count 1; then one wake-up datagram is awaited for 2 s:
//! -> woken | not woken
//! ```
//!
//! It leaves without cleaning up, as a killed subscriber would: the publisher reclaims slot 0
//! and removes its lock object.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use anyhow::{Context, anyhow};
use resmem_e2e::control::JOINS;

use super::{Args, Result, hostile::control, say, wait_line};

/// `SLOT_ACTIVE` of layout.rs, in the state word's low byte.
const SLOT_ACTIVE: u64 = 2;

pub fn slow_join(a: &Args) -> Result<()> {
    let prefix: String = a.need("--prefix")?;
    let ctl = control(a)?;
    let k = 0;
    let epoch = ctl.facts.epoch;
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(format!(
            "/dev/shm/{prefix}{}__sub{epoch:016x}_{k}",
            a.service
        ))
        .context("creating the lock object of slot 0")?;
    lock.set_len(4096)?;
    lock.lock()?;
    let nonce = 0x5107_0000_0000_0000 | u64::from(std::process::id());
    ctl.write_u64(ctl.state(k), (nonce << 8) | SLOT_ACTIVE)?;
    say("claimed");
    wait_line()?;
    let name = format!("resmem.{nonce:016x}.s");
    let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
    ctl.write_u32(ctl.pid(k), std::process::id())?;
    ctl.write_u64(ctl.nonce(k), nonce)?;
    ctl.write_u64(JOINS, ctl.read_u64(JOINS)? + 1)?;
    say("joined");
    ctl.write_u32(ctl.waiters(k), 1)?;
    say("waiting");
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 16];
    match socket.recv(&mut buf) {
        Ok(_) => say("woken"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            say("not woken")
        }
        Err(e) => return Err(anyhow!("waiting for a wake-up: {e}").into()),
    }
    drop(lock);
    Ok(())
}
