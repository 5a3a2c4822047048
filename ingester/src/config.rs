//! Ingester settings.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use strata_common::TenantId;
use strata_common::block::BlockWriteOptions;

use crate::limits::TenantLimits;

/// How the ingester logs, buffers, cuts and uploads.
#[derive(Debug, Clone)]
pub struct IngesterConfig {
    /// Directory of the write-ahead log; the local upload queue lives in its
    /// `blocks/` subdirectory.
    pub wal_dir: PathBuf,
    /// A WAL segment is closed once it holds this many bytes.
    pub wal_segment_bytes: u64,
    /// Disk budget of the WAL plus the upload queue. Beyond it new exports
    /// are refused with a retryable answer (503 / `UNAVAILABLE`).
    pub wal_max_bytes: u64,
    /// A trace is complete once no span has arrived for this long.
    pub trace_idle_period: Duration,
    /// ... or once it has been live this long.
    pub trace_max_live: Duration,
    /// Cut a tenant's complete traces into a block once they take this many
    /// bytes (in-memory Arrow size) ...
    pub block_max_bytes: usize,
    /// ... or once the oldest of them has waited this long.
    pub block_max_age: Duration,
    /// Refuse exports (429 / `RESOURCE_EXHAUSTED`) while spans held in memory
    /// take more than this many bytes.
    pub max_live_bytes: usize,
    /// Largest accepted request body (after decompression) in bytes.
    pub max_request_bytes: usize,
    /// Time allowed for one block's upload before it is retried.
    pub upload_timeout: Duration,
    /// Keep an uploaded block in the local queue, still served to lookups,
    /// this long: queriers that find blocks by polling need time to see it.
    pub complete_block_timeout: Duration,
    /// How often the cut loop looks for complete traces.
    pub flush_check_interval: Duration,
    /// Limits for tenants without an override.
    pub limits: TenantLimits,
    /// Per-tenant limit overrides.
    pub tenant_limits: HashMap<TenantId, TenantLimits>,
    /// Block format tunables.
    pub block: BlockWriteOptions,
}

impl IngesterConfig {
    /// Defaults, logging to `wal_dir`.
    pub fn new(wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            wal_dir: wal_dir.into(),
            wal_segment_bytes: 64 * 1024 * 1024,
            wal_max_bytes: 16 * 1024 * 1024 * 1024,
            trace_idle_period: Duration::from_secs(10),
            trace_max_live: Duration::from_secs(30),
            block_max_bytes: 128 * 1024 * 1024,
            block_max_age: Duration::from_secs(60),
            max_live_bytes: 2 * 1024 * 1024 * 1024,
            max_request_bytes: 16 * 1024 * 1024,
            upload_timeout: Duration::from_secs(60),
            complete_block_timeout: Duration::from_secs(30),
            flush_check_interval: Duration::from_secs(1),
            limits: TenantLimits::default(),
            tenant_limits: HashMap::new(),
            block: BlockWriteOptions::default(),
        }
    }

    /// The directory of locally queued blocks.
    pub fn queue_dir(&self) -> PathBuf {
        self.wal_dir.join("blocks")
    }

    /// The directory of WAL segments.
    pub fn segments_dir(&self) -> PathBuf {
        self.wal_dir.join("segments")
    }
}
