//! Trace-by-ID: prune blocks, scan the survivors, merge with live spans.
//!
//! Pruning happens before any Parquet byte is read: by the request's time
//! range against each block's `meta.json`, then by the block's bloom filter
//! (one cached shard per block). Inside a block DataFusion prunes by trace-ID
//! statistics (see [`crate::block_scan`]). Fragments of one trace from many
//! blocks and from live sources are merged and deduplicated by span.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, FixedSizeBinaryArray, Int32Array, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use futures::{StreamExt, TryStreamExt};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use strata_common::convert::batches_to_resource_spans;
use strata_common::schema::columns;
use strata_common::{BlockMeta, LiveTraceSource, TenantId, TraceId, span_schema};

use crate::block_scan::BlockScanner;
use crate::blocklist::BlockList;
use crate::bloom_cache::BloomCache;
use crate::error::{Error, Result};
use tracing::warn;

/// How many bloom shards a lookup checks at once.
const BLOOM_CHECK_CONCURRENCY: usize = 32;

/// An inclusive time range in Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, inclusive.
    pub start_unix_nano: u64,
    /// End, inclusive.
    pub end_unix_nano: u64,
}

/// A found trace and what finding it cost.
#[derive(Debug, Default)]
pub struct FoundTrace {
    /// The trace, grouped by resource and scope; empty when not found.
    pub resource_spans: Vec<ResourceSpans>,
    /// Spans in the trace after deduplication.
    pub span_count: usize,
    /// Bytes read from the object store.
    pub inspected_bytes: u64,
    /// Blocks whose data was scanned (after time and bloom pruning).
    pub blocks_scanned: usize,
    /// Blocks that could not be read: when non-zero the trace may be
    /// incomplete.
    pub failed_blocks: usize,
}

/// Finds traces by ID across blocks and live sources.
#[derive(Debug)]
pub struct TraceFinder {
    blocks: Arc<BlockList>,
    blooms: BloomCache,
    scanner: Arc<BlockScanner>,
    live: Vec<Arc<dyn LiveTraceSource>>,
}

impl TraceFinder {
    /// A finder over `blocks` and the given live sources.
    pub fn new(
        blocks: Arc<BlockList>,
        bloom_cache_bytes: u64,
        live: Vec<Arc<dyn LiveTraceSource>>,
    ) -> Result<Self> {
        let scanner = Arc::new(BlockScanner::new(
            Arc::clone(blocks.store()),
            crate::QuerierConfig::default().query_memory_bytes,
        )?);
        Ok(Self::with_scanner(blocks, bloom_cache_bytes, live, scanner))
    }

    /// A finder sharing the querier's block scanner.
    pub(crate) fn with_scanner(
        blocks: Arc<BlockList>,
        bloom_cache_bytes: u64,
        live: Vec<Arc<dyn LiveTraceSource>>,
        scanner: Arc<BlockScanner>,
    ) -> Self {
        Self {
            blocks,
            blooms: BloomCache::new(bloom_cache_bytes),
            scanner,
            live,
        }
    }

    /// Looks a trace up. An absent trace yields an empty [`FoundTrace`].
    pub async fn find(
        &self,
        tenant: &TenantId,
        trace_id: TraceId,
        range: Option<TimeRange>,
    ) -> Result<FoundTrace> {
        // Live spans first, blocks second. An ingester announces a block
        // before it drops the block's spans, so whatever leaves the live
        // buffer after this read is already in the block list read next:
        // no span can fall between the two (duplicates are removed below).
        let mut batches = Vec::new();
        for source in &self.live {
            batches.extend(source.find_trace(tenant, trace_id).await?);
        }
        let mut candidates = self.candidate_blocks(tenant, &trace_id, range).await?;
        let mut scan = self.scanner.scan_trace(&candidates, &trace_id).await?;
        if !scan.failed_blocks.is_empty() {
            // A block can vanish under a list older than the compactor's
            // grace period (a querier that could not poll for a while):
            // refresh the list and, if it changed, read its blocks instead.
            if let Err(error) = self.blocks.poll().await {
                warn!(%error, "refreshing the block list after a failed block read");
            } else {
                let retry = self.candidate_blocks(tenant, &trace_id, range).await?;
                let ids = |blocks: &[Arc<BlockMeta>]| {
                    blocks.iter().map(|m| m.block_id).collect::<HashSet<_>>()
                };
                if ids(&retry) != ids(&candidates) {
                    candidates = retry;
                    scan = self.scanner.scan_trace(&candidates, &trace_id).await?;
                }
            }
        }
        batches.extend(scan.batches);
        let merged = merge_fragments(&batches)?;
        let span_count = merged.as_ref().map_or(0, RecordBatch::num_rows);
        let resource_spans = match merged {
            Some(batch) => batches_to_resource_spans(&[batch])?,
            None => Vec::new(),
        };
        metrics::histogram!("strata_querier_trace_blocks_scanned").record(candidates.len() as f64);
        Ok(FoundTrace {
            resource_spans,
            span_count,
            inspected_bytes: scan.bytes_scanned,
            blocks_scanned: candidates.len(),
            failed_blocks: scan.failed_blocks.len(),
        })
    }

