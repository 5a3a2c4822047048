//! TraceQL search over live data and blocks.
//!
//! Sources are searched newest first: live sources, then blocks by
//! descending end time, a few at a time. Each block is skipped outright
//! when its time range or attribute summary rules it out; otherwise its
//! rows are read through DataFusion's Parquet scan with the query's
//! pre-filter pushed down (statistics, page index, row filter) and only
//! the columns the query reads, and each trace found is evaluated exactly
//! ([`crate::traceql::eval`]) with its facts from the block's trace table.
//! The search stops as soon as no further source can change the answer:
//! the limit is reached, or with `most_recent=true` the oldest trace kept
//! started after every remaining source ended.

mod exec;
mod metadata;
mod plan;
pub(crate) mod results;
mod rows;
mod tags;

use std::cmp::Reverse;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::concat_batches;
use datafusion::physical_expr::PhysicalExpr;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::RowSelection;
use strata_common::block::{derive, read_block, sort_spans, to_stored};
use strata_common::layout::BlockLayout;
use strata_common::{BlockMeta, LiveScan, LiveTraceSource, SpanPredicate, TenantId, span_schema};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

pub(crate) use metadata::BlockMetadataCache;
pub use results::{SearchMetrics, SpanMatch, SpansetMatch, TraceMatch};
#[cfg(test)]
pub(crate) use tags::go_float;
pub use tags::{INTRINSIC_TAGS, TagValue};

use self::exec::{Limits, evaluate_runs, trace_runs};
use self::plan::{DirectKeys, SearchPlan};
use self::results::Combiner;
use self::rows::Columns;
use crate::block_scan::BlockScanner;
use crate::blocklist::BlockList;
use crate::error::{Error, Result};
use crate::trace_by_id::TimeRange;
use crate::traceql::Query;

/// Blocks searched at once.
const BLOCK_CONCURRENCY: usize = 4;

/// The answer to a TraceQL metrics query (`{ } | rate()`) sent to search.
pub(crate) const METRICS_REFUSED: &str = "invalid TraceQL query: metrics queries (`| rate()`, `| count_over_time()` …) are not answered by search, and TraceQL metrics are not supported yet";

/// A search to run.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The parsed query (a search, not a metrics query).
    pub query: Query,
    /// Traces to return.
    pub limit: usize,
    /// Spans shown per spanset.
    pub spans_per_spanset: usize,
    /// Only traces overlapping this range; all data when `None`.
    pub range: Option<TimeRange>,
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct SearchOutcome {
    /// Matching traces, newest first.
    pub traces: Vec<TraceMatch>,
    /// Search figures.
    pub metrics: SearchMetrics,
}

/// A partial answer, sent as sources complete: traces added or changed
/// since the previous one, and the figures so far.
#[derive(Debug, Clone, Default)]
pub struct SearchProgress {
    /// New or changed traces.
    pub traces: Vec<TraceMatch>,
    /// Cumulative figures.
    pub metrics: SearchMetrics,
}

/// Runs searches.
#[derive(Debug)]
pub struct Searcher {
    blocks: Arc<BlockList>,
    scanner: Arc<BlockScanner>,
    metadata: Arc<BlockMetadataCache>,
    live: Vec<Arc<dyn LiveTraceSource>>,
}

/// A pre-filter evaluated by live sources on canonical rows.
#[derive(Debug)]
struct PhysicalPredicate(Arc<dyn PhysicalExpr>);

impl SpanPredicate for PhysicalPredicate {
    fn evaluate(&self, batch: &RecordBatch) -> strata_common::Result<BooleanArray> {
        let value = self
            .0
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| {
                strata_common::Error::corrupt(format!("evaluating a search filter: {e}"))
            })?;
        value.as_boolean_opt().cloned().ok_or_else(|| {
            strata_common::Error::corrupt("a search filter did not produce booleans")
        })
    }
}

impl Searcher {
    pub(crate) fn new(
        blocks: Arc<BlockList>,
        scanner: Arc<BlockScanner>,
        metadata: Arc<BlockMetadataCache>,
        live: Vec<Arc<dyn LiveTraceSource>>,
    ) -> Self {
        Self {
            blocks,
            scanner,
            metadata,
            live,
        }
    }

