//! A bounded cache of bloom-filter shards.
//!
//! Blocks are immutable, so a shard never goes stale: it is fetched once and
//! kept until evicted by size.

use std::sync::Arc;

use object_store::ObjectStore;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use strata_common::bloom::{BloomShard, shard_for};
use strata_common::storage::get_bytes;
use strata_common::{BlockId, BlockMeta, TraceId, paths};

use crate::error::Result;

#[derive(Debug, Clone, Copy)]
struct ShardWeight;

impl Weighter<(BlockId, u32), Arc<BloomShard>> for ShardWeight {
    fn weight(&self, _key: &(BlockId, u32), shard: &Arc<BloomShard>) -> u64 {
        shard.size_bytes() as u64 + 64
    }
}

/// Bloom shards by block and shard number, bounded by total bytes.
#[derive(Debug)]
pub(crate) struct BloomCache {
    cache: Cache<(BlockId, u32), Arc<BloomShard>, ShardWeight>,
}

impl BloomCache {
    /// A cache holding at most `capacity_bytes` of shards.
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        // quick_cache sizes its tables from an item estimate; assume ~16 KiB shards.
        let estimated_items = usize::try_from((capacity_bytes / 16_384).max(16)).unwrap_or(16);
        Self {
            cache: Cache::with_weighter(estimated_items, capacity_bytes, ShardWeight),
        }
    }

    /// Whether the block may contain the trace, from the cache alone:
    /// `None` when its shard is not cached.
    pub(crate) fn check_cached(&self, meta: &BlockMeta, trace_id: &TraceId) -> Option<bool> {
        let shard = shard_for(trace_id, meta.bloom.shard_count);
        self.cache
            .get(&(meta.block_id, shard))
            .map(|bloom| bloom.may_contain(trace_id))
    }

    /// Whether the block may contain the trace (false: it certainly does
    /// not), fetching and caching its shard.
    pub(crate) async fn fetch_and_check(
        &self,
        store: &dyn ObjectStore,
        meta: &BlockMeta,
        trace_id: &TraceId,
    ) -> Result<bool> {
        let shard = shard_for(trace_id, meta.bloom.shard_count);
        let path = paths::bloom_path(&meta.tenant, meta.block_id, shard);
        let bytes = get_bytes(store, &path).await?;
        let bloom = Arc::new(BloomShard::from_bytes(bytes.to_vec())?);
        let found = bloom.may_contain(trace_id);
        self.cache.insert((meta.block_id, shard), bloom);
        Ok(found)
    }
}
