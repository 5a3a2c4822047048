//! The ingester keeps acknowledged spans through a storage outage, writes
//! them once storage is back, and bounds its memory.

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
use strata_ingester::{Error, FlushReport, Ingester, IngesterConfig};

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

fn live_spans(ingester: &Ingester, tenant: &TenantId, trace: u8) -> usize {
    ingester
        .live_trace(tenant, TraceId::new([trace; 16]))
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

#[tokio::test]
async fn spans_survive_a_storage_outage_and_are_written_when_it_ends() {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&memory)));
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let ingester = Ingester::new(
        Arc::clone(&faulty) as Arc<dyn ObjectStore>,
        IngesterConfig::default(),
    )
    .with_block_written_hook(Arc::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let tenant = TenantId::new("acme").unwrap();
    assert_eq!(ingester.push(&tenant, &request(7, 3)).unwrap(), 3);

    faulty.set_failing(true);
    let report = ingester.flush(true).await;
    assert_eq!(
        report,
        FlushReport {
            blocks_written: 0,
            blocks_pending: 1
        }
    );
    assert_eq!(
        live_spans(&ingester, &tenant, 7),
        3,
        "still served while storage is down"
    );
    assert!(ingester.unflushed_bytes() > 0);

    // A shutdown during the outage reports what it could not write.
    let unwritten = ingester.shutdown(Duration::from_millis(300)).await;
    assert_eq!(unwritten, 1);
    assert_eq!(live_spans(&ingester, &tenant, 7), 3);
    assert!(matches!(
        ingester.push(&tenant, &request(8, 1)),
        Err(Error::ShuttingDown)
    ));

    // Storage is back: the retry writes one block with every span.
    faulty.set_failing(false);
    assert_eq!(ingester.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(written.load(Ordering::SeqCst), 1);
    assert_eq!(ingester.unflushed_bytes(), 0);
    let blocks = list_block_ids(memory.as_ref(), &tenant).await.unwrap();
    let committed: Vec<_> = {
        let mut out = Vec::new();
        for id in blocks {
            if let Some(meta) = read_meta(memory.as_ref(), &tenant, id).await.unwrap() {
                out.push(meta);
            }
        }
        out
    };
    assert_eq!(committed.len(), 1);
    let rows: usize = read_block(Arc::clone(&memory), &committed[0])
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn unflushed_spans_are_bounded_by_max_live_bytes() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ingester = Ingester::new(
        store,
        IngesterConfig {
            max_live_bytes: 64 * 1024,
            ..IngesterConfig::default()
        },
    );
    let tenant = TenantId::default_tenant();
    let mut accepted = 0;
    let rejection = loop {
        match ingester.push(&tenant, &request(1, 50)) {
            Ok(n) => accepted += n,
            Err(e) => break e,
        }
        assert!(accepted < 1_000_000, "never rejected");
    };
    assert!(matches!(rejection, Error::Overloaded { .. }), "{rejection}");
    assert_eq!(rejection.http_status(), 429);
    assert!(ingester.unflushed_bytes() <= 64 * 1024);

    // Flushing frees the budget.
    assert_eq!(ingester.flush(true).await.blocks_written, 1);
    ingester.push(&tenant, &request(2, 50)).unwrap();
}

#[tokio::test]
async fn heads_are_cut_by_size_and_age() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ingester = Ingester::new(
        store,
        IngesterConfig {
            block_max_bytes: 1,
            block_max_age: Duration::from_secs(3600),
            ..IngesterConfig::default()
        },
    );
    let tenant = TenantId::default_tenant();
    // Each push that fills the head cuts it at once, so blocks stay near the
    // size limit even when the flush loop falls behind.
    for trace in 1..=3 {
        ingester.push(&tenant, &request(trace, 2)).unwrap();
    }
    assert_eq!(ingester.flush(false).await.blocks_written, 3);

    let aged = Ingester::new(
        Arc::new(InMemory::new()),
        IngesterConfig {
            block_max_age: Duration::from_millis(50),
            ..IngesterConfig::default()
        },
    );
    aged.push(&tenant, &request(1, 2)).unwrap();
    assert_eq!(
        aged.flush(false).await.blocks_written,
        0,
        "young and small: kept"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(aged.flush(false).await.blocks_written, 1, "old: cut");
}
