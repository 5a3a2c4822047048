//! One-shot commands: `strata compact --once`, `strata blocks list`,
//! `strata blocks inspect`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use object_store::ObjectStore;
use serde::Serialize;
use strata_common::block::list_tenants;
use strata_common::catalog::{RetireReason, block_objects, read_compacted_meta};
use strata_common::{BlockId, BlockMeta, TenantId};
use strata_compactor::{Compactor, MetaCache, PassReport, TenantState};

use crate::config::{BlocksCommand, Command, Config};
use crate::error::{Error, Result};

/// Runs `command` against the configured store and prints its result.
pub(crate) async fn run(
    config: &Config,
    store: Arc<dyn ObjectStore>,
    command: Command,
) -> Result<()> {
    match command {
        Command::Compact { once: _, json } => compact_once(config, store, json).await,
        Command::Blocks {
            command: BlocksCommand::List { tenant, json },
        } => list_blocks(store, tenant, json).await,
        Command::Blocks {
            command: BlocksCommand::Inspect { block_id, tenant },
        } => inspect_block(store, &block_id, tenant).await,
    }
}

#[derive(Serialize)]
struct CompactOutput {
    #[serde(flatten)]
    report: PassReport,
    elapsed_seconds: f64,
}

async fn compact_once(config: &Config, store: Arc<dyn ObjectStore>, json: bool) -> Result<()> {
    let started = Instant::now();
    let compactor = Compactor::new(store, config.compactor.clone());
    let report = compactor.run_once(SystemTime::now()).await?;
    let elapsed_seconds = started.elapsed().as_secs_f64();
    if json {
        print_json(&CompactOutput {
            report,
            elapsed_seconds,
        })?;
        return Ok(());
    }
    let r = &report;
    println!(
        "compacted {} blocks into {} in {} jobs ({} failed, {} lease conflicts) over {} tenants in {elapsed_seconds:.1}s",
        r.blocks_in, r.blocks_out, r.jobs_run, r.jobs_failed, r.lease_conflicts, r.tenants
    );
    println!(
        "  read {} B, wrote {} B; {} spans in, {} out, {} duplicates dropped, {} traces joined",
        r.bytes_read,
        r.bytes_written,
        r.merge.spans_in,
        r.merge.spans_out,
        r.merge.duplicates_dropped,
        r.merge.traces_joined
    );
    println!(
        "  retired {} past retention, deleted {} after the grace period; {} live blocks, {} still to compact",
        r.retirement.blocks_expired,
        r.retirement.blocks_deleted,
        r.live_blocks,
        r.outstanding_blocks
    );
    Ok(())
}

/// One row of `strata blocks list`.
#[derive(Serialize)]
struct BlockRow {
    tenant: String,
    block_id: BlockId,
    /// `live`, `compacted`, `expired` (past retention), `replaced` (a live
    /// block replaces it, marking pending) or `uncommitted`.
    state: &'static str,
    level: Option<u32>,
    start_time: Option<String>,
    end_time: Option<String>,
    spans: Option<u64>,
    traces: Option<u64>,
    data_bytes: Option<u64>,
    stored_bytes: u64,
}

fn rfc3339(unix_nano: u64) -> String {
    humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix_nano),
    )
    .to_string()
}

fn row(tenant: &TenantId, state: &'static str, meta: &BlockMeta, stored_bytes: u64) -> BlockRow {
    BlockRow {
        tenant: tenant.to_string(),
        block_id: meta.block_id,
        state,
        level: Some(meta.compaction_level),
        start_time: Some(rfc3339(meta.start_time_unix_nano)),
        end_time: Some(rfc3339(meta.end_time_unix_nano)),
        spans: Some(meta.span_count),
        traces: Some(meta.trace_count),
        data_bytes: Some(meta.data_size_bytes),
        stored_bytes,
    }
}

async fn tenants(store: &dyn ObjectStore, tenant: Option<String>) -> Result<Vec<TenantId>> {
    match tenant {
        Some(t) => Ok(vec![
            TenantId::new(t).map_err(|e| Error::Config(e.to_string()))?,
        ]),
        None => Ok(list_tenants(store).await?),
    }
}

