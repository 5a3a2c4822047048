//! A deterministic generated trace dataset with a known structure, for the
//! TraceQL answer-key tests (`traceql_answers.rs`).
//!
//! Six services on twelve resources, nested calls one to five levels deep
//! with real parent/child span IDs, every span kind, error/ok/unset spans,
//! durations from 1 ms to 3 s, span attributes of every type (well-known
//! keys that get dedicated columns, keys present on some spans only, a
//! well-known key with an unconventional type, string and int arrays
//! including empty and one-element ones), events, links to other traces,
//! instrumentation scopes, and odd trees: two roots, orphan subtrees (a
//! parent ID not in the trace), traces without a root, and traces split
//! into two fragments written to different blocks.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event as OtlpEvent, Link as OtlpLink};
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status as OtlpStatus,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_common::block::{BlockWriteOptions, write_block};
use strata_common::convert::request_to_batch;
use strata_common::{BlockMeta, TenantId};

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;

/// An attribute value, as OTLP carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<AttrValue>),
}

/// Key/value pairs in order.
pub type Attrs = Vec<(String, AttrValue)>;

fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_owned())
}

/// A resource (its attributes include `service.name`).
#[derive(Debug, Clone)]
pub struct Resource {
    pub attrs: Attrs,
}

/// An instrumentation scope.
#[derive(Debug, Clone)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attrs: Attrs,
}

/// A span event.
#[derive(Debug, Clone)]
pub struct Event {
    pub time: u64,
    pub name: String,
    pub attrs: Attrs,
}

/// A span link.
#[derive(Debug, Clone)]
pub struct Link {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub attrs: Attrs,
}

/// One span.
#[derive(Debug, Clone)]
pub struct Span {
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent: Option<[u8; 8]>,
    pub name: String,
    /// OTLP kind number.
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    /// OTLP status code.
    pub status_code: i32,
    pub status_message: String,
    pub attrs: Attrs,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    /// Index into [`Dataset::resources`].
    pub resource: usize,
    /// Index into [`Dataset::scopes`].
    pub scope: usize,
    /// Written in the trace's second (late) fragment.
    pub late: bool,
}

/// One trace.
#[derive(Debug, Clone)]
pub struct Trace {
    pub id: [u8; 16],
    pub spans: Vec<Span>,
    /// Block of the spans (of the early fragment when split).
    pub block: usize,
    /// Block of the late fragment, when the trace is split.
    pub late_block: Option<usize>,
}

impl Trace {
    /// The spans written together in one block: one fragment, or two.
    pub fn fragments(&self) -> Vec<Vec<usize>> {
        let early: Vec<usize> = (0..self.spans.len())
            .filter(|i| !self.spans[*i].late)
            .collect();
        let late: Vec<usize> = (0..self.spans.len())
            .filter(|i| self.spans[*i].late)
            .collect();
        [early, late]
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect()
    }
}

/// The whole dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub traces: Vec<Trace>,
    pub resources: Vec<Resource>,
    pub scopes: Vec<Scope>,
    /// Level-0 blocks to write.
    pub blocks: usize,
}

pub const SERVICES: [&str; 6] = [
    "frontend",
    "checkout",
    "payment",
    "inventory",
    "db-proxy",
    "mailer",
];

const SCOPE_HTTP: usize = 0;
const SCOPE_DB: usize = 1;
const SCOPE_MANUAL: usize = 2;
const SCOPE_LEGACY: usize = 3;
const SCOPE_MESSAGING: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    HttpServer,
    HttpClient,
    Db,
    Producer,
    Consumer,
    Internal,
    Legacy,
}

struct Gen {
    rng: StdRng,
    tick: u64,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// Log-uniform between `lo` and `hi` nanoseconds.
    fn log_duration(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        let x: f64 = self.rng.random_range(a..b);
        (x.exp() as u64).clamp(lo, hi)
    }

    fn span_id(&mut self) -> [u8; 8] {
        let mut id: [u8; 8] = self.rng.random();
        if id == [0; 8] {
            id[7] = 1;
        }
        id
    }

