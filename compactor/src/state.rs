//! One tenant's blocks as the compactor sees them at the start of a pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use strata_common::catalog::{
    BlockObjects, CompactedMeta, TENANT_INDEX_VERSION, TenantBlocks, TenantIndex,
    list_block_objects, read_compacted_meta, read_listed_metas,
};
use strata_common::{BlockId, BlockMeta, TenantId};

use crate::error::Result;
use crate::unix_nano;

/// How many `meta.compacted.json` reads run at once.
const READ_CONCURRENCY: usize = 16;

/// A tenant's blocks: live, compacted (marked), and replaced by a live
/// block but not yet marked (a compactor died between the two steps).
#[derive(Debug, Default)]
pub struct TenantState {
    /// When the listing started.
    pub listed_at_unix_nano: u64,
    /// Every block prefix and its objects.
    pub objects: BTreeMap<BlockId, BlockObjects>,
    /// Live blocks.
    pub live: BTreeMap<BlockId, Arc<BlockMeta>>,
    /// Marked blocks.
    pub compacted: BTreeMap<BlockId, CompactedMeta>,
    /// Blocks a live block replaces that still carry `meta.json`, with the
    /// replacement.
    pub replaced_unmarked: Vec<(Arc<BlockMeta>, BlockId)>,
}

impl TenantState {
    /// Lists the tenant and reads the metadata it needs, reusing `cache`
    /// (block metas do not change once written).
    pub async fn load(
        store: &dyn ObjectStore,
        tenant: &TenantId,
        cache: &mut MetaCache,
    ) -> Result<Self> {
        let listed_at_unix_nano = unix_nano(SystemTime::now());
        let objects = list_block_objects(store, tenant, None).await?;
        let candidates = read_listed_metas(store, tenant, &objects, &cache.live).await?;
        for meta in &candidates {
            cache.live.insert(meta.block_id, Arc::clone(meta));
        }
        let marked: Vec<BlockId> = objects
            .values()
            .filter(|b| b.compacted)
            .map(|b| b.block_id)
            .collect();
        let unknown: Vec<BlockId> = marked
            .iter()
            .filter(|id| !cache.compacted.contains_key(id))
            .copied()
            .collect();
        let read: Vec<Option<CompactedMeta>> = futures::stream::iter(unknown)
            .map(|id| read_compacted_meta(store, tenant, id))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        for compacted in read.into_iter().flatten() {
            cache.compacted.insert(compacted.meta.block_id, compacted);
        }
        let compacted: BTreeMap<BlockId, CompactedMeta> = marked
            .iter()
            .filter_map(|id| Some((*id, cache.compacted.get(id)?.clone())))
            .collect();
        let resolved = TenantBlocks::resolve(
            candidates.iter().cloned(),
            compacted.keys().copied().collect(),
        );
        let mut replaced_by: HashMap<BlockId, BlockId> = HashMap::new();
        for meta in resolved.live.values() {
            for input in &meta.compacted_from {
                replaced_by.insert(*input, meta.block_id);
            }
        }
        let replaced_unmarked = candidates
            .iter()
            .filter(|m| {
                !resolved.live.contains_key(&m.block_id) && !compacted.contains_key(&m.block_id)
            })
            .filter_map(|m| Some((Arc::clone(m), *replaced_by.get(&m.block_id)?)))
            .collect();
        // Forget blocks that no longer exist.
        let present: HashSet<BlockId> = objects.keys().copied().collect();
        cache.live.retain(|id, _| present.contains(id));
        cache.compacted.retain(|id, _| present.contains(id));
        Ok(Self {
            listed_at_unix_nano,
            objects,
            live: resolved.live,
            compacted,
            replaced_unmarked,
        })
    }

    /// The tenant index for this state.
    pub fn index(&self) -> TenantIndex {
        TenantIndex {
            version: TENANT_INDEX_VERSION,
            created_at_unix_nano: self.listed_at_unix_nano,
            blocks: self.live.values().map(|m| (**m).clone()).collect(),
            compacted: self.compacted.values().cloned().collect(),
        }
    }
}

/// Metadata already read, kept across passes.
#[derive(Debug, Default)]
pub struct MetaCache {
    live: HashMap<BlockId, Arc<BlockMeta>>,
    compacted: HashMap<BlockId, CompactedMeta>,
}
