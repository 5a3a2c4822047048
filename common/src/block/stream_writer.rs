//! Writing a block from a stream of sorted spans, for the compactor.
//!
//! [`encode_block`](super::encode_block) holds a whole block in memory,
//! which suits the ingester (its spans are in memory already) but not a
//! merge of several large blocks. This writer keeps one open row group
//! (encoded) and streams closed ones to the object store as a multipart
//! upload; the bloom filter, trace table and summary are built as traces go
//! by. The commit order is the same: data, bloom shards, trace table,
//! summary, then `meta.json`.
//!
//! The dedicated columns must be known before the first row (they are part
//! of the Parquet schema): the compactor chooses them from its inputs'
//! summaries.

use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;

use super::BlockWriteOptions;
use super::stored::to_stored;
use super::summary::SummaryBuilder;
use super::traces::{TraceEntry, derive, encode_trace_table};
use super::writer::{BlockFacts, is_sorted, now_unix_nano, put_meta, writer_properties};
use crate::bloom::BloomBuilder;
use crate::error::{Error, Result};
use crate::ids::{BlockId, TenantId, TraceId};
use crate::layout::{BlockLayout, DedicatedColumn};
use crate::meta::{AttributeKeys, BlockMeta, FORMAT_NAME, FORMAT_VERSION};
use crate::paths;

/// Writes one block from batches of whole traces in ascending trace-ID order.
///
/// Memory: the open row group (at most about
/// [`BlockWriteOptions::row_group_target_bytes`] encoded), the multipart
/// buffer (10 MiB) and the bloom bits; never the whole block.
pub struct StreamingBlockWriter {
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    block_id: BlockId,
    compaction_level: u32,
    options: BlockWriteOptions,
    writer: AsyncArrowWriter<BufWriter>,
    bloom: BloomBuilder,
    first_trace: Option<TraceId>,
    last_trace: Option<TraceId>,
    span_count: u64,
    trace_count: u64,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    attribute_keys: AttributeKeys,
    layout: BlockLayout,
    traces: Vec<TraceEntry>,
    summary: SummaryBuilder,
}

impl std::fmt::Debug for StreamingBlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingBlockWriter")
            .field("tenant", &self.tenant)
            .field("block_id", &self.block_id)
            .field("span_count", &self.span_count)
            .finish_non_exhaustive()
    }
}