    fn resource_of(&mut self, service: usize) -> usize {
        service * 2 + self.rng.random_range(0..2)
    }

    fn span(
        &mut self,
        role: Role,
        service: usize,
        parent: Option<[u8; 8]>,
        start: u64,
        max_end: Option<u64>,
    ) -> Span {
        self.tick += 1;
        let start = start + self.tick;
        let mut duration = self.log_duration(MS, 3_000 * MS);
        if let Some(max_end) = max_end {
            duration = duration.min(max_end.saturating_sub(start)).max(MS);
        }
        let error = self.chance(0.12);
        let (status_code, status_message) = if error {
            (
                2,
                (*self.pick(&["boom", "timeout", "connection refused", "upstream 503"])).to_owned(),
            )
        } else if self.chance(0.2) {
            (1, String::new())
        } else {
            (0, String::new())
        };
        let mut attrs: Attrs = Vec::new();
        let (name, kind, scope) = match role {
            Role::HttpServer => {
                let (name, method, route) = *self.pick(&[
                    ("GET /api/items", "GET", "/api/items"),
                    ("GET /api/items/{id}", "GET", "/api/items/{id}"),
                    ("POST /api/checkout", "POST", "/api/checkout"),
                    ("PUT /api/cart", "PUT", "/api/cart"),
                    ("GET /health", "GET", "/health"),
                ]);
                attrs.push(("http.request.method".into(), s(method)));
                attrs.push(("http.route".into(), s(route)));
                let code = if error {
                    *self.pick(&[500, 503])
                } else {
                    *self.pick(&[200, 200, 200, 201, 204, 301, 400, 404])
                };
                attrs.push(("http.response.status_code".into(), AttrValue::Int(code)));
                (name.to_owned(), 2, SCOPE_HTTP)
            }
            Role::HttpClient => {
                let (name, method) = *self.pick(&[
                    ("HTTP GET", "GET"),
                    ("HTTP POST", "POST"),
                    ("HTTP DELETE", "DELETE"),
                ]);
                attrs.push(("http.request.method".into(), s(method)));
                let code = if error {
                    *self.pick(&[500, 502, 503])
                } else {
                    *self.pick(&[200, 201, 404])
                };
                attrs.push(("http.response.status_code".into(), AttrValue::Int(code)));
                // A well-known Int key, sometimes sent as a string.
                let port = if self.chance(0.1) {
                    s("8080")
                } else {
                    AttrValue::Int(*self.pick(&[8080, 443]))
                };
                attrs.push(("server.port".into(), port));
                (name.to_owned(), 3, SCOPE_HTTP)
            }
            Role::Db => {
                let (name, system, statement) = *self.pick(&[
                    (
                        "SELECT items",
                        "postgresql",
                        "SELECT *\nFROM items WHERE id = $1",
                    ),
                    (
                        "INSERT order",
                        "postgresql",
                        "INSERT INTO orders VALUES ($1)",
                    ),
                    ("GET cart", "redis", "GET cart:42"),
                ]);
                attrs.push(("db.system".into(), s(system)));
                attrs.push(("db.statement".into(), s(statement)));
                (name.to_owned(), 3, SCOPE_DB)
            }
            Role::Producer => {
                attrs.push(("messaging.system".into(), s("kafka")));
                ("publish order".to_owned(), 4, SCOPE_MESSAGING)
            }
            Role::Consumer => {
                attrs.push(("messaging.system".into(), s("kafka")));
                ("consume order".to_owned(), 5, SCOPE_MESSAGING)
            }
            Role::Internal => {
                let name = *self.pick(&["render", "validate", "charge card", "send mail"]);
                (name.to_owned(), 1, SCOPE_MANUAL)
            }
            Role::Legacy => ("legacy-op".to_owned(), 0, SCOPE_LEGACY),
        };
        // Attributes present on some spans only.
        if self.chance(0.4) {
            // Mostly ints; a few floats (a type mix on an automatic column).
            let v = if self.chance(0.08) {
                AttrValue::Float(*self.pick(&[0.5, 2.5]))
            } else {
                AttrValue::Int(self.rng.random_range(0..=5))
            };
            attrs.push(("retry.count".into(), v));
        }
        if self.chance(0.3) {
            let v = if self.chance(0.3) {
                *self.pick(&[0.0, 0.25, 0.5, 1.0])
            } else {
                f64::from(self.rng.random_range(0..=100u32)) / 100.0
            };
            attrs.push(("payload.ratio".into(), AttrValue::Float(v)));
        }
        if self.chance(0.3) {
            attrs.push(("cache.hit".into(), AttrValue::Bool(self.chance(0.5))));
        }
        if self.chance(0.15) {
            let v = match self.rng.random_range(0..5) {
                0 => vec![],
                1 => vec![s("beta")],
                2 => vec![s("alpha"), s("beta")],
                3 => vec![s("dark-mode"), s("alpha"), s("new-cart")],
                _ => vec![s("new-cart")],
            };
            attrs.push(("feature.flags".into(), AttrValue::Array(v)));
        }
        if self.chance(0.1) {
            let v = match self.rng.random_range(0..3) {
                0 => vec![AttrValue::Int(7)],
                1 => vec![AttrValue::Int(1), AttrValue::Int(2), AttrValue::Int(3)],
                _ => vec![AttrValue::Int(4), AttrValue::Int(9)],
            };
            attrs.push(("item.ids".into(), AttrValue::Array(v)));
        }
        if self.chance(0.25) {
            attrs.push((
                "user.tier".into(),
                s(self.pick::<&str>(&["gold", "silver", "free"])),
            ));
        }
        if self.chance(0.1) {
            attrs.push(("tier".into(), s("edge")));
        }
        if self.chance(0.15) {
            attrs.push((
                "neg.value".into(),
                AttrValue::Int(self.rng.random_range(-50..=50)),
            ));
        }
        if self.chance(0.1) {
            let v = f64::from(self.rng.random_range(-20..=20i32)) / 4.0;
            attrs.push(("neg.float".into(), AttrValue::Float(v)));
        }
        if self.chance(0.05) {
            attrs.push(("a b".into(), s("spaced")));
        }
        let mut span = Span {
            span_id: self.span_id(),
            parent,
            name,
            kind,
            start,
            end: start + duration,
            status_code,
            status_message,
            attrs,
            events: Vec::new(),
            links: Vec::new(),
            resource: self.resource_of(service),
            scope,
            late: false,
        };
        if self.chance(0.1) {
            for _ in 0..self.rng.random_range(1..=3) {
                let time = span.start + self.rng.random_range(0..=duration);
                let event = if (error && self.chance(0.7)) || self.chance(0.2) {
                    let mut attrs = Vec::new();
                    if self.chance(0.85) {
                        let message = *self.pick(&[
                            "connection reset by peer",
                            "timeout after 3s",
                            "null pointer\nat line 3",
                            "disk full",
                        ]);
                        attrs.push(("exception.message".into(), s(message)));
                    }
                    let ty = *self.pick(&["IOError", "TimeoutError", "NPE"]);
                    attrs.push(("exception.type".into(), s(ty)));
                    Event {
                        time,
                        name: "exception".into(),
                        attrs,
                    }
                } else if self.chance(0.6) {
                    Event {
                        time,
                        name: "retry".into(),
                        attrs: vec![(
                            "attempt".into(),
                            AttrValue::Int(self.rng.random_range(1..=3)),
                        )],
                    }
                } else {
                    Event {
                        time,
                        name: "cache.miss".into(),
                        attrs: vec![("key".into(), s("item:42"))],
                    }
                };
                span.events.push(event);
            }
        }
        span
    }

