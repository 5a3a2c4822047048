//! Cutting span rows into a block: sort, encode Parquet, build the bloom,
//! upload with `meta.json` last.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::stored::to_stored;
use super::summary::SummaryBuilder;
use super::traces::{derive, encode_trace_table};
use crate::bloom::build_shards;
use crate::error::{Error, Result};
use crate::ids::{BlockId, TenantId, TraceId};
use crate::layout::{BlockLayout, choose_dedicated};
use crate::meta::{AttributeKeys, BlockMeta, FORMAT_NAME, FORMAT_VERSION};
use crate::paths;
use crate::schema::{columns, span_schema};

/// Tunables of the block format. The defaults are what `docs/format.md`
/// describes and justifies.
#[derive(Debug, Clone)]
pub struct BlockWriteOptions {
    /// A row group is closed at the first trace boundary after its encoded
    /// size passes this many bytes.
    pub row_group_target_bytes: usize,
    /// ... or after it holds this many spans.
    pub row_group_max_rows: usize,
    /// Rows per data page: small pages let the page index narrow a
    /// trace-by-ID read to a few KiB per column.
    pub data_page_max_rows: usize,
    /// zstd level for every column.
    pub zstd_level: i32,
    /// Bloom filter false-positive rate. 0.1%: with a thousand small blocks
    /// a lookup then scans about one block in vain instead of ten, for 1.5×
    /// the bloom bytes (still well under 0.1 B/span).
    pub bloom_false_positive_rate: f64,
    /// Largest bloom shard in bytes.
    pub bloom_shard_max_bytes: usize,
}

impl Default for BlockWriteOptions {
    fn default() -> Self {
        Self {
            row_group_target_bytes: 64 * 1024 * 1024,
            row_group_max_rows: 1_000_000,
            data_page_max_rows: 8 * 1024,
            zstd_level: 3,
            bloom_false_positive_rate: 0.001,
            bloom_shard_max_bytes: 100 * 1024,
        }
    }
}

/// A block encoded in memory, ready to upload.
#[derive(Debug)]
pub struct EncodedBlock {
    /// The metadata that will be written last.
    pub meta: BlockMeta,
    /// Every other object, named as in [`BlockMeta::object_names`] and in
    /// that order: data, bloom shards, trace table, summary.
    pub objects: Vec<(String, Bytes)>,
}

impl EncodedBlock {
    /// Bytes of all objects but `meta.json`.
    pub fn size_bytes(&self) -> u64 {
        self.objects.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// Sorts span rows by trace ID then start time and encodes them as a block.
///
/// CPU-bound: call it from a blocking thread (see [`write_block`]).
pub fn encode_block(
    tenant: TenantId,
    block_id: BlockId,
    compaction_level: u32,
    batches: &[RecordBatch],
    options: &BlockWriteOptions,
) -> Result<EncodedBlock> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Err(Error::invalid_input("a block needs at least one span"));
    }
    // The unsorted concatenation is dropped as soon as the sorted copy
    // exists, so encoding holds one extra copy of the spans, not two.
    let batch = {
        let unsorted = match batches {
            [one] => one.clone(),
            _ => concat_batches(&span_schema(), batches)
                .map_err(Error::arrow("concatenating spans"))?,
        };
        sort_spans(&unsorted)?
    };
    let facts = BlockFacts::collect(&batch)?;

    // Format 2: structure and trace facts, the summary, and the dedicated
    // columns the summary suggests.
    let derived = derive(&batch, 0)?;
    let mut summary = SummaryBuilder::new();
    summary.add_batch(&batch)?;
    summary.add_traces(&derived.traces);
    let summary = summary.finish();
    let layout = BlockLayout::current(choose_dedicated(&summary.key_counts(), rows as u64));
    let stored = to_stored(&batch, derived.structure, &layout)?;
    drop(batch);

    let (data, row_group_count) = encode_parquet(&stored, &facts.trace_starts, options)?;
    drop(stored);
    let footer_size_bytes = footer_size(&data)?;

    let (bloom, bloom_shards) = build_shards(
        &facts.trace_ids,
        options.bloom_false_positive_rate,
        options.bloom_shard_max_bytes,
    )?;
    let bloom_size_bytes = bloom_shards.iter().map(|s| s.len() as u64).sum();
    let trace_table = encode_trace_table(&derived.traces)?;
    let summary = summary.encode()?;

