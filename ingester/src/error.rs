//! The ingester's error type, and its mapping to HTTP and gRPC answers.

use strata_common::ErrorKind;

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

    /// Accepting the request would exceed the live-span memory limit; the
    /// client should retry after blocks have been flushed.
    #[error("live spans use {live_bytes} bytes, over the limit of {limit}; retry later")]
    Overloaded {
        /// Bytes of unflushed spans held now.
        live_bytes: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The ingester is shutting down and no longer accepts spans.
    #[error("the ingester is shutting down")]
    ShuttingDown,

    /// Converting, encoding or storing spans failed.
    #[error(transparent)]
    Common(#[from] strata_common::Error),
}

impl Error {
    /// The HTTP status code for this error.
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The gRPC status for this error.
    pub fn grpc_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            Self::InvalidRequest(_) => tonic::Status::invalid_argument(message),
            Self::TooLarge { .. } => tonic::Status::resource_exhausted(message),
            // RESOURCE_EXHAUSTED and UNAVAILABLE are the codes OTLP clients retry.
            Self::Overloaded { .. } => tonic::Status::resource_exhausted(message),
            Self::ShuttingDown => tonic::Status::unavailable(message),
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => tonic::Status::invalid_argument(message),
                ErrorKind::Unavailable => tonic::Status::unavailable(message),
                ErrorKind::NotFound | ErrorKind::Internal => tonic::Status::internal(message),
            },
        }
    }

    /// A short label for the `reason` of rejected-span metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid",
            Self::TooLarge { .. } => "too_large",
            Self::Overloaded { .. } => "overloaded",
            Self::ShuttingDown => "shutting_down",
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => "invalid",
                _ => "internal",
            },
        }
    }
}
