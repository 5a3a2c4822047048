//! Per-trace facts and tree structure, computed when a block is written,
//! and the block's trace table (`traces.parquet`) that stores the facts.
//!
//! Search answers need, for every trace they return, its root service and
//! span name, start, duration and per-service span and error counts, and
//! structural TraceQL needs each span's place in its tree. All of it is
//! cheap while the trace is in hand (the ingester cutting a block, the
//! compactor merging fragments) and dear at query time, so [`derive`]
//! computes it then: the structure as columns of the span rows (see
//! [`crate::layout::structure`]), the facts as one [`TraceEntry`] per trace.
//! The live buffer uses the same function at query time, so live spans and
//! blocks answer alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, Int32Array, Int64Array,
    Int64Builder, ListBuilder, RecordBatch, StringArray, StringBuilder, StructBuilder,
    TimestampNanosecondArray, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::ids::TraceId;
use crate::layout::structure::ROOT_PARENT;
use crate::schema::columns;

/// The root service name Tempo reports for a trace whose root span has not
/// arrived (or is in another fragment).
pub const ROOT_SPAN_NOT_YET_RECEIVED: &str = "<root span not yet received>";

/// OTLP `STATUS_CODE_ERROR`.
const STATUS_ERROR: i32 = 2;

/// Spans and errors of one service in a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStat {
    /// The resource's `service.name` ("" when it has none).
    pub service: String,
    /// Spans of the service.
    pub spans: u64,
    /// Spans of the service with status error.
    pub errors: u64,
}

/// What a block knows about one trace (or the fragment of it the block
/// holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// The trace.
    pub trace_id: TraceId,
    /// Index of its first span row in `data.parquet` (rows of a trace are
    /// contiguous).
    pub first_row: u64,
    /// Span rows.
    pub span_count: u64,
    /// Earliest span start, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// Latest span end, Unix nanoseconds.
    pub end_unix_nano: u64,
    /// The root span's service; `None` when the root is not here.
    pub root_service_name: Option<String>,
    /// The root span's name; `None` when the root is not here.
    pub root_span_name: Option<String>,
    /// Spans with status error.
    pub error_count: u64,
    /// Per service, sorted by service name.
    pub service_stats: Vec<ServiceStat>,
}

impl TraceEntry {
    /// End minus start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

/// Structure columns and trace entries for sorted span rows.
#[derive(Debug)]
pub struct Derived {
    /// The four structure columns, in [`crate::layout::structure::ALL`] order.
    pub structure: Vec<ArrayRef>,
    /// One entry per trace, in row order.
    pub traces: Vec<TraceEntry>,
}

fn typed<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::corrupt(format!("span rows lack column {name:?} or it is mistyped")))
}

