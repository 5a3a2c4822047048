//! Running one compaction job: lease the inputs, merge them into a new
//! block, commit it, mark the inputs compacted, release.
//!
//! Order is what keeps readers exact. The output's `meta.json` is written
//! last and names its inputs (`compacted_from`), so the moment it exists
//! readers use it instead of the inputs; only then are the inputs marked.
//! A crash before the commit leaves an invisible partial output (removed
//! by whoever takes the expired lease); a crash after it leaves inputs that
//! every reader already ignores and the next pass marks.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use object_store::{ObjectStore, ObjectStoreExt};
use strata_common::block::{StreamingBlockWriter, dedicated_for_merge, read_meta};
use strata_common::catalog::{
    CompactedMeta, RetireReason, block_objects, delete_block_objects, mark_compacted,
};
use strata_common::{BlockId, BlockMeta, TenantId, paths};
use tracing::{info, warn};

use crate::error::Result;
use crate::lease::{Acquired, JobLease, LeaseBody, owner_name};
use crate::merge::{MergeStats, merge_into};
use crate::selection::Job;
use crate::{CompactorConfig, unix_nano};

/// What became of a job.
#[derive(Debug)]
pub(crate) enum JobOutcome {
    /// The output is committed and the inputs are marked.
    Done(Box<JobDone>),
    /// Another compactor holds an input.
    Conflict,
    /// An input is no longer live (another compactor got there first).
    Stale,
}

/// A finished job's figures.
#[derive(Debug)]
pub(crate) struct JobDone {
    pub(crate) output: BlockMeta,
    pub(crate) stats: MergeStats,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    pub(crate) elapsed: std::time::Duration,
    /// Blocks marked compacted for a dead owner's committed job instead.
    pub(crate) rolled_forward: bool,
}

/// Runs `job` for `tenant`. CPU-heavy: call on a blocking thread.
pub(crate) async fn run_job(
    store: Arc<dyn ObjectStore>,
    config: &CompactorConfig,
    tenant: &TenantId,
    job: &Job,
) -> Result<JobOutcome> {
    let started = Instant::now();
    let output_id = BlockId::new_v7();
    let body = LeaseBody {
        owner: owner_name(),
        output: output_id,
        inputs: job.inputs.iter().map(|m| m.block_id).collect(),
    };
    let mut lease = match JobLease::acquire(store.as_ref(), tenant, &body, config.lease_ttl).await?
    {
        Acquired::Held(lease) => lease,
        Acquired::Conflict => return Ok(JobOutcome::Conflict),
    };
    let result = run_leased(
        Arc::clone(&store),
        config,
        tenant,
        job,
        output_id,
        &mut lease,
        started,
    )
    .await;
    lease.release(store.as_ref()).await?;
    result
}

async fn run_leased(
    store: Arc<dyn ObjectStore>,
    config: &CompactorConfig,
    tenant: &TenantId,
    job: &Job,
    output_id: BlockId,
    lease: &mut JobLease,
    started: Instant,
) -> Result<JobOutcome> {
    // Jobs of owners that died on these inputs: finish committed ones,
    // clear the debris of the others.
    for dead in std::mem::take(&mut lease.expired) {
        match read_meta(store.as_ref(), tenant, dead.output).await? {
            Some(output) => {
                warn!(%tenant, output = %dead.output, owner = %dead.owner, "finishing a committed job whose compactor died");
                finish_dead_job(store.as_ref(), &output).await?;
                return Ok(JobOutcome::Done(Box::new(JobDone {
                    bytes_read: 0,
                    bytes_written: 0,
                    stats: MergeStats::default(),
                    output,
                    elapsed: started.elapsed(),
                    rolled_forward: true,
                })));
            }
            None => {
                // Only an uncommitted prefix is debris: a dead job's output
                // that was committed and has since been compacted is a
                // block like any other.
                if let Some(objects) = block_objects(store.as_ref(), tenant, dead.output).await?
                    && !objects.committed
                    && !objects.compacted
                {
                    warn!(%tenant, output = %dead.output, owner = %dead.owner, "removing the partial output of a compactor that died");
                    delete_block_objects(store.as_ref(), &objects).await?;
                }
            }
        }
    }
    // Our view may predate another compactor's job on these inputs: with
    // the leases held, check that each is still live.
    for meta in &job.inputs {
        let path = paths::meta_path(tenant, meta.block_id);
        match store.as_ref().head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(JobOutcome::Stale),
            Err(e) => return Err(strata_common::Error::object_store("head", &path)(e).into()),
        }
    }

    let dedicated = dedicated_for_merge(store.as_ref(), &job.inputs).await?;
    let mut writer = StreamingBlockWriter::new(
        Arc::clone(&store),
        tenant.clone(),
        output_id,
        job.output_level(),
        usize::try_from(job.trace_count()).unwrap_or(usize::MAX),
        dedicated,
        config.block.clone(),
    )?;
    let stats = match merge_into(Arc::clone(&store), &job.inputs, &mut writer, lease).await {
        Ok(stats) => stats,
        Err(e) => {
            writer.abort().await;
            return Err(e);
        }
    };
    // Last check before the commit point.
    if let Err(e) = lease.verify(store.as_ref()).await {
        writer.abort().await;
        return Err(e);
    }
    let inputs: Vec<BlockId> = job.inputs.iter().map(|m| m.block_id).collect();
    let output = writer.finish(inputs).await?;
    // The inputs' metas are in hand: no need to read them back.
    mark_replaced(
        store.as_ref(),
        job.inputs.iter().map(|m| &**m),
        output.block_id,
    )
    .await?;
    let bytes_read = job.data_bytes();
    let bytes_written = output.data_size_bytes
        + output.bloom_size_bytes
        + output.trace_table_size_bytes
        + output.summary_size_bytes;
    info!(
        %tenant,
        output = %output.block_id,
        level = output.compaction_level,
        inputs = job.inputs.len(),
        spans = stats.spans_out,
        duplicates = stats.duplicates_dropped,
        traces_joined = stats.traces_joined,
        bytes_read,
        bytes_written,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compacted blocks"
    );
    Ok(JobOutcome::Done(Box::new(JobDone {
        output,
        stats,
        bytes_read,
        bytes_written,
        elapsed: started.elapsed(),
        rolled_forward: false,
    })))
}

/// Marks the inputs of a dead owner's committed block `output` compacted,
/// reading each one's `meta.json` (one already marked has none).
async fn finish_dead_job(store: &dyn ObjectStore, output: &BlockMeta) -> Result<()> {
    let mut inputs = Vec::new();
    for input in &output.compacted_from {
        inputs.extend(read_meta(store, &output.tenant, *input).await?);
    }
    mark_replaced(store, &inputs, output.block_id).await
}

/// Marks `inputs` compacted, replaced by `output`.
async fn mark_replaced<'a>(
    store: &dyn ObjectStore,
    inputs: impl IntoIterator<Item = &'a BlockMeta>,
    output: BlockId,
) -> Result<()> {
    let now_unix_nano = unix_nano(SystemTime::now());
    for meta in inputs {
        mark_compacted(
            store,
            &CompactedMeta {
                compacted_at_unix_nano: now_unix_nano,
                reason: RetireReason::Compaction,
                replaced_by: Some(output),
                meta: meta.clone(),
            },
        )
        .await?;
    }
    Ok(())
}
