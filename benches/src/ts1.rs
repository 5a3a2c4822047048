//! The TS-1 workload generator (`shared/reference/workload.md`).
//!
//! Deterministic by seed: the same seed yields the same traces, so figures
//! are comparable across changes. Produces OTLP `ExportTraceServiceRequest`s
//! of exactly the requested number of spans, grouped the way SDKs group them
//! (by resource and scope); a trace may straddle two requests, as it does
//! when an SDK's batch fills up.
//!
//! Late arrivals: 1% of spans are held back and sent once the generator's
//! clock (its trace start times) has moved 1–10 minutes past the span's
//! trace start, so they land in a later block than the rest of their trace.
//! [`Workload::drain`] sends whatever is still held at the end of a run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::workload::Workload;

/// Workload parameters.
#[derive(Debug, Clone)]
pub struct Ts1Config {
    /// RNG seed.
    pub seed: u64,
    /// Number of services (20 by default; 10 to compare with Jaeger's benchmark).
    pub services: usize,
    /// Start of the first trace, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// Mean gap between trace starts, nanoseconds (Poisson arrivals).
    pub mean_gap_nanos: u64,
    /// Share of spans that arrive 1–10 minutes after their trace started.
    pub late_fraction: f64,
}

impl Default for Ts1Config {
    fn default() -> Self {
        Self {
            seed: 1,
            services: 20,
            start_unix_nano: 1_780_000_000_000_000_000,
            mean_gap_nanos: 1_000_000,
            late_fraction: 0.01,
        }
    }
}

#[derive(Debug)]
struct Service {
    name: String,
    instances: Vec<Resource>,
    span_names: Vec<String>,
    routes: Vec<String>,
    kind: Flavour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Http,
    Db,
    Rpc,
}

/// Generates TS-1 traces.
#[derive(Debug)]
pub struct Ts1 {
    rng: StdRng,
    services: Vec<Service>,
    scope: InstrumentationScope,
    next_start: u64,
    mean_gap_nanos: u64,
    late_fraction: f64,
    traces: u64,
    /// Generated spans not yet sent, in generation order.
    pending: VecDeque<Placed>,
    /// Late spans, by release time on the generator's clock.
    late: BinaryHeap<Reverse<Late>>,
    late_seq: u64,
    generated_spans: u64,
}

/// A span with the service and instance (resource) that emits it.
type Placed = (usize, usize, Span);

/// A held-back span, ordered by release time (then by hold order, so equal
/// times keep a deterministic order).
#[derive(Debug)]
struct Late {
    release_at: u64,
    seq: u64,
    span: Placed,
}

impl PartialEq for Late {
    fn eq(&self, other: &Self) -> bool {
        (self.release_at, self.seq) == (other.release_at, other.seq)
    }
}

impl Eq for Late {}

impl PartialOrd for Late {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Late {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.release_at, self.seq).cmp(&(other.release_at, other.seq))
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const STATUS_OK: [i64; 8] = [200, 200, 200, 201, 202, 204, 301, 304];
const STATUS_4XX: [i64; 3] = [400, 404, 409];
const STATUS_5XX: [i64; 2] = [500, 503];
const DB_SYSTEMS: [&str; 3] = ["postgresql", "redis", "mysql"];
const DB_OPERATIONS: [&str; 6] = ["SELECT", "INSERT", "UPDATE", "DELETE", "GET", "SET"];
const NAMESPACES: [&str; 5] = ["shop", "payments", "search", "identity", "platform"];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

impl Ts1 {
    /// A generator for `config`.
    pub fn new(config: &Ts1Config) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let services = (0..config.services)
            .map(|n| {
                let name = format!("service-{n:02}");
                let kind = match n % 4 {
                    0 | 1 => Flavour::Http,
                    2 => Flavour::Db,
                    _ => Flavour::Rpc,
                };
                let instances = (0..rng.random_range(3..=8))
                    .map(|k| {
                        let pod = format!("{name}-{k}-{:05x}", rng.random_range(0..0xfffff));
                        Resource {
                            attributes: vec![
                                s("service.name", name.clone()),
                                s("service.version", format!("1.{}.0", rng.random_range(0..3))),
                                s("service.instance.id", pod.clone()),
                                s("k8s.pod.name", pod.clone()),
                                s("k8s.namespace.name", NAMESPACES[n % NAMESPACES.len()]),
                                s("k8s.cluster.name", format!("cluster-{}", n % 2)),
                                s("cloud.region", REGIONS[n % REGIONS.len()]),
                                s(
                                    "deployment.environment",
                                    if n % 5 == 0 { "staging" } else { "production" },
                                ),
                                s("host.name", format!("node-{}", rng.random_range(0..40))),
                                s("telemetry.sdk.name", "opentelemetry"),
                                s("telemetry.sdk.language", "rust"),
                                s("telemetry.sdk.version", "0.33.0"),
                            ],
                            ..Resource::default()
                        }
                    })
                    .collect();
                let span_names = (0..rng.random_range(5..=15))
                    .map(|k| match kind {
                        Flavour::Http => format!("{} /api/v1/{name}/op{k}", METHODS[k % 5]),
                        Flavour::Db => format!("{} {name}.table{k}", DB_OPERATIONS[k % 6]),
                        Flavour::Rpc => format!("{name}.Service/Method{k}"),
                    })
                    .collect();
                let routes = (0..50)
                    .map(|k| format!("/api/v1/{name}/r{k}/{{id}}"))
                    .collect();
                Service {
                    name,
                    instances,
                    span_names,
                    routes,
                    kind,
                }
            })
            .collect();
        Self {
            rng,
            services,
            scope: InstrumentationScope {
                name: "ts1".into(),
                version: "1.0.0".into(),
                ..InstrumentationScope::default()
            },
            next_start: config.start_unix_nano,
            mean_gap_nanos: config.mean_gap_nanos,
            late_fraction: config.late_fraction,
            traces: 0,
            pending: VecDeque::new(),
            late: BinaryHeap::new(),
            late_seq: 0,
            generated_spans: 0,
        }
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn span_count(&mut self) -> usize {
        let roll: f64 = self.rng.random();
        let (lo, hi) = if roll < 0.25 {
            (3, 5)
        } else if roll < 0.75 {
            (6, 15)
        } else if roll < 0.95 {
            (16, 60)
        } else {
            (61, 500)
        };
        self.rng.random_range(lo..=hi)
    }

