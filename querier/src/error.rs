//! The querier's error type, and its mapping to HTTP answers.

use axum::http::StatusCode;
use strata_common::ErrorKind;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from answering queries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed request: bad trace ID, bad time range, bad tenant.
    #[error("{0}")]
    BadRequest(String),

    /// Reading blocks or metadata failed.
    #[error(transparent)]
    Common(#[from] strata_common::Error),

    /// DataFusion planning or execution failed.
    #[error("query execution: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    /// Encoding a response failed.
    #[error("encoding response: {0}")]
    Encode(String),

    /// The querier itself failed (a query task panicked, a runtime could
    /// not start).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status code for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Common(e) => match e.kind() {
                ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::DataFusion(_) | Self::Encode(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The gRPC status for this error: the HTTP status mapped as Tempo's
    /// frontend maps it, with the same message.
    pub fn grpc_status(&self) -> tonic::Status {
        let code = match self.http_status() {
            StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.to_string())
    }
}