    let meta = BlockMeta {
        format: FORMAT_NAME.to_owned(),
        format_version: FORMAT_VERSION,
        tenant,
        block_id,
        start_time_unix_nano: facts.start_time_unix_nano,
        end_time_unix_nano: facts.end_time_unix_nano,
        min_trace_id: facts
            .trace_ids
            .first()
            .map(TraceId::to_hex)
            .unwrap_or_default(),
        max_trace_id: facts
            .trace_ids
            .last()
            .map(TraceId::to_hex)
            .unwrap_or_default(),
        span_count: rows as u64,
        trace_count: facts.trace_ids.len() as u64,
        row_group_count,
        data_size_bytes: data.len() as u64,
        footer_size_bytes,
        bloom_size_bytes,
        compaction_level,
        created_at_unix_nano: now_unix_nano(),
        bloom,
        attribute_keys: facts.attribute_keys,
        compacted_from: Vec::new(),
        dedicated_columns: layout.dedicated,
        trace_table_size_bytes: trace_table.len() as u64,
        summary_size_bytes: summary.len() as u64,
    };
    let mut objects = vec![(paths::DATA_FILE.to_owned(), Bytes::from(data))];
    objects.extend(bloom_shards.into_iter().enumerate().map(|(shard, bytes)| {
        (
            format!("{}{shard}", paths::BLOOM_FILE_PREFIX),
            Bytes::from(bytes),
        )
    }));
    objects.push((paths::TRACES_FILE.to_owned(), trace_table));
    objects.push((paths::SUMMARY_FILE.to_owned(), summary));
    debug_assert_eq!(
        objects.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        meta.object_names()
    );
    Ok(EncodedBlock { meta, objects })
}

/// Uploads an encoded block: its objects in order, then `meta.json`.
///
/// A crash or store outage part-way leaves objects without a `meta.json`,
/// which readers never see; retrying writes the same block ID again.
pub async fn upload_block(store: &dyn ObjectStore, block: &EncodedBlock) -> Result<()> {
    let meta = &block.meta;
    for (name, bytes) in &block.objects {
        let path = paths::block_object_path(&meta.tenant, meta.block_id, name);
        store
            .put(&path, PutPayload::from_bytes(bytes.clone()))
            .await
            .map_err(Error::object_store("put", &path))?;
    }
    put_meta(store, meta).await
}

/// Writes `meta.json`, the commit point of every block writer.
pub(super) async fn put_meta(store: &dyn ObjectStore, meta: &BlockMeta) -> Result<()> {
    let meta_path = paths::meta_path(&meta.tenant, meta.block_id);
    let json = serde_json::to_vec_pretty(meta).map_err(|source| Error::Json {
        what: "block meta",
        path: meta_path.clone(),
        source,
    })?;
    store
        .put(&meta_path, PutPayload::from(json))
        .await
        .map_err(Error::object_store("put", &meta_path))?;
    Ok(())
}

/// Encodes (on a blocking thread) and uploads a new block.
pub async fn write_block(
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    batches: Vec<RecordBatch>,
    compaction_level: u32,
    options: BlockWriteOptions,
) -> Result<BlockMeta> {
    let block_id = BlockId::new_v7();
    let encoded = tokio::task::spawn_blocking(move || {
        encode_block(tenant, block_id, compaction_level, &batches, &options)
    })
    .await??;
    upload_block(store.as_ref(), &encoded).await?;
    Ok(encoded.meta)
}

pub(super) fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Span rows in block order: by trace ID, then start time.
///
/// Rows already in order (the ingester gathers cut traces sorted) are
/// returned as they are: checking costs a pass over two columns, reordering
/// a copy of every column.
pub fn sort_spans(batch: &RecordBatch) -> Result<RecordBatch> {
    if is_sorted(batch)? {
        return Ok(batch.clone());
    }
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::corrupt(format!("span batch has no column {name:?}")))
    };
    let sort_columns = [
        SortColumn {
            values: column(columns::TRACE_ID)?,
            options: None,
        },
        SortColumn {
            values: column(columns::START_TIME)?,
            options: None,
        },
    ];
    let indices = lexsort_to_indices(&sort_columns, None).map_err(Error::arrow("sorting spans"))?;
    take_record_batch(batch, &indices).map_err(Error::arrow("reordering spans"))
}

