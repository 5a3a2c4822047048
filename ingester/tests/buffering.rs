//! The ingester logs before it acknowledges, groups spans by trace, survives
//! a storage outage and a restart, and enforces its limits.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use strata_common::block::{list_block_ids, read_block, read_meta};
use strata_common::testing::{FaultyStore, request_with_spans};
use strata_common::{TenantId, TraceId};
use strata_ingester::{Error, Ingester, IngesterConfig, TenantLimits};
use tempfile::TempDir;

fn request(trace: u8, spans: u8) -> ExportTraceServiceRequest {
    request_with_spans(
        (0..spans)
            .map(|s| Span {
                trace_id: vec![trace; 16],
                span_id: vec![s + 1; 8],
                name: format!("span {s}"),
                start_time_unix_nano: 1_000 + u64::from(s),
                end_time_unix_nano: 2_000,
                ..Span::default()
            })
            .collect(),
    )
}

/// A config that cuts as soon as a trace is idle for 50 ms.
fn config(dir: &TempDir) -> IngesterConfig {
    IngesterConfig {
        trace_idle_period: Duration::from_millis(50),
        block_max_age: Duration::ZERO,
        upload_timeout: Duration::from_secs(5),
        complete_block_timeout: Duration::ZERO,
        ..IngesterConfig::new(dir.path().join("wal"))
    }
}

async fn live_spans(ingester: &Ingester, tenant: &TenantId, trace: u8) -> usize {
    ingester
        .live_trace(tenant, TraceId::new([trace; 16]))
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

async fn stored_spans(store: &Arc<dyn ObjectStore>, tenant: &TenantId) -> usize {
    let mut total = 0;
    for id in list_block_ids(store.as_ref(), tenant).await.unwrap() {
        if let Some(meta) = read_meta(store.as_ref(), tenant, id).await.unwrap() {
            total += read_block(Arc::clone(store), &meta)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>();
        }
    }
    total
}

#[tokio::test]
async fn acknowledged_spans_survive_a_restart_without_shutdown() {
    let dir = TempDir::new().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::new("acme").unwrap();
    let ingester = Ingester::open(Arc::clone(&store), config(&dir))
        .await
        .unwrap();
    assert_eq!(
        ingester
            .push(&tenant, request(7, 3), None)
            .await
            .unwrap()
            .accepted,
        3
    );
    assert!(ingester.disk_bytes() > 0, "logged before acknowledging");
    // No shutdown: the process "dies" here.
    drop(ingester);

    let ingester = Ingester::open(Arc::clone(&store), config(&dir))
        .await
        .unwrap();
    assert_eq!(
        live_spans(&ingester, &tenant, 7).await,
        3,
        "replayed from the WAL"
    );
    ingester.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(stored_spans(&store, &tenant).await, 3);

    // Once in the object store, nothing is replayed again.
    drop(ingester);
    let ingester = Ingester::open(Arc::clone(&store), config(&dir))
        .await
        .unwrap();
    assert_eq!(live_spans(&ingester, &tenant, 7).await, 0);
    assert_eq!(ingester.live_bytes(), 0);
}

#[tokio::test]
async fn traces_are_cut_once_idle_and_the_wal_is_trimmed() {
    let dir = TempDir::new().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::default_tenant();
    let ingester = Ingester::open(Arc::clone(&store), config(&dir))
        .await
        .unwrap();
    ingester.push(&tenant, request(1, 2), None).await.unwrap();
    assert_eq!(
        ingester.cut(false).await.unwrap(),
        0,
        "the trace is still active"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    // A late span of another trace keeps that one active.
    ingester.push(&tenant, request(2, 1), None).await.unwrap();
    assert_eq!(ingester.cut(false).await.unwrap(), 1, "trace 1 went idle");
    assert_eq!(ingester.upload(false).await, 1);
    assert_eq!(stored_spans(&store, &tenant).await, 2);
    assert_eq!(live_spans(&ingester, &tenant, 2).await, 1);
}

#[tokio::test]
async fn a_storage_outage_queues_blocks_on_disk_and_they_upload_later() {
    let dir = TempDir::new().unwrap();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&memory)));
    let tenant = TenantId::new("acme").unwrap();
    let uploaded = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&uploaded);
    let ingester = Ingester::open(Arc::clone(&faulty) as Arc<dyn ObjectStore>, config(&dir))
        .await
        .unwrap()
        .with_block_written_hook(Arc::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
    ingester.push(&tenant, request(7, 3), None).await.unwrap();

    faulty.set_failing(true);
    assert_eq!(
        ingester.cut(true).await.unwrap(),
        1,
        "cut into the local queue"
    );
    assert_eq!(ingester.upload(true).await, 0);
    assert_eq!(ingester.upload_backlog(), 1);
    assert_eq!(
        ingester.live_bytes(),
        0,
        "memory is freed while the store is down"
    );
    assert_eq!(
        live_spans(&ingester, &tenant, 7).await,
        3,
        "still served from the queue"
    );

    // A shutdown during the outage leaves the block queued on disk.
    let report = ingester.shutdown(Duration::from_millis(300)).await.unwrap();
    assert_eq!(report.blocks_queued, 1);
    assert!(matches!(
        ingester.push(&tenant, request(8, 1), None).await,
        Err(Error::ShuttingDown)
    ));
    drop(ingester);

    // The store is back; the next start uploads the queue.
    faulty.set_failing(false);
    let ingester = Ingester::open(Arc::clone(&memory), config(&dir))
        .await
        .unwrap();
    assert_eq!(ingester.upload_backlog(), 1);
    assert_eq!(ingester.upload(false).await, 1);
    assert_eq!(stored_spans(&memory, &tenant).await, 3);
    assert_eq!(
        uploaded.load(Ordering::SeqCst),
        0,
        "the old hook went with the old ingester"
    );
}

