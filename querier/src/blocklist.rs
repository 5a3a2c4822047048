//! Which blocks exist: an in-memory list refreshed by polling the store.
//!
//! Every poll lists tenants and their block prefixes and reads `meta.json`
//! only for blocks it has not seen, so metadata is fetched once per block.
//! A prefix without `meta.json` is a block still being uploaded (or the
//! debris of a failed upload) and is looked at again on the next poll.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use strata_common::block::{list_block_ids, list_tenants, read_meta};
use strata_common::{BlockId, BlockMeta, TenantId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::Result;

/// How many `meta.json` reads a poll runs at once.
const META_READ_CONCURRENCY: usize = 16;

type TenantBlocks = BTreeMap<BlockId, Arc<BlockMeta>>;

/// The known committed blocks of every tenant.
#[derive(Debug)]
pub struct BlockList {
    store: Arc<dyn ObjectStore>,
    tenants: RwLock<HashMap<TenantId, TenantBlocks>>,
    /// When each block announced through [`add`](Self::add) arrived, so a
    /// poll whose listing predates the announcement does not drop it.
    announced: Mutex<HashMap<BlockId, Instant>>,
}

impl BlockList {
    /// An empty list over `store`; call [`poll`](Self::poll) to fill it.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            tenants: RwLock::new(HashMap::new()),
            announced: Mutex::new(HashMap::new()),
        }
    }

    /// The object store the blocks live in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Adds a block known to be committed (e.g. announced by an in-process
    /// ingester), ahead of the next poll.
    pub fn add(&self, meta: BlockMeta) {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(meta.block_id, Instant::now());
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(meta.tenant.clone())
            .or_default()
            .insert(meta.block_id, Arc::new(meta));
    }

    /// A tenant's blocks, oldest first.
    pub fn blocks(&self, tenant: &TenantId) -> Vec<Arc<BlockMeta>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants
            .get(tenant)
            .map(|blocks| blocks.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of known blocks across tenants.
    pub fn len(&self) -> usize {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants.values().map(BTreeMap::len).sum()
    }

    /// Whether no block is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refreshes the list from the store: adds new committed blocks and
    /// drops blocks whose objects are gone.
    pub async fn poll(&self) -> Result<()> {
        let started = Instant::now();
        let store = self.store.as_ref();
        let mut fresh: HashMap<TenantId, TenantBlocks> = HashMap::new();
        for tenant in list_tenants(store).await? {
            let ids = list_block_ids(store, &tenant).await?;
            let known = {
                let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
                tenants.get(&tenant).cloned().unwrap_or_default()
            };
            let mut blocks = TenantBlocks::new();
            let mut unknown = Vec::new();
            for id in ids {
                match known.get(&id) {
                    Some(meta) => {
                        blocks.insert(id, Arc::clone(meta));
                    }
                    None => unknown.push(id),
                }
            }
            let metas: Vec<Option<BlockMeta>> = futures::stream::iter(unknown)
                .map(|id| {
                    let tenant = &tenant;
                    async move {
                        match read_meta(store, tenant, id).await {
                            Ok(meta) => Ok(meta),
                            Err(e) if e.kind() == strata_common::ErrorKind::Internal => {
                                // One unreadable block must not hide the others.
                                warn!(%tenant, block = %id, error = %e, "skipping block with unreadable meta.json");
                                Ok(None)
                            }
                            Err(e) => Err(e),
                        }
                    }
                })
                .buffer_unordered(META_READ_CONCURRENCY)
                .try_collect()
                .await?;
            for meta in metas.into_iter().flatten() {
                blocks.insert(meta.block_id, Arc::new(meta));
            }
            fresh.insert(tenant, blocks);
        }
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        announced.retain(|_, at| *at >= started);
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        for (tenant, blocks) in tenants.iter() {
            for (id, meta) in blocks {
                if announced.contains_key(id) {
                    fresh
                        .entry(tenant.clone())
                        .or_default()
                        .entry(*id)
                        .or_insert_with(|| Arc::clone(meta));
                }
            }
        }
        let count: usize = fresh.values().map(BTreeMap::len).sum();
        *tenants = fresh;
        drop(tenants);
        drop(announced);
        metrics::gauge!("strata_querier_blocklist_length").set(count as f64);
        debug!(blocks = count, "block list refreshed");
        Ok(())
    }

    /// Polls every `interval` until `cancel` fires. Errors are logged and
    /// the previous list is kept.
    pub async fn run_poll_loop(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.poll().await {
                warn!(error = %e, "polling the block list failed; keeping the previous list");
                metrics::counter!("strata_querier_blocklist_poll_failures_total").increment(1);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