    /// Runs `request` for `tenant`, sending partial answers to `progress`.
    pub async fn search(
        &self,
        tenant: &TenantId,
        request: SearchRequest,
        progress: Option<UnboundedSender<SearchProgress>>,
    ) -> Result<SearchOutcome> {
        self.run(tenant, request, progress, false).await
    }

    /// [`Searcher::search`], optionally listing every attribute key of the
    /// result spans.
    async fn run(
        &self,
        tenant: &TenantId,
        request: SearchRequest,
        progress: Option<UnboundedSender<SearchProgress>>,
        collect_keys: bool,
    ) -> Result<SearchOutcome> {
        if request.query.metrics.is_some() {
            return Err(Error::BadRequest(METRICS_REFUSED.into()));
        }
        let most_recent = request.query.most_recent();
        let plan =
            Arc::new(SearchPlan::new(request.query, collect_keys).map_err(Error::BadRequest)?);
        let limits = Limits {
            spss: request.spans_per_spanset.max(1),
            range: request.range,
        };
        let mut combiner = Combiner::new(request.limit, most_recent);
        let mut metrics = SearchMetrics {
            total_jobs: self.live.len() as u64,
            ..SearchMetrics::default()
        };
        let send = |combiner: &mut Combiner, metrics: &SearchMetrics| {
            if let Some(tx) = &progress {
                let _ = tx.send(SearchProgress {
                    traces: combiner.take_changed(),
                    metrics: *metrics,
                });
            }
        };

        // Live data first: it is the newest.
        let live_filter = plan
            .prefilter(&span_schema(), &BlockLayout::v1(), None)
            .map(|expr| Arc::new(PhysicalPredicate(expr)) as Arc<dyn SpanPredicate>);
        for source in &self.live {
            let scan = LiveScan {
                predicate: live_filter.clone(),
                max_traces: combiner.wanted(),
            };
            let batches = source.scan(tenant, &scan).await?;
            let found =
                evaluate_canonical(&plan, batches, limits, combiner.wanted(), &mut metrics)?;
            found.into_iter().for_each(|t| combiner.add(t));
            metrics.completed_jobs += 1;
            send(&mut combiner, &metrics);
        }

        // The block list is read after the live sources: a block uploaded
        // while they were read is then found here (rows only move from live
        // sources to blocks), and one found in both merges by trace.
        let mut blocks: Vec<Arc<BlockMeta>> = self
            .blocks
            .blocks(tenant)
            .into_iter()
            .filter(|m| {
                request
                    .range
                    .is_none_or(|r| m.overlaps(r.start_unix_nano, r.end_unix_nano))
            })
            .collect();
        blocks.sort_by_key(|m| Reverse((m.end_time_unix_nano, m.block_id)));
        metrics.total_blocks = blocks.len() as u64;
        metrics.total_block_bytes = blocks.iter().map(|m| m.data_size_bytes).sum();
        metrics.total_jobs += blocks.len() as u64;
        if combiner.complete(blocks.first().map(|m| m.end_time_unix_nano)) {
            return Ok(finish(&combiner, metrics));
        }

        let want = combiner.wanted();
        let mut searches = futures::stream::iter(blocks.iter().cloned().enumerate())
            .map(|(i, meta)| {
                let plan = Arc::clone(&plan);
                async move { (i, self.search_block(&plan, &meta, limits, want).await) }
            })
            .buffered(BLOCK_CONCURRENCY);
        while let Some((i, result)) = searches.next().await {
            match result {
                Ok((found, block_metrics)) => {
                    metrics.inspected_traces += block_metrics.inspected_traces;
                    metrics.inspected_spans += block_metrics.inspected_spans;
                    metrics.inspected_bytes += block_metrics.inspected_bytes;
                    found.into_iter().for_each(|t| combiner.add(t));
                }
                // As Tempo's frontend does: a search that cannot read a
                // block fails, rather than answering without its traces (a
                // search carries no "partial" flag, unlike trace-by-ID).
                Err(error) => {
                    if !matches!(error, Error::BadRequest(_)) {
                        warn!(block = %blocks[i].block_id, %error, "searching a block failed");
                        metrics::counter!("strata_querier_block_read_failures_total").increment(1);
                    }
                    return Err(error);
                }
            }
            metrics.completed_jobs += 1;
            send(&mut combiner, &metrics);
            if combiner.complete(blocks.get(i + 1).map(|m| m.end_time_unix_nano)) {
                break;
            }
        }
        Ok(finish(&combiner, metrics))
    }

