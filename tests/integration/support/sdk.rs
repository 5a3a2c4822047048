//! The official OpenTelemetry Rust SDK as a sender.
//!
//! Each [`Sender`] exports to Strata and, through a second exporter built
//! the same way, to a capture server: what the capture server received is
//! exactly what the SDK sent Strata.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{
    Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::capture::{self, Captured};

/// How the SDK talks to Strata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC (tonic).
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

/// A tracer provider exporting to Strata and to a capture server.
#[derive(Debug)]
pub struct Sender {
    provider: SdkTracerProvider,
    /// What the SDK sent.
    pub captured: Captured,
}

fn exporter(
    transport: Transport,
    endpoint: &str,
    tenant: Option<&str>,
    gzip: bool,
) -> SpanExporter {
    match transport {
        Transport::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            if let Some(tenant) = tenant {
                metadata.insert("x-scope-orgid", tenant.parse().unwrap());
            }
            let mut builder = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(10))
                .with_metadata(metadata);
            if gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build().unwrap()
        }
        Transport::HttpProtobuf | Transport::HttpJson => {
            let protocol = if transport == Transport::HttpJson {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            };
            let mut headers = HashMap::new();
            if let Some(tenant) = tenant {
                headers.insert("X-Scope-OrgID".to_owned(), tenant.to_owned());
            }
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(endpoint)
                .with_timeout(Duration::from_secs(10))
                .with_headers(headers);
            if gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build().unwrap()
        }
    }
}

impl Sender {
    /// A sender to `strata_endpoint` (gRPC base URL or HTTP `/v1/traces` URL).
    pub async fn new(
        transport: Transport,
        strata_endpoint: &str,
        tenant: Option<&str>,
        gzip: bool,
    ) -> Self {
        let (capture_endpoint, captured) = match transport {
            Transport::Grpc => capture::grpc().await,
            Transport::HttpProtobuf | Transport::HttpJson => capture::http().await,
        };
        let resource = Resource::builder()
            .with_service_name("strata-it")
            .with_attributes([
                KeyValue::new("deployment.environment", "test"),
                KeyValue::new("host.cpu.count", 8_i64),
                KeyValue::new("feature.enabled", true),
                KeyValue::new("load.average", 0.75),
                KeyValue::new(
                    "cloud.regions",
                    Value::Array(Array::String(vec![
                        StringValue::from("eu-west-1"),
                        StringValue::from("us-east-1"),
                    ])),
                ),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter(transport, strata_endpoint, tenant, gzip))
            .with_batch_exporter(exporter(transport, &capture_endpoint, tenant, gzip))
            .build();
        Self { provider, captured }
    }

    /// Records one trace of three spans using every kind of value OTLP
    /// carries: typed and array attributes, events, links, trace state, a
    /// remote parent, kinds and an error status. Returns its ID.
    pub fn emit_trace(&self, name: &str) -> TraceId {
        let tracer = self.provider.tracer_with_scope(
            InstrumentationScope::builder("strata.integration")
                .with_version("1.2.3")
                .with_attributes([KeyValue::new("scope.flavour", "vanilla")])
                .build(),
        );
        let trace_id = TraceId::from_bytes(random_bytes());
        let remote_parent = SpanContext::new(
            trace_id,
            SpanId::from_bytes(random_bytes()),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "opaque-value")]).unwrap(),
        );
        let parent_cx = Context::new().with_remote_span_context(remote_parent);
        let linked = SpanContext::new(
            TraceId::from_bytes(random_bytes()),
            SpanId::from_bytes(random_bytes()),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let start = SystemTime::now();

        let mut root = tracer
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 503_i64),
                KeyValue::new("retry.ratio", 0.25),
                KeyValue::new("cache.hit", false),
                KeyValue::new(
                    "tags",
                    Value::Array(Array::String(vec!["a".into(), "b".into()])),
                ),
                KeyValue::new("ports", Value::Array(Array::I64(vec![80, 443]))),
                KeyValue::new("weights", Value::Array(Array::F64(vec![0.5, 1.5]))),
                KeyValue::new("flags", Value::Array(Array::Bool(vec![true, false]))),
            ])
            .start_with_context(&tracer, &parent_cx);
        root.add_event(
            "cache miss",
            vec![
                KeyValue::new("cache.key", "orders:42"),
                KeyValue::new("attempt", 2_i64),
            ],
        );
        root.set_status(Status::error("upstream unavailable"));
        let root_cx = parent_cx.with_span(root);

        let mut db = tracer
            .span_builder("SELECT orders")
            .with_kind(SpanKind::Client)
            .with_start_time(start + Duration::from_millis(2))
            .with_attributes([
                KeyValue::new("db.system", "postgresql"),
                KeyValue::new("db.statement", "SELECT * FROM orders WHERE id = $1"),
            ])
            .with_links(vec![Link::new(
                linked,
                vec![KeyValue::new("link.reason", "batch")],
                0,
            )])
            .start_with_context(&tracer, &root_cx);
        db.end_with_timestamp(start + Duration::from_millis(7));

        let mut publish = tracer
            .span_builder("publish order")
            .with_kind(SpanKind::Producer)
            .with_start_time(start + Duration::from_millis(8))
            .start_with_context(&tracer, &root_cx);
        publish.set_status(Status::Ok);
        publish.end_with_timestamp(start + Duration::from_millis(9));

        root_cx
            .span()
            .end_with_timestamp(start + Duration::from_millis(10));
        trace_id
    }

    /// Exports everything recorded so far (blocking until both exporters
    /// have been called).
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
            .await
            .unwrap();
    }

    /// Flushes and shuts the provider down.
    pub async fn shutdown(self) {
        let provider = self.provider;
        tokio::task::spawn_blocking(move || provider.shutdown().unwrap())
            .await
            .unwrap();
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes);
    bytes
}
