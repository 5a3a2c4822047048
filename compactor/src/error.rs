//! The compactor's error type.

use strata_common::BlockId;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from block upkeep.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing blocks failed.
    #[error(transparent)]
    Common(#[from] strata_common::Error),

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