    /// Searches one block, in two steps. First candidate traces: from the
    /// trace table's facts when they can tell (errors, services, roots,
    /// durations), else by running the pre-filter alone over its typed
    /// columns, yielding row numbers only, which the trace table turns into
    /// traces. Then only the candidates' rows are
    /// read with every column the query needs — in growing chunks until
    /// enough traces match (all at once with `most_recent`). A selective
    /// condition thus costs its own columns plus a few pages per result,
    /// not every projected column of every matching row.
    async fn search_block(
        &self,
        plan: &SearchPlan,
        meta: &BlockMeta,
        limits: Limits,
        want: Option<usize>,
    ) -> Result<(Vec<TraceMatch>, SearchMetrics)> {
        let mut metrics = SearchMetrics::default();
        if !meta.has_trace_table() {
            // Version 1: no structure, trace table or summary stored; derive
            // them as for live data.
            let batches = read_block(Arc::clone(self.blocks.store()), meta).await?;
            metrics.inspected_bytes = meta.data_size_bytes;
            let found = evaluate_canonical(plan, batches, limits, want, &mut metrics)?;
            return Ok((found, metrics));
        }
        let started = std::time::Instant::now();
        let store = self.blocks.store().as_ref();
        let summary = self.metadata.summary(store, meta).await?;
        if !plan.may_match(&summary) {
            return Ok((Vec::new(), metrics));
        }
        let table = self.metadata.trace_table(store, meta).await?;
        let layout = meta.layout();
        let schema = layout.stored_schema();
        let predicate = plan.prefilter(&schema, &layout, Some(&summary));

        // Step 1: candidate traces, in block order: from the trace table
        // when its facts tell exactly, else by the pre-filter scan
        // (narrowed further by the table's facts when they tell a part).
        let from_table = plan.trace_candidates(&table);
        let table_traces = |traces: &[bool]| -> Vec<usize> {
            traces
                .iter()
                .enumerate()
                .filter(|(_, keep)| **keep)
                .map(|(t, _)| t)
                .collect()
        };
        let mut candidates: Vec<usize> = match (&from_table, &predicate) {
            (Some((traces, true)), _) => table_traces(traces),
            (Some((traces, false)), None) => table_traces(traces),
            (None, None) => (0..table.len()).collect(),
            (_, Some(predicate)) => {
                let row_number = schema.fields().len();
                let scan = self.scanner.plan(
                    meta,
                    Some(vec![row_number]),
                    Some(Arc::clone(predicate)),
                    true,
                    None,
                )?;
                let mut stream = self.scanner.execute(&scan)?;
                let mut traces = Vec::new();
                while let Some(batch) = stream.try_next().await? {
                    let rows = batch
                        .column(0)
                        .as_primitive_opt::<arrow::datatypes::Int64Type>()
                        .ok_or_else(|| {
                            strata_common::Error::corrupt("row numbers are not Int64")
                        })?;
                    let narrowed = from_table.as_ref().map(|(t, _)| t);
                    for row in rows.values() {
                        if let Some(trace) = table.trace_of_row(*row as u64)
                            && traces.last() != Some(&trace)
                            && narrowed.is_none_or(|t| t[trace])
                        {
                            traces.push(trace);
                        }
                    }
                }
                metrics.inspected_bytes += BlockScanner::bytes_scanned(&scan);
                traces
            }
        };
        if let Some(range) = limits.range {
            candidates.retain(|&t| {
                let (start, end) = table.time_range(t);
                end >= range.start_unix_nano && start <= range.end_unix_nano
            });
        }
        let candidate_count = candidates.len();

        // Step 2: the candidates' rows, every needed column.
        let direct = plan.direct_keys(&layout, Some(&summary));
        let projection = plan.projection(&schema, &layout, &direct);
        let total_rows = usize::try_from(meta.span_count).unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut chunk = match want {
            Some(w) => (w * 2).max(32),
            None => candidates.len().max(1),
        };
        let mut remaining: &[usize] = &candidates;
        while !remaining.is_empty() {
            let (now, later) = remaining.split_at(chunk.min(remaining.len()));
            remaining = later;
            chunk *= 4;
            let ranges = now.iter().map(|&t| {
                let rows = table.rows(t);
                rows.start as usize..rows.end as usize
            });
            let selection = RowSelection::from_consecutive_ranges(ranges, total_rows);
            let scan = self.scanner.plan(
                meta,
                Some(projection.clone()),
                predicate.clone(),
                false,
                Some(selection),
            )?;
            let mut stream = self.scanner.execute(&scan)?;
            // Rows of the last trace of a batch, which may continue in the next.
            let mut carry: Option<RecordBatch> = None;
            loop {
                let next = stream.try_next().await?;
                let done = next.is_none();
                let batch = match (carry.take(), next) {
                    (Some(c), Some(b)) => concat_batches(&b.schema(), &[c, b])
                        .map_err(|e| strata_common::Error::corrupt(format!("joining rows: {e}")))?,
                    (Some(c), None) => c,
                    (None, Some(b)) => b,
                    (None, None) => break,
                };
                if batch.num_rows() == 0 {
                    if done {
                        break;
                    }
                    continue;
                }
                let columns = Columns::new(&batch, &layout, &direct);
                let mut runs = trace_runs(&columns, batch.num_rows());
                if !done && let Some(last) = runs.pop() {
                    carry = Some(batch.slice(last.start, last.len()));
                }
                if !runs.is_empty() {
                    let mut entry_of = |_: usize, id: &strata_common::TraceId| {
                        let index = table.find(id).ok_or_else(|| {
                            strata_common::Error::corrupt(format!(
                                "trace {id} has rows but no entry in the trace table"
                            ))
                        })?;
                        Ok(table.entry(index)?)
                    };
                    evaluate_runs(
                        plan,
                        &batch,
                        &layout,
                        &direct,
                        &runs,
                        &mut entry_of,
                        limits,
                        want,
                        &mut metrics,
                        &mut found,
                    )?;
                }
                if done || want.is_some_and(|w| found.len() >= w) {
                    break;
                }
            }
            metrics.inspected_bytes += BlockScanner::bytes_scanned(&scan);
            if want.is_some_and(|w| found.len() >= w) {
                break;
            }
        }
        tracing::debug!(
            block = %meta.block_id,
            elapsed_us = started.elapsed().as_micros() as u64,
            candidates = candidate_count,
            traces = metrics.inspected_traces,
            found = found.len(),
            bytes = metrics.inspected_bytes,
            "searched a block"
        );
        Ok((found, metrics))
    }
}

