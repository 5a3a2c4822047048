//! Search and tag answers as Tempo's messages (`tempopb`), shared by the
//! HTTP API (JSON via [`crate::tempo_json`], or protobuf) and the gRPC
//! streaming API.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use strata_common::block::traces::ROOT_SPAN_NOT_YET_RECEIVED;

use crate::search::{SearchMetrics, SpanMatch, SpansetMatch, TagValue, TraceMatch};
use crate::tempopb;
use crate::traceql::ast::{FieldExpr, Kind, Status};
use crate::traceql::eval::Value;

fn u32_saturating(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Search figures as `SearchMetrics`.
pub(crate) fn search_metrics(m: &SearchMetrics) -> tempopb::SearchMetrics {
    tempopb::SearchMetrics {
        inspected_traces: u32_saturating(m.inspected_traces),
        inspected_bytes: m.inspected_bytes,
        total_blocks: u32_saturating(m.total_blocks),
        completed_jobs: u32_saturating(m.completed_jobs),
        total_jobs: u32_saturating(m.total_jobs),
        total_block_bytes: m.total_block_bytes,
        inspected_spans: m.inspected_spans,
    }
}

/// A `SearchResponse` holding `traces`.
pub(crate) fn search_response(
    traces: &[TraceMatch],
    metrics: &SearchMetrics,
) -> tempopb::SearchResponse {
    tempopb::SearchResponse {
        traces: traces.iter().map(trace_metadata).collect(),
        metrics: Some(search_metrics(metrics)),
    }
}

fn trace_metadata(t: &TraceMatch) -> tempopb::TraceSearchMetadata {
    let span_sets: Vec<tempopb::SpanSet> = t.spansets.iter().map(span_set).collect();
    let root_service_name = match t.root_service_name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => ROOT_SPAN_NOT_YET_RECEIVED.to_owned(),
    };
    tempopb::TraceSearchMetadata {
        trace_id: t.trace_id.to_short_hex(),
        root_service_name,
        root_trace_name: t.root_span_name.clone().unwrap_or_default(),
        start_time_unix_nano: t.start_unix_nano,
        duration_ms: u32_saturating(t.duration_nanos() / 1_000_000),
        span_set: span_sets.first().cloned(),
        span_sets,
        service_stats: t
            .service_stats
            .iter()
            .map(|(service, (spans, errors))| {
                (
                    service.clone(),
                    tempopb::ServiceStats {
                        span_count: u32_saturating(*spans),
                        error_count: u32_saturating(*errors),
                    },
                )
            })
            .collect::<HashMap<_, _>>(),
    }
}

fn span_set(s: &SpansetMatch) -> tempopb::SpanSet {
    tempopb::SpanSet {
        spans: s.spans.iter().map(span).collect(),
        matched: s.matched,
        attributes: s.attributes.iter().map(|(k, v)| key_value(k, v)).collect(),
    }
}

fn span(s: &SpanMatch) -> tempopb::Span {
    tempopb::Span {
        span_id: hex::encode(s.span_id),
        name: s.name.clone(),
        start_time_unix_nano: s.start_unix_nano,
        duration_nanos: s.duration_nanos,
        attributes: s
            .attributes
            .iter()
            .map(|(field, v)| key_value(&output_name(field), v))
            .collect(),
    }
}

/// How a span's attribute or intrinsic is named in an answer: bare, as
/// Tempo names them (`http.method`, `status`, `duration`).
fn output_name(field: &FieldExpr) -> String {
    match field {
        FieldExpr::Attribute(a) => a.name.clone(),
        FieldExpr::Intrinsic(i) => i.name().to_owned(),
        other => crate::traceql::display::field(other),
    }
}

fn key_value(key: &str, value: &Value<'_>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any_value(value)),
        ..KeyValue::default()
    }
}

/// A TraceQL value as Tempo reports it (`AsAnyValue`): durations as Go
/// duration strings, status and kind as their keywords.
fn any_value(value: &Value<'_>) -> AnyValue {
    use any_value::Value as V;
    let v = match value {
        Value::Nil => V::StringValue("nil".into()),
        Value::Bool(b) => V::BoolValue(*b),
        Value::Int(i) => V::IntValue(*i),
        Value::Float(f) => V::DoubleValue(*f),
        Value::Str(s) => V::StringValue(s.to_string()),
        Value::Duration(d) => V::StringValue(go_duration(*d)),
        Value::Status(s) => V::StringValue(
            Status::from_otlp(*s).map_or_else(|| s.to_string(), |s| s.keyword().to_owned()),
        ),
        Value::Kind(k) => V::StringValue(
            Kind::from_otlp(*k).map_or_else(|| k.to_string(), |k| k.keyword().to_owned()),
        ),
        Value::Array(items) => V::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        }),
    };
    AnyValue { value: Some(v) }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let negative = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if negative { "-" } else { "" };
    let fraction = |value: u64, unit: u64| -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let frac = format!("{rest:0digits$}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = (n / 60_000_000_000) % 60;
    let seconds = n % 60_000_000_000;
    let mut out = sign.to_owned();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fraction(seconds, 1_000_000_000)));
    out
}

/// Typed values as `TagValue` messages.
pub(crate) fn tag_values_v2(values: &[TagValue]) -> tempopb::SearchTagValuesV2Response {
    tempopb::SearchTagValuesV2Response {
        tag_values: values
            .iter()
            .map(|v| tempopb::TagValue {
                r#type: v.kind.to_owned(),
                value: v.value.clone(),
            })
            .collect(),
        metrics: Some(tempopb::MetadataMetrics::default()),
    }
}

/// Values as plain strings (v1).
pub(crate) fn tag_values_v1(values: &[TagValue]) -> tempopb::SearchTagValuesResponse {
    tempopb::SearchTagValuesResponse {
        tag_values: values.iter().map(|v| v.value.clone()).collect(),
        metrics: Some(tempopb::MetadataMetrics::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::go_float;

    #[test]
    fn durations_print_like_go() {
        for (nanos, text) in [
            (0, "0s"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(nanos), text);
        }
        assert_eq!(go_float(2.0), "2.0");
        assert_eq!(go_float(0.25), "0.25");
    }
}