    /// A span and its descendants, appended to `out` in creation order.
    #[allow(clippy::too_many_arguments)]
    fn subtree(
        &mut self,
        role: Role,
        service: usize,
        parent: Option<[u8; 8]>,
        start: u64,
        max_end: Option<u64>,
        depth: usize,
        budget: &mut usize,
        out: &mut Vec<Span>,
    ) {
        let span = self.span(role, service, parent, start, max_end);
        let (id, span_start, span_end) = (span.span_id, span.start, span.end);
        out.push(span);
        *budget = budget.saturating_sub(1);
        if depth >= 5 {
            return;
        }
        let children = match (role, depth) {
            (Role::HttpClient | Role::Producer, _) => usize::from(self.chance(0.8)),
            (Role::Db, _) => usize::from(self.chance(0.2)),
            (_, 1) => self.rng.random_range(1..=4),
            (_, 2) => self.rng.random_range(0..=3),
            _ => self.rng.random_range(0..=2),
        };
        for _ in 0..children {
            if *budget == 0 {
                return;
            }
            let (child_role, child_service) = match role {
                Role::HttpClient => (Role::HttpServer, self.other_service(service)),
                Role::Producer => (Role::Consumer, self.other_service(service)),
                Role::Db => (Role::Internal, 4),
                _ => {
                    let r = self.rng.random_range(0..100);
                    let role = match r {
                        0..30 => Role::HttpClient,
                        30..50 => Role::Db,
                        50..78 => Role::Internal,
                        78..90 => Role::Producer,
                        90..95 => Role::Legacy,
                        _ => Role::HttpServer,
                    };
                    (role, service)
                }
            };
            let offset = self.rng.random_range(0..=(span_end - span_start) / 2);
            self.subtree(
                child_role,
                child_service,
                Some(id),
                span_start + offset,
                Some(span_end),
                depth + 1,
                budget,
                out,
            );
        }
    }

