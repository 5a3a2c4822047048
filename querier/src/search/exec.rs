//! Evaluating a query over stored span rows, one trace at a time.

use std::ops::Range;

use arrow::array::RecordBatch;
use strata_common::TraceId;
use strata_common::block::TraceEntry;
use strata_common::layout::BlockLayout;

use super::plan::{DirectKeys, SearchPlan};
use super::results::{SearchMetrics, SpanMatch, SpansetMatch, TraceMatch};
use super::rows::{Columns, TraceRows};
use crate::error::{Error, Result};
use crate::trace_by_id::TimeRange;
use crate::traceql::eval::{Binding, EvalError, Evaluator, Spanset, Value};

/// Settings of one search shared by every source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Spans shown per spanset.
    pub(crate) spss: usize,
    /// Traces must overlap this range.
    pub(crate) range: Option<TimeRange>,
}

/// Where trace rows start and end in a batch sorted by trace.
pub(crate) fn trace_runs(columns: &Columns<'_>, rows: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < rows {
        let id = columns.trace_id(start);
        let mut end = start + 1;
        while end < rows && columns.trace_id(end) == id {
            end += 1;
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

/// Evaluates the traces of `batch` whose rows are in `runs`, appending
/// matches to `out`; stops once `out` holds `want` traces.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_runs(
    plan: &SearchPlan,
    batch: &RecordBatch,
    layout: &BlockLayout,
    direct: &DirectKeys,
    runs: &[Range<usize>],
    entry_of: &mut dyn FnMut(usize, &TraceId) -> Result<TraceEntry>,
    limits: Limits,
    want: Option<usize>,
    metrics: &mut SearchMetrics,
    out: &mut Vec<TraceMatch>,
) -> Result<()> {
    let columns = Columns::new(batch, layout, direct);
    for (index, run) in runs.iter().enumerate() {
        if want.is_some_and(|w| out.len() >= w) {
            break;
        }
        let id = columns
            .trace_id(run.start)
            .ok_or_else(|| strata_common::Error::corrupt("a span row without a trace ID"))
            .and_then(TraceId::from_slice)?;
        let entry = entry_of(index, &id)?;
        if let Some(range) = limits.range
            && (entry.end_unix_nano < range.start_unix_nano
                || entry.start_unix_nano > range.end_unix_nano)
        {
            continue;
        }
        metrics.inspected_traces += 1;
        metrics.inspected_spans += run.len() as u64;
        let rows = TraceRows::new(&columns, run.clone(), &entry, plan.needs_parent);
        let evaluator = Evaluator {
            spans: &rows,
            regexes: &plan.regexes,
        };
        let input = Spanset {
            spans: run.clone().collect(),
            attributes: Vec::new(),
        };
        let sets = evaluator
            .pipeline(&plan.query.pipeline, vec![input])
            .map_err(|e: EvalError| Error::BadRequest(e.to_string()))?;
        if sets.is_empty() {
            continue;
        }
        let mut trace = TraceMatch::from_entry(&entry);
        for set in sets {
            trace
                .spansets
                .push(spanset_match(plan, &evaluator, &columns, set, limits.spss));
        }
        out.push(trace);
    }
    Ok(())
}

fn spanset_match(
    plan: &SearchPlan,
    evaluator: &Evaluator<'_>,
    columns: &Columns<'_>,
    set: Spanset,
    spss: usize,
) -> SpansetMatch {
    let matched = u32::try_from(set.spans.len()).unwrap_or(u32::MAX);
    let mut rows = set.spans;
    rows.sort_by_key(|r| (columns.start(*r).unwrap_or(0), *r));
    rows.truncate(spss);
    let spans = rows
        .into_iter()
        .map(|row| {
            let mut span_id = [0u8; 8];
            if let Some(id) = columns.span_id(row)
                && id.len() == 8
            {
                span_id.copy_from_slice(id);
            }
            let attributes = plan
                .output_fields
                .iter()
                .filter_map(|field| {
                    let value = evaluator.field(field, row, Binding::default()).into_owned();
                    (!matches!(value, Value::Nil)).then(|| (field.clone(), value))
                })
                .collect();
            SpanMatch {
                keys: if plan.collect_keys {
                    columns.keys(row)
                } else {
                    Vec::new()
                },
                span_id,
                name: columns.name(row).unwrap_or_default().to_owned(),
                start_unix_nano: columns.start(row).unwrap_or(0) as u64,
                duration_nanos: columns.duration(row).unwrap_or(0) as u64,
                attributes,
            }
        })
        .collect();
    SpansetMatch {
        spans,
        matched,
        attributes: set.attributes,
    }
}
