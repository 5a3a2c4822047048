//! Zipkin v2 receiver: `POST /api/v2/spans` (JSON), port 9411.
//!
//! Spans are translated to OTLP by the OpenTelemetry Collector's Zipkin rules
//! and then take the same path as OTLP exports:
//!
//! | Zipkin | OTLP |
//! | --- | --- |
//! | `localEndpoint.serviceName` | resource `service.name` (`unknown_service` when absent) |
//! | `localEndpoint.ipv4`/`ipv6`, `port` | `net.host.ip`, `net.host.port` |
//! | `remoteEndpoint.serviceName` | `peer.service` |
//! | `remoteEndpoint.ipv4`/`ipv6`, `port` | `net.peer.ip`, `net.peer.port` |
//! | `kind` `CLIENT`/`SERVER`/`PRODUCER`/`CONSUMER` | the same kind; absent → the `span.kind` tag, else unspecified |
//! | `timestamp`, `duration` (µs) | start and end (ns) |
//! | `tags` | string attributes |
//! | `otel.status_code`, `otel.status_description` tags | status |
//! | `error` tag | status ERROR, its value the message unless a description was given |
//! | `otel.scope.name`/`otel.library.name`, `…version` tags | instrumentation scope |
//! | `annotations` | events: `value` → name, or `{"name": {attributes}}` as OTel's exporters write it |
//! | 64-bit trace IDs | left-padded to 128 bits |
//!
//! A client and a server span that share an ID (`shared`) stay distinct:
//! Strata identifies spans by ID *and* kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use serde::Deserialize;
use tower_http::decompression::RequestDecompressionLayer;

use super::{TENANT_HEADER, tenant_from_header};
use crate::error::Error;
use crate::{Ingester, metrics};

/// The Zipkin v2 spans route.
pub const SPANS_PATH: &str = "/api/v2/spans";

/// A Zipkin v2 span (JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    /// 16 or 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub id: String,
    /// 16 hex digits, absent on roots.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Operation name.
    #[serde(default)]
    pub name: Option<String>,
    /// `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER`, or absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// Start, microseconds since the epoch.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// Duration in microseconds.
    #[serde(default)]
    pub duration: Option<u64>,
    /// The service that recorded the span.
    #[serde(default)]
    pub local_endpoint: Option<Endpoint>,
    /// The other side of an RPC.
    #[serde(default)]
    pub remote_endpoint: Option<Endpoint>,
    /// Timestamped events.
    #[serde(default)]
    pub annotations: Vec<Annotation>,
    /// String tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Zipkin's debug flag (not kept).
    #[serde(default)]
    pub debug: Option<bool>,
    /// Set on the server half of a span shared with its client.
    #[serde(default)]
    pub shared: Option<bool>,
}

/// A Zipkin endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Service name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// IPv4 address.
    #[serde(default)]
    pub ipv4: Option<String>,
    /// IPv6 address.
    #[serde(default)]
    pub ipv6: Option<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<i64>,
}

/// A Zipkin annotation.
#[derive(Debug, Clone, Deserialize)]
pub struct Annotation {
    /// Microseconds since the epoch.
    pub timestamp: u64,
    /// The event's text.
    pub value: String,
}

fn string_attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn hex_id<const N: usize>(what: &str, text: &str) -> Result<[u8; N], Error> {
    let invalid = || Error::InvalidRequest(format!("invalid Zipkin {what} {text:?}"));
    if text.is_empty() || text.len() > 2 * N {
        return Err(invalid());
    }
    let mut padded = vec![b'0'; 2 * N - text.len()];
    padded.extend_from_slice(text.as_bytes());
    let mut bytes = [0u8; N];
    hex::decode_to_slice(&padded, &mut bytes).map_err(|_| invalid())?;
    Ok(bytes)
}