/// Computes structure and trace facts for canonical span rows sorted by
/// trace ID (rows of one trace together). `first_row` is the index the
/// batch's first row will have in its block.
pub fn derive(batch: &RecordBatch, first_row: u64) -> Result<Derived> {
    let trace_ids: &FixedSizeBinaryArray = typed(batch, columns::TRACE_ID)?;
    let span_ids: &FixedSizeBinaryArray = typed(batch, columns::SPAN_ID)?;
    let parents: &FixedSizeBinaryArray = typed(batch, columns::PARENT_SPAN_ID)?;
    let kinds: &Int32Array = typed(batch, columns::KIND)?;
    let starts: &TimestampNanosecondArray = typed(batch, columns::START_TIME)?;
    let durations: &Int64Array = typed(batch, columns::DURATION_NANOS)?;
    let statuses: &Int32Array = typed(batch, columns::STATUS_CODE)?;
    let names: &StringArray = typed(batch, columns::NAME)?;
    let services: &StringArray = typed(batch, columns::SERVICE_NAME)?;

    let rows = batch.num_rows();
    let mut left = vec![0i32; rows];
    let mut right = vec![0i32; rows];
    let mut parent = vec![0i32; rows];
    let mut child_count = vec![0i32; rows];
    let mut traces = Vec::new();
    let mut start = 0;
    while start < rows {
        let id = trace_ids.value(start);
        let mut end = start + 1;
        while end < rows && trace_ids.value(end) == id {
            end += 1;
        }
        let tree = Tree {
            span_ids,
            parents,
            kinds,
            offset: start,
            len: end - start,
        };
        tree.number(
            &mut left[start..end],
            &mut right[start..end],
            &mut parent[start..end],
            &mut child_count[start..end],
        );

        let mut first_start = u64::MAX;
        let mut last_end = 0u64;
        let mut root: Option<usize> = None;
        let mut errors = 0u64;
        let mut stats: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for row in start..end {
            let s = starts.value(row) as u64;
            let e = s.wrapping_add(durations.value(row) as u64);
            first_start = first_start.min(s);
            last_end = last_end.max(e);
            // Rows are in start order: the first root is the earliest.
            if root.is_none() && parents.is_null(row) {
                root = Some(row);
            }
            let error = statuses.value(row) == STATUS_ERROR;
            errors += u64::from(error);
            let service = if services.is_valid(row) {
                services.value(row)
            } else {
                ""
            };
            let stat = stats.entry(service).or_default();
            stat.0 += 1;
            stat.1 += u64::from(error);
        }
        traces.push(TraceEntry {
            trace_id: TraceId::from_slice(id)?,
            first_row: first_row + start as u64,
            span_count: (end - start) as u64,
            start_unix_nano: first_start,
            end_unix_nano: last_end,
            root_service_name: root.map(|r| {
                if services.is_valid(r) {
                    services.value(r).to_owned()
                } else {
                    String::new()
                }
            }),
            root_span_name: root.map(|r| names.value(r).to_owned()),
            error_count: errors,
            service_stats: stats
                .into_iter()
                .map(|(service, (spans, errors))| ServiceStat {
                    service: service.to_owned(),
                    spans,
                    errors,
                })
                .collect(),
        });
        start = end;
    }
    Ok(Derived {
        structure: vec![
            Arc::new(Int32Array::from(left)),
            Arc::new(Int32Array::from(right)),
            Arc::new(Int32Array::from(parent)),
            Arc::new(Int32Array::from(child_count)),
        ],
        traces,
    })
}

/// One trace's spans, for nested-set numbering.
struct Tree<'a> {
    span_ids: &'a FixedSizeBinaryArray,
    parents: &'a FixedSizeBinaryArray,
    kinds: &'a Int32Array,
    offset: usize,
    len: usize,
}

const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;

/// A span's parent among `candidates`, the spans carrying its parent span
/// ID: the only one, or, where Zipkin's client and server spans share an ID,
/// the one of the opposite kind. Never the span itself. `kind_of` gives a
/// candidate's (or `this` span's) OTLP kind. The one rule for numbering the
/// tree at write time and for `parent.`/structure over live data.
pub fn pick_parent(
    candidates: &[usize],
    this: usize,
    kind_of: impl Fn(usize) -> i32,
) -> Option<usize> {
    match candidates {
        [one] => Some(*one).filter(|p| *p != this),
        [a, b] => {
            let want = if kind_of(this) == KIND_SERVER {
                KIND_CLIENT
            } else {
                KIND_SERVER
            };
            [*a, *b]
                .into_iter()
                .find(|c| *c != this && kind_of(*c) == want)
        }
        _ => None,
    }
}

