//! Per-tenant limits and request sanitising.
//!
//! Every export passes through [`sanitize`] before it is logged: spans that
//! cannot be stored are removed (and reported back through OTLP's partial
//! success), over-long attribute values are cut, and spans beyond a trace's
//! size limit are dropped. Then [`Limits::admit`] charges the tenant's
//! ingestion-rate token bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde::Deserialize;
use strata_common::TenantId;

/// Limits for one tenant. Zero means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Sustained ingestion rate in bytes of OTLP protobuf per second.
    pub ingestion_rate_bytes: u64,
    /// Burst allowance on top of the rate, in bytes.
    pub ingestion_burst_bytes: u64,
    /// Spans per trace held live; further spans of that trace are dropped.
    pub max_spans_per_trace: u64,
    /// Bytes (OTLP protobuf) per trace held live; further spans are dropped.
    pub max_bytes_per_trace: u64,
    /// String and bytes attribute values are cut to this many bytes.
    pub max_attribute_value_bytes: u64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            ingestion_rate_bytes: 64 * 1024 * 1024,
            ingestion_burst_bytes: 128 * 1024 * 1024,
            max_spans_per_trace: 100_000,
            max_bytes_per_trace: 50 * 1024 * 1024,
            max_attribute_value_bytes: 64 * 1024,
        }
    }
}

/// Why spans were rejected or changed; labels of the rejection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Trace ID not 16 bytes, or all zeros.
    InvalidTraceId,
    /// Span ID not 8 bytes, or all zeros.
    InvalidSpanId,
    /// Parent span ID neither empty nor 8 bytes.
    InvalidParentSpanId,
    /// The trace already holds the maximum spans or bytes.
    TraceTooLarge,
}

impl Rejection {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "invalid_trace_id",
            Self::InvalidSpanId => "invalid_span_id",
            Self::InvalidParentSpanId => "invalid_parent_span_id",
            Self::TraceTooLarge => "trace_too_large",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "trace ID must be 16 bytes and not all zeros",
            Self::InvalidSpanId => "span ID must be 8 bytes and not all zeros",
            Self::InvalidParentSpanId => "parent span ID must be empty or 8 bytes",
            Self::TraceTooLarge => "trace exceeds the per-trace limit",
        }
    }
}

/// What sanitising did to a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SanitizeReport {
    /// Spans kept.
    pub(crate) accepted: usize,
    /// Spans removed, by reason.
    pub(crate) rejected: Vec<(Rejection, usize)>,
    /// Attribute values cut to the length limit.
    pub(crate) truncated_values: usize,
    /// Links dropped for invalid IDs (counted in the span's `dropped_links_count`).
    pub(crate) dropped_links: usize,
    /// All-zero parent IDs replaced by "no parent".
    pub(crate) normalized_parents: usize,
}

impl SanitizeReport {
    /// Total spans removed.
    pub(crate) fn rejected_spans(&self) -> usize {
        self.rejected.iter().map(|(_, n)| n).sum()
    }

    /// Whether the request was changed at all.
    pub(crate) fn changed(&self) -> bool {
        self.rejected_spans() > 0
            || self.truncated_values > 0
            || self.dropped_links > 0
            || self.normalized_parents > 0
    }

