//! Strata's compactor: block upkeep on the object store.
//!
//! Today it enforces retention. Retiring a block is two-phase so that a
//! querier in the middle of reading a block never finds it gone:
//!
//! 1. a block whose newest span is older than the retention period gets a
//!    `deleted.json` marker and loses its `meta.json`: queriers drop it at
//!    their next block-list poll;
//! 2. once the marker is older than the deletion delay (more than two polls),
//!    every object of the block is removed, the marker last.
//!
//! Merging small blocks and joining trace fragments build on the same loop.

mod error;
mod retention;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use error::{Error, Result};
pub use retention::RetentionReport;

/// Compactor settings.
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Blocks whose newest span is older than this are retired.
    pub retention: Duration,
    /// Time between runs.
    pub interval: Duration,
    /// Time between marking a block deleted and removing its objects.
    pub deletion_delay: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(14 * 24 * 3600),
            interval: Duration::from_secs(300),
            deletion_delay: Duration::from_secs(300),
        }
    }
}

/// Runs block upkeep over one object store.
#[derive(Debug)]
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    config: CompactorConfig,
}

impl Compactor {
    /// A compactor over `store`.
    pub fn new(store: Arc<dyn ObjectStore>, config: CompactorConfig) -> Self {
        Self { store, config }
    }

    /// One pass over every tenant, as of `now`.
    pub async fn run_once(&self, now: SystemTime) -> Result<RetentionReport> {
        retention::enforce(self.store.as_ref(), &self.config, now).await
    }

    /// Runs a pass every `interval` until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.run_once(SystemTime::now()).await {
                warn!(error = %e, "compactor pass failed; retrying next interval");
                metrics::counter!("strata_compactor_failures_total").increment(1);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }
}
