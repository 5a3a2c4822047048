//! The object store fails, hangs and slows down while spans keep arriving:
//! exports are still acknowledged (into the WAL and the local upload queue),
//! past the disk budget they are refused with a retryable answer, the process
//! stays up, and once the store recovers the backlog drains and every
//! acknowledged span is in the bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use strata_common::testing::request_with_spans;

use crate::support::process::Options;
use crate::support::proxy::{Fault, FaultProxy};
use crate::support::storage::TestStorage;
use crate::support::{Strata, fetch_v2_protobuf, get, http_client, metric};

/// Span IDs by trace ID (hex).
type Acked = BTreeMap<String, BTreeSet<Vec<u8>>>;

fn request(n: u64) -> ExportTraceServiceRequest {
    let spans = (0..2u64)
        .flat_map(|t| {
            let trace_id = [
                [(n >> 8) as u8, n as u8, t as u8, 7],
                [9; 4],
                [1; 4],
                [2; 4],
            ]
            .concat();
            (0..5u64).map(move |s| Span {
                trace_id: trace_id.clone(),
                span_id: [n.to_be_bytes()[4..].to_vec(), vec![t as u8, s as u8, 1, 1]].concat(),
                name: format!("op-{s}"),
                start_time_unix_nano: 1_790_000_000_000_000_000 + s,
                end_time_unix_nano: 1_790_000_000_000_100_000,
                attributes: vec![KeyValue {
                    key: "payload".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!(
                            "{n}-{}",
                            "x".repeat(1000)
                        ))),
                    }),
                    ..KeyValue::default()
                }],
                ..Span::default()
            })
        })
        .collect();
    request_with_spans(spans)
}

fn record(acked: &mut Acked, request: &ExportTraceServiceRequest) {
    for span in request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        acked
            .entry(hex::encode(&span.trace_id))
            .or_default()
            .insert(span.span_id.clone());
    }
}

async fn send(strata: &Strata, request: &ExportTraceServiceRequest) -> reqwest::Response {
    http_client()
        .post(&strata.otlp_http)
        .header("Content-Type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_all_readable(http: &str, acked: &Acked) {
    for (trace, want) in acked {
        let got: BTreeSet<Vec<u8>> = fetch_v2_protobuf(http, trace, None)
            .await
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.span_id.clone())
            .collect();
        assert!(
            want.is_subset(&got),
            "{trace}: {} of {} spans",
            got.len(),
            want.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_is_absorbed_refused_retryably_and_drained() {
    let Some(storage) = TestStorage::s3() else {
        return;
    };
    let s3: SocketAddr = storage.env[0]
        .1
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(s3).await;
    let strata = Strata::start(
        &storage.url,
        storage.dir.path(),
        Options {
            args: [
                "--trace-idle-period",
                "200ms",
                "--block-max-age",
                "200ms",
                "--upload-timeout",
                "1s",
                "--wal-max-bytes",
                "1MiB",
            ]
            .map(String::from)
            .to_vec(),
            env: storage.server_endpoint(&proxy.url()),
            ..Options::default()
        },
    );
    let mut acked = Acked::new();
    let mut n = 0;

    // Errors: exports are still acknowledged and blocks queue up on disk.
    proxy.set(Fault::Refuse);
    for _ in 0..10 {
        n += 1;
        let request = request(n);
        assert_eq!(send(&strata, &request).await.status().as_u16(), 200);
        record(&mut acked, &request);
    }
    wait_for(
        "a block to wait for upload",
        Duration::from_secs(30),
        async || metric(&strata.http, "strata_ingester_upload_backlog_blocks").await > 0.0,
    )
    .await;
    assert_all_readable(&strata.http, &acked).await;

    // Hangs: past the disk budget, exports get 503 with Retry-After.
    proxy.set(Fault::Hang);
    let refused = loop {
        n += 1;
        assert!(n < 2_000, "the disk budget never pushed back");
        let request = request(n);
        let response = send(&strata, &request).await;
        match response.status().as_u16() {
            200 => record(&mut acked, &request),
            503 => break response,
            other => panic!(
                "unexpected answer {other}: {}",
                response.text().await.unwrap()
            ),
        }
    };
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        get(&strata.http, "/ready", None, None).await.status,
        200,
        "still up"
    );
    assert!(metric(&strata.http, "strata_ingester_spans_rejected_total{").await > 0.0);
    assert!(
        metric(&strata.http, "strata_wal_bytes").await
            + metric(&strata.http, "strata_ingester_upload_backlog_bytes").await
            > 0.0
    );

    // Slow, then healthy: the backlog drains.
    proxy.set(Fault::Slow);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Fault::Pass);
    wait_for(
        "the upload backlog to drain",
        Duration::from_secs(120),
        async || metric(&strata.http, "strata_ingester_upload_backlog_blocks").await == 0.0,
    )
    .await;
    // New exports are accepted again.
    n += 1;
    let request = request(n);
    assert_eq!(send(&strata, &request).await.status().as_u16(), 200);
    record(&mut acked, &request);
    assert_all_readable(&strata.http, &acked).await;
    strata.terminate();

    // Every acknowledged span is in the bucket: a querier reading S3
    // directly (no proxy, no ingester) finds them all.
    let querier = Strata::start(
        &storage.url,
        storage.dir.path(),
        Options {
            args: vec!["--target".into(), "querier".into()],
            env: storage.env.clone(),
            ..Options::default()
        },
    );
    assert_all_readable(&querier.http, &acked).await;
    querier.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_loses_nothing() {
    let Some(storage) = TestStorage::s3() else {
        return;
    };
    let s3: SocketAddr = storage.env[0]
        .1
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(s3).await;
    let options = || Options {
        args: ["--upload-timeout", "1s", "--shutdown-timeout", "60s"]
            .map(String::from)
            .to_vec(),
        env: storage.server_endpoint(&proxy.url()),
        ..Options::default()
    };
    let strata = Strata::start(&storage.url, storage.dir.path(), options());
    let mut acked = Acked::new();
    for n in 1..=5 {
        let request = request(n);
        assert_eq!(send(&strata, &request).await.status().as_u16(), 200);
        record(&mut acked, &request);
    }

    // The store hangs, so the graceful shutdown keeps retrying the upload...
    proxy.set(Fault::Hang);
    let pid = strata.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        nix::sys::signal::kill(pid, None).is_ok(),
        "still flushing after the first signal"
    );
    // ... until a second signal: exit now.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = strata.wait_for_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));

    // Nothing acknowledged was lost: the next start has it all.
    proxy.set(Fault::Pass);
    let strata = Strata::start(&storage.url, storage.dir.path(), options());
    assert_all_readable(&strata.http, &acked).await;
    strata.terminate();
}
