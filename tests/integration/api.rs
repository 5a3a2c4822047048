//! The Tempo API contract: captured client payloads, trace-ID forms,
//! absent traces, tenants, time ranges, fragments across blocks, and the
//! process endpoints Grafana and operators use.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use strata_common::testing::flatten;
use strata_querier::tempopb::TraceByIdResponse;
use tempfile::TempDir;

use crate::support::process::Options;
use crate::support::{Strata, fetch_v2_protobuf, get, http_client};

const JS_JSON: &str = include_str!("../fixtures/otlp-http-json-from-otel-js-0.223.1.json");
const REPO_EXAMPLE_JSON: &str = include_str!("../fixtures/otlp-proto-repo-example-trace.json");
const PYTHON_PROTO: &[u8] =
    include_bytes!("../fixtures/otlp-http-proto-from-otel-python-1.45.2.bin");
const PYTHON_PROTO_GZIP: &[u8] =
    include_bytes!("../fixtures/otlp-http-proto-gzip-from-otel-python-1.45.2.bin.gz");

async fn post(
    strata: &Strata,
    content_type: &str,
    gzip: bool,
    tenant: Option<&str>,
    body: Vec<u8>,
) {
    let mut request = http_client()
        .post(&strata.otlp_http)
        .header("Content-Type", content_type)
        .body(body);
    if gzip {
        request = request.header("Content-Encoding", "gzip");
    }
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );
}

