//! A block's attribute summary (`summary.json.gz`): for every attribute key
//! per scope, and for the intrinsics with few values, how often it occurs,
//! with which value types, and its most frequent values with counts.
//!
//! Tag autocomplete reads these few KiB per block instead of scanning
//! spans, and search uses them to skip blocks: when a key's value list is
//! `complete`, a block without the wanted value cannot match. The compactor
//! merges its inputs' summaries to choose the output's dedicated columns
//! before writing a row.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, UInt8Array,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{AttrScope, DedicatedType, KeyCounts};
use crate::meta::ATTRIBUTE_SCOPES;
use crate::schema::{AttributeType, attribute_fields, columns};

use super::traces::TraceEntry;

/// Version of the summary layout.
pub const SUMMARY_VERSION: u32 = 1;
/// Values kept per key, the most frequent first.
pub const MAX_VALUES: usize = 200;
/// Distinct values tracked per key while counting; past this a key's
/// values are no longer complete.
const MAX_TRACKED: usize = 2_000;
/// Longer values are not kept (they would make the summary large and are
/// not what people pick from a list).
pub const MAX_VALUE_BYTES: usize = 256;
/// Keys per scope whose values are tracked; further keys are counted only.
const MAX_KEYS_WITH_VALUES: usize = 1_000;
/// Keys per scope recorded at all. Spans that use IDs as keys would otherwise
/// make the summary as large as the block; beyond this the scope is marked
/// truncated and a key missing from it proves nothing.
pub const MAX_KEYS_PER_SCOPE: usize = 10_000;

/// Intrinsics summarized, as TraceQL names them. `status` and `kind` values
/// are the OTLP numbers.
pub mod intrinsics {
    /// Span name.
    pub const NAME: &str = "name";
    /// Status code (OTLP number).
    pub const STATUS: &str = "status";
    /// Span kind (OTLP number).
    pub const KIND: &str = "kind";
    /// Status message.
    pub const STATUS_MESSAGE: &str = "statusMessage";
    /// Root span name of each trace.
    pub const ROOT_NAME: &str = "trace:rootName";
    /// Root service of each trace.
    pub const ROOT_SERVICE: &str = "trace:rootService";
    /// Event names.
    pub const EVENT_NAME: &str = "event:name";
    /// Instrumentation scope name.
    pub const SCOPE_NAME: &str = "instrumentation:name";
    /// Instrumentation scope version.
    pub const SCOPE_VERSION: &str = "instrumentation:version";
}

/// A scalar value in a summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryValue {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// Hashable form of a [`SummaryValue`] (doubles by bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ValueKey {
    String(String),
    Int(i64),
    Double(u64),
    Bool(bool),
}

impl ValueKey {
    fn into_value(self) -> SummaryValue {
        match self {
            Self::String(s) => SummaryValue::String(s),
            Self::Int(i) => SummaryValue::Int(i),
            Self::Double(bits) => SummaryValue::Double(f64::from_bits(bits)),
            Self::Bool(b) => SummaryValue::Bool(b),
        }
    }

    fn from_value(value: &SummaryValue) -> Self {
        match value {
            SummaryValue::String(s) => Self::String(s.clone()),
            SummaryValue::Int(i) => Self::Int(*i),
            SummaryValue::Double(d) => Self::Double(d.to_bits()),
            SummaryValue::Bool(b) => Self::Bool(*b),
        }
    }
}

/// A value and how many times it occurs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueCount {
    /// The value.
    pub value: SummaryValue,
    /// Occurrences.
    pub count: u64,
}

/// Value types counted per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// `string_value`.
    String,
    /// `int_value`.
    Int,
    /// `double_value`.
    Double,
    /// `bool_value`.
    Bool,
    /// Bytes, arrays, maps, empty values.
    Other,
}

impl ValueKind {
    fn of(ty: AttributeType) -> Self {
        match ty {
            AttributeType::String => Self::String,
            AttributeType::Int => Self::Int,
            AttributeType::Double => Self::Double,
            AttributeType::Bool => Self::Bool,
            _ => Self::Other,
        }
    }
}

