//! Strata's query side.
//!
//! ```text
//! HTTP :3200 ─▶ api ─▶ TraceFinder ─┬─▶ BlockList (meta.json, polled) ─▶ BloomCache ─▶ BlockScanner (DataFusion)
//!                                   └─▶ LiveTraceSource (ingesters)
//! ```
//!
//! - [`Querier`]: owns the block list and the trace finder, serves the API.
//! - [`BlockList`]: known blocks per tenant, refreshed by polling the store.
//! - [`TraceFinder`]: trace-by-ID with time, bloom and statistics pruning.
//! - [`tempopb`]: Tempo's API messages (generated).

mod api;
mod block_scan;
mod blocklist;
mod bloom_cache;
mod error;
mod tempo_json;
pub mod tempopb;
mod trace_by_id;
pub mod traceql;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use object_store::ObjectStore;
use strata_common::LiveTraceSource;
use tokio_util::sync::CancellationToken;

pub use api::TENANT_HEADER;
pub use blocklist::BlockList;
pub use error::{Error, Result};
pub use trace_by_id::{FoundTrace, TimeRange, TraceFinder};

/// Querier settings.
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// How often the block list is refreshed from the store.
    pub blocklist_poll: Duration,
    /// Bytes of bloom-filter shards kept in memory.
    pub bloom_cache_bytes: u64,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            blocklist_poll: Duration::from_secs(15),
            bloom_cache_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The query component: block discovery plus the Tempo HTTP API.
#[derive(Debug)]
pub struct Querier {
    config: QuerierConfig,
    blocks: Arc<BlockList>,
    finder: TraceFinder,
}

impl Querier {
    /// A querier reading blocks from `store` and live spans from `live`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        live: Vec<Arc<dyn LiveTraceSource>>,
        config: QuerierConfig,
    ) -> Result<Self> {
        let blocks = Arc::new(BlockList::new(store));
        let finder = TraceFinder::new(Arc::clone(&blocks), config.bloom_cache_bytes, live)?;
        Ok(Self {
            config,
            blocks,
            finder,
        })
    }

    /// The block list (e.g. to announce blocks written in-process).
    pub fn block_list(&self) -> &Arc<BlockList> {
        &self.blocks
    }

    /// The trace-by-ID engine.
    pub fn finder(&self) -> &TraceFinder {
        &self.finder
    }

    /// The HTTP routes of the query API.
    pub fn router(self: Arc<Self>) -> Router {
        api::router(self)
    }

    /// Polls the block list until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let interval = self.config.blocklist_poll;
        Arc::clone(&self.blocks)
            .run_poll_loop(interval, cancel)
            .await;
    }
}
