//! Capture servers: plain OTLP receivers that record every request, used as
//! a second exporter target so a test knows exactly what the SDK sent.

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use tokio::net::TcpListener;

/// Requests received by a capture server.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Captured {
    fn push(&self, request: ExportTraceServiceRequest) {
        self.0.lock().unwrap().push(request);
    }

    /// Every `ResourceSpans` received so far.
    pub fn resource_spans(&self) -> Vec<ResourceSpans> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter().cloned())
            .collect()
    }

    /// The received `ResourceSpans`, keeping only the spans of one trace.
    pub fn trace(&self, trace_id: &[u8]) -> Vec<ResourceSpans> {
        let mut out = self.resource_spans();
        for rs in &mut out {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| s.trace_id == trace_id);
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        out.retain(|rs| !rs.scope_spans.is_empty());
        out
    }
}

#[derive(Debug, Clone)]
struct GrpcCapture(Captured);

#[tonic::async_trait]
impl TraceService for GrpcCapture {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts an OTLP/gRPC capture server; returns its endpoint.
pub async fn grpc() -> (String, Captured) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let captured = Captured::default();
    let service = TraceServiceServer::new(GrpcCapture(captured.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), captured)
}

async fn http_export(State(captured): State<Captured>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut plain)
            .unwrap();
        plain
    } else {
        body.to_vec()
    };
    let json = headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
    let request = if json {
        serde_json::from_slice(&body).unwrap()
    } else {
        ExportTraceServiceRequest::decode(body.as_slice()).unwrap()
    };
    captured.push(request);
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// Starts an OTLP/HTTP capture server; returns its `/v1/traces` URL.
pub async fn http() -> (String, Captured) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let captured = Captured::default();
    let router = Router::new()
        .route("/v1/traces", post(http_export))
        .with_state(captured.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}/v1/traces"), captured)
}