    /// The spans of the next trace, each with its service index and instance.
    fn next_trace(&mut self) -> Vec<Placed> {
        self.traces += 1;
        let gap = (-(1.0 - self.rng.random::<f64>()).ln() * self.mean_gap_nanos as f64) as u64;
        self.next_start += gap;
        let trace_id: [u8; 16] = self.rng.random();
        let n = self.span_count();
        let error_trace = self.rng.random_bool(0.05);
        let request_id = format!("req-{:016x}", self.rng.random::<u64>());
        let user_id = format!("user-{}", self.rng.random_range(0..1_000_000));
        let session_id = format!("sess-{}", self.rng.random_range(0..10_000_000));

        // Root duration: log-normal, median 150 ms, p99 2 s.
        let root_ms = (150f64.ln() + 1.114 * self.normal()).exp();
        let root_nanos = (root_ms * 1e6) as u64;

        let mut spans: Vec<Placed> = Vec::with_capacity(n);
        let mut depth: Vec<usize> = Vec::with_capacity(n);
        for k in 0..n {
            let (parent, parent_start, parent_duration, d) = if k == 0 {
                (None, self.next_start, root_nanos, 0)
            } else {
                // Prefer recent spans as parents, within depth 8.
                let mut p = k - 1 - self.rng.random_range(0..k.min(4));
                while depth[p] >= 7 {
                    p = self.rng.random_range(0..k);
                }
                let ps = &spans[p].2;
                (
                    Some(ps.span_id.clone()),
                    ps.start_time_unix_nano,
                    ps.end_time_unix_nano - ps.start_time_unix_nano,
                    depth[p] + 1,
                )
            };
            let service = if k == 0 {
                self.rng.random_range(0..self.services.len().min(4))
            } else {
                self.rng.random_range(0..self.services.len())
            };
            let instance = self
                .rng
                .random_range(0..self.services[service].instances.len());
            let flavour = self.services[service].kind;
            let start = parent_start + parent_duration * self.rng.random_range(5..=10) / 100;
            let duration = if flavour == Flavour::Db && k > 0 {
                self.rng
                    .random_range(1_000_000..50_000_000)
                    .min(parent_duration.max(1))
            } else {
                (parent_duration * self.rng.random_range(50..=90) / 100).max(1)
            };
            let error = error_trace && self.rng.random_bool(0.2);
            let span = self.span(
                service,
                &trace_id,
                parent,
                start,
                duration,
                error,
                [&request_id, &user_id, &session_id],
            );
            spans.push((service, instance, span));
            depth.push(d);
        }
        spans
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: usize,
        trace_id: &[u8; 16],
        parent: Option<Vec<u8>>,
        start: u64,
        duration: u64,
        error: bool,
        ids: [&str; 3],
    ) -> Span {
        let rng = &mut self.rng;
        let svc = &self.services[service];
        let name = svc.span_names[rng.random_range(0..svc.span_names.len())].clone();
        let mut attributes = match svc.kind {
            Flavour::Http => {
                let status = if error {
                    STATUS_5XX[rng.random_range(0..STATUS_5XX.len())]
                } else if rng.random_bool(0.02) {
                    STATUS_4XX[rng.random_range(0..STATUS_4XX.len())]
                } else {
                    STATUS_OK[rng.random_range(0..STATUS_OK.len())]
                };
                let route = svc.routes[rng.random_range(0..svc.routes.len())].clone();
                vec![
                    s(
                        "http.request.method",
                        METHODS[rng.random_range(0..METHODS.len())],
                    ),
                    s(
                        "url.path",
                        route.replace("{id}", &rng.random_range(0..10_000).to_string()),
                    ),
                    s("http.route", route),
                    i("http.response.status_code", status),
                    s("server.address", format!("{}.svc.cluster.local", svc.name)),
                ]
            }
            Flavour::Db => vec![
                s(
                    "db.system",
                    DB_SYSTEMS[rng.random_range(0..DB_SYSTEMS.len())],
                ),
                s(
                    "db.operation",
                    DB_OPERATIONS[rng.random_range(0..DB_OPERATIONS.len())],
                ),
                s(
                    "db.statement",
                    format!("SELECT * FROM t{} WHERE id = $1", rng.random_range(0..200)),
                ),
            ],
            Flavour::Rpc => vec![
                s("rpc.system", "grpc"),
                s("rpc.service", format!("{}.Service", svc.name)),
                s("rpc.method", format!("Method{}", rng.random_range(0..12))),
                i("rpc.grpc.status_code", if error { 14 } else { 0 }),
            ],
        };
        attributes.push(s("app.tier", format!("tier-{}", rng.random_range(0..5))));
        attributes.push(s("app.shard", format!("shard-{}", rng.random_range(0..5))));
        attributes.push(s(
            "app.feature",
            format!("feature-{}", rng.random_range(0..20)),
        ));
        attributes.push(s("request.id", ids[0]));
        attributes.push(s("user.id", ids[1]));
        attributes.push(s("session.id", ids[2]));
        let extra = rng.random_range(0..=4);
        for k in 0..extra {
            attributes.push(i(&format!("app.counter.{k}"), rng.random_range(0..1000)));
        }
        if rng.random_bool(0.10) {
            let len = rng.random_range(200..=1000);
            attributes.push(s("app.payload", "x".repeat(len)));
        }
        let mut events = Vec::new();
        if rng.random_bool(0.10) {
            events.push(span::Event {
                time_unix_nano: start + duration / 2,
                name: "checkpoint".into(),
                attributes: (0..rng.random_range(3..=6))
                    .map(|k| {
                        s(
                            &format!("event.field{k}"),
                            format!("v{}", rng.random_range(0..100)),
                        )
                    })
                    .collect(),
                dropped_attributes_count: 0,
            });
        }
        if error {
            events.push(span::Event {
                time_unix_nano: start + duration - 1,
                name: "exception".into(),
                attributes: vec![
                    s("exception.type", "UpstreamError"),
                    s("exception.message", "upstream returned 503"),
                ],
                dropped_attributes_count: 0,
            });
        }
        let links = if rng.random_bool(0.02) {
            vec![span::Link {
                trace_id: rng.random::<[u8; 16]>().to_vec(),
                span_id: rng.random::<[u8; 8]>().to_vec(),
                ..span::Link::default()
            }]
        } else {
            Vec::new()
        };
        let kind = match (parent.is_none(), svc.kind) {
            (true, _) => span::SpanKind::Server,
            (false, Flavour::Db) => span::SpanKind::Client,
            (false, _) if rng.random_bool(0.5) => span::SpanKind::Server,
            _ => span::SpanKind::Internal,
        };
        Span {
            trace_id: trace_id.to_vec(),
            span_id: rng.random::<[u8; 8]>().to_vec(),
            parent_span_id: parent.unwrap_or_default(),
            flags: 1,
            name,
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration,
            attributes,
            events,
            links,
            status: Some(Status {
                code: if error { 2 } else { 0 },
                message: if error {
                    "upstream unavailable".into()
                } else {
                    String::new()
                },
            }),
            ..Span::default()
        }
    }

