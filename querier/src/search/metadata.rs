//! A bounded cache of blocks' trace tables and attribute summaries.
//!
//! Both are small next to a block's spans (a few KiB for a fresh block,
//! tens of MiB for the trace table of a large compacted one) and immutable,
//! so a search reads each once and keeps it until evicted by size: repeated
//! searches over the same blocks then read only span columns.

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

/// Options for a cache kept in one shard.
///
/// quick_cache splits its capacity evenly over its shards (by default four
/// per core) and refuses any item heavier than one shard's share, so a
/// compacted block's trace table of tens of MiB would never be admitted and
/// would be decoded again by every query. These caches hold few, large items
/// looked up a handful of times per query, so one shard costs no contention.
fn single_shard(capacity_bytes: u64) -> quick_cache::Options {
    quick_cache::OptionsBuilder::new()
        .shards(1)
        .estimated_items_capacity(1_024)
        .weight_capacity(capacity_bytes)
        .build()
        .unwrap_or_else(|_| unreachable!("every required option is set"))
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
            tables: Cache::with_options(
                single_shard(tables),
                TableWeight,
                Default::default(),
                Default::default(),
            ),
            summaries: Cache::with_options(
                single_shard(summaries),
                SummaryWeight,
                Default::default(),
                Default::default(),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    struct Own;

    impl Weighter<u32, u64> for Own {
        fn weight(&self, _: &u32, value: &u64) -> u64 {
            *value
        }
    }

    #[test]
    fn an_item_of_most_of_the_capacity_is_kept() {
        // With quick_cache's default sharding this item exceeds a shard's
        // share and is dropped on insert.
        let cache: Cache<u32, u64, Own> = Cache::with_options(
            single_shard(64 << 20),
            Own,
            Default::default(),
            Default::default(),
        );
        cache.insert(1, 40 << 20);
        assert_eq!(cache.get(&1), Some(40 << 20));
    }
}
