//! What Strata does with odd spans: rejections reported through OTLP's
//! partial success, documented normalisations, and the per-tenant limits.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use strata_common::testing::request_with_spans;
use tempfile::TempDir;

use crate::support::process::Options;
use crate::support::{Strata, fetch_v2_protobuf, get, http_client, metric};

fn span(trace: u8, id: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: format!("span {id}"),
        start_time_unix_nano: 1_790_000_000_000_000_000,
        end_time_unix_nano: 1_790_000_000_001_000_000,
        ..Span::default()
    }
}

fn only_spans(trace: &[opentelemetry_proto::tonic::trace::v1::ResourceSpans]) -> Vec<Span> {
    trace
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

async fn post(strata: &Strata, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    http_client()
        .post(&strata.otlp_http)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_are_dropped_and_reported_as_partial_success() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let mixed = || {
        request_with_spans(vec![
            span(1, 1),
            span(0, 2),
            Span {
                span_id: vec![3; 7],
                ..span(1, 3)
            },
        ])
    };

    // OTLP/HTTP protobuf.
    let response = post(&strata, "application/x-protobuf", mixed().encode_to_vec()).await;
    assert_eq!(response.status().as_u16(), 200);
    let body = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = body.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("trace ID must be 16 bytes"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("span ID must be 8 bytes"),
        "{}",
        partial.error_message
    );

    // OTLP/HTTP JSON.
    let json = serde_json::to_vec(&mixed()).unwrap();
    let response = post(&strata, "application/json", json).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        body["partialSuccess"]["rejectedSpans"]
            .to_string()
            .contains('2'),
        "{body}"
    );

    // OTLP/gRPC.
    let mut client = TraceServiceClient::connect(strata.otlp_grpc.clone())
        .await
        .unwrap();
    let response = client.export(mixed()).await.unwrap().into_inner();
    assert_eq!(response.partial_success.unwrap().rejected_spans, 2);

    // The valid span was stored (once: duplicates of a span are one span).
    let stored = only_spans(&fetch_v2_protobuf(&strata.http, &"01".repeat(16), None).await);
    assert_eq!(stored.len(), 1);
    assert!(metric(&strata.http, "strata_ingester_spans_rejected_total{").await >= 6.0);
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_spans_are_normalised_as_documented() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start(
        "memory://",
        dir.path(),
        Options {
            args: vec!["--max-attribute-value-bytes".into(), "1KiB".into()],
            ..Options::default()
        },
    );
    let long = "é".repeat(1_000);
    let spans = vec![
        // End before start: stored as sent.
        Span {
            start_time_unix_nano: 2_000,
            end_time_unix_nano: 1_000,
            ..span(2, 1)
        },
        // Far in the future: stored as sent.
        Span {
            start_time_unix_nano: u64::MAX - 10,
            end_time_unix_nano: u64::MAX,
            ..span(2, 2)
        },
        // All-zero parent: means "no parent".
        Span {
            parent_span_id: vec![0; 8],
            attributes: vec![KeyValue {
                key: "sql".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(long)),
                }),
                ..KeyValue::default()
            }],
            ..span(2, 3)
        },
    ];
    let response = post(
        &strata,
        "application/x-protobuf",
        request_with_spans(spans).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let body = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert!(body.partial_success.is_none(), "nothing was rejected");

    let stored = only_spans(&fetch_v2_protobuf(&strata.http, &"02".repeat(16), None).await);
    let by_id = |id: u8| stored.iter().find(|s| s.span_id == vec![id; 8]).unwrap();
    assert_eq!(
        (by_id(1).start_time_unix_nano, by_id(1).end_time_unix_nano),
        (2_000, 1_000)
    );
    assert_eq!(by_id(2).end_time_unix_nano, u64::MAX);
    assert!(by_id(3).parent_span_id.is_empty());
    let Some(any_value::Value::StringValue(sql)) =
        &by_id(3).attributes[0].value.as_ref().unwrap().value
    else {
        panic!("string attribute expected");
    };
    assert!(
        sql.len() <= 1024 && sql.len() >= 1022,
        "cut at a character boundary: {}",
        sql.len()
    );
    assert_eq!(
        metric(
            &strata.http,
            "strata_ingester_attribute_values_truncated_total"
        )
        .await,
        1.0
    );
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_a_malformed_request() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start("memory://", dir.path(), Options::default());
    let mut bytes = request_with_spans(vec![Span {
        name: "ZZZZ".into(),
        ..span(3, 1)
    }])
    .encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"ZZZZ").unwrap();
    bytes[at] = 0xff;
    let response = post(&strata, "application/x-protobuf", bytes).await;
    assert_eq!(response.status().as_u16(), 400);
    let message = tonic_types::Status::decode(response.bytes().await.unwrap())
        .unwrap()
        .message;
    assert!(message.contains("malformed OTLP protobuf"), "{message}");
    strata.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingestion_rate_limit_answers_429_with_retry_after() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start(
        "memory://",
        dir.path(),
        Options {
            args: [
                "--ingestion-rate-bytes",
                "1KiB",
                "--ingestion-burst-bytes",
                "1KiB",
            ]
            .map(String::from)
            .to_vec(),
            ..Options::default()
        },
    );
    let request = |n: u8| -> ExportTraceServiceRequest {
        request_with_spans((1..=10).map(|i| span(n, i)).collect())
    };
    let mut refused = None;
    for n in 1..=20 {
        let response = post(
            &strata,
            "application/x-protobuf",
            request(n).encode_to_vec(),
        )
        .await;
        if response.status().as_u16() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status().as_u16(), 200);
    }
    let refused = refused.expect("the rate limit never applied");
    assert!(refused.headers().contains_key("retry-after"));
    let rejected =
        r#"strata_ingester_spans_rejected_total{tenant="single-tenant",reason="rate_limited"}"#;
    assert!(metric(&strata.http, rejected).await > 0.0);
    assert_eq!(get(&strata.http, "/ready", None, None).await.status, 200);
    strata.terminate();
}
