//! Tag names and values for autocomplete.
//!
//! Without a filter they come from what blocks already summarise: key
//! lists in each `meta.json` (in memory) and value counts in each block's
//! summary (a few KiB, cached), plus a summary of the live traces. With a
//! filter (`q`, possibly an incomplete query being typed), values come from
//! the spans the filter's complete conditions select, searched like any
//! query, newest first and bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use strata_common::block::summary::{KeySummary, SummaryValue, intrinsics};
use strata_common::block::{BlockSummary, SummaryBuilder};
use strata_common::{ATTRIBUTE_SCOPES, BlockMeta, LiveScan, TenantId};

use super::{SearchRequest, Searcher};
use crate::error::Result;
use crate::trace_by_id::TimeRange;
use crate::traceql::ast::{
    BinaryOp, FieldExpr, Intrinsic, Kind, Pipeline, Query, SpansetExpr, Stage, Status,
};
use crate::traceql::eval::Value;

/// Live traces summarised for autocomplete: enough to show what is being
/// sent now without copying the whole live buffer per keystroke.
const LIVE_TRACES_FOR_TAGS: usize = 2_000;
/// Traces searched for the values of a tag under a filter.
const TRACES_FOR_FILTERED_VALUES: usize = 500;

/// The intrinsic names offered for autocomplete, sorted (Tempo's list).
pub const INTRINSIC_TAGS: [&str; 25] = [
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "link:spanID",
    "link:traceID",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:id",
    "span:kind",
    "span:name",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:id",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

/// A typed tag value (`/api/v2/search/tag/<tag>/values`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagValue {
    /// `string`, `int`, `float`, `bool`, `duration` or `keyword`.
    pub kind: &'static str,
    /// The value as text.
    pub value: String,
}

impl Searcher {
    fn blocks_in(&self, tenant: &TenantId, range: Option<TimeRange>) -> Vec<Arc<BlockMeta>> {
        self.blocks
            .blocks(tenant)
            .into_iter()
            .filter(|m| range.is_none_or(|r| m.overlaps(r.start_unix_nano, r.end_unix_nano)))
            .collect()
    }

    /// A summary of (a bounded number of) live traces.
    async fn live_summary(&self, tenant: &TenantId) -> Result<BlockSummary> {
        let mut builder = SummaryBuilder::new();
        for source in &self.live {
            let scan = LiveScan {
                predicate: None,
                max_traces: Some(LIVE_TRACES_FOR_TAGS),
            };
            add_canonical(&mut builder, source.scan(tenant, &scan).await?)?;
        }
        Ok(builder.finish())
    }