fn kind_of(span: &ZipkinSpan) -> span::SpanKind {
    use span::SpanKind;
    let from_name = |name: &str| match name.to_ascii_uppercase().as_str() {
        "CLIENT" => Some(SpanKind::Client),
        "SERVER" => Some(SpanKind::Server),
        "PRODUCER" => Some(SpanKind::Producer),
        "CONSUMER" => Some(SpanKind::Consumer),
        "INTERNAL" => Some(SpanKind::Internal),
        _ => None,
    };
    span.kind
        .as_deref()
        .and_then(from_name)
        .or_else(|| span.tags.get("span.kind").and_then(|k| from_name(k)))
        .unwrap_or(SpanKind::Unspecified)
}

fn endpoint_attributes(endpoint: &Endpoint, ip: &str, port: &str, out: &mut Vec<KeyValue>) {
    if let Some(address) = endpoint.ipv4.as_ref().or(endpoint.ipv6.as_ref()) {
        out.push(string_attribute(ip, address.clone()));
    }
    if let Some(p) = endpoint.port.filter(|p| *p > 0) {
        out.push(int_attribute(port, p));
    }
}

/// OpenTelemetry's Zipkin exporters write an event with attributes as the
/// annotation `{"<name>": {<attributes>}}`; anything else is a plain name.
fn annotation_event(value: String) -> (String, Vec<KeyValue>) {
    let Ok(serde_json::Value::Object(outer)) = serde_json::from_str::<serde_json::Value>(&value)
    else {
        return (value, Vec::new());
    };
    let mut entries = outer.into_iter();
    let (Some((name, serde_json::Value::Object(fields))), None) = (entries.next(), entries.next())
    else {
        return (value, Vec::new());
    };
    let attributes = fields
        .into_iter()
        .map(|(key, field)| {
            let value = match field {
                serde_json::Value::String(s) => any_value::Value::StringValue(s),
                serde_json::Value::Bool(b) => any_value::Value::BoolValue(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => any_value::Value::IntValue(i),
                    None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
                },
                other => any_value::Value::StringValue(other.to_string()),
            };
            KeyValue {
                key,
                value: Some(AnyValue { value: Some(value) }),
                ..KeyValue::default()
            }
        })
        .collect();
    (name, attributes)
}

