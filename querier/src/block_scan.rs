//! Reading spans out of blocks with DataFusion.
//!
//! A trace-by-ID scan is a `DataSourceExec` over the candidate blocks'
//! `data.parquet` files with the predicate `trace_id = <id>`. DataFusion
//! prunes row groups by their trace-ID statistics, pages by the page index,
//! and filters rows while decoding, so only the pages holding the trace are
//! fetched. Parquet footers and page indexes are cached by DataFusion's
//! file-metadata cache: blocks are immutable, so entries never go stale.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use strata_common::schema::columns;
use strata_common::{BlockMeta, TraceId, paths, span_schema};
use url::Url;

use crate::error::Result;

/// The URL under which the block store is registered with DataFusion.
const STORE_URL: &str = "strata://blocks";

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
}

impl BlockScanner {
    /// A scanner reading blocks from `store`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let ctx = SessionContext::new();
        let url = Url::parse(STORE_URL)
            .map_err(|e| crate::Error::Encode(format!("block store URL: {e}")))?;
        ctx.runtime_env()
            .register_object_store(&url, Arc::clone(&store));
        let metadata_cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        Ok(Self {
            store_url: ObjectStoreUrl::parse(STORE_URL)?,
            reader_factory: Arc::new(CachedParquetFileReaderFactory::new(store, metadata_cache)),
            ctx,
        })
    }

    /// The spans of `trace_id` in `blocks`.
    pub(crate) async fn scan_trace(
        &self,
        blocks: &[Arc<BlockMeta>],
        trace_id: &TraceId,
    ) -> Result<ScanOutput> {
        if blocks.is_empty() {
            return Ok(ScanOutput::default());
        }
        let schema = span_schema();
        let predicate = Arc::new(BinaryExpr::new(
            col(columns::TRACE_ID, &schema)?,
            Operator::Eq,
            lit(ScalarValue::FixedSizeBinary(
                16,
                Some(trace_id.as_bytes().to_vec()),
            )),
        ));
        let source = ParquetSource::new(Arc::clone(&schema))
            .with_predicate(Arc::clone(&predicate) as _)
            .with_pushdown_filters(true)
            .with_enable_page_index(true)
            .with_parquet_file_reader_factory(Arc::clone(&self.reader_factory) as _);
        // One file group per block, so blocks are read concurrently.
        let groups = blocks
            .iter()
            .map(|meta| {
                let path = paths::data_path(&meta.tenant, meta.block_id);
                let file = PartitionedFile::new(path.to_string(), meta.data_size_bytes)
                    .with_metadata_size_hint(usize::try_from(meta.footer_size_bytes).unwrap_or(0));
                FileGroup::new(vec![file])
            })
            .collect();
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        // Row-level pushdown already filters; the FilterExec guarantees exact
        // results even where the reader could only prune by statistics.
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(predicate, Arc::clone(&scan))?);
        let batches = collect(plan, self.ctx.task_ctx()).await?;
        let bytes_scanned = scan
            .metrics()
            .and_then(|m| m.sum_by_name("bytes_scanned"))
            .map(|v| v.as_usize() as u64)
            .unwrap_or(0);
        Ok(ScanOutput {
            batches,
            bytes_scanned,
        })
    }
}
