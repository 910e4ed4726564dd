//! What a guest may do: its namespace and its quotas.

use std::time::Duration;

use resmem::Config;

/// The namespace guests get when the host is given none. It is not a prefix of the native
/// default (`resmem_`)'s other users, so guests cannot reach native memories by accident.
pub const DEFAULT_NAMESPACE: &str = "resmem_guest_";

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Limits per guest (per store). Every one is enforced before the work is done, and a
/// violation is the WIT error `quota-exceeded`.
///
/// Not constructible with a struct literal outside this crate (more limits may come): start
/// from [`Quotas::default`] and assign the fields to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quotas {
    /// Bytes of all data segments of all the guest's memories together.
    pub shm_bytes: u64,
    /// Largest chunk (and largest chunk-layout hint).
    pub chunk_bytes: u64,
    /// Chunks the guest holds at once, over all its memories.
    pub live_chunks: u64,
    /// Memories the guest owns at once.
    pub memories: u32,
    /// Views the guest has open at once.
    pub views: u32,
    /// Offsets registered at once, over all the guest's views.
    pub registrations: u64,
    /// Bytes one `read` or `write` call may move.
    pub io_bytes: u64,
    /// Longest wait a guest may ask of `view.open`.
    pub open_timeout: Duration,
    /// Bytes of the guest's wasm32 address space kept for the zero-copy window (`map`), at
    /// the top; the guest heap may grow to the rest. Rounded down to 64 KiB; at least 64 MiB
    /// of heap always remain.
    pub window_bytes: u64,
    /// Channel publishers the guest holds at once.
    pub publishers: u32,
    /// Channel subscribers the guest holds at once.
    pub subscribers: u32,
    /// Unsent loans at once, over all the guest's publishers.
    pub loans: u64,
    /// Received samples held at once, over all the guest's subscribers.
    pub borrowed: u64,
    /// Largest `max-subscribers`, `buffer-size`, `max-loans` or `max-borrowed` of one
    /// channel (they size its shared control object, which counts against `shm_bytes`).
    pub channel_config: u32,
    /// Longest a `send` under `overflow: block` waits for a full subscriber (then that
    /// subscriber misses the sample), and never past the guest's deadline.
    pub block_timeout: Duration,
    /// Bytes each of the guest's own linear memories may grow to. Enforced by wasmtime:
    /// `memory.grow` past it fails (a Rust guest aborts on the failed allocation: a trap).
    pub wasm_memory_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            shm_bytes: GIB,
            chunk_bytes: 256 * MIB,
            live_chunks: 1 << 16,
            memories: 64,
            views: 64,
            registrations: 1 << 16,
            io_bytes: 16 * MIB,
            open_timeout: Duration::from_secs(30),
            window_bytes: crate::window::DEFAULT_WINDOW,
            publishers: 16,
            subscribers: 64,
            loans: 1024,
            borrowed: 1024,
            channel_config: 4096,
            block_timeout: Duration::from_secs(1),
            wasm_memory_bytes: GIB,
        }
    }
}

/// Namespace, quotas, deadline and the native configuration (backend, permissions) guests
/// run under.
#[derive(Debug, Clone)]
pub struct Policy {
    namespace: String,
    quotas: Quotas,
    deadline: Option<Duration>,
    config: Config,
}

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            quotas: Quotas::default(),
            deadline: None,
            config: Config::default(),
        }
    }

    /// The namespace (native `Config` prefix) the guest's names are relative to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The guest's limits.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Longest wall-clock time one entry into a guest may take: a whole command run, a
    /// plugin's instantiation, or one call of a plugin's `process`. A guest still running then
    /// is stopped (a trap) and its memories and views are released with its store. `None`
    /// (the default) lets guests run as long as they like.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The native configuration: `Config` with the namespace as its prefix.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::builder().build()
    }
}

#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
/// Configures a [`Policy`]; starts from the defaults.
pub struct PolicyBuilder {
    namespace: String,
    quotas: Quotas,
    deadline: Option<Duration>,
    config: Config,
}

impl PolicyBuilder {
    /// The prefix of every OS object a guest creates or opens.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// The limits the guest runs under.
    pub fn quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// See [`Policy::deadline`]; `None` for no deadline.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Backend, suffix, permissions and prefaulting; the prefix is replaced by the namespace.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The policy.
    pub fn build(self) -> Policy {
        let config = self.config.prefix(&self.namespace);
        Policy {
            namespace: self.namespace,
            quotas: self.quotas,
            deadline: self.deadline,
            config,
        }
    }
}