/// What a block holds of one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeySummary {
    /// Occurrences, all types.
    pub count: u64,
    /// Occurrences per value type.
    pub types: BTreeMap<ValueKind, u64>,
    /// The most frequent scalar values, most frequent first, at most
    /// [`MAX_VALUES`].
    pub values: Vec<ValueCount>,
    /// Whether `values` lists every scalar value the block holds for the key.
    pub complete: bool,
}

impl KeySummary {
    /// Whether the block may hold `value` for this key: false only when the
    /// list is complete and lacks it.
    pub fn may_contain(&self, value: &SummaryValue) -> bool {
        !self.complete || self.values.iter().any(|v| &v.value == value)
    }

    /// Occurrences of values of `kind`.
    pub fn count_of(&self, kind: ValueKind) -> u64 {
        self.types.get(&kind).copied().unwrap_or(0)
    }

    fn merge(&mut self, other: &KeySummary) {
        self.count += other.count;
        for (kind, n) in &other.types {
            *self.types.entry(*kind).or_default() += n;
        }
        let mut counts: HashMap<ValueKey, u64> = HashMap::new();
        for v in self.values.iter().chain(&other.values) {
            *counts.entry(ValueKey::from_value(&v.value)).or_default() += v.count;
        }
        let complete = self.complete && other.complete && counts.len() <= MAX_VALUES;
        self.values = top_values(counts);
        self.complete = complete;
    }
}

fn top_values(counts: HashMap<ValueKey, u64>) -> Vec<ValueCount> {
    let mut values: Vec<(ValueKey, u64)> = counts.into_iter().collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(MAX_VALUES);
    values
        .into_iter()
        .map(|(value, count)| ValueCount {
            value: value.into_value(),
            count,
        })
        .collect()
}

/// The summary of a block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockSummary {
    /// [`SUMMARY_VERSION`].
    pub version: u32,
    /// Per scope (see [`ATTRIBUTE_SCOPES`]), per key.
    pub attributes: BTreeMap<String, BTreeMap<String, KeySummary>>,
    /// Per intrinsic (see [`intrinsics`]).
    pub intrinsics: BTreeMap<String, KeySummary>,
    /// Scopes that had more than [`MAX_KEYS_PER_SCOPE`] keys: their key lists
    /// are incomplete.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub truncated_scopes: std::collections::BTreeSet<String>,
}

impl BlockSummary {
    /// The summary of `key` in `scope`.
    pub fn attribute(&self, scope: &str, key: &str) -> Option<&KeySummary> {
        self.attributes.get(scope)?.get(key)
    }

    /// Whether every key of `scope` in the block is listed, so a key absent
    /// from the summary is absent from the block.
    pub fn keys_complete(&self, scope: &str) -> bool {
        !self.truncated_scopes.contains(scope)
    }

    /// Adds `other` (another block's, for a compaction output).
    pub fn merge(&mut self, other: &BlockSummary) {
        self.version = SUMMARY_VERSION;
        self.truncated_scopes
            .extend(other.truncated_scopes.iter().cloned());
        for (scope, keys) in &other.attributes {
            let into = self.attributes.entry(scope.clone()).or_default();
            for (key, summary) in keys {
                let full = into.len() >= MAX_KEYS_PER_SCOPE;
                match into.get_mut(key) {
                    Some(existing) => existing.merge(summary),
                    None if full => {
                        self.truncated_scopes.insert(scope.clone());
                    }
                    None => {
                        into.insert(key.clone(), summary.clone());
                    }
                }
            }
        }
        for (name, summary) in &other.intrinsics {
            match self.intrinsics.get_mut(name) {
                Some(existing) => existing.merge(summary),
                None => {
                    self.intrinsics.insert(name.clone(), summary.clone());
                }
            }
        }
    }

    /// Per resource and span key, how many values of each type: the input
    /// of [`crate::layout::choose_dedicated`].
    pub fn key_counts(&self) -> HashMap<(AttrScope, String), KeyCounts> {
        let mut out = HashMap::new();
        for scope in [AttrScope::Resource, AttrScope::Span] {
            let Some(keys) = self.attributes.get(scope.as_str()) else {
                continue;
            };
            for (key, summary) in keys {
                let mut counts = KeyCounts::default();
                for (kind, n) in &summary.types {
                    let ty = match kind {
                        ValueKind::String => DedicatedType::String,
                        ValueKind::Int => DedicatedType::Int,
                        ValueKind::Double => DedicatedType::Double,
                        ValueKind::Bool => DedicatedType::Bool,
                        ValueKind::Other => {
                            counts.other += n;
                            continue;
                        }
                    };
                    counts.by_type.insert(ty, *n);
                }
                out.insert((scope, key.clone()), counts);
            }
        }
        out
    }

