//! Ingester settings.

use std::time::Duration;

use strata_common::block::BlockWriteOptions;

/// How the ingester buffers and cuts blocks.
#[derive(Debug, Clone)]
pub struct IngesterConfig {
    /// Cut a tenant's block once its buffered spans take this many bytes
    /// (Arrow in-memory size).
    pub block_max_bytes: usize,
    /// Cut a tenant's block once its oldest buffered span is this old.
    pub block_max_age: Duration,
    /// Refuse new spans (429 / RESOURCE_EXHAUSTED) while unflushed spans of
    /// all tenants take more than this many bytes.
    pub max_live_bytes: usize,
    /// Largest accepted request body (after decompression) in bytes.
    pub max_request_bytes: usize,
    /// Keep spans queryable here for this long after their block is written,
    /// so queriers that poll the store have time to discover the block.
    pub complete_block_timeout: Duration,
    /// How often the flush loop checks buffer sizes and ages.
    pub flush_check_interval: Duration,
    /// Block format tunables.
    pub block: BlockWriteOptions,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            block_max_bytes: 128 * 1024 * 1024,
            block_max_age: Duration::from_secs(300),
            max_live_bytes: 1024 * 1024 * 1024,
            max_request_bytes: 16 * 1024 * 1024,
            complete_block_timeout: Duration::from_secs(30),
            flush_check_interval: Duration::from_secs(1),
            block: BlockWriteOptions::default(),
        }
    }
}