impl Tree<'_> {
    /// Assigns nested-set numbers as Tempo does
    /// (`vparquet5/nested_set_model.go`): depth first from each root span in
    /// turn, children in row (start-time) order, one counter from 1. A span
    /// whose parent is not in the trace, and everything under it, keeps 0.
    /// Zipkin's shared client/server span IDs are told apart by kind; more
    /// than two spans with one ID make the tree unknowable: all 0. Child
    /// counts are the spans whose parent is this one, root or not.
    fn number(
        &self,
        left: &mut [i32],
        right: &mut [i32],
        parent: &mut [i32],
        children_n: &mut [i32],
    ) {
        let n = self.len;
        let mut by_id: HashMap<&[u8], Vec<usize>> = HashMap::with_capacity(n);
        let mut roots = Vec::new();
        for i in 0..n {
            let row = self.offset + i;
            let ids = by_id.entry(self.span_ids.value(row)).or_default();
            ids.push(i);
            if ids.len() > 2 {
                return;
            }
            if self.parents.is_null(row) {
                roots.push(i);
            }
        }
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 0..n {
            let row = self.offset + i;
            if self.parents.is_null(row) {
                continue;
            }
            let Some(candidates) = by_id.get(self.parents.value(row)) else {
                continue;
            };
            let kind_of = |local: usize| self.kinds.value(self.offset + local);
            if let Some(p) = pick_parent(candidates, i, kind_of) {
                children[p].push(i);
            }
        }
        // Child counts hold even where the tree has no root (a fragment).
        for (i, c) in children.iter().enumerate() {
            children_n[i] = i32::try_from(c.len()).unwrap_or(i32::MAX);
        }
        let mut bound = 1i32;
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for root in roots {
            left[root] = bound;
            parent[root] = ROOT_PARENT;
            bound += 1;
            stack.push((root, 0));
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&child) = children[node].get(*next) {
                    *next += 1;
                    if left[child] != 0 {
                        // Reached twice: inconsistent IDs; leave it be.
                        continue;
                    }
                    left[child] = bound;
                    parent[child] = left[node];
                    bound += 1;
                    stack.push((child, 0));
                } else {
                    right[node] = bound;
                    bound += 1;
                    stack.pop();
                }
            }
        }
    }
}

/// Column names of the trace table.
pub mod trace_columns {
    /// `FixedSizeBinary(16)`, ascending.
    pub const TRACE_ID: &str = "trace_id";
    /// `Int64`: first span row of the trace in `data.parquet`.
    pub const FIRST_ROW: &str = "first_row";
    /// `Int64`.
    pub const SPAN_COUNT: &str = "span_count";
    /// `Timestamp(ns, UTC)`.
    pub const START_TIME: &str = "start_time";
    /// `Timestamp(ns, UTC)`.
    pub const END_TIME: &str = "end_time";
    /// `Utf8`, null when the root span is not in the block.
    pub const ROOT_SERVICE_NAME: &str = "root_service_name";
    /// `Utf8`, null when the root span is not in the block.
    pub const ROOT_SPAN_NAME: &str = "root_span_name";
    /// `Int64`.
    pub const ERROR_COUNT: &str = "error_count";
    /// `List<Struct{service_name Utf8, span_count Int64, error_count Int64}>`.
    pub const SERVICE_STATS: &str = "service_stats";
}

fn service_stat_fields() -> Fields {
    Fields::from(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("span_count", DataType::Int64, false),
        Field::new("error_count", DataType::Int64, false),
    ])
}

static TRACE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use trace_columns::*;
    let timestamp = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(FIRST_ROW, DataType::Int64, false),
        Field::new(SPAN_COUNT, DataType::Int64, false),
        Field::new(START_TIME, timestamp.clone(), false),
        Field::new(END_TIME, timestamp, false),
        Field::new(ROOT_SERVICE_NAME, DataType::Utf8, true),
        Field::new(ROOT_SPAN_NAME, DataType::Utf8, true),
        Field::new(ERROR_COUNT, DataType::Int64, false),
        Field::new(
            SERVICE_STATS,
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(service_stat_fields()),
                false,
            ))),
            false,
        ),
    ]))
});

