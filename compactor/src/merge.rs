//! The k-way merge: input blocks, each sorted by trace ID, streamed into
//! one output block in which every trace is one contiguous run.
//!
//! Memory is bounded by the inputs' open row groups and one batch per
//! input, plus the output's open row group: never a whole block. For each
//! trace the merge collects its rows from every input that has it; rows of
//! a trace found in one input are copied as they are, rows of a trace found
//! in several are ordered by start time and exact duplicates (same span ID
//! and kind, same content: a retried export, or a replicated write) are
//! dropped once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, Int32Array, RecordBatch};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::TimestampNanosecondType;
use futures::StreamExt;
use object_store::ObjectStore;
use strata_common::BlockMeta;
use strata_common::block::{BlockSpanStream, StreamingBlockWriter, stream_block};
use strata_common::schema::columns;

use crate::error::{Error, Result};
use crate::lease::JobLease;

/// Rows per batch read from each input.
const READ_BATCH_ROWS: usize = 8 * 1024;
/// Rows gathered before a write to the output (extended to the end of the
/// trace in hand).
const WRITE_BATCH_ROWS: usize = 8 * 1024;

/// What a merge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MergeStats {
    /// Span rows read from the inputs.
    pub spans_in: u64,
    /// Span rows written.
    pub spans_out: u64,
    /// Exact duplicates dropped.
    pub duplicates_dropped: u64,
    /// Traces whose spans came from more than one input.
    pub traces_joined: u64,
}

/// One input: its stream and the batch being consumed.
struct Cursor {
    stream: BlockSpanStream,
    batch: RecordBatch,
    /// Sequence number of `batch` within this input.
    batch_seq: u64,
    row: usize,
}

