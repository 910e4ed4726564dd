//! Containing SIGBUS: a peer that truncates a segment file makes every later access past the
//! new end raise SIGBUS, which wasmtime does not handle on Linux and which would kill the host.
//!
//! One process-wide handler covers two cases and chains everything else to the previous
//! handler (the Rust runtime's, or the default action):
//! - **Host copies and calls.** `guarded` runs a copy with its source or target range noted in a
//!   thread-local. A fault inside it maps an anonymous zero page over the faulting page, so
//!   the copy runs to its end, and reports the fault; the caller discards the bytes, fails the
//!   call and marks the segment broken. The zero page only ever replaces bytes of a segment
//!   that is gone anyway. `shielded` (crate-internal) does the same for a whole host call into
//!   the native core; only `BUS_ADRERR` faults (truncation) are contained.
//! - **Guest windows.** A fault inside a registered guest reservation maps PROT_NONE over the
//!   page; the guest instruction runs again, faults with SIGSEGV inside its linear memory, and
//!   wasmtime turns that into a trap of that guest alone.
//!
//! Everything the handler touches is async-signal-safe: const-initialised thread-locals,
//! atomics, and the `mmap` system call.
//!
//! Nothing here that could turn an embedder's own fault into zeros is public:
//!
//! ```compile_fail
//! // `shielded` is crate-internal.
//! let ((), _) = resmem_host::sigbus::shielded(|| ());
//! ```

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, compiler_fence};

/// Guest reservations the handler recognises at once; each guest linear memory takes one.
const MAX_WINDOWS: usize = 4096;

