#![allow(clippy::unwrap_used)]

//! Format compatibility: the committed version-1 block reads back exactly,
//! version-2 blocks carry their structure, trace table, summary and
//! dedicated columns, newer versions are refused, and the bloom filter's
//! bytes never change.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt8Type;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_common::block::{
    BlockWriteOptions, encode_block, read_block, read_meta, read_summary, read_trace_table,
    upload_block,
};
use strata_common::bloom::build_shards;
use strata_common::convert::{batches_to_resource_spans, request_to_batch};
use strata_common::layout::{AttrScope, DedicatedType};
use strata_common::schema::AttributeType;
use strata_common::testing::flatten;
use strata_common::{BlockId, BlockMeta, TenantId, TraceId};

include!("fixtures/v1_request.rs");

const FIXTURE_BLOCK: &str = "019ad000-0000-7000-8000-000000000001";

fn fixture_store() -> Arc<dyn ObjectStore> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-block");
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

#[tokio::test]
async fn the_committed_version_1_block_reads_back_exactly() {
    let store = fixture_store();
    let tenant = TenantId::new("fixture").unwrap();
    let meta = read_meta(store.as_ref(), &tenant, FIXTURE_BLOCK.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.format_version, 1);
    assert!(!meta.has_trace_table());
    let batches = read_block(Arc::clone(&store), &meta).await.unwrap();
    let read = batches_to_resource_spans(&batches).unwrap();
    assert_eq!(flatten(&read), flatten(&fixture_request().resource_spans));
}

#[tokio::test]
async fn a_newer_format_version_is_refused_with_a_clear_error() {
    let store = fixture_store();
    let tenant = TenantId::new("fixture").unwrap();
    let mut meta = read_meta(store.as_ref(), &tenant, FIXTURE_BLOCK.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    meta.format_version = 99;
    let error = meta.check_readable().unwrap_err().to_string();
    assert!(
        error.contains("format version 99") && error.contains("upgrade Strata"),
        "{error}"
    );

    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = strata_common::paths::meta_path(&tenant, meta.block_id);
    memory
        .put(&path, serde_json::to_vec(&meta).unwrap().into())
        .await
        .unwrap();
    let error = read_meta(memory.as_ref(), &tenant, meta.block_id)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("format version 99"), "{error}");
}

/// The serialized bloom shard for the fixture's two trace IDs, as the
/// version-1 writer produced it. Blocks in every bucket depend on these
/// bytes: a change to the hashing, seeding or layout breaks lookups.
#[test]
fn bloom_bytes_are_pinned() {
    let store_bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v1-block/fixture/019ad000-0000-7000-8000-000000000001/bloom-0"
    ))
    .unwrap();
    let ids = [TraceId::new([0x0a; 16]), TraceId::new([0x0b; 16])];
    let (params, shards) = build_shards(&ids, 0.001, 100 * 1024).unwrap();
    assert_eq!(params.shard_count, 1);
    assert_eq!(shards, vec![store_bytes.clone()]);
    // The same bytes spelled out: header (version, bitmap bytes, hash
    // count, seed), then the bitmap.
    assert_eq!(
        hex::encode(&store_bytes),
        "0104000000000000000b0000007374726174612d74726163652d69642d626c6f6f6d2d736565642d7631000000794c9735"
    );
}

async fn write_fixture_as_v2(store: &Arc<dyn ObjectStore>) -> BlockMeta {
    let batch = request_to_batch(&fixture_request()).unwrap();
    let tenant = TenantId::new("fixture").unwrap();
    let encoded = encode_block(
        tenant,
        BlockId::new_v7(),
        0,
        &[batch],
        &BlockWriteOptions::default(),
    )
    .unwrap();
    upload_block(store.as_ref(), &encoded).await.unwrap();
    encoded.meta
}

#[tokio::test]
async fn version_2_blocks_round_trip_and_carry_the_new_objects() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let meta = write_fixture_as_v2(&store).await;
    assert_eq!(meta.format_version, 2);
    let read =
        batches_to_resource_spans(&read_block(Arc::clone(&store), &meta).await.unwrap()).unwrap();
    assert_eq!(flatten(&read), flatten(&fixture_request().resource_spans));

    // Well-known keys present get their columns, with their conventional type.
    let columns: Vec<String> = meta
        .dedicated_columns
        .iter()
        .map(|d| d.column_name())
        .collect();
    for expected in [
        "span.http.request.method",
        "span.http.response.status_code",
        "span.http.route",
        "span.db.system",
        "resource.k8s.pod.name",
        "resource.deployment.environment",
    ] {
        assert!(
            columns.iter().any(|c| c == expected),
            "{expected} in {columns:?}"
        );
    }
    assert!(
        meta.dedicated_columns
            .iter()
            .any(|d| d.scope == AttrScope::Span
                && d.key == "http.response.status_code"
                && d.ty == DedicatedType::Int)
    );

    // The stored rows: values moved into the columns, markers in the lists.
    let path = strata_common::paths::data_path(&meta.tenant, meta.block_id);
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let stored: Vec<_> = reader.map(Result::unwrap).collect();
    let stored = &stored[0];
    let routes = stored
        .column_by_name("span.http.route")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(routes.iter().flatten().collect::<Vec<_>>(), ["/api/orders"]);
    let types = stored
        .column_by_name("attributes")
        .unwrap()
        .as_list::<i32>()
        .values()
        .as_struct()
        .column_by_name("type")
        .unwrap()
        .as_primitive::<UInt8Type>()
        .clone();
    assert!(types.values().contains(&(AttributeType::Dedicated as u8)));
    let left = stored.column_by_name("nested_set_left").unwrap();
    assert_eq!(left.null_count(), 0);

    // The trace table and the summary.
    let traces = read_trace_table(store.as_ref(), &meta).await.unwrap();
    assert_eq!(traces.len(), 2);
    let a = traces
        .entry(traces.find(&TraceId::new([0x0a; 16])).unwrap())
        .unwrap();
    assert_eq!(a.span_count, 3);
    assert_eq!(a.root_service_name.as_deref(), Some("frontend"));
    assert_eq!(a.root_span_name.as_deref(), Some("GET /api/orders"));
    assert_eq!(a.duration_nanos(), 150_000_000);
    let services: Vec<(&str, u64)> = a
        .service_stats
        .iter()
        .map(|s| (s.service.as_str(), s.spans))
        .collect();
    assert_eq!(services, [("frontend", 1), ("orders", 2)]);
    let b = traces
        .entry(traces.find(&TraceId::new([0x0b; 16])).unwrap())
        .unwrap();
    assert_eq!(b.error_count, 2);

    let summary = read_summary(store.as_ref(), &meta).await.unwrap();
    let methods = summary.attribute("span", "http.request.method").unwrap();
    assert_eq!(methods.count, 2);
    assert!(methods.complete);
    assert!(summary.intrinsics.contains_key("trace:rootService"));
    assert_eq!(
        meta.object_names(),
        [
            "data.parquet",
            "bloom-0",
            "traces.parquet",
            "summary.json.gz"
        ]
    );
}