    /// Attribute keys per scope (`resource`, `span`, ...); with `filter`,
    /// only keys of spans the filter selects.
    pub async fn tag_names(
        &self,
        tenant: &TenantId,
        filter: Option<FieldExpr>,
        range: Option<TimeRange>,
    ) -> Result<BTreeMap<&'static str, BTreeSet<String>>> {
        let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
        if let Some(filter) = filter {
            let query = Query {
                pipeline: Pipeline {
                    stages: vec![Stage::Spanset(SpansetExpr::Filter(filter))],
                },
                metrics: None,
                hints: Vec::new(),
            };
            let request = SearchRequest {
                query,
                limit: TRACES_FOR_FILTERED_VALUES,
                spans_per_spanset: 100,
                range,
            };
            let outcome = self.run(tenant, request, None, true).await?;
            for span in outcome
                .traces
                .iter()
                .flat_map(|t| &t.spansets)
                .flat_map(|s| &s.spans)
            {
                for (scope, key) in &span.keys {
                    out.entry(scope).or_default().insert(key.clone());
                }
            }
            return Ok(out);
        }
        for meta in self.blocks_in(tenant, range) {
            for (scope, names) in meta.attribute_keys.by_scope() {
                out.entry(scope).or_default().extend(names.iter().cloned());
            }
        }
        let live = self.live_summary(tenant).await?;
        for scope in ATTRIBUTE_SCOPES {
            if let Some(keys) = live.attributes.get(scope) {
                out.entry(scope).or_default().extend(keys.keys().cloned());
            }
        }
        out.retain(|_, names| !names.is_empty());
        Ok(out)
    }

    /// The values of `tag`, most frequent first, at most `limit`. With
    /// `filter`, only values on spans the filter selects.
    pub async fn tag_values(
        &self,
        tenant: &TenantId,
        tag: &FieldExpr,
        filter: Option<FieldExpr>,
        range: Option<TimeRange>,
        limit: usize,
    ) -> Result<Vec<TagValue>> {
        // Tempo's fixed answers for enumerations and durations.
        if let FieldExpr::Intrinsic(i) = tag {
            match i {
                Intrinsic::Status => {
                    return Ok([Status::Error, Status::Ok, Status::Unset]
                        .iter()
                        .map(|s| keyword(s.keyword()))
                        .collect());
                }
                Intrinsic::Kind => {
                    return Ok(Kind::ALL.iter().map(|k| keyword(k.keyword())).collect());
                }
                Intrinsic::Duration | Intrinsic::TraceDuration | Intrinsic::EventTimeSinceStart => {
                    return Ok(Vec::new());
                }
                _ => {}
            }
        }
        match filter {
            None => self.summarised_values(tenant, tag, range, limit).await,
            Some(filter) => {
                self.filtered_values(tenant, tag, filter, range, limit)
                    .await
            }
        }
    }

    async fn summarised_values(
        &self,
        tenant: &TenantId,
        tag: &FieldExpr,
        range: Option<TimeRange>,
        limit: usize,
    ) -> Result<Vec<TagValue>> {
        let mut counts: BTreeMap<TagValue, u64> = BTreeMap::new();
        let mut add = |summary: &BlockSummary| {
            for key in summary_keys(summary, tag) {
                for v in &key.values {
                    *counts.entry(summary_value(&v.value)).or_default() += v.count;
                }
            }
        };
        let store = self.blocks.store().as_ref();
        for meta in self.blocks_in(tenant, range) {
            if meta.has_trace_table() {
                add(&*self.metadata.summary(store, &meta).await?);
            } else {
                // A version-1 block has no summary: derive one as a writer
                // would, from the whole block so each trace's root is found.
                let batches =
                    strata_common::block::read_block(Arc::clone(self.blocks.store()), &meta)
                        .await?;
                let mut builder = SummaryBuilder::new();
                if let Some(first) = batches.first() {
                    let whole = arrow::compute::concat_batches(&first.schema(), &batches)
                        .map_err(datafusion::error::DataFusionError::from)?;
                    add_canonical(&mut builder, vec![whole])?;
                }
                add(&builder.finish());
            }
        }
        add(&self.live_summary(tenant).await?);
        let mut values: Vec<(TagValue, u64)> = counts.into_iter().collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(values.into_iter().take(limit).map(|(v, _)| v).collect())
    }

    async fn filtered_values(
        &self,
        tenant: &TenantId,
        tag: &FieldExpr,
        filter: FieldExpr,
        range: Option<TimeRange>,
        limit: usize,
    ) -> Result<Vec<TagValue>> {
        // `{ (filter) && tag != nil } | select(tag)`, newest traces first.
        let condition = FieldExpr::binary(
            BinaryOp::And,
            filter,
            FieldExpr::Exists(Box::new(tag.clone()), true),
        );
        let query = Query {
            pipeline: Pipeline {
                stages: vec![
                    Stage::Spanset(SpansetExpr::Filter(condition)),
                    Stage::Select(vec![tag.clone()]),
                ],
            },
            metrics: None,
            hints: Vec::new(),
        };
        let outcome = self
            .search(
                tenant,
                SearchRequest {
                    query,
                    limit: TRACES_FOR_FILTERED_VALUES,
                    spans_per_spanset: 100,
                    range,
                },
                None,
            )
            .await?;
        let mut counts: BTreeMap<TagValue, u64> = BTreeMap::new();
        for trace in &outcome.traces {
            let trace_level = match tag {
                FieldExpr::Intrinsic(Intrinsic::RootName) => trace.root_span_name.clone(),
                FieldExpr::Intrinsic(Intrinsic::RootService) => trace.root_service_name.clone(),
                _ => None,
            };
            if let Some(value) = trace_level {
                *counts.entry(string_value(value)).or_default() += 1;
                continue;
            }
            for span in trace.spansets.iter().flat_map(|s| &s.spans) {
                let value = match tag {
                    FieldExpr::Intrinsic(Intrinsic::Name) => Some(string_value(span.name.clone())),
                    _ => span
                        .attributes
                        .iter()
                        .find(|(field, _)| field == tag)
                        .and_then(|(_, v)| typed_value(v)),
                };
                if let Some(value) = value {
                    *counts.entry(value).or_default() += 1;
                }
            }
        }
        let mut values: Vec<(TagValue, u64)> = counts.into_iter().collect();
        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(values.into_iter().take(limit).map(|(v, _)| v).collect())
    }
}

