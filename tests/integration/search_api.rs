//! Tempo's TraceQL search, tag and tag-value APIs end to end: the JSON
//! shapes (insta snapshots), the gRPC `StreamingQuerier` on the HTTP port,
//! the requests Grafana sends, tenant isolation and bad input.
//!
//! The contract is `docs/traceql.md` and Tempo's behaviour as recorded in
//! the project's notes on Tempo's API (jsonpb rules, parameter checks,
//! Grafana's requests).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};
use strata_common::TenantId;
use strata_common::block::{BlockWriteOptions, write_block};
use strata_common::convert::request_to_batch;
use strata_querier::tempopb::streaming_querier_client::StreamingQuerierClient;
use strata_querier::tempopb::{
    LegacyTimestamp, SearchRequest, SearchResponse, SearchTagValuesRequest, SearchTagsRequest,
};
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::support::process::Options;
use crate::support::storage::TestStorage;
use crate::support::{Strata, http_client};

// ---------------------------------------------------------------------------
// Fixture: three traces with fixed IDs and times.

/// The fixture's first span starts at this Unix second (2026-09-21).
const BASE_SECS: u64 = 1_790_000_000;
const BASE: u64 = BASE_SECS * 1_000_000_000;
const MS: u64 = 1_000_000;

/// Starts with 0x00 0x0f: printed as `fa1b…` (three leading zeros cut).
const T1: &str = "000fa1b2c3d4e5f60718293a4b5c6d7e";
/// Starts with 0x0f; has no root span.
const T2: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// A root span shorter than a millisecond.
const T3: &str = "7ab1c2d3e4f5061728394a5b6c7d8e9f";
/// Spans in the fixture.
const FIXTURE_SPANS: usize = 6;

/// How Tempo prints a trace ID in search results.
fn printed(trace_id: &str) -> &str {
    trace_id.trim_start_matches('0')
}

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(v),
        ..KeyValue::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn f(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn b(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

/// A span of `trace` starting `start` ns after [`BASE`].
#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    kind: SpanKind,
    start: u64,
    duration: u64,
    attributes: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: hex::decode(trace).unwrap(),
        span_id: hex::decode(id).unwrap(),
        parent_span_id: hex::decode(parent).unwrap(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: BASE + start,
        end_time_unix_nano: BASE + start + duration,
        attributes,
        ..Span::default()
    }
}

fn with_status(mut span: Span, code: StatusCode, message: &str) -> Span {
    span.status = Some(Status {
        code: code as i32,
        message: message.into(),
    });
    span
}

fn resource_spans(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "search-it".into(),
                version: "1.0.0".into(),
                ..InstrumentationScope::default()
            }),
            spans,
            ..ScopeSpans::default()
        }],
        ..ResourceSpans::default()
    }
}

/// T1: `api` root (error, 500, a float and a bool) with two `db` children;
/// T2: two `worker` spans whose parent never arrives; T3: one `api` root of
/// 0.5 ms with attribute names holding a space and a slash.
fn fixture() -> ExportTraceServiceRequest {
    let root = with_status(
        span(
            T1,
            "00a1b2c3d4e5f601",
            "",
            "GET /orders",
            SpanKind::Server,
            0,
            250 * MS,
            vec![
                s("http.route", "/orders"),
                i("http.status_code", 500),
                f("ratio", 0.25),
                b("cache.hit", false),
            ],
        ),
        StatusCode::Error,
        "boom",
    );
    let select = span(
        T1,
        "00a1b2c3d4e5f602",
        "00a1b2c3d4e5f601",
        "SELECT orders",
        SpanKind::Client,
        10 * MS,
        30 * MS,
        vec![s("db.system", "postgresql")],
    );
    let insert = with_status(
        span(
            T1,
            "00a1b2c3d4e5f603",
            "00a1b2c3d4e5f601",
            "INSERT audit",
            SpanKind::Client,
            50 * MS,
            10 * MS,
            vec![s("db.system", "postgresql")],
        ),
        StatusCode::Ok,
        "",
    );
    let job = span(
        T2,
        "0b0c0d0e0f101112",
        "deadbeefdeadbeef",
        "process job",
        SpanKind::Consumer,
        1_000 * MS,
        500 * MS,
        vec![s("http.route", "/jobs"), i("http.status_code", 200)],
    );
    let sleep = span(
        T2,
        "0b0c0d0e0f101113",
        "0b0c0d0e0f101112",
        "sleep",
        SpanKind::Internal,
        1_100 * MS,
        100 * MS,
        Vec::new(),
    );
    let users = span(
        T3,
        "7a7b7c7d7e7f8081",
        "",
        "GET /users",
        SpanKind::Server,
        2_000 * MS,
        MS / 2,
        vec![
            s("http.route", "/users"),
            i("http.status_code", 200),
            b("cache.hit", true),
            s("a b", "spaced"),
            s("x/y", "slashed"),
        ],
    );
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                vec![
                    s("service.name", "api"),
                    s("deployment.environment", "prod"),
                    i("host.cpu.count", 8),
                ],
                vec![root, users],
            ),
            resource_spans(vec![s("service.name", "db")], vec![select, insert]),
            resource_spans(vec![s("service.name", "worker")], vec![job, sleep]),
        ],
    }
}

/// Options of an all-in-one server for the fixture: its fixed timestamps
/// lie in the past, and must outlive retention while the test runs.
fn all_in_one(extra: &[&str]) -> Options<'static> {
    let mut args = vec!["--retention".to_owned(), "36500d".to_owned()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Options {
        args,
        ..Options::default()
    }
}

// ---------------------------------------------------------------------------
// HTTP helpers.

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.content_type, "application/json", "{}", self.text());
        // jsonpb output is compact, without a trailing newline.
        assert!(!self.body.ends_with(b"\n"));
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Asserts a 400 with a plain-text body and returns the body.
    fn bad_request(&self, what: &str) -> String {
        assert_eq!(self.status, 400, "{what}: {}", self.text());
        assert!(
            self.content_type.starts_with("text/plain"),
            "{what}: content type {:?}",
            self.content_type
        );
        let text = self.text();
        assert!(!text.is_empty(), "{what}: empty error body");
        text
    }
}

