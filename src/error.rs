//! The binary's error type: start-up and wiring failures.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Result alias for the binary.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Why Strata could not start or run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),

    /// The configuration file could not be read or parsed.
    #[error("configuration file {}: {message}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A listening socket could not be opened.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },

    /// A server stopped with an error.
    #[error("{what} server: {message}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The error.
        message: String,
    },

    /// A server task ended before shutdown was requested.
    #[error("a server stopped unexpectedly: {0}")]
    ServerStopped(String),

    /// Opening storage or building a component failed.
    #[error(transparent)]
    Common(#[from] strata_common::Error),

    /// Building the querier failed.
    #[error(transparent)]
    Querier(#[from] strata_querier::Error),

    /// Installing the metrics exporter failed.
    #[error("metrics exporter: {0}")]
    Metrics(String),

    /// Opening or running the ingester failed.
    #[error(transparent)]
    Ingester(#[from] strata_ingester::Error),

    /// A compactor pass failed.
    #[error(transparent)]
    Compactor(#[from] strata_compactor::Error),
}