impl Cursor {
    async fn open(store: Arc<dyn ObjectStore>, meta: &BlockMeta) -> Result<Option<Self>> {
        let mut stream = stream_block(store, meta, READ_BATCH_ROWS).await?;
        let Some(batch) = next_batch(&mut stream).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            stream,
            batch,
            batch_seq: 0,
            row: 0,
        }))
    }

    fn trace_id(&self) -> Result<[u8; 16]> {
        trace_id_at(&self.batch, self.row)
    }

    /// Moves to the next batch; false at the end of the input.
    async fn advance_batch(&mut self) -> Result<bool> {
        match next_batch(&mut self.stream).await? {
            Some(batch) => {
                self.batch = batch;
                self.batch_seq += 1;
                self.row = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

async fn next_batch(stream: &mut BlockSpanStream) -> Result<Option<RecordBatch>> {
    loop {
        match stream.next().await {
            None => return Ok(None),
            Some(Ok(batch)) if batch.num_rows() == 0 => continue,
            Some(Ok(batch)) => return Ok(Some(batch)),
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

fn trace_ids(batch: &RecordBatch) -> Result<&FixedSizeBinaryArray> {
    batch
        .column_by_name(columns::TRACE_ID)
        .and_then(|c| c.as_fixed_size_binary_opt())
        .ok_or_else(|| corrupt("trace_id column missing or mistyped"))
}

fn trace_id_at(batch: &RecordBatch, row: usize) -> Result<[u8; 16]> {
    trace_ids(batch)?
        .value(row)
        .try_into()
        .map_err(|_| corrupt("trace ID is not 16 bytes"))
}

fn corrupt(message: &str) -> Error {
    strata_common::Error::corrupt(message).into()
}

/// A run of one trace's rows in one input batch.
struct Piece {
    /// Index into [`Output::sources`].
    source: usize,
    start: usize,
    len: usize,
}

/// Rows chosen for the output, as (source batch, row) pairs, turned into
/// batches with `interleave` once enough have gathered.
#[derive(Default)]
struct Output {
    sources: Vec<RecordBatch>,
    source_index: HashMap<(usize, u64), usize>,
    rows: Vec<(usize, usize)>,
}

impl Output {
    fn source(&mut self, cursor: usize, cursor_state: &Cursor) -> usize {
        *self
            .source_index
            .entry((cursor, cursor_state.batch_seq))
            .or_insert_with(|| {
                self.sources.push(cursor_state.batch.clone());
                self.sources.len() - 1
            })
    }

    fn take_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let sources: Vec<&RecordBatch> = self.sources.iter().collect();
        let batch = interleave_record_batch(&sources, &self.rows).map_err(|source| {
            strata_common::Error::Arrow {
                context: "gathering merged spans".into(),
                source,
            }
        })?;
        self.sources.clear();
        self.source_index.clear();
        self.rows.clear();
        Ok(Some(batch))
    }
}

/// Merges `inputs` into `writer`, renewing `lease` as it goes.
pub(crate) async fn merge_into(
    store: Arc<dyn ObjectStore>,
    inputs: &[Arc<BlockMeta>],
    writer: &mut StreamingBlockWriter,
    lease: &mut JobLease,
) -> Result<MergeStats> {
    let mut cursors: Vec<Cursor> = Vec::new();
    for meta in inputs {
        if let Some(cursor) = Cursor::open(Arc::clone(&store), meta).await? {
            cursors.push(cursor);
        }
    }
    let mut heap: BinaryHeap<Reverse<([u8; 16], usize)>> = BinaryHeap::new();
    for (i, cursor) in cursors.iter().enumerate() {
        heap.push(Reverse((cursor.trace_id()?, i)));
    }
    let mut stats = MergeStats::default();
    let mut output = Output::default();
    while let Some(Reverse((trace, first))) = heap.pop() {
        let mut holders = vec![first];
        while let Some(Reverse((next, i))) = heap.peek().copied() {
            if next != trace {
                break;
            }
            heap.pop();
            holders.push(i);
        }
        let mut pieces = Vec::new();
        for &i in &holders {
            let cursor = &mut cursors[i];
            // A trace may continue into the input's next batch.
            loop {
                let ids = trace_ids(&cursor.batch)?;
                let start = cursor.row;
                let mut end = start;
                while end < ids.len() && ids.value(end) == trace.as_slice() {
                    end += 1;
                }
                if end > start {
                    let source = output.source(i, cursor);
                    pieces.push(Piece {
                        source,
                        start,
                        len: end - start,
                    });
                }
                cursor.row = end;
                if end < ids.len() {
                    heap.push(Reverse((cursor.trace_id()?, i)));
                    break;
                }
                if !cursor.advance_batch().await? {
                    break;
                }
                if cursor.trace_id()? != trace {
                    heap.push(Reverse((cursor.trace_id()?, i)));
                    break;
                }
            }
        }
        if holders.len() > 1 {
            stats.traces_joined += 1;
        }
        let rows_in: usize = pieces.iter().map(|p| p.len).sum();
        stats.spans_in += rows_in as u64;
        let kept = emit_trace(&mut output, &pieces)?;
        stats.duplicates_dropped += (rows_in - kept) as u64;
        stats.spans_out += kept as u64;
        if output.rows.len() >= WRITE_BATCH_ROWS {
            if let Some(batch) = output.take_batch()? {
                writer.write(&batch).await?;
            }
            lease.renew_if_due(store.as_ref()).await?;
        }
    }
    if let Some(batch) = output.take_batch()? {
        writer.write(&batch).await?;
    }
    Ok(stats)
}

/// Appends one trace's rows to `output`; returns how many were kept.
fn emit_trace(output: &mut Output, pieces: &[Piece]) -> Result<usize> {
    // One run whose start times strictly increase can hold no duplicate
    // (a duplicate has the same start time) and is already in order.
    if let [piece] = pieces {
        let starts = output.sources[piece.source]
            .column_by_name(columns::START_TIME)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| corrupt("start_time column missing or mistyped"))?;
        let range = piece.start..piece.start + piece.len;
        if range
            .clone()
            .skip(1)
            .all(|r| starts.value(r - 1) < starts.value(r))
        {
            output.rows.extend(range.map(|r| (piece.source, r)));
            return Ok(piece.len);
        }
    }
    // Order every row by (start, span ID, kind) so duplicates sit together.
    let mut rows: Vec<(i64, [u8; 8], i32, usize, usize)> = Vec::new();
    for piece in pieces {
        let batch = &output.sources[piece.source];
        let starts = batch
            .column_by_name(columns::START_TIME)
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| corrupt("start_time column missing or mistyped"))?;
        let span_ids = batch
            .column_by_name(columns::SPAN_ID)
            .and_then(|c| c.as_fixed_size_binary_opt())
            .ok_or_else(|| corrupt("span_id column missing or mistyped"))?;
        let kinds: &Int32Array = batch
            .column_by_name(columns::KIND)
            .and_then(|c| c.as_primitive_opt())
            .ok_or_else(|| corrupt("kind column missing or mistyped"))?;
        for r in piece.start..piece.start + piece.len {
            let span_id: [u8; 8] = span_ids
                .value(r)
                .try_into()
                .map_err(|_| corrupt("span ID is not 8 bytes"))?;
            rows.push((starts.value(r), span_id, kinds.value(r), piece.source, r));
        }
    }
    rows.sort_unstable();
    let mut kept = 0;
    let mut group_start = output.rows.len();
    for (i, &(start, span, kind, source, row)) in rows.iter().enumerate() {
        let same_key = i > 0 && {
            let (s, sp, k, _, _) = rows[i - 1];
            (s, sp, k) == (start, span, kind)
        };
        if !same_key {
            group_start = output.rows.len();
        }
        let duplicate = same_key
            && output.rows[group_start..]
                .iter()
                .any(|&(s, r)| rows_equal(&output.sources[s], r, &output.sources[source], row));
        if !duplicate {
            output.rows.push((source, row));
            kept += 1;
        }
    }
    Ok(kept)
}

/// Whether two span rows are identical in every column.
fn rows_equal(a: &RecordBatch, a_row: usize, b: &RecordBatch, b_row: usize) -> bool {
    a.columns()
        .iter()
        .zip(b.columns())
        .all(|(x, y)| x.slice(a_row, 1).to_data() == y.slice(b_row, 1).to_data())
}
