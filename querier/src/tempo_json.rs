//! Tempo's JSON rendering of traces.
//!
//! Tempo marshals its protobuf responses with gogo's `jsonpb`, so its JSON
//! differs from the OTLP/JSON mapping that receivers accept: IDs and bytes
//! are base64, enums are names (`SPAN_KIND_SERVER`), 64-bit integers are
//! strings, fields at their default value are omitted, and non-finite doubles
//! are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`. Tools written
//! against Tempo parse exactly this shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, EntityRef, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span, status};
use serde_json::{Map, Value, json};

use crate::tempopb;

/// `{"batches": [...]}`, the v1 `/api/traces/<id>` body.
pub(crate) fn trace_v1(resource_spans: &[ResourceSpans]) -> Value {
    json!({ "batches": resource_spans.iter().map(resource_spans_json).collect::<Vec<_>>() })
}

/// The v2 `/api/v2/traces/<id>` body.
pub(crate) fn trace_by_id_v2(
    resource_spans: &[ResourceSpans],
    inspected_bytes: u64,
    partial: Option<&str>,
) -> Value {
    let mut trace = Map::new();
    if !resource_spans.is_empty() {
        trace.insert(
            "resourceSpans".into(),
            Value::Array(resource_spans.iter().map(resource_spans_json).collect()),
        );
    }
    let mut metrics = Map::new();
    if inspected_bytes > 0 {
        metrics.insert(
            "inspectedBytes".into(),
            Value::String(inspected_bytes.to_string()),
        );
    }
    let mut body = json!({ "trace": trace, "metrics": metrics });
    if let Some(message) = partial {
        body["status"] = Value::String("PARTIAL".into());
        body["message"] = Value::String(message.into());
    }
    body
}

/// `SearchResponse` as Tempo's frontend prints it: `traces` always present
/// (possibly `[]`), `metrics` always present (possibly `{}`), 64-bit
/// integers as strings, zero fields omitted.
pub(crate) fn search_response(response: &tempopb::SearchResponse) -> Value {
    json!({
        "traces": response.traces.iter().map(trace_metadata_json).collect::<Vec<_>>(),
        "metrics": response.metrics.as_ref().map_or_else(|| json!({}), search_metrics_json),
    })
}

fn trace_metadata_json(t: &tempopb::TraceSearchMetadata) -> Value {
    let mut stats = Map::new();
    for (service, s) in &t.service_stats {
        stats.insert(
            service.clone(),
            Obj::default()
                .u32("spanCount", s.span_count)
                .u32("errorCount", s.error_count)
                .done(),
        );
    }
    let mut obj = Obj::default()
        .str("traceID", &t.trace_id)
        .str("rootServiceName", &t.root_service_name)
        .str("rootTraceName", &t.root_trace_name)
        .u64("startTimeUnixNano", t.start_time_unix_nano)
        .u32("durationMs", t.duration_ms);
    if let Some(set) = &t.span_set {
        obj = obj.value("spanSet", span_set_json(set));
    }
    obj = obj.list("spanSets", &t.span_sets, span_set_json);
    if !stats.is_empty() {
        obj = obj.value("serviceStats", Value::Object(stats));
    }
    obj.done()
}

fn span_set_json(set: &tempopb::SpanSet) -> Value {
    // Grafana iterates `spans` of every spanset: always print it.
    Obj::default()
        .value(
            "spans",
            Value::Array(set.spans.iter().map(search_span_json).collect()),
        )
        .u32("matched", set.matched)
        .list("attributes", &set.attributes, key_value_json)
        .done()
}

fn search_span_json(span: &tempopb::Span) -> Value {
    Obj::default()
        .str("spanID", &span.span_id)
        .str("name", &span.name)
        .u64("startTimeUnixNano", span.start_time_unix_nano)
        .u64("durationNanos", span.duration_nanos)
        .list("attributes", &span.attributes, key_value_json)
        .done()
}

fn search_metrics_json(m: &tempopb::SearchMetrics) -> Value {
    Obj::default()
        .u32("inspectedTraces", m.inspected_traces)
        .u64("inspectedBytes", m.inspected_bytes)
        .u32("totalBlocks", m.total_blocks)
        .u32("completedJobs", m.completed_jobs)
        .u32("totalJobs", m.total_jobs)
        .u64("totalBlockBytes", m.total_block_bytes)
        .u64("inspectedSpans", m.inspected_spans)
        .done()
}

fn metadata_metrics_json(m: Option<&tempopb::MetadataMetrics>) -> Value {
    m.map_or_else(
        || json!({}),
        |m| {
            Obj::default()
                .u64("inspectedBytes", m.inspected_bytes)
                .u32("totalJobs", m.total_jobs)
                .u32("completedJobs", m.completed_jobs)
                .u32("totalBlocks", m.total_blocks)
                .u64("totalBlockBytes", m.total_block_bytes)
                .done()
        },
    )
}

