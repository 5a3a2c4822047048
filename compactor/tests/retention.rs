#![allow(clippy::unwrap_used)]

//! Retention retires old blocks in two phases and leaves recent ones alone;
//! per-tenant overrides win over the default.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::trace::v1::Span;
use strata_common::block::{BlockWriteOptions, list_block_ids, read_meta, write_block};
use strata_common::catalog::{RetireReason, read_compacted_meta};
use strata_common::convert::request_to_batch;
use strata_common::testing::request_with_spans;
use strata_common::{BlockMeta, TenantId};
use strata_compactor::{Compactor, CompactorConfig};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn block_at(store: &Arc<dyn ObjectStore>, tenant: &TenantId, time: SystemTime) -> BlockMeta {
    let nanos = time.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let request = request_with_spans(vec![Span {
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        start_time_unix_nano: nanos,
        end_time_unix_nano: nanos + 1_000,
        ..Span::default()
    }]);
    let batch = request_to_batch(&request).unwrap();
    write_block(
        Arc::clone(store),
        tenant.clone(),
        vec![batch],
        0,
        BlockWriteOptions::default(),
    )
    .await
    .unwrap()
}

async fn block_object_count(store: &Arc<dyn ObjectStore>) -> usize {
    store
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .filter(|o| o.location.filename() != Some("index.json.gz"))
        .count()
}

#[tokio::test]
async fn old_blocks_are_marked_then_deleted_and_recent_ones_kept() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::new("acme").unwrap();
    let now = SystemTime::now();
    let old = block_at(&store, &tenant, now - 20 * DAY).await;
    let recent = block_at(&store, &tenant, now - DAY).await;
    let objects_per_block = block_object_count(&store).await / 2;

    let compactor = Compactor::new(
        Arc::clone(&store),
        CompactorConfig {
            retention: 14 * DAY,
            deletion_delay: Duration::from_secs(300),
            ..CompactorConfig::default()
        },
    );

    // Phase 1: the old block disappears from readers but keeps its data.
    let report = compactor.run_once(now).await.unwrap();
    assert_eq!(report.retirement.blocks_expired, 1);
    assert_eq!(report.retirement.blocks_deleted, 0);
    assert!(
        read_meta(store.as_ref(), &tenant, old.block_id)
            .await
            .unwrap()
            .is_none()
    );
    let marker = read_compacted_meta(store.as_ref(), &tenant, old.block_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker.reason, RetireReason::Retention);
    assert_eq!(marker.meta, old);
    assert!(
        read_meta(store.as_ref(), &tenant, recent.block_id)
            .await
            .unwrap()
            .is_some()
    );
    // meta.json became meta.compacted.json: same number of objects.
    assert_eq!(block_object_count(&store).await, 2 * objects_per_block);

    // Within the deletion delay nothing more happens.
    let report = compactor
        .run_once(now + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(report.retirement, Default::default());

    // Phase 2: after the delay every object of the old block is gone.
    let report = compactor
        .run_once(now + Duration::from_secs(301))
        .await
        .unwrap();
    assert_eq!(report.retirement.blocks_deleted, 1);
    assert_eq!(block_object_count(&store).await, objects_per_block);
    assert_eq!(
        list_block_ids(store.as_ref(), &tenant).await.unwrap(),
        vec![recent.block_id]
    );
}

#[tokio::test]
async fn tenant_retention_overrides_the_default() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let short = TenantId::new("short").unwrap();
    let long = TenantId::new("long").unwrap();
    let now = SystemTime::now();
    let short_block = block_at(&store, &short, now - 3 * DAY).await;
    let long_block = block_at(&store, &long, now - 3 * DAY).await;
    let compactor = Compactor::new(
        Arc::clone(&store),
        CompactorConfig {
            retention: 14 * DAY,
            tenant_retention: [(short.clone(), 2 * DAY)].into_iter().collect(),
            ..CompactorConfig::default()
        },
    );
    let report = compactor.run_once(now).await.unwrap();
    assert_eq!(report.retirement.blocks_expired, 1);
    assert!(
        read_meta(store.as_ref(), &short, short_block.block_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        read_meta(store.as_ref(), &long, long_block.block_id)
            .await
            .unwrap()
            .is_some()
    );
}