#[tokio::test]
async fn a_hanging_store_times_out_and_is_retried() {
    let dir = TempDir::new().unwrap();
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&memory)));
    let tenant = TenantId::default_tenant();
    let ingester = Ingester::open(
        Arc::clone(&faulty) as Arc<dyn ObjectStore>,
        IngesterConfig {
            upload_timeout: Duration::from_millis(100),
            ..config(&dir)
        },
    )
    .await
    .unwrap();
    ingester.push(&tenant, request(1, 1), None).await.unwrap();
    faulty.set_hanging(true);
    ingester.cut(true).await.unwrap();
    assert_eq!(ingester.upload(true).await, 0, "the hung upload timed out");
    faulty.set_hanging(false);
    assert_eq!(ingester.upload(true).await, 1);
    assert_eq!(stored_spans(&memory, &tenant).await, 1);
}

#[tokio::test]
async fn memory_disk_and_rate_limits_refuse_with_retryable_errors() {
    let tenant = TenantId::default_tenant();

    let dir = TempDir::new().unwrap();
    let memory_bound = Ingester::open(
        Arc::new(InMemory::new()),
        IngesterConfig {
            max_live_bytes: 1,
            ..config(&dir)
        },
    )
    .await
    .unwrap();
    memory_bound
        .push(&tenant, request(1, 5), None)
        .await
        .unwrap();
    let error = memory_bound
        .push(&tenant, request(2, 5), None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Overloaded { .. }), "{error}");
    assert_eq!(error.http_status(), 429);
    assert!(error.retry_after().is_some());

    let dir = TempDir::new().unwrap();
    let disk_bound = Ingester::open(
        Arc::new(InMemory::new()),
        IngesterConfig {
            wal_max_bytes: 1,
            ..config(&dir)
        },
    )
    .await
    .unwrap();
    let error = disk_bound
        .push(&tenant, request(1, 5), None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DiskFull { .. }), "{error}");
    assert_eq!(error.http_status(), 503);
    assert_eq!(error.grpc_status().code(), tonic::Code::Unavailable);

    let dir = TempDir::new().unwrap();
    let rate_bound = Ingester::open(
        Arc::new(InMemory::new()),
        IngesterConfig {
            limits: TenantLimits {
                ingestion_rate_bytes: 100,
                ingestion_burst_bytes: 100,
                ..TenantLimits::default()
            },
            ..config(&dir)
        },
    )
    .await
    .unwrap();
    rate_bound.push(&tenant, request(1, 5), None).await.unwrap();
    let error = rate_bound
        .push(&tenant, request(2, 5), None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RateLimited { .. }), "{error}");
    assert_eq!(error.grpc_status().code(), tonic::Code::ResourceExhausted);
}

#[tokio::test]
async fn spans_past_a_trace_limit_are_dropped_and_reported() {
    let dir = TempDir::new().unwrap();
    let tenant = TenantId::default_tenant();
    let ingester = Ingester::open(
        Arc::new(InMemory::new()),
        IngesterConfig {
            limits: TenantLimits {
                max_spans_per_trace: 3,
                ..TenantLimits::default()
            },
            ..config(&dir)
        },
    )
    .await
    .unwrap();
    let outcome = ingester.push(&tenant, request(1, 2), None).await.unwrap();
    assert_eq!((outcome.accepted, outcome.rejected), (2, 0));
    let mut more = request(1, 3);
    for span in &mut more.resource_spans[0].scope_spans[0].spans {
        span.span_id[0] += 10;
    }
    let outcome = ingester.push(&tenant, more, None).await.unwrap();
    assert_eq!((outcome.accepted, outcome.rejected), (1, 2));
    assert!(
        outcome.message.contains("per-trace limit"),
        "{}",
        outcome.message
    );
    assert_eq!(live_spans(&ingester, &tenant, 1).await, 3);

    // A request with nothing storable is refused as invalid.
    let error = ingester
        .push(&tenant, request(0, 1), None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error}");
}

