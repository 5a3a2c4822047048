//! The compactor's error type.

use object_store::path::Path;
use strata_common::BlockId;

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

    /// Another compactor took over a lease this job held (the job stalled
    /// past the lease TTL); the job stops without committing.
    #[error("lease on block {block} lost to another compactor")]
    LeaseLost {
        /// The block whose lease was lost.
        block: BlockId,
    },

    /// The compactor is shutting down; the job was abandoned.
    #[error("compaction cancelled by shutdown")]
    Cancelled,

    /// A compaction task panicked or was cancelled.
    #[error("compaction task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Maps an object-store error to [`Error::ObjectStore`] with context.
pub(crate) fn store_error(
    operation: &'static str,
    path: &Path,
) -> impl FnOnce(object_store::Error) -> Error {
    let path = path.to_string();
    move |source| Error::ObjectStore {
        operation,
        path,
        source,
    }
}
