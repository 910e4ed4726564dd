//! The bridge: one zenoh session, one thread per exported and per imported service.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use resmem::{Config, Overflow, Publisher};
use zenoh::Wait;
use zenoh::key_expr::KeyExpr;
use zenoh::qos::CongestionControl;

use crate::BridgeError;
use crate::export::Export;
use crate::import::{Import, hex};
use crate::stats::{Counters, Direction, ServiceStats};

/// Where log lines go (gaps, local publishers coming and going).
pub type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// What every forwarding thread shares.
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) config: Config,
    pub(crate) zid: [u8; 16],
    pub(crate) imports: HashSet<String>,
    log: LogFn,
}

impl Shared {
    pub(crate) fn log(&self, line: String) {
        (self.log)(&line);
    }
}

/// Configures and starts a [`Bridge`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct BridgeBuilder {
    config: Config,
    exports: Vec<String>,
    imports: Vec<String>,
    listen: Vec<String>,
    connect: Vec<String>,
    key_prefix: String,
    zenoh_config: Option<PathBuf>,
    multicast: bool,
    buffer_size: Option<usize>,
    max_subscribers: Option<usize>,
    overflow: Overflow,
    max_hold: Duration,
    log: LogFn,
}

impl BridgeBuilder {
    /// Where the local services live (their `Config`, whose prefix is the namespace).
    pub fn config(mut self, config: &Config) -> Self {
        self.config = config.clone();
        self
    }

    /// Forwards the local service `service` to `<key prefix>/<service>`.
    pub fn export(mut self, service: &str) -> Self {
        self.exports.push(service.to_owned());
        self
    }

    /// Publishes what arrives on `<key prefix>/<service>` into the local service `service`.
    pub fn import(mut self, service: &str) -> Self {
        self.imports.push(service.to_owned());
        self
    }

    /// A zenoh locator to listen on, e.g. `tcp/0.0.0.0:7447`.
    pub fn listen(mut self, endpoint: &str) -> Self {
        self.listen.push(endpoint.to_owned());
        self
    }

    /// A zenoh locator to connect to (retried until it answers, and after it goes away).
    pub fn connect(mut self, endpoint: &str) -> Self {
        self.connect.push(endpoint.to_owned());
        self
    }

