//! The ingester's error type, and its mapping to HTTP and gRPC answers.
//!
//! Refusals a client should retry carry a back-off: HTTP answers 429 or 503
//! with `Retry-After`, gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE` with a
//! `google.rpc.RetryInfo` detail — the signals OTLP exporters act on.

use std::time::Duration;

use http::StatusCode;
use strata_common::ErrorKind;
use tonic_types::{ErrorDetails, StatusExt};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from receiving and storing spans.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: bad protobuf or JSON, bad IDs, bad tenant.
    #[error("{0}")]
    InvalidRequest(String),

    /// The request body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },

    /// The tenant's ingestion rate limit is exhausted.
    #[error("ingestion rate limit exceeded for tenant {tenant}; retry in {retry_after:?}")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// When the request would fit.
        retry_after: Duration,
    },

    /// Unflushed spans in memory are at the configured limit.
    #[error("live spans use {live_bytes} bytes, at the limit of {limit}; retry later")]
    Overloaded {
        /// Bytes of spans held in memory.
        live_bytes: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The write-ahead log and the local block queue are at their disk
    /// budget (usually: the object store has been unreachable for a while).
    #[error(
        "write-ahead log and upload queue use {used} bytes, at the budget of {limit}; retry later"
    )]
    DiskFull {
        /// Bytes used.
        used: u64,
        /// The configured budget.
        limit: u64,
    },

    /// The ingester is shutting down and no longer accepts spans.
    #[error("the ingester is shutting down")]
    ShuttingDown,

    /// Reading or writing the write-ahead log or the local block queue failed.
    #[error("{context}: {source}")]
    Wal {
        /// What we were doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The write-ahead log has been closed (shutting down).
    #[error("the write-ahead log is closed")]
    WalClosed,

    /// Converting, encoding or storing spans failed.
    #[error(transparent)]
    Common(#[from] strata_common::Error),
}

impl Error {
    /// How long a client should wait before retrying, for retryable refusals.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                Some((*retry_after).max(Duration::from_secs(1)))
            }
            Self::Overloaded { .. } => Some(Duration::from_secs(1)),
            Self::DiskFull { .. } => Some(Duration::from_secs(5)),
            Self::ShuttingDown | Self::WalClosed => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The HTTP status code for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } | Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DiskFull { .. } | Self::ShuttingDown | Self::WalClosed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Wal { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The gRPC status for this error, with retry information when retryable.
    pub fn grpc_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            Self::InvalidRequest(_) => Code::InvalidArgument,
            Self::TooLarge { .. } => Code::InvalidArgument,
            Self::RateLimited { .. } | Self::Overloaded { .. } => Code::ResourceExhausted,
            Self::DiskFull { .. } | Self::ShuttingDown | Self::WalClosed | Self::Wal { .. } => {
                Code::Unavailable
            }
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => Code::InvalidArgument,
                ErrorKind::Unavailable => Code::Unavailable,
                ErrorKind::NotFound | ErrorKind::Internal => Code::Internal,
            },
        };
        match self.retry_after() {
            Some(delay) => tonic::Status::with_error_details(
                code,
                self.to_string(),
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => tonic::Status::new(code, self.to_string()),
        }
    }

    /// This error as the shared crate's, for answers through
    /// [`strata_common::LiveTraceSource`].
    pub fn into_common(self) -> strata_common::Error {
        match self {
            Self::Common(inner) => inner,
            other => strata_common::Error::corrupt(other.to_string()),
        }
    }

    /// A short label for the `reason` of rejected-span metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid",
            Self::TooLarge { .. } => "too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "memory_limit",
            Self::DiskFull { .. } => "disk_budget",
            Self::ShuttingDown | Self::WalClosed => "shutting_down",
            Self::Wal { .. } => "wal_error",
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => "invalid",
                _ => "internal",
            },
        }
    }
}
