#![allow(clippy::unwrap_used)]

//! Trace-by-ID on one block on the local-disk store, through the querier's
//! `TraceFinder` (bloom check, Parquet scan with statistics and page-index
//! pruning, merge): a present ID and an absent one. The block holds 64k TS-1
//! spans, the size of a block cut from a few seconds of load.
//!
//! Throughput is reported in lookups/s (criterion "elements").

use std::sync::Arc;

use arrow::array::{Array, FixedSizeBinaryArray};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use strata_benches::{Ts1, Ts1Config, Workload};
use strata_common::block::{BlockWriteOptions, encode_block, upload_block};
use strata_common::convert::request_to_batch;
use strata_common::schema::columns;
use strata_common::{BlockId, TenantId, TraceId};
use strata_querier::{BlockList, TraceFinder};

fn lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let mut ts1 = Ts1::new(&Ts1Config::default());
    let batches: Vec<_> = (0..8)
        .map(|_| request_to_batch(&ts1.request(8_192)).unwrap())
        .collect();
    let tenant = TenantId::default_tenant();
    let block = encode_block(
        tenant.clone(),
        BlockId::new_v7(),
        0,
        &batches,
        &BlockWriteOptions::default(),
    )
    .unwrap();
    runtime
        .block_on(upload_block(store.as_ref(), &block))
        .unwrap();

    // Trace IDs present in the block, spread over its ID range.
    let mut ids: Vec<TraceId> = batches
        .iter()
        .flat_map(|b| {
            let column = b
                .column_by_name(columns::TRACE_ID)
                .unwrap()
                .as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .unwrap()
                .clone();
            (0..column.len())
                .map(move |row| TraceId::from_slice(column.value(row)).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();

    let blocks = Arc::new(BlockList::new(Arc::clone(&store)));
    blocks.add(block.meta.clone());
    let finder = TraceFinder::new(blocks, 64 * 1024 * 1024, Vec::new()).unwrap();

    let mut group = c.benchmark_group("trace_by_id");
    group.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    group.bench_function("one_block_present", |b| {
        b.iter(|| {
            n = (n + 7919) % ids.len();
            let found = runtime
                .block_on(finder.find(&tenant, ids[n], None))
                .unwrap();
            assert!(found.span_count > 0);
        })
    });
    let absent = TraceId::new([0x5a; 16]);
    group.bench_function("one_block_absent", |b| {
        b.iter(|| {
            let found = runtime
                .block_on(finder.find(&tenant, absent, None))
                .unwrap();
            assert_eq!(found.span_count, 0);
        })
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
