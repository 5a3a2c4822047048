//! The compactor's error type.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from block upkeep.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing blocks failed.
    #[error(transparent)]
    Common(#[from] strata_common::Error),

    /// An object-store call failed.
    #[error("object store {operation} {path}: {source}")]
    ObjectStore {
        /// What we were doing.
        operation: &'static str,
        /// The object involved.
        path: String,
        /// The underlying error.
        source: object_store::Error,
    },
}