    /// Generates traces until `spans` spans are pending, holding back the
    /// late share and releasing late spans whose time has come.
    fn fill(&mut self, spans: usize) {
        while self.pending.len() < spans {
            let trace_start = self.next_start;
            for placed in self.next_trace() {
                self.generated_spans += 1;
                if self.late_fraction > 0.0 && self.rng.random_bool(self.late_fraction) {
                    let delay = self.rng.random_range(60_000_000_000..=600_000_000_000u64);
                    self.late_seq += 1;
                    self.late.push(Reverse(Late {
                        release_at: trace_start + delay,
                        seq: self.late_seq,
                        span: placed,
                    }));
                } else {
                    self.pending.push_back(placed);
                }
            }
            while let Some(Reverse(due)) = self.late.peek() {
                if due.release_at > self.next_start {
                    break;
                }
                if let Some(Reverse(due)) = self.late.pop() {
                    self.pending.push_back(due.span);
                }
            }
        }
    }

    /// Groups spans by resource (service instance) and scope, as an SDK's
    /// exporter does.
    fn group(&self, spans: impl IntoIterator<Item = Placed>) -> ExportTraceServiceRequest {
        let mut by_instance: Vec<Vec<Vec<Span>>> = self
            .services
            .iter()
            .map(|s| vec![Vec::new(); s.instances.len()])
            .collect();
        for (service, instance, span) in spans {
            by_instance[service][instance].push(span);
        }
        let mut resource_spans = Vec::new();
        for (service, instances) in by_instance.into_iter().enumerate() {
            for (instance, spans) in instances.into_iter().enumerate() {
                if spans.is_empty() {
                    continue;
                }
                resource_spans.push(ResourceSpans {
                    resource: Some(self.services[service].instances[instance].clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(self.scope.clone()),
                        spans,
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                });
            }
        }
        ExportTraceServiceRequest { resource_spans }
    }

    /// Traces generated so far.
    pub fn traces(&self) -> u64 {
        self.traces
    }

    /// Spans generated so far, sent or not.
    pub fn generated_spans(&self) -> u64 {
        self.generated_spans
    }
}

impl Workload for Ts1 {
    fn request(&mut self, spans: usize) -> ExportTraceServiceRequest {
        self.fill(spans);
        let take = spans.min(self.pending.len());
        let batch: Vec<Placed> = self.pending.drain(..take).collect();
        self.group(batch)
    }

