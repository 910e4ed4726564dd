//! What can go wrong when a bridge starts.

use thiserror::Error;

/// Why a bridge could not start (or a message was refused).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// A zenoh endpoint, key prefix or configuration value is not valid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Zenoh failed (opening the session, declaring a publisher or subscriber).
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// The local service could not be created or opened.
    #[error("service {service:?}: {source}")]
    Channel {
        /// The local service.
        service: String,
        /// What the channel said.
        #[source]
        source: resmem::ChannelError,
    },
    /// A message without a valid bridge header.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A forwarding thread could not be started.
    #[error("starting a thread: {0}")]
    Thread(#[from] std::io::Error),
}