/// Whether rows are ordered by trace ID, then start time.
pub(super) fn is_sorted(batch: &RecordBatch) -> Result<bool> {
    let trace_id: &FixedSizeBinaryArray = typed_column(batch, columns::TRACE_ID)?;
    let start: &TimestampNanosecondArray = typed_column(batch, columns::START_TIME)?;
    if trace_id.null_count() > 0 || start.null_count() > 0 {
        return Ok(false);
    }
    Ok((1..batch.num_rows()).all(
        |row| match trace_id.value(row - 1).cmp(trace_id.value(row)) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => start.value(row - 1) <= start.value(row),
            std::cmp::Ordering::Greater => false,
        },
    ))
}

/// Facts about sorted span rows that go into `meta.json` and the bloom.
pub(super) struct BlockFacts {
    /// Distinct trace IDs, ascending.
    pub(super) trace_ids: Vec<TraceId>,
    /// Row index where each trace starts, ascending.
    pub(super) trace_starts: Vec<usize>,
    pub(super) start_time_unix_nano: u64,
    pub(super) end_time_unix_nano: u64,
    pub(super) attribute_keys: AttributeKeys,
}

impl BlockFacts {
    pub(super) fn collect(batch: &RecordBatch) -> Result<Self> {
        let trace_id: &FixedSizeBinaryArray = typed_column(batch, columns::TRACE_ID)?;
        let start: &TimestampNanosecondArray = typed_column(batch, columns::START_TIME)?;
        let duration: &Int64Array = typed_column(batch, columns::DURATION_NANOS)?;

        let mut trace_ids = Vec::new();
        let mut trace_starts = Vec::new();
        for row in 0..batch.num_rows() {
            if row == 0 || trace_id.value(row) != trace_id.value(row - 1) {
                trace_ids.push(TraceId::from_slice(trace_id.value(row))?);
                trace_starts.push(row);
            }
        }

        let mut start_min = u64::MAX;
        let mut end_max = 0u64;
        for row in 0..batch.num_rows() {
            let s = start.value(row) as u64;
            let e = s.wrapping_add(duration.value(row) as u64);
            start_min = start_min.min(s).min(e);
            end_max = end_max.max(s).max(e);
        }

        let mut keys = AttributeKeys::default();
        let mut truncated = false;
        keys.resource = attribute_keys(
            list_column(batch, columns::RESOURCE_ATTRIBUTES)?,
            &mut truncated,
        )?;
        keys.span = attribute_keys(list_column(batch, columns::ATTRIBUTES)?, &mut truncated)?;
        keys.instrumentation = attribute_keys(
            list_column(batch, columns::SCOPE_ATTRIBUTES)?,
            &mut truncated,
        )?;
        keys.event = nested_attribute_keys(list_column(batch, columns::EVENTS)?, &mut truncated)?;
        keys.link = nested_attribute_keys(list_column(batch, columns::LINKS)?, &mut truncated)?;
        keys.truncated = truncated;

        Ok(Self {
            trace_ids,
            trace_starts,
            start_time_unix_nano: start_min,
            end_time_unix_nano: end_max,
            attribute_keys: keys,
        })
    }
}

fn typed_column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| Error::corrupt(format!("span batch column {name:?} missing or mistyped")))
}

fn list_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ListArray> {
    typed_column(batch, name)
}

/// Distinct keys of an attribute list column (every key in its values is
/// referenced: the batch was just rebuilt by `take`).
fn attribute_keys(list: &ListArray, truncated: &mut bool) -> Result<BTreeSet<String>> {
    let keys: &StringArray = list
        .values()
        .as_struct_opt()
        .and_then(|s| s.column_by_name("key"))
        .and_then(|k| k.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::corrupt("attribute list without string keys"))?;
    let mut out = BTreeSet::new();
    for key in keys.iter().flatten() {
        if out.len() >= AttributeKeys::MAX_PER_SCOPE {
            *truncated = true;
            break;
        }
        if !out.contains(key) {
            out.insert(key.to_owned());
        }
    }
    Ok(out)
}

