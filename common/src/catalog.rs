//! The state of a tenant's blocks in the store, and the tenant index that
//! lets readers learn it without listing every block.
//!
//! A block is in one of three states, told apart by which objects exist
//! under its prefix:
//!
//! - **uncommitted**: no `meta.json` yet (an upload or compaction in
//!   progress, or the debris of one that died): invisible to readers;
//! - **live**: `meta.json` exists and no live block lists it in
//!   `compacted_from`;
//! - **compacted**: `meta.compacted.json` exists (and `meta.json` is gone),
//!   or a live block replaces it. Its objects stay for a grace period so
//!   readers holding an older block list can finish, then they are removed.
//!
//! The compactor writes `<tenant>/index.json.gz` after every pass: the live
//! metas and the compacted ones. A querier reads it (one GET, skipped when
//! unchanged) and lists only the blocks created since, instead of listing
//! the tenant and reading every `meta.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::block::read_meta;
use crate::error::{Error, Result};
use crate::ids::{BlockId, TenantId};
use crate::meta::BlockMeta;
use crate::paths;
use crate::storage::{delete_if_exists, get_if_exists};

/// How many metadata reads run at once.
const META_READ_CONCURRENCY: usize = 16;

/// Why a block was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireReason {
    /// Merged into a larger block.
    Compaction,
    /// Older than the tenant's retention.
    Retention,
}

/// Contents of `meta.compacted.json`: the block's metadata and when and why
/// it was retired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactedMeta {
    /// When the block was marked, Unix nanoseconds (the compactor's clock).
    pub compacted_at_unix_nano: u64,
    /// Why.
    pub reason: RetireReason,
    /// The block that replaced it, for compaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<BlockId>,
    /// The block's `meta.json` as it was.
    pub meta: BlockMeta,
}

/// The objects found under one block's prefix.
#[derive(Debug, Clone)]
pub struct BlockObjects {
    /// The block.
    pub block_id: BlockId,
    /// `meta.json` exists.
    pub committed: bool,
    /// `meta.compacted.json` exists.
    pub compacted: bool,
    /// Every object, leases and metadata included.
    pub objects: Vec<ObjectMeta>,
}

impl BlockObjects {
    /// Lease objects as `(epoch, object)`, lowest epoch first.
    pub fn leases(&self) -> Vec<(u64, &ObjectMeta)> {
        let mut leases: Vec<(u64, &ObjectMeta)> = self
            .objects
            .iter()
            .filter_map(|o| Some((paths::lease_epoch(o.location.filename()?)?, o)))
            .collect();
        leases.sort_by_key(|(epoch, _)| *epoch);
        leases
    }