/// Summarises canonical rows as a block writer does, root names included.
fn add_canonical(
    builder: &mut SummaryBuilder,
    batches: Vec<arrow::array::RecordBatch>,
) -> Result<()> {
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        builder.add_batch(batch)?;
        builder.add_traces(&strata_common::block::derive(batch, 0)?.traces);
    }
    Ok(())
}

fn keyword(value: &str) -> TagValue {
    TagValue {
        kind: "keyword",
        value: value.to_owned(),
    }
}

fn string_value(value: String) -> TagValue {
    TagValue {
        kind: "string",
        value,
    }
}

/// The summaries that hold a tag's values.
fn summary_keys<'a>(summary: &'a BlockSummary, tag: &FieldExpr) -> Vec<&'a KeySummary> {
    match tag {
        FieldExpr::Attribute(a) => {
            let scopes = a.scope.summary_scopes();
            scopes
                .iter()
                .filter_map(|scope| summary.attribute(scope, &a.name))
                .collect()
        }
        FieldExpr::Intrinsic(i) => {
            let name = match i {
                Intrinsic::Name => intrinsics::NAME,
                Intrinsic::StatusMessage => intrinsics::STATUS_MESSAGE,
                Intrinsic::RootName => intrinsics::ROOT_NAME,
                Intrinsic::RootService => intrinsics::ROOT_SERVICE,
                Intrinsic::EventName => intrinsics::EVENT_NAME,
                Intrinsic::ScopeName => intrinsics::SCOPE_NAME,
                Intrinsic::ScopeVersion => intrinsics::SCOPE_VERSION,
                _ => return Vec::new(),
            };
            summary.intrinsics.get(name).into_iter().collect()
        }
        _ => Vec::new(),
    }
}

fn summary_value(value: &SummaryValue) -> TagValue {
    match value {
        SummaryValue::String(s) => string_value(s.clone()),
        SummaryValue::Int(i) => TagValue {
            kind: "int",
            value: i.to_string(),
        },
        SummaryValue::Double(d) => TagValue {
            kind: "float",
            value: go_float(*d),
        },
        SummaryValue::Bool(b) => TagValue {
            kind: "bool",
            value: b.to_string(),
        },
    }
}

fn typed_value(value: &Value<'_>) -> Option<TagValue> {
    Some(match value {
        Value::Str(s) => string_value(s.to_string()),
        Value::Int(i) => TagValue {
            kind: "int",
            value: i.to_string(),
        },
        Value::Float(f) => TagValue {
            kind: "float",
            value: go_float(*f),
        },
        Value::Bool(b) => TagValue {
            kind: "bool",
            value: b.to_string(),
        },
        _ => return None,
    })
}

/// A float as Tempo prints tag values: shortest form, with `.0` when it
/// would read as an integer.
pub(crate) fn go_float(f: f64) -> String {
    let text = format!("{f}");
    if text.contains(['.', 'e', 'E']) || !f.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}