    /// Blocks that may hold the trace: time range and trace-ID range first
    /// (free, from `meta.json`), then the bloom filter. Cached shards are
    /// checked in one synchronous pass, so a lookup over thousands of blocks
    /// costs a hash probe per block; only missing shards are fetched, at
    /// most [`BLOOM_CHECK_CONCURRENCY`] at a time.
    async fn candidate_blocks(
        &self,
        tenant: &TenantId,
        trace_id: &TraceId,
        range: Option<TimeRange>,
    ) -> Result<Vec<Arc<BlockMeta>>> {
        let wanted = trace_id.to_hex();
        let mut candidates = Vec::new();
        let mut misses = Vec::new();
        let mut hits = 0u64;
        for meta in self.blocks.blocks(tenant) {
            if range.is_some_and(|r| !meta.overlaps(r.start_unix_nano, r.end_unix_nano)) {
                continue;
            }
            // Hex strings of equal length order as the bytes they encode.
            if !meta.min_trace_id.is_empty()
                && (wanted.as_str() < meta.min_trace_id.as_str()
                    || wanted.as_str() > meta.max_trace_id.as_str())
            {
                continue;
            }
            match self.blooms.check_cached(&meta, trace_id) {
                Some(keep) => {
                    hits += 1;
                    if keep {
                        candidates.push(meta);
                    }
                }
                None => misses.push(meta),
            }
        }
        metrics::counter!("strata_querier_bloom_cache_misses_total").increment(misses.len() as u64);
        metrics::counter!("strata_querier_bloom_cache_hits_total").increment(hits);
        let store = self.blocks.store().as_ref();
        let fetched: Vec<Option<Arc<BlockMeta>>> = futures::stream::iter(misses)
            .map(|meta| async move {
                match self.blooms.fetch_and_check(store, &meta, trace_id).await {
                    Ok(keep) => Ok::<_, Error>(keep.then_some(meta)),
                    // Without its bloom the block cannot be ruled out: scan it.
                    Err(error) => {
                        warn!(block = %meta.block_id, %error, "bloom shard unreadable; scanning the block");
                        Ok(Some(meta))
                    }
                }
            })
            .buffer_unordered(BLOOM_CHECK_CONCURRENCY)
            .try_collect()
            .await?;
        candidates.extend(fetched.into_iter().flatten());
        Ok(candidates)
    }
}

/// Concatenates fragments, drops duplicate spans and orders spans by start
/// time. A span is identified by its span ID and kind: Zipkin clients give
/// the client and server halves of a call the same span ID.
fn merge_fragments(batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
    let schema = span_schema();
    let all = concat_batches(&schema, batches).map_err(arrow_error("merging fragments"))?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let span_ids: &FixedSizeBinaryArray = column(&all, columns::SPAN_ID)?;
    let kinds: &Int32Array = column(&all, columns::KIND)?;
    let mut seen = HashSet::with_capacity(all.num_rows());
    let keep: Vec<u32> = (0..all.num_rows())
        .filter(|&row| seen.insert((span_ids.value(row), kinds.value(row))))
        .filter_map(|row| u32::try_from(row).ok())
        .collect();
    let unique = take_record_batch(&all, &UInt32Array::from(keep))
        .map_err(arrow_error("deduplicating spans"))?;
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: unique
                    .column_by_name(columns::START_TIME)
                    .cloned()
                    .ok_or_else(|| strata_common::Error::corrupt("no start_time column"))?,
                options: None,
            },
            SortColumn {
                values: unique
                    .column_by_name(columns::SPAN_ID)
                    .cloned()
                    .ok_or_else(|| strata_common::Error::corrupt("no span_id column"))?,
                options: None,
            },
        ],
        None,
    )
    .map_err(arrow_error("ordering spans"))?;
    let sorted = take_record_batch(&unique, &order).map_err(arrow_error("ordering spans"))?;
    Ok(Some(sorted))
}

fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            strata_common::Error::corrupt(format!("column {name:?} missing or mistyped")).into()
        })
}

fn arrow_error(context: &'static str) -> impl Fn(arrow::error::ArrowError) -> Error {
    move |e| strata_common::Error::corrupt(format!("{context}: {e}")).into()
}
