//! Strata's compactor: merges small blocks into large ones, joins the
//! fragments of a trace, enforces retention, and keeps each tenant's index.
//!
//! A pass, per tenant:
//!
//! 1. list the tenant's blocks ([`TenantState`]);
//! 2. retire: mark blocks past retention, finish marking the inputs of
//!    committed jobs whose compactor died, delete blocks marked longer ago
//!    than the grace period, remove old upload debris;
//! 3. compact: plan jobs by window and level ([`plan_jobs`]) and run them,
//!    round after round, until no job is left;
//! 4. write `<tenant>/index.json.gz` from a fresh listing.
//!
//! Several compactors may share a store: a job leases its inputs through
//! conditional writes, so no two compactors merge the same block. See
//! `docs/compaction.md` for the rules and their reasons.

mod error;
mod job;
mod lease;
mod merge;
mod retention;
mod selection;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;
use strata_common::TenantId;
use strata_common::block::{BlockWriteOptions, list_tenants};
use strata_common::catalog::write_tenant_index;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use error::{Error, Result};
pub use merge::MergeStats;
pub use retention::{DEBRIS_AGE, RetirementReport};
pub use selection::{ACTIVE_PERIOD, Job, plan_jobs};
pub use state::{MetaCache, TenantState};

use crate::job::JobOutcome;

/// Compactor settings. `docs/compaction.md` explains each default.
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Whether passes merge blocks; retention, deletion and the tenant index
    /// run either way.
    pub merge: bool,
    /// Blocks whose newest span is older than this are retired.
    pub retention: Duration,
    /// Per-tenant retention overriding [`retention`](Self::retention).
    pub tenant_retention: HashMap<TenantId, Duration>,
    /// How long a retired block stays readable before its objects are
    /// removed: at least twice the queriers' block-list poll, so a querier
    /// with a stale list never reads a vanished block.
    pub deletion_delay: Duration,
    /// Blocks are grouped into windows of this length by end time.
    pub window: Duration,
    /// Most blocks merged by one job.
    pub max_input_blocks: usize,
    /// Most spans merged by one job.
    pub max_job_spans: u64,
    /// Most input bytes (`data.parquet`) merged by one job: the output is
    /// at most about this large.
    pub max_block_bytes: u64,
    /// A job's lease on its inputs lapses this long after its last renewal.
    pub lease_ttl: Duration,
    /// How output blocks are encoded.
    pub block: BlockWriteOptions,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            merge: true,
            retention: Duration::from_secs(14 * 24 * 3600),
            tenant_retention: HashMap::new(),
            deletion_delay: Duration::from_secs(300),
            window: Duration::from_secs(3600),
            max_input_blocks: 8,
            max_job_spans: 20_000_000,
            max_block_bytes: 4 * 1024 * 1024 * 1024,
            lease_ttl: Duration::from_secs(300),
            block: compacted_block_options(BlockWriteOptions::default()),
        }
    }
}

/// Target encoded size of a row group in compacted blocks (ingest blocks use
/// 64 MiB). A trace-by-ID lookup prunes to one row group and then works
/// through its page index; 8 MiB row groups (~130k TS-1 spans) made lookups
/// in a compacted block ~4% faster than 64 MiB ones at no cost in size, and
/// bound the output's open row group, the largest part of a job's memory.
/// `docs/benchmarks.md` has the measurements.
pub const COMPACTED_ROW_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// `options` with the row-group size compacted blocks use.
pub fn compacted_block_options(options: BlockWriteOptions) -> BlockWriteOptions {
    BlockWriteOptions {
        row_group_target_bytes: COMPACTED_ROW_GROUP_BYTES,
        ..options
    }
}

impl CompactorConfig {
    /// The retention that applies to `tenant`.
    pub fn retention_for(&self, tenant: &TenantId) -> Duration {
        self.tenant_retention
            .get(tenant)
            .copied()
            .unwrap_or(self.retention)
    }
}

/// The most job rounds in one pass: each round raises levels by one, so
/// this bounds a pass even if blocks keep arriving.
const MAX_ROUNDS: usize = 16;

