//! Zipkin v2 JSON from real senders is stored and served as OTLP.

use std::process::Command;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use tempfile::TempDir;

use crate::support::process::Options;
use crate::support::{Strata, fetch_v2_protobuf, http_client};

/// Captured from the OpenTelemetry JS Zipkin exporter 2.12.1.
const JS_EXPORTER: &str =
    include_str!("../fixtures/zipkin-v2-json-from-otel-js-exporter-zipkin-2.12.1.json");

fn spans(trace: &[ResourceSpans]) -> Vec<(&str, &Span)> {
    trace
        .iter()
        .flat_map(|rs| {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.as_str()),
                    _ => None,
                })
                .unwrap_or("");
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (service, s)))
        })
        .collect()
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_js_zipkin_exporter_payload_is_served_back() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let response = http_client()
        .post(&strata.zipkin)
        .header("Content-Type", "application/json")
        .body(JS_EXPORTER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let trace = fetch_v2_protobuf(&strata.http, "a677ed738eac11361bcb746682215c2e", None).await;
    let spans = spans(&trace);
    assert_eq!(spans.len(), 2);
    let (service, db) = spans.iter().find(|(_, s)| s.name == "db query").unwrap();
    assert_eq!(*service, "sample-svc");
    assert_eq!(db.kind, SpanKind::Client as i32);
    assert_eq!(db.status.as_ref().unwrap().code, 2);
    assert_eq!(db.status.as_ref().unwrap().message, "boom");
    assert_eq!(string_attribute(db, "db.system"), Some("postgresql"));
    assert_eq!(db.events[0].name, "ev");

    // Malformed input is a clear 400, and the process keeps serving.
    let response = http_client()
        .post(&strata.zipkin)
        .header("Content-Type", "application/json")
        .body("[{\"traceId\": 12}]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("malformed Zipkin JSON")
    );
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_python_zipkin_exporter_is_received() {
    let python = match std::env::var("STRATA_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ if std::env::var("STRATA_SKIP_PYTHON_TESTS").as_deref() == Ok("1") => return,
        _ => panic!(
            "STRATA_TEST_PYTHON is not set: run the tests with scripts/test.sh, which installs the \
             OpenTelemetry Python SDK, or set STRATA_SKIP_PYTHON_TESTS=1 to skip this test deliberately"
        ),
    };
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zipkin_sender.py"
    );
    let output = tokio::task::spawn_blocking({
        let url = strata.zipkin.clone();
        move || Command::new(python).args([script, &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let trace = fetch_v2_protobuf(&strata.http, sent["trace_id"].as_str().unwrap(), None).await;
    let spans = spans(&trace);
    assert_eq!(spans.len(), 2);
    let (service, root) = spans.iter().find(|(_, s)| s.name == "checkout").unwrap();
    assert_eq!(*service, "zipkin-python");
    assert_eq!(
        hex::encode(&root.span_id),
        sent["root_span_id"].as_str().unwrap()
    );
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(string_attribute(root, "http.request.method"), Some("POST"));
    // Zipkin tags are strings, so the integer attribute arrives as one.
    assert_eq!(string_attribute(root, "retries"), Some("2"));
    assert_eq!(root.events[0].name, "cart loaded");
    assert_eq!(root.events[0].attributes[0].key, "items");
    let (_, child) = spans.iter().find(|(_, s)| s.name == "charge card").unwrap();
    assert_eq!(
        hex::encode(&child.parent_span_id),
        sent["root_span_id"].as_str().unwrap()
    );
    assert_eq!(child.kind, SpanKind::Client as i32);
    let status = child.status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "card declined"));
    strata.terminate();
}
