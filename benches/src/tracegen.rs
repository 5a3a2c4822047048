//! The "tracegen" mode of the workload: the shape of the dataset behind
//! Jaeger's published ClickHouse benchmark (1M traces, 10M spans), so our
//! figures can be set beside theirs. Exactly 10 spans per trace (a root and
//! nine children), 10 services, 11 attributes per span drawn from 97 keys ×
//! 1,000 values.

use std::collections::VecDeque;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use crate::workload::Workload;

const SERVICES: usize = 10;
const SPANS_PER_TRACE: usize = 10;
const ATTRIBUTES_PER_SPAN: usize = 11;
const ATTRIBUTE_KEYS: usize = 97;
const VALUES_PER_KEY: usize = 1_000;
/// Mean gap between trace starts on the generator's clock.
const MEAN_GAP_NANOS: f64 = 1_000_000.0;

/// Generates tracegen-shaped traces.
#[derive(Debug)]
pub struct Tracegen {
    rng: StdRng,
    resources: Vec<Resource>,
    scope: InstrumentationScope,
    next_start: u64,
    pending: VecDeque<(usize, Span)>,
}

fn string_attribute(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

impl Tracegen {
    /// A generator seeded with `seed` whose first trace starts at
    /// `start_unix_nano`.
    pub fn new(seed: u64, start_unix_nano: u64) -> Self {
        let resources = (0..SERVICES)
            .map(|n| Resource {
                attributes: vec![
                    string_attribute("service.name".into(), format!("tracegen-{n:02}")),
                    string_attribute("telemetry.sdk.name".into(), "opentelemetry".into()),
                    string_attribute("telemetry.sdk.language".into(), "go".into()),
                ],
                ..Resource::default()
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            resources,
            scope: InstrumentationScope {
                name: "tracegen".into(),
                ..InstrumentationScope::default()
            },
            next_start: start_unix_nano,
            pending: VecDeque::new(),
        }
    }

    fn next_trace(&mut self) {
        let gap = -(1.0 - self.rng.random::<f64>()).ln() * MEAN_GAP_NANOS;
        self.next_start += gap as u64;
        let trace_id: [u8; 16] = self.rng.random();
        let root_id: [u8; 8] = self.rng.random();
        let root_duration = self.rng.random_range(10_000_000..500_000_000u64);
        for k in 0..SPANS_PER_TRACE {
            let service = self.rng.random_range(0..SERVICES);
            let (span_id, parent, start, duration) = if k == 0 {
                (root_id, Vec::new(), self.next_start, root_duration)
            } else {
                let offset = root_duration * self.rng.random_range(5..50) / 100;
                let duration = root_duration * self.rng.random_range(10..50) / 100;
                (
                    self.rng.random(),
                    root_id.to_vec(),
                    self.next_start + offset,
                    duration,
                )
            };
            let attributes = sample(&mut self.rng, ATTRIBUTE_KEYS, ATTRIBUTES_PER_SPAN)
                .into_iter()
                .map(|key| {
                    let value = self.rng.random_range(0..VALUES_PER_KEY);
                    string_attribute(format!("attr_{key:02}"), format!("value_{value:03}"))
                })
                .collect();
            self.pending.push_back((
                service,
                Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id: parent,
                    name: format!("operation-{}", self.rng.random_range(0..10)),
                    kind: if k == 0 {
                        span::SpanKind::Server
                    } else {
                        span::SpanKind::Internal
                    } as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + duration,
                    attributes,
                    ..Span::default()
                },
            ));
        }
    }

    fn group(&self, spans: impl IntoIterator<Item = (usize, Span)>) -> ExportTraceServiceRequest {
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES];
        for (service, span) in spans {
            by_service[service].push(span);
        }
        let resource_spans = by_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(service, spans)| ResourceSpans {
                resource: Some(self.resources[service].clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }
}

impl Workload for Tracegen {
    fn request(&mut self, spans: usize) -> ExportTraceServiceRequest {
        while self.pending.len() < spans {
            self.next_trace();
        }
        let batch: Vec<(usize, Span)> = self.pending.drain(..spans).collect();
        self.group(batch)
    }

    fn drain(&mut self, max_spans: usize) -> Option<ExportTraceServiceRequest> {
        let take = max_spans.min(self.pending.len());
        (take > 0).then(|| {
            let batch: Vec<(usize, Span)> = self.pending.drain(..take).collect();
            self.group(batch)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn ten_spans_per_trace_with_eleven_distinct_attributes() {
        let mut generator = Tracegen::new(7, 0);
        let request = generator.request(10_000);
        let mut per_trace: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut services = HashSet::new();
        for resource in &request.resource_spans {
            services.insert(format!("{:?}", resource.resource));
            for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                *per_trace.entry(span.trace_id.clone()).or_default() += 1;
                let keys: HashSet<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
                assert_eq!(keys.len(), ATTRIBUTES_PER_SPAN);
            }
        }
        assert_eq!(per_trace.len(), 1_000);
        assert!(per_trace.values().all(|&n| n == SPANS_PER_TRACE));
        assert_eq!(services.len(), SERVICES);
    }
}
