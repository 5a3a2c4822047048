//! TraceQL search against an answer key.
//!
//! A generated dataset (`support/trace_dataset.rs`: ~300 traces of known
//! structure, some split into two fragments written to different blocks)
//! is written as eight level-0 blocks; a real `strata --target querier`
//! answers `GET /api/search`, and every answer is compared with an
//! independent evaluator of `docs/traceql.md` (`support/traceql_oracle.rs`)
//! that interprets the parsed query over whole traces in memory: the set of
//! matching traces, the span IDs of their spansets and the spanset sizes.
//!
//! 1. Before compaction, fragments are searched one at a time (the
//!    documented behaviour): conditions inside one fragment find the trace,
//!    conditions that need both fragments do not.
//! 2. `strata compact --once` merges everything into one block; then the
//!    fixed queries (every construct of the supported-surface table) and
//!    ~300 random queries generated from the grammar must be answered
//!    exactly. `STRATA_TRACEQL_SEED` repeats a random run.
//!
//! Every disagreement is collected and reported at the end with the query,
//! the traces and spans that differ, and — when one of the modelled known
//! engine deviations (`traceql_oracle::Deviations`) reproduces the engine's
//! answer — which one explains it. `STRATA_TRACEQL_PROBE=<file>` runs only
//! the queries of that file (one per line) after compaction, for
//! debugging.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_common::TenantId;
use strata_querier::traceql::ast::{
    Aggregate, Attribute, AttributeScope, BinaryOp, FieldExpr, Hint, Intrinsic, Kind, Pipeline,
    Query, ScalarFilter, SpansetExpr, SpansetOp, Stage, Static, Status, UnaryOp,
};
use strata_querier::traceql::{display, parse, parse_identifier};

use crate::support::process::Options;
use crate::support::storage::TestStorage;
use crate::support::trace_dataset::{self, Dataset, MS};
use crate::support::traceql_oracle::{
    self as oracle, Answer, Deviations, TraceAnswer, TraceView, V, regex_match,
};
use crate::support::{Strata, http_client};

const DATA_SEED: u64 = 0x7ace_d47a;
const TRACES: usize = 300;
const BLOCKS: usize = 8;
const PROPERTY_CASES: usize = 300;
const PRE_COMPACTION_CASES: usize = 60;
const DEFAULT_PROPERTY_SEED: u64 = 20_251_202;
const ROOT_PARENT_ID: &str = "0000000000000000";

/// What the answer key must say about a fixed query (so the suite cannot
/// pass vacuously).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// At least one trace matches.
    Some,
    /// No trace matches.
    None,
    /// Either.
    Any,
    /// The query fails (HTTP 400).
    Error,
}

