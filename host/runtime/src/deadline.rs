//! Wall-clock deadlines for guests, by epoch interruption: a host thread advances the engine's
//! epoch every [`TICK`], and every entry into a guest (a command run, a plugin's
//! instantiation, one `process` call) gets a deadline in ticks. Compiled code checks the epoch
//! at function entries and loop headers, so a guest that spins is stopped within about one
//! tick after its deadline. A guest blocked in a host call (reading stdin, `view.open` waiting
//! up to the `open_timeout` quota) is stopped as soon as that call returns to it.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, Store, Trap};

use crate::ctx::ResmemView;

/// How often the epoch advances: the resolution of every deadline.
pub const TICK: Duration = Duration::from_millis(10);

/// "No deadline": far enough that the epoch never gets there, small enough that wasmtime's
/// `current + delta` cannot overflow.
const NEVER: u64 = u64::MAX / 2;

/// The thread that advances an engine's epoch every [`TICK`]; stopped and joined when dropped.
/// Deadlines ([`arm_deadline`]) need one running for the engine, and an engine with
/// `epoch_interruption` on; an embedder starts it explicitly, nothing else does.
#[derive(Debug)]
#[must_use = "the ticker stops when dropped"]
pub struct EpochTicker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the thread for `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let engine = engine.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("resmem-epoch".into())
            .spawn(move || {
                // Ends when the sender is dropped (or sends).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Gives the next entry into the guest `deadline` of wall-clock time (`None`: unlimited), for
/// compiled code (the epoch: the engine needs `epoch_interruption` and an [`EpochTicker`]) and
/// for host calls that wait on the guest's behalf (its subscribers' pollables). Call it before
/// every entry (an instantiation, a call of an export) that should be limited.
pub fn arm_deadline<T: ResmemView>(store: &mut Store<T>, deadline: Option<Duration>) {
    arm(store, deadline);
    let at = deadline.and_then(|d| std::time::Instant::now().checked_add(d));
    store.data_mut().resmem().ctx.set_deadline(at);
}

/// The epoch part of [`arm_deadline`].
pub(crate) fn arm<T>(store: &mut Store<T>, deadline: Option<Duration>) {
    store.epoch_deadline_trap();
    store.set_epoch_deadline(ticks(deadline));
}

/// The deadline in ticks: rounded up to whole ticks plus one, so a guest always gets at least
/// `deadline`, and is stopped within about one tick after it.
fn ticks(deadline: Option<Duration>) -> u64 {
    deadline.map_or(NEVER, |d| {
        let ticks = d.as_nanos().div_ceil(TICK.as_nanos()) + 1;
        u64::try_from(ticks).unwrap_or(NEVER).min(NEVER)
    })
}

/// Whether an error (a [`crate::HostError`], or anything whose chain of causes holds one or
/// wasmtime's `Trap::Interrupt`) says that the guest ran past its deadline.
pub fn is_deadline_exceeded(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if matches!(
            e.downcast_ref::<crate::HostError>(),
            Some(crate::HostError::DeadlineExceeded(_))
        ) || e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// [`is_deadline_exceeded`] for wasmtime's own error type.
pub(crate) fn interrupted(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use wasmtime::{Instance, Module};

    use super::*;

    /// `(module (func (export "spin") (loop (br 0))))`
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x03, 0x02, 0x01, 0x00, // function section
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop { br 0 }
    ];

    /// `(module (func $spin (loop (br 0))) (start $spin))`
    const SPIN_AT_START: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x03, 0x02, 0x01, 0x00, // function section
        0x08, 0x01, 0x00, // start: function 0
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop { br 0 }
    ];

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(ticks(Some(TICK * 3 + Duration::from_nanos(1))), 5);
        assert_eq!(ticks(Some(TICK * 3)), 4);
        assert_eq!(ticks(Some(Duration::ZERO)), 1);
        assert_eq!(ticks(None), NEVER);
        assert_eq!(ticks(Some(Duration::MAX)), NEVER);
    }

    #[test]
    fn a_spinning_function_is_stopped_at_its_deadline() {
        let engine = crate::new_engine().unwrap();
        let ticker = EpochTicker::start(&engine).unwrap();
        let module = Module::new(&engine, SPIN).unwrap();
        let mut store = Store::new(&engine, ());
        let spin = Instance::new(&mut store, &module, &[])
            .unwrap()
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let deadline = Duration::from_millis(100);
        arm(&mut store, Some(deadline));
        let start = Instant::now();
        let error = spin.call(&mut store, ()).unwrap_err();
        let took = start.elapsed();
        assert!(interrupted(&error), "{error:?}");
        let error = anyhow::Error::from(error).context("calling spin");
        assert!(is_deadline_exceeded(error.as_ref()), "{error:?}");
        assert!(took >= deadline, "stopped early, after {took:?}");
        assert!(took < deadline + Duration::from_secs(2), "took {took:?}");

        // Instantiation runs start functions under the same deadline.
        let module = Module::new(&engine, SPIN_AT_START).unwrap();
        arm(&mut store, Some(deadline));
        let error = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(interrupted(&error), "{error:?}");
        drop(ticker);
    }
}