/// Keys of the `attributes` list nested inside an events or links list.
fn nested_attribute_keys(list: &ListArray, truncated: &mut bool) -> Result<BTreeSet<String>> {
    let nested = list
        .values()
        .as_struct_opt()
        .and_then(|s| s.column_by_name("attributes"))
        .and_then(|a| a.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| Error::corrupt("events/links without attributes"))?;
    attribute_keys(nested, truncated)
}

pub(super) fn writer_properties(options: &BlockWriteOptions) -> Result<WriterProperties> {
    let zstd = ZstdLevel::try_new(options.zstd_level).map_err(Error::parquet("zstd level"))?;
    let path = |name: &str| ColumnPath::from(name);
    // Leaf index of `start_time` in the Parquet schema: every column before it
    // is a primitive, so leaf order equals field order.
    let start_time_leaf = span_schema()
        .index_of(columns::START_TIME)
        .map_err(Error::arrow("span schema"))?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_data_page_row_count_limit(options.data_page_max_rows)
        .set_write_batch_size(1024.min(options.data_page_max_rows.max(1)))
        // IDs are random: a dictionary would only add a page to skip.
        .set_column_dictionary_enabled(path(columns::TRACE_ID), false)
        .set_column_dictionary_enabled(path(columns::SPAN_ID), false)
        .set_column_dictionary_enabled(path(columns::PARENT_SPAN_ID), false)
        // Times and durations are near-sorted integers: delta encoding.
        .set_column_dictionary_enabled(path(columns::START_TIME), false)
        .set_column_encoding(path(columns::START_TIME), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(path(columns::DURATION_NANOS), false)
        .set_column_encoding(path(columns::DURATION_NANOS), Encoding::DELTA_BINARY_PACKED)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: i32::try_from(start_time_leaf).unwrap_or(i32::MAX),
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_created_by(format!("strata {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "strata.format_version".to_owned(),
            FORMAT_VERSION.to_string(),
        )]))
        .build())
}

/// Rows written per `ArrowWriter::write` call, extended to the next trace
/// boundary so row groups can only be closed between traces.
const WRITE_CHUNK_ROWS: usize = 8 * 1024;

/// Writes sorted spans, closing row groups only at trace boundaries so that
/// every trace lives in exactly one row group.
fn encode_parquet(
    batch: &RecordBatch,
    trace_starts: &[usize],
    options: &BlockWriteOptions,
) -> Result<(Vec<u8>, u32)> {
    let props = writer_properties(options)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))
        .map_err(Error::parquet("creating writer"))?;

    let total = batch.num_rows();
    let mut written = 0;
    let boundaries = trace_starts
        .iter()
        .copied()
        .skip(1)
        .chain(std::iter::once(total));
    for boundary in boundaries {
        if boundary - written < WRITE_CHUNK_ROWS && boundary != total {
            continue;
        }
        writer
            .write(&batch.slice(written, boundary - written))
            .map_err(Error::parquet("writing spans"))?;
        written = boundary;
        if writer.in_progress_size() >= options.row_group_target_bytes
            || writer.in_progress_rows() >= options.row_group_max_rows
        {
            writer
                .flush()
                .map_err(Error::parquet("closing row group"))?;
        }
    }
    writer
        .flush()
        .map_err(Error::parquet("closing row group"))?;
    let row_groups = u32::try_from(writer.flushed_row_groups().len()).unwrap_or(u32::MAX);
    // `into_inner` writes the footer; calling `finish` first would write it twice.
    let data = writer
        .into_inner()
        .map_err(Error::parquet("finishing file"))?;
    Ok((data, row_groups))
}

/// Footer length from a Parquet file's tail: `<metadata><u32 len>PAR1`.
pub(super) fn footer_size(data: &[u8]) -> Result<u64> {
    let tail = data
        .len()
        .checked_sub(8)
        .and_then(|start| data.get(start..start + 4))
        .ok_or_else(|| Error::corrupt("parquet file shorter than its tail"))?;
    let mut len = [0u8; 4];
    len.copy_from_slice(tail);
    Ok(u64::from(u32::from_le_bytes(len)) + 8)
}