/// The queries of the supported-surface table, with values from `data`.
fn fixed_queries(data: &Dataset) -> Vec<(String, Expect)> {
    use Expect::{Any, Error, None, Some};
    let span_id = hex::encode(data.traces[10].spans[data.traces[10].spans.len() / 2].span_id);
    let zero_led: Vec<String> = [3usize, 7, 11]
        .iter()
        .map(|i| oracle::trace_id_hex(&data.traces[*i].id))
        .collect();
    let (link_trace, link_span) = data
        .traces
        .iter()
        .flat_map(|t| &t.spans)
        .find_map(|s| s.links.first())
        .map(|l| (hex::encode(l.trace_id), hex::encode(l.span_id)))
        .unwrap();
    let missing_parent = data
        .traces
        .iter()
        .flat_map(|t| {
            let ids: BTreeSet<[u8; 8]> = t.spans.iter().map(|s| s.span_id).collect();
            t.spans
                .iter()
                .filter_map(move |s| s.parent.filter(|p| !ids.contains(p)))
        })
        .map(hex::encode)
        .next()
        .unwrap();
    let mut q: Vec<(String, Expect)> = [
        // Filters, literals, intrinsics.
        ("{ }", Some),
        ("{ true }", Some),
        ("{ false }", None),
        ("{ 1 = 1 && 2 ^ 3 = 8 }", Some),
        ("{ 2 ^ 3 ^ 2 = 512 }", Some),
        ("{ status = error }", Some),
        ("{ span:status = ok }", Some),
        ("{ status != unset }", Some),
        (r#"{ statusMessage = "timeout" }"#, Some),
        (r#"{ span:statusMessage =~ "conn.*" }"#, Some),
        (r#"{ name = "SELECT items" }"#, Some),
        (r#"{ span:name =~ "GET .*" }"#, Some),
        (r#"{ name !~ ".*order.*" }"#, Some),
        (r#"{ name > "render" }"#, Some),
        (r#"{ name <= "HTTP GET" }"#, Some),
        ("{ name = `GET /api/items/{id}` }", Some),
        (
            r#"{ span.db.statement = "SELECT *\nFROM items WHERE id = $1" }"#,
            Some,
        ),
        (r#"{ span.db.statement =~ "SELECT.*items.*" }"#, Some),
        (r#"{ span.db.statement =~ "SELECT \\*" }"#, None),
        ("{ kind = server }", Some),
        ("{ span:kind = client }", Some),
        ("{ kind = producer }", Some),
        ("{ kind = consumer }", Some),
        ("{ kind = internal }", Some),
        ("{ kind = unspecified }", Some),
        ("{ kind != server && kind != client }", Some),
        // Durations and numbers.
        ("{ duration > 1s }", Some),
        ("{ span:duration < 5ms }", Some),
        ("{ duration >= 1.5s }", Some),
        ("{ duration > 1h30m }", None),
        ("{ duration < 2d && duration > 2999ms }", Any),
        ("{ trace:duration < 1w }", Some),
        ("{ duration <= 2000000 }", Some),
        ("{ duration * 2 > 5s }", Some),
        ("{ duration - 100ms > 2.5s }", Some),
        ("{ duration / 1000000 = 1 }", Some),
        ("{ duration / 2 > 1s }", Some),
        // Attributes of every type and scope.
        (r#"{ resource.service.name = "checkout" }"#, Some),
        (r#"{ .service.name = "payment" }"#, Some),
        (r#"{ .tier = "edge" }"#, Some),
        (r#"{ .tier = "backend" && span.tier = nil }"#, Some),
        (r#"{ resource.tier = "backend" && span.tier = "edge" }"#, Some),
        (r#"{ resource.k8s.pod.name =~ "payment-.*-1" }"#, Some),
        (r#"{ resource.deployment.environment = "staging" }"#, Some),
        ("{ resource.host.cores >= 8 }", Some),
        (
            r#"{ span.http.request.method = "POST" && span.http.route =~ "/api/.*" }"#,
            Some,
        ),
        (r#"{ span.db.system = "postgresql" }"#, Some),
        (r#"{ span.messaging.system = "kafka" && kind = consumer }"#, Some),
        ("{ span.http.response.status_code = 404 }", Some),
        ("{ span.http.response.status_code != 200 }", Some),
        ("{ span.http.response.status_code >= 500 && status = error }", Some),
        ("{ .http.response.status_code = 404.0 }", Some),
        (r#"{ span.server.port = "8080" }"#, Some),
        ("{ span.server.port = 8080 }", Some),
        ("{ span.server.port > 1000 }", Some),
        ("{ span.retry.count > 2 }", Some),
        ("{ span.retry.count = 2.5 }", Some),
        ("{ span.retry.count <= 1.0 }", Some),
        ("{ span.payload.ratio = 1 }", Some),
        ("{ span.payload.ratio < .3 }", Some),
        ("{ span.payload.ratio * 1e3 > 900 }", Some),
        ("{ span.cache.hit = true }", Some),
        ("{ span.cache.hit }", Some),
        ("{ !span.cache.hit }", Some),
        ("{ span.cache.hit != false }", Some),
        ("{ resource.canary = true }", Some),
        ("{ resource.canary }", Some),
        ("{ span.user.tier = nil }", Some),
        ("{ span.user.tier != nil }", Some),
        (r#"{ !(span.user.tier = "gold") }"#, Some),
        (r#"{ span.user.tier != "gold" }"#, Some),
        ("{ !span.user.tier }", None),
        ("{ -span.user.tier = 1 }", None),
        (r#"{ span.user.tier = 1 || span.user.tier > 2 }"#, None),
        // A logical operator with a missing operand is false (Tempo).
        ("{ span.cache.hit || status = error }", Some),
        ("{ !(span.cache.hit && status = error) }", Some),
        (r#"{ span.feature.flags = "beta" }"#, Some),
        (r#"{ span.feature.flags != "beta" }"#, Some),
        (r#"{ span.feature.flags =~ "b.*" }"#, Some),
        (r#"{ span.feature.flags !~ "a.*" }"#, Some),
        ("{ span.feature.flags != nil }", Some),
        ("{ span.feature.flags = nil && span.cache.hit = true }", Some),
        ("{ span.item.ids > 5 }", Some),
        ("{ span.item.ids = 7 }", Some),
        ("{ span.item.ids != 2 }", Some),
        (r#"{ span."a b" = "spaced" }"#, Some),
        ("{ span.limit.value = maxInt }", Some),
        ("{ span.limit.value = minInt }", Some),
        ("{ span.limit.value < 0 }", Some),
        ("{ span.neg.value < -10 }", Some),
        ("{ -span.neg.value > 10 }", Some),
        ("{ span.neg.float < -4.5 }", Some),
        (r#"{ span.late.arrival = true }"#, Some),
        // Arithmetic.
        ("{ span.retry.count + 1 = 3 }", Some),
        ("{ span.retry.count * 2 - 1 >= 5 }", Some),
        ("{ span.http.response.status_code / 100 = 5 }", Some),
        ("{ span.http.response.status_code % 100 = 4 }", Some),
        ("{ span.retry.count ^ 2 = 9 }", Some),
        ("{ 2 ^ span.retry.count = 8 }", Some),
        ("{ span.retry.count % 2 = 1 }", Some),
        ("{ span.http.response.status_code / 0 = 1 }", None),
        ("{ !(span.http.response.status_code / 0 = 1) }", Some),
        ("{ span.payload.ratio * 4 = 2 }", Some),
        ("{ span.http.response.status_code + span.retry.count > 500 }", Some),
        ("{ span.neg.value - -3 > 0 }", Some),
        // `a || b && c` is `(a || b) && c`.
        (
            r#"{ span.http.request.method = "GET" || span.db.system = "redis" && status = error }"#,
            Some,
        ),
        // Events: one event must satisfy the whole filter.
        (r#"{ event:name = "exception" }"#, Some),
        (r#"{ event.exception.message =~ ".*timeout.*" }"#, Some),
        (r#"{ event.exception.message =~ "null pointer.*" }"#, Some),
        (r#"{ event:name = "retry" && event.attempt >= 2 }"#, Some),
        (r#"{ event:name = "exception" && event.attempt = 1 }"#, None),
        ("{ event:timeSinceStart > 100ms }", Some),
        (
            r#"{ event.exception.message = nil && event:name = "exception" }"#,
            Some,
        ),
        (r#"{ !(event:name = "exception") && status = error }"#, Some),
        // Links.
        (&*format!(r#"{{ link:traceID = "{link_trace}" }}"#), Some),
        (&*format!(r#"{{ link:spanID = "{link_span}" }}"#), Some),
        (r#"{ link.link.kind = "follows_from" }"#, Some),
        (r#"{ link.link.kind = "caused_by" && link.weight > 1 }"#, Some),
        ("{ link.weight = nil && link:spanID != nil }", Some),
        // Instrumentation scope.
        (r#"{ instrumentation:name = "io.opentelemetry.db" }"#, Some),
        (r#"{ instrumentation:version =~ "2\\..*" }"#, Some),
        (r#"{ instrumentation:version = "" }"#, Some),
        (r#"{ instrumentation.otel.library.flavor = "manual" }"#, Some),
        // parent.
        (r#"{ parent.http.route = "/api/checkout" }"#, Some),
        (r#"{ parent.span.http.request.method = "POST" }"#, Some),
        (
            r#"{ parent.resource.service.name = "frontend" && resource.service.name != "frontend" }"#,
            Some,
        ),
        ("{ parent.resource.service.name = nil }", Some),
        (
            "{ span.http.response.status_code > parent.span.http.response.status_code }",
            Some,
        ),
        // IDs, child counts, trace-level intrinsics, nested sets.
        (&*format!(r#"{{ span:id = "{span_id}" }}"#), Some),
        (&*format!(r#"{{ span:parentID = "{ROOT_PARENT_ID}" }}"#), Some),
        (&*format!(r#"{{ span:parentID = "{missing_parent}" }}"#), Some),
        ("{ span:childCount > 2 }", Some),
        ("{ span:childCount = 0 && kind = server }", Some),
        ("{ trace:duration > 2s }", Some),
        ("{ traceDuration < 100ms }", Some),
        (r#"{ trace:rootName = "GET /api/items" }"#, Some),
        (r#"{ rootName =~ "POST.*" }"#, Some),
        (r#"{ trace:rootService = "mailer" }"#, Some),
        (r#"{ rootServiceName = "" }"#, Some),
        (&*format!(r#"{{ trace:id = "{}" }}"#, zero_led[0]), Some),
        (&*format!(r#"{{ trace:id = "{}" }}"#, zero_led[1]), Some),
        (&*format!(r#"{{ trace:id = "{}" }}"#, zero_led[2]), Some),
        (r#"{ trace:id =~ "0.*" }"#, None),
        (r#"{ trace:id =~ "f.*" }"#, Some),
        ("{ nestedSetLeft < nestedSetRight }", Some),
        ("{ nestedSetParent > 0 }", Some),
        ("{ nestedSetParent = -1 }", Some),
        ("{ nestedSetLeft = 0 && nestedSetRight = 0 }", Some),
        ("{ nestedSetRight - nestedSetLeft = 1 && span:childCount > 0 }", None),
        // Structural operators.
        ("{ kind = server } > { kind = client }", Some),
        (
            r#"{ resource.service.name = "frontend" } >> { span.db.system = "postgresql" }"#,
            Some,
        ),
        ("{ span.db.system != nil } < { kind = server }", Some),
        (
            &*format!(r#"{{ status = error }} << {{ span:parentID = "{ROOT_PARENT_ID}" }}"#),
            Some,
        ),
        (r#"{ name = "render" } ~ { name = "validate" }"#, Some),
        (
            &*format!(
                r#"{{ span:parentID = "{ROOT_PARENT_ID}" }} ~ {{ span:parentID = "{ROOT_PARENT_ID}" }}"#
            ),
            Some,
        ),
        ("{ } > { }", Some),
        ("{ } !> { }", Some),
        (
            &*format!(r#"{{ }} !> {{ span:parentID != "{ROOT_PARENT_ID}" }}"#),
            Some,
        ),
        ("{ status = error } !> { }", Some),
        ("{ kind = client } !< { kind = server }", Some),
        (
            r#"{ resource.service.name = "frontend" } !>> { kind = internal }"#,
            Some,
        ),
        ("{ status = error } !<< { }", Some),
        ("{ kind = client } !~ { kind = client }", Some),
        (r#"{ name = "nope" } !> { kind = producer }"#, Some),
        ("{ kind = server } &> { kind = client }", Some),
        ("{ kind = client } &< { kind = server }", Some),
        ("{ kind = server } &>> { status = error }", Some),
        ("{ status = error } &<< { kind = server }", Some),
        (r#"{ name = "render" } &~ { }"#, Some),
        ("{ } &>> { } &>> { }", Some),
        // Spanset && and ||.
        (
            r#"{ resource.service.name = "payment" } && { status = error }"#,
            Some,
        ),
        (r#"{ span.db.system = "redis" } || { kind = producer }"#, Some),
        (
            r#"{ status = error } || { kind = consumer } && { resource.service.name = "mailer" }"#,
            Some,
        ),
        (
            "{ kind = server } && { kind = client } >> { span.db.system != nil }",
            Some,
        ),
        (
            "{ span.cache.hit = true } && { span.cache.hit = false }",
            Some,
        ),
        (r#"{ name = "nope" } && { }"#, None),
        // Several spansets as the operand of a structural operator: refused
        // when it happens (Tempo's rule); `&&`/`||` take their union.
        ("({ } | by(resource.service.name)) > { }", Error),
        ("{ } !~ ({ status = error } | by(kind))", Error),
        ("({ } | by(resource.service.name) | coalesce()) > { }", Some),
        ("({ } | by(resource.service.name)) && { kind = producer }", Some),
        // Pipelines.
        ("{ } | count() > 20", Some),
        ("{ } | count() = 1", Some),
        ("{ status = error } | count() >= 2", Some),
        ("{ kind = server } | avg(duration) > 500ms", Some),
        ("{ } | max(duration) < 10ms", Any),
        ("{ } | min(duration) > 100ms", Some),
        ("{ } | sum(duration) > 4s", Some),
        ("{ span.retry.count != nil } | sum(span.retry.count) > 6", Some),
        ("{ } | avg(span.neg.value) < 0", Some),
        ("{ } | avg(span.neg.value) < -20", Some),
        ("{ } | min(span.neg.float) < -4.5", Some),
        ("{ } | max(span.neg.float) < 0", Some),
        ("{ } | sum(span.payload.ratio) > 2.5", Some),
        ("{ } | avg(span.retry.count) >= 3", Some),
        ("{ } | avg(span.http.response.status_code) >= 300", Some),
        ("{ } | max(span:childCount) >= 4", Some),
        ("{ } | by(resource.service.name) | count() > 5", Some),
        ("{ } | by(status) | count() = 1", Some),
        ("{ status = error } | by(span.http.route)", Some),
        ("{ } | by(span.cache.hit) | { kind = client }", Some),
        ("{ } | by(resource.service.name) | coalesce()", Some),
        (
            "{ kind = server } | by(name) | avg(duration) > 1s | coalesce()",
            Some,
        ),
        ("{ } | select(span.http.route, status)", Some),
        (
            "{ status = error } | select(resource.service.name, span:childCount) | count() > 1",
            Some,
        ),
        ("{ } | { status = error }", Some),
        (
            "({ span.db.system != nil } | count() > 2) && ({ status = error })",
            Some,
        ),
        (
            "({ kind = server } | by(resource.service.name) | count() > 1) || { kind = producer }",
            Some,
        ),
        // Hints and comments.
        ("{ status = error } with (most_recent=true)", Some),
        (
            "{ kind = consumer } with (most_recent=true, exemplars=10)",
            Some,
        ),
        (
            "{ status = error /* errors */ && kind = server } // trailing",
            Some,
        ),
    ]
    .into_iter()
    .map(|(q, e)| (q.to_owned(), e))
    .collect();
    q.dedup();
    q
}

// ---------------------------------------------------------------------
// The server.

/// One search answer: the comparable part and the trace metadata.
#[derive(Debug, Default)]
struct Found {
    answer: Answer,
    /// Root service and root span name per trace.
    roots: BTreeMap<String, (String, String)>,
    /// Inconsistencies within the answer itself.
    problems: Vec<String>,
}

struct Harness {
    client: reqwest::Client,
    http: String,
    start: u64,
    end: u64,
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Harness {
    async fn search(&self, q: &str) -> Result<Found, String> {
        let url = format!(
            "{}/api/search?q={}&limit=1000&spss=100&start={}&end={}",
            self.http,
            encode(q),
            self.start,
            self.end
        );
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("bad JSON: {e}"))?;
        let mut found = Found::default();
        let none = Vec::new();
        for trace in json["traces"].as_array().unwrap_or(&none) {
            let id = trace["traceID"].as_str().unwrap_or_default().to_owned();
            let mut answer = TraceAnswer::default();
            for set in trace["spanSets"].as_array().unwrap_or(&none) {
                let matched = set["matched"].as_u64().unwrap_or(0) as usize;
                let spans = set["spans"].as_array().unwrap_or(&none);
                if spans.len() != matched.min(100) {
                    found.problems.push(format!(
                        "trace {id}: a spanset lists {} spans but matched = {matched}",
                        spans.len()
                    ));
                }
                answer.sizes.push(matched);
                for span in spans {
                    answer
                        .spans
                        .insert(span["spanID"].as_str().unwrap_or_default().to_owned());
                }
            }
            answer.sizes.sort_unstable();
            found.roots.insert(
                id.clone(),
                (
                    trace["rootServiceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    trace["rootTraceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
            );
            if found.answer.insert(id.clone(), answer).is_some() {
                found.problems.push(format!("trace {id} returned twice"));
            }
        }
        Ok(found)
    }

    /// Runs `queries` four at a time, answers in order.
    async fn search_all(&self, queries: &[String]) -> Vec<Result<Found, String>> {
        futures::stream::iter(queries)
            .map(|q| self.search(q))
            .buffered(4)
            .collect()
            .await
    }
}

fn strata_cli(storage: &TestStorage, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .args(["--storage", &storage.url])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn live_blocks(storage: &TestStorage) -> Vec<serde_json::Value> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&strata_cli(storage, &["blocks", "list", "--json"])).unwrap();
    rows.into_iter().filter(|r| r["state"] == "live").collect()
}

// ---------------------------------------------------------------------
// Comparison and diagnostics.

/// Describes spans of the dataset by ID, for failure messages.
struct SpanIndex<'a> {
    views: &'a [TraceView<'a>],
    by_id: HashMap<String, (usize, usize)>,
}

impl<'a> SpanIndex<'a> {
    fn new(views: &'a [TraceView<'a>]) -> Self {
        let mut by_id = HashMap::new();
        for (t, view) in views.iter().enumerate() {
            for (s, span) in view.spans.iter().enumerate() {
                by_id.insert(hex::encode(span.span_id), (t, s));
            }
        }
        Self { views, by_id }
    }

    fn describe(&self, id: &str) -> String {
        let Some((t, s)) = self.by_id.get(id) else {
            return format!("{id} (not in the dataset)");
        };
        let view = &self.views[*t];
        let span = view.spans[*s];
        let service = match view.data.resources[span.resource].attrs.first() {
            Some((_, trace_dataset::AttrValue::Str(x))) => x.clone(),
            _ => String::new(),
        };
        let parent = match (span.parent, view.parent[*s]) {
            (None, _) => "root".to_owned(),
            (Some(_), Some(p)) => format!("child of {}", hex::encode(view.spans[p].span_id)),
            (Some(p), None) => format!("orphan (parent {} missing)", hex::encode(p)),
        };
        let events: Vec<String> = span
            .events
            .iter()
            .map(|e| format!("{}@+{}ns {:?}", e.name, e.time - span.start, e.attrs))
            .collect();
        let links: Vec<String> = span
            .links
            .iter()
            .map(|l| {
                format!(
                    "{}/{} {:?}",
                    hex::encode(l.trace_id),
                    hex::encode(l.span_id),
                    l.attrs
                )
            })
            .collect();
        format!(
            "{id} {:?} svc={service} kind={} status={} duration={}ns {parent}{}{} attrs={:?}{}{}",
            span.name,
            span.kind,
            span.status_code,
            span.end - span.start,
            if view.numbered[*s] { "" } else { " unnumbered" },
            if span.late { " late" } else { "" },
            span.attrs,
            if events.is_empty() {
                String::new()
            } else {
                format!(" events={events:?}")
            },
            if links.is_empty() {
                String::new()
            } else {
                format!(" links={links:?}")
            },
        )
    }

    fn trace_note(&self, id: &str) -> String {
        let Some(view) = self.views.iter().find(|v| v.id_hex == id) else {
            return String::new();
        };
        let t = view.trace;
        format!(
            "{} spans{}{}{}",
            t.spans.len(),
            if view.root.is_none() { ", no root" } else { "" },
            if t.late_block.is_some() {
                ", split in two blocks"
            } else {
                ""
            },
            if view.numbered.iter().any(|n| !n) {
                ", has unnumbered spans"
            } else {
                ""
            }
        )
    }
}

/// Differences between the answer key and the server, empty when equal.
fn differences(
    want: &Answer,
    got: &Answer,
    index: &SpanIndex<'_>,
    spans_of: Option<&BTreeSet<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    for id in missing.iter().take(4) {
        let sample: Vec<String> = want[*id]
            .spans
            .iter()
            .take(3)
            .map(|s| index.describe(s))
            .collect();
        out.push(format!(
            "missing trace {id} ({}); expected spans e.g. {sample:#?}",
            index.trace_note(id)
        ));
    }
    for id in extra.iter().take(4) {
        let sample: Vec<String> = got[*id]
            .spans
            .iter()
            .take(3)
            .map(|s| index.describe(s))
            .collect();
        out.push(format!(
            "unexpected trace {id} ({}); returned spans e.g. {sample:#?}",
            index.trace_note(id)
        ));
    }
    if missing.len() + extra.len() > 8 {
        out.push(format!(
            "... {} missing and {} unexpected traces in all (want {}, got {})",
            missing.len(),
            extra.len(),
            want.len(),
            got.len()
        ));
    }
    let mut span_diffs = 0;
    for (id, w) in want {
        let Some(g) = got.get(id) else { continue };
        if spans_of.is_some_and(|only| !only.contains(id)) {
            continue;
        }
        if w.spans != g.spans {
            span_diffs += 1;
            if span_diffs <= 3 {
                let missing: Vec<String> = w
                    .spans
                    .difference(&g.spans)
                    .take(4)
                    .map(|s| index.describe(s))
                    .collect();
                let extra: Vec<String> = g
                    .spans
                    .difference(&w.spans)
                    .take(4)
                    .map(|s| index.describe(s))
                    .collect();
                out.push(format!(
                    "trace {id} ({}): spans missing {missing:#?}, unexpected {extra:#?}",
                    index.trace_note(id)
                ));
            }
        } else if w.sizes != g.sizes {
            span_diffs += 1;
            if span_diffs <= 3 {
                out.push(format!(
                    "trace {id} ({}): spanset sizes {:?}, expected {:?}",
                    index.trace_note(id),
                    g.sizes,
                    w.sizes
                ));
            }
        }
    }
    if span_diffs > 3 {
        out.push(format!(
            "... {span_diffs} traces with different spans in all"
        ));
    }
    out
}

/// Every field a query reads.
fn query_fields(q: &Query) -> Vec<FieldExpr> {
    fn pipeline(p: &Pipeline, out: &mut Vec<FieldExpr>) {
        for stage in &p.stages {
            match stage {
                Stage::Spanset(e) => spanset(e, out),
                Stage::ScalarFilter(f) => match &f.aggregate {
                    Aggregate::Count => {}
                    Aggregate::Avg(x)
                    | Aggregate::Min(x)
                    | Aggregate::Max(x)
                    | Aggregate::Sum(x) => {
                        x.visit_fields(&mut |f| out.push(f.clone()));
                    }
                },
                Stage::GroupBy(x) => x.visit_fields(&mut |f| out.push(f.clone())),
                Stage::Select(xs) => {
                    for x in xs {
                        x.visit_fields(&mut |f| out.push(f.clone()));
                    }
                }
                Stage::Coalesce => {}
            }
        }
    }
    fn spanset(e: &SpansetExpr, out: &mut Vec<FieldExpr>) {
        match e {
            SpansetExpr::Filter(f) => f.visit_fields(&mut |f| out.push(f.clone())),
            SpansetExpr::Op(_, l, r) => {
                spanset(l, out);
                spanset(r, out);
            }
            SpansetExpr::Pipeline(p) => pipeline(p, out),
        }
    }
    let mut out = Vec::new();
    pipeline(&q.pipeline, &mut out);
    out
}

/// Whether the documented fragment semantics predict the answer before
/// compaction: no trace-level facts (each fragment has its own) and no
/// `parent.` (a late span's parent is in another fragment).
fn fragment_predictable(q: &Query) -> bool {
    query_fields(q).iter().all(|f| match f {
        FieldExpr::Intrinsic(i) => !matches!(
            i,
            Intrinsic::TraceDuration | Intrinsic::RootName | Intrinsic::RootService
        ),
        FieldExpr::Attribute(a) => !a.parent,
        _ => true,
    })
}

// ---------------------------------------------------------------------
// Random queries from the grammar.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Float,
    Dur,
    Bool,
    Status,
    Kind,
    StrArr,
    IntArr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Span,
    Event,
    Link,
}

/// (text, type, where it is read, may hold a float or a string where an
/// int is usual).
const FIELDS: &[(&str, Ty, At, bool)] = &[
    ("name", Ty::Str, At::Span, false),
    ("span:name", Ty::Str, At::Span, false),
    ("statusMessage", Ty::Str, At::Span, false),
    ("span:id", Ty::Str, At::Span, false),
    ("span:parentID", Ty::Str, At::Span, false),
    ("trace:rootName", Ty::Str, At::Span, false),
    ("rootServiceName", Ty::Str, At::Span, false),
    ("trace:rootService", Ty::Str, At::Span, false),
    ("trace:id", Ty::Str, At::Span, false),
    ("instrumentation:name", Ty::Str, At::Span, false),
    ("instrumentation:version", Ty::Str, At::Span, false),
    ("resource.service.name", Ty::Str, At::Span, false),
    (".service.name", Ty::Str, At::Span, false),
    ("span.http.route", Ty::Str, At::Span, false),
    ("span.http.request.method", Ty::Str, At::Span, false),
    (".http.request.method", Ty::Str, At::Span, false),
    ("span.db.system", Ty::Str, At::Span, false),
    ("span.db.statement", Ty::Str, At::Span, false),
    ("span.messaging.system", Ty::Str, At::Span, false),
    ("span.user.tier", Ty::Str, At::Span, false),
    (".tier", Ty::Str, At::Span, false),
    ("resource.tier", Ty::Str, At::Span, false),
    ("resource.k8s.pod.name", Ty::Str, At::Span, false),
    ("resource.deployment.environment", Ty::Str, At::Span, false),
    ("span.\"a b\"", Ty::Str, At::Span, false),
    (
        "instrumentation.otel.library.flavor",
        Ty::Str,
        At::Span,
        false,
    ),
    ("parent.http.route", Ty::Str, At::Span, false),
    ("parent.resource.service.name", Ty::Str, At::Span, false),
    ("parent.span.http.request.method", Ty::Str, At::Span, false),
    ("event:name", Ty::Str, At::Event, false),
    ("event.exception.message", Ty::Str, At::Event, false),
    ("event.exception.type", Ty::Str, At::Event, false),
    ("event.key", Ty::Str, At::Event, false),
    ("link:traceID", Ty::Str, At::Link, false),
    ("link:spanID", Ty::Str, At::Link, false),
    ("link.link.kind", Ty::Str, At::Link, false),
    ("span.http.response.status_code", Ty::Int, At::Span, false),
    (".http.response.status_code", Ty::Int, At::Span, false),
    (
        "parent.span.http.response.status_code",
        Ty::Int,
        At::Span,
        false,
    ),
    ("span.retry.count", Ty::Int, At::Span, true),
    ("span:childCount", Ty::Int, At::Span, false),
    ("span.neg.value", Ty::Int, At::Span, false),
    ("resource.host.cores", Ty::Int, At::Span, false),
    ("span.server.port", Ty::Int, At::Span, true),
    ("event.attempt", Ty::Int, At::Event, false),
    ("link.weight", Ty::Int, At::Link, false),
    ("span.payload.ratio", Ty::Float, At::Span, true),
    ("span.neg.float", Ty::Float, At::Span, true),
    ("duration", Ty::Dur, At::Span, false),
    ("span:duration", Ty::Dur, At::Span, false),
    ("trace:duration", Ty::Dur, At::Span, false),
    ("traceDuration", Ty::Dur, At::Span, false),
    ("event:timeSinceStart", Ty::Dur, At::Event, false),
    ("span.cache.hit", Ty::Bool, At::Span, false),
    ("resource.canary", Ty::Bool, At::Span, false),
    ("span.late.arrival", Ty::Bool, At::Span, false),
    ("status", Ty::Status, At::Span, false),
    ("span:status", Ty::Status, At::Span, false),
    ("kind", Ty::Kind, At::Span, false),
    ("span:kind", Ty::Kind, At::Span, false),
    ("nestedSetLeft", Ty::Int, At::Span, false),
    ("nestedSetRight", Ty::Int, At::Span, false),
    ("nestedSetParent", Ty::Int, At::Span, false),
    ("span.feature.flags", Ty::StrArr, At::Span, false),
    ("span.item.ids", Ty::IntArr, At::Span, false),
];

/// Pairs of fields compared with each other.
const PAIRS: &[(&str, &str, bool)] = &[
    (
        "span.http.response.status_code",
        "parent.span.http.response.status_code",
        true,
    ),
    ("span.retry.count", "span:childCount", true),
    ("duration", "trace:duration", true),
    ("span.neg.value", "span.neg.float", true),
    ("span.payload.ratio", "span.neg.float", true),
    ("event:timeSinceStart", "duration", true),
    (
        "resource.service.name",
        "parent.resource.service.name",
        false,
    ),
    ("span.http.route", "parent.http.route", false),
    ("name", "trace:rootName", false),
    ("span.http.request.method", ".http.request.method", false),
];

/// Fields for aggregates and `by()`.
const AGGREGATED: &[&str] = &[
    "duration",
    "span.http.response.status_code",
    "span.retry.count",
    "span.payload.ratio",
    "span.neg.value",
    "span.neg.float",
    "span:childCount",
    "trace:duration",
];
const GROUPED: &[&str] = &[
    "resource.service.name",
    "name",
    "status",
    "kind",
    "span.http.route",
    "span.cache.hit",
    "span:childCount",
    "resource.deployment.environment",
    "span.retry.count",
    "instrumentation:name",
    "trace:rootService",
    "span.user.tier",
];

#[derive(Debug, Clone)]
struct Field {
    expr: FieldExpr,
    ty: Ty,
    at: At,
    mixed: bool,
}

fn field(text: &str) -> FieldExpr {
    parse_identifier(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

struct QueryGen<'a> {
    rng: StdRng,
    views: &'a [TraceView<'a>],
    fields: Vec<Field>,
    with_events: Vec<(usize, usize)>,
    with_links: Vec<(usize, usize)>,
}

fn bin(op: BinaryOp, l: FieldExpr, r: FieldExpr) -> FieldExpr {
    FieldExpr::binary(op, l, r)
}

fn lit(s: Static) -> FieldExpr {
    FieldExpr::Static(s)
}

const STATUSES: [Status; 3] = [Status::Unset, Status::Ok, Status::Error];

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl<'a> QueryGen<'a> {
    fn new(seed: u64, views: &'a [TraceView<'a>]) -> Self {
        let mut with_events = Vec::new();
        let mut with_links = Vec::new();
        for (t, view) in views.iter().enumerate() {
            for (s, span) in view.spans.iter().enumerate() {
                if !span.events.is_empty() {
                    with_events.push((t, s));
                }
                if !span.links.is_empty() {
                    with_links.push((t, s));
                }
            }
        }
        Self {
            rng: StdRng::seed_from_u64(seed),
            views,
            fields: FIELDS
                .iter()
                .map(|(text, ty, at, mixed)| Field {
                    expr: field(text),
                    ty: *ty,
                    at: *at,
                    mixed: *mixed,
                })
                .collect(),
            with_events,
            with_links,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())].clone()
    }

    fn field_of(&mut self, pred: impl Fn(&Field) -> bool) -> Field {
        let candidates: Vec<Field> = self.fields.iter().filter(|f| pred(f)).cloned().collect();
        self.pick(&candidates)
    }

    /// The value of `f` on a random span (event, link) of the dataset,
    /// preferring non-nil values.
    fn sample(&mut self, f: &FieldExpr, at: At) -> V {
        for _ in 0..30 {
            let (t, s) = match at {
                At::Span => {
                    let t = self.rng.random_range(0..self.views.len());
                    (t, self.rng.random_range(0..self.views[t].spans.len()))
                }
                At::Event => self.with_events[self.rng.random_range(0..self.with_events.len())],
                At::Link => self.with_links[self.rng.random_range(0..self.with_links.len())],
            };
            let views = self.views;
            let view = &views[t];
            let span = view.spans[s];
            let event = (at == At::Event)
                .then(|| &span.events[self.rng.random_range(0..span.events.len())]);
            let link =
                (at == At::Link).then(|| &span.links[self.rng.random_range(0..span.links.len())]);
            let v = oracle::value_at(f, view, s, event, link);
            if v != V::Nil {
                return v;
            }
        }
        V::Nil
    }

    fn literal(&mut self, v: &V, ty: Ty) -> Static {
        match v {
            V::Str(x) => match self.rng.random_range(0..12) {
                0 => Static::String(x.chars().take(self.rng.random_range(0..=4)).collect()),
                1 => Static::String("zz-none".into()),
                _ => Static::String(x.clone()),
            },
            V::Int(x) => match self.rng.random_range(0..12) {
                0 => Static::Float(*x as f64),
                1 => Static::Float(*x as f64 + 0.5),
                2 | 3 => Static::Int(x.saturating_add(self.rng.random_range(-2..=2))),
                _ => Static::Int(*x),
            },
            V::Float(x) => match self.rng.random_range(0..10) {
                0 => Static::Int(x.round() as i64),
                1 => Static::Float(x + 0.25),
                _ => Static::Float(*x),
            },
            V::Dur(x) => match self.rng.random_range(0..10) {
                0 => Static::Int(*x),
                1..=3 => Static::Duration(x / MS as i64 * MS as i64),
                _ => Static::Duration(*x),
            },
            V::Bool(b) => Static::Bool(*b != self.chance(0.3)),
            V::Status(_) => Static::Status(self.pick(&STATUSES)),
            V::Kind(_) => Static::Kind(self.pick(&Kind::ALL)),
            V::Arr(xs) => {
                let x = self.pick(xs);
                self.literal(&x, ty)
            }
            V::Nil => match ty {
                Ty::Str | Ty::StrArr => Static::String("beta".into()),
                Ty::Int | Ty::IntArr => Static::Int(7),
                Ty::Float => Static::Float(0.5),
                Ty::Dur => Static::Duration(10 * MS as i64),
                Ty::Bool => Static::Bool(true),
                Ty::Status => Static::Status(Status::Error),
                Ty::Kind => Static::Kind(Kind::Server),
            },
        }
    }

    fn regex(&mut self, v: &V) -> String {
        let text = match v {
            V::Str(x) => x.clone(),
            V::Arr(xs) => match self.pick(xs) {
                V::Str(x) => x,
                _ => "beta".into(),
            },
            _ => "GET".into(),
        };
        let chars: Vec<char> = text.chars().collect();
        let k = self.rng.random_range(0..=chars.len().min(5));
        let head: String = chars[..k].iter().collect();
        let tail: String = chars[chars.len() - k..].iter().collect();
        match self.rng.random_range(0..7) {
            0 => regex_escape(&text),
            1 | 2 => format!("{}.*", regex_escape(&head)),
            3 => format!(".*{}", regex_escape(&tail)),
            4 => format!(".*{}.*", regex_escape(&tail)),
            5 => format!("({}|{}.+)", regex_escape(&text), regex_escape(&head)),
            _ => format!("(?i){}.*", regex_escape(&head.to_lowercase())),
        }
    }

    fn comparison_op(&mut self, ty: Ty) -> BinaryOp {
        use BinaryOp::*;
        match ty {
            Ty::Str => self.pick(&[Eq, Eq, Neq, Regex, Regex, NotRegex, Lt, Gte]),
            Ty::StrArr => self.pick(&[Eq, Neq, Regex, NotRegex]),
            Ty::Bool | Ty::Status | Ty::Kind => self.pick(&[Eq, Eq, Neq]),
            Ty::Int | Ty::Float | Ty::Dur | Ty::IntArr => {
                self.pick(&[Eq, Neq, Lt, Lte, Gt, Gte, Gt, Lt])
            }
        }
    }

    /// `field op literal` (or `literal op field`).
    fn comparison(&mut self) -> FieldExpr {
        let f = self.field_of(|_| true);
        let v = self.sample(&f.expr, f.at);
        let op = self.comparison_op(f.ty);
        if matches!(op, BinaryOp::Regex | BinaryOp::NotRegex) {
            let pattern = self.regex(&v);
            return bin(op, f.expr, lit(Static::String(pattern)));
        }
        let value = if f.mixed && f.ty == Ty::Int && self.chance(0.2) {
            Static::String("8080".into())
        } else {
            self.literal(&v, f.ty)
        };
        if self.chance(0.1) {
            let swapped = match op {
                BinaryOp::Lt => BinaryOp::Gt,
                BinaryOp::Lte => BinaryOp::Gte,
                BinaryOp::Gt => BinaryOp::Lt,
                BinaryOp::Gte => BinaryOp::Lte,
                other => other,
            };
            return bin(swapped, lit(value), f.expr);
        }
        bin(op, f.expr, lit(value))
    }

    /// `field arith literal op literal`.
    fn arithmetic(&mut self) -> FieldExpr {
        use BinaryOp::*;
        let f = self.field_of(|f| matches!(f.ty, Ty::Int | Ty::Float | Ty::Dur));
        let (op, operand) = match f.ty {
            Ty::Int => {
                let divisors: &[i64] = if f.mixed {
                    &[1, 2, 3, 7, 100]
                } else {
                    &[0, 1, 2, 3, 7, 100]
                };
                match self.rng.random_range(0..6) {
                    0 => (Add, Static::Int(self.rng.random_range(-3..=5))),
                    1 => (Sub, Static::Int(self.rng.random_range(-3..=5))),
                    2 => (Mul, Static::Int(self.pick(&[-1, 2, 3]))),
                    3 => (Div, Static::Int(self.pick(divisors))),
                    4 => (Mod, Static::Int(self.pick(divisors))),
                    _ => (Pow, Static::Int(self.rng.random_range(0..=2))),
                }
            }
            Ty::Float => self.pick(&[
                (Add, Static::Float(0.5)),
                (Sub, Static::Float(1.5)),
                (Mul, Static::Float(2.0)),
                (Mul, Static::Int(4)),
                (Div, Static::Float(2.0)),
                (Pow, Static::Int(2)),
            ]),
            _ => self.pick(&[
                (Add, Static::Duration(100 * MS as i64)),
                (Sub, Static::Duration(1_000 * MS as i64)),
                (Mul, Static::Int(2)),
                (Mul, Static::Int(3)),
                (Div, Static::Int(10)),
            ]),
        };
        let expr = if matches!(op, Add | Mul) && self.chance(0.2) {
            bin(op, lit(operand.clone()), f.expr.clone())
        } else {
            bin(op, f.expr.clone(), lit(operand.clone()))
        };
        let sample = self.sample(&f.expr, f.at);
        let result = oracle::arith(op, &sample, &oracle::static_v(&operand));
        let value = match result {
            V::Nil => Static::Int(1),
            r => self.literal(&r, f.ty),
        };
        let cmp = self.comparison_op(Ty::Int);
        bin(cmp, expr, lit(value))
    }

    fn pair(&mut self) -> FieldExpr {
        use BinaryOp::*;
        let (a, b, numeric) = self.pick(PAIRS);
        let op = if numeric {
            self.pick(&[Eq, Neq, Lt, Lte, Gt, Gte])
        } else {
            self.pick(&[Eq, Neq, Neq, Lt, Gt])
        };
        bin(op, field(a), field(b))
    }

    fn exists(&mut self) -> FieldExpr {
        let f = self.field_of(|f| {
            matches!(f.expr, FieldExpr::Attribute(_))
                || matches!(
                    f.expr,
                    FieldExpr::Intrinsic(
                        Intrinsic::EventName | Intrinsic::LinkTraceId | Intrinsic::LinkSpanId
                    )
                )
        });
        let is_service = matches!(
            &f.expr,
            FieldExpr::Attribute(Attribute { scope: AttributeScope::Resource, parent: false, name })
                if name == "service.name"
        );
        let exists = matches!(f.expr, FieldExpr::Intrinsic(_)) || is_service || self.chance(0.5);
        FieldExpr::Exists(Box::new(f.expr), exists)
    }

    /// A boolean leaf.
    fn leaf(&mut self) -> FieldExpr {
        match self.rng.random_range(0..100) {
            0..52 => self.comparison(),
            52..64 => self.arithmetic(),
            64..76 => self.exists(),
            76..84 => self.pair(),
            84..90 => {
                let f = self.field_of(|f| f.ty == Ty::Bool);
                if self.chance(0.3) {
                    FieldExpr::Unary(UnaryOp::Not, Box::new(f.expr))
                } else {
                    f.expr
                }
            }
            90..93 => {
                if self.chance(0.5) {
                    lit(Static::Bool(self.chance(0.7)))
                } else {
                    let (a, b) = (self.rng.random_range(0..3), self.rng.random_range(0..3));
                    bin(BinaryOp::Lte, lit(Static::Int(a)), lit(Static::Int(b)))
                }
            }
            93..96 => {
                if self.chance(0.5) {
                    bin(
                        BinaryOp::Lt,
                        field("nestedSetLeft"),
                        field("nestedSetRight"),
                    )
                } else {
                    bin(BinaryOp::Gt, field("nestedSetParent"), lit(Static::Int(0)))
                }
            }
            _ => {
                let f = self.field_of(|f| matches!(f.ty, Ty::Int | Ty::Float) && f.at == At::Span);
                let v = self.sample(&f.expr, f.at);
                let negated = match v {
                    V::Int(x) => V::Int(-x),
                    V::Float(x) => V::Float(-x),
                    other => other,
                };
                let value = self.literal(&negated, f.ty);
                let op = self.comparison_op(Ty::Int);
                bin(
                    op,
                    FieldExpr::Unary(UnaryOp::Neg, Box::new(f.expr)),
                    lit(value),
                )
            }
        }
    }

    /// A boolean expression: leaves joined by `&&`/`||`, negated with `!`.
    fn boolean(&mut self, depth: usize) -> FieldExpr {
        if depth == 0 || self.chance(0.5) {
            return self.leaf();
        }
        match self.rng.random_range(0..10) {
            0..7 => {
                let op = if self.chance(0.5) {
                    BinaryOp::And
                } else {
                    BinaryOp::Or
                };
                bin(op, self.boolean(depth - 1), self.boolean(depth - 1))
            }
            _ => FieldExpr::Unary(UnaryOp::Not, Box::new(self.boolean(depth - 1))),
        }
    }

    /// A broad filter, so that structural operators find pairs.
    fn broad(&mut self) -> FieldExpr {
        match self.rng.random_range(0..5) {
            0 => lit(Static::Bool(true)),
            1 => bin(
                BinaryOp::Eq,
                field("kind"),
                lit(Static::Kind(self.pick(&Kind::ALL))),
            ),
            2 => bin(
                self.pick(&[BinaryOp::Eq, BinaryOp::Neq]),
                field("status"),
                lit(Static::Status(self.pick(&STATUSES))),
            ),
            3 => bin(
                BinaryOp::Eq,
                field("resource.service.name"),
                lit(Static::String(
                    self.pick(&trace_dataset::SERVICES).to_owned(),
                )),
            ),
            _ => self.leaf(),
        }
    }

    fn spanset(&mut self, depth: usize) -> SpansetExpr {
        let r = self.rng.random_range(0..100);
        if depth == 0 || r < 30 {
            return SpansetExpr::Filter(self.boolean(2));
        }
        if r < 50 {
            return SpansetExpr::Filter(self.broad());
        }
        if r < 92 {
            use SpansetOp::*;
            let op = self.pick(&[
                And,
                And,
                And,
                Or,
                Or,
                Or,
                Child,
                Parent,
                Descendant,
                Ancestor,
                Sibling,
                NotChild,
                NotParent,
                NotDescendant,
                NotAncestor,
                NotSibling,
                UnionChild,
                UnionParent,
                UnionDescendant,
                UnionAncestor,
                UnionSibling,
            ]);
            let l = self.spanset(depth - 1);
            let r = self.spanset(depth - 1);
            return SpansetExpr::Op(op, Box::new(l), Box::new(r));
        }
        let mut stages = vec![Stage::Spanset(SpansetExpr::Filter(self.broad()))];
        if self.chance(0.4) {
            stages.push(Stage::GroupBy(field(self.pick(GROUPED))));
        }
        stages.push(self.scalar_filter());
        SpansetExpr::Pipeline(Box::new(Pipeline { stages }))
    }

    fn scalar_filter(&mut self) -> Stage {
        use BinaryOp::*;
        let op = self.pick(&[Eq, Neq, Lt, Lte, Gt, Gte, Gt, Gt]);
        if self.chance(0.4) {
            let n = self.pick(&[0, 1, 1, 2, 2, 3, 4, 6, 10]);
            return Stage::ScalarFilter(ScalarFilter {
                aggregate: Aggregate::Count,
                op,
                value: Static::Int(n),
            });
        }
        let text = self.pick(AGGREGATED);
        let f = field(text);
        let v = self.sample(&f, At::Span);
        let aggregate = match self.rng.random_range(0..4) {
            0 => Aggregate::Avg(f),
            1 => Aggregate::Min(f),
            2 => Aggregate::Max(f),
            _ => Aggregate::Sum(f),
        };
        let scaled = match (&aggregate, v) {
            (Aggregate::Sum(_), V::Int(x)) => V::Int(x * self.rng.random_range(1..=4)),
            (Aggregate::Sum(_), V::Dur(x)) => V::Dur(x * self.rng.random_range(1..=4)),
            (Aggregate::Sum(_), V::Float(x)) => {
                V::Float(x * f64::from(self.rng.random_range(1..=4)))
            }
            (_, v) => v,
        };
        let value = match self.literal(&scaled, Ty::Int) {
            s @ (Static::Int(_) | Static::Float(_) | Static::Duration(_)) => s,
            _ => Static::Int(1),
        };
        Stage::ScalarFilter(ScalarFilter {
            aggregate,
            op,
            value,
        })
    }

    fn query(&mut self) -> Query {
        let mut stages = vec![Stage::Spanset(self.spanset(2))];
        for _ in 0..self.rng.random_range(0..=2) {
            let stage = match self.rng.random_range(0..100) {
                0..30 => self.scalar_filter(),
                30..55 => Stage::GroupBy(field(self.pick(GROUPED))),
                55..70 => Stage::Coalesce,
                70..85 => {
                    let n = self.rng.random_range(1..=3);
                    Stage::Select(
                        (0..n)
                            .map(|_| {
                                let f = self.field_of(|f| f.at == At::Span);
                                f.expr
                            })
                            .collect(),
                    )
                }
                _ => Stage::Spanset(SpansetExpr::Filter(self.broad())),
            };
            stages.push(stage);
        }
        let hints = if self.chance(0.1) {
            vec![Hint {
                name: "most_recent".into(),
                value: Static::Bool(true),
            }]
        } else {
            Vec::new()
        };
        Query {
            pipeline: Pipeline { stages },
            metrics: None,
            hints,
        }
    }
}

// ---------------------------------------------------------------------

#[test]
fn traceql_answers_regex_matcher() {
    assert!(regex_match("GET .*", "GET /api"));
    assert!(!regex_match("GET", "GET /api"));
    assert!(regex_match(".*items.*", "SELECT *\nFROM items"));
    assert!(regex_match("(a|b)+c?", "abba"));
    assert!(regex_match("[^x]{2,3}", "ab"));
    assert!(!regex_match("[^x]{2,3}", "axb"));
    assert!(regex_match("(?i)get.*", "GET /"));
    assert!(regex_match("/api/items/\\{id\\}", "/api/items/{id}"));
    assert!(regex_match("\\d+ms", "100ms"));
    assert!(regex_match("", ""));
    assert!(!regex_match("", "a"));
}

/// The expected answers under one set of semantics: the documented one,
/// or one with known engine deviations (to say which explains a mismatch).
struct AnswerKey<'a> {
    name: &'static str,
    views: Vec<TraceView<'a>>,
    /// Each trace as its blocks hold it before compaction.
    fragments: Vec<Vec<TraceView<'a>>>,
}

impl<'a> AnswerKey<'a> {
    fn new(data: &'a Dataset, name: &'static str, deviations: Deviations) -> Self {
        Self {
            name,
            views: data
                .traces
                .iter()
                .map(|t| TraceView::new(data, t, None, deviations))
                .collect(),
            fragments: data
                .traces
                .iter()
                .map(|t| {
                    t.fragments()
                        .iter()
                        .map(|f| TraceView::new(data, t, Some(f), deviations))
                        .collect()
                })
                .collect(),
        }
    }

    /// Traces found before compaction: fragments are searched one at a
    /// time, a trace is found when one of its fragments matches.
    fn predicted(&self, q: &Query) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for fragments in &self.fragments {
            for f in fragments {
                if !oracle::eval_query(q, f)?.is_empty() {
                    out.insert(f.id_hex.clone());
                }
            }
        }
        Ok(out)
    }

    /// Differences after compaction: everything exact.
    fn after(
        &self,
        q: &Query,
        found: &Found,
        index: &SpanIndex<'_>,
    ) -> Result<Vec<String>, String> {
        Ok(differences(
            &oracle::expected(q, &self.views)?,
            &found.answer,
            index,
            None,
        ))
    }

    /// Differences before compaction: traces in one block exactly, split
    /// traces by ID (their spansets are those of one fragment).
    fn before(
        &self,
        q: &Query,
        found: &Found,
        index: &SpanIndex<'_>,
    ) -> Result<Vec<String>, String> {
        let whole: BTreeSet<String> = self
            .views
            .iter()
            .filter(|v| v.trace.late_block.is_none())
            .map(|v| v.id_hex.clone())
            .collect();
        let want_ids = self.predicted(q)?;
        let mut want: Answer = oracle::expected(q, &self.views)?
            .into_iter()
            .filter(|(id, _)| whole.contains(id))
            .collect();
        for id in want_ids.difference(&whole) {
            want.insert(
                id.clone(),
                found.answer.get(id).cloned().unwrap_or_default(),
            );
        }
        Ok(differences(&want, &found.answer, index, Some(&whole)))
    }

    /// Differences between this key and the server's answer (or error).
    fn compare(
        &self,
        q: &Query,
        found: &Result<Found, String>,
        index: &SpanIndex<'_>,
        before_compaction: bool,
    ) -> Vec<String> {
        let Ok(found) = found else {
            // Then the key must fail the query the same way.
            let error = found.as_ref().err().cloned().unwrap_or_default();
            let want = if before_compaction {
                self.predicted(q).map(|_| ())
            } else {
                oracle::expected(q, &self.views).map(|_| ())
            };
            return match want {
                Err(why) if error.contains(&why) => Vec::new(),
                Err(why) => vec![format!("error: {error}; expected the error {why:?}")],
                Ok(()) => vec![format!("error: {error}")],
            };
        };
        let diffs = if before_compaction {
            self.before(q, found, index)
        } else {
            self.after(q, found, index)
        };
        match diffs {
            Ok(mut diffs) => {
                diffs.extend(found.problems.iter().cloned());
                diffs
            }
            Err(why) => vec![format!(
                "answered ({} traces), expected the error {why:?}",
                found.answer.len()
            )],
        }
    }
}

/// Runs `queries` and compares each with `keys[0]`; a mismatch is
/// reported with the known deviations (`keys[1..]`) that explain it.
#[allow(clippy::too_many_arguments)]
async fn check_all(
    harness: &Harness,
    queries: &[(String, Query)],
    keys: &[AnswerKey<'_>],
    index: &SpanIndex<'_>,
    before_compaction: bool,
    label: &dyn Fn(usize, &str) -> String,
    failures: &mut Vec<String>,
    explained: &mut BTreeMap<&'static str, usize>,
) -> usize {
    let texts: Vec<String> = queries.iter().map(|(t, _)| t.clone()).collect();
    let answers = harness.search_all(&texts).await;
    let mut count = 0;
    for (i, ((text, q), found)) in queries.iter().zip(answers).enumerate() {
        let diffs = keys[0].compare(q, &found, index, before_compaction);
        if diffs.is_empty() {
            continue;
        }
        count += 1;
        let by: Vec<&'static str> = keys[1..]
            .iter()
            .filter(|k| k.compare(q, &found, index, before_compaction).is_empty())
            .map(|k| k.name)
            .collect();
        let note = match by.first() {
            Some(name) => {
                *explained.entry(name).or_default() += 1;
                format!("  [explained by a known deviation: {name}]\n")
            }
            None => {
                *explained.entry("unexplained").or_default() += 1;
                String::new()
            }
        };
        failures.push(format!(
            "{}\n{note}  {}",
            label(i, text),
            diffs.join("\n  ")
        ));
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traceql_search_matches_the_answer_key() {
    let began = Instant::now();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let data = trace_dataset::generate(DATA_SEED, TRACES, BLOCKS, now);
    let mut keys = vec![AnswerKey::new(
        &data,
        "docs/traceql.md",
        Deviations::default(),
    )];
    for (name, deviations) in Deviations::each() {
        keys.push(AnswerKey::new(&data, name, deviations));
    }
    let views = &keys[0].views;
    let index = SpanIndex::new(views);

    // The dataset has the structure the suite relies on.
    let late_ids: BTreeSet<String> = views
        .iter()
        .filter(|v| v.trace.late_block.is_some())
        .map(|v| v.id_hex.clone())
        .collect();
    let roots = |v: &TraceView<'_>| v.spans.iter().filter(|s| s.parent.is_none()).count();
    assert!(late_ids.len() >= 15, "{} split traces", late_ids.len());
    assert!(views.iter().filter(|v| roots(v) >= 2).count() >= 5);
    assert!(views.iter().filter(|v| v.root.is_none()).count() >= 2);
    assert!(
        views
            .iter()
            .filter(|v| v.root.is_some() && v.numbered.iter().any(|n| !n))
            .count()
            >= 5
    );
    assert!(views.iter().filter(|v| v.id_hex.len() < 32).count() >= 3);
    let spans: Vec<_> = data.traces.iter().flat_map(|t| &t.spans).collect();
    assert!(spans.iter().filter(|s| !s.events.is_empty()).count() * 20 > spans.len());
    assert!(spans.iter().filter(|s| !s.links.is_empty()).count() >= 20);
    assert!(
        spans
            .iter()
            .all(|s| s.start > now - 30 * 60_000 * MS && s.end < now)
    );
    assert!(data.traces.iter().all(|t| t.spans.len() <= 100));
    println!(
        "dataset: {} traces, {} spans, {} split traces, {BLOCKS} blocks",
        data.traces.len(),
        data.span_count(),
        late_ids.len()
    );

    let storage = TestStorage::local();
    let store = storage.store();
    let tenant = TenantId::default_tenant();
    data.write(&store, &tenant).await;
    assert_eq!(live_blocks(&storage).len(), BLOCKS);
    let querier = Strata::start(
        &storage.url,
        storage.dir.path(),
        Options {
            args: ["--target", "querier", "--blocklist-poll", "1s"]
                .map(String::from)
                .to_vec(),
            ..Options::default()
        },
    );
    let now_s = now / 1_000_000_000;
    let harness = Harness {
        client: http_client(),
        http: querier.http.clone(),
        start: now_s - 3600,
        end: now_s + 3600,
    };

    // The fixed queries parse, and the answer key is not vacuous.
    let mut fixed: Vec<(String, Query)> = Vec::new();
    let mut vacuous = Vec::new();
    let mut matching = 0;
    for (text, expect) in fixed_queries(&data) {
        let q = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let want = oracle::expected(&q, views);
        let found = want.as_ref().is_ok_and(|w| !w.is_empty());
        matching += usize::from(found);
        match expect {
            Expect::Some if !found => vacuous.push(format!("nothing for {text}")),
            Expect::None if want != Ok(Answer::new()) => {
                vacuous.push(format!("traces for {text}"));
            }
            Expect::Error if want.is_ok() => vacuous.push(format!("no error for {text}")),
            _ => {}
        }
        fixed.push((text, q));
    }
    assert!(vacuous.is_empty(), "the answer key finds {vacuous:#?}");
    let empty = fixed.len() - matching;
    assert!(fixed.len() >= 60);
    assert!(
        matching * 10 >= fixed.len() * 8,
        "{matching} of {}",
        fixed.len()
    );
    assert!(empty >= 5);
    println!(
        "fixed queries: {} ({matching} matching, {empty} matching nothing)",
        fixed.len()
    );

    let seed = std::env::var("STRATA_TRACEQL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_PROPERTY_SEED);
    let mut failures: Vec<String> = Vec::new();
    let mut explained: BTreeMap<&'static str, usize> = BTreeMap::new();

    // ---- Before compaction: fragments are searched one at a time.
    // Conditions in one fragment find the trace; conditions that need
    // both fragments do not, until compaction joins them.
    let split: Vec<usize> = (0..data.traces.len())
        .filter(|i| data.traces[*i].late_block.is_some())
        .collect();
    let span_of = |i: usize, late: bool| {
        let t = &data.traces[i];
        hex::encode(t.spans.iter().find(|s| s.late == late).unwrap().span_id)
    };
    let mut one_fragment: Vec<String> = vec!["{ span.late.arrival = true }".into()];
    for i in split.iter().take(4) {
        one_fragment.push(format!(r#"{{ span:id = "{}" }}"#, span_of(*i, true)));
        one_fragment.push(format!(r#"{{ span:id = "{}" }}"#, span_of(*i, false)));
        one_fragment.push(format!(r#"{{ trace:id = "{}" }}"#, views[*i].id_hex));
    }
    let both_fragments: Vec<String> = vec![
        format!(r#"{{ span.late.arrival = true }} && {{ span:parentID = "{ROOT_PARENT_ID}" }}"#),
        format!(r#"{{ span:parentID = "{ROOT_PARENT_ID}" }} >> {{ span.late.arrival = true }}"#),
        "{ span.late.arrival = nil } > { span.late.arrival = true }".into(),
        "{ span.late.arrival = true } &< { }".into(),
        "({ span.late.arrival = true } | count() > 0) && ({ span.late.arrival = nil } | count() > 0)"
            .into(),
    ];
    for text in &one_fragment {
        let want = keys[0].predicted(&parse(text).unwrap()).unwrap();
        assert!(
            !want.is_empty() && want.iter().all(|id| late_ids.contains(id)),
            "{text}"
        );
    }
    for text in &both_fragments {
        let q = parse(text).unwrap();
        assert!(keys[0].predicted(&q).unwrap().is_empty(), "{text}");
        let whole: BTreeSet<String> = oracle::expected(&q, views).unwrap().into_keys().collect();
        assert_eq!(whole, late_ids, "{text}");
    }
    // Then fixed queries whose answer the fragment rule predicts (no
    // trace-level facts, no `parent.`), and random ones.
    let mut pre: Vec<(String, Query)> = one_fragment
        .iter()
        .chain(&both_fragments)
        .map(|t| (t.clone(), parse(t).unwrap()))
        // Every other fixed query, to keep the run short.
        .chain(
            fixed
                .iter()
                .step_by(2)
                .filter(|(_, q)| fragment_predictable(q))
                .cloned(),
        )
        .collect();
    let fixed_pre = pre.len();
    let mut generator = QueryGen::new(seed ^ 0x5eed, views);
    while pre.len() < fixed_pre + PRE_COMPACTION_CASES {
        let text = display::query(&generator.query());
        if let Ok(q) = parse(&text)
            && fragment_predictable(&q)
        {
            pre.push((text, q));
        }
    }
    let pre_failures = check_all(
        &harness,
        &pre,
        &keys,
        &index,
        true,
        &|i, text| {
            if i < fixed_pre {
                format!("before compaction: {text}")
            } else {
                format!(
                    "before compaction, random query (STRATA_TRACEQL_SEED={seed}, case {}): {text}",
                    i - fixed_pre
                )
            }
        },
        &mut failures,
        &mut explained,
    )
    .await;
    println!(
        "before compaction: {} queries ({fixed_pre} fixed), {pre_failures} disagreements ({:.1}s)",
        pre.len(),
        began.elapsed().as_secs_f64()
    );

    // ---- Compaction into one block.
    for _ in 0..5 {
        if live_blocks(&storage).len() == 1 {
            break;
        }
        strata_cli(
            &storage,
            &[
                "compact",
                "--once",
                "--json",
                "--compaction-window",
                "10000h",
                "--compaction-max-input-blocks",
                "32",
            ],
        );
    }
    let live = live_blocks(&storage);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(
        live[0]["spans"].as_u64().unwrap() as usize,
        data.span_count()
    );
    // The querier has polled once the joined fragments answer together.
    let probe = &both_fragments[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = harness.search(probe).await.unwrap();
        if found.answer.keys().cloned().collect::<BTreeSet<_>>() == late_ids {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{probe}: after compaction still {} traces, want {}",
            found.answer.len(),
            late_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Debugging aid: `STRATA_TRACEQL_PROBE=<file>` runs only the queries
    // of that file (one per line) against the compacted store.
    if let Ok(path) = std::env::var("STRATA_TRACEQL_PROBE") {
        let text = std::fs::read_to_string(path).unwrap();
        for q in text.lines().filter(|l| !l.trim().is_empty()) {
            let want = match parse(q) {
                Ok(parsed) => match oracle::expected(&parsed, views) {
                    Ok(want) => want,
                    Err(e) => {
                        println!("PROBE {q}\n  the answer key fails it: {e}");
                        Answer::new()
                    }
                },
                Err(e) => {
                    println!("PROBE {q}\n  parse error: {e}");
                    continue;
                }
            };
            match harness.search(q).await {
                Ok(found) => {
                    let diffs = differences(&want, &found.answer, &index, None);
                    println!(
                        "PROBE {q}\n  want {} traces / {} spans, got {} / {}{}\n  {}",
                        want.len(),
                        want.values().map(|a| a.spans.len()).sum::<usize>(),
                        found.answer.len(),
                        found.answer.values().map(|a| a.spans.len()).sum::<usize>(),
                        if diffs.is_empty() { " EQUAL" } else { "" },
                        diffs.join("\n  ")
                    );
                }
                Err(e) => println!("PROBE {q}\n  error {e}"),
            }
        }
        return;
    }

    // ---- After compaction: exact answers, and the root of each trace.
    let post: Vec<(String, Query)> = fixed
        .iter()
        .cloned()
        .chain(
            one_fragment
                .iter()
                .chain(&both_fragments)
                .map(|t| (t.clone(), parse(t).unwrap())),
        )
        .collect();
    let fixed_failures = check_all(
        &harness,
        &post,
        &keys,
        &index,
        false,
        &|_, text| format!("after compaction: {text}"),
        &mut failures,
        &mut explained,
    )
    .await;
    let everything = harness.search("{ }").await.unwrap();
    for view in views {
        let Some((service, name)) = everything.roots.get(&view.id_hex) else {
            continue;
        };
        let want = match view.root {
            Some(r) => (
                match view.data.resources[view.spans[r].resource].attrs.first() {
                    Some((_, trace_dataset::AttrValue::Str(x))) => x.clone(),
                    _ => String::new(),
                },
                view.spans[r].name.clone(),
            ),
            // Tempo's placeholder for a trace whose root has not arrived.
            None => ("<root span not yet received>".to_owned(), String::new()),
        };
        if (service, name) != (&want.0, &want.1) {
            failures.push(format!(
                "after compaction: trace {} has root {service:?}/{name:?} in the search answer, expected {want:?}",
                view.id_hex
            ));
        }
    }
    println!(
        "after compaction: {} fixed queries, {fixed_failures} disagreements ({:.1}s)",
        post.len(),
        began.elapsed().as_secs_f64()
    );

    // ---- Random queries from the grammar.
    let mut generator = QueryGen::new(seed, views);
    let mut cases: Vec<(String, Query)> = Vec::new();
    let mut rejected = Vec::new();
    for _ in 0..PROPERTY_CASES {
        let text = display::query(&generator.query());
        match parse(&text) {
            Ok(q) => cases.push((text, q)),
            Err(e) => rejected.push(format!("{text}: {e}")),
        }
    }
    assert!(
        rejected.len() * 10 <= PROPERTY_CASES,
        "{} of {PROPERTY_CASES} generated queries rejected, e.g. {:#?}",
        rejected.len(),
        &rejected[..rejected.len().min(5)]
    );
    let nonempty = cases
        .iter()
        .filter(|(_, q)| oracle::expected(q, views).is_ok_and(|w| !w.is_empty()))
        .count();
    assert!(
        nonempty * 3 >= cases.len() * 2,
        "only {nonempty} of {} random queries match anything",
        cases.len()
    );
    assert!(
        nonempty + 20 <= cases.len(),
        "almost every random query matches"
    );
    let property_failures = check_all(
        &harness,
        &cases,
        &keys,
        &index,
        false,
        &|i, text| format!("random query (STRATA_TRACEQL_SEED={seed}, case {i}): {text}"),
        &mut failures,
        &mut explained,
    )
    .await;
    println!(
        "random queries (seed {seed}): {} run, {} rejected by the parser, {nonempty} matching, \
         {property_failures} disagreements ({:.1}s)",
        cases.len(),
        rejected.len(),
        began.elapsed().as_secs_f64()
    );

    querier.terminate();
    assert!(
        failures.is_empty(),
        "{} disagreements with the answer key ({explained:?}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