    /// `summary.json.gz`.
    pub fn encode(&self) -> Result<Bytes> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::corrupt(format!("encoding block summary: {e}")))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .map_err(|e| Error::corrupt(format!("compressing block summary: {e}")))
    }

    /// Reads `summary.json.gz`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| Error::corrupt(format!("decompressing block summary: {e}")))?;
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(format!("block summary: {e}")))
    }

    /// Rough bytes held in memory, for caches.
    pub fn memory_size(&self) -> usize {
        let key = |k: &KeySummary| {
            96 + k.values.len() * 48
                + k.values
                    .iter()
                    .map(|v| match &v.value {
                        SummaryValue::String(s) => s.len(),
                        _ => 0,
                    })
                    .sum::<usize>()
        };
        self.attributes
            .values()
            .flat_map(|keys| keys.iter())
            .map(|(name, k)| name.len() + key(k))
            .chain(self.intrinsics.iter().map(|(name, k)| name.len() + key(k)))
            .sum()
    }
}

/// A value being counted, borrowed from the rows.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

#[derive(Debug, Default)]
struct KeyAcc {
    count: u64,
    types: BTreeMap<ValueKind, u64>,
    /// String values, looked up by `&str` so counting allocates only for a
    /// new value.
    strings: HashMap<String, u64>,
    scalars: HashMap<ValueKey, u64>,
    overflow: bool,
    track_values: bool,
}

impl KeyAcc {
    fn add(&mut self, kind: ValueKind, value: Option<Val<'_>>) {
        self.add_n(kind, value, 1);
    }

    fn add_n(&mut self, kind: ValueKind, value: Option<Val<'_>>, n: u64) {
        self.count += n;
        *self.types.entry(kind).or_default() += n;
        let Some(value) = value else {
            return;
        };
        if !self.track_values {
            self.overflow = true;
            return;
        }
        let tracked = self.strings.len() + self.scalars.len();
        match value {
            Val::Str(s) if s.len() > MAX_VALUE_BYTES => self.overflow = true,
            Val::Str(s) => match self.strings.get_mut(s) {
                Some(count) => *count += n,
                None if tracked < MAX_TRACKED => {
                    self.strings.insert(s.to_owned(), n);
                }
                None => self.overflow = true,
            },
            other => {
                let key = match other {
                    Val::Int(i) => ValueKey::Int(i),
                    Val::Double(d) => ValueKey::Double(d.to_bits()),
                    Val::Bool(b) => ValueKey::Bool(b),
                    Val::Str(_) => return,
                };
                match self.scalars.get_mut(&key) {
                    Some(count) => *count += n,
                    None if tracked < MAX_TRACKED => {
                        self.scalars.insert(key, n);
                    }
                    None => self.overflow = true,
                }
            }
        }
    }

    fn finish(self) -> KeySummary {
        let mut values = self.scalars;
        values.extend(
            self.strings
                .into_iter()
                .map(|(s, n)| (ValueKey::String(s), n)),
        );
        let complete = !self.overflow && values.len() <= MAX_VALUES;
        KeySummary {
            count: self.count,
            types: self.types,
            values: top_values(values),
            complete,
        }
    }
}

/// Builds a [`BlockSummary`] from canonical span rows, batch by batch.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    attributes: [HashMap<String, KeyAcc>; 5],
    /// Per scope, whether keys were dropped at [`MAX_KEYS_PER_SCOPE`].
    truncated: [bool; 5],
    intrinsics: BTreeMap<&'static str, KeyAcc>,
}

fn string_key(s: &str) -> Option<Val<'_>> {
    Some(Val::Str(s))
}