fn trace_ids(request: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn span_count(spans: &[ResourceSpans]) -> usize {
    spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_captured_from_real_clients_are_served_back_exactly() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let cases: Vec<(&str, bool, Vec<u8>, ExportTraceServiceRequest)> = vec![
        (
            "application/json",
            false,
            JS_JSON.as_bytes().to_vec(),
            serde_json::from_str(JS_JSON).unwrap(),
        ),
        (
            "application/json",
            false,
            REPO_EXAMPLE_JSON.as_bytes().to_vec(),
            serde_json::from_str(REPO_EXAMPLE_JSON).unwrap(),
        ),
        (
            "application/x-protobuf",
            false,
            PYTHON_PROTO.to_vec(),
            ExportTraceServiceRequest::decode(PYTHON_PROTO).unwrap(),
        ),
        (
            "application/x-protobuf",
            true,
            PYTHON_PROTO_GZIP.to_vec(),
            ExportTraceServiceRequest::decode(gunzip(PYTHON_PROTO_GZIP).as_slice()).unwrap(),
        ),
    ];
    for (case, (content_type, gzip, body, request)) in cases.into_iter().enumerate() {
        // Each case gets its own tenant: two captures share a trace ID.
        let tenant = format!("case-{case}");
        post(&strata, content_type, gzip, Some(&tenant), body).await;
        for id in trace_ids(&request) {
            let expected: Vec<_> = flatten(&request.resource_spans)
                .into_iter()
                .filter(|s| s.span.trace_id == id)
                .collect();
            let got = fetch_v2_protobuf(&strata.http, &hex::encode(&id), Some(&tenant)).await;
            assert_eq!(flatten(&got), expected, "{content_type} gzip={gzip}");
        }
    }
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_ids_are_case_insensitive_and_short_ids_are_left_padded() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let body = JS_JSON.replace(
        "815514707708c4ccb5cf12873bd2c7f2",
        "0000000000000000abcdef0123456789",
    );
    post(&strata, "application/json", false, None, body.into_bytes()).await;
    for id in [
        "abcdef0123456789",
        "ABCDEF0123456789",
        "0000000000000000abcdef0123456789",
    ] {
        let response = get(&strata.http, &format!("/api/traces/{id}"), None, None).await;
        assert_eq!(response.status, 200, "{id}");
    }
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_traces_are_404_on_v1_and_empty_on_v2() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        get(&strata.http, &format!("/api/traces/{id}"), None, None)
            .await
            .status,
        404
    );
    assert_eq!(
        get(
            &strata.http,
            &format!("/api/traces/{id}"),
            Some("application/protobuf"),
            None
        )
        .await
        .status,
        404
    );
    let json = get(&strata.http, &format!("/api/v2/traces/{id}"), None, None).await;
    assert_eq!(json.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(json["trace"], serde_json::json!({}));
    let proto = get(
        &strata.http,
        &format!("/api/v2/traces/{id}"),
        Some("application/protobuf"),
        None,
    )
    .await;
    assert_eq!(proto.status, 200);
    let response = TraceByIdResponse::decode(proto.body.as_slice()).unwrap();
    assert!(response.trace.unwrap_or_default().resource_spans.is_empty());
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_only_see_their_own_traces() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    post(
        &strata,
        "application/json",
        false,
        Some("team-a"),
        JS_JSON.as_bytes().to_vec(),
    )
    .await;
    let path = "/api/traces/815514707708c4ccb5cf12873bd2c7f2";
    assert_eq!(
        get(&strata.http, path, None, Some("team-a")).await.status,
        200
    );
    assert_eq!(
        get(&strata.http, path, None, Some("team-b")).await.status,
        404
    );
    assert_eq!(get(&strata.http, path, None, None).await.status, 404);
    strata.terminate();
}

/// The JS sample's spans start at 1795764189 s (Unix).
const SAMPLE_START_SECS: u64 = 1_795_764_189;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_across_blocks_and_live_merge_and_time_ranges_prune() {
    let dir = TempDir::new().unwrap();
    let storage = format!("file://{}", dir.path().join("blocks").display());
    let request: ExportTraceServiceRequest = serde_json::from_str(JS_JSON).unwrap();
    let id = "815514707708c4ccb5cf12873bd2c7f2";
    // Split the sample's two spans into two requests.
    let mut first = request.clone();
    first.resource_spans[0].scope_spans[0].spans.truncate(1);
    let mut second = request.clone();
    second.resource_spans[0].scope_spans[0].spans.remove(0);

    // First fragment goes to a block.
    let strata = Strata::start(&storage, dir.path(), Options::default());
    post(
        &strata,
        "application/x-protobuf",
        false,
        None,
        first.encode_to_vec(),
    )
    .await;
    strata.terminate();

    // Second fragment, plus a duplicate of the first, stay live.
    let strata = Strata::start(&storage, dir.path(), Options::default());
    post(
        &strata,
        "application/x-protobuf",
        false,
        None,
        second.encode_to_vec(),
    )
    .await;
    post(
        &strata,
        "application/x-protobuf",
        false,
        None,
        first.encode_to_vec(),
    )
    .await;
    let merged = fetch_v2_protobuf(&strata.http, id, None).await;
    assert_eq!(flatten(&merged), flatten(&request.resource_spans));
    strata.terminate();

    // Now three blocks hold fragments; the trace reads whole, deduplicated.
    let strata = Strata::start(&storage, dir.path(), Options::default());
    let merged = fetch_v2_protobuf(&strata.http, id, None).await;
    assert_eq!(span_count(&merged), 2);
    assert_eq!(flatten(&merged), flatten(&request.resource_spans));

    // A time range around the spans finds them; one elsewhere prunes every block.
    let around = format!(
        "/api/traces/{id}?start={}&end={}",
        SAMPLE_START_SECS - 60,
        SAMPLE_START_SECS + 60
    );
    assert_eq!(get(&strata.http, &around, None, None).await.status, 200);
    let before = format!("/api/traces/{id}?start=1000&end=2000");
    assert_eq!(get(&strata.http, &before, None, None).await.status, 404);
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_endpoints_answer_like_tempo() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let ready = get(&strata.http, "/ready", None, None).await;
    assert_eq!(
        (ready.status, ready.body.as_slice()),
        (200, b"ready".as_slice())
    );
    let echo = get(&strata.http, "/api/echo", None, None).await;
    assert_eq!(
        (echo.status, echo.body.as_slice()),
        (200, b"echo".as_slice())
    );

    let info: serde_json::Value = serde_json::from_slice(
        &get(&strata.http, "/api/status/buildinfo", None, None)
            .await
            .body,
    )
    .unwrap();
    let version: Vec<u64> = info["version"]
        .as_str()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        version >= vec![2, 7, 0],
        "Grafana gates features on version {version:?}"
    );

    post(
        &strata,
        "application/json",
        false,
        None,
        JS_JSON.as_bytes().to_vec(),
    )
    .await;
    let _ = get(
        &strata.http,
        "/api/traces/815514707708c4ccb5cf12873bd2c7f2",
        None,
        None,
    )
    .await;
    let metrics = String::from_utf8(get(&strata.http, "/metrics", None, None).await.body).unwrap();
    for name in [
        "strata_ingester_spans_received_total",
        "strata_ingester_requests_total",
        "strata_query_requests_total",
        "strata_query_duration_seconds_bucket",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    strata.terminate();
}