    /// A message for OTLP's partial success, naming each reason.
    pub(crate) fn message(&self) -> String {
        self.rejected
            .iter()
            .map(|(reason, n)| format!("{n} span(s) rejected: {}", reason.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn reject(&mut self, reason: Rejection) {
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.rejected.push((reason, 1)),
        }
    }
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

fn check_span(span: &Span) -> Option<Rejection> {
    if !valid_id(&span.trace_id, 16) {
        return Some(Rejection::InvalidTraceId);
    }
    if !valid_id(&span.span_id, 8) {
        return Some(Rejection::InvalidSpanId);
    }
    if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) {
        return Some(Rejection::InvalidParentSpanId);
    }
    None
}

/// Live usage of one trace: spans and bytes already held.
pub(crate) type TraceUsage = HashMap<[u8; 16], (u64, u64)>;

/// Removes what cannot be stored and applies the per-trace and attribute
/// limits. `usage` holds, for traces already live, the spans and bytes they
/// hold; it is updated with what this request adds.
pub(crate) fn sanitize(
    request: &mut ExportTraceServiceRequest,
    limits: &TenantLimits,
    usage: &mut TraceUsage,
) -> SanitizeReport {
    let mut report = SanitizeReport::default();
    let max_value = usize::try_from(limits.max_attribute_value_bytes).unwrap_or(usize::MAX);
    for resource_spans in &mut request.resource_spans {
        if let Some(resource) = &mut resource_spans.resource {
            truncate_values(&mut resource.attributes, max_value, &mut report);
        }
        for scope_spans in &mut resource_spans.scope_spans {
            if let Some(scope) = &mut scope_spans.scope {
                truncate_values(&mut scope.attributes, max_value, &mut report);
            }
            scope_spans.spans.retain_mut(|span| {
                if let Some(reason) = check_span(span) {
                    report.reject(reason);
                    return false;
                }
                normalize(span, &mut report);
                truncate_values(&mut span.attributes, max_value, &mut report);
                for event in &mut span.events {
                    truncate_values(&mut event.attributes, max_value, &mut report);
                }
                for link in &mut span.links {
                    truncate_values(&mut link.attributes, max_value, &mut report);
                }
                let mut key = [0u8; 16];
                key.copy_from_slice(&span.trace_id);
                let (spans, bytes) = usage.entry(key).or_default();
                let size = span.encoded_len() as u64;
                let too_many =
                    limits.max_spans_per_trace > 0 && *spans + 1 > limits.max_spans_per_trace;
                let too_big =
                    limits.max_bytes_per_trace > 0 && *bytes + size > limits.max_bytes_per_trace;
                if too_many || too_big {
                    report.reject(Rejection::TraceTooLarge);
                    return false;
                }
                *spans += 1;
                *bytes += size;
                report.accepted += 1;
                true
            });
        }
        resource_spans.scope_spans.retain(|s| !s.spans.is_empty());
    }
    request.resource_spans.retain(|r| !r.scope_spans.is_empty());
    report
}

/// The documented normalisations: an all-zero parent means "no parent";
/// links whose IDs are malformed are dropped and counted as dropped links.
fn normalize(span: &mut Span, report: &mut SanitizeReport) {
    if span.parent_span_id.len() == 8 && span.parent_span_id.iter().all(|b| *b == 0) {
        span.parent_span_id.clear();
        report.normalized_parents += 1;
    }
    let before = span.links.len();
    span.links.retain(|link| {
        (link.trace_id.is_empty() || link.trace_id.len() == 16)
            && (link.span_id.is_empty() || link.span_id.len() == 8)
    });
    let dropped = before - span.links.len();
    if dropped > 0 {
        span.dropped_links_count = span
            .dropped_links_count
            .saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
        report.dropped_links += dropped;
    }
}

fn truncate_values(attributes: &mut [KeyValue], max: usize, report: &mut SanitizeReport) {
    for kv in attributes {
        if let Some(value) = &mut kv.value {
            truncate_value(value, max, report);
        }
    }
}

fn truncate_value(value: &mut AnyValue, max: usize, report: &mut SanitizeReport) {
    match &mut value.value {
        Some(any_value::Value::StringValue(s)) if s.len() > max => {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            report.truncated_values += 1;
        }
        Some(any_value::Value::BytesValue(b)) if b.len() > max => {
            b.truncate(max);
            report.truncated_values += 1;
        }
        Some(any_value::Value::ArrayValue(array)) => {
            for v in &mut array.values {
                truncate_value(v, max, report);
            }
        }
        Some(any_value::Value::KvlistValue(list)) => truncate_values(&mut list.values, max, report),
        _ => {}
    }
}

/// A token bucket in bytes.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

/// Per-tenant limits with rate-limit state.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    defaults: TenantLimits,
    overrides: HashMap<TenantId, TenantLimits>,
    buckets: Mutex<HashMap<TenantId, TokenBucket>>,
}

impl Limits {
    /// Limits with `defaults` for every tenant but those in `overrides`.
    pub(crate) fn new(defaults: TenantLimits, overrides: HashMap<TenantId, TenantLimits>) -> Self {
        Self {
            defaults,
            overrides,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limits of `tenant`.
    pub(crate) fn of(&self, tenant: &TenantId) -> &TenantLimits {
        self.overrides.get(tenant).unwrap_or(&self.defaults)
    }

    /// Charges `bytes` to the tenant's rate limit; on refusal returns how
    /// long until they would fit.
    pub(crate) fn admit(&self, tenant: &TenantId, bytes: u64) -> Result<(), Duration> {
        let limits = self.of(tenant);
        if limits.ingestion_rate_bytes == 0 {
            return Ok(());
        }
        let rate = limits.ingestion_rate_bytes as f64;
        let burst = limits
            .ingestion_burst_bytes
            .max(limits.ingestion_rate_bytes) as f64;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(tenant.clone()).or_insert(TokenBucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate).min(burst);
        bucket.updated = now;
        let cost = bytes as f64;
        // A request bigger than the burst passes on a full bucket, else it
        // could never pass at all.
        if cost <= bucket.tokens || bucket.tokens >= burst {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::span::Link;
    use strata_common::testing::request_with_spans;

    use super::*;

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            ..Span::default()
        }
    }

    fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect()
    }

    #[test]
    fn invalid_spans_are_removed_and_reported_by_reason() {
        let mut bad_parent = span(1, 3);
        bad_parent.parent_span_id = vec![1, 2, 3];
        let mut request = request_with_spans(vec![
            span(1, 1),
            span(0, 2),
            Span {
                trace_id: vec![1; 15],
                ..span(1, 4)
            },
            span(1, 0),
            bad_parent,
        ]);
        let report = sanitize(
            &mut request,
            &TenantLimits::default(),
            &mut TraceUsage::new(),
        );
        assert_eq!(report.accepted, 1);
        assert_eq!(report.rejected_spans(), 4);
        assert!(report.rejected.contains(&(Rejection::InvalidTraceId, 2)));
        assert!(report.message().contains("trace ID must be 16 bytes"));
        assert_eq!(spans(&request).len(), 1);
    }

    #[test]
    fn normalisations_are_applied_and_counted() {
        let mut s = span(1, 1);
        s.parent_span_id = vec![0; 8];
        s.links = vec![
            Link {
                trace_id: vec![1; 3],
                ..Link::default()
            },
            Link {
                trace_id: vec![2; 16],
                span_id: vec![2; 8],
                ..Link::default()
            },
        ];
        s.attributes = vec![KeyValue {
            key: "sql".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("é".repeat(100))),
            }),
            ..KeyValue::default()
        }];
        let mut request = request_with_spans(vec![s]);
        let limits = TenantLimits {
            max_attribute_value_bytes: 11,
            ..TenantLimits::default()
        };
        let report = sanitize(&mut request, &limits, &mut TraceUsage::new());
        let kept = spans(&request)[0];
        assert!(kept.parent_span_id.is_empty());
        assert_eq!((kept.links.len(), kept.dropped_links_count), (1, 1));
        let Some(any_value::Value::StringValue(value)) =
            &kept.attributes[0].value.as_ref().unwrap().value
        else {
            panic!("string attribute expected");
        };
        assert_eq!(value.len(), 10, "cut at a character boundary");
        assert_eq!(report.truncated_values, 1);
        assert!(report.changed());
    }

    #[test]
    fn spans_beyond_the_trace_limit_are_dropped() {
        let limits = TenantLimits {
            max_spans_per_trace: 3,
            ..TenantLimits::default()
        };
        let mut usage = TraceUsage::new();
        usage.insert([1; 16], (2, 0));
        let mut request = request_with_spans(vec![span(1, 1), span(1, 2), span(2, 1)]);
        let report = sanitize(&mut request, &limits, &mut usage);
        assert_eq!(report.accepted, 2);
        assert_eq!(report.rejected, vec![(Rejection::TraceTooLarge, 1)]);
        assert_eq!(usage[&[1; 16]].0, 3);
    }

    #[test]
    fn the_rate_limit_refuses_past_the_burst_and_says_when_to_retry() {
        let tenant = TenantId::new("t").unwrap();
        let limits = Limits::new(
            TenantLimits {
                ingestion_rate_bytes: 1_000,
                ingestion_burst_bytes: 2_000,
                ..TenantLimits::default()
            },
            HashMap::new(),
        );
        assert!(limits.admit(&tenant, 1_500).is_ok());
        let retry = limits.admit(&tenant, 1_500).unwrap_err();
        assert!(
            retry > Duration::from_millis(900) && retry <= Duration::from_secs(1),
            "{retry:?}"
        );
        // Another tenant has its own bucket.
        assert!(limits.admit(&TenantId::new("u").unwrap(), 1_500).is_ok());
    }
}
