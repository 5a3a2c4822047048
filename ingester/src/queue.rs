//! Blocks cut by this ingester, on local disk until uploaded.
//!
//! A cut block is first written here, in the object-store layout
//! (`<tenant>/<block>/data.parquet`, `bloom-N`, ..., `meta.json` last) and
//! fsynced; from then on the write-ahead log no longer needs its spans and
//! memory is freed. The upload loop copies queued blocks to the object store
//! and removes them once committed there. While the object store is down the
//! queue grows on disk (within the disk budget) instead of in memory, and
//! queued blocks are still served to trace lookups.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use strata_common::block::{EncodedBlock, read_block, read_trace};
use strata_common::bloom::{BloomShard, shard_for};
use strata_common::{BlockId, BlockMeta, TenantId, TraceId, paths};
use tracing::warn;

use crate::error::{Error, Result};

#[derive(Debug)]
struct Queued {
    meta: Arc<BlockMeta>,
    bytes: u64,
    failed_attempts: u32,
    next_attempt: Instant,
    /// Set once committed to the object store; the local copy lingers for
    /// lookups until [`BlockQueue::prune_uploaded`] removes it.
    uploaded_at: Option<Instant>,
}

/// The local queue of blocks waiting for upload.
#[derive(Debug)]
pub(crate) struct BlockQueue {
    dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    blocks: Mutex<BTreeMap<(TenantId, BlockId), Queued>>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Wal { context, source }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(io(format!("creating {}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {}", path.display())))
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl BlockQueue {
    /// Opens the queue in `dir`, keeping committed blocks and removing the
    /// debris of blocks whose write was interrupted.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                Error::Common(strata_common::Error::Config {
                    message: e.to_string(),
                })
            })?);
        let mut blocks = BTreeMap::new();
        for tenant_entry in fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
            let tenant_entry = tenant_entry.map_err(io("listing the block queue"))?;
            let Some(tenant) = tenant_entry
                .file_name()
                .to_str()
                .and_then(|name| TenantId::new(name).ok())
            else {
                continue;
            };
            for block_entry in
                fs::read_dir(tenant_entry.path()).map_err(io("listing the block queue"))?
            {
                let block_dir = block_entry.map_err(io("listing the block queue"))?.path();
                let meta_path = block_dir.join(paths::META_FILE);
                let meta = fs::read(&meta_path)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<BlockMeta>(&bytes).ok());
                match meta {
                    Some(meta) => {
                        blocks.insert(
                            (tenant.clone(), meta.block_id),
                            Queued {
                                bytes: dir_size(&block_dir),
                                meta: Arc::new(meta),
                                failed_attempts: 0,
                                next_attempt: Instant::now(),
                                uploaded_at: None,
                            },
                        );
                    }
                    None => {
                        warn!(dir = %block_dir.display(), "removing an incompletely written queued block");
                        fs::remove_dir_all(&block_dir)
                            .map_err(io(format!("removing {}", block_dir.display())))?;
                    }
                }
            }
        }
        let queue = Self {
            dir: dir.to_owned(),
            store,
            blocks: Mutex::new(blocks),
        };
        queue.report();
        Ok(queue)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(TenantId, BlockId), Queued>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn block_dir(&self, tenant: &TenantId, block: BlockId) -> PathBuf {
        self.dir.join(tenant.as_str()).join(block.to_string())
    }

    /// Writes a block durably (blocking I/O): its objects, then `meta.json`.
    pub(crate) fn add(&self, block: &EncodedBlock) -> Result<()> {
        let meta = &block.meta;
        let dir = self.block_dir(&meta.tenant, meta.block_id);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        for (name, bytes) in &block.objects {
            write_durably(&dir.join(name), bytes)?;
        }
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| strata_common::Error::corrupt(format!("encoding block meta: {e}")))?;
        write_durably(&dir.join(paths::META_FILE), &json)?;
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let bytes = block.size_bytes() + json.len() as u64;
        self.lock().insert(
            (meta.tenant.clone(), meta.block_id),
            Queued {
                meta: Arc::new(meta.clone()),
                bytes,
                failed_attempts: 0,
                next_attempt: Instant::now(),
                uploaded_at: None,
            },
        );
        self.report();
        Ok(())
    }

    /// Blocks whose next upload attempt is due, oldest first.
    pub(crate) fn due(&self, now: Instant, all: bool) -> Vec<Arc<BlockMeta>> {
        let mut due: Vec<Arc<BlockMeta>> = self
            .lock()
            .values()
            .filter(|q| q.uploaded_at.is_none() && (all || q.next_attempt <= now))
            .map(|q| Arc::clone(&q.meta))
            .collect();
        due.sort_by_key(|meta| meta.block_id);
        due
    }

    /// Reads a queued block back for upload.
    pub(crate) fn load(&self, meta: &BlockMeta) -> Result<EncodedBlock> {
        let dir = self.block_dir(&meta.tenant, meta.block_id);
        let read = |name: String| -> Result<Bytes> {
            let path = dir.join(name);
            fs::read(&path)
                .map(Bytes::from)
                .map_err(io(format!("reading {}", path.display())))
        };
        let objects = meta
            .object_names()
            .into_iter()
            .map(|name| read(name.clone()).map(|bytes| (name, bytes)))
            .collect::<Result<Vec<_>>>()?;
        Ok(EncodedBlock {
            meta: meta.clone(),
            objects,
        })
    }

    /// Marks a block committed to the object store.
    pub(crate) fn uploaded(&self, meta: &BlockMeta) {
        if let Some(queued) = self.lock().get_mut(&(meta.tenant.clone(), meta.block_id)) {
            queued.uploaded_at = Some(Instant::now());
        }
        self.report();
    }

    /// Deletes the local copies of blocks uploaded at least `linger` ago.
    pub(crate) fn prune_uploaded(&self, linger: Duration) -> Result<()> {
        let now = Instant::now();
        let done: Vec<Arc<BlockMeta>> = self
            .lock()
            .values()
            .filter(|q| {
                q.uploaded_at
                    .is_some_and(|at| now.duration_since(at) >= linger)
            })
            .map(|q| Arc::clone(&q.meta))
            .collect();
        for meta in done {
            self.remove(&meta)?;
        }
        Ok(())
    }

    /// Forgets and deletes a block.
    fn remove(&self, meta: &BlockMeta) -> Result<()> {
        self.lock().remove(&(meta.tenant.clone(), meta.block_id));
        let dir = self.block_dir(&meta.tenant, meta.block_id);
        // meta.json first: an interrupted removal leaves debris, not a block.
        let _ = fs::remove_file(dir.join(paths::META_FILE));
        fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
        self.report();
        Ok(())
    }

    /// Records a failed upload; the next attempt backs off exponentially.
    pub(crate) fn failed(&self, meta: &BlockMeta) {
        if let Some(queued) = self.lock().get_mut(&(meta.tenant.clone(), meta.block_id)) {
            queued.failed_attempts += 1;
            let backoff = Duration::from_millis(250 << queued.failed_attempts.min(7));
            queued.next_attempt = Instant::now() + backoff;
        }
    }

    /// Bytes of queued blocks.
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().values().map(|q| q.bytes).sum()
    }

    /// Number of blocks not yet uploaded.
    pub(crate) fn pending(&self) -> usize {
        self.lock()
            .values()
            .filter(|q| q.uploaded_at.is_none())
            .count()
    }

    fn report(&self) {
        let (blocks, bytes) = {
            let blocks = self.lock();
            let pending = blocks.values().filter(|q| q.uploaded_at.is_none());
            (
                pending.clone().count(),
                pending.map(|q| q.bytes).sum::<u64>(),
            )
        };
        metrics::gauge!("strata_ingester_upload_backlog_blocks").set(blocks as f64);
        metrics::gauge!("strata_ingester_upload_backlog_bytes").set(bytes as f64);
    }

    /// `tenant`'s queued blocks.
    pub(crate) fn metas(&self, tenant: &TenantId) -> Vec<Arc<BlockMeta>> {
        self.lock()
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, q)| Arc::clone(&q.meta))
            .collect()
    }

    /// Every span of these queued blocks (canonical rows, block order).
    /// Blocks stay queued only while the store is unreachable or briefly
    /// after upload, so this is rarely more than a block or two.
    pub(crate) async fn read(&self, metas: &[Arc<BlockMeta>]) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for meta in metas {
            match read_block(Arc::clone(&self.store), meta).await {
                Ok(batches) => out.extend(batches),
                // Uploaded and removed while we read: the querier has it now.
                Err(_)
                    if !self
                        .lock()
                        .contains_key(&(meta.tenant.clone(), meta.block_id)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// The spans of one trace in queued blocks of `tenant`.
    pub(crate) async fn find_trace(
        &self,
        tenant: &TenantId,
        trace_id: &TraceId,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for meta in self.metas(tenant) {
            let shard = shard_for(trace_id, meta.bloom.shard_count);
            let bloom_path = self
                .block_dir(&meta.tenant, meta.block_id)
                .join(format!("{}{shard}", paths::BLOOM_FILE_PREFIX));
            // A block uploaded (and removed) meanwhile is now in the object
            // store, where the querier finds it.
            let Ok(bloom) = fs::read(&bloom_path) else {
                continue;
            };
            if !BloomShard::from_bytes(bloom)?.may_contain(trace_id) {
                continue;
            }
            match read_trace(Arc::clone(&self.store), &meta, trace_id).await {
                Ok(batches) => out.extend(batches),
                // Uploaded and removed while we read: the querier has it now.
                Err(_)
                    if !self
                        .lock()
                        .contains_key(&(meta.tenant.clone(), meta.block_id)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }
}
