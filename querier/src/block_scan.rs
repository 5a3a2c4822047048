//! Reading spans out of blocks with DataFusion.
//!
//! A trace-by-ID scan is a `DataSourceExec` over the candidate blocks'
//! `data.parquet` files with the predicate `trace_id = <id>`. DataFusion
//! prunes row groups by their trace-ID statistics, pages by the page index,
//! and filters rows while decoding, so only the pages holding the trace are
//! fetched. Parquet footers and page indexes are cached by DataFusion's
//! file-metadata cache: blocks are immutable, so entries never go stale.
//! Each block is its own plan, so one unreadable block costs only its spans.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::RowNumber;
use parquet::arrow::arrow_reader::RowSelection;
use strata_common::schema::columns;
use strata_common::{BlockId, BlockMeta, TraceId, paths, span_schema};
use tracing::warn;
use url::Url;

use crate::error::Result;

/// The URL under which the block store is registered with DataFusion.
const STORE_URL: &str = "strata://blocks";

/// Name of the virtual column holding each row's index in its file.
pub(crate) const ROW_NUMBER: &str = "row_number";

/// Runs span scans over blocks.
pub(crate) struct BlockScanner {
    ctx: SessionContext,
    store_url: ObjectStoreUrl,
    reader_factory: Arc<CachedParquetFileReaderFactory>,
}

impl std::fmt::Debug for BlockScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockScanner")
            .field("store_url", &self.store_url)
            .finish_non_exhaustive()
    }
}

/// Rows found and bytes read by a scan.
#[derive(Debug, Default)]
pub(crate) struct ScanOutput {
    /// Matching span rows.
    pub(crate) batches: Vec<RecordBatch>,
    /// Bytes fetched from the store (not counting cached metadata).
    pub(crate) bytes_scanned: u64,
    /// Blocks that could not be read.
    pub(crate) failed_blocks: Vec<BlockId>,
}

/// What one block's scan produced.
struct BlockScan {
    batches: Vec<RecordBatch>,
    bytes_scanned: u64,
}

/// How many blocks one lookup reads at once.
const BLOCK_SCAN_CONCURRENCY: usize = 16;

impl BlockScanner {
    /// A scanner reading blocks from `store`; query execution may hold
    /// at most `memory_limit_bytes` in DataFusion's memory pool.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, memory_limit_bytes: usize) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_limit_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let url = Url::parse(STORE_URL)
            .map_err(|e| crate::Error::Internal(format!("block store URL: {e}")))?;
        ctx.runtime_env()
            .register_object_store(&url, Arc::clone(&store));
        let metadata_cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        Ok(Self {
            store_url: ObjectStoreUrl::parse(STORE_URL)?,
            reader_factory: Arc::new(CachedParquetFileReaderFactory::new(store, metadata_cache)),
            ctx,
        })
    }

    /// The spans of `trace_id` in `blocks`. Blocks are scanned concurrently;
    /// a block that cannot be read is reported in
    /// [`ScanOutput::failed_blocks`] instead of failing the whole lookup.
    pub(crate) async fn scan_trace(
        &self,
        blocks: &[Arc<BlockMeta>],
        trace_id: &TraceId,
    ) -> Result<ScanOutput> {
        // The canonical columns lead every layout's schema, so one
        // predicate serves blocks of any version.
        let schema = span_schema();
        let predicate: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col(columns::TRACE_ID, &schema)?,
            Operator::Eq,
            lit(ScalarValue::FixedSizeBinary(
                16,
                Some(trace_id.as_bytes().to_vec()),
            )),
        ));
        let results: Vec<(BlockId, Result<BlockScan>)> =
            futures::stream::iter(blocks.iter().map(Arc::clone))
                .map(|meta| {
                    let predicate = Arc::clone(&predicate);
                    async move { (meta.block_id, self.scan_block(&meta, predicate).await) }
                })
                .buffer_unordered(BLOCK_SCAN_CONCURRENCY)
                .collect()
                .await;
        let mut output = ScanOutput::default();
        for (block, result) in results {
            match result {
                Ok(scan) => {
                    output.batches.extend(scan.batches);
                    output.bytes_scanned += scan.bytes_scanned;
                }
                Err(error) => {
                    warn!(%block, %error, "reading block failed");
                    metrics::counter!("strata_querier_block_read_failures_total").increment(1);
                    output.failed_blocks.push(block);
                }
            }
        }
        Ok(output)
    }

    /// A scan of a block's stored rows: the `projection` columns (all when
    /// `None`) of rows the reader keeps for `predicate`, within `rows` when
    /// given. Row groups and pages are pruned by the predicate's statistics
    /// and by `rows`, and rows filtered while decoding; rows come in block
    /// order. With `row_numbers`, the table gains a last column, `row_number`
    /// (`Int64`, the row's index in the file), which `projection` may name.
    pub(crate) fn plan(
        &self,
        meta: &BlockMeta,
        projection: Option<Vec<usize>>,
        predicate: Option<Arc<dyn PhysicalExpr>>,
        row_numbers: bool,
        rows: Option<RowSelection>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let layout = meta.layout();
        let mut table = TableSchema::builder(layout.stored_schema());
        if row_numbers {
            table = table.with_virtual_columns(vec![Arc::new(
                Field::new(ROW_NUMBER, DataType::Int64, false).with_extension_type(RowNumber),
            ) as FieldRef]);
        }
        let mut source = ParquetSource::new(table.build())
            .with_pushdown_filters(true)
            .with_enable_page_index(true)
            .with_parquet_file_reader_factory(Arc::clone(&self.reader_factory) as _);
        if let Some(predicate) = predicate {
            source = source.with_predicate(predicate);
        }
        let path = paths::data_path(&meta.tenant, meta.block_id);
        let mut file = PartitionedFile::new(path.to_string(), meta.data_size_bytes)
            .with_metadata_size_hint(usize::try_from(meta.footer_size_bytes).unwrap_or(0));
        if let Some(rows) = rows {
            file = file.with_extension(ParquetRowSelection::new(rows));
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file(file)
            .with_projection_indices(projection)?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// Runs `plan`.
    pub(crate) fn execute(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(plan.execute(0, self.ctx.task_ctx())?)
    }

    /// Bytes `plan` read from storage.
    pub(crate) fn bytes_scanned(plan: &Arc<dyn ExecutionPlan>) -> u64 {
        plan.metrics()
            .and_then(|m| m.sum_by_name("bytes_scanned"))
            .map(|v| v.as_usize() as u64)
            .unwrap_or(0)
    }

    async fn scan_block(
        &self,
        meta: &BlockMeta,
        predicate: Arc<dyn PhysicalExpr>,
    ) -> Result<BlockScan> {
        let layout = meta.layout();
        let scan = self.plan(meta, None, Some(Arc::clone(&predicate)), false, None)?;
        // Row-level pushdown already filters; the FilterExec guarantees exact
        // results even where the reader could only prune by statistics.
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(predicate, Arc::clone(&scan))?);
        let batches = collect(plan, self.ctx.task_ctx())
            .await?
            .iter()
            .map(|batch| strata_common::block::to_canonical(batch, &layout))
            .collect::<strata_common::Result<Vec<_>>>()?;
        let bytes_scanned = Self::bytes_scanned(&scan);
        Ok(BlockScan {
            batches,
            bytes_scanned,
        })
    }
}