/// `GET {base}{path_and_query}` (already encoded) with extra headers.
async fn get_raw(base: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = http_client().get(format!("{base}{path_and_query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// `GET {base}{path}` with `params` form-encoded and an optional tenant.
async fn get_params(
    base: &str,
    path: &str,
    params: &[(&str, &str)],
    tenant: Option<&str>,
) -> Answer {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", go_query_escape(v)))
        .collect();
    let path_and_query = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let headers: Vec<(&str, &str)> = tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect();
    get_raw(base, &path_and_query, &headers).await
}

/// JavaScript's `encodeURIComponent`.
fn encode_uri_component(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Go's `url.QueryEscape` (what `url.Values.Encode` writes).
fn go_query_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The status of a GET sent as raw HTTP/1.1, for URLs longer than the
/// `http` crate accepts; `None` when the server reset the connection
/// before a status line arrived (it may refuse a request it has not read).
async fn raw_get_status(base: &str, path_and_query: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
}

async fn post_otlp(strata: &Strata, tenant: Option<&str>, request: &ExportTraceServiceRequest) {
    let mut post = http_client()
        .post(&strata.otlp_http)
        .header("Content-Type", "application/x-protobuf")
        .body(request.encode_to_vec());
    if let Some(tenant) = tenant {
        post = post.header("X-Scope-OrgID", tenant);
    }
    let response = post.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// `/api/search` as JSON.
async fn search(base: &str, params: &[(&str, &str)], tenant: Option<&str>) -> Value {
    get_params(base, "/api/search", params, tenant).await.json()
}

/// Polls until `{ }` finds `want` traces for `tenant`.
async fn wait_for_traces(base: &str, tenant: Option<&str>, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = search(base, &[("q", "{ }"), ("limit", "1000")], tenant).await;
        let n = found["traces"].as_array().unwrap().len();
        if n >= want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} of {want} traces"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn trace_ids(response: &Value) -> Vec<String> {
    response["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// `(type, value)` pairs of a v2 tag-values answer.
fn typed_values(response: &Value) -> Vec<(String, String)> {
    response["tagValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap().to_owned(),
                v["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every scope's tags of a v2 tags answer, by scope name.
fn scopes(response: &Value) -> BTreeMap<String, Vec<String>> {
    response["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), strings(&s["tags"])))
        .collect()
}

/// Tempo's 25 intrinsic tag names, byte-sorted.
const INTRINSICS: [&str; 25] = [
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "link:spanID",
    "link:traceID",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:id",
    "span:kind",
    "span:name",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:id",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

/// Checks gogo-jsonpb typing everywhere in a search or tag answer: 64-bit
/// fields are strings of digits, 32-bit ones numbers; every spanset has
/// `spans` (Grafana iterates it); IDs are lowercase hex.
fn check_jsonpb(value: &Value) {
    const U64_STRINGS: [&str; 6] = [
        "startTimeUnixNano",
        "durationNanos",
        "inspectedBytes",
        "totalBlockBytes",
        "inspectedSpans",
        "intValue",
    ];
    const U32_NUMBERS: [&str; 8] = [
        "durationMs",
        "matched",
        "spanCount",
        "errorCount",
        "inspectedTraces",
        "totalBlocks",
        "completedJobs",
        "totalJobs",
    ];
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if U64_STRINGS.contains(&key.as_str()) {
                    let text = v
                        .as_str()
                        .unwrap_or_else(|| panic!("{key} must be a JSON string: {v}"));
                    let digits = text.strip_prefix('-').filter(|_| key == "intValue");
                    let digits = digits.unwrap_or(text);
                    assert!(
                        !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()),
                        "{key}: {text:?}"
                    );
                    // jsonpb omits zero values.
                    assert!(key == "intValue" || text != "0", "{key} is zero");
                } else if U32_NUMBERS.contains(&key.as_str()) {
                    let n = v
                        .as_u64()
                        .unwrap_or_else(|| panic!("{key} must be a JSON number: {v}"));
                    assert!(n <= u64::from(u32::MAX) && n > 0, "{key}: {n}");
                } else if key == "traceID" {
                    let id = v.as_str().unwrap();
                    assert!(!id.starts_with('0'), "traceID {id} has leading zeros");
                    assert!(id.len() <= 32 && is_lower_hex(id), "traceID {id}");
                } else if key == "spanID" {
                    let id = v.as_str().unwrap();
                    assert!(id.len() == 16 && is_lower_hex(id), "spanID {id}");
                } else if key == "spanSet" || key == "spanSets" {
                    let sets = if key == "spanSet" {
                        vec![v]
                    } else {
                        v.as_array().unwrap().iter().collect()
                    };
                    for set in sets {
                        assert!(set["spans"].is_array(), "spanset without spans: {set}");
                    }
                }
                check_jsonpb(v);
            }
        }
        Value::Array(items) => items.iter().for_each(check_jsonpb),
        _ => {}
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The answer without its `metrics` (they differ between live data and
/// blocks).
fn without_metrics(mut value: Value) -> Value {
    value.as_object_mut().unwrap().remove("metrics");
    value
}

// ---------------------------------------------------------------------------
// 1. JSON shapes.

/// Query parameters, in order.
type Params = Vec<(&'static str, &'static str)>;

/// The snapshot cases: name, path, parameters.
fn shape_cases() -> Vec<(&'static str, &'static str, Params)> {
    vec![
        (
            "search_traceql",
            "/api/search",
            vec![(
                "q",
                "{ span.http.status_code >= 200 } | select(span.http.route, span.ratio, span.cache.hit, status, kind)",
            )],
        ),
        (
            "search_by",
            "/api/search",
            vec![
                (
                    "q",
                    r#"{ resource.service.name = "api" || resource.service.name = "db" } | by(resource.service.name)"#,
                ),
                ("spss", "1"),
            ],
        ),
        (
            "search_aggregate_duration",
            "/api/search",
            vec![("q", "{ kind = client } | avg(duration) > 15ms")],
        ),
        (
            "search_empty",
            "/api/search",
            vec![("q", r#"{ resource.service.name = "nope" }"#)],
        ),
        ("tags_v1", "/api/search/tags", vec![]),
        (
            "tags_v1_intrinsic",
            "/api/search/tags",
            vec![("scope", "intrinsic")],
        ),
        ("tags_v2", "/api/v2/search/tags", vec![]),
        (
            "tags_v2_span",
            "/api/v2/search/tags",
            vec![("scope", "span")],
        ),
        (
            "tag_values_v1_strings",
            "/api/search/tag/http.route/values",
            vec![],
        ),
        (
            "tag_values_v1_ints",
            "/api/search/tag/http.status_code/values",
            vec![],
        ),
        (
            "tag_values_v2_strings",
            "/api/v2/search/tag/resource.service.name/values",
            vec![],
        ),
        (
            "tag_values_v2_ints",
            "/api/v2/search/tag/span.http.status_code/values",
            vec![],
        ),
        (
            "tag_values_v2_floats",
            "/api/v2/search/tag/span.ratio/values",
            vec![],
        ),
        (
            "tag_values_v2_bools",
            "/api/v2/search/tag/.cache.hit/values",
            vec![],
        ),
        (
            "tag_values_v2_intrinsic_name",
            "/api/v2/search/tag/name/values",
            vec![],
        ),
        (
            "tag_values_v2_filtered",
            "/api/v2/search/tag/span.http.route/values",
            vec![(
                "q",
                r#"{ resource.service.name = "api" && span.http.route = }"#,
            )],
        ),
        (
            "tag_values_v2_status",
            "/api/v2/search/tag/status/values",
            vec![],
        ),
        (
            "tag_values_v2_kind",
            "/api/v2/search/tag/kind/values",
            vec![],
        ),
        (
            "tag_values_v2_duration",
            "/api/v2/search/tag/duration/values",
            vec![],
        ),
    ]
}

/// Snapshots one answer, its metrics' sizes and work counts redacted (they
/// depend on encoding details and on how much pruning and pushdown spare,
/// not on the API).
fn snapshot(name: &str, value: &Value) {
    let mut value = value.clone();
    if let Some(metrics) = value.get_mut("metrics").and_then(Value::as_object_mut) {
        // Present or not depending on what pruning spared: not shape.
        metrics.remove("inspectedSpans");
        metrics.remove("inspectedTraces");
    }
    insta::with_settings!({ prepend_module_to_snapshot => true, omit_expression => true }, {
        insta::assert_json_snapshot!(name, value, {
            ".metrics.inspectedBytes" => "[bytes]",
            ".metrics.totalBlockBytes" => "[bytes]",
        });
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_tag_answers_have_tempos_json_shapes() {
    let dir = TempDir::new().unwrap();
    let storage = format!("file://{}", dir.path().join("blocks").display());
    // Everything stays live until shutdown, so the figures are stable.
    let strata = Strata::start(
        &storage,
        dir.path(),
        all_in_one(&[
            "--trace-idle-period",
            "10m",
            "--trace-max-live",
            "10m",
            "--block-max-age",
            "10m",
        ]),
    );
    post_otlp(&strata, None, &fixture()).await;
    wait_for_traces(&strata.http, None, 3).await;

    let mut live_answers = Vec::new();
    for (name, path, params) in shape_cases() {
        let answer = get_params(&strata.http, path, &params, None).await;
        let body = answer.json();
        check_jsonpb(&body);
        assert!(
            body["metrics"].is_object(),
            "{name}: metrics always present"
        );
        snapshot(name, &body);
        live_answers.push(body);
    }

    // The jsonpb rules, spelled out on the TraceQL answer.
    let traceql = &live_answers[0];
    assert_eq!(
        trace_ids(traceql),
        [printed(T3), printed(T2), printed(T1)],
        "newest first"
    );
    let t1 = &traceql["traces"][2];
    assert_eq!(t1["traceID"], "fa1b2c3d4e5f60718293a4b5c6d7e");
    assert_eq!(t1["startTimeUnixNano"], BASE.to_string());
    assert_eq!(t1["durationMs"], 250);
    assert_eq!(t1["rootServiceName"], "api");
    assert_eq!(t1["rootTraceName"], "GET /orders");
    assert_eq!(t1["spanSet"], t1["spanSets"][0]);
    assert_eq!(
        t1["serviceStats"],
        json!({"api": {"spanCount": 1, "errorCount": 1}, "db": {"spanCount": 2}})
    );
    let root = &t1["spanSets"][0]["spans"][0];
    assert_eq!(root["spanID"], "00a1b2c3d4e5f601");
    assert_eq!(root["durationNanos"], (250 * MS).to_string());
    let attributes: BTreeMap<&str, &Value> = root["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), &a["value"]))
        .collect();
    assert_eq!(attributes["http.status_code"], &json!({"intValue": "500"}));
    assert_eq!(attributes["http.route"], &json!({"stringValue": "/orders"}));
    assert_eq!(attributes["ratio"], &json!({"doubleValue": 0.25}));
    assert_eq!(attributes["cache.hit"], &json!({"boolValue": false}));
    assert_eq!(attributes["status"], &json!({"stringValue": "error"}));
    assert_eq!(attributes["kind"], &json!({"stringValue": "server"}));
    let t2 = &traceql["traces"][1];
    assert_eq!(t2["traceID"], "f1e2d3c4b5a69788796a5b4c3d2e1f0");
    assert_eq!(t2["rootServiceName"], "<root span not yet received>");
    assert!(t2.get("rootTraceName").is_none());
    let t3 = &traceql["traces"][0];
    assert!(t3.get("durationMs").is_none(), "0 ms is omitted: {t3}");

    // by(): one spanset per group, `matched` counts before spss cuts.
    let by = &live_answers[1];
    let sets = by["traces"][1]["spanSets"].as_array().unwrap();
    assert_eq!(by["traces"][1]["traceID"], printed(T1));
    let db = sets
        .iter()
        .find(|s| s["attributes"][0]["value"]["stringValue"] == "db")
        .unwrap();
    assert_eq!(db["attributes"][0]["key"], "by(resource.service.name)");
    assert_eq!(db["matched"], 2);
    assert_eq!(db["spans"].as_array().unwrap().len(), 1);

    // Aggregates: a duration as a Go duration string.
    let aggregate = &live_answers[2];
    assert_eq!(
        aggregate["traces"][0]["spanSets"][0]["attributes"],
        json!([{"key": "avg(duration)", "value": {"stringValue": "20ms"}}])
    );

    // The empty answer keeps `traces`.
    assert_eq!(live_answers[3]["traces"], json!([]));

    // Protobuf: the same answer as tempopb.SearchResponse.
    let (_, path, params) = &shape_cases()[0];
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", go_query_escape(v)))
        .collect();
    let proto = get_raw(
        &strata.http,
        &format!("{path}?{}", query.join("&")),
        &[("Accept", "application/protobuf")],
    )
    .await;
    assert_eq!(proto.status, 200);
    assert_eq!(proto.content_type, "application/protobuf");
    let proto = SearchResponse::decode(proto.body.as_slice()).unwrap();
    assert_proto_matches_json(&proto, traceql);

    // 400 bodies: plain text, Tempo's wording.
    for (name, params) in [
        ("search_error_400_type", vec![("q", r#"{ 1 = "foo" }"#)]),
        (
            "search_error_400_limit",
            vec![("q", "{ }"), ("limit", "300000")],
        ),
    ] {
        let error = get_params(&strata.http, "/api/search", &params, None)
            .await
            .bad_request(name);
        insta::with_settings!({ prepend_module_to_snapshot => true, omit_expression => true }, {
            insta::assert_snapshot!(name, error);
        });
    }
    strata.terminate();

    // The same data read back from the block the shutdown wrote: the same
    // answers (figures aside).
    let querier = Strata::start(
        &storage,
        dir.path(),
        Options {
            args: ["--target", "querier"].map(String::from).to_vec(),
            ..Options::default()
        },
    );
    for ((name, path, params), live) in shape_cases().into_iter().zip(live_answers) {
        let body = get_params(&querier.http, path, &params, None).await.json();
        check_jsonpb(&body);
        assert_eq!(
            without_metrics(body),
            without_metrics(live),
            "{name}: blocks and live data answer differently"
        );
    }
    let blocks = search(&querier.http, &[("q", "{ }")], None).await;
    assert_eq!(blocks["metrics"]["totalBlocks"], 1, "{blocks}");
    // Trace-level intrinsics, from the block's summary.
    for (tag, want) in [
        ("rootServiceName", vec!["api"]),
        ("trace:rootService", vec!["api"]),
        ("rootName", vec!["GET /orders", "GET /users"]),
        ("statusMessage", vec!["boom"]),
        ("instrumentation:name", vec!["search-it"]),
    ] {
        let answer = get_params(
            &querier.http,
            &format!("/api/v2/search/tag/{tag}/values"),
            &[],
            None,
        )
        .await
        .json();
        let mut got: Vec<String> = typed_values(&answer)
            .into_iter()
            .map(|(kind, value)| {
                assert_eq!(kind, "string");
                value
            })
            .collect();
        got.sort();
        assert_eq!(got, want, "{tag}");
    }
    querier.terminate();
}

/// The protobuf answer carries what the JSON one does.
fn assert_proto_matches_json(proto: &SearchResponse, json: &Value) {
    let traces = json["traces"].as_array().unwrap();
    assert_eq!(proto.traces.len(), traces.len());
    for (p, j) in proto.traces.iter().zip(traces) {
        assert_eq!(p.trace_id, j["traceID"].as_str().unwrap());
        assert_eq!(p.root_service_name, j["rootServiceName"].as_str().unwrap());
        assert_eq!(
            p.root_trace_name,
            j["rootTraceName"].as_str().unwrap_or_default()
        );
        assert_eq!(
            p.start_time_unix_nano.to_string(),
            j["startTimeUnixNano"].as_str().unwrap()
        );
        assert_eq!(
            u64::from(p.duration_ms),
            j["durationMs"].as_u64().unwrap_or(0)
        );
        assert_eq!(p.span_set.as_ref(), p.span_sets.first());
        let sets = j["spanSets"].as_array().unwrap();
        assert_eq!(p.span_sets.len(), sets.len());
        for (ps, js) in p.span_sets.iter().zip(sets) {
            assert_eq!(u64::from(ps.matched), js["matched"].as_u64().unwrap());
            let spans = js["spans"].as_array().unwrap();
            assert_eq!(ps.spans.len(), spans.len());
            for (pspan, jspan) in ps.spans.iter().zip(spans) {
                assert_eq!(pspan.span_id, jspan["spanID"].as_str().unwrap());
                assert_eq!(pspan.name, jspan["name"].as_str().unwrap());
                assert_eq!(
                    pspan.duration_nanos.to_string(),
                    jspan["durationNanos"].as_str().unwrap()
                );
                let keys: Vec<&str> = pspan.attributes.iter().map(|a| a.key.as_str()).collect();
                let json_keys: Vec<&str> = jspan["attributes"]
                    .as_array()
                    .map(|a| a.iter().map(|a| a["key"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(keys, json_keys);
            }
        }
        for (service, stats) in &p.service_stats {
            assert_eq!(
                u64::from(stats.span_count),
                j["serviceStats"][service]["spanCount"].as_u64().unwrap()
            );
        }
    }
    let metrics = proto.metrics.unwrap();
    assert_eq!(
        u64::from(metrics.total_jobs),
        json["metrics"]["totalJobs"].as_u64().unwrap_or(0)
    );
}

// ---------------------------------------------------------------------------
// 2. The gRPC streaming API on the HTTP port.

/// Blocks written for the streaming test, and traces per block.
const GRPC_BLOCKS: usize = 5;
const GRPC_TRACES_PER_BLOCK: usize = 4;
const SHOP: &str = "shop";

fn shop_trace_id(block: usize, trace: usize) -> String {
    format!("{block:02x}{:02x}5a5a5a5a5a5a5a5a5a5a5a5a5a5a", trace + 1)
}

/// One block of `shop` traces, `block` minutes after [`BASE`]: a root
/// (`shop`) and a child (`payments`) per trace.
fn shop_block(block: usize) -> ExportTraceServiceRequest {
    let mut roots = Vec::new();
    let mut children = Vec::new();
    for t in 0..GRPC_TRACES_PER_BLOCK {
        let trace = shop_trace_id(block, t);
        let start = (block as u64 * 60 + t as u64) * 1_000 * MS;
        let root_id = format!("{block:02x}{t:02x}000000000001");
        roots.push(span(
            &trace,
            &root_id,
            "",
            "checkout",
            SpanKind::Server,
            start,
            (5 + t as u64) * MS,
            vec![
                s("order.id", &format!("o-{block}-{t}")),
                i("block", block as i64),
            ],
        ));
        children.push(span(
            &trace,
            &format!("{block:02x}{t:02x}000000000002"),
            &root_id,
            "charge",
            SpanKind::Client,
            start + MS,
            2 * MS,
            vec![s(
                "payment.method",
                if t % 2 == 0 { "card" } else { "cash" },
            )],
        ));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(vec![s("service.name", "shop")], roots),
            resource_spans(vec![s("service.name", "payments")], children),
        ],
    }
}

async fn write_request(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    request: &ExportTraceServiceRequest,
) {
    write_block(
        Arc::clone(store),
        tenant.clone(),
        vec![request_to_batch(request).unwrap()],
        0,
        BlockWriteOptions::default(),
    )
    .await
    .unwrap();
}

/// The zero `time.Time` as gogo marshals `RF1After` (always sent by
/// Grafana's Go client).
fn rf1_after() -> Option<LegacyTimestamp> {
    Some(LegacyTimestamp {
        seconds: -62_135_596_800,
        nanos: 0,
    })
}

async fn grpc_client(strata: &Strata) -> StreamingQuerierClient<Channel> {
    StreamingQuerierClient::connect(strata.http.clone())
        .await
        .unwrap()
}

/// A request with `x-scope-orgid` metadata (absent for `None`).
fn with_tenant<T>(message: T, tenant: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(tenant) = tenant {
        request
            .metadata_mut()
            .insert("x-scope-orgid", tenant.parse().unwrap());
    }
    request
}

/// Every message of a Search stream, or the status it failed with.
async fn grpc_search(
    client: &mut StreamingQuerierClient<Channel>,
    request: SearchRequest,
    tenant: Option<&str>,
) -> Result<Vec<SearchResponse>, tonic::Status> {
    let mut stream = client
        .search(with_tenant(request, tenant))
        .await?
        .into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await? {
        messages.push(message);
    }
    Ok(messages)
}

/// The last message of a one-shot tag stream.
async fn last<T>(stream: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>) -> T {
    let mut stream = stream.unwrap().into_inner();
    let mut last = None;
    while let Some(message) = stream.message().await.unwrap() {
        last = Some(message);
    }
    last.expect("an empty stream")
}

fn search_request(query: &str, limit: u32, spss: u32) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        limit,
        spans_per_span_set: spss,
        rf1_after: rf1_after(),
        ..SearchRequest::default()
    }
}

fn tags_request(scope: &str) -> SearchTagsRequest {
    SearchTagsRequest {
        scope: scope.into(),
        rf1_after: rf1_after(),
        ..SearchTagsRequest::default()
    }
}

fn tag_values_request(tag: &str, query: &str) -> SearchTagValuesRequest {
    SearchTagValuesRequest {
        tag_name: tag.into(),
        query: query.into(),
        rf1_after: rf1_after(),
        ..SearchTagValuesRequest::default()
    }
}

fn v2_scopes(
    response: &strata_querier::tempopb::SearchTagsV2Response,
) -> BTreeMap<String, Vec<String>> {
    response
        .scopes
        .iter()
        .map(|s| (s.name.clone(), s.tags.clone()))
        .collect()
}

fn v2_values(
    response: &strata_querier::tempopb::SearchTagValuesV2Response,
) -> Vec<(String, String)> {
    response
        .tag_values
        .iter()
        .map(|v| (v.r#type.clone(), v.value.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streaming_search_and_tags_agree_with_http() {
    let storage = TestStorage::local();
    let store = storage.store();
    let shop = TenantId::new(SHOP).unwrap();
    for block in 0..GRPC_BLOCKS {
        write_request(&store, &shop, &shop_block(block)).await;
    }
    // The default tenant holds one unrelated trace.
    let lonely = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            vec![s("service.name", "lonely")],
            vec![span(
                "11111111111111111111111111111111",
                "1111111111111111",
                "",
                "alone",
                SpanKind::Internal,
                0,
                MS,
                vec![s("lonely.key", "lonely-value")],
            )],
        )],
    };
    write_request(&store, &TenantId::default_tenant(), &lonely).await;

    let querier = Strata::start(
        &storage.url,
        storage.dir.path(),
        Options {
            args: ["--target", "querier"].map(String::from).to_vec(),
            ..Options::default()
        },
    );
    let query = r#"{ resource.service.name = "shop" }"#;
    let total = GRPC_BLOCKS * GRPC_TRACES_PER_BLOCK;
    let http = get_raw(
        &querier.http,
        &format!(
            "/api/search?q={}&limit=1000&spss=5",
            encode_uri_component(query)
        ),
        &[("Accept", "application/protobuf"), ("X-Scope-OrgID", SHOP)],
    )
    .await;
    assert_eq!(http.status, 200, "{}", http.text());
    let http = SearchResponse::decode(http.body.as_slice()).unwrap();
    assert_eq!(http.traces.len(), total);

    let mut client = grpc_client(&querier).await;
    let messages = grpc_search(&mut client, search_request(query, 1000, 5), Some(SHOP))
        .await
        .unwrap();
    assert!(
        messages.len() > 1,
        "{} message(s): the search should stream as blocks complete",
        messages.len()
    );
    // Figures are cumulative: the totals are known from the first message,
    // completed jobs never go back, and the last message has them all.
    let figures: Vec<_> = messages
        .iter()
        .map(|m| m.metrics.unwrap_or_default())
        .collect();
    for m in &figures {
        assert_eq!(m.total_jobs as usize, GRPC_BLOCKS, "{figures:?}");
        assert_eq!(m.total_blocks as usize, GRPC_BLOCKS, "{figures:?}");
    }
    for pair in figures.windows(2) {
        assert!(
            pair[0].completed_jobs <= pair[1].completed_jobs,
            "{figures:?}"
        );
        assert!(
            pair[0].inspected_traces <= pair[1].inspected_traces,
            "{figures:?}"
        );
    }
    let final_message = messages.last().unwrap();
    assert_eq!(
        final_message.metrics.unwrap().completed_jobs as usize,
        GRPC_BLOCKS
    );
    assert!(final_message.metrics.unwrap().inspected_bytes > 0);
    // The final message is the whole answer, as HTTP gives it.
    assert_eq!(final_message.traces, http.traces);
    // What streamed before adds up to the same traces (Grafana keeps the
    // first copy of each), each as the final answer has it.
    let mut streamed: BTreeMap<String, _> = BTreeMap::new();
    for message in &messages[..messages.len() - 1] {
        for trace in &message.traces {
            streamed
                .entry(trace.trace_id.clone())
                .or_insert_with(|| trace.clone());
        }
    }
    let http_ids: BTreeSet<String> = http.traces.iter().map(|t| t.trace_id.clone()).collect();
    assert_eq!(streamed.keys().cloned().collect::<BTreeSet<_>>(), http_ids);
    for trace in &http.traces {
        assert_eq!(&streamed[&trace.trace_id], trace);
    }
    assert!(http_ids.contains(shop_trace_id(0, 0).trim_start_matches('0')));

    // Without RF1After too (a client that does not send it).
    let mut plain = search_request(query, 1000, 5);
    plain.rf1_after = None;
    let messages = grpc_search(&mut client, plain, Some(SHOP)).await.unwrap();
    assert_eq!(messages.last().unwrap().traces, http.traces);

    // An empty x-scope-orgid is the default tenant, as is none.
    for tenant in [Some(""), None] {
        let messages = grpc_search(&mut client, search_request("{ }", 1000, 3), tenant)
            .await
            .unwrap();
        let ids: Vec<&str> = messages
            .last()
            .unwrap()
            .traces
            .iter()
            .map(|t| t.trace_id.as_str())
            .collect();
        assert_eq!(ids, ["11111111111111111111111111111111"], "{tenant:?}");
    }

    // Tag calls answer as their HTTP routes do.
    let http_tags = get_params(&querier.http, "/api/search/tags", &[], Some(SHOP))
        .await
        .json();
    let grpc_tags = last(
        client
            .search_tags(with_tenant(tags_request(""), Some(SHOP)))
            .await,
    )
    .await;
    assert_eq!(grpc_tags.tag_names, strings(&http_tags["tagNames"]));
    assert!(grpc_tags.tag_names.contains(&"order.id".to_owned()));
    assert!(!grpc_tags.tag_names.contains(&"lonely.key".to_owned()));

    for scope in ["", "span", "intrinsic"] {
        let http_v2 = get_params(
            &querier.http,
            "/api/v2/search/tags",
            &[("scope", scope)],
            Some(SHOP),
        )
        .await
        .json();
        let grpc_v2 = last(
            client
                .search_tags_v2(with_tenant(tags_request(scope), Some(SHOP)))
                .await,
        )
        .await;
        assert_eq!(v2_scopes(&grpc_v2), scopes(&http_v2), "scope {scope:?}");
    }

    let http_values = get_params(
        &querier.http,
        "/api/search/tag/payment.method/values",
        &[],
        Some(SHOP),
    )
    .await
    .json();
    let grpc_values = last(
        client
            .search_tag_values(with_tenant(
                tag_values_request("payment.method", ""),
                Some(SHOP),
            ))
            .await,
    )
    .await;
    assert_eq!(grpc_values.tag_values, strings(&http_values["tagValues"]));
    assert_eq!(
        grpc_values
            .tag_values
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["card".to_owned(), "cash".to_owned()])
    );

    for (tag, q) in [
        ("resource.service.name", ""),
        ("span.order.id", r#"{ span.block = 3 && span.order.id = }"#),
        ("status", ""),
    ] {
        let http_v2 = get_params(
            &querier.http,
            &format!("/api/v2/search/tag/{tag}/values"),
            &[("q", q)],
            Some(SHOP),
        )
        .await
        .json();
        let grpc_v2 = last(
            client
                .search_tag_values_v2(with_tenant(tag_values_request(tag, q), Some(SHOP)))
                .await,
        )
        .await;
        assert_eq!(v2_values(&grpc_v2), typed_values(&http_v2), "{tag} {q}");
    }
    let filtered = last(
        client
            .search_tag_values_v2(with_tenant(
                tag_values_request("span.order.id", r#"{ span.block = 3 && span.order.id = }"#),
                Some(SHOP),
            ))
            .await,
    )
    .await;
    let mut filtered = v2_values(&filtered);
    filtered.sort();
    assert_eq!(
        filtered,
        (0..GRPC_TRACES_PER_BLOCK)
            .map(|t| ("string".to_owned(), format!("o-3-{t}")))
            .collect::<Vec<_>>()
    );

    // Errors: InvalidArgument with the HTTP body as message.
    for (query, limit, spss) in [
        ("{ .a = }", 20, 3),
        (r#"{ 1 = "foo" }"#, 20, 3),
        ("{ } | rate()", 20, 3),
        ("{ }", 262_145, 3),
        ("{ }", 20, 101),
    ] {
        let status = grpc_search(&mut client, search_request(query, limit, spss), Some(SHOP))
            .await
            .unwrap_err();
        let body = get_params(
            &querier.http,
            "/api/search",
            &[
                ("q", query),
                ("limit", &limit.to_string()),
                ("spss", &spss.to_string()),
            ],
            Some(SHOP),
        )
        .await
        .bad_request(query);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{query}");
        assert_eq!(status.message(), body, "{query}");
    }
    let status = client
        .search_tag_values_v2(with_tenant(tag_values_request("nope nope", ""), None))
        .await
        .unwrap_err();
    let body = get_raw(&querier.http, "/api/v2/search/tag/nope%20nope/values", &[])
        .await
        .bad_request("tag name");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), body);
    let status = client
        .search_tags_v2(with_tenant(tags_request("nope"), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "invalid scope: nope");
    querier.terminate();
}

// ---------------------------------------------------------------------------
// 3. Grafana's requests, replayed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafanas_requests_are_answered() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), all_in_one(&[]));
    let tenant = "grafana-org";
    post_otlp(&strata, Some(tenant), &fixture()).await;
    wait_for_traces(&strata.http, Some(tenant), 3).await;
    let headers = [("Accept", "application/json"), ("X-Scope-OrgID", tenant)];
    let query = r#"{resource.service.name="api"}"#;
    let (start, end) = (BASE_SECS - 3_600, BASE_SECS + 3_600);

    // The browser (encodeURIComponent) and the backend (url.Values).
    for encoded in [encode_uri_component(query), go_query_escape(query)] {
        let answer = get_raw(
            &strata.http,
            &format!("/api/search?q={encoded}&limit=20&spss=3&start={start}&end={end}"),
            &headers,
        )
        .await
        .json();
        check_jsonpb(&answer);
        assert_eq!(trace_ids(&answer), [printed(T3), printed(T1)]);
    }
    // A range that misses the data finds nothing.
    let answer = get_raw(
        &strata.http,
        &format!(
            "/api/search?q={}&limit=20&spss=3&start={}&end={}",
            encode_uri_component(query),
            BASE_SECS + 7_200,
            BASE_SECS + 10_800
        ),
        &headers,
    )
    .await
    .json();
    assert_eq!(answer["traces"], json!([]));

    let tags = get_raw(&strata.http, "/api/v2/search/tags?limit=5000", &headers)
        .await
        .json();
    let tags = scopes(&tags);
    assert_eq!(tags["intrinsic"], INTRINSICS);
    assert!(tags["resource"].contains(&"service.name".to_owned()));
    assert!(tags["span"].contains(&"a b".to_owned()));
    assert!(tags["span"].contains(&"x/y".to_owned()));

    // Tag names as Grafana's browser code encodes them
    // (`encodeURIComponent(encodeURIComponent(tag))`), and quoted names
    // encoded once, as Grafana's data-source proxy forwards them and as
    // Tempo's own tests send them.
    let incomplete = r#"{resource.service.name="api" && span.http.route=}"#;
    // (tag, times encoded, q, expected (type, value) pairs)
    let cases: [(&str, usize, &str, Params); 8] = [
        (
            "resource.service.name",
            2,
            "",
            vec![("string", "api"), ("string", "db"), ("string", "worker")],
        ),
        (
            "span.http.route",
            2,
            incomplete,
            vec![("string", "/orders"), ("string", "/users")],
        ),
        (
            "status",
            2,
            incomplete,
            vec![
                ("keyword", "error"),
                ("keyword", "ok"),
                ("keyword", "unset"),
            ],
        ),
        ("span.\"a b\"", 1, incomplete, vec![("string", "spaced")]),
        (".\"a b\"", 1, "", vec![("string", "spaced")]),
        ("span.\"x/y\"", 1, "", vec![("string", "slashed")]),
        // An unquoted slash is part of the name.
        ("span.x/y", 1, "", vec![("string", "slashed")]),
        (
            "span.http.route",
            1,
            r#"{ resource.service.name = "worker" && span.http.route = "#,
            vec![("string", "/jobs")],
        ),
    ];
    for (tag, times, q, want) in cases {
        let mut encoded = tag.to_owned();
        for _ in 0..times {
            encoded = encode_uri_component(&encoded);
        }
        let mut path = format!("/api/v2/search/tag/{encoded}/values");
        if !q.is_empty() {
            path.push_str(&format!("?q={}", encode_uri_component(q)));
        }
        let answer = get_raw(&strata.http, &path, &headers).await.json();
        check_jsonpb(&answer);
        let mut got = typed_values(&answer);
        got.sort();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, v)| ((*t).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want, "{path}");
    }

    let echo = get_raw(&strata.http, "/api/echo", &[]).await;
    assert_eq!((echo.status, echo.text().as_str()), (200, "echo"));
    let info: Value = serde_json::from_slice(
        &get_raw(&strata.http, "/api/status/buildinfo", &[])
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
    assert!(version >= vec![2, 7, 0], "{version:?}");
    strata.terminate();
}

// ---------------------------------------------------------------------------
// 4. Tenant isolation.

/// One trace for a tenant, with keys and values named after it.
fn tenant_trace(name: &str, trace: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            vec![
                s("service.name", &format!("{name}-svc")),
                s(&format!("{name}.resource.key"), "r"),
            ],
            vec![span(
                trace,
                &trace[..16],
                "",
                &format!("{name}-op"),
                SpanKind::Server,
                0,
                MS,
                vec![s(&format!("{name}.key"), &format!("{name}-value"))],
            )],
        )],
    }
}

/// Every string in a JSON answer.
fn all_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| all_strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                all_strings(v, out);
            }
        }
        _ => {}
    }
}

/// Asserts no string of `texts` mentions `name`.
fn none_of(name: &str, texts: &[String], what: &str) {
    let leaked: Vec<&String> = texts.iter().filter(|t| t.contains(name)).collect();
    assert!(leaked.is_empty(), "{what}: {name} leaked: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_traces_tags_and_values() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), all_in_one(&[]));
    let tenants = [
        (
            Some("tenant-a"),
            "alpha",
            "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        ),
        (Some("tenant-b"), "beta", "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"),
        (None, "gamma", "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"),
    ];
    for (tenant, name, trace) in tenants {
        post_otlp(&strata, tenant, &tenant_trace(name, trace)).await;
        wait_for_traces(&strata.http, tenant, 1).await;
    }
    let mut client = grpc_client(&strata).await;

    // (header sent, whose data it must show)
    let views = [
        (Some("tenant-a"), "alpha"),
        (Some("tenant-b"), "beta"),
        (Some(""), "gamma"),
        (None, "gamma"),
    ];
    for (header, own) in views {
        let others: Vec<&str> = ["alpha", "beta", "gamma"]
            .into_iter()
            .filter(|n| *n != own)
            .collect();
        let own_trace = tenants.iter().find(|t| t.1 == own).unwrap().2;
        let mut texts = Vec::new();
        // HTTP: search (everything, and each other tenant's values).
        let everything = search(&strata.http, &[("q", "{ }"), ("limit", "100")], header).await;
        assert_eq!(trace_ids(&everything), [own_trace], "{header:?}");
        all_strings(&everything, &mut texts);
        for other in &others {
            let q = format!(
                r#"{{ resource.service.name = "{other}-svc" || span.{other}.key != nil }}"#
            );
            let found = search(&strata.http, &[("q", &q)], header).await;
            assert_eq!(found["traces"], json!([]), "{header:?} {q}");
        }
        let routes = [
            "/api/search/tags".to_owned(),
            "/api/search/tags?scope=span".to_owned(),
            "/api/v2/search/tags".to_owned(),
            "/api/v2/search/tags?scope=resource".to_owned(),
            "/api/search/tag/service.name/values".to_owned(),
            format!("/api/search/tag/{own}.key/values"),
            "/api/v2/search/tag/resource.service.name/values".to_owned(),
            "/api/v2/search/tag/name/values".to_owned(),
            format!(
                "/api/v2/search/tag/resource.service.name/values?q={}",
                encode_uri_component("{ name != nil && resource.service.name = }")
            ),
        ];
        let mut tenant_headers = Vec::new();
        if let Some(h) = header {
            tenant_headers.push(("X-Scope-OrgID", h));
        }
        for route in &routes {
            let answer = get_raw(&strata.http, route, &tenant_headers).await.json();
            all_strings(&answer, &mut texts);
        }
        for other in &others {
            for route in [
                format!("/api/search/tag/{other}.key/values"),
                format!("/api/v2/search/tag/span.{other}.key/values"),
                format!("/api/v2/search/tag/resource.{other}.resource.key/values"),
            ] {
                let answer = get_raw(&strata.http, &route, &tenant_headers).await.json();
                assert_eq!(answer["tagValues"], json!([]), "{header:?} {route}");
            }
        }
        // Own data is visible through the same routes.
        assert!(texts.contains(&format!("{own}.key")), "{header:?}");
        assert!(texts.contains(&format!("{own}-svc")), "{header:?}");
        assert!(texts.contains(&format!("{own}-value")), "{header:?}");

        // gRPC: every call.
        let search = grpc_search(&mut client, search_request("{ }", 100, 3), header)
            .await
            .unwrap();
        for message in &search {
            for trace in &message.traces {
                assert_eq!(trace.trace_id, own_trace, "{header:?}");
                texts.push(trace.root_service_name.clone());
                texts.push(trace.root_trace_name.clone());
            }
        }
        let tags = last(
            client
                .search_tags(with_tenant(tags_request(""), header))
                .await,
        )
        .await;
        texts.extend(tags.tag_names);
        let tags = last(
            client
                .search_tags_v2(with_tenant(tags_request(""), header))
                .await,
        )
        .await;
        texts.extend(tags.scopes.into_iter().flat_map(|s| s.tags));
        let values = last(
            client
                .search_tag_values(with_tenant(tag_values_request("service.name", ""), header))
                .await,
        )
        .await;
        texts.extend(values.tag_values);
        for q in ["", "{ resource.service.name = }"] {
            let values = last(
                client
                    .search_tag_values_v2(with_tenant(
                        tag_values_request("resource.service.name", q),
                        header,
                    ))
                    .await,
            )
            .await;
            let values: Vec<String> = values.tag_values.into_iter().map(|v| v.value).collect();
            assert_eq!(values, [format!("{own}-svc")], "{header:?} {q:?}");
            texts.extend(values);
        }
        for other in &others {
            none_of(other, &texts, &format!("tenant {header:?}"));
        }
    }
    strata.terminate();
}

// ---------------------------------------------------------------------------
// 5. Bad input.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400s_and_lose_nothing() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), all_in_one(&[]));
    post_otlp(&strata, None, &fixture()).await;
    wait_for_traces(&strata.http, None, 3).await;

    let long_query = format!(r#"{{ span.x = "{}" }}"#, "a".repeat(128 * 1024));
    // (path, params, what the message says)
    let search_cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("q", "{ .a = }")],
            "invalid TraceQL query: parse error at line 1, col 8: ",
        ),
        (
            vec![("q", "{ .a = 1 ")],
            "invalid TraceQL query: parse error at line 1, col ",
        ),
        (
            vec![("q", r#"{ 1 = "foo" }"#)],
            r#"invalid TraceQL query: binary operations must operate on the same type: "#,
        ),
        (vec![("q", "{ span:nope = 1 }")], "invalid TraceQL query: "),
        (
            vec![("q", "{ } | rate()")],
            "invalid TraceQL query: metrics queries (`| rate()`, `| count_over_time()` …) are not answered by search",
        ),
        (
            vec![("q", "{ } | count() > avg(duration)")],
            "invalid TraceQL query: ",
        ),
        (
            vec![("q", "{ .a = $var }")],
            "invalid TraceQL query: parse error at line 1, col ",
        ),
        (
            vec![("q", "{ }"), ("limit", "0")],
            "invalid limit: must be a positive number",
        ),
        (
            vec![("q", "{ }"), ("limit", "abc")],
            r#"invalid limit: strconv.ParseUint: parsing "abc": "#,
        ),
        (
            vec![("q", "{ }"), ("limit", "-1")],
            r#"invalid limit: strconv.ParseUint: parsing "-1": "#,
        ),
        (
            vec![("q", "{ }"), ("limit", "262145")],
            "limit 262145 exceeds max limit 262144",
        ),
        (
            vec![("q", "{ }"), ("spss", "abc")],
            r#"invalid spss: strconv.ParseUint: parsing "abc": "#,
        ),
        (
            vec![("q", "{ }"), ("spss", "101")],
            "spans per span set exceeds 100. received 101",
        ),
        (
            vec![("q", "{ }"), ("start", "200"), ("end", "100")],
            "http parameter start must be before end. received start=200 end=100",
        ),
        (
            vec![("q", "{ }"), ("start", "100"), ("end", "100")],
            "http parameter start must be before end. received start=100 end=100",
        ),
        (
            vec![("q", "{ }"), ("start", "yesterday"), ("end", "100")],
            r#"invalid start: strconv.ParseUint: parsing "yesterday": "#,
        ),
        (
            vec![("q", "{ }"), ("tags", "a=b")],
            "invalid request: can't specify tags and q in the same query",
        ),
        (
            vec![("minDuration", "fast")],
            r#"invalid minDuration: time: invalid duration "fast""#,
        ),
    ];
    for (params, message) in &search_cases {
        let body = get_params(&strata.http, "/api/search", params, None)
            .await
            .bad_request(&format!("{params:?}"));
        assert!(
            body.starts_with(message),
            "{params:?}: {body:?} should start with {message:?}"
        );
    }
    // Tempo treats spss=0 as the default (3).
    let zero = search(&strata.http, &[("q", "{ }"), ("spss", "0")], None).await;
    assert_eq!(trace_ids(&zero).len(), 3);

    // A query over 128 KiB, over gRPC (no URL-length limit in the way).
    let mut client = grpc_client(&strata).await;
    let status = grpc_search(&mut client, search_request(&long_query, 20, 3), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("TraceQL expression exceeds the configured maximum size of 131072 bytes"),
        "{}",
        status.message()
    );

    // Over HTTP a URL that long (more than HTTP client libraries build) is
    // a client error too, and harmless.
    let status = raw_get_status(
        &strata.http,
        &format!("/api/search?q={}", go_query_escape(&long_query)),
    )
    .await;
    assert!(status.is_none_or(|s| (400..500).contains(&s)), "{status:?}");

    // Spans keep arriving between bad requests.
    let second = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(
            vec![s("service.name", "late")],
            vec![span(
                "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e",
                "5e5e5e5e5e5e5e5e",
                "",
                "late",
                SpanKind::Server,
                3_000 * MS,
                MS,
                Vec::new(),
            )],
        )],
    };
    post_otlp(&strata, None, &second).await;

    let other_cases: Vec<(&str, Params, &str)> = vec![
        (
            "/api/search/tags",
            vec![("scope", "foo")],
            "invalid scope: foo",
        ),
        (
            "/api/v2/search/tags",
            vec![("scope", "foo")],
            "invalid scope: foo",
        ),
        (
            "/api/v2/search/tags",
            vec![("start", "10"), ("end", "5")],
            "http parameter start must be before end. received start=10 end=5",
        ),
        (
            "/api/v2/search/tag/app.user.id/values",
            vec![],
            "please provide a valid tagName: failed to parse identifier app.user.id: ",
        ),
        (
            "/api/v2/search/tag/nope%20nope/values",
            vec![],
            "please provide a valid tagName: failed to parse identifier nope nope: ",
        ),
        (
            "/api/v2/search/tag//values",
            vec![],
            "please provide a non-empty tagName",
        ),
        (
            "/api/search/tag//values",
            vec![],
            "please provide a non-empty tagName",
        ),
    ];
    for (path, params, message) in &other_cases {
        let body = get_params(&strata.http, path, params, None)
            .await
            .bad_request(path);
        assert!(
            body.starts_with(message),
            "{path} {params:?}: {body:?} should start with {message:?}"
        );
    }

    // An invalid tenant, on every route and call.
    for path in [
        "/api/search?q=%7B%20%7D",
        "/api/search/tags",
        "/api/v2/search/tags",
        "/api/search/tag/http.route/values",
        "/api/v2/search/tag/span.http.route/values",
    ] {
        for tenant in ["a/b", ".."] {
            let body = get_raw(&strata.http, path, &[("X-Scope-OrgID", tenant)])
                .await
                .bad_request(path);
            assert!(
                body.starts_with(&format!("invalid tenant ID {tenant:?}")),
                "{path}: {body}"
            );
        }
    }
    let status = grpc_search(&mut client, search_request("{ }", 20, 3), Some("a/b"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("invalid tenant ID \"a/b\""));
    let status = client
        .search_tags(with_tenant(tags_request(""), Some("a/b")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .search_tag_values(with_tenant(tag_values_request("", ""), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "please provide a non-empty tagName");

    // Still up, and every acknowledged span is found.
    let ready = get_raw(&strata.http, "/ready", &[]).await;
    assert_eq!(ready.status, 200);
    wait_for_traces(&strata.http, None, 4).await;
    let all = search(
        &strata.http,
        &[("q", "{ }"), ("limit", "100"), ("spss", "100")],
        None,
    )
    .await;
    let spans: u64 = all["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["spanSets"][0]["matched"].as_u64().unwrap())
        .sum();
    assert_eq!(spans as usize, FIXTURE_SPANS + 1, "{all}");
    assert!(!strata.log_text().contains("panicked"));
    strata.terminate();
}