struct Range {
    start: AtomicUsize,
    end: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Range = Range {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
};

static WINDOWS: [Range; MAX_WINDOWS] = [EMPTY; MAX_WINDOWS];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static WINDOW_FAULTS: AtomicU64 = AtomicU64::new(0);
static COPY_FAULTS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// The handler that was installed before ours; written once, before ours is installed.
struct Previous(std::cell::UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written exactly once inside `INSTALL.call_once`, before the handler that reads it
// can run; read-only afterwards.
unsafe impl Sync for Previous {}
static PREVIOUS: Previous = Previous(std::cell::UnsafeCell::new(MaybeUninit::zeroed()));

thread_local! {
    /// The range the current thread's guarded copy touches: `(start, end)`, empty when none.
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Set by the handler when the guarded copy faulted.
    static FAULTED: Cell<bool> = const { Cell::new(false) };
}

/// A guarded copy touched pages a peer truncated away: its bytes are meaningless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared-memory object was truncated by a peer (SIGBUS)")]
pub struct Truncated;

/// Faults contained so far: `(in guest windows, in host copies)`.
pub fn contained_faults() -> (u64, u64) {
    (
        WINDOW_FAULTS.load(Ordering::Relaxed),
        COPY_FAULTS.load(Ordering::Relaxed),
    )
}

/// Installs the handler once per process; later calls do nothing.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE_SIZE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: a zeroed sigaction is a valid value to fill in; the handler has the
        // SA_SIGINFO signature; PREVIOUS is written here only, before our handler runs.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            let previous = (*PREVIOUS.0.get()).as_mut_ptr();
            if libc::sigaction(libc::SIGBUS, &action, previous) != 0 {
                // Without the handler a truncating peer can still kill the host, as before.
                eprintln!(
                    "resmem: cannot install the SIGBUS handler: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
}

/// A guest reservation known to the handler; forgotten on drop.
#[derive(Debug)]
pub(crate) struct WindowGuard(Option<usize>);

impl Drop for WindowGuard {
    fn drop(&mut self) {
        if let Some(index) = self.0 {
            WINDOWS[index].end.store(0, Ordering::Release);
            WINDOWS[index].start.store(0, Ordering::Release);
        }
    }
}

/// Registers `[start, end)` as a guest reservation. When all slots are taken the reservation
/// is not contained (a SIGBUS in it would kill the host as without this module); the count is
/// far above the guests one host runs.
pub(crate) fn register_window(start: usize, end: usize) -> WindowGuard {
    install();
    for (index, range) in WINDOWS.iter().enumerate() {
        if range
            .start
            .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            range.end.store(end, Ordering::Release);
            return WindowGuard(Some(index));
        }
    }
    WindowGuard(None)
}

/// Runs `copy`, which must only touch shared memory inside `[start, start + len)`, and
/// reports whether any of it faulted with SIGBUS.
pub(crate) fn guarded<T>(
    start: usize,
    len: usize,
    copy: impl FnOnce() -> T,
) -> Result<T, Truncated> {
    match guard(start, start.saturating_add(len), copy) {
        (value, false) => Ok(value),
        (_, true) => Err(Truncated),
    }
}

/// Runs `work`, a host call into the native core, with the SIGBUS faults of truncated objects
/// on this thread contained; returns its value and whether it faulted (then the value is
/// built on zeroed bytes: keep whatever it holds, e.g. a chunk, but report the call as
/// failed).
///
/// Crate-internal on purpose. What it does, exactly: while `work` runs, a SIGBUS on this
/// thread whose code is `BUS_ADRERR` (an access past the end of a file-backed mapping's
/// object, what truncation causes) at any address, other than an instruction fetch, gets an anonymous zero page mapped over the
/// faulting page, and the access resumes. Any other SIGBUS goes to the previous handler. It is
/// only sound because of what its callers run: the host's calls into the native core and the
/// drops of the host's own stores, which touch no file-backed memory but the resmem objects
/// the host mapped (management headers, segment trailers, chunk bytes); such a page reads as
/// zeros from then on, and the object's checks (magic, checksum, trailer) fail afterwards. It
/// must never wrap code that touches other file mappings (an embedder's, wasmtime's code
/// images): their pages would silently become zeros.
pub(crate) fn shielded<T>(work: impl FnOnce() -> T) -> (T, bool) {
    guard(0, usize::MAX, work)
}

/// Sets the thread's guard to `[start, end)` around `work`. Nests: an inner guard narrows the
/// range for its duration, and its fault counts for the outer one too.
fn guard<T>(start: usize, end: usize, work: impl FnOnce() -> T) -> (T, bool) {
    install();
    let outer = GUARD.with(|g| g.replace((start, end)));
    let outer_faulted = FAULTED.with(|f| f.replace(false));
    compiler_fence(Ordering::SeqCst);
    let value = work();
    compiler_fence(Ordering::SeqCst);
    GUARD.with(|g| g.set(outer));
    let faulted = FAULTED.with(|f| f.replace(outer_faulted || f.get()));
    (value, faulted)
}

/// Reads the first and the last byte of `[start, start + len)`: a truncated object always
/// loses its tail, so this tells whether the whole range is still backed.
pub(crate) fn probe(start: usize, len: usize) -> Result<(), Truncated> {
    if len == 0 {
        return Ok(());
    }
    guarded(start, len, || {
        // SAFETY: the caller passes a mapped range; a truncated tail faults and is handled.
        unsafe {
            std::ptr::read_volatile(start as *const u8);
            std::ptr::read_volatile((start + len - 1) as *const u8);
        }
    })
}

fn in_window(addr: usize) -> bool {
    WINDOWS.iter().any(|r| {
        let start = r.start.load(Ordering::Acquire);
        start != 0 && start <= addr && addr < r.end.load(Ordering::Acquire)
    })
}

/// Maps an anonymous page over the page holding `addr`.
fn replace_page(addr: usize, prot: libc::c_int) -> bool {
    let page_size = PAGE_SIZE.load(Ordering::Relaxed);
    let page = addr & !(page_size - 1);
    // The callers only pass an address that faulted inside a guest reservation this module
    // registered, or inside a guarded range (a host copy's own segment range, or, for
    // `shielded`, the resmem objects a host call touches: see there).
    // SAFETY: see above; MAP_FIXED replaces exactly that page and nothing else.
    let result = unsafe {
        libc::mmap(
            page as *mut libc::c_void,
            page_size,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    result != libc::MAP_FAILED
}

extern "C" fn on_sigbus(
    signum: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; si_addr is the
    // faulting address for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    // SAFETY: as above; si_code is set for every signal.
    let code = unsafe { (*info).si_code };
    let (start, end) = GUARD.with(Cell::get);
    // Only BUS_ADRERR is a truncated object; a machine-check or alignment fault is not ours,
    // and neither is a fault fetching instructions (a truncated library's code pages).
    // SAFETY: the kernel passes the interrupted context to SA_SIGINFO handlers.
    let fetch = unsafe { instruction_fetch(context) };
    if code == libc::BUS_ADRERR
        && !fetch
        && start <= addr
        && addr < end
        && replace_page(addr, libc::PROT_READ | libc::PROT_WRITE)
    {
        FAULTED.with(|f| f.set(true));
        COPY_FAULTS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if code == libc::BUS_ADRERR && in_window(addr) && replace_page(addr, libc::PROT_NONE) {
        WINDOW_FAULTS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: PREVIOUS was filled by sigaction before this handler was installed.
    unsafe { chain(signum, info, context) }
}

/// Whether the fault happened fetching an instruction (x86-64 page-fault error code, bit 4);
/// elsewhere `false`, as data and code faults cannot be told apart.
///
/// # Safety
/// `context` must be the `ucontext_t` the kernel passed to the signal handler.
#[cfg(target_arch = "x86_64")]
unsafe fn instruction_fetch(context: *mut libc::c_void) -> bool {
    const FETCH: i64 = 1 << 4;
    // SAFETY: forwarded contract; gregs[REG_ERR] holds the fault's error code.
    let error = unsafe {
        (*(context as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize]
    };
    error & FETCH != 0
}

/// See the x86-64 version.
///
/// # Safety
/// None needed; kept `unsafe` for one signature across targets.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn instruction_fetch(_context: *mut libc::c_void) -> bool {
    false
}

/// Hands a fault that is not ours to the handler installed before us.
///
/// # Safety
/// Must only be called from the signal handler with its arguments.
unsafe fn chain(signum: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: see the function's contract; PREVIOUS is initialised and no longer written.
    unsafe {
        let previous = &*(*PREVIOUS.0.get()).as_ptr();
        let handler = previous.sa_sigaction;
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            // Restore the default action and return: the access faults again and the process
            // ends with SIGBUS, exactly as without us.
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signum, &default, std::ptr::null_mut());
        } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            f(signum, info, context);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(signum);
        }
    }
}