fn finish(combiner: &Combiner, metrics: SearchMetrics) -> SearchOutcome {
    SearchOutcome {
        traces: combiner.results(),
        metrics,
    }
}

/// Evaluates canonical rows (live data, version-1 blocks): structure and
/// trace facts are derived here, as a block writer would have. A live
/// trace may come in pieces from several stages; sorting into block order
/// joins them, so each trace is evaluated whole.
fn evaluate_canonical(
    plan: &SearchPlan,
    batches: Vec<RecordBatch>,
    limits: Limits,
    want: Option<usize>,
    metrics: &mut SearchMetrics,
) -> Result<Vec<TraceMatch>> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let batch = concat_batches(&span_schema(), &batches)
        .map_err(|e| strata_common::Error::corrupt(format!("joining live rows: {e}")))?;
    let batch = sort_spans(&batch)?;
    let derived = derive(&batch, 0)?;
    let layout = BlockLayout::current(Vec::new());
    let stored = to_stored(&batch, derived.structure, &layout)?;
    let direct = DirectKeys::default();
    let columns = Columns::new(&stored, &layout, &direct);
    let runs = trace_runs(&columns, stored.num_rows());
    let entries = derived.traces;
    let mut entry_of = |run: usize, _: &strata_common::TraceId| {
        entries.get(run).cloned().ok_or_else(|| {
            Error::from(strata_common::Error::corrupt(
                "derived traces do not match the rows",
            ))
        })
    };
    let mut found = Vec::new();
    evaluate_runs(
        plan,
        &stored,
        &layout,
        &direct,
        &runs,
        &mut entry_of,
        limits,
        want,
        metrics,
        &mut found,
    )?;
    Ok(found)
}
