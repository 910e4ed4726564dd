//! # resmem-bridge: channel services across hosts, over Zenoh
//!
//! Shared memory ends at the machine; a bridge per host carries channel services
//! ([`resmem::channel`]) between machines over [Zenoh](https://zenoh.io). An **export** is a
//! local subscriber like any other: each sample goes out as a zenoh message on the key
//! `<prefix>/<service>` (reliable, with a small header: sequence number, length, the bridge's
//! zenoh id), its bytes handed to zenoh in place, and is released once zenoh has them. The
//! link paces the exporter (and so a local publisher under `Overflow::Block`), but never for
//! longer than `max_hold` (default 100 ms): a stalled link makes the exporter drop and count
//! what arrives until the link moves again; without a remote importer a sample is dropped
//! and counted at once. An **import** is the local service's publisher:
//! each message is loaned, copied and sent into local shared memory, the memory growing as
//! payloads grow. Sequence numbers count what was lost on the way (gaps); a bridge ignores
//! messages of its own origin and does not export a service its own importer publishes, so
//! bridges that both export and import never loop.
//!
//! ```no_run
//! use resmem::Config;
//! use resmem_bridge::Bridge;
//!
//! let bridge = Bridge::builder()
//!     .config(&Config::default().prefix("A_"))
//!     .export("camera")
//!     .import("commands")
//!     .listen("tcp/0.0.0.0:7447")
//!     .multicast(false)
//!     .start()?;
//! for s in bridge.stats() {
//!     println!("{} {}: {} samples, {} gaps", s.direction, s.service, s.samples, s.gaps);
//! }
//! # Ok::<(), resmem_bridge::BridgeError>(())
//! ```
//!
//! Subscribers of an imported service see `PublisherGone` when the importing bridge stops;
//! a subscriber that should outlive bridge restarts reopens the service, as
//! `resmem subscribe --follow` does:
//!
//! ```no_run
//! # use resmem::{ChannelError, Config, Subscriber};
//! # use std::time::Duration;
//! # let config = Config::default();
//! loop {
//!     let Ok(subscriber) = Subscriber::builder("commands").config(&config)
//!         .timeout(Duration::from_secs(1)).open() else { continue };
//!     loop {
//!         match subscriber.receive_timeout(Duration::from_secs(1)) {
//!             Ok(Some(sample)) => { /* use sample.payload() */ }
//!             Ok(None) => {}
//!             Err(ChannelError::PublisherGone) => break, // the importer restarted: reopen
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//! }
//! ```

#![warn(missing_docs)]

mod bridge;
mod error;
mod export;
mod held;
mod import;
mod stats;
pub mod wire;

pub use bridge::{Bridge, BridgeBuilder, LogFn};
pub use error::BridgeError;
pub use stats::{Direction, ServiceStats};