    /// The first chunk of every key. Default `resmem`.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = prefix.to_owned();
        self
    }

    /// A zenoh configuration file to start from (endpoints and scouting given here still
    /// apply on top).
    pub fn zenoh_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.zenoh_config = Some(path.into());
        self
    }

    /// Multicast scouting, on by default as in zenoh's peer mode.
    pub fn multicast(mut self, on: bool) -> Self {
        self.multicast = on;
        self
    }

    /// Queue length of each imported service's subscribers (the channel's default: 16).
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = Some(n);
        self
    }

    /// Subscribers of each imported service (the channel's default: 8).
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = Some(n);
        self
    }

    /// Overflow policy of imported services (the channel's default: drop-oldest).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Longest time an exporter lets one zenoh put keep it from receiving (a stalled link):
    /// then it drops, counted, what its local publisher sends until the link moves again.
    /// Until then the link paces the exporter, and so a local publisher under
    /// `Overflow::Block`, as zenoh paces its own publishers. Default 100 ms.
    pub fn max_hold(mut self, hold: Duration) -> Self {
        self.max_hold = hold;
        self
    }

    /// Where log lines go; default: stderr.
    pub fn on_log(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.log = Arc::new(log);
        self
    }

    fn zenoh_config_value(&self) -> Result<zenoh::Config, BridgeError> {
        let invalid = |e: zenoh::Error| BridgeError::InvalidConfig(e.to_string());
        let mut config = match &self.zenoh_config {
            Some(path) => zenoh::Config::from_file(path).map_err(invalid)?,
            None => {
                let mut config = zenoh::Config::default();
                config.insert_json5("mode", "\"peer\"").map_err(invalid)?;
                config
            }
        };
        let list = |endpoints: &[String]| -> Result<String, BridgeError> {
            if let Some(bad) = endpoints.iter().find(|e| e.contains(['"', '\\'])) {
                return Err(BridgeError::InvalidConfig(format!("endpoint {bad:?}")));
            }
            let quoted: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
            Ok(format!("[{}]", quoted.join(",")))
        };
        if !self.listen.is_empty() {
            config
                .insert_json5("listen/endpoints", &list(&self.listen)?)
                .map_err(invalid)?;
        }
        if !self.connect.is_empty() {
            config
                .insert_json5("connect/endpoints", &list(&self.connect)?)
                .map_err(invalid)?;
            // A restarted peer is found again within about a second.
            config
                .insert_json5(
                    "connect/retry",
                    "{ period_init_ms: 100, period_max_ms: 1000, period_increase_factor: 2 }",
                )
                .map_err(invalid)?;
        }
        if !self.multicast {
            config
                .insert_json5("scouting/multicast/enabled", "false")
                .map_err(invalid)?;
        }
        Ok(config)
    }

    fn key(&self, service: &str) -> Result<KeyExpr<'static>, BridgeError> {
        resmem::validate_name(service, &self.config)
            .map_err(|e| BridgeError::InvalidConfig(format!("service {service:?}: {e}")))?;
        KeyExpr::try_from(format!("{}/{service}", self.key_prefix))
            .map_err(|e| BridgeError::InvalidConfig(format!("key for {service:?}: {e}")))
    }

    fn local_publisher(&self, service: &str) -> Result<Publisher, BridgeError> {
        let mut builder = Publisher::builder(service)
            .config(&self.config)
            .overflow(self.overflow)
            .reclaim_stale(true);
        if let Some(n) = self.buffer_size {
            builder = builder.buffer_size(n);
        }
        if let Some(n) = self.max_subscribers {
            builder = builder.max_subscribers(n);
        }
        builder.create().map_err(|source| BridgeError::Channel {
            service: service.to_owned(),
            source,
        })
    }

    /// Opens the zenoh session, creates the imported services' publishers and starts
    /// forwarding.
    pub fn start(self) -> Result<Bridge, BridgeError> {
        let zenoh_error = |e: zenoh::Error| BridgeError::Zenoh(e.to_string());
        let export_keys = self
            .exports
            .iter()
            .map(|s| self.key(s))
            .collect::<Result<Vec<_>, _>>()?;
        let import_keys = self
            .imports
            .iter()
            .map(|s| self.key(s))
            .collect::<Result<Vec<_>, _>>()?;
        let publishers = self
            .imports
            .iter()
            .map(|s| self.local_publisher(s))
            .collect::<Result<Vec<_>, _>>()?;
        let session = zenoh::open(self.zenoh_config_value()?)
            .wait()
            .map_err(zenoh_error)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            config: self.config.clone(),
            zid: session.zid().to_le_bytes(),
            imports: self.imports.iter().cloned().collect(),
            log: Arc::clone(&self.log),
        });
        let mut bridge = Bridge {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            services: Vec::new(),
            subscribers: Vec::new(),
            session: session.clone(),
        };
        for (service, key) in self.exports.iter().zip(export_keys) {
            // Reliable (zenoh's default for publishers; choosing it is unstable API), waiting
            // for the link: the exporter's watchdog bounds how long a put may hold it.
            let publisher = session
                .declare_publisher(key)
                .congestion_control(CongestionControl::Block)
                .wait()
                .map_err(zenoh_error)?;
            let export = Export {
                service: service.clone(),
                counters: Arc::default(),
                max_hold: self.max_hold,
            };
            bridge.services.push((
                service.clone(),
                Direction::Export,
                Arc::clone(&export.counters),
            ));
            let shared = Arc::clone(&shared);
            bridge.threads.push(
                std::thread::Builder::new()
                    .name(format!("export {service}"))
                    .spawn(move || export.run(&shared, &publisher))?,
            );
        }
        for ((service, key), publisher) in self.imports.iter().zip(import_keys).zip(publishers) {
            let import = Arc::new(Import::new(service.clone(), publisher));
            bridge.services.push((
                service.clone(),
                Direction::Import,
                Arc::clone(&import.counters),
            ));
            let shared = Arc::clone(&shared);
            let subscriber = session
                .declare_subscriber(key)
                .callback(move |message| import.handle(&shared, &message))
                .wait()
                .map_err(zenoh_error)?;
            bridge.subscribers.push(subscriber);
        }
        Ok(bridge)
    }
}

/// A running bridge; dropping it stops forwarding, removes the imported services (their
/// subscribers see `PublisherGone`) and closes the zenoh session.
pub struct Bridge {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    services: Vec<(String, Direction, Arc<Counters>)>,
    /// The imports' (their callbacks own the local publishers).
    subscribers: Vec<zenoh::pubsub::Subscriber<()>>,
    session: zenoh::Session,
}

impl Bridge {
    /// A builder: no services, no endpoints, key prefix `resmem`, multicast scouting on.
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder {
            config: Config::default(),
            exports: Vec::new(),
            imports: Vec::new(),
            listen: Vec::new(),
            connect: Vec::new(),
            key_prefix: "resmem".to_owned(),
            zenoh_config: None,
            multicast: true,
            buffer_size: None,
            max_subscribers: None,
            overflow: Overflow::default(),
            max_hold: Duration::from_millis(100),
            log: Arc::new(|line| eprintln!("resmem-bridge: {line}")),
        }
    }

    /// This bridge's zenoh id, as zenoh prints it (the origin of what it exports).
    pub fn zid(&self) -> String {
        hex(&self.shared.zid)
    }

    /// Every service's counters now.
    pub fn stats(&self) -> Vec<ServiceStats> {
        self.services
            .iter()
            .map(|(service, direction, counters)| ServiceStats::of(service, *direction, counters))
            .collect()
    }

    /// Stops forwarding (as dropping does), waiting for the threads.
    pub fn stop(self) {}
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // No callback runs after this: the local publishers go with them.
        for subscriber in self.subscribers.drain(..) {
            let _ = subscriber.undeclare().wait();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = self.session.close().wait();
    }
}