#[tokio::test]
async fn late_spans_of_a_cut_trace_go_to_a_later_block() {
    let dir = TempDir::new().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::default_tenant();
    let ingester = Ingester::open(Arc::clone(&store), config(&dir))
        .await
        .unwrap();
    ingester.push(&tenant, request(5, 2), None).await.unwrap();
    assert_eq!(ingester.cut(true).await.unwrap(), 1);
    assert_eq!(ingester.upload(true).await, 1);

    let mut late = request(5, 1);
    late.resource_spans[0].scope_spans[0].spans[0].span_id = vec![99; 8];
    ingester.push(&tenant, late, None).await.unwrap();
    assert_eq!(ingester.cut(true).await.unwrap(), 1);
    assert_eq!(ingester.upload(true).await, 1);

    assert_eq!(
        list_block_ids(store.as_ref(), &tenant).await.unwrap().len(),
        2
    );
    assert_eq!(stored_spans(&store, &tenant).await, 3);
}

/// Keeps rows whose span name is `wanted`.
#[derive(Debug)]
struct NameIs(&'static str);

impl strata_common::SpanPredicate for NameIs {
    fn evaluate(
        &self,
        batch: &arrow::array::RecordBatch,
    ) -> strata_common::Result<arrow::array::BooleanArray> {
        use arrow::array::AsArray;
        let names = batch
            .column_by_name(strata_common::schema::columns::NAME)
            .unwrap()
            .as_string::<i32>();
        Ok(names.iter().map(|n| Some(n == Some(self.0))).collect())
    }
}

fn rows_by_trace(batches: &[arrow::array::RecordBatch]) -> std::collections::BTreeMap<u8, usize> {
    use arrow::array::AsArray;
    let mut out = std::collections::BTreeMap::new();
    for batch in batches {
        let ids = batch
            .column_by_name(strata_common::schema::columns::TRACE_ID)
            .unwrap()
            .as_fixed_size_binary();
        for row in 0..batch.num_rows() {
            *out.entry(ids.value(row)[0]).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn live_scans_return_whole_selected_traces_of_the_tenant_in_every_stage() {
    let dir = TempDir::new().unwrap();
    // A store that refuses uploads: cut blocks wait in the local queue.
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    faulty.set_failing(true);
    let store: Arc<dyn ObjectStore> = Arc::clone(&faulty) as Arc<dyn ObjectStore>;
    let acme = TenantId::new("acme").unwrap();
    let other = TenantId::new("other").unwrap();
    let ingester = Ingester::open(store, config(&dir)).await.unwrap();
    // Traces 1 and 2 contain a "span 2"; trace 3 does not.
    ingester.push(&acme, request(1, 3), None).await.unwrap();
    ingester.push(&acme, request(2, 4), None).await.unwrap();
    ingester.push(&acme, request(3, 2), None).await.unwrap();
    ingester.push(&other, request(4, 3), None).await.unwrap();

    let selective = strata_common::LiveScan {
        predicate: Some(Arc::new(NameIs("span 2"))),
        max_traces: None,
    };
    let found = rows_by_trace(&ingester.live_scan(&acme, &selective).await.unwrap());
    assert_eq!(
        found,
        [(1, 3), (2, 4)].into(),
        "whole traces, only the selected ones"
    );
    let everything = strata_common::LiveScan::default();
    let found = rows_by_trace(&ingester.live_scan(&other, &everything).await.unwrap());
    assert_eq!(found, [(4, 3)].into(), "another tenant's traces never show");
    let bounded = strata_common::LiveScan {
        predicate: None,
        max_traces: Some(1),
    };
    assert_eq!(
        rows_by_trace(&ingester.live_scan(&acme, &bounded).await.unwrap()).len(),
        1
    );

    // Cut into the local queue (the store refuses uploads): still found.
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(ingester.cut(false).await.unwrap() > 0);
    assert_eq!(live_spans(&ingester, &acme, 1).await, 3);
    let found = rows_by_trace(&ingester.live_scan(&acme, &selective).await.unwrap());
    assert_eq!(found, [(1, 3), (2, 4)].into());
}
