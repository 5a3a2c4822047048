//! A block's `meta.json`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::bloom::BloomParams;
use crate::error::{Error, Result};
use crate::ids::{BlockId, TenantId, TraceId};
use crate::layout::{BlockLayout, DedicatedColumn};
use crate::paths;

/// Name of the block format written to `meta.json`.
pub const FORMAT_NAME: &str = "strata-parquet";
/// Current block format version. Bump when the Parquet schema or the bloom
/// scheme changes in a way older readers cannot handle.
///
/// - 1: span rows, bloom shards.
/// - 2: adds the structure and dedicated columns to the span rows, the
///   trace table (`traces.parquet`) and the attribute summary
///   (`summary.json.gz`).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads.
pub const MIN_FORMAT_VERSION: u32 = 1;

/// Everything a querier or compactor needs to know about a block without
/// opening its data. Unknown fields are ignored on read so that newer writers
/// can add fields without breaking older readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] at write time.
    pub format_version: u32,
    /// Owner of the block.
    pub tenant: TenantId,
    /// The block's ID (UUIDv7).
    pub block_id: BlockId,
    /// Earliest span start in the block, Unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// Latest span end in the block, Unix nanoseconds.
    pub end_time_unix_nano: u64,
    /// Smallest trace ID, hex. Random IDs make this useless for pruning, but
    /// it is cheap and useful to people reading the bucket.
    pub min_trace_id: String,
    /// Largest trace ID, hex.
    pub max_trace_id: String,
    /// Number of span rows.
    pub span_count: u64,
    /// Number of distinct trace IDs.
    pub trace_count: u64,
    /// Number of Parquet row groups.
    pub row_group_count: u32,
    /// Size of `data.parquet` in bytes.
    pub data_size_bytes: u64,
    /// Size of the Parquet footer (metadata plus 8-byte tail), so readers can
    /// fetch it in one request.
    pub footer_size_bytes: u64,
    /// Total size of the bloom shards in bytes.
    pub bloom_size_bytes: u64,
    /// 0 for blocks cut by an ingester; the compactor increments it.
    pub compaction_level: u32,
    /// When the block was written, Unix nanoseconds.
    pub created_at_unix_nano: u64,
    /// The bloom filter's parameters.
    pub bloom: BloomParams,
    /// Attribute keys present in the block, for tag autocomplete.
    pub attribute_keys: AttributeKeys,
    /// The blocks this one replaces, set by the compactor. Committing this
    /// `meta.json` is what retires them: readers that see this block ignore
    /// its inputs even before they are marked compacted, so a compactor that
    /// dies between the two steps never makes a span appear twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted_from: Vec<BlockId>,
    /// The block's dedicated attribute columns (version 2), chosen when it
    /// was written; see [`crate::layout`].
    #[serde(default)]
    pub dedicated_columns: Vec<DedicatedColumn>,
    /// Size of `traces.parquet` in bytes (version 2).
    #[serde(default)]
    pub trace_table_size_bytes: u64,
    /// Size of `summary.json.gz` in bytes (version 2).
    #[serde(default)]
    pub summary_size_bytes: u64,
}

impl BlockMeta {
    /// Checks that this build can read the block: the format is ours and
    /// its version is not newer than [`FORMAT_VERSION`].
    pub fn check_readable(&self) -> Result<()> {
        if self.format != FORMAT_NAME {
            return Err(Error::UnsupportedFormat {
                block: self.block_id,
                message: format!("unknown block format {:?}", self.format),
            });
        }
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(Error::UnsupportedFormat {
                block: self.block_id,
                message: format!(
                    "block format version {} is not readable by this Strata, which reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}; upgrade Strata",
                    self.format_version
                ),
            });
        }
        Ok(())
    }

    /// How `data.parquet` is laid out.
    pub fn layout(&self) -> BlockLayout {
        BlockLayout::new(self.format_version, self.dedicated_columns.clone())
    }

    /// Whether the block has a trace table and a summary (version 2).
    pub fn has_trace_table(&self) -> bool {
        self.format_version >= 2
    }

    /// The block's objects other than `meta.json`, in the order they are
    /// written: data, bloom shards, then (version 2) the trace table and the
    /// summary. `meta.json` follows them all: it commits the block.
    pub fn object_names(&self) -> Vec<String> {
        let mut names = vec![paths::DATA_FILE.to_owned()];
        names.extend(
            (0..self.bloom.shard_count).map(|s| format!("{}{s}", paths::BLOOM_FILE_PREFIX)),
        );
        if self.has_trace_table() {
            names.push(paths::TRACES_FILE.to_owned());
            names.push(paths::SUMMARY_FILE.to_owned());
        }
        names
    }

    /// Whether the block's time range overlaps `[start, end]` (nanoseconds,
    /// inclusive).
    pub fn overlaps(&self, start_unix_nano: u64, end_unix_nano: u64) -> bool {
        self.start_time_unix_nano <= end_unix_nano && self.end_time_unix_nano >= start_unix_nano
    }

    /// Parses [`min_trace_id`](Self::min_trace_id) and
    /// [`max_trace_id`](Self::max_trace_id).
    pub fn trace_id_range(&self) -> Option<(TraceId, TraceId)> {
        Some((
            TraceId::from_hex(&self.min_trace_id).ok()?,
            TraceId::from_hex(&self.max_trace_id).ok()?,
        ))
    }
}

/// Attribute scopes as TraceQL names them, in the order answers list them.
pub const ATTRIBUTE_SCOPES: [&str; 5] = ["resource", "span", "event", "link", "instrumentation"];

/// Distinct attribute keys per scope, sorted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttributeKeys {
    /// Resource attribute keys.
    pub resource: BTreeSet<String>,
    /// Span attribute keys.
    pub span: BTreeSet<String>,
    /// Instrumentation-scope attribute keys.
    pub instrumentation: BTreeSet<String>,
    /// Span-event attribute keys.
    pub event: BTreeSet<String>,
    /// Span-link attribute keys.
    pub link: BTreeSet<String>,
    /// Set when a scope had more than [`AttributeKeys::MAX_PER_SCOPE`] keys and
    /// the lists were cut short.
    pub truncated: bool,
}

impl AttributeKeys {
    /// Keys kept per scope; beyond this the block has unbounded keys (IDs used
    /// as keys) and listing them helps nobody.
    pub const MAX_PER_SCOPE: usize = 5_000;

    /// The key sets paired with their scope names, in [`ATTRIBUTE_SCOPES`] order.
    pub fn by_scope(&self) -> [(&'static str, &BTreeSet<String>); 5] {
        [
            (ATTRIBUTE_SCOPES[0], &self.resource),
            (ATTRIBUTE_SCOPES[1], &self.span),
            (ATTRIBUTE_SCOPES[2], &self.event),
            (ATTRIBUTE_SCOPES[3], &self.link),
            (ATTRIBUTE_SCOPES[4], &self.instrumentation),
        ]
    }

    /// Adds `other`'s keys, keeping at most [`Self::MAX_PER_SCOPE`] per scope.
    pub fn merge(&mut self, other: &AttributeKeys) {
        let mut truncated = self.truncated || other.truncated;
        for (into, from) in [
            (&mut self.resource, &other.resource),
            (&mut self.span, &other.span),
            (&mut self.instrumentation, &other.instrumentation),
            (&mut self.event, &other.event),
            (&mut self.link, &other.link),
        ] {
            for key in from {
                if into.len() >= Self::MAX_PER_SCOPE {
                    truncated |= !into.contains(key);
                    continue;
                }
                into.insert(key.clone());
            }
        }
        self.truncated = truncated;
    }
}