impl SummaryBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn intrinsic(&mut self, name: &'static str) -> &mut KeyAcc {
        self.intrinsics.entry(name).or_insert_with(|| KeyAcc {
            track_values: true,
            ..KeyAcc::default()
        })
    }

    /// Counts the attributes and intrinsics of canonical span rows.
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let list = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_list_opt::<i32>())
                .ok_or_else(|| Error::corrupt(format!("span rows lack list column {name:?}")))
        };
        self.add_attributes(0, list(columns::RESOURCE_ATTRIBUTES)?)?;
        self.add_attributes(1, list(columns::ATTRIBUTES)?)?;
        let events = list(columns::EVENTS)?;
        let event_struct = events
            .values()
            .as_struct_opt()
            .ok_or_else(|| Error::corrupt("events are not structs"))?;
        if let Some(attrs) = event_struct
            .column_by_name("attributes")
            .and_then(|c| c.as_list_opt::<i32>())
        {
            self.add_attributes(2, attrs)?;
        }
        if let Some(names) = event_struct
            .column_by_name("name")
            .and_then(|c| c.as_string_opt::<i32>())
        {
            let acc = self.intrinsic(intrinsics::EVENT_NAME);
            for name in names.iter().flatten() {
                acc.add(ValueKind::String, string_key(name));
            }
        }
        let links = list(columns::LINKS)?;
        if let Some(attrs) = links
            .values()
            .as_struct_opt()
            .and_then(|s| s.column_by_name("attributes"))
            .and_then(|c| c.as_list_opt::<i32>())
        {
            self.add_attributes(3, attrs)?;
        }
        self.add_attributes(4, list(columns::SCOPE_ATTRIBUTES)?)?;

        let strings = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| Error::corrupt(format!("span rows lack column {name:?}")))
        };
        let ints = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
                .ok_or_else(|| Error::corrupt(format!("span rows lack column {name:?}")))
        };
        for (name, column) in [
            (intrinsics::NAME, strings(columns::NAME)?),
            (
                intrinsics::STATUS_MESSAGE,
                strings(columns::STATUS_MESSAGE)?,
            ),
            (intrinsics::SCOPE_NAME, strings(columns::SCOPE_NAME)?),
            (intrinsics::SCOPE_VERSION, strings(columns::SCOPE_VERSION)?),
        ] {
            let acc = self.intrinsic(name);
            // Runs of one value are common (a scope, a span name within a
            // trace): count a run with one hash.
            let mut run: Option<(&str, u64)> = None;
            for value in column.iter().flatten() {
                // Most spans have no status message and many scopes no
                // name or version: "" is not a value to offer.
                if value.is_empty() {
                    continue;
                }
                match &mut run {
                    Some((previous, n)) if *previous == value => *n += 1,
                    _ => {
                        if let Some((previous, n)) = run.take() {
                            acc.add_n(ValueKind::String, string_key(previous), n);
                        }
                        run = Some((value, 1));
                    }
                }
            }
            if let Some((previous, n)) = run {
                acc.add_n(ValueKind::String, string_key(previous), n);
            }
        }
        for (name, column) in [
            (intrinsics::STATUS, ints(columns::STATUS_CODE)?),
            (intrinsics::KIND, ints(columns::KIND)?),
        ] {
            let acc = self.intrinsic(name);
            for value in column.iter().flatten() {
                acc.add(ValueKind::Int, Some(Val::Int(i64::from(value))));
            }
        }
        Ok(())
    }

    /// Counts the root names and services of traces.
    pub fn add_traces(&mut self, traces: &[TraceEntry]) {
        for trace in traces {
            if let Some(name) = &trace.root_span_name {
                self.intrinsic(intrinsics::ROOT_NAME)
                    .add(ValueKind::String, string_key(name));
            }
            if let Some(service) = &trace.root_service_name {
                self.intrinsic(intrinsics::ROOT_SERVICE)
                    .add(ValueKind::String, string_key(service));
            }
        }
    }

    fn add_attributes(&mut self, scope: usize, list: &ListArray) -> Result<()> {
        let values = list
            .values()
            .as_struct_opt()
            .ok_or_else(|| Error::corrupt("attributes are not structs"))?;
        let child = |name: &str| {
            values
                .column_by_name(name)
                .ok_or_else(|| Error::corrupt(format!("attribute struct lacks {name:?}")))
        };
        let keys: &StringArray = child(attribute_fields::KEY)?
            .as_string_opt()
            .ok_or_else(|| Error::corrupt("attribute keys"))?;
        let types: &UInt8Array = child(attribute_fields::TYPE)?
            .as_any()
            .downcast_ref()
            .ok_or_else(|| Error::corrupt("attribute types"))?;
        let strs: &StringArray = child(attribute_fields::STR)?
            .as_string_opt()
            .ok_or_else(|| Error::corrupt("attribute strings"))?;
        let ints: &Int64Array = child(attribute_fields::INT)?
            .as_any()
            .downcast_ref()
            .ok_or_else(|| Error::corrupt("attribute ints"))?;
        let doubles: &Float64Array = child(attribute_fields::DOUBLE)?
            .as_any()
            .downcast_ref()
            .ok_or_else(|| Error::corrupt("attribute doubles"))?;
        let bools: &BooleanArray = child(attribute_fields::BOOL)?
            .as_any()
            .downcast_ref()
            .ok_or_else(|| Error::corrupt("attribute bools"))?;
        // Items referenced by the list (a sliced list references a range).
        let offsets = list.value_offsets();
        let (first, last) = match (offsets.first(), offsets.last()) {
            (Some(f), Some(l)) => (*f as usize, *l as usize),
            _ => return Ok(()),
        };
        let accs = &mut self.attributes[scope];
        for i in first..last {
            let key = keys.value(i);
            let ty = AttributeType::from_u8(types.value(i)).unwrap_or(AttributeType::Empty);
            let value = match ty {
                AttributeType::String if strs.is_valid(i) => string_key(strs.value(i)),
                AttributeType::Int if ints.is_valid(i) => Some(Val::Int(ints.value(i))),
                AttributeType::Double if doubles.is_valid(i) => Some(Val::Double(doubles.value(i))),
                AttributeType::Bool if bools.is_valid(i) => Some(Val::Bool(bools.value(i))),
                _ => None,
            };
            let full = accs.len() >= MAX_KEYS_PER_SCOPE;
            let acc = match accs.get_mut(key) {
                Some(acc) => acc,
                None if full => {
                    self.truncated[scope] = true;
                    continue;
                }
                None => {
                    let track_values = accs.len() < MAX_KEYS_WITH_VALUES;
                    accs.entry(key.to_owned()).or_insert_with(|| KeyAcc {
                        track_values,
                        ..KeyAcc::default()
                    })
                }
            };
            acc.add(ValueKind::of(ty), value);
        }
        Ok(())
    }

    /// The summary.
    pub fn finish(self) -> BlockSummary {
        let mut attributes = BTreeMap::new();
        let truncated_scopes = ATTRIBUTE_SCOPES
            .iter()
            .zip(self.truncated)
            .filter(|(_, truncated)| *truncated)
            .map(|(scope, _)| (*scope).to_owned())
            .collect();
        for (scope, accs) in ATTRIBUTE_SCOPES.iter().zip(self.attributes) {
            if accs.is_empty() {
                continue;
            }
            attributes.insert(
                (*scope).to_owned(),
                accs.into_iter().map(|(k, acc)| (k, acc.finish())).collect(),
            );
        }
        BlockSummary {
            version: SUMMARY_VERSION,
            attributes,
            intrinsics: self
                .intrinsics
                .into_iter()
                .filter(|(_, acc)| acc.count > 0)
                .map(|(name, acc)| (name.to_owned(), acc.finish()))
                .collect(),
            truncated_scopes,
        }
    }
}

