//! Wake-ups: every party binds a unix datagram socket in the abstract namespace, named from a
//! random nonce it publishes in the control object. A waiter announces itself in a shared
//! counter, re-checks its condition and sleeps in `poll(2)`; the other side, after a SeqCst
//! fence, sends one byte only when the counter is non-zero, so a busy party pays no syscall.
//! A file descriptor so that `tokio::io::unix::AsyncFd` and a host's `wasi:io/poll`
//! pollables can wait on the same thing, and next to the publisher's pidfd.
//!
//! Beside each socket is a [`Bell`]: a futex word in the control object with its own waiter
//! count, for blocking waits of busy parties. Ringing it is one `FUTEX_WAKE` and waiting one
//! `FUTEX_WAIT` (non-private, so across processes), where a datagram costs a socket buffer,
//! a `poll` and the reads that drain it: on a stream of small samples that was a third of a
//! subscriber's CPU. A futex cannot be waited on next to a pidfd or by a reactor, so those
//! waits keep the socket, and a waker rings both when both have waiters.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Duration;

/// The abstract socket name of nonce `nonce` (`role` tells publisher and subscriber apart).
pub(crate) fn address(nonce: u64, role: char) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("resmem.{nonce:016x}.{role}").as_bytes())
}

/// A bound, non-blocking wake-up socket.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
}

impl Notifier {
    /// Binds a fresh socket; draws nonces until one is free. Returns it and its nonce.
    pub(crate) fn bind(role: char) -> io::Result<(Self, u64)> {
        let mut last = None;
        for _ in 0..16 {
            let nonce = super::nonce();
            match UnixDatagram::bind_addr(&address(nonce, role)?) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return Ok((Self { socket }, nonce));
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free socket name")))
    }

    /// Sends one wake-up byte; a full or vanished receiver is not an error (it either has
    /// wake-ups pending or is gone, which liveness probes find).
    pub(crate) fn wake(&self, to: &SocketAddr) -> bool {
        self.socket.send_to_addr(&[1], to).is_ok()
    }

    /// Waits until a wake-up arrives or `timeout` passes; drains what arrived.
    pub(crate) fn wait(&self, timeout: Duration) {
        self.wait_or(timeout, None);
    }

    /// As [`Notifier::wait`], also returning when `also` becomes readable (a pidfd whose
    /// process exited); returns whether it did.
    pub(crate) fn wait_or(&self, timeout: Duration, also: Option<BorrowedFd<'_>>) -> bool {
        // Rounded up to whole milliseconds: a 0 ms poll would spin for shorter timeouts.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as u32;
        let timeout = nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
        let mut fds = vec![nix::poll::PollFd::new(
            self.socket.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Some(fd) = also {
            fds.push(nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN));
        }
        // EINTR or readiness: either way the caller re-checks its condition.
        let _ = nix::poll::poll(&mut fds, timeout);
        self.drain();
        fds.get(1)
            .and_then(nix::poll::PollFd::revents)
            .is_some_and(|events| !events.is_empty())
    }

    /// Discards pending wake-ups.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 16];
        while self.socket.recv(&mut buf).is_ok() {}
    }

    /// A second handle on the socket (for registering with a reactor).
    #[cfg(feature = "tokio")]
    pub(crate) fn try_clone(&self) -> io::Result<UnixDatagram> {
        self.socket.try_clone()
    }
}

/// Announces a waiter in `counter` for as long as it lives (also when a future is dropped).
pub(crate) struct WaiterGuard<'a>(&'a AtomicU32);

impl<'a> WaiterGuard<'a> {
    /// Counts us in, then fences: the caller re-checks its condition after this.
    pub(crate) fn enter(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The waker's side of the handshake: after publishing its change, whether anybody waits.
pub(crate) fn anybody_waiting(counter: &AtomicU32) -> bool {
    fence(Ordering::SeqCst);
    anybody_waiting_fenced(counter)
}

/// [`anybody_waiting`] for a waker that has fenced (SeqCst) since its change already, e.g.
/// once for all the bells and sockets it looks at.
pub(crate) fn anybody_waiting_fenced(counter: &AtomicU32) -> bool {
    counter.load(Ordering::Relaxed) != 0
}

/// A futex word and its waiter count, both in shared memory: any value a hostile peer writes
/// only causes spurious wake-ups (CPU, bounded by the waiter's re-checks) or a missed one
/// (waits are bounded).
#[derive(Clone, Copy)]
pub(crate) struct Bell<'a> {
    pub(crate) waiters: &'a AtomicU32,
    pub(crate) word: &'a AtomicU32,
}

impl<'a> Bell<'a> {
    /// Counts us in, fences, and reads the word: the caller re-checks its condition, then
    /// waits on the guard (a ring after the re-check changes the word, so the wait returns).
    pub(crate) fn enter(self) -> BellGuard<'a> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        BellGuard {
            seen: self.word.load(Ordering::SeqCst),
            bell: self,
        }
    }

    /// The waker's side, after publishing its change: wakes every waiter, if any.
    pub(crate) fn ring(self) {
        fence(Ordering::SeqCst);
        self.ring_fenced();
    }

    /// [`Bell::ring`] for a waker that has fenced (SeqCst) since its change already, e.g.
    /// once for all the bells and sockets it looks at.
    pub(crate) fn ring_fenced(self) {
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.word.fetch_add(1, Ordering::SeqCst);
            // SAFETY: FUTEX_WAKE only uses the address as a key (a live atomic of a shared
            // mapping); no memory is read or written through it.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.word.as_ptr(),
                    libc::FUTEX_WAKE,
                    i32::MAX,
                    std::ptr::null::<libc::timespec>(),
                    std::ptr::null::<u32>(),
                    0,
                );
            }
        }
    }
}

/// A waiter counted in a [`Bell`] for as long as it lives.
pub(crate) struct BellGuard<'a> {
    bell: Bell<'a>,
    seen: u32,
}

impl BellGuard<'_> {
    /// Sleeps until the bell rings (since `enter`), a signal, or `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        // SAFETY: FUTEX_WAIT reads the u32 at the address (a live atomic of a shared mapping,
        // borrowed for the call) and compares it with `seen`; `ts` lives on our stack for the
        // call. EAGAIN, ETIMEDOUT and EINTR all return to a caller that re-checks.
        let result = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.bell.word.as_ptr(),
                libc::FUTEX_WAIT,
                self.seen,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0,
            )
        };
        if result != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            if !matches!(errno, Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR)) {
                // No futex here (ENOSYS, a seccomp filter): sleep instead of spinning; the
                // caller re-checks after at most its slice.
                std::thread::sleep(timeout.min(Duration::from_millis(1)));
            }
        }
    }
}

impl Drop for BellGuard<'_> {
    fn drop(&mut self) {
        self.bell.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether process `pid` has surely exited: its pidfd is readable, or (without one) the pid
/// names no process. `false` when unsure.
pub(crate) fn has_exited(pidfd: Option<&OwnedFd>, pid: u32) -> bool {
    match pidfd {
        Some(fd) => {
            let mut fds = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) == Ok(1)
                && fds[0]
                    .revents()
                    .is_some_and(|events| events.contains(nix::poll::PollFlags::POLLIN))
        }
        None => libc::pid_t::try_from(pid).is_ok_and(|pid| {
            pid > 0
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(nix::errno::Errno::ESRCH)
        }),
    }
}

/// A pidfd of process `pid` (readable once it exits), or `None` where the kernel has none
/// or the pid is not ours to watch (another pid namespace, gone already).
pub(crate) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok().filter(|&p| p > 0)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory
    // is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a descriptor the kernel just opened for us, owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