    fn drain(&mut self, max_spans: usize) -> Option<ExportTraceServiceRequest> {
        let mut batch: Vec<Placed> = self
            .pending
            .drain(..max_spans.min(self.pending.len()))
            .collect();
        while batch.len() < max_spans {
            match self.late.pop() {
                Some(Reverse(late)) => batch.push(late.span),
                None => break,
            }
        }
        (!batch.is_empty()).then(|| self.group(batch))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
        crate::request_spans(request).collect()
    }

    #[test]
    fn same_seed_same_traces() {
        let a = Ts1::new(&Ts1Config::default()).request(1_000);
        let b = Ts1::new(&Ts1Config::default()).request(1_000);
        assert_eq!(a, b);
    }

    #[test]
    fn requests_hold_exactly_the_asked_spans_and_drain_returns_the_rest() {
        let mut ts1 = Ts1::new(&Ts1Config::default());
        let mut sent = 0;
        for _ in 0..40 {
            let request = ts1.request(512);
            assert_eq!(spans(&request).len(), 512);
            sent += 512;
        }
        while let Some(request) = ts1.drain(512) {
            let n = spans(&request).len();
            assert!((1..=512).contains(&n));
            sent += n;
        }
        // Every generated span is sent exactly once.
        assert_eq!(sent as u64, ts1.generated_spans());
    }

    #[test]
    fn about_one_percent_of_spans_arrive_minutes_late() {
        // A trace every 100 ms on the generator's clock: the run spans an
        // hour of it, so held spans come due.
        let mut ts1 = Ts1::new(&Ts1Config {
            mean_gap_nanos: 100_000_000,
            ..Ts1Config::default()
        });
        let mut late = 0;
        let mut total = 0;
        for _ in 0..40 {
            let request = ts1.request(8_192);
            let clock = ts1.next_start;
            for span in spans(&request) {
                total += 1;
                // A span is late when it is sent more than a minute (on the
                // generator's clock) after it started.
                if clock.saturating_sub(span.start_time_unix_nano) > 60_000_000_000 {
                    late += 1;
                }
            }
        }
        let share = late as f64 / total as f64;
        assert!((0.005..0.02).contains(&share), "late share {share}");
    }

    #[test]
    fn shape_matches_the_workload_spec() {
        let mut ts1 = Ts1::new(&Ts1Config::default());
        let request = ts1.request(50_000);
        let spans = spans(&request);
        let mean = ts1.generated_spans() as f64 / ts1.traces() as f64;
        assert!((12.0..30.0).contains(&mean), "mean spans per trace {mean}");
        let errors = spans
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
            .count();
        let error_rate = errors as f64 / spans.len() as f64;
        assert!(
            (0.003..0.03).contains(&error_rate),
            "error rate {error_rate}"
        );
        let attrs =
            spans.iter().map(|s| s.attributes.len()).sum::<usize>() as f64 / spans.len() as f64;
        assert!((8.0..16.0).contains(&attrs), "attributes per span {attrs}");
        let bytes_per_span = request.encoded_len() as f64 / spans.len() as f64;
        assert!(
            (300.0..800.0).contains(&bytes_per_span),
            "{bytes_per_span} B/span"
        );
    }
}
