//! One tenant's live spans, grouped by trace.
//!
//! Incoming batches are kept whole (they are what the WAL recorded); an
//! index maps each trace to its rows. A trace is *active* while spans keep
//! arriving, and becomes *ready* once it has been idle for the idle period or
//! live for the maximum live time — the point where tail sampling will
//! decide a trace's fate. Ready traces are cut into blocks together; a batch
//! is freed when the last of its rows has been cut. Late spans of a trace
//! that was already cut start a new live trace and end up in a later block;
//! trace-by-ID joins the fragments.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, FixedSizeBinaryArray, RecordBatch, TimestampNanosecondArray};
use arrow::compute::interleave_record_batch;
use strata_common::TraceId;
use strata_common::schema::columns;

use crate::error::Result;

/// A batch as received, with the WAL segment that holds it.
#[derive(Debug)]
struct LiveBatch {
    batch: RecordBatch,
    wal_segment: u64,
    rows_left: usize,
    bytes: usize,
}

/// Where one trace's spans are.
#[derive(Debug)]
struct LiveTrace {
    rows: Vec<(u64, u32)>,
    /// Estimated Arrow bytes.
    bytes: usize,
    /// Spans and OTLP bytes, for the per-trace limits.
    spans: u64,
    otlp_bytes: u64,
    first_seen: Instant,
    last_seen: Instant,
}

/// Spans of ready traces taken out of the live buffer for a block.
#[derive(Debug)]
pub(crate) struct Cut {
    /// The spans.
    pub(crate) batch: RecordBatch,
    /// Oldest WAL segment holding any of them.
    pub(crate) min_wal_segment: u64,
}

/// Live rows of some traces, located under the buffer's lock.
#[derive(Debug, Default)]
pub(crate) struct Located {
    batches: HashMap<u64, RecordBatch>,
    /// Rows, grouped by trace.
    rows: Vec<(u64, u32)>,
}

impl Located {
    /// The rows, each trace's adjacent; `None` when there are none.
    pub(crate) fn gather(&self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        gather_rows(|id| self.batches.get(&id), &self.rows).map(Some)
    }
}

/// Copies `rows` (batch number, row) out of the batches `batch` finds.
fn gather_rows<'a>(
    batch: impl Fn(u64) -> Option<&'a RecordBatch>,
    rows: &[(u64, u32)],
) -> Result<RecordBatch> {
    let mut order: HashMap<u64, usize> = HashMap::new();
    let mut sources: Vec<&RecordBatch> = Vec::new();
    let mut indices = Vec::with_capacity(rows.len());
    for (id, row) in rows {
        let Some(source_batch) = batch(*id) else {
            continue;
        };
        let source = *order.entry(*id).or_insert_with(|| {
            sources.push(source_batch);
            sources.len() - 1
        });
        indices.push((source, *row as usize));
    }
    if sources.is_empty() {
        return Ok(RecordBatch::new_empty(strata_common::span_schema()));
    }
    interleave_record_batch(&sources, &indices)
        .map_err(|e| strata_common::Error::corrupt(format!("gathering trace rows: {e}")).into())
}

/// A tenant's live buffer.
#[derive(Debug, Default)]
pub(crate) struct LiveTenant {
    batches: HashMap<u64, LiveBatch>,
    next_batch: u64,
    active: HashMap<TraceId, LiveTrace>,
    ready: HashMap<TraceId, LiveTrace>,
    ready_bytes: usize,
    ready_since: Option<Instant>,
    bytes: usize,
}

fn start_times(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(columns::START_TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| strata_common::Error::corrupt("span batch without start_time").into())
}

fn trace_ids(batch: &RecordBatch) -> Result<&FixedSizeBinaryArray> {
    batch
        .column_by_name(columns::TRACE_ID)
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
        .ok_or_else(|| strata_common::Error::corrupt("span batch without trace_id").into())
}

