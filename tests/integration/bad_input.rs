//! Bad input gets a clear error with the right status, the process keeps
//! serving, and nothing already acknowledged is lost.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use strata_common::testing::request_with_spans;
use tempfile::TempDir;
use tonic::Code;

use crate::support::process::Options;
use crate::support::{Strata, get, http_client};

/// A real OTel-JS OTLP/JSON export (trace 815514707708c4ccb5cf12873bd2c7f2).
const SAMPLE_JSON: &str = include_str!("../fixtures/otlp-http-json-from-otel-js-0.223.1.json");

const SAMPLE_TRACE: &str = "815514707708c4ccb5cf12873bd2c7f2";

async fn post(
    url: &str,
    content_type: &str,
    encoding: Option<&str>,
    tenant: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut request = http_client()
        .post(url)
        .header("Content-Type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("Content-Encoding", encoding);
    }
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

fn bad_trace_id_request() -> ExportTraceServiceRequest {
    request_with_spans(vec![Span {
        trace_id: vec![1; 15],
        span_id: vec![1; 8],
        name: "short id".into(),
        ..Span::default()
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_rejected_clearly_and_the_server_keeps_serving() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start(
        "memory://",
        dir.path(),
        Options {
            args: vec!["--max-request-bytes".into(), "8KiB".into()],
            ..Options::default()
        },
    );
    let otlp = strata.otlp_http.clone();

    // An acknowledged trace, to check nothing is lost along the way.
    let (status, _, _) = post(
        &otlp,
        "application/json",
        None,
        None,
        SAMPLE_JSON.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let before = get(
        &strata.http,
        &format!("/api/traces/{SAMPLE_TRACE}"),
        None,
        None,
    )
    .await;
    assert_eq!(before.status, 200);

    // Malformed protobuf: 400 with a google.rpc.Status body.
    let (status, content_type, body) = post(
        &otlp,
        "application/x-protobuf",
        None,
        None,
        vec![0xff, 0xff, 0xff, 0x01, 0x02],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(content_type, "application/x-protobuf");
    let rpc_status = tonic_types::Status::decode(body.as_slice()).unwrap();
    assert_eq!(rpc_status.code, Code::InvalidArgument as i32);
    assert!(
        rpc_status.message.contains("malformed OTLP protobuf"),
        "{}",
        rpc_status.message
    );

    // Malformed JSON: 400 with a JSON status.
    let (status, _, body) = post(
        &otlp,
        "application/json",
        None,
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], Code::InvalidArgument as i32);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("malformed OTLP JSON")
    );

    // Valid protobuf, invalid content: the offending span is named.
    let (status, _, body) = post(
        &otlp,
        "application/x-protobuf",
        None,
        None,
        bad_trace_id_request().encode_to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let message = tonic_types::Status::decode(body.as_slice())
        .unwrap()
        .message;
    assert!(message.contains("trace ID must be 16 bytes"), "{message}");

    // Unsupported media type, oversized body, broken gzip, bad tenant.
    let (status, _, _) = post(&otlp, "text/plain", None, None, b"hello".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _, _) = post(&otlp, "application/json", None, None, vec![b' '; 64 * 1024]).await;
    assert_eq!(status, 413);
    let (status, _, _) = post(
        &otlp,
        "application/json",
        Some("gzip"),
        None,
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = post(
        &otlp,
        "application/json",
        None,
        Some("a/b"),
        SAMPLE_JSON.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 400);

    // A gzip bomb is stopped by the decompressed-size limit.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 1024 * 1024]).unwrap();
    let (status, _, _) = post(
        &otlp,
        "application/json",
        Some("gzip"),
        None,
        encoder.finish().unwrap(),
    )
    .await;
    assert_eq!(status, 413);

    // gRPC: invalid content and invalid tenants are INVALID_ARGUMENT.
    let mut client = TraceServiceClient::connect(strata.otlp_grpc.clone())
        .await
        .unwrap();
    let error = client.export(bad_trace_id_request()).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("trace ID"), "{}", error.message());
    let mut request = tonic::Request::new(ExportTraceServiceRequest::default());
    request
        .metadata_mut()
        .insert("x-scope-orgid", "../etc".parse().unwrap());
    assert_eq!(
        client.export(request).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // gRPC: bytes that are not protobuf at all.
    let error = raw_grpc_export(&strata.otlp_grpc, vec![0xff, 0xff, 0xff, 0x01]).await;
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");

    // Query side: malformed trace IDs, time ranges and tenants are 400s.
    for path in [
        "/api/traces/not-hex",
        "/api/v2/traces/zz",
        &format!("/api/traces/{}", "a".repeat(33)),
        &format!("/api/traces/{SAMPLE_TRACE}?start=yesterday"),
        &format!("/api/traces/{SAMPLE_TRACE}?start=20&end=10"),
    ] {
        let response = get(&strata.http, path, None, None).await;
        assert_eq!(
            response.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(!response.body.is_empty(), "{path}: error without a message");
    }
    let response = get(
        &strata.http,
        &format!("/api/traces/{SAMPLE_TRACE}"),
        None,
        Some("bad tenant"),
    )
    .await;
    assert_eq!(response.status, 400);

    // Still serving, and the acknowledged trace is intact.
    let after = get(
        &strata.http,
        &format!("/api/traces/{SAMPLE_TRACE}"),
        None,
        None,
    )
    .await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before.body);
    assert_eq!(get(&strata.http, "/ready", None, None).await.status, 200);

    // Rejections are counted.
    let metrics = String::from_utf8(get(&strata.http, "/metrics", None, None).await.body).unwrap();
    assert!(
        metrics.contains("strata_ingester_spans_rejected_total"),
        "{metrics}"
    );
    strata.terminate();
}

/// Sends arbitrary bytes as the body of an OTLP/gRPC export.
async fn raw_grpc_export(endpoint: &str, payload: Vec<u8>) -> tonic::Status {
    use bytes::{Buf, BufMut, Bytes};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Debug, Clone, Copy, Default)]
    struct RawCodec;
    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = RawCodec;
        type Decoder = RawCodec;
        fn encoder(&mut self) -> Self::Encoder {
            *self
        }
        fn decoder(&mut self) -> Self::Decoder {
            *self
        }
    }
    impl Encoder for RawCodec {
        type Item = Bytes;
        type Error = tonic::Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put(item);
            Ok(())
        }
    }
    impl Decoder for RawCodec {
        type Item = Bytes;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(Bytes::from(payload)), path, RawCodec)
        .await
        .unwrap_err()
}

/// Some clients (Tempo's own tooling among them) always send
/// `X-Scope-OrgID`, empty when no tenant is configured: that is the default
/// tenant, for ingest (OTLP/HTTP, OTLP/gRPC, Zipkin) and queries alike.
#[tokio::test]
async fn an_empty_tenant_header_means_the_default_tenant() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start(
        dir.path().join("blocks").to_str().unwrap(),
        dir.path(),
        Options {
            args: vec![
                "--wal-dir".into(),
                dir.path().join("wal").display().to_string(),
            ],
            ..Options::default()
        },
    );
    let (status, _, body) = post(
        &strata.otlp_http,
        "application/json",
        None,
        Some(""),
        SAMPLE_JSON.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let mut client = TraceServiceClient::connect(strata.otlp_grpc.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(request_with_spans(vec![Span {
        trace_id: vec![7; 16],
        span_id: vec![7; 8],
        name: "grpc with empty tenant".into(),
        ..Span::default()
    }]));
    request
        .metadata_mut()
        .insert("x-scope-orgid", "".parse().unwrap());
    client.export(request).await.unwrap();

    // Both are the default tenant's: found with no header and with an
    // empty one, by ID and by search.
    for tenant in [None, Some("")] {
        get_ok_eventually(&strata.http, &format!("/api/traces/{SAMPLE_TRACE}"), tenant).await;
        get_ok_eventually(
            &strata.http,
            &format!("/api/traces/{}", hex::encode([7u8; 16])),
            tenant,
        )
        .await;
        let found = get(
            &strata.http,
            "/api/search?q=%7Bname%3D%22grpc%20with%20empty%20tenant%22%7D",
            None,
            tenant,
        )
        .await;
        assert_eq!(found.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&found.body).unwrap();
        assert_eq!(body["traces"].as_array().unwrap().len(), 1, "{body}");
    }
}

async fn get_ok_eventually(base: &str, path: &str, tenant: Option<&str>) {
    for _ in 0..50 {
        if get(base, path, None, tenant).await.status == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{path} never answered 200");
}
