//! Retention: retire blocks past the retention period, then delete them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use strata_common::block::{list_block_ids, list_tenants, read_meta};
use strata_common::storage::get_if_exists;
use strata_common::{BlockId, TenantId, paths};
use tracing::info;

use crate::CompactorConfig;
use crate::error::{Error, Result};

/// What a retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Blocks newly marked deleted.
    pub blocks_marked: usize,
    /// Blocks whose objects were removed.
    pub blocks_deleted: usize,
}

/// Contents of `deleted.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DeletionMarker {
    deleted_at_unix_nano: u64,
    reason: String,
}

fn unix_nano(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn store_error(operation: &'static str, path: &Path) -> impl FnOnce(object_store::Error) -> Error {
    let path = path.to_string();
    move |source| Error::ObjectStore {
        operation,
        path,
        source,
    }
}

pub(crate) async fn enforce(
    store: &dyn ObjectStore,
    config: &CompactorConfig,
    now: SystemTime,
) -> Result<RetentionReport> {
    let now_nanos = unix_nano(now);
    let cutoff = now_nanos.saturating_sub(duration_nanos(config.retention));
    let delete_before = now_nanos.saturating_sub(duration_nanos(config.deletion_delay));
    let mut report = RetentionReport::default();
    for tenant in list_tenants(store).await? {
        for block in list_block_ids(store, &tenant).await? {
            match read_meta(store, &tenant, block).await? {
                Some(meta) if meta.end_time_unix_nano < cutoff => {
                    mark_deleted(store, &tenant, block, now_nanos).await?;
                    report.blocks_marked += 1;
                }
                Some(_) => {}
                None => {
                    let marker = read_marker(store, &tenant, block).await?;
                    if marker.is_some_and(|m| m.deleted_at_unix_nano <= delete_before) {
                        delete_block(store, &tenant, block).await?;
                        report.blocks_deleted += 1;
                    }
                }
            }
        }
    }
    if report != RetentionReport::default() {
        info!(
            marked = report.blocks_marked,
            deleted = report.blocks_deleted,
            "retention pass"
        );
    }
    metrics::counter!("strata_compactor_blocks_retired_total")
        .increment(report.blocks_marked as u64);
    metrics::counter!("strata_compactor_blocks_deleted_total")
        .increment(report.blocks_deleted as u64);
    Ok(report)
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes the marker, then removes `meta.json`: a crash in between leaves a
/// block that is still live and gets marked again next pass.
async fn mark_deleted(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: BlockId,
    now_nanos: u64,
) -> Result<()> {
    let marker_path = paths::deletion_marker_path(tenant, block);
    let marker = DeletionMarker {
        deleted_at_unix_nano: now_nanos,
        reason: "retention".to_owned(),
    };
    let json = serde_json::to_vec(&marker)
        .map_err(|e| strata_common::Error::corrupt(format!("encoding deletion marker: {e}")))?;
    store
        .put(&marker_path, PutPayload::from(json))
        .await
        .map_err(store_error("put", &marker_path))?;
    let meta_path = paths::meta_path(tenant, block);
    match store.delete(&meta_path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error("delete", &meta_path)(e)),
    }
}

async fn read_marker(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Option<DeletionMarker>> {
    let path = paths::deletion_marker_path(tenant, block);
    let Some(bytes) = get_if_exists(store, &path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| strata_common::Error::corrupt(format!("{path}: {e}")).into())
}

/// Removes every object of a block, the marker last so an interrupted
/// deletion is finished by the next pass.
async fn delete_block(store: &dyn ObjectStore, tenant: &TenantId, block: BlockId) -> Result<()> {
    let prefix = paths::block_prefix(tenant, block);
    let marker = paths::deletion_marker_path(tenant, block);
    let objects: Vec<Path> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .map_err(store_error("list", &prefix))?;
    for path in objects.iter().filter(|p| **p != marker) {
        match store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error("delete", path)(e)),
        }
    }
    match store.delete(&marker).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error("delete", &marker)(e)),
    }
}
