//! Which blocks to merge: grouping by time window and level, then cutting
//! each group into jobs under the size limits.
//!
//! The rules follow Tempo's block selector. A block belongs to the window
//! of its end time. Within the last [`ACTIVE_PERIOD`], where ingesters keep
//! adding level-0 blocks, a group is one window and one level, so fresh
//! small blocks merge with each other rather than being rewritten into a
//! large block again and again. Older windows no longer grow, so all their
//! levels form one group and end as few blocks as the limits allow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strata_common::BlockMeta;

use crate::CompactorConfig;

/// Windows whose blocks may still be joined by new level-0 blocks.
pub const ACTIVE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// One merge: two or more blocks of one tenant, window and (while active)
/// level.
#[derive(Debug, Clone)]
pub struct Job {
    /// The window's index (end time divided by the window length).
    pub window: u64,
    /// The blocks to merge, in the order they were selected.
    pub inputs: Vec<Arc<BlockMeta>>,
}

impl Job {
    /// The output's level: one above the highest input level.
    pub fn output_level(&self) -> u32 {
        self.inputs
            .iter()
            .map(|m| m.compaction_level)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// Spans in the inputs.
    pub fn span_count(&self) -> u64 {
        self.inputs.iter().map(|m| m.span_count).sum()
    }

    /// Traces in the inputs (an upper bound on the output's).
    pub fn trace_count(&self) -> u64 {
        self.inputs.iter().map(|m| m.trace_count).sum()
    }

    /// Bytes of `data.parquet` in the inputs.
    pub fn data_bytes(&self) -> u64 {
        self.inputs.iter().map(|m| m.data_size_bytes).sum()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Plans the jobs over one tenant's live blocks as of `now_unix_nano`,
/// most recent window first.
pub fn plan_jobs(
    live: &[Arc<BlockMeta>],
    config: &CompactorConfig,
    now_unix_nano: u64,
) -> Vec<Job> {
    let window = nanos(config.window).max(1);
    let active_from = now_unix_nano.saturating_sub(nanos(ACTIVE_PERIOD));
    // Key: (window, level for active windows). Reverse order puts recent
    // windows first.
    let mut groups: BTreeMap<(u64, Option<u32>), Vec<Arc<BlockMeta>>> = BTreeMap::new();
    for meta in live {
        let level = (meta.end_time_unix_nano >= active_from).then_some(meta.compaction_level);
        groups
            .entry((meta.end_time_unix_nano / window, level))
            .or_default()
            .push(Arc::clone(meta));
    }
    let mut jobs = Vec::new();
    for ((window, _), mut blocks) in groups.into_iter().rev() {
        // Lowest level, then smallest first: small blocks merge together
        // before anything is rewritten into an already large block.
        blocks.sort_by_key(|m| (m.compaction_level, m.data_size_bytes, m.block_id));
        let mut stripe: Vec<Arc<BlockMeta>> = Vec::new();
        let (mut spans, mut bytes) = (0u64, 0u64);
        for meta in blocks {
            let fits = stripe.len() < config.max_input_blocks
                && spans + meta.span_count <= config.max_job_spans
                && bytes + meta.data_size_bytes <= config.max_block_bytes;
            if !fits {
                if worth_a_job(&stripe) {
                    jobs.push(Job {
                        window,
                        inputs: std::mem::take(&mut stripe),
                    });
                }
                stripe.clear();
                (spans, bytes) = (0, 0);
            }
            if meta.span_count > config.max_job_spans
                || meta.data_size_bytes > config.max_block_bytes
            {
                continue; // already as large as a job may make it
            }
            spans += meta.span_count;
            bytes += meta.data_size_bytes;
            stripe.push(meta);
        }
        if worth_a_job(&stripe) {
            jobs.push(Job {
                window,
                inputs: stripe,
            });
        }
    }
    jobs
}

/// Two blocks or more merge; a block alone is rewritten only to upgrade it
/// from an older format version, so search gets its trace table, summary
/// and typed columns.
fn worth_a_job(stripe: &[Arc<BlockMeta>]) -> bool {
    stripe.len() >= 2
        || stripe
            .iter()
            .any(|m| m.format_version < strata_common::meta::FORMAT_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_common::testing::meta_for_tests;
    use strata_common::{BlockId, TenantId};

    const HOUR: u64 = 3_600_000_000_000;

    fn block(end_hour: u64, level: u32, spans: u64) -> Arc<BlockMeta> {
        let mut meta = meta_for_tests(&TenantId::default_tenant(), BlockId::new_v7(), level);
        meta.start_time_unix_nano = end_hour * HOUR;
        meta.end_time_unix_nano = end_hour * HOUR + 10;
        meta.span_count = spans;
        meta.data_size_bytes = spans * 60;
        Arc::new(meta)
    }

    fn config() -> CompactorConfig {
        CompactorConfig {
            max_input_blocks: 3,
            max_job_spans: 1_000,
            ..CompactorConfig::default()
        }
    }

    #[test]
    fn recent_windows_group_by_level_and_come_first() {
        let now = 1_000 * HOUR;
        let live = vec![
            block(999, 0, 10),
            block(999, 0, 10),
            block(999, 1, 10),
            block(998, 0, 10),
            block(998, 0, 10),
            block(997, 0, 10), // alone in its window: nothing to do
        ];
        let jobs = plan_jobs(&live, &config(), now);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].window, 999);
        assert_eq!(jobs[0].output_level(), 1);
        assert!(jobs[0].inputs.iter().all(|m| m.compaction_level == 0));
        assert_eq!(jobs[1].window, 998);
    }

    #[test]
    fn old_windows_merge_across_levels() {
        let now = 1_000 * HOUR;
        let live = vec![block(10, 0, 10), block(10, 2, 10), block(10, 1, 10)];
        let jobs = plan_jobs(&live, &config(), now);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].inputs.len(), 3);
        assert_eq!(jobs[0].output_level(), 3);
    }

    #[test]
    fn limits_cut_groups_into_jobs() {
        let now = 1_000 * HOUR;
        // Seven blocks, three per job: 3 + 3, and the last one waits.
        let live: Vec<_> = (0..7).map(|_| block(999, 0, 10)).collect();
        let jobs = plan_jobs(&live, &config(), now);
        assert_eq!(
            jobs.iter().map(|j| j.inputs.len()).collect::<Vec<_>>(),
            vec![3, 3]
        );
        // Spans: 600 + 600 > 1,000, so every job is a pair at most.
        let live: Vec<_> = (0..4).map(|_| block(999, 0, 400)).collect();
        let jobs = plan_jobs(&live, &config(), now);
        assert_eq!(
            jobs.iter().map(|j| j.inputs.len()).collect::<Vec<_>>(),
            vec![2, 2]
        );
        // A block at the limit is never an input.
        let live = vec![block(999, 0, 2_000), block(999, 0, 10)];
        assert!(plan_jobs(&live, &config(), now).is_empty());
    }

    #[test]
    fn a_lone_block_of_an_older_format_is_upgraded() {
        let now = 1_000 * HOUR;
        let mut old = (*block(10, 0, 10)).clone();
        old.format_version = 1;
        let jobs = plan_jobs(&[Arc::new(old), block(20, 0, 10)], &config(), now);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].window, 10);
        assert_eq!(jobs[0].inputs.len(), 1);
    }
}