impl LiveTenant {
    /// Bytes of batches held (a batch counts until its last row is cut).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Spans and OTLP bytes already held for a trace.
    pub(crate) fn usage(&self, trace: &TraceId) -> Option<(u64, u64)> {
        self.active
            .get(trace)
            .or_else(|| self.ready.get(trace))
            .map(|t| (t.spans, t.otlp_bytes))
    }

    /// Adds a batch logged in `wal_segment`. `otlp_bytes` gives, per trace,
    /// the OTLP bytes this batch adds (for the per-trace limits).
    pub(crate) fn insert(
        &mut self,
        batch: RecordBatch,
        wal_segment: u64,
        otlp_bytes: &HashMap<[u8; 16], u64>,
        now: Instant,
    ) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let mut per_trace: HashMap<TraceId, Vec<u32>> = HashMap::new();
        {
            let ids = trace_ids(&batch)?;
            for row in 0..rows {
                let id = TraceId::from_slice(ids.value(row))?;
                per_trace.entry(id).or_default().push(row as u32);
            }
        }
        let bytes = batch.get_array_memory_size();
        let bytes_per_row = bytes / rows;
        let id = self.next_batch;
        self.next_batch += 1;
        for (trace, rows) in per_trace {
            let added_bytes = rows.len() * bytes_per_row;
            let added_otlp = otlp_bytes.get(trace.as_bytes()).copied().unwrap_or(0);
            let entry = match self.ready.get_mut(&trace) {
                Some(ready) => {
                    self.ready_bytes += added_bytes;
                    ready
                }
                None => self.active.entry(trace).or_insert_with(|| LiveTrace {
                    rows: Vec::new(),
                    bytes: 0,
                    spans: 0,
                    otlp_bytes: 0,
                    first_seen: now,
                    last_seen: now,
                }),
            };
            entry.spans += rows.len() as u64;
            entry.rows.extend(rows.into_iter().map(|row| (id, row)));
            entry.bytes += added_bytes;
            entry.otlp_bytes += added_otlp;
            entry.last_seen = now;
        }
        self.bytes += bytes;
        self.batches.insert(
            id,
            LiveBatch {
                batch,
                wal_segment,
                rows_left: rows,
                bytes,
            },
        );
        Ok(())
    }

    /// Moves traces idle for `idle` or live for `max_live` (every trace when
    /// `force`) to the ready set.
    pub(crate) fn complete(
        &mut self,
        now: Instant,
        idle: Duration,
        max_live: Duration,
        force: bool,
    ) {
        let done: Vec<TraceId> = self
            .active
            .iter()
            .filter(|(_, t)| {
                force
                    || now.duration_since(t.last_seen) >= idle
                    || now.duration_since(t.first_seen) >= max_live
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(trace) = self.active.remove(&id) {
                self.ready_bytes += trace.bytes;
                self.ready.insert(id, trace);
                self.ready_since.get_or_insert(now);
            }
        }
    }

    /// Whether the ready traces should be cut into a block now.
    pub(crate) fn cut_due(&self, now: Instant, max_bytes: usize, max_age: Duration) -> bool {
        !self.ready.is_empty()
            && (self.ready_bytes >= max_bytes
                || self
                    .ready_since
                    .is_some_and(|since| now.duration_since(since) >= max_age))
    }

    /// Takes ready traces out as one batch of about `max_bytes` (whole
    /// traces, at least one), freeing batches whose rows have all been cut.
    /// Ready traces beyond `max_bytes` stay ready for the next cut, so a
    /// large backlog becomes several blocks of the configured size rather
    /// than one oversized block.
    pub(crate) fn cut(&mut self, max_bytes: usize) -> Result<Option<Cut>> {
        if self.ready.is_empty() {
            return Ok(None);
        }
        let ready: Vec<(TraceId, LiveTrace)> = if self.ready_bytes <= max_bytes {
            self.ready_bytes = 0;
            std::mem::take(&mut self.ready).into_iter().collect()
        } else {
            let mut taken_bytes = 0;
            let chosen: Vec<TraceId> = self
                .ready
                .iter()
                .take_while(|(_, trace)| {
                    let take = taken_bytes < max_bytes;
                    taken_bytes += trace.bytes;
                    take
                })
                .map(|(id, _)| *id)
                .collect();
            let taken: Vec<(TraceId, LiveTrace)> = chosen
                .into_iter()
                .filter_map(|id| self.ready.remove(&id).map(|t| (id, t)))
                .collect();
            self.ready_bytes = self
                .ready_bytes
                .saturating_sub(taken.iter().map(|(_, t)| t.bytes).sum());
            taken
        };
        if self.ready.is_empty() {
            self.ready_since = None;
        }
        let rows = self.block_order(ready)?;
        let batch = self.gather(&rows)?;
        let mut min_wal_segment = u64::MAX;
        for (id, _) in &rows {
            if let Some(live) = self.batches.get_mut(id) {
                min_wal_segment = min_wal_segment.min(live.wal_segment);
                live.rows_left -= 1;
            }
        }
        let bytes = &mut self.bytes;
        self.batches.retain(|_, live| {
            if live.rows_left == 0 {
                *bytes -= live.bytes;
                false
            } else {
                true
            }
        });
        Ok(Some(Cut {
            batch,
            min_wal_segment,
        }))
    }

    /// The rows of `traces` in block order: by trace ID, then start time.
    /// Gathering them in this order spares the block writer its sort, a
    /// second copy of every column.
    fn block_order(&self, mut traces: Vec<(TraceId, LiveTrace)>) -> Result<Vec<(u64, u32)>> {
        traces.sort_unstable_by_key(|(id, _)| *id);
        let mut rows = Vec::with_capacity(traces.iter().map(|(_, t)| t.rows.len()).sum());
        for (_, trace) in traces {
            let mut trace_rows = Vec::with_capacity(trace.rows.len());
            for (batch, row) in trace.rows {
                let start = match self.batches.get(&batch) {
                    Some(live) => start_times(&live.batch)?.value(row as usize),
                    None => continue,
                };
                trace_rows.push((start, batch, row));
            }
            trace_rows.sort_unstable();
            rows.extend(trace_rows.into_iter().map(|(_, batch, row)| (batch, row)));
        }
        Ok(rows)
    }

    /// Copies the given rows into one batch.
    fn gather(&self, rows: &[(u64, u32)]) -> Result<RecordBatch> {
        gather_rows(|id| self.batches.get(&id).map(|b| &b.batch), rows)
    }

    /// Where the live rows of `ids` are, to copy them out once the buffer's
    /// lock is released (see [`Located::gather`]): cheap under the lock, a
    /// few `Arc`s and row numbers.
    pub(crate) fn locate<'a>(&self, ids: impl IntoIterator<Item = &'a TraceId>) -> Located {
        let mut located = Located::default();
        for id in ids {
            let Some(trace) = self.active.get(id).or_else(|| self.ready.get(id)) else {
                continue;
            };
            for (batch, _) in &trace.rows {
                if let Some(live) = self.batches.get(batch) {
                    located
                        .batches
                        .entry(*batch)
                        .or_insert_with(|| live.batch.clone());
                }
            }
            located.rows.extend_from_slice(&trace.rows);
        }
        located
    }

    /// The live spans of one trace.
    pub(crate) fn trace(&self, id: &TraceId) -> Result<Option<RecordBatch>> {
        match self.active.get(id).or_else(|| self.ready.get(id)) {
            Some(trace) => self.gather(&trace.rows).map(Some),
            None => Ok(None),
        }
    }

    /// The batches held, for a search to evaluate without holding the
    /// buffer's lock (cloning a batch clones a few `Arc`s).
    pub(crate) fn batches(&self) -> Vec<RecordBatch> {
        self.batches.values().map(|b| b.batch.clone()).collect()
    }

    /// The oldest WAL segment any held batch came from.
    pub(crate) fn min_wal_segment(&self) -> Option<u64> {
        self.batches.values().map(|b| b.wal_segment).min()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::Span;
    use strata_common::convert::request_to_batch;
    use strata_common::testing::request_with_spans;

    use super::*;

    fn batch(spans: &[(u8, u8)]) -> RecordBatch {
        request_to_batch(&request_with_spans(
            spans
                .iter()
                .map(|(trace, span)| Span {
                    trace_id: vec![*trace; 16],
                    span_id: vec![*span; 8],
                    ..Span::default()
                })
                .collect(),
        ))
        .unwrap()
    }

    const IDLE: Duration = Duration::from_secs(10);
    const LIVE: Duration = Duration::from_secs(30);

    #[test]
    fn a_large_ready_set_is_cut_into_blocks_of_the_given_size() {
        let start = Instant::now();
        let mut live = LiveTenant::default();
        let spans: Vec<(u8, u8)> = (1..=40).map(|trace| (trace, 1)).collect();
        live.insert(batch(&spans), 1, &HashMap::new(), start)
            .unwrap();
        live.complete(start, IDLE, LIVE, true);
        let per_trace = live.ready_bytes / 40;
        let mut cuts = Vec::new();
        while let Some(cut) = live.cut(per_trace * 10).unwrap() {
            cuts.push(cut.batch.num_rows());
        }
        assert_eq!(cuts.iter().sum::<usize>(), 40);
        assert!(cuts.len() >= 4, "{cuts:?}");
        assert!(cuts.iter().all(|&n| n <= 11), "{cuts:?}");
        assert!(live.is_empty());
        assert_eq!(live.bytes(), 0);
    }

    #[test]
    fn traces_complete_after_idle_and_cut_together() {
        let start = Instant::now();
        let mut live = LiveTenant::default();
        live.insert(batch(&[(1, 1), (2, 1)]), 1, &HashMap::new(), start)
            .unwrap();
        live.insert(
            batch(&[(1, 2)]),
            2,
            &HashMap::new(),
            start + Duration::from_secs(8),
        )
        .unwrap();
        assert_eq!(
            live.trace(&TraceId::new([1; 16]))
                .unwrap()
                .unwrap()
                .num_rows(),
            2
        );

        // At 12 s trace 2 is idle, trace 1 (last span at 8 s) is not.
        live.complete(start + Duration::from_secs(12), IDLE, LIVE, false);
        let cut = live.cut(usize::MAX).unwrap().unwrap();
        assert_eq!((cut.batch.num_rows(), cut.min_wal_segment), (1, 1));
        // Batch 1 still holds trace 1's first span, so segment 1 is still needed.
        assert_eq!(live.min_wal_segment(), Some(1));

        live.complete(start + Duration::from_secs(19), IDLE, LIVE, false);
        let cut = live.cut(usize::MAX).unwrap().unwrap();
        assert_eq!(cut.batch.num_rows(), 2);
        assert!(live.is_empty());
        assert_eq!(live.bytes(), 0);
        assert_eq!(live.min_wal_segment(), None);
    }

    #[test]
    fn a_busy_trace_completes_at_its_maximum_live_time() {
        let start = Instant::now();
        let mut live = LiveTenant::default();
        for second in 0..40u64 {
            let at = start + Duration::from_secs(second);
            live.insert(batch(&[(1, second as u8)]), 1, &HashMap::new(), at)
                .unwrap();
            live.complete(at, IDLE, LIVE, false);
            if let Some(cut) = live.cut(usize::MAX).unwrap() {
                assert_eq!(second, 30, "cut when the trace had been live 30 s");
                assert_eq!(cut.batch.num_rows(), 31);
                return;
            }
        }
        panic!("the trace never completed");
    }

    #[test]
    fn cuts_are_due_by_size_or_age_of_the_ready_set() {
        let start = Instant::now();
        let mut live = LiveTenant::default();
        live.insert(batch(&[(1, 1)]), 1, &HashMap::new(), start)
            .unwrap();
        live.complete(start, IDLE, LIVE, true);
        assert!(
            live.cut_due(start, 1, Duration::from_secs(60)),
            "over the size"
        );
        assert!(!live.cut_due(start, usize::MAX, Duration::from_secs(60)));
        assert!(live.cut_due(
            start + Duration::from_secs(61),
            usize::MAX,
            Duration::from_secs(60)
        ));
    }
}