    fn other_service(&mut self, service: usize) -> usize {
        let other = self.rng.random_range(0..SERVICES.len() - 1);
        if other >= service { other + 1 } else { other }
    }
}

/// Descendants of `root` (itself included), by index.
pub fn subtree_of(spans: &[Span], root: usize) -> Vec<usize> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let id = spans[out[i]].span_id;
        for (j, span) in spans.iter().enumerate() {
            if span.parent == Some(id) && !out.contains(&j) {
                out.push(j);
            }
        }
        i += 1;
    }
    out
}

/// Generates `traces` traces with start times in the 28 minutes before
/// `now` (Unix nanoseconds), spread over `blocks` level-0 blocks; the late
/// fragments of split traces go to the last two blocks.
pub fn generate(seed: u64, traces: usize, blocks: usize, now: u64) -> Dataset {
    assert!(blocks >= 4);
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        tick: 0,
    };
    let mut resources = Vec::new();
    for (i, service) in SERVICES.iter().enumerate() {
        for pod in 0..2 {
            let mut attrs = vec![
                ("service.name".to_owned(), s(service)),
                (
                    "k8s.pod.name".to_owned(),
                    s(&format!("{service}-{:04x}-{pod}", 0x7f00 + i * 17)),
                ),
                (
                    "deployment.environment".to_owned(),
                    s(if pod == 1 && i % 2 == 0 {
                        "staging"
                    } else {
                        "prod"
                    }),
                ),
                (
                    "host.cores".to_owned(),
                    AttrValue::Int(if pod == 0 { 4 } else { 8 }),
                ),
            ];
            if (1..=4).contains(&i) {
                attrs.push(("tier".to_owned(), s("backend")));
            }
            if i % 3 == 0 {
                attrs.push(("canary".to_owned(), AttrValue::Bool(pod == 1)));
            }
            resources.push(Resource { attrs });
        }
    }
    let scope = |name: &str, version: &str, attrs: Attrs| Scope {
        name: name.to_owned(),
        version: version.to_owned(),
        attrs,
    };
    let scopes = vec![
        scope(
            "io.opentelemetry.http",
            "1.2.0",
            vec![("otel.library.flavor".into(), s("auto"))],
        ),
        scope(
            "io.opentelemetry.db",
            "0.9.1",
            vec![("otel.library.flavor".into(), s("auto"))],
        ),
        scope(
            "manual-tracer",
            "2.0.0-beta",
            vec![("otel.library.flavor".into(), s("manual"))],
        ),
        scope("legacy", "", vec![]),
        scope(
            "io.opentelemetry.messaging",
            "1.0.0",
            vec![("otel.library.flavor".into(), s("auto"))],
        ),
    ];

    let mut out = Vec::with_capacity(traces);
    for i in 0..traces {
        let mut id: [u8; 16] = g.rng.random();
        match i {
            3 => id[0] = 0,
            7 => {
                id[0] = 0;
                id[1] = 0;
            }
            11 => id[0] = 0x0f,
            _ if id[0] < 0x10 => id[0] |= 0x10,
            _ => {}
        }
        let start = now - g.rng.random_range(60_000 * MS..28 * 60_000 * MS);
        let (role, service) = match g.rng.random_range(0..100) {
            0..55 => (Role::HttpServer, 0),
            55..70 => (Role::HttpServer, g.rng.random_range(1..SERVICES.len())),
            70..82 => (Role::Consumer, *g.pick(&[3, 5])),
            82..95 => (Role::Internal, g.rng.random_range(0..SERVICES.len())),
            _ => (Role::Legacy, 5),
        };
        let mut spans = Vec::new();
        let mut budget = if g.chance(0.08) {
            1
        } else {
            g.rng.random_range(2..=40)
        };
        g.subtree(role, service, None, start, None, 1, &mut budget, &mut spans);
        if i % 40 == 5 {
            // A second root, before or after the first.
            let offset = g.rng.random_range(0..500 * MS);
            let second_start = if i % 80 == 5 {
                start - offset
            } else {
                start + offset
            };
            let mut budget = 3;
            let second_service = g.rng.random_range(0..SERVICES.len());
            g.subtree(
                Role::Internal,
                second_service,
                None,
                second_start,
                None,
                1,
                &mut budget,
                &mut spans,
            );
        }
        if i % 40 == 15 {
            // An orphan subtree: a parent ID that is not in the trace.
            if spans.len() > 1 {
                let at = g.rng.random_range(1..spans.len());
                spans[at].parent = Some(g.span_id());
            } else {
                let mut budget = 3;
                let orphan_parent = g.span_id();
                g.subtree(
                    Role::Internal,
                    1,
                    Some(orphan_parent),
                    start + MS,
                    None,
                    2,
                    &mut budget,
                    &mut spans,
                );
            }
        }
        let rootless = i % 97 == 50;
        if rootless {
            spans[0].parent = Some(g.span_id());
        }
        if i == 20 {
            spans[0]
                .attrs
                .push(("limit.value".into(), AttrValue::Int(i64::MAX)));
        }
        if i == 21 {
            spans[0]
                .attrs
                .push(("limit.value".into(), AttrValue::Int(i64::MIN)));
        }
        let block = g.rng.random_range(0..blocks);
        let mut trace = Trace {
            id,
            spans,
            block,
            late_block: None,
        };
        if i % 12 == 7 && i % 40 != 15 && !rootless && trace.spans.len() >= 2 {
            // Late child spans: a subtree under a non-root span, written to
            // a later block than the rest.
            let candidates: Vec<usize> = (1..trace.spans.len())
                .filter(|at| subtree_of(&trace.spans, *at).len() * 2 <= trace.spans.len())
                .collect();
            if let Some(at) = candidates.get(g.rng.random_range(0..candidates.len().max(1))) {
                for j in subtree_of(&trace.spans, *at) {
                    trace.spans[j].late = true;
                    trace.spans[j]
                        .attrs
                        .push(("late.arrival".into(), AttrValue::Bool(true)));
                }
                trace.block = g.rng.random_range(0..blocks - 2);
                trace.late_block = Some(blocks - 2 + g.rng.random_range(0..2));
            }
        }
        out.push(trace);
    }

    // Links to spans of other traces (IDs without leading zero nibbles, so
    // that every hex form of them agrees).
    let targets: Vec<([u8; 16], [u8; 8])> = out
        .iter()
        .filter(|t| t.id[0] >= 0x10)
        .flat_map(|t| t.spans.iter().map(move |s| (t.id, s.span_id)))
        .filter(|(_, span)| span[0] >= 0x10)
        .collect();
    for trace in &mut out {
        for span in &mut trace.spans {
            if !g.chance(0.04) {
                continue;
            }
            for _ in 0..g.rng.random_range(1..=2) {
                let (trace_id, span_id) = *g.pick(&targets);
                let mut attrs = vec![(
                    "link.kind".to_owned(),
                    s(g.pick::<&str>(&["follows_from", "caused_by"])),
                )];
                if g.chance(0.6) {
                    attrs.push(("weight".into(), AttrValue::Int(g.rng.random_range(1..=3))));
                }
                span.links.push(Link {
                    trace_id,
                    span_id,
                    attrs,
                });
            }
        }
    }
    Dataset {
        traces: out,
        resources,
        scopes,
        blocks,
    }
}