    /// Bytes stored for the block.
    pub fn size_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// Lists a tenant's blocks object by object, optionally only blocks whose
/// ID is greater than `after` (block IDs are UUIDv7, so that means blocks
/// created after a point in time). One LIST request per 1,000 objects.
pub async fn list_block_objects(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    after: Option<BlockId>,
) -> Result<BTreeMap<BlockId, BlockObjects>> {
    let prefix = paths::tenant_prefix(tenant);
    let listing = match after {
        Some(after) => store.list_with_offset(Some(&prefix), &paths::block_prefix(tenant, after)),
        None => store.list(Some(&prefix)),
    };
    let objects: Vec<ObjectMeta> = listing
        .try_collect()
        .await
        .map_err(Error::object_store("list", &prefix))?;
    let mut blocks: BTreeMap<BlockId, BlockObjects> = BTreeMap::new();
    for object in objects {
        let mut parts = object.location.parts();
        let (Some(_tenant), Some(block), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue; // the tenant index, or something that is not ours
        };
        let Ok(block_id) = block.as_ref().parse::<BlockId>() else {
            continue;
        };
        if after.is_some_and(|after| block_id <= after) {
            continue;
        }
        let entry = blocks.entry(block_id).or_insert_with(|| BlockObjects {
            block_id,
            committed: false,
            compacted: false,
            objects: Vec::new(),
        });
        match file.as_ref() {
            paths::META_FILE => entry.committed = true,
            paths::COMPACTED_META_FILE => entry.compacted = true,
            _ => {}
        }
        entry.objects.push(object);
    }
    Ok(blocks)
}

/// Lists one block's objects; `None` when it has none.
pub async fn block_objects(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Option<BlockObjects>> {
    let prefix = paths::block_prefix(tenant, block);
    let objects: Vec<ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(Error::object_store("list", &prefix))?;
    if objects.is_empty() {
        return Ok(None);
    }
    let has = |name: &str| objects.iter().any(|o| o.location.filename() == Some(name));
    Ok(Some(BlockObjects {
        block_id: block,
        committed: has(paths::META_FILE),
        compacted: has(paths::COMPACTED_META_FILE),
        objects,
    }))
}

/// Reads `meta.compacted.json`; `None` when the block is not marked.
pub async fn read_compacted_meta(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Option<CompactedMeta>> {
    let path = paths::compacted_meta_path(tenant, block);
    let Some(bytes) = get_if_exists(store, &path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| Error::Json {
            what: "compacted block meta",
            path,
            source,
        })
}

/// Retires a live block: writes `meta.compacted.json`, then removes
/// `meta.json`. A crash in between leaves both, which every reader treats
/// as compacted; the next pass finishes the job.
pub async fn mark_compacted(store: &dyn ObjectStore, marker: &CompactedMeta) -> Result<()> {
    let meta = &marker.meta;
    let path = paths::compacted_meta_path(&meta.tenant, meta.block_id);
    let json = serde_json::to_vec_pretty(marker).map_err(|source| Error::Json {
        what: "compacted block meta",
        path: path.clone(),
        source,
    })?;
    store
        .put(&path, PutPayload::from(json))
        .await
        .map_err(Error::object_store("put", &path))?;
    delete_if_exists(store, &paths::meta_path(&meta.tenant, meta.block_id)).await
}

/// Removes every object of a block, `meta.compacted.json` last so an
/// interrupted deletion is found and finished by the next pass.
pub async fn delete_block_objects(store: &dyn ObjectStore, block: &BlockObjects) -> Result<()> {
    let (last, first): (Vec<&ObjectMeta>, Vec<&ObjectMeta>) = block
        .objects
        .iter()
        .partition(|o| o.location.filename() == Some(paths::COMPACTED_META_FILE));
    for object in first.into_iter().chain(last) {
        delete_if_exists(store, &object.location).await?;
    }
    Ok(())
}

/// What a reader needs to know about a tenant's blocks.
#[derive(Debug, Clone, Default)]
pub struct TenantBlocks {
    /// Live blocks.
    pub live: BTreeMap<BlockId, Arc<BlockMeta>>,
    /// Blocks known to be compacted (marked, or replaced by a live block).
    pub compacted: HashSet<BlockId>,
}

impl TenantBlocks {
    /// Builds the live set from candidate metas and known-compacted IDs:
    /// a candidate is dropped when it is compacted or when another
    /// candidate lists it in `compacted_from` (the replacement wins).
    pub fn resolve(
        candidates: impl IntoIterator<Item = Arc<BlockMeta>>,
        mut compacted: HashSet<BlockId>,
    ) -> Self {
        let candidates: Vec<Arc<BlockMeta>> = candidates.into_iter().collect();
        for meta in &candidates {
            if !compacted.contains(&meta.block_id) {
                compacted.extend(meta.compacted_from.iter().copied());
            }
        }
        let live = candidates
            .into_iter()
            .filter(|m| !compacted.contains(&m.block_id))
            // A block from a newer Strata (e.g. listed in an index a newer
            // compactor wrote) is left alone: neither read nor compacted.
            .filter(|m| match m.check_readable() {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(tenant = %m.tenant, %error, "ignoring a block this build cannot read");
                    false
                }
            })
            .map(|m| (m.block_id, m))
            .collect();
        Self { live, compacted }
    }
}

/// Reads the `meta.json` of each committed block in `listing`, reusing
/// metas already in `known`. A block compacted since the listing is
/// returned all the same (from `meta.compacted.json`): the listing cannot
/// hold its replacement, so hiding it would hide spans. Blocks whose meta is
/// unreadable are skipped with a warning: one bad block must not hide the
/// others.
pub async fn read_listed_metas(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    listing: &BTreeMap<BlockId, BlockObjects>,
    known: &HashMap<BlockId, Arc<BlockMeta>>,
) -> Result<Vec<Arc<BlockMeta>>> {
    let mut metas = Vec::new();
    let mut unknown = Vec::new();
    for block in listing.values().filter(|b| b.committed && !b.compacted) {
        match known.get(&block.block_id) {
            Some(meta) => metas.push(Arc::clone(meta)),
            None => unknown.push(block.block_id),
        }
    }
    let read: Vec<Option<BlockMeta>> = futures::stream::iter(unknown)
        .map(|id| async move {
            match read_meta(store, tenant, id).await {
                Ok(Some(meta)) => Ok(Some(meta)),
                // Compacted between our LIST and this GET: its replacement
                // is newer than our listing, so drop it and a query would
                // miss its spans. Its data stays for the grace period: keep
                // it for this poll; the next one sees the replacement.
                Ok(None) => Ok(read_compacted_meta(store, tenant, id)
                    .await?
                    .map(|compacted| compacted.meta)),
                Err(e) if e.kind() == crate::ErrorKind::Internal => {
                    tracing::warn!(%tenant, block = %id, error = %e, "skipping block with unreadable meta.json");
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(META_READ_CONCURRENCY)
        .try_collect()
        .await?;
    metas.extend(read.into_iter().flatten().map(Arc::new));
    Ok(metas)
}

/// Version of the tenant index layout.
pub const TENANT_INDEX_VERSION: u32 = 1;

/// Contents of `<tenant>/index.json.gz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantIndex {
    /// [`TENANT_INDEX_VERSION`].
    pub version: u32,
    /// When the listing behind it started, Unix nanoseconds. Blocks created
    /// after this may be missing; readers list those themselves.
    pub created_at_unix_nano: u64,
    /// Live blocks.
    pub blocks: Vec<BlockMeta>,
    /// Compacted blocks not yet deleted.
    pub compacted: Vec<CompactedMeta>,
}

impl TenantIndex {
    /// The ID from which a reader of this index must list blocks itself:
    /// everything created since the index's listing began, less `slack` for
    /// blocks whose upload finished late.
    pub fn list_after(&self, slack: std::time::Duration) -> BlockId {
        let created_ms = self.created_at_unix_nano / 1_000_000;
        let slack_ms = u64::try_from(slack.as_millis()).unwrap_or(u64::MAX);
        BlockId::first_at_unix_millis(created_ms.saturating_sub(slack_ms))
    }

    /// Encodes as gzipped JSON.
    pub fn encode(&self) -> Result<Bytes> {
        let json = serde_json::to_vec(self).map_err(|source| Error::Json {
            what: "tenant index",
            path: Path::default(),
            source,
        })?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(&json)
            .and_then(|()| encoder.finish())
            .map(Bytes::from)
            .map_err(|e| Error::corrupt(format!("compressing tenant index: {e}")))
    }

    /// Decodes gzipped JSON.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| Error::corrupt(format!("{path}: not gzip: {e}")))?;
        serde_json::from_slice(&json).map_err(|source| Error::Json {
            what: "tenant index",
            path: path.clone(),
            source,
        })
    }
}

/// Writes a tenant's index.
pub async fn write_tenant_index(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    index: &TenantIndex,
) -> Result<()> {
    let path = paths::tenant_index_path(tenant);
    store
        .put(&path, PutPayload::from_bytes(index.encode()?))
        .await
        .map_err(Error::object_store("put", &path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::meta_for_tests;

    #[test]
    fn a_replacement_hides_its_inputs() {
        let tenant = TenantId::default_tenant();
        let a = Arc::new(meta_for_tests(&tenant, BlockId::new_v7(), 0));
        let b = Arc::new(meta_for_tests(&tenant, BlockId::new_v7(), 0));
        let mut c = meta_for_tests(&tenant, BlockId::new_v7(), 1);
        c.compacted_from = vec![a.block_id, b.block_id];
        let c = Arc::new(c);
        let d = Arc::new(meta_for_tests(&tenant, BlockId::new_v7(), 0));
        let blocks = TenantBlocks::resolve(
            [a, b, Arc::clone(&c), Arc::clone(&d)],
            HashSet::from([d.block_id]),
        );
        assert_eq!(
            blocks.live.keys().copied().collect::<Vec<_>>(),
            vec![c.block_id]
        );
        assert_eq!(blocks.compacted.len(), 3);
    }

    #[tokio::test]
    async fn a_block_compacted_after_the_listing_stays_visible_for_that_poll() {
        let store = object_store::memory::InMemory::new();
        let tenant = TenantId::default_tenant();
        let meta = meta_for_tests(&tenant, BlockId::new_v7(), 0);
        let json = serde_json::to_vec(&meta).unwrap();
        store
            .put(
                &paths::meta_path(&tenant, meta.block_id),
                PutPayload::from(json),
            )
            .await
            .unwrap();
        let listing = list_block_objects(&store, &tenant, None).await.unwrap();
        assert!(listing[&meta.block_id].committed);
        // A compactor marks the block between our LIST and our GET.
        mark_compacted(
            &store,
            &CompactedMeta {
                compacted_at_unix_nano: 1,
                reason: RetireReason::Compaction,
                replaced_by: Some(BlockId::new_v7()),
                meta: meta.clone(),
            },
        )
        .await
        .unwrap();
        let metas = read_listed_metas(&store, &tenant, &listing, &HashMap::new())
            .await
            .unwrap();
        assert_eq!(metas.len(), 1, "the replacement is not in this listing");
        assert_eq!(*metas[0], meta);
        // The next listing sees the marker and drops it.
        let listing = list_block_objects(&store, &tenant, None).await.unwrap();
        assert!(listing[&meta.block_id].compacted);
        let metas = read_listed_metas(&store, &tenant, &listing, &HashMap::new())
            .await
            .unwrap();
        assert!(metas.is_empty());
    }

    #[test]
    fn index_round_trips_and_lists_from_before_its_creation() {
        let tenant = TenantId::default_tenant();
        let meta = meta_for_tests(&tenant, BlockId::new_v7(), 2);
        let index = TenantIndex {
            version: TENANT_INDEX_VERSION,
            created_at_unix_nano: 1_700_000_000_000_000_000,
            blocks: vec![meta.clone()],
            compacted: vec![CompactedMeta {
                compacted_at_unix_nano: 5,
                reason: RetireReason::Retention,
                replaced_by: None,
                meta,
            }],
        };
        let bytes = index.encode().unwrap();
        assert_eq!(
            TenantIndex::decode(&bytes, &Path::default()).unwrap(),
            index
        );
        let after = index.list_after(std::time::Duration::from_secs(3600));
        assert_eq!(
            after.created_unix_millis(),
            Some(1_700_000_000_000 - 3_600_000)
        );
        assert!(TenantIndex::decode(b"not gzip", &Path::default()).is_err());
    }
}