/// Translates one Zipkin span; returns its service name, scope and span.
fn translate(zipkin: ZipkinSpan) -> Result<(String, InstrumentationScope, Span), Error> {
    // All-zero IDs pass here and are rejected, like OTLP's, by the sanitiser.
    let trace_id: [u8; 16] = hex_id("trace ID", &zipkin.trace_id)?;
    let span_id: [u8; 8] = hex_id("span ID", &zipkin.id)?;
    let parent_span_id = match zipkin.parent_id.as_deref().filter(|p| !p.is_empty()) {
        Some(parent) => hex_id::<8>("parent ID", parent)?.to_vec(),
        None => Vec::new(),
    };
    let kind = kind_of(&zipkin);
    let mut tags = zipkin.tags;
    let service = zipkin
        .local_endpoint
        .as_ref()
        .and_then(|e| e.service_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown_service".to_owned());
    // The resource carries service.name; exporters often repeat it as a tag.
    tags.remove("service.name");
    tags.remove("span.kind");

    let mut status = Status::default();
    if let Some(code) = tags.remove("otel.status_code") {
        status.code = match code.to_ascii_uppercase().as_str() {
            "ERROR" => status::StatusCode::Error as i32,
            "OK" => status::StatusCode::Ok as i32,
            _ => status::StatusCode::Unset as i32,
        };
    }
    if let Some(description) = tags.remove("otel.status_description") {
        status.message = description;
    }
    if let Some(error) = tags.remove("error") {
        status.code = status::StatusCode::Error as i32;
        if status.message.is_empty() && !error.eq_ignore_ascii_case("true") {
            status.message = error;
        }
    }
    let scope = InstrumentationScope {
        name: tags
            .remove("otel.scope.name")
            .or_else(|| tags.remove("otel.library.name"))
            .unwrap_or_default(),
        version: tags
            .remove("otel.scope.version")
            .or_else(|| tags.remove("otel.library.version"))
            .unwrap_or_default(),
        ..InstrumentationScope::default()
    };

    let mut attributes: Vec<KeyValue> = tags
        .into_iter()
        .map(|(key, value)| string_attribute(&key, value))
        .collect();
    if let Some(local) = &zipkin.local_endpoint {
        endpoint_attributes(local, "net.host.ip", "net.host.port", &mut attributes);
    }
    if let Some(remote) = &zipkin.remote_endpoint {
        if let Some(peer) = remote.service_name.as_ref().filter(|s| !s.is_empty()) {
            attributes.push(string_attribute("peer.service", peer.clone()));
        }
        endpoint_attributes(remote, "net.peer.ip", "net.peer.port", &mut attributes);
    }

    let start = zipkin.timestamp.unwrap_or(0).saturating_mul(1_000);
    let end = start.saturating_add(zipkin.duration.unwrap_or(0).saturating_mul(1_000));
    let events = zipkin
        .annotations
        .into_iter()
        .map(|a| {
            let (name, attributes) = annotation_event(a.value);
            span::Event {
                time_unix_nano: a.timestamp.saturating_mul(1_000),
                name,
                attributes,
                ..span::Event::default()
            }
        })
        .collect();
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id,
        name: zipkin.name.unwrap_or_default(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        status: Some(status),
        ..Span::default()
    };
    Ok((service, scope, span))
}

/// Translates Zipkin spans into one OTLP request, grouped by service and scope.
pub fn to_otlp(spans: Vec<ZipkinSpan>) -> Result<ExportTraceServiceRequest, Error> {
    let mut groups: BTreeMap<(String, String, String), Vec<Span>> = BTreeMap::new();
    for zipkin in spans {
        let (service, scope, span) = translate(zipkin)?;
        groups
            .entry((service, scope.name, scope.version))
            .or_default()
            .push(span);
    }
    let mut by_service: BTreeMap<String, Vec<ScopeSpans>> = BTreeMap::new();
    for ((service, name, version), spans) in groups {
        by_service.entry(service).or_default().push(ScopeSpans {
            scope: Some(InstrumentationScope {
                name,
                version,
                ..InstrumentationScope::default()
            }),
            spans,
            ..ScopeSpans::default()
        });
    }
    Ok(ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, scope_spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_attribute("service.name", service)],
                    ..Resource::default()
                }),
                scope_spans,
                ..ResourceSpans::default()
            })
            .collect(),
    })
}

/// Parses a Zipkin v2 JSON body.
pub fn parse_json(body: &[u8]) -> Result<Vec<ZipkinSpan>, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::InvalidRequest(format!("malformed Zipkin JSON: {e}")))
}

/// A router serving `POST /api/v2/spans` into `ingester`.
pub fn router(ingester: Arc<Ingester>) -> Router {
    let limit = ingester.config().max_request_bytes;
    Router::new()
        .route(SPANS_PATH, post(spans))
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestDecompressionLayer::new())
        .with_state(ingester)
}

async fn spans(
    State(ingester): State<Arc<Ingester>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = handle(&ingester, &headers, body).await;
    metrics::request("zipkin", if result.is_ok() { "ok" } else { "error" });
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err((status, error)) => {
            let mut response = (status, error.to_string()).into_response();
            if let Some(retry_after) = error.retry_after() {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            response
        }
    }
}

