//! Fixtures for end-to-end tests: a real `strata` process, real OTel SDK
//! senders, and capture servers that record exactly what the SDK sent.

pub mod capture;
pub mod process;
pub mod proxy;
pub mod sdk;
pub mod storage;
pub mod trace_dataset;
pub mod traceql_oracle;

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use strata_querier::tempopb::{Trace, TraceByIdResponse};

pub use process::Strata;

/// A plain async HTTP client with a timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The result of a trace fetch.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// `GET {base}{path}` with optional `Accept` and tenant headers.
pub async fn get(base: &str, path: &str, accept: Option<&str>, tenant: Option<&str>) -> Fetched {
    let mut request = http_client().get(format!("{base}{path}"));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    Fetched {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// Like [`get`], asserting a 200 answer.
pub async fn get_ok(base: &str, path: &str, accept: Option<&str>, tenant: Option<&str>) -> Fetched {
    let fetched = get(base, path, accept, tenant).await;
    assert_eq!(
        fetched.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&fetched.body)
    );
    fetched
}

/// The trace via `/api/v2/traces/<id>` as protobuf (what Grafana asks for).
pub async fn fetch_v2_protobuf(
    base: &str,
    trace_id: &str,
    tenant: Option<&str>,
) -> Vec<ResourceSpans> {
    let path = format!("/api/v2/traces/{trace_id}");
    let fetched = get_ok(base, &path, Some("application/protobuf"), tenant).await;
    assert_eq!(fetched.content_type, "application/protobuf");
    let response = TraceByIdResponse::decode(fetched.body.as_slice()).unwrap();
    assert_eq!(response.status, 0, "trace reported partial");
    response.trace.unwrap_or_default().resource_spans
}

/// The trace via `/api/traces/<id>` as protobuf (`tempopb.Trace`).
pub async fn fetch_v1_protobuf(
    base: &str,
    trace_id: &str,
    tenant: Option<&str>,
) -> Vec<ResourceSpans> {
    let path = format!("/api/traces/{trace_id}");
    let fetched = get_ok(base, &path, Some("application/protobuf"), tenant).await;
    Trace::decode(fetched.body.as_slice())
        .unwrap()
        .resource_spans
}

/// The trace via `/api/traces/<id>` as Tempo JSON.
pub async fn fetch_v1_json(base: &str, trace_id: &str, tenant: Option<&str>) -> serde_json::Value {
    let fetched = get_ok(base, &format!("/api/traces/{trace_id}"), None, tenant).await;
    assert_eq!(fetched.content_type, "application/json");
    serde_json::from_slice(&fetched.body).unwrap()
}

/// Polls until `/api/v2/traces/<id>` returns `want` spans (or panics).
pub async fn wait_for_spans(
    base: &str,
    trace_id: &str,
    tenant: Option<&str>,
    want: usize,
) -> Vec<ResourceSpans> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = fetch_v2_protobuf(base, trace_id, tenant).await;
        let count: usize = spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        if count >= want {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id}: {count} of {want} spans"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a Prometheus metric line (first series whose line starts
/// with `prefix`), or 0 when absent.
pub async fn metric(base: &str, prefix: &str) -> f64 {
    let text = String::from_utf8(get(base, "/metrics", None, None).await.body).unwrap();
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The S3 endpoint the test script started, or a clear failure. Tests that
/// need S3 fail rather than pass silently when it is missing, unless the
/// caller opted out with `STRATA_SKIP_S3_TESTS=1`.
pub fn s3_endpoint() -> Option<String> {
    match std::env::var("STRATA_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ if std::env::var("STRATA_SKIP_S3_TESTS").as_deref() == Ok("1") => None,
        _ => panic!(
            "STRATA_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh, which starts \
             SeaweedFS, or set STRATA_SKIP_S3_TESTS=1 to skip the S3 tests deliberately"
        ),
    }
}
