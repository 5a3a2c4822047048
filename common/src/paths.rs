//! Object-store paths: the one place that knows the bucket layout.
//!
//! ```text
//! <tenant>/index.json.gz                   (the tenant index: live and compacted metas)
//! <tenant>/<block-id>/data.parquet
//! <tenant>/<block-id>/bloom-<shard>
//! <tenant>/<block-id>/traces.parquet        (format 2: one row per trace)
//! <tenant>/<block-id>/summary.json.gz       (format 2: attribute keys and values)
//! <tenant>/<block-id>/meta.json            (written last: the block's commit point)
//! <tenant>/<block-id>/meta.compacted.json  (retired: meta.json removed, objects removed later)
//! <tenant>/<block-id>/lease-<epoch>.json   (a compactor's claim on the block)
//! ```

use object_store::path::Path;

use crate::ids::{BlockId, TenantId};

/// File name of a block's metadata.
pub const META_FILE: &str = "meta.json";
/// File name of a block's span data.
pub const DATA_FILE: &str = "data.parquet";
/// File name of a retired block's metadata: written (and `meta.json`
/// removed) when the block is compacted away or past retention; the block's
/// objects are removed after the grace period.
pub const COMPACTED_META_FILE: &str = "meta.compacted.json";
/// File name of a block's trace table (format version 2).
pub const TRACES_FILE: &str = "traces.parquet";
/// File name of a block's attribute summary (format version 2).
pub const SUMMARY_FILE: &str = "summary.json.gz";
/// File name prefix of a block's bloom filter shards.
pub const BLOOM_FILE_PREFIX: &str = "bloom-";
/// File name prefix of a block's lease objects.
pub const LEASE_FILE_PREFIX: &str = "lease-";
/// File name of the per-tenant index.
pub const TENANT_INDEX_FILE: &str = "index.json.gz";

/// `<tenant>/`
pub fn tenant_prefix(tenant: &TenantId) -> Path {
    Path::from(tenant.as_str())
}

/// `<tenant>/index.json.gz`
pub fn tenant_index_path(tenant: &TenantId) -> Path {
    tenant_prefix(tenant).join(TENANT_INDEX_FILE)
}

/// `<tenant>/<block>/`
pub fn block_prefix(tenant: &TenantId, block: BlockId) -> Path {
    tenant_prefix(tenant).join(block.to_string())
}

/// `<tenant>/<block>/meta.json`
pub fn meta_path(tenant: &TenantId, block: BlockId) -> Path {
    block_prefix(tenant, block).join(META_FILE)
}

/// `<tenant>/<block>/data.parquet`
pub fn data_path(tenant: &TenantId, block: BlockId) -> Path {
    block_prefix(tenant, block).join(DATA_FILE)
}

/// `<tenant>/<block>/<name>`, for any of a block's objects.
pub fn block_object_path(tenant: &TenantId, block: BlockId, name: &str) -> Path {
    block_prefix(tenant, block).join(name)
}

/// `<tenant>/<block>/traces.parquet`
pub fn traces_path(tenant: &TenantId, block: BlockId) -> Path {
    block_prefix(tenant, block).join(TRACES_FILE)
}

/// `<tenant>/<block>/summary.json.gz`
pub fn summary_path(tenant: &TenantId, block: BlockId) -> Path {
    block_prefix(tenant, block).join(SUMMARY_FILE)
}

/// `<tenant>/<block>/meta.compacted.json`
pub fn compacted_meta_path(tenant: &TenantId, block: BlockId) -> Path {
    block_prefix(tenant, block).join(COMPACTED_META_FILE)
}

/// `<tenant>/<block>/bloom-<shard>`
pub fn bloom_path(tenant: &TenantId, block: BlockId, shard: u32) -> Path {
    block_prefix(tenant, block).join(format!("{BLOOM_FILE_PREFIX}{shard}"))
}

/// `<tenant>/<block>/lease-<epoch>.json`, the epoch zero-padded so leases
/// list in epoch order.
pub fn lease_path(tenant: &TenantId, block: BlockId, epoch: u64) -> Path {
    block_prefix(tenant, block).join(format!("{LEASE_FILE_PREFIX}{epoch:010}.json"))
}

/// The epoch of a lease object's file name, `None` for other objects.
pub fn lease_epoch(file_name: &str) -> Option<u64> {
    file_name
        .strip_prefix(LEASE_FILE_PREFIX)?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_format_doc() {
        let tenant = TenantId::new("acme").unwrap();
        let block: BlockId = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        assert_eq!(
            meta_path(&tenant, block).as_ref(),
            "acme/01890a5d-ac96-774b-bcce-b302099a8057/meta.json"
        );
        assert_eq!(
            bloom_path(&tenant, block, 3).as_ref(),
            "acme/01890a5d-ac96-774b-bcce-b302099a8057/bloom-3"
        );
        assert_eq!(tenant_index_path(&tenant).as_ref(), "acme/index.json.gz");
        let lease = lease_path(&tenant, block, 7);
        assert_eq!(
            lease.as_ref(),
            "acme/01890a5d-ac96-774b-bcce-b302099a8057/lease-0000000007.json"
        );
        assert_eq!(lease_epoch(lease.filename().unwrap()), Some(7));
        assert_eq!(lease_epoch("meta.json"), None);
    }
}
