//! Search results and how results of one trace from several sources (live
//! fragments, blocks, before compaction joins them) are combined, following
//! Tempo's combiner (`pkg/traceql/combine.go`): first root names found win,
//! the start is the earliest, spansets are merged by their `by()` key with
//! the larger one kept. Unlike Tempo, the duration is recomputed from the
//! earliest start and latest end rather than taken as the largest.

use std::collections::{BTreeMap, HashMap, HashSet};

use strata_common::TraceId;
use strata_common::block::TraceEntry;

use crate::traceql::ast::FieldExpr;
use crate::traceql::eval::Value;

/// A span shown in a result.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanMatch {
    /// The span ID.
    pub span_id: [u8; 8],
    /// The span name.
    pub name: String,
    /// Start, Unix ns.
    pub start_unix_nano: u64,
    /// Duration, ns.
    pub duration_nanos: u64,
    /// Attributes and intrinsics the query read, with the field each came
    /// from (shown by bare name, as Tempo does, so `span.x` and
    /// `resource.x` look alike in answers but not here).
    pub attributes: Vec<(FieldExpr, Value<'static>)>,
    /// Every attribute key of the span, by scope, when asked for.
    pub keys: Vec<(&'static str, String)>,
}

/// A spanset in a result.
#[derive(Debug, Clone, PartialEq)]
pub struct SpansetMatch {
    /// At most `spss` spans.
    pub spans: Vec<SpanMatch>,
    /// Spans in the spanset before truncation.
    pub matched: u32,
    /// `by()` keys and aggregate values.
    pub attributes: Vec<(String, Value<'static>)>,
}

impl SpansetMatch {
    /// The key spansets merge by: their `by(...)` attributes.
    fn key(&self) -> String {
        self.attributes
            .iter()
            .filter(|(k, _)| k.starts_with("by"))
            .map(|(k, v)| format!("{k}={}", v.group_key()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceMatch {
    /// The trace.
    pub trace_id: TraceId,
    /// Root span's service, when any source held the root.
    pub root_service_name: Option<String>,
    /// Root span's name.
    pub root_span_name: Option<String>,
    /// Earliest span start, Unix ns.
    pub start_unix_nano: u64,
    /// Latest span end, Unix ns.
    pub end_unix_nano: u64,
    /// Spans and errors per service.
    pub service_stats: BTreeMap<String, (u64, u64)>,
    /// The matching spansets.
    pub spansets: Vec<SpansetMatch>,
}

impl TraceMatch {
    /// A trace's facts with no spansets yet.
    pub(crate) fn from_entry(entry: &TraceEntry) -> Self {
        Self {
            trace_id: entry.trace_id,
            root_service_name: entry.root_service_name.clone(),
            root_span_name: entry.root_span_name.clone(),
            start_unix_nano: entry.start_unix_nano,
            end_unix_nano: entry.end_unix_nano,
            service_stats: entry
                .service_stats
                .iter()
                .map(|s| (s.service.clone(), (s.spans, s.errors)))
                .collect(),
            spansets: Vec::new(),
        }
    }

    /// Duration in nanoseconds.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// Adds another source's view of the same trace.
    pub(crate) fn merge(&mut self, other: TraceMatch) {
        if self.root_service_name.as_deref().unwrap_or("").is_empty()
            && let Some(s) = other.root_service_name.filter(|s| !s.is_empty())
        {
            self.root_service_name = Some(s);
        }
        if self.root_span_name.as_deref().unwrap_or("").is_empty()
            && let Some(s) = other.root_span_name.filter(|s| !s.is_empty())
        {
            self.root_span_name = Some(s);
        }
        self.start_unix_nano = self.start_unix_nano.min(other.start_unix_nano);
        self.end_unix_nano = self.end_unix_nano.max(other.end_unix_nano);
        for (service, (spans, errors)) in other.service_stats {
            let entry = self.service_stats.entry(service).or_default();
            entry.0 = entry.0.max(spans);
            entry.1 = entry.1.max(errors);
        }
        for set in other.spansets {
            let key = set.key();
            match self.spansets.iter_mut().find(|s| s.key() == key) {
                Some(existing) if existing.matched < set.matched => *existing = set,
                Some(_) => {}
                None => self.spansets.push(set),
            }
        }
    }
}

/// Search figures, as Tempo's `SearchMetrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchMetrics {
    /// Traces evaluated.
    pub inspected_traces: u64,
    /// Bytes read from storage.
    pub inspected_bytes: u64,
    /// Spans evaluated.
    pub inspected_spans: u64,
    /// Blocks in the time range.
    pub total_blocks: u64,
    /// Sources searched so far (live sources and blocks).
    pub completed_jobs: u64,
    /// Sources to search.
    pub total_jobs: u64,
    /// Bytes of the blocks in the time range.
    pub total_block_bytes: u64,
}

/// Collects matching traces up to the limit: the first found (searching
/// newest data first), or with `most_recent` the most recent by start time.
#[derive(Debug)]
pub(crate) struct Combiner {
    limit: usize,
    most_recent: bool,
    traces: HashMap<TraceId, TraceMatch>,
    /// Traces added or changed since the last [`Combiner::take_changed`].
    changed: HashSet<TraceId>,
}

impl Combiner {
    pub(crate) fn new(limit: usize, most_recent: bool) -> Self {
        Self {
            limit: limit.max(1),
            most_recent,
            traces: HashMap::new(),
            changed: HashSet::new(),
        }
    }

    /// The earliest start among kept traces once full.
    fn oldest_kept(&self) -> Option<u64> {
        (self.traces.len() >= self.limit)
            .then(|| self.traces.values().map(|t| t.start_unix_nano).min())
            .flatten()
    }

    pub(crate) fn add(&mut self, trace: TraceMatch) {
        if let Some(existing) = self.traces.get_mut(&trace.trace_id) {
            existing.merge(trace);
            self.changed.insert(existing.trace_id);
            return;
        }
        if self.traces.len() < self.limit {
            self.changed.insert(trace.trace_id);
            self.traces.insert(trace.trace_id, trace);
            return;
        }
        if !self.most_recent {
            return;
        }
        // Full: a newer trace evicts the oldest kept.
        let oldest = self
            .traces
            .values()
            .min_by_key(|t| (t.start_unix_nano, t.trace_id))
            .map(|t| (t.start_unix_nano, t.trace_id));
        if let Some((start, id)) = oldest
            && (trace.start_unix_nano, trace.trace_id) > (start, id)
        {
            self.traces.remove(&id);
            self.changed.remove(&id);
            self.changed.insert(trace.trace_id);
            self.traces.insert(trace.trace_id, trace);
        }
    }

    /// Whether no further source can change the answer. `next_end` is the
    /// latest span end of the sources not searched yet (a trace in them
    /// starts no later than that).
    pub(crate) fn complete(&self, next_end: Option<u64>) -> bool {
        if self.traces.len() < self.limit {
            return false;
        }
        if !self.most_recent {
            return true;
        }
        match (self.oldest_kept(), next_end) {
            (Some(oldest), Some(next)) => oldest > next,
            (_, None) => true,
            (None, Some(_)) => false,
        }
    }

    /// How many more traces a source should look for (without
    /// `most_recent`, a source may stop early).
    pub(crate) fn wanted(&self) -> Option<usize> {
        (!self.most_recent).then(|| self.limit.saturating_sub(self.traces.len()).max(1))
    }

    /// Traces added or changed since the last call.
    pub(crate) fn take_changed(&mut self) -> Vec<TraceMatch> {
        let changed: Vec<TraceId> = self.changed.drain().collect();
        let mut out: Vec<TraceMatch> = changed
            .into_iter()
            .filter_map(|id| self.traces.get(&id).cloned())
            .collect();
        sort_newest_first(&mut out);
        out
    }

    /// Every kept trace, newest first.
    pub(crate) fn results(&self) -> Vec<TraceMatch> {
        let mut out: Vec<TraceMatch> = self.traces.values().cloned().collect();
        sort_newest_first(&mut out);
        out
    }
}

fn sort_newest_first(traces: &mut [TraceMatch]) {
    traces.sort_by(|a, b| {
        b.start_unix_nano
            .cmp(&a.start_unix_nano)
            .then(a.trace_id.cmp(&b.trace_id))
    });
}