/// What a pass did, summed over tenants.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct PassReport {
    /// Tenants visited.
    pub tenants: usize,
    /// Jobs that committed a block.
    pub jobs_run: usize,
    /// Jobs that failed (their partial output is invisible).
    pub jobs_failed: usize,
    /// Jobs skipped because another compactor held an input.
    pub lease_conflicts: usize,
    /// Blocks merged away.
    pub blocks_in: usize,
    /// Blocks written.
    pub blocks_out: usize,
    /// Bytes of input `data.parquet` read.
    pub bytes_read: u64,
    /// Bytes of output data and bloom written.
    pub bytes_written: u64,
    /// Merge figures.
    pub merge: MergeStats,
    /// Time spent in jobs.
    pub job_seconds: f64,
    /// Retirement figures.
    pub retirement: RetirementReport,
    /// Live blocks left, over all tenants.
    pub live_blocks: usize,
    /// Live blocks that a job could still merge.
    pub outstanding_blocks: usize,
}

impl PassReport {
    fn add_retirement(&mut self, r: RetirementReport) {
        self.retirement.blocks_expired += r.blocks_expired;
        self.retirement.blocks_rolled_forward += r.blocks_rolled_forward;
        self.retirement.blocks_deleted += r.blocks_deleted;
        self.retirement.debris_deleted += r.debris_deleted;
    }
}

pub(crate) fn unix_nano(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs block upkeep over one object store.
#[derive(Debug)]
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    config: CompactorConfig,
    cache: tokio::sync::Mutex<MetaCache>,
    cancel: CancellationToken,
}

impl Compactor {
    /// A compactor over `store`.
    pub fn new(store: Arc<dyn ObjectStore>, config: CompactorConfig) -> Self {
        Self {
            store,
            config,
            cache: tokio::sync::Mutex::new(MetaCache::default()),
            cancel: CancellationToken::new(),
        }
    }

    /// One pass over every tenant, as of `now` (retention, deletion and
    /// the active window are judged against it; leases use the real clock).
    pub async fn run_once(&self, now: SystemTime) -> Result<PassReport> {
        let mut cache = self.cache.lock().await;
        let mut report = PassReport::default();
        for tenant in list_tenants(self.store.as_ref()).await? {
            if self.cancel.is_cancelled() {
                break;
            }
            self.tenant_pass(&tenant, now, &mut cache, &mut report)
                .await?;
            report.tenants += 1;
        }
        Ok(report)
    }

