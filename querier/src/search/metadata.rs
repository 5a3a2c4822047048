//! A bounded cache of blocks' trace tables and attribute summaries.
//!
//! Both are small next to a block's spans (a few KiB to a few MiB) and
//! immutable, so a search reads each once and keeps it until evicted by
//! size: repeated searches over the same blocks then read only span
//! columns.

use std::sync::Arc;

use object_store::ObjectStore;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use strata_common::block::{BlockSummary, TraceTable, read_summary, read_trace_table};
use strata_common::{BlockId, BlockMeta};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy)]
struct TableWeight;

impl Weighter<BlockId, Arc<TraceTable>> for TableWeight {
    fn weight(&self, _: &BlockId, table: &Arc<TraceTable>) -> u64 {
        table.memory_size() as u64 + 64
    }
}

#[derive(Debug, Clone, Copy)]
struct SummaryWeight;

impl Weighter<BlockId, Arc<BlockSummary>> for SummaryWeight {
    fn weight(&self, _: &BlockId, summary: &Arc<BlockSummary>) -> u64 {
        summary.memory_size() as u64 + 64
    }
}

/// Trace tables and summaries by block.
#[derive(Debug)]
pub(crate) struct BlockMetadataCache {
    tables: Cache<BlockId, Arc<TraceTable>, TableWeight>,
    summaries: Cache<BlockId, Arc<BlockSummary>, SummaryWeight>,
}

impl BlockMetadataCache {
    /// A cache of at most `capacity_bytes`, three quarters for trace tables.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let tables = capacity_bytes / 4 * 3;
        let summaries = capacity_bytes - tables;
        Self {
            tables: Cache::with_weighter(4_096, tables, TableWeight),
            summaries: Cache::with_weighter(4_096, summaries, SummaryWeight),
        }
    }

    /// A block's trace table.
    pub(crate) async fn trace_table(
        &self,
        store: &dyn ObjectStore,
        meta: &BlockMeta,
    ) -> Result<Arc<TraceTable>> {
        self.tables
            .get_or_insert_async(&meta.block_id, async {
                Ok::<_, Error>(Arc::new(read_trace_table(store, meta).await?))
            })
            .await
    }

    /// A block's attribute summary.
    pub(crate) async fn summary(
        &self,
        store: &dyn ObjectStore,
        meta: &BlockMeta,
    ) -> Result<Arc<BlockSummary>> {
        self.summaries
            .get_or_insert_async(&meta.block_id, async {
                Ok::<_, Error>(Arc::new(read_summary(store, meta).await?))
            })
            .await
    }
}
