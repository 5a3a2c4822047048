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
mod grpc;
pub mod search;
mod search_api;
mod tempo_json;
pub mod tempopb;
mod trace_by_id;
pub mod traceql;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use object_store::ObjectStore;
use strata_common::LiveTraceSource;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use api::TENANT_HEADER;
pub use blocklist::BlockList;
pub use error::{Error, Result};
pub use search::{SearchOutcome, SearchProgress, SearchRequest, Searcher};
pub use trace_by_id::{FoundTrace, TimeRange, TraceFinder};

/// A dedicated tokio runtime for searches and tag lookups (their DataFusion
/// scans and TraceQL evaluation), as InfluxDB 3 does: CPU-heavy queries run
/// on its threads, so the runtime that receives spans stays responsive.
#[derive(Debug)]
struct QueryRuntime {
    handle: tokio::runtime::Handle,
    /// Taken on drop, to shut down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

/// Stack of a query thread: evaluation recurses over the query's tree,
/// whose depth the parser bounds (`traceql::MAX_NESTING`).
const QUERY_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

impl QueryRuntime {
    fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("strata-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one blocks; let its
        // threads finish in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Querier settings.
#[derive(Debug, Clone)]
pub struct QuerierConfig {
    /// How often the block list is refreshed from the store.
    pub blocklist_poll: Duration,
    /// Bytes of bloom-filter shards kept in memory.
    pub bloom_cache_bytes: u64,
    /// Bytes of blocks' trace tables and attribute summaries kept in memory.
    pub metadata_cache_bytes: u64,
    /// DataFusion's memory pool for query execution.
    pub query_memory_bytes: usize,
    /// Threads of the query runtime (0: one per CPU).
    pub query_threads: usize,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            blocklist_poll: Duration::from_secs(15),
            bloom_cache_bytes: 256 * 1024 * 1024,
            metadata_cache_bytes: 256 * 1024 * 1024,
            query_memory_bytes: 1024 * 1024 * 1024,
            query_threads: 0,
        }
    }
}

/// The query component: block discovery plus the Tempo HTTP and gRPC APIs.
#[derive(Debug)]
pub struct Querier {
    config: QuerierConfig,
    blocks: Arc<BlockList>,
    finder: TraceFinder,
    searcher: Arc<Searcher>,
    runtime: QueryRuntime,
}

impl Querier {
    /// A querier reading blocks from `store` and live spans from `live`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        live: Vec<Arc<dyn LiveTraceSource>>,
        config: QuerierConfig,
    ) -> Result<Self> {
        let blocks = Arc::new(BlockList::new(Arc::clone(&store)));
        let scanner = Arc::new(block_scan::BlockScanner::new(
            store,
            config.query_memory_bytes,
        )?);
        let finder = TraceFinder::with_scanner(
            Arc::clone(&blocks),
            config.bloom_cache_bytes,
            live.clone(),
            Arc::clone(&scanner),
        );
        let searcher = Arc::new(Searcher::new(
            Arc::clone(&blocks),
            scanner,
            Arc::new(search::BlockMetadataCache::new(config.metadata_cache_bytes)),
            live,
        ));
        let runtime = QueryRuntime::new(config.query_threads)?;
        Ok(Self {
            config,
            blocks,
            finder,
            searcher,
            runtime,
        })
    }

    /// The search engine.
    pub fn searcher(&self) -> &Arc<Searcher> {
        &self.searcher
    }

    /// Runs query work on the query runtime, away from the runtime that
    /// serves ingest: a heavy search cannot starve receivers. The work is
    /// aborted when the returned future is dropped (the client went away,
    /// as Grafana does on every keystroke of an autocompleted query).
    pub async fn run_query<F>(&self, work: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        AbortOnDropHandle::new(self.runtime.handle.spawn(work))
            .await
            .map_err(|e| Error::Internal(format!("query task failed: {e}")))
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