async fn list_blocks(
    store: Arc<dyn ObjectStore>,
    tenant: Option<String>,
    json: bool,
) -> Result<()> {
    let mut rows = Vec::new();
    let mut cache = MetaCache::default();
    for tenant in tenants(store.as_ref(), tenant).await? {
        let state = TenantState::load(store.as_ref(), &tenant, &mut cache)
            .await
            .map_err(Error::Compactor)?;
        for (id, objects) in &state.objects {
            let stored = objects.size_bytes();
            if let Some(meta) = state.live.get(id) {
                rows.push(row(&tenant, "live", meta, stored));
            } else if let Some(compacted) = state.compacted.get(id) {
                let name = match compacted.reason {
                    RetireReason::Compaction => "compacted",
                    RetireReason::Retention => "expired",
                };
                rows.push(row(&tenant, name, &compacted.meta, stored));
            } else if let Some((meta, _)) = state
                .replaced_unmarked
                .iter()
                .find(|(m, _)| m.block_id == *id)
            {
                rows.push(row(&tenant, "replaced", meta, stored));
            } else {
                rows.push(BlockRow {
                    tenant: tenant.to_string(),
                    block_id: *id,
                    state: "uncommitted",
                    level: None,
                    start_time: None,
                    end_time: None,
                    spans: None,
                    traces: None,
                    data_bytes: None,
                    stored_bytes: stored,
                });
            }
        }
    }
    if json {
        return print_json(&rows);
    }
    println!(
        "{:<16} {:<36} {:<11} {:>5} {:<24} {:<24} {:>11} {:>9} {:>13}",
        "TENANT", "BLOCK", "STATE", "LEVEL", "START", "END", "SPANS", "TRACES", "BYTES"
    );
    let dash = || "-".to_owned();
    for r in &rows {
        println!(
            "{:<16} {:<36} {:<11} {:>5} {:<24} {:<24} {:>11} {:>9} {:>13}",
            r.tenant,
            r.block_id.to_string(),
            r.state,
            r.level.map_or_else(dash, |l| l.to_string()),
            r.start_time.clone().unwrap_or_else(dash),
            r.end_time.clone().unwrap_or_else(dash),
            r.spans.map_or_else(dash, |s| s.to_string()),
            r.traces.map_or_else(dash, |t| t.to_string()),
            r.stored_bytes
        );
    }
    let live = rows.iter().filter(|r| r.state == "live").count();
    println!("{} blocks, {live} live", rows.len());
    Ok(())
}

#[derive(Serialize)]
struct Inspection {
    tenant: String,
    block_id: BlockId,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<BlockMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compacted: Option<strata_common::catalog::CompactedMeta>,
    objects: Vec<ObjectRow>,
}

#[derive(Serialize)]
struct ObjectRow {
    path: String,
    size: u64,
    last_modified: String,
}

async fn inspect_block(
    store: Arc<dyn ObjectStore>,
    block_id: &str,
    tenant: Option<String>,
) -> Result<()> {
    let block: BlockId = block_id
        .parse()
        .map_err(|e: strata_common::Error| Error::Config(e.to_string()))?;
    for tenant in tenants(store.as_ref(), tenant).await? {
        let Some(objects) = block_objects(store.as_ref(), &tenant, block).await? else {
            continue;
        };
        let meta = strata_common::block::read_meta(store.as_ref(), &tenant, block).await?;
        let compacted = read_compacted_meta(store.as_ref(), &tenant, block).await?;
        let state = match (&meta, &compacted) {
            (_, Some(c)) if c.reason == RetireReason::Retention => "expired",
            (_, Some(_)) => "compacted",
            (Some(_), None) => "committed",
            (None, None) => "uncommitted",
        };
        return print_json(&Inspection {
            tenant: tenant.to_string(),
            block_id: block,
            state,
            meta,
            compacted,
            objects: objects
                .objects
                .iter()
                .map(|o| ObjectRow {
                    path: o.location.to_string(),
                    size: o.size,
                    last_modified: o.last_modified.to_rfc3339(),
                })
                .collect(),
        });
    }
    Err(Error::Config(format!("block {block} not found")))
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Config(format!("encoding JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