/// `{"tagNames": [...], "metrics": {...}}`.
pub(crate) fn tags_response(response: &tempopb::SearchTagsResponse) -> Value {
    json!({
        "tagNames": response.tag_names,
        "metrics": metadata_metrics_json(response.metrics.as_ref()),
    })
}

/// `{"scopes": [{"name", "tags"}], "metrics": {...}}`.
pub(crate) fn tags_v2_response(response: &tempopb::SearchTagsV2Response) -> Value {
    json!({
        "scopes": response.scopes.iter().map(|s| json!({"name": s.name, "tags": s.tags})).collect::<Vec<_>>(),
        "metrics": metadata_metrics_json(response.metrics.as_ref()),
    })
}

/// `{"tagValues": [...], "metrics": {...}}`.
pub(crate) fn tag_values_response(response: &tempopb::SearchTagValuesResponse) -> Value {
    json!({
        "tagValues": response.tag_values,
        "metrics": metadata_metrics_json(response.metrics.as_ref()),
    })
}

/// `{"tagValues": [{"type", "value"}], "metrics": {...}}`.
pub(crate) fn tag_values_v2_response(response: &tempopb::SearchTagValuesV2Response) -> Value {
    json!({
        "tagValues": response.tag_values.iter().map(|v| json!({"type": v.r#type, "value": v.value})).collect::<Vec<_>>(),
        "metrics": metadata_metrics_json(response.metrics.as_ref()),
    })
}

/// Builds a JSON object, skipping fields at their proto3 default.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn str(mut self, key: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.0.insert(key.into(), Value::String(value.to_owned()));
        }
        self
    }

    fn bytes(mut self, key: &str, value: &[u8]) -> Self {
        if !value.is_empty() {
            self.0
                .insert(key.into(), Value::String(BASE64.encode(value)));
        }
        self
    }

    fn u32(mut self, key: &str, value: u32) -> Self {
        if value != 0 {
            self.0.insert(key.into(), Value::from(value));
        }
        self
    }

    fn u64(mut self, key: &str, value: u64) -> Self {
        if value != 0 {
            self.0.insert(key.into(), Value::String(value.to_string()));
        }
        self
    }

    fn value(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    fn list<T>(mut self, key: &str, items: &[T], f: impl Fn(&T) -> Value) -> Self {
        if !items.is_empty() {
            self.0
                .insert(key.into(), Value::Array(items.iter().map(f).collect()));
        }
        self
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn resource_spans_json(rs: &ResourceSpans) -> Value {
    let mut obj = Obj::default();
    if let Some(resource) = &rs.resource {
        obj = obj.value("resource", resource_json(resource));
    }
    obj.list("scopeSpans", &rs.scope_spans, scope_spans_json)
        .str("schemaUrl", &rs.schema_url)
        .done()
}

fn resource_json(resource: &Resource) -> Value {
    Obj::default()
        .list("attributes", &resource.attributes, key_value_json)
        .u32("droppedAttributesCount", resource.dropped_attributes_count)
        .list("entityRefs", &resource.entity_refs, entity_ref_json)
        .done()
}

fn entity_ref_json(entity: &EntityRef) -> Value {
    let strings =
        |items: &[String]| Value::Array(items.iter().map(|s| Value::String(s.clone())).collect());
    let mut obj = Obj::default()
        .str("schemaUrl", &entity.schema_url)
        .str("type", &entity.r#type);
    if !entity.id_keys.is_empty() {
        obj = obj.value("idKeys", strings(&entity.id_keys));
    }
    if !entity.description_keys.is_empty() {
        obj = obj.value("descriptionKeys", strings(&entity.description_keys));
    }
    obj.done()
}

fn scope_spans_json(ss: &ScopeSpans) -> Value {
    let mut obj = Obj::default();
    if let Some(scope) = &ss.scope {
        obj = obj.value("scope", scope_json(scope));
    }
    obj.list("spans", &ss.spans, span_json)
        .str("schemaUrl", &ss.schema_url)
        .done()
}

fn scope_json(scope: &InstrumentationScope) -> Value {
    Obj::default()
        .str("name", &scope.name)
        .str("version", &scope.version)
        .list("attributes", &scope.attributes, key_value_json)
        .u32("droppedAttributesCount", scope.dropped_attributes_count)
        .done()
}

fn span_json(span: &Span) -> Value {
    let mut obj = Obj::default()
        .bytes("traceId", &span.trace_id)
        .bytes("spanId", &span.span_id)
        .str("traceState", &span.trace_state)
        .bytes("parentSpanId", &span.parent_span_id)
        .u32("flags", span.flags)
        .str("name", &span.name);
    if span.kind != 0 {
        let kind = span::SpanKind::try_from(span.kind)
            .map(|k| Value::String(k.as_str_name().to_owned()))
            .unwrap_or_else(|_| Value::from(span.kind));
        obj = obj.value("kind", kind);
    }
    obj = obj
        .u64("startTimeUnixNano", span.start_time_unix_nano)
        .u64("endTimeUnixNano", span.end_time_unix_nano)
        .list("attributes", &span.attributes, key_value_json)
        .u32("droppedAttributesCount", span.dropped_attributes_count)
        .list("events", &span.events, event_json)
        .u32("droppedEventsCount", span.dropped_events_count)
        .list("links", &span.links, link_json)
        .u32("droppedLinksCount", span.dropped_links_count);
    if let Some(status) = &span.status {
        let mut s = Obj::default().str("message", &status.message);
        if status.code != 0 {
            let code = status::StatusCode::try_from(status.code)
                .map(|c| Value::String(c.as_str_name().to_owned()))
                .unwrap_or_else(|_| Value::from(status.code));
            s = s.value("code", code);
        }
        obj = obj.value("status", s.done());
    }
    obj.done()
}

fn event_json(event: &span::Event) -> Value {
    Obj::default()
        .u64("timeUnixNano", event.time_unix_nano)
        .str("name", &event.name)
        .list("attributes", &event.attributes, key_value_json)
        .u32("droppedAttributesCount", event.dropped_attributes_count)
        .done()
}

fn link_json(link: &span::Link) -> Value {
    Obj::default()
        .bytes("traceId", &link.trace_id)
        .bytes("spanId", &link.span_id)
        .str("traceState", &link.trace_state)
        .list("attributes", &link.attributes, key_value_json)
        .u32("droppedAttributesCount", link.dropped_attributes_count)
        .u32("flags", link.flags)
        .done()
}

fn key_value_json(kv: &KeyValue) -> Value {
    let mut obj = Obj::default().str("key", &kv.key);
    if let Some(value) = &kv.value {
        obj = obj.value("value", any_value_json(value));
    }
    obj.done()
}

fn any_value_json(value: &AnyValue) -> Value {
    let Some(inner) = &value.value else {
        return Value::Object(Map::new());
    };
    let (key, v) = match inner {
        any_value::Value::StringValue(s) => ("stringValue", Value::String(s.clone())),
        any_value::Value::BoolValue(b) => ("boolValue", Value::Bool(*b)),
        any_value::Value::IntValue(i) => ("intValue", Value::String(i.to_string())),
        any_value::Value::DoubleValue(d) => ("doubleValue", double_json(*d)),
        any_value::Value::BytesValue(b) => ("bytesValue", Value::String(BASE64.encode(b))),
        any_value::Value::ArrayValue(array) => (
            "arrayValue",
            Obj::default()
                .list("values", &array.values, any_value_json)
                .done(),
        ),
        any_value::Value::KvlistValue(list) => (
            "kvlistValue",
            Obj::default()
                .list("values", &list.values, key_value_json)
                .done(),
        ),
        any_value::Value::StringValueStrindex(i) => ("stringValueStrindex", Value::from(*i)),
    };
    let mut map = Map::new();
    map.insert(key.into(), v);
    Value::Object(map)
}

fn double_json(d: f64) -> Value {
    if d.is_nan() {
        Value::String("NaN".into())
    } else if d.is_infinite() {
        Value::String(if d > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    #[test]
    fn spans_render_like_tempo_jsonpb() {
        let span = Span {
            trace_id: vec![0; 15].into_iter().chain([1]).collect(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 2],
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![KeyValue {
                key: "http.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(200)),
                }),
                ..KeyValue::default()
            }],
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Span::default()
        };
        let rendered = span_json(&span);
        assert_eq!(
            rendered,
            json!({
                "traceId": "AAAAAAAAAAAAAAAAAAAAAQ==",
                "spanId": "AAAAAAAAAAI=",
                "name": "GET /",
                "kind": "SPAN_KIND_SERVER",
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000500000000",
                "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
                "status": {"message": "boom", "code": "STATUS_CODE_ERROR"}
            })
        );
    }

    #[test]
    fn v1_uses_batches_and_v2_wraps_the_trace() {
        assert_eq!(trace_v1(&[]), json!({"batches": []}));
        assert_eq!(
            trace_by_id_v2(&[], 0, None),
            json!({"trace": {}, "metrics": {}})
        );
        assert_eq!(
            trace_by_id_v2(&[ResourceSpans::default()], 42, None)["metrics"]["inspectedBytes"],
            "42"
        );
    }

    #[test]
    fn non_finite_doubles_are_strings() {
        assert_eq!(double_json(f64::NAN), json!("NaN"));
        assert_eq!(double_json(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(double_json(0.5), json!(0.5));
    }
}
