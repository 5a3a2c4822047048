//! Which blocks exist: an in-memory list refreshed by polling the store.
//!
//! A poll reads each tenant's index (`index.json.gz`, written by the
//! compactor; skipped with `If-None-Match` when unchanged) and lists only
//! the blocks created since the index was built, reading `meta.json` for
//! blocks it has not seen. Without an index it lists the whole tenant. A
//! block replaced by a compacted block (`compacted_from`) or marked
//! compacted is dropped as soon as the poll sees that, so queries prefer the
//! replacement; the compactor keeps the old objects for a grace period so a
//! query already reading them finishes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use object_store::{GetOptions, ObjectStore};
use strata_common::block::list_tenants;
use strata_common::catalog::{
    TENANT_INDEX_VERSION, TenantBlocks, TenantIndex, list_block_objects, read_listed_metas,
};
use strata_common::{BlockId, BlockMeta, TenantId, paths};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::Result;

/// How far before an index's creation a poll lists blocks itself, to catch
/// blocks whose upload finished after the index was built though their ID
/// (their cut time) is older.
const INDEX_LISTING_SLACK: Duration = Duration::from_secs(3600);

type TenantBlocksMap = BTreeMap<BlockId, Arc<BlockMeta>>;

/// The known committed blocks of every tenant.
#[derive(Debug)]
pub struct BlockList {
    store: Arc<dyn ObjectStore>,
    tenants: RwLock<HashMap<TenantId, TenantBlocksMap>>,
    /// When each block announced through [`add`](Self::add) arrived, so a
    /// poll whose listing predates the announcement does not drop it.
    announced: Mutex<HashMap<BlockId, Instant>>,
    /// The last index read per tenant, with its ETag.
    indexes: Mutex<HashMap<TenantId, (String, Arc<TenantIndex>)>>,
    /// Held while polling: two overlapping polls could otherwise finish in
    /// the wrong order and put back an older view.
    polling: tokio::sync::Mutex<()>,
}

impl BlockList {
    /// An empty list over `store`; call [`poll`](Self::poll) to fill it.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            tenants: RwLock::new(HashMap::new()),
            announced: Mutex::new(HashMap::new()),
            indexes: Mutex::new(HashMap::new()),
            polling: tokio::sync::Mutex::new(()),
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
    /// drops blocks that are compacted, replaced or gone.
    pub async fn poll(&self) -> Result<()> {
        let _polling = self.polling.lock().await;
        let started = Instant::now();
        let mut fresh: HashMap<TenantId, TenantBlocks> = HashMap::new();
        for tenant in list_tenants(self.store.as_ref()).await? {
            let known = {
                let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
                tenants.get(&tenant).cloned().unwrap_or_default()
            };
            let blocks = self.poll_tenant(&tenant, known).await?;
            fresh.insert(tenant, blocks);
        }
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        announced.retain(|_, at| *at >= started);
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        for (tenant, blocks) in tenants.iter() {
            for (id, meta) in blocks {
                if announced.contains_key(id) {
                    let entry = fresh.entry(tenant.clone()).or_default();
                    if !entry.compacted.contains(id) {
                        entry.live.entry(*id).or_insert_with(|| Arc::clone(meta));
                    }
                }
            }
        }
        let fresh: HashMap<TenantId, TenantBlocks> = fresh;
        let count: usize = fresh.values().map(|b| b.live.len()).sum();
        *tenants = fresh.into_iter().map(|(t, b)| (t, b.live)).collect();
        drop(tenants);
        drop(announced);
        metrics::gauge!("strata_querier_blocklist_length").set(count as f64);
        debug!(blocks = count, "block list refreshed");
        Ok(())
    }

    /// One tenant's live blocks, from its index plus a listing of newer
    /// blocks, or from a full listing when there is no index.
    async fn poll_tenant(&self, tenant: &TenantId, known: TenantBlocksMap) -> Result<TenantBlocks> {
        let store = self.store.as_ref();
        let mut known: HashMap<BlockId, Arc<BlockMeta>> = known.into_iter().collect();
        let Some(index) = self.read_index(tenant).await? else {
            let listing = list_block_objects(store, tenant, None).await?;
            let candidates = read_listed_metas(store, tenant, &listing, &known).await?;
            let compacted = listing
                .values()
                .filter(|b| b.compacted)
                .map(|b| b.block_id)
                .collect();
            return Ok(TenantBlocks::resolve(candidates, compacted));
        };
        let listing =
            list_block_objects(store, tenant, Some(index.list_after(INDEX_LISTING_SLACK))).await?;
        let mut compacted: HashSet<BlockId> =
            index.compacted.iter().map(|c| c.meta.block_id).collect();
        compacted.extend(listing.values().filter(|b| b.compacted).map(|b| b.block_id));
        let mut candidates = Vec::with_capacity(index.blocks.len() + listing.len());
        for meta in &index.blocks {
            let meta = known
                .entry(meta.block_id)
                .or_insert_with(|| Arc::new(meta.clone()));
            candidates.push(Arc::clone(meta));
        }
        let indexed: HashSet<BlockId> = index.blocks.iter().map(|m| m.block_id).collect();
        candidates.extend(
            read_listed_metas(store, tenant, &listing, &known)
                .await?
                .into_iter()
                .filter(|m| !indexed.contains(&m.block_id)),
        );
        Ok(TenantBlocks::resolve(candidates, compacted))
    }

    /// The tenant's index, re-read only when its ETag changed; `None` when
    /// there is none (no compactor has run yet).
    async fn read_index(&self, tenant: &TenantId) -> Result<Option<Arc<TenantIndex>>> {
        let path = paths::tenant_index_path(tenant);
        let cached = self
            .indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .cloned();
        let options = GetOptions {
            if_none_match: cached.as_ref().map(|(etag, _)| etag.clone()),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotModified { .. }) => {
                return Ok(cached.map(|(_, index)| index));
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.indexes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(tenant);
                return Ok(None);
            }
            Err(source) => {
                return Err(strata_common::Error::object_store("get", &path)(source).into());
            }
        };
        let etag = result.meta.e_tag.clone();
        let bytes = result
            .bytes()
            .await
            .map_err(strata_common::Error::object_store("get", &path))?;
        let index = match TenantIndex::decode(&bytes, &path) {
            Ok(index) if index.version > TENANT_INDEX_VERSION => {
                warn!(%tenant, version = index.version, "tenant index from a newer Strata; listing the tenant instead");
                return Ok(None);
            }
            Ok(index) => Arc::new(index),
            Err(error) => {
                warn!(%tenant, %error, "tenant index unreadable; listing the tenant instead");
                return Ok(None);
            }
        };
        if let Some(etag) = etag {
            self.indexes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(tenant.clone(), (etag, Arc::clone(&index)));
        }
        Ok(Some(index))
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
