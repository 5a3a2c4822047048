//! Retiring blocks: retention, finishing interrupted compactions, and
//! deleting retired blocks once their grace period is over.

use std::time::Duration;

use object_store::ObjectStore;
use strata_common::catalog::{CompactedMeta, RetireReason, delete_block_objects, mark_compacted};
use strata_common::{BlockId, TenantId};
use tracing::info;

use crate::CompactorConfig;
use crate::error::Result;
use crate::state::TenantState;

/// Prefixes without a `meta.json` whose newest object is older than this
/// are debris of uploads that will never finish.
pub const DEBRIS_AGE: Duration = Duration::from_secs(24 * 3600);

/// What retirement did for one tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetirementReport {
    /// Blocks marked because they are past retention.
    pub blocks_expired: usize,
    /// Replaced blocks whose marking a dead compactor left undone.
    pub blocks_rolled_forward: usize,
    /// Blocks whose objects were removed after the grace period.
    pub blocks_deleted: usize,
    /// Uncommitted prefixes removed as debris.
    pub debris_deleted: usize,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Marks and deletes what is due in `state` as of `now_unix_nano`, and
/// updates `state` to match.
pub(crate) async fn retire(
    store: &dyn ObjectStore,
    config: &CompactorConfig,
    tenant: &TenantId,
    state: &mut TenantState,
    now_unix_nano: u64,
) -> Result<RetirementReport> {
    let mut report = RetirementReport::default();

    // A live block that replaces others is committed: finish its job.
    for (meta, replacement) in std::mem::take(&mut state.replaced_unmarked) {
        let marker = CompactedMeta {
            compacted_at_unix_nano: now_unix_nano,
            reason: RetireReason::Compaction,
            replaced_by: Some(replacement),
            meta: (*meta).clone(),
        };
        mark_compacted(store, &marker).await?;
        state.compacted.insert(meta.block_id, marker);
        report.blocks_rolled_forward += 1;
    }

    let retention = config.retention_for(tenant);
    let cutoff = now_unix_nano.saturating_sub(nanos(retention));
    let expired: Vec<BlockId> = state
        .live
        .values()
        .filter(|m| m.end_time_unix_nano < cutoff)
        .map(|m| m.block_id)
        .collect();
    for id in expired {
        let Some(meta) = state.live.remove(&id) else {
            continue;
        };
        let marker = CompactedMeta {
            compacted_at_unix_nano: now_unix_nano,
            reason: RetireReason::Retention,
            replaced_by: None,
            meta: (*meta).clone(),
        };
        mark_compacted(store, &marker).await?;
        state.compacted.insert(id, marker);
        report.blocks_expired += 1;
    }

    let delete_before = now_unix_nano.saturating_sub(nanos(config.deletion_delay));
    let due: Vec<BlockId> = state
        .compacted
        .iter()
        .filter(|(_, c)| c.compacted_at_unix_nano <= delete_before)
        .map(|(id, _)| *id)
        .collect();
    for id in due {
        if let Some(objects) = state.objects.remove(&id) {
            delete_block_objects(store, &objects).await?;
        }
        state.compacted.remove(&id);
        report.blocks_deleted += 1;
    }

    let debris_before = now_unix_nano.saturating_sub(nanos(DEBRIS_AGE));
    let debris: Vec<BlockId> = state
        .objects
        .values()
        .filter(|b| !b.committed && !b.compacted)
        .filter(|b| {
            b.objects
                .iter()
                .map(|o| {
                    u64::try_from(o.last_modified.timestamp_nanos_opt().unwrap_or(0)).unwrap_or(0)
                })
                .max()
                .is_some_and(|newest| newest < debris_before)
        })
        .map(|b| b.block_id)
        .collect();
    for id in debris {
        if let Some(objects) = state.objects.remove(&id) {
            delete_block_objects(store, &objects).await?;
            report.debris_deleted += 1;
        }
    }

    if report != RetirementReport::default() {
        info!(
            %tenant,
            expired = report.blocks_expired,
            rolled_forward = report.blocks_rolled_forward,
            deleted = report.blocks_deleted,
            debris = report.debris_deleted,
            "retired blocks"
        );
    }
    metrics::counter!("strata_compactor_blocks_retired_total", "reason" => "retention")
        .increment(report.blocks_expired as u64);
    metrics::counter!("strata_compactor_blocks_deleted_total")
        .increment(report.blocks_deleted as u64);
    Ok(report)
}
