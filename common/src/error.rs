//! The crate's error type.
//!
//! Variants are grouped by what a caller should do with them: bad input
//! (answer 400), missing things (404), storage trouble (retry, 503) and bugs or
//! corrupt data (500). [`Error::kind`] exposes that grouping so the HTTP and
//! gRPC layers map errors to status codes in one place.

use object_store::path::Path;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a caller should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or data sent to us is malformed.
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// The storage backend failed; retrying may help.
    Unavailable,
    /// A bug, or data we wrote earlier that no longer reads back.
    Internal,
}

/// Errors from the span model, the block format and storage configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that does not follow OTLP or our API rules.
    #[error("{message}")]
    InvalidInput {
        /// What is wrong, for the client.
        message: String,
    },

    /// An object-store call failed.
    #[error("object store {operation} {path}: {source}")]
    ObjectStore {
        /// What we were doing, e.g. `put`, `get`, `list`.
        operation: &'static str,
        /// The object or prefix involved.
        path: Path,
        /// The underlying error.
        source: object_store::Error,
    },

    /// A block's `meta.json` (or another JSON document we own) is malformed.
    #[error("malformed {what} at {path}: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Where it lives.
        path: Path,
        /// The parse error.
        source: serde_json::Error,
    },

    /// Parquet encoding or decoding failed.
    #[error("parquet {context}: {source}")]
    Parquet {
        /// What we were doing.
        context: String,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },

    /// An Arrow kernel failed.
    #[error("arrow {context}: {source}")]
    Arrow {
        /// What we were doing.
        context: String,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },

    /// Stored data does not match the span schema or is otherwise corrupt.
    #[error("corrupt data: {message}")]
    Corrupt {
        /// What is wrong.
        message: String,
    },

    /// A block this build cannot read (a newer format version, or not ours).
    #[error("block {block}: {message}")]
    UnsupportedFormat {
        /// The block.
        block: crate::ids::BlockId,
        /// Why, and what to do.
        message: String,
    },

    /// A storage URL or other configuration value is unusable.
    #[error("configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },

    /// A blocking task (Parquet encoding, bloom building) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Which group this error falls in.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            } => ErrorKind::NotFound,
            Self::ObjectStore { .. } => ErrorKind::Unavailable,
            Self::Config { .. } => ErrorKind::InvalidInput,
            Self::Json { .. }
            | Self::Parquet { .. }
            | Self::Arrow { .. }
            | Self::Corrupt { .. }
            | Self::UnsupportedFormat { .. }
            | Self::Task(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
        }
    }

    pub(crate) fn arrow(
        context: impl Into<String>,
    ) -> impl FnOnce(arrow::error::ArrowError) -> Self {
        let context = context.into();
        move |source| Self::Arrow { context, source }
    }

    pub(crate) fn parquet(
        context: impl Into<String>,
    ) -> impl FnOnce(parquet::errors::ParquetError) -> Self {
        let context = context.into();
        move |source| Self::Parquet { context, source }
    }

    /// Maps an object-store error to [`Error::ObjectStore`] with what we were
    /// doing and where.
    pub fn object_store(
        operation: &'static str,
        path: &Path,
    ) -> impl FnOnce(object_store::Error) -> Self {
        let path = path.clone();
        move |source| Self::ObjectStore {
            operation,
            path,
            source,
        }
    }
}