async fn handle(
    ingester: &Ingester,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), (StatusCode, Error)> {
    let fail = |e: Error| (e.http_status(), e);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::InvalidRequest("Zipkin spans are accepted as application/json".into()),
        ));
    }
    let tenant =
        tenant_from_header(headers.get(TENANT_HEADER).map(HeaderValue::as_bytes)).map_err(fail)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            fail(Error::TooLarge {
                limit: ingester.config().max_request_bytes,
            })
        } else {
            fail(Error::InvalidRequest(format!(
                "reading request body: {}",
                rejection.body_text()
            )))
        }
    })?;
    let request = to_otlp(parse_json(&body).map_err(fail)?).map_err(fail)?;
    ingester.push(&tenant, request, None).await.map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JS_SAMPLE: &str = r#"[{"traceId":"a677ed738eac11361bcb746682215c2e","parentId":"ac038882b38a0ec1","name":"db query","id":"645487fb72559528","kind":"CLIENT","timestamp":1795764189093000,"duration":125,"localEndpoint":{"serviceName":"sample-svc"},"tags":{"db.system":"postgresql","retries":"3","otel.status_code":"ERROR","error":"boom","service.name":"sample-svc"},"annotations":[{"timestamp":1795764189093112,"value":"ev"}]},{"traceId":"a677ed738eac11361bcb746682215c2e","name":"GET /api","id":"ac038882b38a0ec1","kind":"SERVER","timestamp":1795764189092000,"duration":381,"localEndpoint":{"serviceName":"sample-svc"},"tags":{"http.request.method":"GET","service.name":"sample-svc"}}]"#;

    #[test]
    fn otel_js_zipkin_spans_translate_by_the_collector_rules() {
        let request = to_otlp(parse_json(JS_SAMPLE.as_bytes()).unwrap()).unwrap();
        assert_eq!(request.resource_spans.len(), 1);
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(
            resource.attributes,
            vec![string_attribute("service.name", "sample-svc")]
        );
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        let db = spans.iter().find(|s| s.name == "db query").unwrap();
        assert_eq!(db.kind, span::SpanKind::Client as i32);
        assert_eq!(
            hex::encode(&db.trace_id),
            "a677ed738eac11361bcb746682215c2e"
        );
        assert_eq!(hex::encode(&db.parent_span_id), "ac038882b38a0ec1");
        assert_eq!(db.start_time_unix_nano, 1_795_764_189_093_000_000);
        assert_eq!(db.end_time_unix_nano - db.start_time_unix_nano, 125_000);
        let status = db.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "boom"));
        assert_eq!(db.events.len(), 1);
        assert_eq!(db.events[0].name, "ev");
        assert_eq!(db.events[0].time_unix_nano, 1_795_764_189_093_112_000);
        let keys: Vec<&str> = db.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["db.system", "retries"],
            "special tags are consumed"
        );
    }

    #[test]
    fn endpoints_kinds_and_short_ids() {
        let json = r#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"get",
            "localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1","port":8080},
            "remoteEndpoint":{"serviceName":"backend","ipv6":"::1","port":9000},
            "tags":{"span.kind":"internal","otel.scope.name":"lib","otel.scope.version":"2"}}]"#;
        let request = to_otlp(parse_json(json.as_bytes()).unwrap()).unwrap();
        let scope_spans = &request.resource_spans[0].scope_spans[0];
        assert_eq!(scope_spans.scope.as_ref().unwrap().name, "lib");
        let span = &scope_spans.spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "0000000000000000463ac35c9f6413ad"
        );
        assert_eq!(span.kind, span::SpanKind::Internal as i32);
        assert!(
            span.attributes
                .contains(&string_attribute("peer.service", "backend"))
        );
        assert!(
            span.attributes
                .contains(&string_attribute("net.host.ip", "10.0.0.1"))
        );
        assert!(
            span.attributes
                .contains(&int_attribute("net.peer.port", 9000))
        );
    }

    #[test]
    fn otel_style_annotations_carry_event_attributes() {
        let (name, attributes) =
            annotation_event(r#"{"cart loaded": {"items": 3, "gift": true}}"#.into());
        assert_eq!(name, "cart loaded");
        assert_eq!(attributes.len(), 2);
        assert_eq!(
            annotation_event("plain".into()),
            ("plain".to_owned(), Vec::new())
        );
        assert_eq!(annotation_event("{\"a\": 1}".into()).0, "{\"a\": 1}");
    }

    #[test]
    fn bad_ids_and_bad_json_are_clear_errors() {
        let bad_id = r#"[{"traceId":"xyz","id":"a2fb4a1d1a96d312"}]"#;
        let error = to_otlp(parse_json(bad_id.as_bytes()).unwrap()).unwrap_err();
        assert!(error.to_string().contains("trace ID"), "{error}");
        assert!(
            parse_json(b"{not json")
                .unwrap_err()
                .to_string()
                .contains("malformed Zipkin JSON")
        );
    }
}
