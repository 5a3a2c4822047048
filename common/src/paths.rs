//! Object-store paths: the one place that knows the bucket layout.
//!
//! ```text
//! <tenant>/<block-id>/data.parquet
//! <tenant>/<block-id>/bloom-<shard>
//! <tenant>/<block-id>/meta.json      (written last: the block's commit point)
//! <tenant>/<block-id>/deleted.json   (retired: meta.json removed, objects removed later)
//! ```

use object_store::path::Path;

use crate::ids::{BlockId, TenantId};

/// File name of a block's metadata.
pub const META_FILE: &str = "meta.json";
/// File name of a block's span data.
pub const DATA_FILE: &str = "data.parquet";
/// File name of a block's deletion marker: written (and `meta.json` removed)
/// when the block is retired; its objects are removed some time later.
pub const DELETION_MARKER_FILE: &str = "deleted.json";
/// File name prefix of a block's bloom filter shards.
pub const BLOOM_FILE_PREFIX: &str = "bloom-";

/// `<tenant>/`
pub fn tenant_prefix(tenant: &TenantId) -> Path {
    Path::from(tenant.as_str())
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

/// `<tenant>/<block>/deleted.json`
pub fn deletion_marker_path(tenant: &TenantId, block: BlockId) -> Path {
    block_prefix(tenant, block).join(DELETION_MARKER_FILE)
}

/// `<tenant>/<block>/bloom-<shard>`
pub fn bloom_path(tenant: &TenantId, block: BlockId, shard: u32) -> Path {
    block_prefix(tenant, block).join(format!("{BLOOM_FILE_PREFIX}{shard}"))
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
    }
}
