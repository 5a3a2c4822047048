//! Finding blocks and reading them whole.
//!
//! The querier reads selectively through DataFusion; these helpers serve the
//! compactor, tools and tests, which need every row of a block. Span rows
//! come back in the canonical form whatever the block's format version.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{FixedSizeBinaryArray, RecordBatch, Scalar};
use arrow::compute::kernels::cmp::eq;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions, RowFilter};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::stored::to_canonical;
use super::summary::BlockSummary;
use super::traces::TraceTable;
use crate::error::{Error, Result};
use crate::ids::{BlockId, TenantId, TraceId};
use crate::layout::BlockLayout;
use crate::meta::BlockMeta;
use crate::paths;
use crate::storage::get_if_exists;

/// Tenants that have at least one object in the store.
pub async fn list_tenants(store: &dyn ObjectStore) -> Result<Vec<TenantId>> {
    let listing = store
        .list_with_delimiter(None)
        .await
        .map_err(Error::object_store("list", &Path::default()))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|prefix| prefix.filename())
        .filter_map(|name| TenantId::new(name).ok())
        .collect())
}

/// Block IDs under a tenant, committed or not (check for `meta.json`).
pub async fn list_block_ids(store: &dyn ObjectStore, tenant: &TenantId) -> Result<Vec<BlockId>> {
    let prefix = paths::tenant_prefix(tenant);
    let listing = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(Error::object_store("list", &prefix))?;
    let mut ids: Vec<BlockId> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename())
        .filter_map(|name| name.parse().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads a block's `meta.json`; `None` when the block is not committed (no
/// `meta.json` yet, or it was removed).
pub async fn read_meta(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Option<BlockMeta>> {
    let path = paths::meta_path(tenant, block);
    let Some(bytes) = get_if_exists(store, &path).await? else {
        return Ok(None);
    };
    let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "block meta",
        path: path.clone(),
        source,
    })?;
    meta.check_readable()?;
    Ok(Some(meta))
}

/// Reads a version-2 block's trace table (`traces.parquet`).
pub async fn read_trace_table(store: &dyn ObjectStore, meta: &BlockMeta) -> Result<TraceTable> {
    let path = paths::traces_path(&meta.tenant, meta.block_id);
    let bytes = read_v2_object(store, meta, "trace table", &path).await?;
    TraceTable::decode(bytes, meta.span_count)
}

/// Reads a version-2 block's attribute summary (`summary.json.gz`).
pub async fn read_summary(store: &dyn ObjectStore, meta: &BlockMeta) -> Result<BlockSummary> {
    let path = paths::summary_path(&meta.tenant, meta.block_id);
    let bytes = read_v2_object(store, meta, "summary", &path).await?;
    BlockSummary::decode(&bytes)
}

/// The bytes of `path`, an object only version-2 blocks have.
async fn read_v2_object(
    store: &dyn ObjectStore,
    meta: &BlockMeta,
    what: &str,
    path: &object_store::path::Path,
) -> Result<bytes::Bytes> {
    if !meta.has_trace_table() {
        return Err(Error::invalid_input(format!(
            "block {} (format version {}) has no {what}",
            meta.block_id, meta.format_version
        )));
    }
    store
        .get(path)
        .await
        .map_err(Error::object_store("get", path))?
        .bytes()
        .await
        .map_err(Error::object_store("get", path))
}

/// Reads every span row of a block, canonical.
pub async fn read_block(store: Arc<dyn ObjectStore>, meta: &BlockMeta) -> Result<Vec<RecordBatch>> {
    stream_block(store, meta, 8 * 1024)
        .await?
        .try_collect()
        .await
}

/// A block's canonical span rows as a stream of batches, in the block's
/// order (trace ID, then start time). Holds one row group's column chunks
/// at a time.
pub type BlockSpanStream = BoxStream<'static, Result<RecordBatch>>;

/// Streams every span row of a block, canonical, `batch_rows` rows per batch.
pub async fn stream_block(
    store: Arc<dyn ObjectStore>,
    meta: &BlockMeta,
    batch_rows: usize,
) -> Result<BlockSpanStream> {
    let (reader, path) = BlockDataReader::open(store, meta);
    let reader: Box<dyn AsyncFileReader> = Box::new(reader);
    let layout = meta.layout();
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(Error::parquet(format!("opening {path}")))?
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(Error::parquet(format!("reading {path}")))?;
    Ok(stream
        .map(move |batch| {
            let batch = batch.map_err(Error::parquet(format!("reading {path}")))?;
            canonical(&batch, &layout)
        })
        .boxed())
}

fn canonical(batch: &RecordBatch, layout: &BlockLayout) -> Result<RecordBatch> {
    if layout.has_structure() {
        to_canonical(batch, layout)
    } else {
        Ok(batch.clone())
    }
}

/// Reads the spans of one trace from a block. Row groups whose trace-ID
/// statistics exclude the ID are skipped and rows are filtered while
/// decoding. The querier uses DataFusion for this; the ingester reads blocks
/// it queued locally with this lighter path.
pub async fn read_trace(
    store: Arc<dyn ObjectStore>,
    meta: &BlockMeta,
    trace_id: &TraceId,
) -> Result<Vec<RecordBatch>> {
    let (reader, path) = BlockDataReader::open(store, meta);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(Error::parquet(format!("opening {path}")))?;
    let wanted = trace_id.as_bytes().as_slice();
    let row_groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, group)| {
            // Column 0 is trace_id. Without statistics, keep the group.
            let Some(stats) = group.column(0).statistics() else {
                return true;
            };
            stats.min_bytes_opt().is_none_or(|min| min <= wanted)
                && stats.max_bytes_opt().is_none_or(|max| wanted <= max)
        })
        .map(|(i, _)| i)
        .collect();
    if row_groups.is_empty() {
        return Ok(Vec::new());
    }
    let needle = FixedSizeBinaryArray::try_from_iter(std::iter::once(wanted))
        .map(Scalar::new)
        .map_err(Error::arrow("trace ID scalar"))?;
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [0]);
    let predicate =
        ArrowPredicateFn::new(mask, move |batch: RecordBatch| eq(batch.column(0), &needle));
    let stream = builder
        .with_row_groups(row_groups)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()
        .map_err(Error::parquet(format!("reading {path}")))?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(Error::parquet(format!("reading {path}")))?;
    let layout = meta.layout();
    batches.iter().map(|b| canonical(b, &layout)).collect()
}

/// Reads a block's `data.parquet` whose size and footer length are known
/// from `meta.json`, so opening it costs one request.
struct BlockDataReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    file_size: u64,
    footer_size: Option<usize>,
}

impl BlockDataReader {
    /// A reader of `meta`'s `data.parquet`, and its path for error context.
    fn open(store: Arc<dyn ObjectStore>, meta: &BlockMeta) -> (Self, Path) {
        let path = paths::data_path(&meta.tenant, meta.block_id);
        let reader = Self {
            store,
            path: path.clone(),
            file_size: meta.data_size_bytes,
            footer_size: usize::try_from(meta.footer_size_bytes).ok(),
        };
        (reader, path)
    }
}

fn to_parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for BlockDataReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(to_parquet_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let file_size = self.file_size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(self.footer_size)
                .load_and_finish(self, file_size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