fn any_value(v: &AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(x) => any_value::Value::StringValue(x.clone()),
        AttrValue::Int(x) => any_value::Value::IntValue(*x),
        AttrValue::Float(x) => any_value::Value::DoubleValue(*x),
        AttrValue::Bool(x) => any_value::Value::BoolValue(*x),
        AttrValue::Array(xs) => any_value::Value::ArrayValue(ArrayValue {
            values: xs.iter().map(any_value).collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn key_values(attrs: &Attrs) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any_value(v)),
            ..KeyValue::default()
        })
        .collect()
}

fn otlp_span(trace_id: &[u8; 16], span: &Span) -> OtlpSpan {
    OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        parent_span_id: span.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: span.name.clone(),
        kind: span.kind,
        start_time_unix_nano: span.start,
        end_time_unix_nano: span.end,
        attributes: key_values(&span.attrs),
        events: span
            .events
            .iter()
            .map(|e| OtlpEvent {
                time_unix_nano: e.time,
                name: e.name.clone(),
                attributes: key_values(&e.attrs),
                ..OtlpEvent::default()
            })
            .collect(),
        links: span
            .links
            .iter()
            .map(|l| OtlpLink {
                trace_id: l.trace_id.to_vec(),
                span_id: l.span_id.to_vec(),
                attributes: key_values(&l.attrs),
                ..OtlpLink::default()
            })
            .collect(),
        status: Some(OtlpStatus {
            code: span.status_code,
            message: span.status_message.clone(),
        }),
        ..OtlpSpan::default()
    }
}