/// The dedicated columns for a block merged from `inputs`: chosen from
/// their merged summaries. A version-1 input has no summary; its
/// `meta.json` key lists still bring in the well-known keys it holds.
pub async fn dedicated_for_merge(
    store: &dyn object_store::ObjectStore,
    inputs: &[std::sync::Arc<crate::BlockMeta>],
) -> Result<Vec<crate::layout::DedicatedColumn>> {
    let mut merged = BlockSummary::default();
    let mut spans = 0u64;
    for meta in inputs {
        spans += meta.span_count;
        if meta.has_trace_table() {
            merged.merge(&super::reader::read_summary(store, meta).await?);
            continue;
        }
        for (scope, keys) in [
            ("resource", &meta.attribute_keys.resource),
            ("span", &meta.attribute_keys.span),
        ] {
            for (wk_scope, key, ty) in crate::layout::WELL_KNOWN {
                if wk_scope.as_str() == scope && keys.contains(*key) {
                    let kind = match ty {
                        DedicatedType::String => ValueKind::String,
                        DedicatedType::Int => ValueKind::Int,
                        DedicatedType::Double => ValueKind::Double,
                        DedicatedType::Bool => ValueKind::Bool,
                    };
                    let entry = merged
                        .attributes
                        .entry(scope.to_owned())
                        .or_default()
                        .entry((*key).to_owned())
                        .or_default();
                    entry.count += 1;
                    *entry.types.entry(kind).or_default() += 1;
                }
            }
        }
    }
    Ok(crate::layout::choose_dedicated(&merged.key_counts(), spans))
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::Span;

    use super::*;
    use crate::convert::request_to_batch;
    use crate::testing::request_with_spans;

    fn attr(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    #[test]
    fn counts_types_and_values_and_merges() {
        let spans = (0..10u8)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: vec![i + 1; 8],
                name: if i < 5 { "a".into() } else { "b".into() },
                attributes: vec![
                    attr(
                        "route",
                        any_value::Value::StringValue(format!("/r{}", i % 3)),
                    ),
                    attr("code", any_value::Value::IntValue(200)),
                ],
                ..Span::default()
            })
            .collect();
        let batch = request_to_batch(&request_with_spans(spans)).unwrap();
        let mut builder = SummaryBuilder::new();
        builder.add_batch(&batch).unwrap();
        let summary = builder.finish();
        let route = summary.attribute("span", "route").unwrap();
        assert_eq!(route.count, 10);
        assert_eq!(route.count_of(ValueKind::String), 10);
        assert_eq!(route.values.len(), 3);
        assert!(route.complete);
        assert!(route.may_contain(&SummaryValue::String("/r1".into())));
        assert!(!route.may_contain(&SummaryValue::String("/nope".into())));
        let names = &summary.intrinsics[intrinsics::NAME];
        assert_eq!(names.count, 10);
        assert_eq!(names.values[0].count, 5);

        let decoded = BlockSummary::decode(&summary.encode().unwrap()).unwrap();
        assert_eq!(decoded, summary);

        let mut merged = summary.clone();
        merged.merge(&summary);
        assert_eq!(
            merged.attribute("span", "code").unwrap().values[0].count,
            20
        );
        let counts = merged.key_counts();
        assert_eq!(
            counts[&(AttrScope::Span, "code".to_owned())].by_type[&DedicatedType::Int],
            20
        );
    }

    #[test]
    fn keys_beyond_the_cap_mark_the_scope_truncated() {
        let keys_per_span = 100;
        let spans = (0..(MAX_KEYS_PER_SCOPE / keys_per_span + 1) as u32)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (u64::from(i) + 1).to_be_bytes().to_vec(),
                name: "s".into(),
                attributes: (0..keys_per_span)
                    .map(|k| attr(&format!("id.{i}.{k}"), any_value::Value::IntValue(1)))
                    .collect(),
                ..Span::default()
            })
            .collect();
        let batch = request_to_batch(&request_with_spans(spans)).unwrap();
        let mut builder = SummaryBuilder::new();
        builder.add_batch(&batch).unwrap();
        let summary = builder.finish();
        assert_eq!(summary.attributes["span"].len(), MAX_KEYS_PER_SCOPE);
        assert!(!summary.keys_complete("span"));
        assert!(summary.keys_complete("resource"));
        let decoded = BlockSummary::decode(&summary.encode().unwrap()).unwrap();
        assert_eq!(decoded, summary);

        // Merging a complete summary into a full one keeps the cap.
        let mut small = SummaryBuilder::new();
        let one = Span {
            trace_id: vec![2; 16],
            span_id: vec![9; 8],
            attributes: vec![attr("other", any_value::Value::IntValue(1))],
            ..Span::default()
        };
        small
            .add_batch(&request_to_batch(&request_with_spans(vec![one])).unwrap())
            .unwrap();
        let mut merged = small.finish();
        assert!(merged.keys_complete("span"));
        merged.merge(&summary);
        assert!(merged.attributes["span"].len() <= MAX_KEYS_PER_SCOPE);
        assert!(!merged.keys_complete("span"));
    }
}