    async fn tenant_pass(
        &self,
        tenant: &TenantId,
        now: SystemTime,
        cache: &mut MetaCache,
        report: &mut PassReport,
    ) -> Result<()> {
        let now_nanos = unix_nano(now);
        let store = self.store.as_ref();
        let mut state = TenantState::load(store, tenant, cache).await?;
        let retired = retention::retire(store, &self.config, tenant, &mut state, now_nanos).await?;
        report.add_retirement(retired);

        for _ in 0..MAX_ROUNDS {
            let live: Vec<_> = state.live.values().cloned().collect();
            let jobs = plan_jobs(&live, &self.config, now_nanos);
            if !self.config.merge || jobs.is_empty() || self.cancel.is_cancelled() {
                break;
            }
            let mut progressed = false;
            for job in jobs {
                if self.cancel.is_cancelled() {
                    break;
                }
                match self.run_job(tenant, &job).await {
                    Ok(JobOutcome::Done(done)) => {
                        progressed = true;
                        for input in &done.output.compacted_from {
                            state.live.remove(input);
                        }
                        if !done.rolled_forward {
                            report.jobs_run += 1;
                            report.blocks_in += done.output.compacted_from.len();
                            report.blocks_out += 1;
                            report.bytes_read += done.bytes_read;
                            report.bytes_written += done.bytes_written;
                            report.merge.spans_in += done.stats.spans_in;
                            report.merge.spans_out += done.stats.spans_out;
                            report.merge.duplicates_dropped += done.stats.duplicates_dropped;
                            report.merge.traces_joined += done.stats.traces_joined;
                            report.job_seconds += done.elapsed.as_secs_f64();
                            metrics::counter!("strata_compactor_jobs_total", "outcome" => "done")
                                .increment(1);
                            metrics::counter!("strata_compactor_bytes_read_total")
                                .increment(done.bytes_read);
                            metrics::counter!("strata_compactor_bytes_written_total")
                                .increment(done.bytes_written);
                            metrics::counter!("strata_compactor_spans_deduplicated_total")
                                .increment(done.stats.duplicates_dropped);
                        }
                        state
                            .live
                            .insert(done.output.block_id, Arc::new(done.output));
                    }
                    Ok(JobOutcome::Conflict) => {
                        report.lease_conflicts += 1;
                        metrics::counter!("strata_compactor_jobs_total", "outcome" => "lease_conflict")
                            .increment(1);
                        for input in &job.inputs {
                            state.live.remove(&input.block_id);
                        }
                    }
                    Ok(JobOutcome::Stale) => {
                        metrics::counter!("strata_compactor_jobs_total", "outcome" => "stale")
                            .increment(1);
                        for input in &job.inputs {
                            state.live.remove(&input.block_id);
                        }
                    }
                    Err(error) => {
                        warn!(%tenant, %error, inputs = job.inputs.len(), "compaction job failed; its output is discarded");
                        report.jobs_failed += 1;
                        metrics::counter!("strata_compactor_jobs_total", "outcome" => "failed")
                            .increment(1);
                        // Leave the inputs out of later rounds of this pass.
                        for input in &job.inputs {
                            state.live.remove(&input.block_id);
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }

        // The index comes from a fresh listing: other compactors may have
        // worked on this tenant meanwhile.
        let fresh = TenantState::load(store, tenant, cache).await?;
        write_tenant_index(store, tenant, &fresh.index()).await?;
        let live: Vec<_> = fresh.live.values().cloned().collect();
        let outstanding: usize = plan_jobs(&live, &self.config, now_nanos)
            .iter()
            .map(|j| j.inputs.len())
            .sum();
        report.live_blocks += live.len();
        report.outstanding_blocks += outstanding;
        metrics::gauge!("strata_compactor_outstanding_blocks", "tenant" => tenant.to_string())
            .set(outstanding as f64);
        metrics::gauge!("strata_compactor_live_blocks", "tenant" => tenant.to_string())
            .set(live.len() as f64);
        Ok(())
    }

    /// Runs a job on a blocking thread: decoding and encoding Parquet is CPU
    /// work that must not stall the async workers serving requests.
    async fn run_job(&self, tenant: &TenantId, job: &Job) -> Result<JobOutcome> {
        let handle = tokio::runtime::Handle::current();
        let store = Arc::clone(&self.store);
        let config = self.config.clone();
        let tenant = tenant.clone();
        let job = job.clone();
        let cancel = self.cancel.clone();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                tokio::select! {
                    outcome = job::run_job(store, &config, &tenant, &job) => outcome,
                    () = cancel.cancelled() => Err(Error::Cancelled),
                }
            })
        })
        .await?
    }

    /// Runs a pass every `interval` until `cancel` fires. A job in progress
    /// when it fires is abandoned: its output stays invisible and its leases
    /// lapse.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let forward = {
            let mine = self.cancel.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                mine.cancel();
            })
        };
        loop {
            let started = Instant::now();
            match self.run_once(SystemTime::now()).await {
                Ok(report)
                    if report.jobs_run > 0 || report.retirement != RetirementReport::default() =>
                {
                    info!(
                        jobs = report.jobs_run,
                        failed = report.jobs_failed,
                        blocks_in = report.blocks_in,
                        blocks_out = report.blocks_out,
                        live_blocks = report.live_blocks,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "compactor pass"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "compactor pass failed; retrying next interval");
                    metrics::counter!("strata_compactor_failures_total").increment(1);
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
        forward.abort();
    }
}