impl Dataset {
    /// The OTLP request holding block `block`'s spans.
    pub fn block_request(&self, block: usize) -> ExportTraceServiceRequest {
        let mut groups: BTreeMap<(usize, usize), Vec<OtlpSpan>> = BTreeMap::new();
        for trace in &self.traces {
            for span in &trace.spans {
                let at = if span.late {
                    trace.late_block
                } else {
                    Some(trace.block)
                };
                if at == Some(block) {
                    groups
                        .entry((span.resource, span.scope))
                        .or_default()
                        .push(otlp_span(&trace.id, span));
                }
            }
        }
        let mut by_resource: BTreeMap<usize, Vec<ScopeSpans>> = BTreeMap::new();
        for ((resource, scope), spans) in groups {
            let sc = &self.scopes[scope];
            by_resource.entry(resource).or_default().push(ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: sc.name.clone(),
                    version: sc.version.clone(),
                    attributes: key_values(&sc.attrs),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            });
        }
        ExportTraceServiceRequest {
            resource_spans: by_resource
                .into_iter()
                .map(|(resource, scope_spans)| ResourceSpans {
                    resource: Some(OtlpResource {
                        attributes: key_values(&self.resources[resource].attrs),
                        ..OtlpResource::default()
                    }),
                    scope_spans,
                    ..ResourceSpans::default()
                })
                .collect(),
        }
    }

    /// Writes every block as a level-0 block of `tenant`.
    pub async fn write(&self, store: &Arc<dyn ObjectStore>, tenant: &TenantId) -> Vec<BlockMeta> {
        let mut metas = Vec::new();
        for block in 0..self.blocks {
            let batch = request_to_batch(&self.block_request(block)).unwrap();
            let meta = write_block(
                Arc::clone(store),
                tenant.clone(),
                vec![batch],
                0,
                BlockWriteOptions::default(),
            )
            .await
            .unwrap();
            metas.push(meta);
        }
        metas
    }

    /// Every span count.
    pub fn span_count(&self) -> usize {
        self.traces.iter().map(|t| t.spans.len()).sum()
    }
}
