//! Finding blocks and reading them whole.
//!
//! The querier reads selectively through DataFusion; these helpers serve the
//! compactor, tools and tests, which need every row of a block.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{Error, Result};
use crate::ids::{BlockId, TenantId};
use crate::meta::{BlockMeta, FORMAT_NAME};
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
    if meta.format != FORMAT_NAME {
        return Err(Error::corrupt(format!(
            "{path}: unknown block format {:?}",
            meta.format
        )));
    }
    Ok(Some(meta))
}

/// Reads every span row of a block.
pub async fn read_block(store: Arc<dyn ObjectStore>, meta: &BlockMeta) -> Result<Vec<RecordBatch>> {
    let path = paths::data_path(&meta.tenant, meta.block_id);
    let reader = BlockDataReader {
        store,
        path: path.clone(),
        file_size: meta.data_size_bytes,
        footer_size: usize::try_from(meta.footer_size_bytes).ok(),
    };
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(Error::parquet(format!("opening {path}")))?
        .build()
        .map_err(Error::parquet(format!("reading {path}")))?;
    stream
        .try_collect()
        .await
        .map_err(Error::parquet(format!("reading {path}")))
}

/// Reads a block's `data.parquet` whose size and footer length are known
/// from `meta.json`, so opening it costs one request.
struct BlockDataReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    file_size: u64,
    footer_size: Option<usize>,
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