/// The Arrow schema of the trace table.
pub fn trace_table_schema() -> SchemaRef {
    Arc::clone(&TRACE_SCHEMA)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Builds the trace table's rows.
pub fn trace_table_batch(entries: &[TraceEntry]) -> Result<RecordBatch> {
    let n = entries.len();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut first_row = Int64Builder::with_capacity(n);
    let mut span_count = Int64Builder::with_capacity(n);
    let mut start = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut end = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut root_service = StringBuilder::new();
    let mut root_name = StringBuilder::new();
    let mut errors = Int64Builder::with_capacity(n);
    let mut stats = ListBuilder::new(StructBuilder::from_fields(service_stat_fields(), n))
        .with_field(Arc::new(Field::new(
            "item",
            DataType::Struct(service_stat_fields()),
            false,
        )));
    for entry in entries {
        trace_id
            .append_value(entry.trace_id.as_bytes())
            .map_err(Error::arrow("trace table"))?;
        first_row.append_value(to_i64(entry.first_row));
        span_count.append_value(to_i64(entry.span_count));
        start.append_value(entry.start_unix_nano as i64);
        end.append_value(entry.end_unix_nano as i64);
        root_service.append_option(entry.root_service_name.as_deref());
        root_name.append_option(entry.root_span_name.as_deref());
        errors.append_value(to_i64(entry.error_count));
        let item = stats.values();
        for stat in &entry.service_stats {
            item.field_builder::<StringBuilder>(0)
                .ok_or_else(|| Error::corrupt("service stats builder"))?
                .append_value(&stat.service);
            item.field_builder::<Int64Builder>(1)
                .ok_or_else(|| Error::corrupt("service stats builder"))?
                .append_value(to_i64(stat.spans));
            item.field_builder::<Int64Builder>(2)
                .ok_or_else(|| Error::corrupt("service stats builder"))?
                .append_value(to_i64(stat.errors));
            item.append(true);
        }
        stats.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(trace_id.finish()),
        Arc::new(first_row.finish()),
        Arc::new(span_count.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(root_service.finish()),
        Arc::new(root_name.finish()),
        Arc::new(errors.finish()),
        Arc::new(stats.finish()),
    ];
    RecordBatch::try_new(trace_table_schema(), columns).map_err(Error::arrow("trace table"))
}

/// Encodes the trace table as `traces.parquet`.
pub fn encode_trace_table(entries: &[TraceEntry]) -> Result<Bytes> {
    let batch = trace_table_batch(entries)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(Error::parquet("zstd level"))?,
        ))
        .set_column_dictionary_enabled(trace_columns::TRACE_ID.into(), false)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), trace_table_schema(), Some(props))
        .map_err(Error::parquet("creating trace table writer"))?;
    writer
        .write(&batch)
        .map_err(Error::parquet("writing trace table"))?;
    let data = writer
        .into_inner()
        .map_err(Error::parquet("finishing trace table"))?;
    Ok(Bytes::from(data))
}

/// A block's trace table, decoded: one row per trace, ascending trace ID.
#[derive(Debug, Clone)]
pub struct TraceTable {
    batch: RecordBatch,
}