impl StreamingBlockWriter {
    /// Starts block `block_id` with the given dedicated columns;
    /// `expected_traces` bounds the number of distinct trace IDs (it sizes
    /// the bloom filter).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        tenant: TenantId,
        block_id: BlockId,
        compaction_level: u32,
        expected_traces: usize,
        dedicated: Vec<DedicatedColumn>,
        options: BlockWriteOptions,
    ) -> Result<Self> {
        let path = paths::data_path(&tenant, block_id);
        let upload = BufWriter::new(Arc::clone(&store), path);
        let layout = BlockLayout::current(dedicated);
        let writer = AsyncArrowWriter::try_new(
            upload,
            layout.stored_schema(),
            Some(writer_properties(&options)?),
        )
        .map_err(Error::parquet("creating writer"))?;
        let bloom = BloomBuilder::new(
            expected_traces,
            options.bloom_false_positive_rate,
            options.bloom_shard_max_bytes,
        )?;
        Ok(Self {
            store,
            tenant,
            block_id,
            compaction_level,
            options,
            writer,
            bloom,
            first_trace: None,
            last_trace: None,
            span_count: 0,
            trace_count: 0,
            start_time_unix_nano: u64::MAX,
            end_time_unix_nano: 0,
            attribute_keys: AttributeKeys::default(),
            layout,
            traces: Vec::new(),
            summary: SummaryBuilder::new(),
        })
    }

    /// The block being written.
    pub fn block_id(&self) -> BlockId {
        self.block_id
    }

    /// Spans written so far.
    pub fn span_count(&self) -> u64 {
        self.span_count
    }

    /// Appends whole traces in the canonical form, sorted by trace ID then
    /// start time, every trace ID greater than those already written.
    /// Encoding is CPU work: call from a blocking context.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if !is_sorted(batch)? {
            return Err(Error::invalid_input(
                "streamed block rows must be sorted by trace ID and start time",
            ));
        }
        let facts = BlockFacts::collect(batch)?;
        let (Some(first), Some(last)) = (facts.trace_ids.first(), facts.trace_ids.last()) else {
            return Ok(());
        };
        if self.last_trace.is_some_and(|previous| previous >= *first) {
            return Err(Error::invalid_input(format!(
                "trace {} written out of order or split across writes",
                first.to_hex()
            )));
        }
        for id in &facts.trace_ids {
            self.bloom.insert(id);
        }
        self.first_trace.get_or_insert(*first);
        self.last_trace = Some(*last);
        self.trace_count += facts.trace_ids.len() as u64;
        self.start_time_unix_nano = self.start_time_unix_nano.min(facts.start_time_unix_nano);
        self.end_time_unix_nano = self.end_time_unix_nano.max(facts.end_time_unix_nano);
        self.attribute_keys.merge(&facts.attribute_keys);

        let derived = derive(batch, self.span_count)?;
        self.summary.add_batch(batch)?;
        self.summary.add_traces(&derived.traces);
        self.traces.extend(derived.traces);
        let stored = to_stored(batch, derived.structure, &self.layout)?;
        self.span_count += batch.num_rows() as u64;

        self.writer
            .write(&stored)
            .await
            .map_err(Error::parquet("writing spans"))?;
        // Writes end at trace boundaries, so closing a row group here keeps
        // every trace in one row group.
        if self.writer.in_progress_size() >= self.options.row_group_target_bytes
            || self.writer.in_progress_rows() >= self.options.row_group_max_rows
        {
            self.writer
                .flush()
                .await
                .map_err(Error::parquet("closing row group"))?;
        }
        Ok(())
    }

    /// Completes the data upload, writes the bloom shards and then
    /// `meta.json`, which commits the block. `compacted_from` names the
    /// blocks it replaces.
    pub async fn finish(mut self, compacted_from: Vec<BlockId>) -> Result<BlockMeta> {
        if self.span_count == 0 {
            self.abort().await;
            return Err(Error::invalid_input("a block needs at least one span"));
        }
        let data_path = paths::data_path(&self.tenant, self.block_id);
        self.writer
            .flush()
            .await
            .map_err(Error::parquet("closing row group"))?;
        let before_footer = self.writer.bytes_written() as u64;
        let metadata = self
            .writer
            .finish()
            .await
            .map_err(Error::parquet(format!("finishing {data_path}")))?;
        let data_size_bytes = self.writer.bytes_written() as u64;
        let row_group_count = u32::try_from(metadata.num_row_groups()).unwrap_or(u32::MAX);

        let (bloom, shards) = self.bloom.finish();
        let mut bloom_size_bytes = 0;
        for (shard, bytes) in shards.into_iter().enumerate() {
            bloom_size_bytes += bytes.len() as u64;
            let shard = u32::try_from(shard).unwrap_or(u32::MAX);
            let path = paths::bloom_path(&self.tenant, self.block_id, shard);
            self.store
                .put(&path, PutPayload::from_bytes(Bytes::from(bytes)))
                .await
                .map_err(Error::object_store("put", &path))?;
        }
        let trace_table = encode_trace_table(&self.traces)?;
        let summary = self.summary.finish().encode()?;
        for (name, bytes) in [
            (paths::TRACES_FILE, trace_table.clone()),
            (paths::SUMMARY_FILE, summary.clone()),
        ] {
            let path = paths::block_object_path(&self.tenant, self.block_id, name);
            self.store
                .put(&path, PutPayload::from_bytes(bytes))
                .await
                .map_err(Error::object_store("put", &path))?;
        }
        let meta = BlockMeta {
            format: FORMAT_NAME.to_owned(),
            format_version: FORMAT_VERSION,
            tenant: self.tenant,
            block_id: self.block_id,
            start_time_unix_nano: self.start_time_unix_nano,
            end_time_unix_nano: self.end_time_unix_nano,
            min_trace_id: self.first_trace.map(|t| t.to_hex()).unwrap_or_default(),
            max_trace_id: self.last_trace.map(|t| t.to_hex()).unwrap_or_default(),
            span_count: self.span_count,
            trace_count: self.trace_count,
            row_group_count,
            data_size_bytes,
            footer_size_bytes: data_size_bytes - before_footer,
            bloom_size_bytes,
            compaction_level: self.compaction_level,
            created_at_unix_nano: now_unix_nano(),
            bloom,
            attribute_keys: self.attribute_keys,
            compacted_from,
            dedicated_columns: self.layout.dedicated,
            trace_table_size_bytes: trace_table.len() as u64,
            summary_size_bytes: summary.len() as u64,
        };
        put_meta(self.store.as_ref(), &meta).await?;
        Ok(meta)
    }

    /// Abandons the block: the multipart upload is aborted, so nothing of
    /// it becomes visible.
    pub async fn abort(self) {
        let mut upload = self.writer.into_inner();
        if let Err(error) = upload.abort().await {
            tracing::warn!(block = %self.block_id, %error, "aborting a block upload failed");
        }
    }
}
