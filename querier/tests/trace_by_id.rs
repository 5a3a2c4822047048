//! Trace-by-ID against real blocks in an in-memory store wrapped in a
//! request-counting decorator: pruning happens before Parquet bytes are read,
//! a lookup reads a small part of a block, and fragments merge.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry_proto::tonic::trace::v1::Span;
use strata_common::block::{BlockWriteOptions, write_block};
use strata_common::convert::request_to_batch;
use strata_common::storage::{MeteredStore, ObjectKind, RequestCounts};
use strata_common::testing::request_with_spans;
use strata_common::{BlockMeta, LiveTraceSource, TenantId, TraceId};
use strata_querier::{Querier, QuerierConfig, TimeRange};

const HOUR_NANOS: u64 = 3_600_000_000_000;
const BASE_NANOS: u64 = 1_780_000_000_000_000_000;

fn trace_id(block: u64, trace: u64) -> Vec<u8> {
    // Spread IDs over the whole space, as random IDs are.
    let mixed = (block * 1_000 + trace + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    [mixed.to_be_bytes(), (!mixed).to_le_bytes()].concat()
}

fn span(trace: &[u8], span: u8, start: u64) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![span, 1, 2, 3, 4, 5, 6, 7],
        name: format!("span-{span}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000_000,
        ..Span::default()
    }
}

fn batch(spans: Vec<Span>) -> RecordBatch {
    request_to_batch(&request_with_spans(spans)).unwrap()
}

struct Fixture {
    querier: Querier,
    counts: Arc<RequestCounts>,
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
}

async fn fixture(live: Vec<Arc<dyn LiveTraceSource>>) -> Fixture {
    let metered = MeteredStore::new(Arc::new(InMemory::new()));
    let counts = metered.counts();
    let store: Arc<dyn ObjectStore> = Arc::new(metered);
    let querier = Querier::new(Arc::clone(&store), live, QuerierConfig::default()).unwrap();
    Fixture {
        querier,
        counts,
        store,
        tenant: TenantId::new("t").unwrap(),
    }
}

impl Fixture {
    async fn write(&self, batches: Vec<RecordBatch>, options: BlockWriteOptions) -> BlockMeta {
        write_block(
            Arc::clone(&self.store),
            self.tenant.clone(),
            batches,
            0,
            options,
        )
        .await
        .unwrap()
    }

    async fn find(&self, id: &[u8], range: Option<TimeRange>) -> usize {
        let found = self
            .querier
            .finder()
            .find(&self.tenant, TraceId::from_slice(id).unwrap(), range)
            .await
            .unwrap();
        found.span_count
    }
}

/// Twenty blocks, one hour apart, of fifty three-span traces each.
async fn twenty_blocks(fixture: &Fixture) -> Vec<BlockMeta> {
    let options = BlockWriteOptions {
        // Tight blooms keep false positives out of the read counts below.
        bloom_false_positive_rate: 0.000_01,
        ..BlockWriteOptions::default()
    };
    let mut metas = Vec::new();
    for block in 0..20 {
        let start = BASE_NANOS + block * HOUR_NANOS;
        let spans = (0..50)
            .flat_map(|t| {
                let id = trace_id(block, t);
                (0..3).map(move |s| span(&id, s, start + u64::from(s)))
            })
            .collect();
        metas.push(fixture.write(vec![batch(spans)], options.clone()).await);
    }
    fixture.querier.block_list().poll().await.unwrap();
    metas
}

#[tokio::test]
async fn time_range_then_bloom_prune_blocks_before_any_parquet_read() {
    let fixture = fixture(Vec::new()).await;
    let metas = twenty_blocks(&fixture).await;
    assert_eq!(fixture.querier.block_list().len(), 20);
    let reads = |kind| fixture.counts.reads(kind);

    // A present trace: one bloom shard per block, data read from one block.
    assert_eq!(fixture.find(&trace_id(7, 3), None).await, 3);
    assert_eq!(reads(ObjectKind::Bloom), 20);
    let data_after_first = reads(ObjectKind::Data);
    assert!(data_after_first > 0);

    // An absent trace: blooms (now cached) rule out every block; no data read.
    assert_eq!(fixture.find(&trace_id(99, 99), None).await, 0);
    assert_eq!(reads(ObjectKind::Bloom), 20, "bloom shards are cached");
    assert_eq!(
        reads(ObjectKind::Data),
        data_after_first,
        "no block was opened"
    );

    // A time range around another block: other blocks are skipped before
    // their blooms are consulted.
    let block_12 = &metas[12];
    let range = TimeRange {
        start_unix_nano: block_12.start_time_unix_nano,
        end_unix_nano: block_12.end_time_unix_nano,
    };
    let blooms_before = reads(ObjectKind::Bloom);
    assert_eq!(fixture.find(&trace_id(12, 0), Some(range)).await, 3);
    assert_eq!(
        reads(ObjectKind::Bloom),
        blooms_before,
        "only block 12's bloom, cached"
    );

    // A time range covering no block reads nothing at all.
    let data_before = reads(ObjectKind::Data);
    let nowhere = TimeRange {
        start_unix_nano: 1,
        end_unix_nano: 2,
    };
    assert_eq!(fixture.find(&trace_id(12, 0), Some(nowhere)).await, 0);
    assert_eq!(reads(ObjectKind::Data), data_before);
}