impl TraceTable {
    /// Decodes `traces.parquet`.
    pub fn decode(bytes: Bytes, span_count: u64) -> Result<Self> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(Error::parquet("opening trace table"))?
            .with_batch_size(usize::MAX >> 1)
            .build()
            .map_err(Error::parquet("reading trace table"))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::arrow("reading trace table"))?;
        let batch = arrow::compute::concat_batches(&trace_table_schema(), &batches)
            .map_err(Error::arrow("reading trace table"))?;
        let table = Self::from_batch(batch)?;
        table.check(span_count)?;
        Ok(table)
    }

    /// Checks what lookups rely on, so that a damaged table is an error
    /// here rather than a wrong answer or a panic later: trace IDs strictly
    /// ascending, row ranges ascending, disjoint and within the block's
    /// `span_count` rows, no nulls where a value is required.
    fn check(&self, span_count: u64) -> Result<()> {
        let ids: &FixedSizeBinaryArray = self.column(0);
        let first: &Int64Array = self.column(1);
        let count: &Int64Array = self.column(2);
        if ids.null_count() + first.null_count() + count.null_count() > 0 {
            return Err(Error::corrupt(
                "trace table has null trace IDs or row ranges",
            ));
        }
        let mut next_row = 0i64;
        for i in 0..self.len() {
            if i > 0 && ids.value(i - 1) >= ids.value(i) {
                return Err(Error::corrupt("trace table is not sorted by trace ID"));
            }
            let (start, rows) = (first.value(i), count.value(i));
            let end = start.checked_add(rows).unwrap_or(i64::MAX);
            if start < next_row || rows < 0 || end as u64 > span_count {
                return Err(Error::corrupt(format!(
                    "trace table row range {start}+{rows} overlaps another or passes the block's {span_count} spans"
                )));
            }
            next_row = end;
        }
        Ok(())
    }

    /// Wraps rows built by [`trace_table_batch`].
    pub fn from_batch(batch: RecordBatch) -> Result<Self> {
        if batch.schema().fields() != trace_table_schema().fields() {
            return Err(Error::corrupt("trace table has an unexpected schema"));
        }
        Ok(Self { batch })
    }

    /// The rows.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Number of traces.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in memory.
    pub fn memory_size(&self) -> usize {
        self.batch.get_array_memory_size()
    }

    fn column<T: Array + 'static>(&self, index: usize) -> &T {
        // The schema was checked on construction.
        self.batch
            .column(index)
            .as_any()
            .downcast_ref::<T>()
            .unwrap_or_else(|| unreachable!("trace table schema checked"))
    }

    /// Position of `trace_id`, by binary search.
    pub fn find(&self, trace_id: &TraceId) -> Option<usize> {
        let ids: &FixedSizeBinaryArray = self.column(0);
        let wanted = trace_id.as_bytes().as_slice();
        let (mut lo, mut hi) = (0usize, ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match ids.value(mid).cmp(wanted) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The rows of trace `index` in `data.parquet`.
    pub fn rows(&self, index: usize) -> std::ops::Range<u64> {
        let first: &Int64Array = self.column(1);
        let count: &Int64Array = self.column(2);
        let start = first.value(index).max(0) as u64;
        start..start + count.value(index).max(0) as u64
    }

    /// The trace holding row `row` of `data.parquet`, by binary search.
    pub fn trace_of_row(&self, row: u64) -> Option<usize> {
        let first: &Int64Array = self.column(1);
        let row = i64::try_from(row).ok()?;
        let after = first.values().partition_point(|f| *f <= row);
        let index = after.checked_sub(1)?;
        self.rows(index).contains(&(row as u64)).then_some(index)
    }

    /// Earliest start and latest end of trace `index`, Unix nanoseconds.
    pub fn time_range(&self, index: usize) -> (u64, u64) {
        let start: &TimestampNanosecondArray = self.column(3);
        let end: &TimestampNanosecondArray = self.column(4);
        (start.value(index) as u64, end.value(index) as u64)
    }

    /// Spans with status error, per trace.
    pub fn error_counts(&self) -> &[i64] {
        let errors: &Int64Array = self.column(7);
        errors.values()
    }

    /// Trace durations in nanoseconds, per trace.
    pub fn durations(&self) -> Vec<i64> {
        let start: &TimestampNanosecondArray = self.column(3);
        let end: &TimestampNanosecondArray = self.column(4);
        start
            .values()
            .iter()
            .zip(end.values())
            .map(|(s, e)| e.saturating_sub(*s))
            .collect()
    }

    /// Root service (`""` when no root), per trace.
    pub fn root_service_names(&self) -> &StringArray {
        self.column(5)
    }

    /// Root span name (`""` when no root), per trace.
    pub fn root_span_names(&self) -> &StringArray {
        self.column(6)
    }

    /// Whether each trace has spans of `service`.
    pub fn has_service(&self, service: &str) -> Vec<bool> {
        let stats = self.batch.column(8).as_list::<i32>();
        let names = stats
            .values()
            .as_struct_opt()
            .and_then(|s| s.column(0).as_string_opt::<i32>());
        let offsets = stats.value_offsets();
        (0..self.len())
            .map(|i| {
                names.is_some_and(|names| {
                    (offsets[i] as usize..offsets[i + 1] as usize)
                        .any(|j| names.value(j) == service)
                })
            })
            .collect()
    }

    /// The entry at `index`.
    pub fn entry(&self, index: usize) -> Result<TraceEntry> {
        let ids: &FixedSizeBinaryArray = self.column(0);
        let first_row: &Int64Array = self.column(1);
        let span_count: &Int64Array = self.column(2);
        let start: &TimestampNanosecondArray = self.column(3);
        let end: &TimestampNanosecondArray = self.column(4);
        let root_service: &StringArray = self.column(5);
        let root_name: &StringArray = self.column(6);
        let errors: &Int64Array = self.column(7);
        let stats = self.batch.column(8).as_list::<i32>();
        let stats_values = stats.value(index);
        let stats_struct = stats_values
            .as_struct_opt()
            .ok_or_else(|| Error::corrupt("service stats are not structs"))?;
        let names = stats_struct.column(0).as_string::<i32>();
        let spans = stats_struct
            .column(1)
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or_else(|| Error::corrupt("service stats span counts"))?;
        let errs = stats_struct
            .column(2)
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or_else(|| Error::corrupt("service stats error counts"))?;
        let optional = |column: &StringArray| {
            column
                .is_valid(index)
                .then(|| column.value(index).to_owned())
        };
        Ok(TraceEntry {
            trace_id: TraceId::from_slice(ids.value(index))?,
            first_row: first_row.value(index) as u64,
            span_count: span_count.value(index) as u64,
            start_unix_nano: start.value(index) as u64,
            end_unix_nano: end.value(index) as u64,
            root_service_name: optional(root_service),
            root_span_name: optional(root_name),
            error_count: errors.value(index) as u64,
            service_stats: (0..stats_struct.len())
                .map(|i| ServiceStat {
                    service: names.value(i).to_owned(),
                    spans: spans.value(i) as u64,
                    errors: errs.value(i) as u64,
                })
                .collect(),
        })
    }

    /// Every entry (for tools and tests).
    pub fn entries(&self) -> Result<Vec<TraceEntry>> {
        (0..self.len()).map(|i| self.entry(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Int32Type;
    use opentelemetry_proto::tonic::trace::v1::Span;

    use super::*;
    use crate::convert::request_to_batch;
    use crate::testing::request_with_spans;

    fn span(id: u8, parent: Option<u8>, start: u64, kind: i32) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 10,
            kind,
            name: format!("s{id}"),
            ..Span::default()
        }
    }

    #[test]
    fn nested_sets_follow_tempo() {
        // root(1) ─┬─ a(2) ── c(4)
        //          └─ b(3)
        // orphan(9) whose parent is elsewhere
        let batch = request_to_batch(&request_with_spans(vec![
            span(1, None, 0, 2),
            span(2, Some(1), 1, 3),
            span(4, Some(2), 2, 2),
            span(3, Some(1), 3, 3),
            span(9, Some(8), 4, 1),
        ]))
        .unwrap();
        let derived = derive(&batch, 100).unwrap();
        let col = |i: usize| -> Vec<i32> {
            derived.structure[i]
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        };
        assert_eq!(col(0), [1, 2, 3, 6, 0]);
        assert_eq!(col(1), [8, 5, 4, 7, 0]);
        assert_eq!(col(2), [-1, 1, 2, 1, 0]);
        assert_eq!(col(3), [2, 1, 0, 0, 0]);
        let entry = &derived.traces[0];
        assert_eq!(entry.first_row, 100);
        assert_eq!(entry.span_count, 5);
        assert_eq!(entry.root_span_name.as_deref(), Some("s1"));
        assert_eq!((entry.start_unix_nano, entry.end_unix_nano), (0, 14));
    }

    #[test]
    fn zipkin_shared_ids_are_told_apart_by_kind() {
        // client(1, kind client) and server(1, kind server, parent 1)
        let batch = request_to_batch(&request_with_spans(vec![
            span(0, None, 0, 2),
            span(1, Some(0), 1, 3),
            span(1, Some(1), 2, 2),
        ]))
        .unwrap();
        let derived = derive(&batch, 0).unwrap();
        let parents = derived.structure[2]
            .as_primitive::<Int32Type>()
            .values()
            .to_vec();
        assert_eq!(parents, [-1, 1, 2]);
    }

    #[test]
    fn trace_table_round_trips() {
        let entry = TraceEntry {
            trace_id: TraceId::new([7; 16]),
            first_row: 3,
            span_count: 4,
            start_unix_nano: 10,
            end_unix_nano: 30,
            root_service_name: None,
            root_span_name: Some("GET".into()),
            error_count: 1,
            service_stats: vec![ServiceStat {
                service: "a".into(),
                spans: 4,
                errors: 1,
            }],
        };
        let table = TraceTable::decode(
            encode_trace_table(std::slice::from_ref(&entry)).unwrap(),
            u64::MAX,
        )
        .unwrap();
        assert_eq!(table.find(&entry.trace_id), Some(0));
        assert_eq!(table.rows(0), 3..7);
        assert_eq!(table.trace_of_row(2), None);
        assert_eq!(table.trace_of_row(3), Some(0));
        assert_eq!(table.trace_of_row(6), Some(0));
        assert_eq!(table.trace_of_row(7), None);
        assert_eq!(table.find(&TraceId::new([8; 16])), None);
        assert_eq!(table.entry(0).unwrap(), entry);
    }
}