#[tokio::test]
async fn a_lookup_reads_a_small_part_of_a_large_block() {
    let fixture = fixture(Vec::new()).await;
    let options = BlockWriteOptions {
        row_group_target_bytes: 32 * 1024,
        data_page_max_rows: 1024,
        ..BlockWriteOptions::default()
    };
    let spans = (0..8_000)
        .flat_map(|t| {
            let id = trace_id(1, t);
            (0..5).map(move |s| span(&id, s, BASE_NANOS + t * 1_000 + u64::from(s)))
        })
        .collect();
    let meta = fixture.write(vec![batch(spans)], options).await;
    fixture.querier.block_list().poll().await.unwrap();

    let lookup = |t: u64| {
        let finder = fixture.querier.finder();
        let tenant = fixture.tenant.clone();
        async move {
            finder
                .find(&tenant, TraceId::from_slice(&trace_id(1, t)).unwrap(), None)
                .await
                .unwrap()
        }
    };
    // The first lookup also loads (and caches) the footer and page index.
    assert_eq!(lookup(10).await.span_count, 5);
    let found = lookup(6_789).await;
    assert_eq!(found.span_count, 5);
    assert_eq!(found.blocks_scanned, 1);
    // Statistics select one row group and the page index a page per column;
    // the object-store client then coalesces nearby page reads (gaps under
    // 1 MiB), so what is fetched is at most about that one row group.
    assert!(
        meta.row_group_count >= 4,
        "{} row groups",
        meta.row_group_count
    );
    assert!(
        found.inspected_bytes * 3 < meta.data_size_bytes,
        "read {} of {} bytes in {} row groups",
        found.inspected_bytes,
        meta.data_size_bytes,
        meta.row_group_count
    );
}

#[derive(Debug)]
struct LiveSpans(Vec<RecordBatch>);

#[async_trait]
impl LiveTraceSource for LiveSpans {
    async fn find_trace(
        &self,
        _: &TenantId,
        _: TraceId,
    ) -> strata_common::Result<Vec<RecordBatch>> {
        Ok(self.0.clone())
    }

    async fn scan(
        &self,
        _: &TenantId,
        _: &strata_common::LiveScan,
    ) -> strata_common::Result<Vec<RecordBatch>> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn fragments_from_blocks_and_live_merge_deduplicated_in_start_order() {
    let id = trace_id(5, 5);
    let live = LiveSpans(vec![batch(vec![
        span(&id, 4, BASE_NANOS + 4),
        span(&id, 2, BASE_NANOS + 2),
    ])]);
    let fixture = fixture(vec![Arc::new(live)]).await;
    fixture
        .write(
            vec![batch(vec![
                span(&id, 1, BASE_NANOS + 1),
                span(&id, 2, BASE_NANOS + 2),
            ])],
            BlockWriteOptions::default(),
        )
        .await;
    fixture
        .write(
            vec![batch(vec![
                span(&id, 3, BASE_NANOS + 3),
                span(&id, 1, BASE_NANOS + 1),
            ])],
            BlockWriteOptions::default(),
        )
        .await;
    fixture.querier.block_list().poll().await.unwrap();

    let found = fixture
        .querier
        .finder()
        .find(&fixture.tenant, TraceId::from_slice(&id).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(found.blocks_scanned, 2);
    let names: Vec<String> = found
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["span-1", "span-2", "span-3", "span-4"]);
}

#[tokio::test]
async fn an_unreadable_block_makes_the_answer_partial_not_an_error() {
    let id = trace_id(3, 3);
    let fixture = fixture(Vec::new()).await;
    fixture
        .write(
            vec![batch(vec![span(&id, 1, BASE_NANOS + 1)])],
            BlockWriteOptions::default(),
        )
        .await;
    let broken = fixture
        .write(
            vec![batch(vec![span(&id, 2, BASE_NANOS + 2)])],
            BlockWriteOptions::default(),
        )
        .await;
    fixture.querier.block_list().poll().await.unwrap();
    fixture
        .store
        .delete(&strata_common::paths::data_path(
            &fixture.tenant,
            broken.block_id,
        ))
        .await
        .unwrap();

    let found = fixture
        .querier
        .finder()
        .find(&fixture.tenant, TraceId::from_slice(&id).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(found.span_count, 1, "the readable block's span is served");
    assert_eq!(found.failed_blocks, 1);
}
